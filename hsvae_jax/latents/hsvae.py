"""HSVAE: a Beta posterior over each dimension's spike probability and a spike-and-slab posterior over z."""

import dataclasses

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from tensorflow_probability.substrates import jax as tfp

from hsvae_jax.hparams import HParams
from hsvae_jax.latents import base
from hsvae_jax.prior import HierarchicalSpikeSlab, SpikeAndSlab

# The original code's fix for NaN losses: Beta parameters kept in [0.5, 100] (PAPER.md).
BETA_PARAM_RANGE = (0.5, 100.0)


def straight_through_clip(x: jax.Array, low: float, high: float) -> jax.Array:
  """Clipped forward, identity backward, so a head pushed out of range still gets a gradient."""
  return x + jax.lax.stop_gradient(jnp.clip(x, low, high) - x)


class HSVAEHead(nn.Module):
  latent_dim: int

  @nn.compact
  def __call__(self, h_BxH: jax.Array) -> base.Posterior:
    def positive(name):
      return jax.nn.softplus(nn.Dense(self.latent_dim, name=name)(h_BxH)) + 1e-5

    return {
        "mu": nn.Dense(self.latent_dim, name="mu")(h_BxH),
        "sigma": positive("sigma"),
        "a": straight_through_clip(positive("a"), *BETA_PARAM_RANGE),
        "b": straight_through_clip(positive("b"), *BETA_PARAM_RANGE),
    }


@dataclasses.dataclass(frozen=True)
class HSVAELatent:
  latent_dim: int
  spike_scale: float = 0.05
  slab_scale: float = 1.0
  kl_z: str = "mc"

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict) -> "HSVAELatent":
    return cls(model_config.latent_dim, model_config.spike_scale, model_config.slab_scale, model_config.kl_z)

  def head(self) -> nn.Module:
    return HSVAEHead(self.latent_dim)

  def sample(self, posterior: base.Posterior, key: jax.Array, temperature: jax.Array) -> base.Sample:
    gamma_key, z_key = jax.random.split(key)
    # TFP's Beta sampler: the same implicit reparameterisation gradient as distrax's (jax.random.beta),
    # 25x faster on CPU, where jax's gamma gradient took 0.8 s of a 1.2 s step at 768 dims.
    gamma_BxZ = tfp.distributions.Beta(posterior["a"], posterior["b"]).sample(seed=gamma_key)
    q_z = SpikeAndSlab(gamma_BxZ, posterior["mu"], posterior["sigma"], spike_scale=self.spike_scale)
    z_BxZ, _ = q_z.relaxed_sample(z_key, temperature)
    return {"z": z_BxZ, "gamma": gamma_BxZ}

  def kl(self, posterior: base.Posterior, sample: base.Sample, hparams: HParams) -> tuple[jax.Array, jax.Array]:
    prior = HierarchicalSpikeSlab(hparams.alpha, hparams.beta, self.spike_scale, self.slab_scale)
    q_gamma = distrax.Beta(posterior["a"], posterior["b"])
    kl_gamma_BxZ = q_gamma.kl_divergence(prior.gamma_prior)
    if self.kl_z == "mc":
      # The paper's one-sample estimate of KL(q(z|x,gamma) || p(z|gamma)) at the gamma drawn for z.
      gamma_BxZ = sample["gamma"]
      q_z = SpikeAndSlab(gamma_BxZ, posterior["mu"], posterior["sigma"], spike_scale=self.spike_scale)
      kl_z_BxZ = q_z.log_prob(sample["z"]) - prior.conditional(gamma_BxZ).log_prob(sample["z"])
    else:
      # With the spike/slab indicator as a latent shared by q and p, only the slab branch differs:
      # KL = E_q[1 - gamma] * KL(N(mu, sigma) || N(0, slab)), an upper bound on the marginal KL.
      slab_kl_BxZ = distrax.Normal(posterior["mu"], posterior["sigma"]).kl_divergence(
          distrax.Normal(0.0, self.slab_scale))
      kl_z_BxZ = self.slab_prob(posterior) * slab_kl_BxZ
    return kl_z_BxZ.sum(-1), kl_gamma_BxZ.sum(-1)

  @staticmethod
  def slab_prob(posterior: base.Posterior) -> jax.Array:
    return posterior["b"] / (posterior["a"] + posterior["b"])

  def codes(self, posterior: base.Posterior) -> base.Codes:
    slab_prob_BxZ = self.slab_prob(posterior)
    code_BxZ = jnp.where(slab_prob_BxZ > 0.5, posterior["mu"], 0.0)
    return base.Codes(code_BxZ, posterior["mu"], slab_prob_BxZ)
