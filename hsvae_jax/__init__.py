"""hsvae-jax: sparse sentence encodings with the hierarchical sparse VAE (HSVAE) in JAX/Flax."""

from hsvae_jax.prior import HierarchicalSpikeSlab, SpikeAndSlab

__all__ = ["HierarchicalSpikeSlab", "SpikeAndSlab"]
