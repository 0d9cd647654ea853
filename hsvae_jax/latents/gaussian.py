"""The standard VAE baseline: a diagonal Gaussian posterior and an N(0, slab_scale^2) prior."""

import dataclasses

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from hsvae_jax.hparams import HParams
from hsvae_jax.latents import base


class GaussianHead(nn.Module):
  latent_dim: int

  @nn.compact
  def __call__(self, h_BxH: jax.Array) -> base.Posterior:
    return {
        "mu": nn.Dense(self.latent_dim, name="mu")(h_BxH),
        "sigma": jax.nn.softplus(nn.Dense(self.latent_dim, name="sigma")(h_BxH)),
    }


@dataclasses.dataclass(frozen=True)
class GaussianLatent:
  latent_dim: int
  slab_scale: float = 1.0
  kl_z: str = "analytic"

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict) -> "GaussianLatent":
    return cls(model_config.latent_dim, model_config.slab_scale, model_config.kl_z)

  def head(self) -> nn.Module:
    return GaussianHead(self.latent_dim)

  def sample(self, posterior: base.Posterior, key: jax.Array, temperature: jax.Array) -> base.Sample:
    del temperature  # nothing discrete to relax
    return {"z": distrax.Normal(posterior["mu"], posterior["sigma"]).sample(seed=key)}

  def kl(self, posterior: base.Posterior, sample: base.Sample, hparams: HParams) -> tuple[jax.Array, jax.Array]:
    del hparams  # the prior has no free parameters
    q = distrax.Normal(posterior["mu"], posterior["sigma"])
    p = distrax.Normal(0.0, self.slab_scale)
    if self.kl_z == "mc":
      kl_z_BxZ = q.log_prob(sample["z"]) - p.log_prob(sample["z"])
    else:
      kl_z_BxZ = q.kl_divergence(p)
    kl_z_B = kl_z_BxZ.sum(-1)
    return kl_z_B, jnp.zeros_like(kl_z_B)

  def codes(self, posterior: base.Posterior) -> base.BatchCodes:
    mu = posterior["mu"]
    return base.BatchCodes(mu, mu, jnp.ones_like(mu))
