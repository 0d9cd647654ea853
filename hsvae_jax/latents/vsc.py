"""Variational Sparse Coding (Tonolini, Jensen and Murray-Smith, UAI 2019): spike-and-slab with an exact delta spike."""

import dataclasses

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from hsvae_jax.hparams import HParams
from hsvae_jax.latents import base
from hsvae_jax.latents.gaussian import GaussianHead, GaussianPosterior
from hsvae_jax.prior import SpikeAndSlab


class VSCPosterior(GaussianPosterior):
  # gamma(x) = sigmoid(slab_logit); logits keep log gamma and log(1 - gamma) finite when it saturates.
  slab_logit_BxZ: jax.Array


class VSCHead(nn.Module):
  latent_dim: int

  @nn.compact
  def __call__(self, h_BxH: jax.Array) -> VSCPosterior:
    slab = GaussianHead(self.latent_dim, name="slab")(h_BxH)
    return VSCPosterior(mu_BxZ=slab.mu_BxZ, sigma_BxZ=slab.sigma_BxZ,
                        slab_logit_BxZ=nn.Dense(self.latent_dim, name="slab_logit")(h_BxH))


@dataclasses.dataclass(frozen=True)
class VSCLatent(base.Latent[VSCPosterior, base.Sample]):
  """q(z|x) = gamma N(mu, sigma^2) + (1 - gamma) delta_0; p(z) = alpha N(0, slab_scale^2) + (1 - alpha) delta_0.

  gamma(x) is the per-dimension SLAB probability and alpha = prior_slab_prob a fixed sparsity level. The
  KL is the closed form of the paper (returned as KL_z, weighted by z_reg_weight; KL_gamma is 0), so
  model.kl_z is not read. Samples for the decoder draw the indicator by SpikeAndSlab.relaxed_sample's
  binary concrete, hardened with a straight-through gradient, so they hold exact zeros; the paper relaxes
  the step with a sigmoid of c (eta - 1 + gamma), eta uniform, instead. Codes: mu where gamma > 1/2, else 0.
  """

  latent_dim: int
  prior_slab_prob: float = 0.2
  slab_scale: float = 1.0

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict) -> "VSCLatent":
    return cls(model_config.latent_dim, model_config.vsc_prior_slab_prob, model_config.slab_scale)

  def head(self) -> nn.Module:
    return VSCHead(self.latent_dim)

  def sample(self, posterior: VSCPosterior, key: jax.Array, temperature: jax.Array) -> base.Sample:
    # A spike of zero width is the delta at 0: relaxed_sample puts exact zeros wherever it picks the spike.
    q_z = SpikeAndSlab(jax.nn.sigmoid(-posterior.slab_logit_BxZ), posterior.mu_BxZ, posterior.sigma_BxZ,
                       spike_scale=0.0)
    z_BxZ, _ = q_z.relaxed_sample(key, temperature)
    return base.Sample(z_BxZ)

  def kl(self, posterior: VSCPosterior, sample: base.Sample, hparams: HParams) -> tuple[jax.Array, jax.Array]:
    del sample, hparams  # closed form; the prior is fixed
    # q and p share the same point mass at 0, so log q/p is log((1 - gamma) / (1 - alpha)) on the spike and
    # log(gamma N(z; mu, sigma) / (alpha N(z; 0, slab))) on the slab; in expectation, the Bernoulli KL plus
    # gamma times the Gaussian KL (Tonolini et al. 2019, Sec. 3).
    q_slab = distrax.Bernoulli(logits=posterior.slab_logit_BxZ)
    slab_kl_BxZ = distrax.Normal(posterior.mu_BxZ, posterior.sigma_BxZ).kl_divergence(
        distrax.Normal(0.0, self.slab_scale))
    kl_z_BxZ = q_slab.probs * slab_kl_BxZ + q_slab.kl_divergence(distrax.Bernoulli(probs=self.prior_slab_prob))
    kl_z_B = kl_z_BxZ.sum(-1)
    return kl_z_B, jnp.zeros_like(kl_z_B)

  def codes(self, posterior: VSCPosterior) -> base.BatchCodes:
    return base.BatchCodes.where_slab(posterior.mu_BxZ, jax.nn.sigmoid(posterior.slab_logit_BxZ))
