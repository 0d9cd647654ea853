"""KL estimators against brute force, and the reconstruction term against a hand computation."""

import functools
import math

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from hsvae_jax import objectives
from hsvae_jax.hparams import HParams
from hsvae_jax.latents import GaussianLatent, HSVAELatent

HP = HParams(alpha=jnp.float32(4.0), beta=jnp.float32(1.0), z_reg_weight=jnp.float32(0.01),
             gamma_reg_weight=jnp.float32(0.01), temperature=jnp.float32(0.5))
POSTERIOR = {  # three dimensions: mostly slab, undecided, mostly spike
    "mu": jnp.array([[1.5, -0.5, 0.3]]),
    "sigma": jnp.array([[0.3, 0.8, 0.1]]),
    "a": jnp.array([[1.0, 2.0, 6.0]]),
    "b": jnp.array([[5.0, 2.0, 1.5]]),
}


@functools.cache
def _hsvae_mc_kl_draws() -> np.ndarray:
  """40,000 independent one-sample KL_z estimates of HSVAE's mc estimator, each for a fresh (gamma, z) from the
  posterior. Made once: two tests read them, and compiling the Beta sampler takes seconds."""
  latent = HSVAELatent(latent_dim=3, kl_z="mc")

  def one(key):
    sample = latent.sample(POSTERIOR, key, HP.temperature)
    return latent.kl(POSTERIOR, sample, HP)[0][0]
  return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), 40_000)))


def _normal_pdf(z: float, loc: float, scale: float) -> float:
  """scipy.stats.norm.pdf at one point, without its per-call overhead: quad calls it some 10^5 times."""
  return math.exp(-0.5 * ((z - loc) / scale) ** 2) / (scale * math.sqrt(2 * math.pi))


def _mixture_pdf(z, spike_prob, loc, scale, spike_scale=0.05):
  return spike_prob * _normal_pdf(z, 0, spike_scale) + (1 - spike_prob) * _normal_pdf(z, loc, scale)


def _quadrature_kl(gamma, mu, sigma):
  """KL(gamma N(0,.05) + (1-gamma) N(mu,sigma) || gamma N(0,.05) + (1-gamma) N(0,1)) by quadrature."""
  def integrand(z):
    q = _mixture_pdf(z, gamma, mu, sigma)
    p = _mixture_pdf(z, gamma, 0.0, 1.0)
    return q * (math.log(q) - math.log(p)) if q > 0 else 0.0
  points = sorted({0.0, float(mu)})
  return scipy.integrate.quad(integrand, -12, 12, points=points, limit=200)[0]


def test_hsvae_mc_kl_is_unbiased_for_the_expected_mixture_kl():
  draws = _hsvae_mc_kl_draws()
  brute = 0.0
  for d in range(3):
    a, b = float(POSTERIOR["a"][0, d]), float(POSTERIOR["b"][0, d])
    gammas = scipy.stats.beta.ppf((np.arange(40) + 0.5) / 40, a, b)  # the expectation over gamma by quantiles
    brute += np.mean([_quadrature_kl(g, float(POSTERIOR["mu"][0, d]), float(POSTERIOR["sigma"][0, d]))
                      for g in gammas])
  stderr = draws.std() / np.sqrt(draws.size)
  assert abs(draws.mean() - brute) < 4 * stderr + 0.02 * brute


def test_hsvae_analytic_kl_matches_indicator_brute_force_and_bounds_mc():
  latent = HSVAELatent(latent_dim=3, kl_z="analytic")
  analytic = float(latent.kl(POSTERIOR, {}, HP)[0][0])
  # Brute force over (gamma, s, z): the indicator's log-probabilities cancel, the slab branch remains.
  rng = np.random.default_rng(1)
  total = 0.0
  for d in range(3):
    a, b = float(POSTERIOR["a"][0, d]), float(POSTERIOR["b"][0, d])
    mu, sigma = float(POSTERIOR["mu"][0, d]), float(POSTERIOR["sigma"][0, d])
    slab = rng.random(200_000) > rng.beta(a, b, size=200_000)
    z = mu + sigma * rng.standard_normal(slab.sum())
    log_ratio = scipy.stats.norm.logpdf(z, mu, sigma) - scipy.stats.norm.logpdf(z, 0.0, 1.0)
    total += log_ratio.sum() / slab.size
  assert analytic == pytest.approx(total, rel=0.02)
  mc_mean = _hsvae_mc_kl_draws().mean()
  assert analytic > mc_mean  # conditioning on the indicator can only add information


