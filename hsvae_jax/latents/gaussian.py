"""The standard VAE baseline: a diagonal Gaussian posterior and an N(0, slab_scale^2) prior."""

import dataclasses

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from hsvae_jax.hparams import HParams
from hsvae_jax.latents import base


class GaussianPosterior(base.Posterior):
  mu_BxZ: jax.Array
  sigma_BxZ: jax.Array


class GaussianHead(nn.Module):
  latent_dim: int

  @nn.compact
  def __call__(self, h_BxH: jax.Array) -> GaussianPosterior:
    return GaussianPosterior(
        mu_BxZ=nn.Dense(self.latent_dim, name="mu")(h_BxH),
        sigma_BxZ=jax.nn.softplus(nn.Dense(self.latent_dim, name="sigma")(h_BxH)),
    )


@dataclasses.dataclass(frozen=True)
class GaussianLatent(base.Latent[GaussianPosterior, base.Sample]):
  latent_dim: int
  slab_scale: float = 1.0
  kl_z: str = "analytic"

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict) -> "GaussianLatent":
    return cls(model_config.latent_dim, model_config.slab_scale, model_config.kl_z)

  def head(self) -> nn.Module:
    return GaussianHead(self.latent_dim)

  def sample(self, posterior: GaussianPosterior, key: jax.Array, temperature: jax.Array) -> base.Sample:
    del temperature  # nothing discrete to relax
    return base.Sample(distrax.Normal(posterior.mu_BxZ, posterior.sigma_BxZ).sample(seed=key))

  def kl(self, posterior: GaussianPosterior, sample: base.Sample, hparams: HParams) -> tuple[jax.Array, jax.Array]:
    del hparams  # the prior has no free parameters
    q = distrax.Normal(posterior.mu_BxZ, posterior.sigma_BxZ)
    p = distrax.Normal(0.0, self.slab_scale)
    if self.kl_z == "mc":
      kl_z_BxZ = q.log_prob(sample.z_BxZ) - p.log_prob(sample.z_BxZ)
    else:
      kl_z_BxZ = q.kl_divergence(p)
    kl_z_B = kl_z_BxZ.sum(-1)
    return kl_z_B, jnp.zeros_like(kl_z_B)

  def codes(self, posterior: GaussianPosterior) -> base.BatchCodes:
    # No spike: the slab's probability is 1 and the code is mu, dense.
    return base.BatchCodes.where_slab(posterior.mu_BxZ, jnp.ones_like(posterior.mu_BxZ))
