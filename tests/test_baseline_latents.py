"""The MAT-VAE and VSC baselines: KLs and the kernel discrepancy against brute force, codes, a few train steps."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from hsvae_jax import train
from hsvae_jax.hparams import HParams
from hsvae_jax.latents import MATVAELatent, VSCLatent, make_latent
from hsvae_jax.latents.gaussian import GaussianPosterior
from hsvae_jax.latents.matvae import MATVAESample, imq_kernel_discrepancy
from hsvae_jax.latents.vsc import VSCPosterior
from hsvae_jax.models import make_model
from conftest import fresh_state, tiny_config

HP = HParams(alpha=jnp.float32(4.0), beta=jnp.float32(1.0), z_reg_weight=jnp.float32(0.01),
             gamma_reg_weight=jnp.float32(0.01), temperature=jnp.float32(0.5))
POSTERIOR = VSCPosterior(  # three dimensions: mostly slab, undecided, mostly spike
    mu_BxZ=jnp.array([[1.5, -0.5, 0.3]]),
    sigma_BxZ=jnp.array([[0.3, 0.8, 0.1]]),
    slab_logit_BxZ=jnp.array([[2.0, 0.0, -2.0]]),
)
GAUSSIAN_POSTERIOR = GaussianPosterior(POSTERIOR.mu_BxZ, POSTERIOR.sigma_BxZ)
SLAB_PROB = 1.0 / (1.0 + np.exp(-np.asarray(POSTERIOR.slab_logit_BxZ[0], np.float64)))
MU, SIGMA = (np.asarray(x[0], np.float64) for x in (POSTERIOR.mu_BxZ, POSTERIOR.sigma_BxZ))
SCALES = MATVAELatent.kernel_scales


def test_vsc_kl_is_the_papers_closed_form_and_matches_monte_carlo():
  alpha = 0.2
  kl = float(VSCLatent(latent_dim=3, prior_slab_prob=alpha).kl(POSTERIOR, None, HP)[0][0])  # closed form: no sample
  g = SLAB_PROB
  paper = np.sum(-g / 2 * (1 + np.log(SIGMA**2) - MU**2 - SIGMA**2)
                 + (1 - g) * np.log((1 - g) / (1 - alpha)) + g * np.log(g / alpha))
  assert kl == pytest.approx(paper, rel=1e-5)
  # Brute force over the mixed distribution: z = 0 exactly is the delta (the slab never hits it), where
  # both q and p are point masses; elsewhere both are weighted densities.
  rng = np.random.default_rng(0)
  n = 400_000
  z_NxZ = np.where(rng.random((n, 3)) < g, MU + SIGMA * rng.standard_normal((n, 3)), 0.0)
  on_slab_NxZ = z_NxZ != 0
  log_q_NxZ = np.where(on_slab_NxZ, np.log(g) + scipy.stats.norm.logpdf(z_NxZ, MU, SIGMA), np.log(1 - g))
  log_p_NxZ = np.where(on_slab_NxZ, np.log(alpha) + scipy.stats.norm.logpdf(z_NxZ), np.log(1 - alpha))
  draws = (log_q_NxZ - log_p_NxZ).sum(1)
  assert kl == pytest.approx(draws.mean(), abs=4 * draws.std() / np.sqrt(n))


def test_vsc_samples_hold_exact_zeros_at_the_spike_rate_and_pass_gradients():
  latent = VSCLatent(latent_dim=3)
  n = 20_000
  keys = jax.random.split(jax.random.key(0), n)
  z_NxZ = np.asarray(jax.jit(jax.vmap(lambda k: latent.sample(POSTERIOR, k, HP.temperature).z_BxZ[0]))(keys))
  np.testing.assert_allclose((z_NxZ == 0).mean(0), 1 - SLAB_PROB, atol=4 * 0.5 / np.sqrt(n))
  for d in range(3):
    slab = z_NxZ[z_NxZ[:, d] != 0, d]
    assert slab.mean() == pytest.approx(MU[d], abs=4 * SIGMA[d] / np.sqrt(slab.size))
  # The straight-through indicator lets the slab probability learn from the decoder's loss.
  grads = jax.grad(lambda p: latent.sample(p, jax.random.key(1), HP.temperature).z_BxZ.sum())(POSTERIOR)
  assert np.all(np.asarray(grads.slab_logit_BxZ) != 0)


def test_matvae_mc_kl_is_unbiased_for_the_kl_to_the_spike_and_slab_prior():
  latent = MATVAELatent(latent_dim=3)
  posterior = GAUSSIAN_POSTERIOR
  n = 40_000
  keys = jax.random.split(jax.random.key(0), n)
  draws = np.asarray(jax.jit(jax.vmap(
      lambda k: latent.kl(posterior, latent.sample(posterior, k, HP.temperature), HP)[0][0]))(keys))
  brute = 0.0
  for mu, sigma in zip(MU, SIGMA):
    def integrand(z, mu=mu, sigma=sigma):
      log_q = scipy.stats.norm.logpdf(z, mu, sigma)
      log_p = np.logaddexp(np.log(0.8) + scipy.stats.norm.logpdf(z, 0, 0.05), np.log(0.2) + scipy.stats.norm.logpdf(z))
      return np.exp(log_q) * (log_q - log_p)
    brute += scipy.integrate.quad(integrand, mu - 12 * sigma, mu + 12 * sigma, points=[0.0], limit=200)[0]
  assert draws.mean() == pytest.approx(brute, abs=4 * draws.std() / np.sqrt(n))


def _discrepancy_by_loops(x_BxZ, y_BxZ):
  n, dims = x_BxZ.shape
  kernel = lambda a, b: sum(2 * s / (2 * s + (a - b) ** 2) for s in SCALES)
  total = 0.0
  for d in range(dims):
    x, y = x_BxZ[:, d], y_BxZ[:, d]
    xx = sum(kernel(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(n) for j in range(n)) / n**2
    total += xx + yy - 2 * xy
  return total


def test_discrepancy_matches_a_double_loop_and_is_the_weighted_batch_term():
  rng = np.random.default_rng(0)
  x_BxZ, y_BxZ = rng.normal(size=(6, 3)), rng.normal(0.5, 2.0, size=(6, 3))
  expected = _discrepancy_by_loops(x_BxZ, y_BxZ)
  got = imq_kernel_discrepancy(jnp.asarray(x_BxZ, jnp.float32), jnp.asarray(y_BxZ, jnp.float32), SCALES)
  assert float(got) == pytest.approx(expected, rel=1e-5)
  sample = MATVAESample(jnp.asarray(x_BxZ, jnp.float32), jnp.asarray(y_BxZ, jnp.float32))
  extra = MATVAELatent(latent_dim=3, discrepancy_weight=2.5).extra_loss(GAUSSIAN_POSTERIOR, sample, HP)
  np.testing.assert_allclose(extra["discrepancy"], np.full(6, 2.5 * expected), rtol=1e-5)


def test_discrepancy_is_zero_in_expectation_for_one_distribution_and_large_for_two():
  prior = MATVAELatent(latent_dim=2).prior()

  def discrepancy(key, shift):
    x_key, y_key = jax.random.split(key)
    x_BxZ = prior.sample(seed=x_key, sample_shape=(32, 2))
    y_BxZ = prior.sample(seed=y_key, sample_shape=(32, 2))
    return imq_kernel_discrepancy(x_BxZ + shift, y_BxZ, SCALES)

  keys = jax.random.split(jax.random.key(0), 2_000)
  same = np.asarray(jax.jit(jax.vmap(lambda k: discrepancy(k, 0.0)))(keys))
  shifted = np.asarray(jax.jit(jax.vmap(lambda k: discrepancy(k, 1.0)))(keys))
  assert abs(same.mean()) < 4 * same.std() / np.sqrt(same.size)  # unbiased: the diagonal is left out
  assert shifted.mean() > 10 * same.std()


def test_codes_are_exactly_zero_where_the_slab_is_not_likely():
  vsc = VSCLatent(latent_dim=3).codes(POSTERIOR)
  np.testing.assert_allclose(vsc.slab_prob_BxZ[0], SLAB_PROB, rtol=1e-6)
  # slab probabilities 0.88, exactly 1/2 and 0.12: only the first keeps its mu.
  np.testing.assert_array_equal(vsc.code_BxZ, [[1.5, 0.0, 0.0]])
  np.testing.assert_array_equal(vsc.mu_BxZ, POSTERIOR.mu_BxZ)
  matvae = MATVAELatent(latent_dim=3).codes(GAUSSIAN_POSTERIOR)
  np.testing.assert_array_equal(matvae.slab_prob_BxZ, np.ones((1, 3)))
  np.testing.assert_array_equal(matvae.code_BxZ, POSTERIOR.mu_BxZ)


@pytest.mark.parametrize("latent", ["matvae", "vsc"])
def test_tiny_sentence_vae_trains_with_each_baseline(latent):
  config = tiny_config(latent)
  model = make_model(config.model, vocab_size=11)
  state = fresh_state(model, config)
  batch = {"tokens": jnp.array([[5, 6, 7, 1, 0, 0], [4, 9, 3, 8, 2, 1], [3, 3, 1, 0, 0, 0], [10, 4, 6, 9, 1, 0]]),
           "lengths": jnp.array([4, 6, 3, 5])}
  hparams = HParams.from_config(config)
  params_before = jax.device_get(state.params)
  for _ in range(3):
    state, metrics = train.train_step(state, batch, jax.random.key(1), hparams)
    metrics = jax.device_get(metrics)
    assert np.isfinite(metrics["loss"])
    # The loss is the documented sum of its terms (batch means).
    total = (metrics["rec_nll"] + hparams.z_reg_weight * metrics["kl_z"]
             + hparams.gamma_reg_weight * metrics["kl_gamma"] + metrics.get("discrepancy", 0.0))
    assert metrics["loss"] == pytest.approx(float(total), rel=1e-5)
  assert int(metrics["skipped_steps"]) == 0
  assert ("discrepancy" in metrics) == (latent == "matvae")
  head_before, head_after = params_before["posterior_head"], state.params["posterior_head"]
  # Every head (mu, sigma, and the slab probability's where there is one) learns.
  for before, after in zip(jax.tree.leaves(head_before), jax.tree.leaves(head_after)):
    assert not np.allclose(after, before)


@pytest.mark.parametrize("latent", ["matvae", "vsc"])
def test_family_is_rebuilt_from_a_workdirs_json_config(latent):
  config = tiny_config(latent)
  # config.json turns tuples into lists; the family must come back equal and hashable (a static jit argument).
  reloaded = ml_collections.ConfigDict(json.loads(config.to_json_best_effort()))
  assert hash(make_latent(reloaded.model)) == hash(make_latent(config.model))
  assert make_latent(reloaded.model) == make_latent(config.model)
