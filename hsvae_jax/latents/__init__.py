"""Latent families, chosen by `model.latent`. A new family is a module here plus one entry below."""

import ml_collections

from hsvae_jax.errors import InputError
from hsvae_jax.latents.base import BatchCodes, Latent
from hsvae_jax.latents.gaussian import GaussianLatent
from hsvae_jax.latents.hsvae import HSVAELatent
from hsvae_jax.latents.matvae import MATVAELatent
from hsvae_jax.latents.topk_sae import TopKSAELatent
from hsvae_jax.latents.vsc import VSCLatent

LATENTS: dict[str, type[Latent]] = {
    "hsvae": HSVAELatent,
    "gaussian": GaussianLatent,
    "matvae": MATVAELatent,
    "vsc": VSCLatent,
    "topk_sae": TopKSAELatent,
}
KL_ESTIMATORS = ("mc", "analytic")


def make_latent(model_config: ml_collections.ConfigDict) -> Latent:
  if model_config.latent not in LATENTS:
    raise InputError(f"unknown model.latent {model_config.latent!r}; choose one of {', '.join(LATENTS)}")
  if model_config.kl_z not in KL_ESTIMATORS:
    raise InputError(f"unknown model.kl_z {model_config.kl_z!r}; choose one of {', '.join(KL_ESTIMATORS)}")
  return LATENTS[model_config.latent].from_config(model_config)

__all__ = ["BatchCodes", "Latent", "LATENTS", "make_latent", *(cls.__name__ for cls in LATENTS.values())]
