"""The HSVAE prior: a Beta-distributed spike probability over a spike-and-slab.

Shape suffixes: B is the batch shape (any rank), N the number of samples.
"""

import chex
import distrax
import jax
import jax.numpy as jnp

from hsvae_jax.prior import spike_and_slab

Array = chex.Array
Numeric = chex.Numeric
PRNGKey = chex.PRNGKey


def _as_float(x: Numeric) -> Array:
  # Keeps float dtypes (bf16, f32) and turns ints into the default float.
  return jnp.asarray(x, jnp.result_type(x, float))


class HierarchicalSpikeSlab(distrax.Distribution):
  """The HSVAE prior over z, its spike probability gamma marginalised out.

  Per dimension, gamma ~ Beta(alpha, beta) and
  z | gamma ~ gamma N(0, spike_scale^2) + (1 - gamma) N(0, slab_scale^2).
  gamma is the SPIKE probability: alpha = 4, beta = 1 (E[gamma] = 0.8) favours
  near-zero codes. Scalar events; the batch shape is the broadcast of the
  arguments' shapes.
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
    self._alpha = _as_float(alpha)
    self._beta = _as_float(beta)
    self._spike_scale = _as_float(spike_scale)
    self._slab_scale = _as_float(slab_scale)
    self._batch_shape = jax.lax.broadcast_shapes(
        self._alpha.shape, self._beta.shape, self._spike_scale.shape,
        self._slab_scale.shape)

  @property
  def event_shape(self) -> tuple[int, ...]:
    return ()

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return self._batch_shape

  @property
  def alpha(self) -> Array:
    return jnp.broadcast_to(self._alpha, self.batch_shape)

  @property
  def beta(self) -> Array:
    return jnp.broadcast_to(self._beta, self.batch_shape)

  @property
  def spike_scale(self) -> Array:
    return jnp.broadcast_to(self._spike_scale, self.batch_shape)

  @property
  def slab_scale(self) -> Array:
    return jnp.broadcast_to(self._slab_scale, self.batch_shape)

  @property
  def gamma_prior(self) -> distrax.Beta:
    """p(gamma), with the full batch shape."""
    return distrax.Beta(self.alpha, self.beta)

  def conditional(self, gamma: Numeric) -> spike_and_slab.SpikeAndSlab:
    """p(z | gamma); gamma may carry leading sample axes."""
    return spike_and_slab.SpikeAndSlab(
        spike_prob=gamma, loc=0., scale=self._slab_scale,
        spike_scale=self._spike_scale)

  def _sample_n(self, key: PRNGKey, n: int) -> Array:
    key_gamma, key_spike, key_noise = jax.random.split(key, 3)
    gamma_NxB = self.gamma_prior.sample(seed=key_gamma, sample_shape=n)
    is_spike_NxB = jax.random.bernoulli(key_spike, gamma_NxB)
    noise_NxB = jax.random.normal(key_noise, gamma_NxB.shape, gamma_NxB.dtype)
    return noise_NxB * jnp.where(
        is_spike_NxB, self._spike_scale, self._slab_scale)

  def log_prob(self, value: Array) -> Array:
    # The density is linear in gamma, so integrating over Beta(gamma; a, b)
    # puts E[gamma] = a / (a + b) on the spike: softmax([log a, log b]).
    return spike_and_slab.spike_slab_mixture(
        jnp.log(self._alpha), jnp.log(self._beta), 0., self._slab_scale,
        self._spike_scale).log_prob(value)

  def mean(self) -> Array:
    dtype = jnp.result_type(self._alpha, self._beta, self._spike_scale,
                            self._slab_scale)
    return jnp.zeros(self.batch_shape, dtype)

  def variance(self) -> Array:
    spike_prob = self._alpha / (self._alpha + self._beta)
    return jnp.broadcast_to(
        spike_prob * jnp.square(self._spike_scale)
        + (1. - spike_prob) * jnp.square(self._slab_scale), self.batch_shape)
