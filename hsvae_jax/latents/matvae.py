"""MAT-VAE (Mathieu et al., ICML 2019) as the HSVAE authors ran it on text (PAPER.md).

A Gaussian posterior, a fixed spike-and-slab prior and, beside the KL, a kernel discrepancy that pulls the
batch of posterior samples towards a batch of prior samples.
"""

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


def imq_kernel_discrepancy(x_BxZ: jax.Array, y_BxZ: jax.Array, scales: tuple[float, ...]) -> jax.Array:
  """Unbiased MMD^2 between two sets of samples, each dimension on its own, summed over dimensions: scalar.

  The kernel is a sum over `scales` of inverse multiquadrics C / (C + (x - y)^2), C = 2 * scale. The
  within-set averages leave out the diagonal (a point paired with itself), which makes the estimate
  unbiased: its expectation is 0 when both sets come from the same distribution.

  Args:
    x_BxZ: one set of B >= 2 samples.
    y_BxZ: the other set, of the same shape.
    scales: the kernel's scales.
  """
  n = x_BxZ.shape[0]

  def kernel_BxBxZ(a_BxZ, b_BxZ):
    sq_dist_BxBxZ = jnp.square(a_BxZ[:, None, :] - b_BxZ[None, :, :])
    return sum(2 * s / (2 * s + sq_dist_BxBxZ) for s in scales)

  off_diagonal_BxBx1 = (1.0 - jnp.eye(n, dtype=x_BxZ.dtype))[:, :, None]

  def within(a_BxZ):
    return (off_diagonal_BxBx1 * kernel_BxBxZ(a_BxZ, a_BxZ)).sum() / (n * (n - 1))

  return within(x_BxZ) + within(y_BxZ) - 2 * kernel_BxBxZ(x_BxZ, y_BxZ).sum() / n**2


class MATVAESample(base.Sample):
  prior_z_BxZ: jax.Array  # a batch drawn from the prior, for the kernel discrepancy


@dataclasses.dataclass(frozen=True)
class MATVAELatent(base.Latent[GaussianPosterior, MATVAESample]):
  """q(z|x) = N(mu, sigma^2); p(z) = w N(0, spike_scale^2) + (1 - w) N(0, slab_scale^2) per dimension.

  Loss terms: KL_z is the one-sample estimate log q(z|x) - log p(z) (weighted by z_reg_weight, the
  original's beta); the kernel discrepancy between the batch of z and a batch of prior samples, times
  discrepancy_weight (the original's alpha), is the extra term 'discrepancy'. model.kl_z is not read: a
  Gaussian has no closed-form KL to a mixture.

  Codes: the posterior has no spike indicator, so there is no posterior slab probability to threshold;
  slab_prob is 1 and the code is mu, dense. MAT-VAE's sparsity is approximate: the prior's spike pulls
  values towards 0 (visible in Hoyer's measure), it never makes them exactly 0.
  """

  latent_dim: int
  spike_weight: float = 0.8
  spike_scale: float = 0.05
  slab_scale: float = 1.0
  kernel_scales: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
  discrepancy_weight: float = 1.0

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict) -> "MATVAELatent":
    # A config read back from JSON holds lists; the family must stay hashable (it is a static jit argument).
    scales = tuple(float(s) for s in model_config.matvae_kernel_scales)
    return cls(model_config.latent_dim, model_config.matvae_spike_weight, model_config.spike_scale,
               model_config.slab_scale, scales, model_config.matvae_discrepancy_weight)

  def head(self) -> nn.Module:
    return GaussianHead(self.latent_dim)

  def prior(self) -> SpikeAndSlab:
    return SpikeAndSlab(self.spike_weight, 0.0, self.slab_scale, spike_scale=self.spike_scale)

  def sample(self, posterior: GaussianPosterior, key: jax.Array, temperature: jax.Array) -> MATVAESample:
    del temperature  # nothing discrete to relax
    z_key, prior_key = jax.random.split(key)
    z_BxZ = distrax.Normal(posterior.mu_BxZ, posterior.sigma_BxZ).sample(seed=z_key)
    prior_z_BxZ = self.prior().sample(seed=prior_key, sample_shape=z_BxZ.shape)
    return MATVAESample(z_BxZ, prior_z_BxZ)

  def kl(self, posterior: GaussianPosterior, sample: MATVAESample, hparams: HParams) -> tuple[jax.Array, jax.Array]:
    del hparams  # the prior is fixed
    q = distrax.Normal(posterior.mu_BxZ, posterior.sigma_BxZ)
    kl_z_B = (q.log_prob(sample.z_BxZ) - self.prior().log_prob(sample.z_BxZ)).sum(-1)
    return kl_z_B, jnp.zeros_like(kl_z_B)

  def extra_loss(self, posterior: GaussianPosterior, sample: MATVAESample, hparams: HParams) -> dict[str, jax.Array]:
    del posterior, hparams
    discrepancy = self.discrepancy_weight * imq_kernel_discrepancy(sample.z_BxZ, sample.prior_z_BxZ, self.kernel_scales)
    # A term of the whole batch: every sentence carries it, so the batch mean is the term itself.
    return {"discrepancy": jnp.broadcast_to(discrepancy, sample.z_BxZ.shape[:1])}

  def codes(self, posterior: GaussianPosterior) -> base.BatchCodes:
    return base.BatchCodes.where_slab(posterior.mu_BxZ, jnp.ones_like(posterior.mu_BxZ))
