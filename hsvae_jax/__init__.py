"""hsvae-jax: sparse sentence encodings with the hierarchical sparse VAE (HSVAE) in JAX/Flax."""

import importlib

__version__ = "0.1.0"
__all__ = ["HierarchicalSpikeSlab", "SpikeAndSlab", "__version__", "load"]

# Imported on first use, so that `import hsvae_jax` (the CLI's first step) does not pay for JAX, distrax and TFP.
_LAZY = {"HierarchicalSpikeSlab": "hsvae_jax.prior", "SpikeAndSlab": "hsvae_jax.prior", "load": "hsvae_jax.api"}


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'hsvae_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(__all__)