def test_hsvae_kl_gamma_is_closed_form_beta_kl():
  # KL_gamma is the same whichever estimator KL_z takes; the analytic one needs no sample.
  _, kl_gamma = HSVAELatent(latent_dim=3, kl_z="analytic").kl(POSTERIOR, {}, HP)
  a, b = np.asarray(POSTERIOR["a"][0]), np.asarray(POSTERIOR["b"][0])
  grid = np.linspace(1e-6, 1 - 1e-6, 400_001)
  brute = 0.0
  for d in range(3):
    q = scipy.stats.beta.pdf(grid, a[d], b[d])
    p = scipy.stats.beta.pdf(grid, 4.0, 1.0)
    brute += np.trapezoid(np.where(q > 0, q * (np.log(q + 1e-300) - np.log(p + 1e-300)), 0.0), grid)
  assert float(kl_gamma[0]) == pytest.approx(brute, rel=1e-3)


def test_gaussian_mc_and_analytic_agree():
  posterior = {k: POSTERIOR[k] for k in ("mu", "sigma")}
  analytic = float(GaussianLatent(latent_dim=3, kl_z="analytic").kl(posterior, {}, HP)[0][0])
  latent = GaussianLatent(latent_dim=3, kl_z="mc")
  keys = jax.random.split(jax.random.key(0), 50_000)
  draws = jax.vmap(lambda k: latent.kl(posterior, latent.sample(posterior, k, HP.temperature), HP)[0][0])(keys)
  assert float(draws.mean()) == pytest.approx(analytic, abs=4 * float(draws.std()) / np.sqrt(50_000))
  expected = sum(float(distrax.Normal(m, s).kl_divergence(distrax.Normal(0.0, 1.0)))
                 for m, s in zip(posterior["mu"][0], posterior["sigma"][0]))
  assert analytic == pytest.approx(expected, rel=1e-6)


def test_hsvae_codes_zero_where_spike_is_likely():
  codes = HSVAELatent(latent_dim=3).codes(POSTERIOR)
  slab_prob = np.asarray(POSTERIOR["b"] / (POSTERIOR["a"] + POSTERIOR["b"]))
  np.testing.assert_allclose(codes.slab_prob_BxZ, slab_prob, rtol=1e-6)
  np.testing.assert_array_equal(codes.code_BxZ, np.where(slab_prob > 0.5, POSTERIOR["mu"], 0.0))
  assert (np.asarray(codes.code_BxZ) == 0).sum() == 2


def test_sequence_nll_sums_real_tokens_only():
  rng = np.random.default_rng(0)
  logits_LxBxV = jnp.asarray(rng.normal(size=(4, 2, 5)), jnp.float32)
  tokens_BxL = jnp.array([[3, 4, 1, 0], [2, 2, 3, 1]])
  lengths_B = jnp.array([3, 4])
  log_probs = jax.nn.log_softmax(logits_LxBxV, axis=-1)
  expected = [-sum(float(log_probs[t, b, tokens_BxL[b, t]]) for t in range(int(lengths_B[b]))) for b in range(2)]
  logits_BLxV = jnp.swapaxes(logits_LxBxV, 0, 1).reshape(8, 5)  # batch-major, flat
  nll = objectives.sequence_nll(lambda x: x, logits_BLxV, tokens_BxL, lengths_B)
  np.testing.assert_allclose(nll, expected, rtol=1e-5)


