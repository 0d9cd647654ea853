"""KL estimators against brute force, and HSVAE's codes and gamma sample."""

import functools
import math

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from hsvae_jax.hparams import HParams
from hsvae_jax.latents import GaussianLatent, HSVAELatent
from hsvae_jax.latents.gaussian import GaussianPosterior
from hsvae_jax.latents.hsvae import HSVAEPosterior

HP = HParams(alpha=jnp.float32(4.0), beta=jnp.float32(1.0), z_reg_weight=jnp.float32(0.01),
             gamma_reg_weight=jnp.float32(0.01), temperature=jnp.float32(0.5))
POSTERIOR = HSVAEPosterior(  # three dimensions: mostly slab, undecided, mostly spike
    mu_BxZ=jnp.array([[1.5, -0.5, 0.3]]),
    sigma_BxZ=jnp.array([[0.3, 0.8, 0.1]]),
    a_BxZ=jnp.array([[1.0, 2.0, 6.0]]),
    b_BxZ=jnp.array([[5.0, 2.0, 1.5]]),
)


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
  """scipy.stats.norm.pdf at one point without its per-call overhead: quad calls it some 10^5 times."""
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
    a, b = float(POSTERIOR.a_BxZ[0, d]), float(POSTERIOR.b_BxZ[0, d])
    gammas = scipy.stats.beta.ppf((np.arange(40) + 0.5) / 40, a, b)  # the expectation over gamma by quantiles
    brute += np.mean([_quadrature_kl(g, float(POSTERIOR.mu_BxZ[0, d]), float(POSTERIOR.sigma_BxZ[0, d]))
                      for g in gammas])
  stderr = draws.std() / np.sqrt(draws.size)
  assert abs(draws.mean() - brute) < 4 * stderr + 0.02 * brute


def test_hsvae_analytic_kl_matches_indicator_brute_force_and_bounds_mc():
  latent = HSVAELatent(latent_dim=3, kl_z="analytic")
  analytic = float(latent.kl(POSTERIOR, None, HP)[0][0])  # the beta gate's analytic KL reads no sample
  # Brute force over (gamma, s, z): the indicator's log-probabilities cancel, the slab branch remains.
  rng = np.random.default_rng(1)
  total = 0.0
  for d in range(3):
    a, b = float(POSTERIOR.a_BxZ[0, d]), float(POSTERIOR.b_BxZ[0, d])
    mu, sigma = float(POSTERIOR.mu_BxZ[0, d]), float(POSTERIOR.sigma_BxZ[0, d])
    slab = rng.random(200_000) > rng.beta(a, b, size=200_000)
    z = mu + sigma * rng.standard_normal(slab.sum())
    log_ratio = scipy.stats.norm.logpdf(z, mu, sigma) - scipy.stats.norm.logpdf(z, 0.0, 1.0)
    total += log_ratio.sum() / slab.size
  assert analytic == pytest.approx(total, rel=0.02)
  mc_mean = _hsvae_mc_kl_draws().mean()
  assert analytic > mc_mean  # conditioning on the indicator can only add information


def test_hsvae_kl_gamma_is_closed_form_beta_kl():
  # KL_gamma is the same whichever estimator KL_z takes; the analytic one reads no sample.
  _, kl_gamma = HSVAELatent(latent_dim=3, kl_z="analytic").kl(POSTERIOR, None, HP)
  a, b = np.asarray(POSTERIOR.a_BxZ[0]), np.asarray(POSTERIOR.b_BxZ[0])
  grid = np.linspace(1e-6, 1 - 1e-6, 400_001)
  brute = 0.0
  for d in range(3):
    q = scipy.stats.beta.pdf(grid, a[d], b[d])
    p = scipy.stats.beta.pdf(grid, 4.0, 1.0)
    brute += np.trapezoid(np.where(q > 0, q * (np.log(q + 1e-300) - np.log(p + 1e-300)), 0.0), grid)
  assert float(kl_gamma[0]) == pytest.approx(brute, rel=1e-3)


def test_gaussian_mc_and_analytic_agree():
  posterior = GaussianPosterior(POSTERIOR.mu_BxZ, POSTERIOR.sigma_BxZ)
  analytic = float(GaussianLatent(latent_dim=3, kl_z="analytic").kl(posterior, None, HP)[0][0])
  latent = GaussianLatent(latent_dim=3, kl_z="mc")
  keys = jax.random.split(jax.random.key(0), 50_000)
  one_draw = lambda k: latent.kl(posterior, latent.sample(posterior, k, HP.temperature), HP)[0][0]
  draws = jax.jit(jax.vmap(one_draw))(keys)
  assert float(draws.mean()) == pytest.approx(analytic, abs=4 * float(draws.std()) / np.sqrt(50_000))
  expected = sum(float(distrax.Normal(m, s).kl_divergence(distrax.Normal(0.0, 1.0)))
                 for m, s in zip(posterior.mu_BxZ[0], posterior.sigma_BxZ[0]))
  assert analytic == pytest.approx(expected, rel=1e-6)


def test_hsvae_codes_zero_where_spike_is_likely():
  codes = HSVAELatent(latent_dim=3).codes(POSTERIOR)
  slab_prob = np.asarray(POSTERIOR.b_BxZ / (POSTERIOR.a_BxZ + POSTERIOR.b_BxZ))
  np.testing.assert_allclose(codes.slab_prob_BxZ, slab_prob, rtol=1e-6)
  np.testing.assert_array_equal(codes.code_BxZ, np.where(slab_prob > 0.5, POSTERIOR.mu_BxZ, 0.0))
  assert (np.asarray(codes.code_BxZ) == 0).sum() == 2


def test_hsvae_gamma_sample_has_the_reparameterisation_gradient_of_the_beta_mean():
  """d E[gamma] / d(a, b) by Monte Carlo through the sampler equals that of a / (a + b)."""
  latent = HSVAELatent(latent_dim=3)

  def mean_gamma(a, b, key):
    return latent.sample(POSTERIOR.replace(a_BxZ=a, b_BxZ=b), key, HP.temperature).gamma_BxZ[0]

  keys = jax.random.split(jax.random.key(3), 20_000)
  per_dim = lambda f: jax.jit(jax.vmap(jax.jacfwd(f, (0, 1)), (None, None, 0)))(
      POSTERIOR.a_BxZ, POSTERIOR.b_BxZ, keys)
  grad_a, grad_b = (np.diagonal(np.asarray(g).mean(0)[:, 0], axis1=0, axis2=1) for g in per_dim(mean_gamma))
  a, b = np.asarray(POSTERIOR.a_BxZ[0]), np.asarray(POSTERIOR.b_BxZ[0])
  np.testing.assert_allclose(grad_a, b / (a + b) ** 2, rtol=0.05)
  np.testing.assert_allclose(grad_b, -a / (a + b) ** 2, rtol=0.05)
