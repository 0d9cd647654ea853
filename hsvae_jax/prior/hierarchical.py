"""The HSVAE prior: a Beta-distributed spike probability over a spike-and-slab.

Shape suffixes: B is the batch shape (any rank), N the number of samples.
"""

import chex
import distrax
import jax.numpy as jnp

from hsvae_jax.prior import spike_and_slab

Array = chex.Array
Numeric = chex.Numeric
PRNGKey = chex.PRNGKey


class HierarchicalSpikeSlab(distrax.Distribution):
  """The HSVAE prior over z, its spike probability gamma marginalised out.

  Per dimension, gamma ~ Beta(alpha, beta) and
  z | gamma ~ gamma N(0, spike_scale^2) + (1 - gamma) N(0, slab_scale^2).
  gamma is the SPIKE probability: alpha = 4, beta = 1 (E[gamma] = 0.8) favours
  near-zero codes. Scalar events; the batch shape is the broadcast of the
  arguments' shapes.

  The density is linear in gamma, so integrating over Beta(gamma; a, b) puts
  E[gamma] = a / (a + b) on the spike: the marginal is a two-Gaussian mixture.
  `sample` draws from it (the same law as gamma, then z | gamma, without the
  Beta sampler's cost) with implicit reparameterisation gradients in every
  parameter, alpha and beta included. `entropy` is the mixture's, by
  quadrature; the mode is 0, where both components peak.
  """

  def __init__(
      self,
      alpha: Numeric,
      beta: Numeric,
      spike_scale: Numeric = 0.05,
      slab_scale: Numeric = 1.0,
  ):
    """Initialises the distribution.

    Args:
      alpha: first shape parameter of the Beta over gamma, positive.
      beta: second shape parameter of the Beta over gamma, positive.
      spike_scale: standard deviation of the spike, positive.
      slab_scale: standard deviation of the slab, positive.
    """
    super().__init__()
    self._alpha, self._beta, self._spike_scale, self._slab_scale = (
        spike_and_slab.broadcast_parameters(
            alpha, beta, spike_scale, slab_scale))

  @property
  def event_shape(self) -> tuple[int, ...]:
    return ()

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return self._alpha.shape

  @property
  def alpha(self) -> Array:
    return self._alpha

  @property
  def beta(self) -> Array:
    return self._beta

  @property
  def spike_scale(self) -> Array:
    return self._spike_scale

  @property
  def slab_scale(self) -> Array:
    return self._slab_scale

  @property
  def gamma_prior(self) -> distrax.Beta:
    """p(gamma), with the full batch shape."""
    return distrax.Beta(self.alpha, self.beta)

  def conditional(self, gamma: Numeric) -> spike_and_slab.SpikeAndSlab:
    """p(z | gamma); gamma may carry leading sample axes."""
    return spike_and_slab.SpikeAndSlab(
        spike_prob=gamma, loc=0., scale=self._slab_scale,
        spike_scale=self._spike_scale)

  def _mixture(self) -> spike_and_slab.SpikeSlabMixture:
    # softmax([log a, log b]) weights the spike by a / (a + b).
    return spike_and_slab.SpikeSlabMixture(
        jnp.log(self._alpha), jnp.log(self._beta), 0., self._slab_scale,
        self._spike_scale)

  def _sample_n(self, key: PRNGKey, n: int) -> Array:
    return self._mixture().sample(seed=key, sample_shape=n)

  def log_prob(self, value: Array) -> Array:
    return self._mixture().log_prob(value)

  def cdf(self, value: Array) -> Array:
    return self._mixture().cdf(value)

  def entropy(self) -> Array:
    return self._mixture().entropy()

  def mean(self) -> Array:
    dtype = jnp.result_type(self._alpha, self._beta, self._spike_scale,
                            self._slab_scale)
    return jnp.zeros(self.batch_shape, dtype)

  def mode(self) -> Array:
    return self.mean()

  def variance(self) -> Array:
    spike_prob = self._alpha / (self._alpha + self._beta)
    return (spike_prob * jnp.square(self._spike_scale)
            + (1. - spike_prob) * jnp.square(self._slab_scale))

  def __getitem__(self, index) -> "HierarchicalSpikeSlab":
    return HierarchicalSpikeSlab(self._alpha[index], self._beta[index],
                                 self._spike_scale[index],
                                 self._slab_scale[index])
