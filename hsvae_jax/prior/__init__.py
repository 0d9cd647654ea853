"""Priors over the latent code."""

from hsvae_jax.prior.hierarchical import HierarchicalSpikeSlab
from hsvae_jax.prior.spike_and_slab import SpikeAndSlab

__all__ = ["HierarchicalSpikeSlab", "SpikeAndSlab"]
