"""hsvae-jax: sparse sentence encodings with the hierarchical sparse VAE (HSVAE) in JAX/Flax."""

from hsvae_jax.prior import HierarchicalSpikeSlab, SpikeAndSlab

__version__ = "0.1.0"
__all__ = ["HierarchicalSpikeSlab", "SpikeAndSlab", "__version__", "load"]


def __getattr__(name: str):
  # hsvae_jax.load imports the model, training and data code: only when asked for.
  if name == "load":
    from hsvae_jax.api import load  # pylint: disable=g-import-not-at-top
    return load
  raise AttributeError(f"module 'hsvae_jax' has no attribute {name!r}")