@functools.partial(jax.jit, static_argnames="capacity")
def _tanh_projection_nll(states_BLxH, kernel_HxV, tokens_BxL, lengths_B, capacity):
  """sequence_nll through a tanh and kernel_HxV, jitted as training runs it: one program a capacity, whatever
  the tokens."""
  return objectives.sequence_nll(lambda x: jnp.tanh(x) @ kernel_HxV, states_BLxH, tokens_BxL, lengths_B, capacity)


_tanh_projection_nll_grad = jax.jit(
    jax.grad(lambda *args, capacity: _tanh_projection_nll(*args, capacity=capacity).sum(), (0, 1)),
    static_argnames="capacity")


@pytest.mark.parametrize("lengths", [(3, 9, 1, 12, 5, 2), (12, 12, 11, 12, 12, 10)], ids=["fit", "overflow"])
def test_sequence_nll_on_real_rows_only_has_the_every_row_value_and_gradient(lengths):
  """A capacity of half the 6 x 12 rows (40 after rounding up): the first batch's 32 real rows fit, the second's 69 do not."""
  batch, length, hidden, vocab = 6, 12, 7, 9
  keys = jax.random.split(jax.random.key(0), 3)
  states_BLxH = jax.random.normal(keys[0], (batch * length, hidden))
  kernel_HxV = jax.random.normal(keys[1], (hidden, vocab))
  tokens_BxL = jax.random.randint(keys[2], (batch, length), 0, vocab)
  lengths_B = jnp.array(lengths)
  args = states_BLxH, kernel_HxV, tokens_BxL, lengths_B

  per_sentence = {c: _tanh_projection_nll(*args, capacity=c) for c in (1.0, 0.5)}
  np.testing.assert_allclose(per_sentence[0.5], per_sentence[1.0], rtol=1e-6)
  grads = {c: _tanh_projection_nll_grad(*args, capacity=c) for c in (1.0, 0.5)}
  chex.assert_trees_all_close(grads[0.5], grads[1.0], rtol=1e-5, atol=1e-6)
  # Padding's states get no gradient.
  real_BL = (jnp.arange(length)[None, :] < lengths_B[:, None]).reshape(-1)
  assert not np.any(grads[0.5][0][~real_BL]) and np.all(np.any(grads[0.5][0][real_BL], axis=-1))


def test_hsvae_gamma_sample_has_the_reparameterisation_gradient_of_the_beta_mean():
  """d E[gamma] / d(a, b) by Monte Carlo through the sampler equals that of a / (a + b)."""
  latent = HSVAELatent(latent_dim=3)

  def mean_gamma(a, b, key):
    return latent.sample(POSTERIOR | {"a": a, "b": b}, key, HP.temperature)["gamma"][0]

  keys = jax.random.split(jax.random.key(3), 20_000)
  per_dim = lambda f: jax.jit(jax.vmap(jax.jacfwd(f, (0, 1)), (None, None, 0)))(
      POSTERIOR["a"], POSTERIOR["b"], keys)
  grad_a, grad_b = (np.diagonal(np.asarray(g).mean(0)[:, 0], axis1=0, axis2=1) for g in per_dim(mean_gamma))
  a, b = np.asarray(POSTERIOR["a"][0]), np.asarray(POSTERIOR["b"][0])
  np.testing.assert_allclose(grad_a, b / (a + b) ** 2, rtol=0.05)
  np.testing.assert_allclose(grad_b, -a / (a + b) ** 2, rtol=0.05)


def test_sequence_nll_refuses_a_batch_that_does_not_split_into_the_data_shards():
  states_BLxH, tokens_BxL, lengths_B = jnp.zeros((6 * 4, 3)), jnp.zeros((6, 4), jnp.int32), jnp.full(6, 4)
  with pytest.raises(ValueError, match="a batch of 6 sentences does not split into 4 data shards"):
    objectives.sequence_nll(lambda x: x, states_BLxH, tokens_BxL, lengths_B, 0.5, data_shards=4)
  assert objectives.sequence_nll(lambda x: x, states_BLxH, tokens_BxL, lengths_B, 0.5, data_shards=3).shape == (6,)
