"""Spike-and-slab: a narrow Gaussian at zero mixed with a free one.

Shape suffixes: B is the batch shape (any rank), N the number of samples, 2 the
two components (spike first, then slab).
"""

import chex
import distrax
import jax
import jax.numpy as jnp

Array = chex.Array
Numeric = chex.Numeric
PRNGKey = chex.PRNGKey


def _as_float(x: Numeric) -> Array:
  # Keeps float dtypes (bf16, f32) and turns ints into the default float.
  return jnp.asarray(x, jnp.result_type(x, float))


def spike_slab_mixture(
    spike_logit: Numeric,
    slab_logit: Numeric,
    loc: Numeric,
    scale: Numeric,
    spike_scale: Numeric,
) -> distrax.MixtureSameFamily:
  """N(0, spike_scale^2) and N(loc, scale^2) weighted by softmax of the logits.

  Args:
    spike_logit: unnormalised log weight of the spike.
    slab_logit: unnormalised log weight of the slab.
    loc: mean of the slab.
    scale: standard deviation of the slab.
    spike_scale: standard deviation of the spike.

  Returns:
    A mixture whose batch shape is the broadcast of the arguments' shapes.
  """
  args = (spike_logit, slab_logit, loc, scale, spike_scale)
  batch_shape = jax.lax.broadcast_shapes(*(jnp.shape(a) for a in args))

  def stack(spike, slab):
    return jnp.stack([jnp.broadcast_to(spike, batch_shape),
                      jnp.broadcast_to(slab, batch_shape)], axis=-1)

  logits_Bx2 = stack(spike_logit, slab_logit)
  loc_Bx2 = stack(jnp.zeros_like(loc), loc)
  scale_Bx2 = stack(spike_scale, scale)
  return distrax.MixtureSameFamily(
      mixture_distribution=distrax.Categorical(logits=logits_Bx2),
      components_distribution=distrax.Normal(loc_Bx2, scale_Bx2))


class SpikeAndSlab(distrax.Distribution):
  """spike_prob N(0, spike_scale^2) + (1 - spike_prob) N(loc, scale^2).

  Scalar events; the batch shape is the broadcast of the arguments' shapes.
  The mixture weights are softmax([log(spike_prob + eps), log(1 - spike_prob +
  eps)]), as in the original code: the guard keeps log_prob and its gradients
  finite when spike_prob is exactly 0 or 1 (a float32 Beta sample can be), at
  the cost of moving the weights by O(eps). `mean` and `variance` use the
  unguarded weights, so a dimension with spike_prob = 1 has mean exactly 0.
  """

  def __init__(
      self,
      spike_prob: Numeric,
      loc: Numeric,
      scale: Numeric,
      spike_scale: Numeric = 0.05,
      eps: float = 1e-5,
  ):
    """Initialises the distribution.

    Args:
      spike_prob: probability of the spike, in [0, 1].
      loc: mean of the slab.
      scale: standard deviation of the slab, positive.
      spike_scale: standard deviation of the spike, positive.
      eps: guard inside the logs of the mixture weights.
    """
    super().__init__()
    self._spike_prob = _as_float(spike_prob)
    self._loc = _as_float(loc)
    self._scale = _as_float(scale)
    self._spike_scale = _as_float(spike_scale)
    self._eps = eps
    self._batch_shape = jax.lax.broadcast_shapes(
        self._spike_prob.shape, self._loc.shape, self._scale.shape,
        self._spike_scale.shape)

  @property
  def event_shape(self) -> tuple[int, ...]:
    return ()

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return self._batch_shape

  @property
  def spike_prob(self) -> Array:
    return jnp.broadcast_to(self._spike_prob, self.batch_shape)

  @property
  def slab_prob(self) -> Array:
    return 1. - self.spike_prob

  @property
  def loc(self) -> Array:
    return jnp.broadcast_to(self._loc, self.batch_shape)

  @property
  def scale(self) -> Array:
    return jnp.broadcast_to(self._scale, self.batch_shape)

  @property
  def spike_scale(self) -> Array:
    return jnp.broadcast_to(self._spike_scale, self.batch_shape)

  @property
  def eps(self) -> float:
    return self._eps

  def _log_weights(self) -> tuple[Array, Array]:
    """log(spike_prob + eps) and log(1 - spike_prob + eps)."""
    return (jnp.log(self._spike_prob + self._eps),
            jnp.log(1. - self._spike_prob + self._eps))

  def _mixture(self) -> distrax.MixtureSameFamily:
    spike_logit, slab_logit = self._log_weights()
    return spike_slab_mixture(
        spike_logit, slab_logit, self._loc, self._scale, self._spike_scale)

  def _sample_n(self, key: PRNGKey, n: int) -> Array:
    return self._mixture().sample(seed=key, sample_shape=n)

  def log_prob(self, value: Array) -> Array:
    return self._mixture().log_prob(value)

  def mean(self) -> Array:
    return self.slab_prob * self.loc

  def variance(self) -> Array:
    # Law of total variance over the component.
    p, loc = self.spike_prob, self.loc
    return (p * jnp.square(self._spike_scale)
            + (1. - p) * jnp.square(self._scale)
            + p * (1. - p) * jnp.square(loc))

  def relaxed_sample(
      self, seed: PRNGKey, temperature: Numeric) -> tuple[Array, Array]:
    """A reparameterised sample for training, with its spike indicator.

    The indicator s is a binary-concrete (relaxed Bernoulli) sample of "spike",
    hardened at 0.5 with a straight-through gradient: its value is exactly 0 or
    1, its gradient that of the relaxed sample. Then
    z = s * spike_scale * eps1 + (1 - s) * (loc + scale * eps2), eps1 and eps2
    independent standard normals.

    Args:
      seed: PRNG key.
      temperature: of the relaxation, positive; may be a traced array.

    Returns:
      (z, s), each of the batch shape.
    """
    key_spike, key_spike_noise, key_slab_noise = jax.random.split(seed, 3)
    dtype = jnp.result_type(
        self._spike_prob, self._loc, self._scale, self._spike_scale)
    spike_logit, slab_logit = self._log_weights()
    # log u - log(1 - u) for u ~ U(0, 1); jax draws u from [tiny, 1).
    logistic_B = jax.random.logistic(key_spike, self.batch_shape, dtype)
    soft_B = jax.nn.sigmoid(
        (spike_logit - slab_logit + logistic_B) / temperature)
    hard_B = (soft_B > 0.5).astype(dtype)
    # Straight-through, written so that the forward value is exactly hard_B.
    s_B = hard_B + (soft_B - jax.lax.stop_gradient(soft_B))
    spike_z_B = self._spike_scale * jax.random.normal(
        key_spike_noise, self.batch_shape, dtype)
    slab_z_B = self._loc + self._scale * jax.random.normal(
        key_slab_noise, self.batch_shape, dtype)
    return s_B * spike_z_B + (1. - s_B) * slab_z_B, s_B
