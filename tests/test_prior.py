"""The priors against TFP, quadrature, Monte Carlo and closed forms; under jit,
vmap and grad."""

import functools

from absl.testing import parameterized
import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import stats

from hsvae_jax.prior import HierarchicalSpikeSlab
from hsvae_jax.prior import SpikeAndSlab

# One xdist worker takes the whole module (pyproject: --dist loadgroup): run op by op, its tests compile the
# same small programs, once a process.
pytestmark = pytest.mark.xdist_group(__name__)

_EPS = 1e-5  # SpikeAndSlab's default guard

# The paper's prior, whose large draws several tests share.
_ALPHA, _BETA = 4., 1.
_NUM_DRAWS = 200_000


@functools.partial(jax.jit, static_argnums=0)
def _tfp_log_prob(tfd, spike_weight, slab_weight, loc, scale, spike_scale,
                  value):
  """log_prob of TFP's two-Normal MixtureSameFamily, weights normalised by TFP.

  Jitted because TFP run eagerly compiles each of its many small ops.
  """
  spike_weight, slab_weight, loc, scale, spike_scale = jnp.broadcast_arrays(
      spike_weight, slab_weight, loc, scale, spike_scale)
  return tfd.MixtureSameFamily(
      tfd.Categorical(
          logits=jnp.log(jnp.stack([spike_weight, slab_weight], -1))),
      tfd.Normal(jnp.stack([jnp.zeros_like(loc), loc], -1),
                 jnp.stack([spike_scale, scale], -1)),
  ).log_prob(value)


@functools.cache
def _draws():
  """z and gamma draws from the paper's prior, each (num_draws,).

  One jitted program, made once: compiling the Beta sampler takes seconds.
  """

  @jax.jit
  def draw(key):
    dist = HierarchicalSpikeSlab(_ALPHA, _BETA)
    key_z, key_gamma = jax.random.split(key)
    return (dist.sample(seed=key_z, sample_shape=_NUM_DRAWS),
            dist.gamma_prior.sample(seed=key_gamma, sample_shape=_NUM_DRAWS))

  z_N, gamma_N = draw(jax.random.PRNGKey(6))
  return np.asarray(z_N), np.asarray(gamma_N)


def _guarded(spike_prob):
  """SpikeAndSlab's spike weight: softmax of log(p + eps), log(1 - p + eps)."""
  return (spike_prob + _EPS) / (1 + 2 * _EPS)


def _density(spike_weight, loc, scale, spike_scale):
  """The two-Gaussian mixture's density, in float64, for scipy."""
  return lambda z: (spike_weight * stats.norm.pdf(z, 0., spike_scale)
                    + (1 - spike_weight) * stats.norm.pdf(z, loc, scale))


def _quad(integrand, loc, scale):
  """The integral over the real line of a function of the mixture's density."""
  return integrate.quad(integrand, min(0., loc) - 14 * scale,
                        max(0., loc) + 14 * scale, points=sorted({0., loc}),
                        limit=500, epsabs=1e-12, epsrel=1e-12)[0]


def _entropy_by_quadrature(spike_weight, loc, scale, spike_scale):
  density = _density(spike_weight, loc, scale, spike_scale)
  return _quad(lambda z: -density(z) * np.log(max(density(z), 1e-300)),
               loc, max(scale, spike_scale))


def _per_sample_grads(dist_cls, params, f, key, n):
  """d f(z_i) / d params for n draws z_i, each from its own copy of params.

  Each parameter is broadcast to (n,), so the gradient of sum_i f(z_i) holds
  one draw's gradient per entry: their mean estimates d E[f(z)] / d params and
  their spread its standard error.
  """
  def total(*batched):
    return jnp.sum(f(dist_cls(*batched).sample(seed=key)))

  return jax.grad(total, argnums=tuple(range(len(params))))(
      *(jnp.full((n,), x) for x in params))


def _assert_monte_carlo_close(per_sample_grads, expected):
  for grad_N, value in zip(per_sample_grads, expected):
    grad_N = np.asarray(grad_N)
    error = 5 * grad_N.std() / np.sqrt(grad_N.size)
    assert error > 0., "a zero gradient"
    np.testing.assert_allclose(grad_N.mean(), value, atol=error)


class SpikeAndSlabTest(chex.TestCase):

  @parameterized.named_parameters(
      ("scalar", (), (), ()),
      ("vector", (3,), (), (3,)),
      ("broadcast", (2, 1), (3,), (2, 3)),
  )
  def test_shapes(self, prob_shape, loc_shape, batch_shape):
    dist = SpikeAndSlab(
        jnp.full(prob_shape, 0.3), jnp.zeros(loc_shape), 1.)
    self.assertEqual(dist.event_shape, ())
    self.assertEqual(dist.batch_shape, batch_shape)
    self.assertEqual(dist.spike_prob.shape, batch_shape)
    self.assertEqual(dist.slab_prob.shape, batch_shape)

    def draw(key):
      return (dist.sample(seed=key),
              dist.sample_and_log_prob(seed=key, sample_shape=(4, 5)),
              dist.relaxed_sample(key, 0.5))

    # Shapes only: tracing is enough, and much cheaper than running.
    sample, (samples, log_prob), (z, s) = jax.eval_shape(
        draw, jax.random.PRNGKey(0))
    self.assertEqual(sample.shape, batch_shape)
    self.assertEqual(samples.shape, (4, 5) + batch_shape)
    self.assertEqual(log_prob.shape, (4, 5) + batch_shape)
    self.assertEqual(z.shape, batch_shape)
    self.assertEqual(s.shape, batch_shape)

  @chex.variants(with_jit=True, without_jit=True)
  def test_log_prob_matches_tfp(self):
    tfd = pytest.importorskip(
        "tensorflow_probability.substrates.jax").distributions
    # Not spike_prob = 1: under jit XLA folds 1 - p + eps into 1.00001 - p,
    # which float32 rounds; the guard is then 1.001e-5 rather than 1e-5.
    spike_prob = jnp.array([[0.], [0.2], [0.8], [0.99]])
    loc = jnp.array([-1., 0., 0.5])
    scale, spike_scale = 0.7, 0.05
    value = jnp.array([0., 0.03, -0.8, 1.2])[:, None, None]
    log_prob = self.variant(
        lambda p, m, v: SpikeAndSlab(p, m, scale, spike_scale).log_prob(v))(
            spike_prob, loc, value)
    expected = _tfp_log_prob(
        tfd, spike_prob + _EPS, 1 - spike_prob + _EPS, loc, scale, spike_scale,
        value)
    self.assertEqual(log_prob.shape, (4, 4, 3))
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5, atol=1e-5)

  def test_sample_moments(self):
    dist = SpikeAndSlab(0.3, 2., 0.5)
    z = jax.jit(lambda key: dist.sample(seed=key, sample_shape=200_000))(
        jax.random.PRNGKey(1))
    self.assertAlmostEqual(float(jnp.mean(z)), float(dist.mean()), delta=0.01)
    self.assertAlmostEqual(float(jnp.var(z)), float(dist.variance()),
                           delta=0.02)
    self.assertAlmostEqual(float(jnp.mean(jnp.abs(z) < 0.2)), 0.3, delta=0.01)

  def test_mean_is_zero_for_a_certain_spike(self):
    np.testing.assert_array_equal(
        SpikeAndSlab(jnp.array([1., 0.]), 3., 1.).mean(), [0., 3.])

  def test_log_prob_grads_are_finite_and_nonzero(self):
    # A Beta sample can be exactly 0 or 1: the eps guard keeps those finite.
    spike_prob = jnp.array([0., 0.2, 0.9, 1.])
    grads = jax.jit(jax.grad(
        lambda p, m, s, v: jnp.sum(SpikeAndSlab(p, m, s).log_prob(v)),
        argnums=(0, 1, 2)))(spike_prob, jnp.array(0.5), jnp.array(1.3),
                            jnp.array([0.01, 0.4, 1.5, 0.3]))
    for g in grads:
      self.assertTrue(np.all(np.isfinite(g)))
    grad_spike_prob, grad_loc, grad_scale = grads
    self.assertTrue(np.all(grad_spike_prob != 0.))
    self.assertNotEqual(float(grad_loc), 0.)
    self.assertNotEqual(float(grad_scale), 0.)

  @chex.variants(with_jit=True, without_jit=True)
  def test_relaxed_indicator_is_binary_with_the_spike_frequency(self):
    dist = SpikeAndSlab(jnp.full((100_000,), 0.3), 1., 1.)
    _, s = self.variant(dist.relaxed_sample)(
        jax.random.PRNGKey(2), jnp.array(0.5))
    self.assertTrue(np.all((s == 0.) | (s == 1.)))
    self.assertAlmostEqual(float(jnp.mean(s)), 0.3, delta=0.01)

  def test_relaxed_z_follows_the_indicator(self):
    dist = SpikeAndSlab(jnp.full((100_000,), 0.5), 2., 0.5, spike_scale=0.05)
    z, s = jax.jit(dist.relaxed_sample)(jax.random.PRNGKey(3), 0.5)
    spike, slab = z[s == 1.], z[s == 0.]
    self.assertAlmostEqual(float(jnp.mean(spike)), 0., delta=0.002)
    self.assertAlmostEqual(float(jnp.std(spike)), 0.05, delta=0.002)
    self.assertAlmostEqual(float(jnp.mean(slab)), 2., delta=0.02)
    self.assertAlmostEqual(float(jnp.std(slab)), 0.5, delta=0.02)

  def test_relaxed_soft_part_saturates_as_temperature_falls(self):
    # The soft part shows only in the gradient: ds_i/dp_i is
    # soft (1 - soft) / temperature * dlogit/dp, zero where soft is 0 or 1.
    spike_prob = jnp.full((200_000,), 0.3)
    key = jax.random.PRNGKey(4)

    @jax.jit
    def per_entry_grad(temperature):
      return jax.grad(lambda p: jnp.sum(
          SpikeAndSlab(p, 1., 1.).relaxed_sample(key, temperature)[1]))(
              spike_prob)

    def saturated(temperature):
      return float(jnp.mean(jnp.abs(per_entry_grad(temperature)) < 1e-3))

    self.assertLess(saturated(1.), 0.01)
    self.assertGreater(saturated(0.01), 0.9)
    # Near the hard limit, the straight-through gradient estimates that of
    # P(spike) = spike_prob, which is 1.
    self.assertAlmostEqual(float(jnp.mean(per_entry_grad(0.05))), 1.,
                           delta=0.05)

  def test_relaxed_sample_vmaps_over_temperature(self):
    # A sweep vmaps over the temperature; with one key, the forward values
    # cannot depend on it (hardening at 0.5 undoes the division).
    dist = SpikeAndSlab(jnp.full((1000,), 0.4), 0.5, 1.2)
    z_TxB, s_TxB = jax.jit(jax.vmap(
        lambda t: dist.relaxed_sample(jax.random.PRNGKey(7), t)))(
            jnp.array([0.1, 0.5, 2.]))
    self.assertEqual(z_TxB.shape, (3, 1000))
    np.testing.assert_array_equal(s_TxB, np.broadcast_to(s_TxB[0], (3, 1000)))
    np.testing.assert_array_equal(z_TxB, np.broadcast_to(z_TxB[0], (3, 1000)))

  def test_passes_through_jit(self):
    dist = SpikeAndSlab(jnp.array([0.1, 0.7]), 0.5, 1.2, spike_scale=0.1)
    value = jnp.array([0.02, -1.])
    np.testing.assert_allclose(
        jax.jit(lambda d, v: d.log_prob(v))(dist, value),
        dist.log_prob(value), rtol=1e-6)
    self.assertEqual(jax.jit(lambda d: d)(dist).eps, dist.eps)

  def test_relaxed_sample_grads_are_finite_and_nonzero(self):
    def loss(p, m, s, temperature):
      z, spike = SpikeAndSlab(p, m, s).relaxed_sample(
          jax.random.PRNGKey(5), temperature)
      return jnp.sum(jnp.square(z - 0.3)) + jnp.sum(spike)

    n = 256
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(
        jnp.full((n,), 0.4), jnp.full((n,), 0.5), jnp.full((n,), 1.2),
        jnp.array(0.5))
    for g in grads:
      self.assertEqual(g.shape, (n,))
      self.assertTrue(np.all(np.isfinite(g)))
      self.assertGreater(float(jnp.sum(jnp.abs(g))), 0.)

  def test_sample_values_are_the_mixtures_draws(self):
    # The implicit gradients change no forward value.
    spike_prob, loc = jnp.array([0., 0.3, 1.]), jnp.array([2., -1., 0.5])
    key = jax.random.PRNGKey(8)
    mixture = distrax.MixtureSameFamily(
        distrax.Categorical(logits=jnp.log(jnp.stack(
            [spike_prob + _EPS, 1 - spike_prob + _EPS], -1))),
        distrax.Normal(jnp.stack([jnp.zeros(3), loc], -1),
                       jnp.stack([jnp.full(3, 0.05), jnp.full(3, 0.7)], -1)))
    np.testing.assert_array_equal(
        SpikeAndSlab(spike_prob, loc, 0.7).sample(seed=key, sample_shape=50),
        mixture.sample(seed=key, sample_shape=50))

  @chex.variants(with_jit=True, without_jit=True)
  def test_sample_gradients_match_closed_form(self):
    # f mixes a bump at spike scale with a linear part, so every parameter
    # moves E[f(z)]; under N(m, s^2) its expectation is closed form.
    c = 0.1

    def f(z):
      return z + jnp.exp(-jnp.square(z) / (2 * c**2))

    def expected(spike_prob, loc, scale, spike_scale):
      def gaussian(m, s):
        v = c**2 + s**2
        return m + c / jnp.sqrt(v) * jnp.exp(-m**2 / (2 * v))
      w = _guarded(spike_prob)
      return w * gaussian(0., spike_scale) + (1 - w) * gaussian(loc, scale)

    params = (0.3, 0.4, 0.6, 0.05)  # spike_prob, loc, scale, spike_scale
    grads = self.variant(
        lambda *p: _per_sample_grads(SpikeAndSlab, p, f,
                                     jax.random.PRNGKey(9), 200_000))(*params)
    _assert_monte_carlo_close(
        grads, jax.grad(expected, argnums=(0, 1, 2, 3))(*params))

  @chex.variants(with_jit=True, without_jit=True)
  def test_cdf_matches_scipy(self):
    spike_prob = jnp.array([[0.], [0.3], [1.]])
    value = jnp.array([-1., -0.02, 0., 0.05, 0.9])
    cdf = self.variant(lambda p, v: SpikeAndSlab(p, 0.4, 0.7).cdf(v))(
        spike_prob, value)
    w = _guarded(np.asarray(spike_prob))
    expected = (w * stats.norm.cdf(value, 0., 0.05)
                + (1 - w) * stats.norm.cdf(value, 0.4, 0.7))
    np.testing.assert_allclose(cdf, expected, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_entropy_matches_quadrature(self):
    # Spike-heavy, overlapping, separated, a slab narrower than the spike,
    # equal components (entropy of one Gaussian), a near-certain spike.
    cases = np.array([
        # spike_prob, loc, scale, spike_scale
        [0.8, 0., 1., 0.05],
        [0.3, 0.2, 0.25, 0.2],
        [0.1, 10., 1., 0.05],
        [0.9, 0.1, 0.01, 1.],
        [0.5, 0., 1., 1.],
        [1., 1., 1., 0.05],
    ])
    entropy = self.variant(lambda *a: SpikeAndSlab(*a).entropy())(*cases.T)
    expected = [_entropy_by_quadrature(_guarded(p), m, s, ss)
                for p, m, s, ss in cases]
    np.testing.assert_allclose(entropy, expected, rtol=1e-5, atol=1e-5)
    self.assertAlmostEqual(float(entropy[4]),
                           0.5 * np.log(2 * np.pi * np.e), delta=1e-6)

  def test_entropy_gradient_matches_finite_differences(self):
    params = np.array([0.3, 0.4, 0.6, 0.05])
    grads = jax.jit(jax.grad(
        lambda p: SpikeAndSlab(*p).entropy()))(jnp.asarray(params))
    h = 1e-5
    for i, grad in enumerate(np.asarray(grads)):
      step = h * np.eye(4)[i]
      difference = (_entropy_by_quadrature(_guarded(params[0] + step[0]),
                                           *(params + step)[1:])
                    - _entropy_by_quadrature(_guarded(params[0] - step[0]),
                                             *(params - step)[1:])) / (2 * h)
      self.assertAlmostEqual(float(grad), difference, delta=1e-3)

  @chex.variants(with_jit=True, without_jit=True)
  def test_mode_matches_a_grid_search(self):
    cases = np.array([
        # spike_prob, loc, scale, spike_scale
        [0.3, 2., 0.5, 0.05],   # two modes, the spike's higher
        [0.01, 2., 0.5, 0.05],  # two modes, the slab's higher
        [0.5, 0.15, 1., 0.1],   # one mode, near the spike
        [0.4, -0.3, 0.2, 0.2],  # one mode, well between the means
    ])
    mode = self.variant(lambda *a: SpikeAndSlab(*a).mode())(*cases.T)
    grid = np.linspace(-3., 3., 600_001)
    for (p, m, s, ss), got in zip(cases, np.asarray(mode)):
      expected = grid[np.argmax(_density(_guarded(p), m, s, ss)(grid))]
      self.assertAlmostEqual(float(got), expected, delta=2e-5)
    self.assertTrue(-0.25 < float(mode[3]) < -0.05)

  @parameterized.named_parameters(
      ("int", 1, (3,)),
      ("slice", np.s_[1:, ::2], (1, 2)),
      ("ellipsis", np.s_[..., -1], (2,)),
  )
  def test_getitem(self, index, batch_shape):
    dist = SpikeAndSlab(jnp.array([[0.1], [0.6]]), jnp.arange(3.), 0.8,
                        spike_scale=jnp.array([0.05, 0.1, 0.2]), eps=1e-3)
    sliced = dist[index]
    self.assertIsInstance(sliced, SpikeAndSlab)
    self.assertEqual(sliced.batch_shape, batch_shape)
    self.assertEqual(sliced.eps, 1e-3)
    value = jnp.array([[0.02, 1., -0.5], [0.3, 2., 0.]])
    np.testing.assert_array_equal(sliced.log_prob(value[index]),
                                  dist.log_prob(value)[index])
    np.testing.assert_array_equal(sliced.spike_scale,
                                  dist.spike_scale[index])

  def test_vmap_returns_a_working_distribution(self):
    # Batch (3,) inside the map: the scalar scale and the (3,) loc must both
    # gain the leading axis of 4 (distrax.Normal(0., s * jnp.ones(3)) fails).
    probs = jnp.array([0., 0.2, 0.7, 1.])
    dist = jax.vmap(lambda p: SpikeAndSlab(p, jnp.arange(3.), 0.5))(probs)
    direct = SpikeAndSlab(probs[:, None], jnp.arange(3.), 0.5)
    self.assertEqual(dist.batch_shape, (4, 3))
    np.testing.assert_array_equal(dist.spike_prob, direct.spike_prob)
    np.testing.assert_array_equal(dist.scale, direct.scale)
    np.testing.assert_array_equal(dist.variance(), direct.variance())
    key = jax.random.PRNGKey(10)
    np.testing.assert_array_equal(dist.sample(seed=key, sample_shape=2),
                                  direct.sample(seed=key, sample_shape=2))
    # And mapped over as an input, every parameter has the axis to map.
    np.testing.assert_allclose(jax.vmap(lambda d: d.entropy())(dist),
                               direct.entropy(), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_kl_matches_closed_form(self):
    tfd = pytest.importorskip(
        "tensorflow_probability.substrates.jax").distributions
    q_prob, q_loc = np.array([0., 0.4, 0.9]), np.array([1., -1., 0.])
    q_scale = 0.5
    p_prob, p_scale = 0.8, 1.3
    for q_spike_scale in (0.05, 0.2):  # shared with p's, then not
      q = SpikeAndSlab(q_prob, q_loc, q_scale, spike_scale=q_spike_scale)
      p = SpikeAndSlab(p_prob, 0., p_scale)
      kl = self.variant(lambda q, p: q.kl_divergence(p))(q, p)
      np.testing.assert_allclose(
          kl, self.variant(tfd.kl_divergence)(q, p), rtol=1e-6)

      def normal_kl(m1, s1, m2, s2):
        return np.log(s2 / s1) + (s1**2 + (m1 - m2)**2) / (2 * s2**2) - 0.5

      qw, pw = _guarded(q_prob), _guarded(p_prob)
      bernoulli_kl = (qw * np.log(qw / pw)
                      + (1 - qw) * np.log((1 - qw) / (1 - pw)))
      expected = (bernoulli_kl
                  + qw * normal_kl(0., q_spike_scale, 0., 0.05)
                  + (1 - qw) * normal_kl(q_loc, q_scale, 0., p_scale))
      self.assertEqual(kl.shape, (3,))
      np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-6)

  def test_kl_bounds_the_marginal_kl(self):
    def joint_and_marginal_kl(loc):
      q_args, p_args = (0.3, loc, 0.5), (0.7, loc, 1.)
      q = _density(_guarded(q_args[0]), *q_args[1:], 0.05)
      p = _density(_guarded(p_args[0]), *p_args[1:], 0.05)
      marginal = _quad(lambda z: q(z) * (np.log(max(q(z), 1e-300))
                                         - np.log(max(p(z), 1e-300))), loc, 1.)
      joint = SpikeAndSlab(*q_args).kl_divergence(SpikeAndSlab(*p_args))
      return float(joint), marginal

    # Tight when the spike and slab do not overlap: z tells the indicator.
    joint, marginal = joint_and_marginal_kl(8.)
    self.assertAlmostEqual(joint, marginal, delta=1e-5)
    # Strictly above when they do.
    joint, marginal = joint_and_marginal_kl(0.)
    self.assertGreater(joint, marginal + 0.05)

class HierarchicalSpikeSlabTest(chex.TestCase):

  def test_batch_shape_broadcast(self):
    dist = HierarchicalSpikeSlab(
        jnp.ones((4, 1)), jnp.ones((1, 5)), spike_scale=jnp.full((5,), 0.05))
    self.assertEqual(dist.event_shape, ())
    self.assertEqual(dist.batch_shape, (4, 5))
    self.assertEqual(dist.gamma_prior.batch_shape, (4, 5))
    self.assertEqual(dist.mean().shape, (4, 5))
    self.assertEqual(dist.variance().shape, (4, 5))
    self.assertEqual(HierarchicalSpikeSlab(4., 1.).batch_shape, ())

  @parameterized.named_parameters(
      ("scalar", (), ()),
      ("vector", (3,), 7),
      ("matrix", (2, 3), (4, 5)),
  )
  def test_sample_shapes(self, batch_shape, sample_shape):
    dist = HierarchicalSpikeSlab(jnp.full(batch_shape, 4.), 1.)
    n_shape = (sample_shape,) if isinstance(sample_shape, int) else sample_shape

    def draw(key):
      return (dist.sample(seed=key, sample_shape=sample_shape),
              dist.sample_and_log_prob(seed=key, sample_shape=sample_shape))

    samples, (samples_too, log_prob) = jax.eval_shape(
        draw, jax.random.PRNGKey(0))
    self.assertEqual(samples.shape, n_shape + batch_shape)
    self.assertEqual(samples_too.shape, n_shape + batch_shape)
    self.assertEqual(log_prob.shape, n_shape + batch_shape)

  def test_parts(self):
    dist = HierarchicalSpikeSlab(4., 1., spike_scale=0.1, slab_scale=2.)
    self.assertIsInstance(dist.gamma_prior, distrax.Beta)
    np.testing.assert_allclose(dist.gamma_prior.mean(), 0.8)
    conditional = dist.conditional(jnp.array([0.1, 0.9]))
    self.assertIsInstance(conditional, SpikeAndSlab)
    np.testing.assert_allclose(conditional.spike_prob, [0.1, 0.9])
    np.testing.assert_allclose(conditional.loc, [0., 0.])
    np.testing.assert_allclose(conditional.scale, [2., 2.])
    np.testing.assert_allclose(conditional.spike_scale, [0.1, 0.1])

  @chex.variants(with_jit=True, without_jit=True)
  def test_log_prob_matches_tfp_marginal(self):
    tfd = pytest.importorskip(
        "tensorflow_probability.substrates.jax").distributions
    alpha = jnp.array([[4.], [0.5], [2.]])
    beta = jnp.array([1., 3.])
    value = jnp.array([0., 0.02, -0.3, 2.5])[:, None, None]
    log_prob = self.variant(
        lambda a, b, v: HierarchicalSpikeSlab(a, b).log_prob(v))(
            alpha, beta, value)
    spike_prob = alpha / (alpha + beta)
    expected = _tfp_log_prob(
        tfd, spike_prob, 1 - spike_prob, 0., 1., 0.05, value)
    self.assertEqual(log_prob.shape, (4, 3, 2))
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5, atol=1e-5)

  @parameterized.parameters((4., 1.), (2., 3.), (0.7, 1.5))
  def test_log_prob_matches_quadrature(self, alpha, beta):
    values = np.array([0., 0.04, 0.15, 1., 3.])
    log_prob = HierarchicalSpikeSlab(alpha, beta).log_prob(values)
    for value, lp in zip(values, np.asarray(log_prob)):
      density, _ = integrate.quad(
          lambda g, v=value: stats.beta.pdf(g, alpha, beta) * (
              g * stats.norm.pdf(v, 0., 0.05)
              + (1 - g) * stats.norm.pdf(v, 0., 1.)), 0., 1.)
      self.assertAlmostEqual(float(lp), np.log(density), delta=1e-5)

  def test_log_prob_matches_monte_carlo_marginal(self):
    _, gamma_N = _draws()
    values_V = jnp.array([0., 0.04, 0.15, 1., 3.])

    @jax.jit
    def log_probs(gamma_N):
      dist = HierarchicalSpikeSlab(_ALPHA, _BETA)
      conditional_NxV = dist.conditional(gamma_N[:, None]).log_prob(values_V)
      monte_carlo_V = (jax.nn.logsumexp(conditional_NxV, axis=0)
                       - np.log(_NUM_DRAWS))
      return dist.log_prob(values_V), monte_carlo_V

    np.testing.assert_allclose(*log_probs(gamma_N), atol=1e-2)

  def test_sample_statistics(self):
    z_N, gamma_N = _draws()
    near_zero = (0.8 * (2 * stats.norm.cdf(0.2 / 0.05) - 1)
                 + 0.2 * (2 * stats.norm.cdf(0.2) - 1))
    self.assertAlmostEqual(np.mean(np.abs(z_N) < 0.2), near_zero, delta=0.01)
    self.assertAlmostEqual(np.mean(z_N), 0., delta=0.01)
    self.assertAlmostEqual(
        np.var(z_N), float(HierarchicalSpikeSlab(_ALPHA, _BETA).variance()),
        delta=0.01)
    self.assertAlmostEqual(np.mean(gamma_N), 0.8, delta=0.01)

  def test_vmap_over_alpha(self):
    alphas = jnp.array([0.5, 1., 4., 10.])
    values = jnp.array([0., 0.1, 2.])

    def log_prob(alpha):
      return jnp.sum(HierarchicalSpikeSlab(alpha, 1.).log_prob(values))

    def batched_log_prob(alphas):
      return jnp.sum(
          HierarchicalSpikeSlab(alphas[:, None], 1.).log_prob(values), axis=-1)

    np.testing.assert_allclose(
        jax.jit(jax.vmap(log_prob))(alphas),
        jax.jit(batched_log_prob)(alphas), rtol=1e-6)
    # Each alpha's log_prob depends on it alone, so the batched sum's gradient
    # holds the per-alpha gradients.
    np.testing.assert_allclose(
        jax.jit(jax.vmap(jax.grad(log_prob)))(alphas),
        jax.jit(jax.grad(lambda a: jnp.sum(batched_log_prob(a))))(alphas),
        rtol=1e-5)

  def test_passes_through_jit(self):
    dist = HierarchicalSpikeSlab(jnp.array([4., 0.5]), 1.)
    value = jnp.array([0.02, -1.])
    np.testing.assert_allclose(
        jax.jit(lambda d, v: d.log_prob(v))(dist, value),
        dist.log_prob(value), rtol=1e-6)

  def test_log_prob_grads_match_closed_form(self):
    alpha, beta = 4., 1.
    values = jnp.array([0., 0.1, 2.])
    grad_alpha, grad_beta = jax.jit(jax.grad(
        lambda a, b: jnp.sum(HierarchicalSpikeSlab(a, b).log_prob(values)),
        argnums=(0, 1)))(jnp.array(alpha), jnp.array(beta))
    # d/da log(m N_spike + (1 - m) N_slab) with m = a / (a + b).
    spike = stats.norm.pdf(np.asarray(values), 0., 0.05)
    slab = stats.norm.pdf(np.asarray(values), 0., 1.)
    m = alpha / (alpha + beta)
    dlog_dm = (spike - slab) / (m * spike + (1 - m) * slab)
    dm_da, dm_db = beta / (alpha + beta)**2, -alpha / (alpha + beta)**2
    self.assertNotEqual(float(grad_alpha), 0.)
    self.assertNotEqual(float(grad_beta), 0.)
    np.testing.assert_allclose(grad_alpha, np.sum(dlog_dm) * dm_da, rtol=1e-4)
    np.testing.assert_allclose(grad_beta, np.sum(dlog_dm) * dm_db, rtol=1e-4)

  @chex.variants(with_jit=True, without_jit=True)
  def test_sample_gradients_match_closed_form(self):
    # A bump at spike scale plus z^2: under N(0, s^2) each has a closed-form
    # expectation, and together they move with all four parameters.
    c = 0.1

    def f(z):
      return jnp.exp(-jnp.square(z) / (2 * c**2)) + jnp.square(z)

    def expected(alpha, beta, spike_scale, slab_scale):
      def gaussian(s):
        return c / jnp.sqrt(c**2 + s**2) + s**2
      m = alpha / (alpha + beta)
      return m * gaussian(spike_scale) + (1 - m) * gaussian(slab_scale)

    params = (_ALPHA, _BETA, 0.05, 1.)
    grads = self.variant(
        lambda *p: _per_sample_grads(HierarchicalSpikeSlab, p, f,
                                     jax.random.PRNGKey(11), 200_000))(*params)
    _assert_monte_carlo_close(
        grads, jax.grad(expected, argnums=(0, 1, 2, 3))(*params))

  def test_gamma_prior_sample_gradients_match_closed_form(self):
    # distrax.Beta's draws carry implicit gradients: d E[gamma] / d(alpha, beta)
    # = (beta, -alpha) / (alpha + beta)^2.
    def gamma_prior(alpha, beta):
      return HierarchicalSpikeSlab(alpha, beta).gamma_prior

    grads = jax.jit(lambda a, b: _per_sample_grads(
        gamma_prior, (a, b), lambda g: g, jax.random.PRNGKey(12), 100_000))(
            _ALPHA, _BETA)
    total = _ALPHA + _BETA
    _assert_monte_carlo_close(grads, (_BETA / total**2, -_ALPHA / total**2))

  def test_vmap_returns_a_working_distribution(self):
    # Batch (3,) inside the map, from a scalar alpha and a (3,) beta: both must
    # gain the leading axis of 4.
    alphas, betas = jnp.array([0.5, 1., 4., 10.]), jnp.array([1., 2., 3.])
    dist = jax.vmap(lambda a: HierarchicalSpikeSlab(a, betas))(alphas)
    direct = HierarchicalSpikeSlab(alphas[:, None], betas)
    self.assertEqual(dist.batch_shape, (4, 3))
    np.testing.assert_array_equal(dist.alpha, direct.alpha)
    np.testing.assert_array_equal(dist.slab_scale, direct.slab_scale)
    np.testing.assert_array_equal(dist.variance(), direct.variance())
    self.assertEqual(dist.gamma_prior.batch_shape, (4, 3))
    key = jax.random.PRNGKey(13)
    np.testing.assert_array_equal(dist.sample(seed=key, sample_shape=2),
                                  direct.sample(seed=key, sample_shape=2))
    np.testing.assert_allclose(
        jax.vmap(lambda d: d.log_prob(0.1))(dist), direct.log_prob(0.1),
        rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_beta_posterior_kl_to_gamma_prior_matches_quadrature(self):
    a, b = jnp.array([0.7, 2., 30.]), jnp.array([1.5, 2., 5.])
    kl = self.variant(lambda a, b, alpha: distrax.Beta(a, b).kl_divergence(
        HierarchicalSpikeSlab(alpha, _BETA).gamma_prior))(a, b, _ALPHA)
    self.assertEqual(kl.shape, (3,))
    for got, a_i, b_i in zip(np.asarray(kl), np.asarray(a), np.asarray(b)):
      q, p = stats.beta(a_i, b_i), stats.beta(_ALPHA, _BETA)
      expected, _ = integrate.quad(
          lambda g, q=q, p=p: q.pdf(g) * (q.logpdf(g) - p.logpdf(g)), 0., 1.,
          limit=200)
      self.assertAlmostEqual(float(got), expected, delta=1e-4 * expected)

  def test_entropy_matches_quadrature_and_monte_carlo(self):
    dist = HierarchicalSpikeSlab(
        jnp.array([_ALPHA, 0.5, 2.]), jnp.array([_BETA, 3., 2.]),
        spike_scale=jnp.array([0.05, 0.05, 0.3]))
    entropy = np.asarray(jax.jit(lambda d: d.entropy())(dist))
    for got, a, b, spike_scale in zip(entropy, dist.alpha, dist.beta,
                                      dist.spike_scale):
      expected = _entropy_by_quadrature(
          float(a / (a + b)), 0., 1., float(spike_scale))
      self.assertAlmostEqual(float(got), expected, delta=1e-5)
    z_N, _ = _draws()
    surprise_N = -np.asarray(
        jax.jit(HierarchicalSpikeSlab(_ALPHA, _BETA).log_prob)(z_N))
    self.assertAlmostEqual(
        surprise_N.mean(), entropy[0],
        delta=5 * surprise_N.std() / np.sqrt(_NUM_DRAWS))

  def test_mode_and_getitem(self):
    dist = HierarchicalSpikeSlab(jnp.array([[4.], [0.5]]), jnp.arange(1., 4.),
                                 slab_scale=2.)
    np.testing.assert_array_equal(dist.mode(), np.zeros((2, 3)))
    sliced = dist[1, 1:]
    self.assertIsInstance(sliced, HierarchicalSpikeSlab)
    self.assertEqual(sliced.batch_shape, (2,))
    np.testing.assert_array_equal(sliced.alpha, [0.5, 0.5])
    np.testing.assert_array_equal(sliced.beta, [2., 3.])
    np.testing.assert_array_equal(sliced.slab_scale, [2., 2.])
    np.testing.assert_array_equal(sliced.log_prob(0.3),
                                  dist.log_prob(0.3)[1, 1:])
