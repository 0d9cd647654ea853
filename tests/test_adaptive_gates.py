"""HSVAE's switches for adaptive sparsity: the evidence gate, the batch-usage KLs, the gate entropy, the knob."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from hsvae_jax import sweep
from hsvae_jax.hparams import HParams
from hsvae_jax.latents import HSVAELatent
from hsvae_jax.latents.hsvae import HSVAEPosterior, HSVAESample
from conftest import tiny_config

HP = HParams(alpha=jnp.float32(4.0), beta=jnp.float32(1.0), z_reg_weight=jnp.float32(0.01),
             gamma_reg_weight=jnp.float32(0.01), temperature=jnp.float32(0.5))
# Four sentences, two dims: a confident large mean, a vague one, a confident zero, in between.
POSTERIOR = HSVAEPosterior(
    mu_BxZ=jnp.array([[2.0, 0.1], [0.1, 1.0], [0.0, -0.6], [0.8, 0.02]]),
    sigma_BxZ=jnp.array([[0.1, 1.0], [0.05, 0.9], [0.04, 0.2], [0.3, 0.05]]),
    a_BxZ=jnp.array([[4.0, 4.0], [2.0, 3.0], [4.0, 1.0], [1.0, 1.0]]),
    b_BxZ=jnp.array([[1.0, 2.0], [1.0, 1.0], [1.0, 1.0], [3.0, 1.0]]),
)
MU, VAR = np.asarray(POSTERIOR.mu_BxZ, np.float64), np.asarray(POSTERIOR.sigma_BxZ, np.float64) ** 2


def test_target_active_sets_the_priors_mean_slab_share_and_keeps_its_concentration():
  alpha, beta = HP.replace(target_active=jnp.float32(0.25)).prior_shape()
  assert (float(alpha), float(beta)) == pytest.approx((3.75, 1.25))
  assert tuple(map(float, HP.prior_shape())) == (4.0, 1.0)  # 0: the prior as given


def test_warm_up_ramps_only_the_sparsity_weights():
  hp = HP.replace(usage_weight=jnp.float32(2.0), code_usage_weight=jnp.float32(4.0),
                  gate_entropy_weight=jnp.float32(1.0), warmup_steps=jnp.float32(100.0))
  half = hp.at_step(jnp.int32(50))
  assert float(half.gamma_reg_weight) == pytest.approx(0.005)
  assert float(half.usage_weight) == pytest.approx(1.0) and float(half.gate_entropy_weight) == pytest.approx(0.5)
  assert float(half.code_usage_weight) == pytest.approx(2.0)
  assert float(half.z_reg_weight) == pytest.approx(0.01)
  assert float(hp.at_step(jnp.int32(500)).usage_weight) == pytest.approx(2.0)
  assert float(HP.at_step(jnp.int32(0)).gamma_reg_weight) == pytest.approx(0.01)  # no warm-up: full from step 0


def test_evidence_gate_is_bayes_rule_on_the_encoders_message():
  latent = HSVAELatent(latent_dim=2, gate="evidence")
  gamma = jnp.full((4, 2), 0.7)
  q_z = latent.posterior_z(POSTERIOR, gamma)
  spike = 0.7 * scipy.stats.norm.pdf(MU, 0, np.sqrt(0.05**2 + VAR))
  slab = 0.3 * scipy.stats.norm.pdf(MU, 0, np.sqrt(1 + VAR))
  np.testing.assert_allclose(q_z.slab_prob, slab / (spike + slab), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(q_z.loc, MU / (1 + VAR), rtol=1e-5)  # N(0, 1) prior times the message
  np.testing.assert_allclose(q_z.scale, np.sqrt(VAR / (1 + VAR)), rtol=1e-5)
  codes = latent.codes(POSTERIOR)
  assert bool(codes.code_BxZ[0, 0] != 0) and float(codes.code_BxZ[2, 0]) == 0.0  # large mean kept, zero cut
  assert float(codes.code_BxZ[0, 1]) == 0.0  # a vague message stays at the spike


def test_mean_field_gate_is_bayes_rule_with_the_expected_log_odds():
  """q(s | x) is the variational-Bayes update: Bayes' rule with exp E_q[log gamma] and exp E_q[log(1 - gamma)]."""
  latent = HSVAELatent(latent_dim=2, gate="mean_field")
  q_z = latent.posterior_z(POSTERIOR)
  a, b = (np.asarray(x, np.float64) for x in (POSTERIOR.a_BxZ, POSTERIOR.b_BxZ))
  spike = np.exp(scipy.special.digamma(a)) * scipy.stats.norm.pdf(MU, 0, np.sqrt(0.05**2 + VAR))
  slab = np.exp(scipy.special.digamma(b)) * scipy.stats.norm.pdf(MU, 0, np.sqrt(1 + VAR))
  np.testing.assert_allclose(q_z.slab_prob, slab / (spike + slab), rtol=1e-4, atol=1e-6)
  codes = latent.codes(POSTERIOR)  # read from the same posterior the decoder is trained on
  chex.assert_trees_all_close(codes.slab_prob_BxZ, q_z.slab_prob)
  chex.assert_trees_all_close(codes.code_BxZ, jnp.where(q_z.slab_prob > 0.5, q_z.loc, 0.0))


def test_mean_field_kl_is_the_expectation_over_gamma():
  """Its KL of (s, z) is the slab's KL plus E_q(gamma)[KL(q(s) || Bernoulli(gamma))], checked by sampling gamma."""
  latent = HSVAELatent(latent_dim=2, gate="mean_field")
  sample = latent.sample(POSTERIOR, jax.random.key(0), HP.temperature)
  assert sample.gamma_BxZ is None  # nothing to sample: no Beta-sampler gradient
  kl_z, _ = latent.kl(POSTERIOR, sample, HP)
  q_z = latent.posterior_z(POSTERIOR)
  slab, loc, scale = (np.asarray(x, np.float64) for x in (q_z.slab_prob, q_z.loc, q_z.scale))
  gamma = scipy.stats.beta(np.asarray(POSTERIOR.a_BxZ), np.asarray(POSTERIOR.b_BxZ)).rvs(
      size=(200_000, 4, 2), random_state=np.random.default_rng(0))
  gamma = np.clip(gamma, 1e-12, 1 - 1e-12)
  xlogy = scipy.special.xlogy
  kl_s = (xlogy(slab, slab) + xlogy(1 - slab, 1 - slab) - slab * np.log1p(-gamma) - (1 - slab) * np.log(gamma)).mean(0)
  kl_slab = np.log(1 / scale) + (scale**2 + loc**2) / 2 - 0.5
  np.testing.assert_allclose(kl_z, (slab * kl_slab + kl_s).sum(-1), rtol=2e-3)


def test_paper_gate_is_unchanged_by_the_switch():
  latent = HSVAELatent(latent_dim=2)
  codes = latent.codes(POSTERIOR)
  slab = POSTERIOR.b_BxZ / (POSTERIOR.a_BxZ + POSTERIOR.b_BxZ)
  chex.assert_trees_all_close(codes.slab_prob_BxZ, slab)
  chex.assert_trees_all_close(codes.code_BxZ, jnp.where(slab > 0.5, POSTERIOR.mu_BxZ, 0.0))


def test_usage_kl_and_gate_entropy_closed_forms():
  latent = HSVAELatent(latent_dim=2, gate="evidence")
  slab_prob = jnp.array([[0.9, 0.1], [0.5, 0.1], [0.1, 0.1], [0.1, 0.1]])
  sample = HSVAESample(jnp.zeros((4, 2)), slab_prob)
  hp = HP.replace(usage_weight=jnp.float32(2.0), gate_entropy_weight=jnp.float32(3.0))
  terms = latent.extra_loss(POSTERIOR, sample, hp)
  rho = 0.2  # Beta(4, 1)'s mean slab share
  usage = np.array([0.4, 0.1])
  kl = (usage * np.log(usage / rho) + (1 - usage) * np.log((1 - usage) / (1 - rho))).sum()
  np.testing.assert_allclose(terms["usage_kl"], np.full(4, 2.0 * kl), rtol=1e-5)
  entropy = scipy.stats.bernoulli(np.asarray(slab_prob, np.float64)).entropy().sum(-1)
  np.testing.assert_allclose(terms["gate_entropy"], 3.0 * entropy, rtol=1e-5)
  at_prior = latent.extra_loss(POSTERIOR, sample.replace(slab_prob_BxZ=jnp.full((4, 2), rho)), hp)
  assert float(at_prior["usage_kl"][0]) == pytest.approx(0.0, abs=1e-6)


def test_code_usage_kl_pulls_the_codes_mean_share_and_leaves_dimensions_free_to_differ():
  latent = HSVAELatent(latent_dim=2, gate="evidence")
  hp = HP.replace(usage_weight=jnp.float32(1.0), code_usage_weight=jnp.float32(3.0))
  rho = 0.2  # Beta(4, 1)'s mean slab share
  kl = lambda u: u * np.log(u / rho) + (1 - u) * np.log((1 - u) / (1 - rho))
  # One dimension used by every sentence, one by none: the code's mean share is 1/2, charged as if each
  # dimension were used by half the sentences.
  one_used = latent.extra_loss(POSTERIOR, HSVAESample(jnp.zeros((4, 2)), jnp.array([[1.0, 0.0]] * 4)), hp)
  np.testing.assert_allclose(one_used["code_usage_kl"], np.full(4, 3.0 * 2 * kl(0.5)), rtol=1e-4)
  # Dimensions used by 3 and by 1 of 10 sentences: each off the prior's share, their mean on it.
  slab_prob = np.zeros((10, 2), np.float32)
  slab_prob[:3, 0] = slab_prob[3, 1] = 1.0
  differing = latent.extra_loss(POSTERIOR, HSVAESample(jnp.zeros((10, 2)), jnp.asarray(slab_prob)), hp)
  assert float(differing["code_usage_kl"][0]) == pytest.approx(0.0, abs=1e-5)
  np.testing.assert_allclose(differing["usage_kl"][0], kl(0.3) + kl(0.1), rtol=1e-5)


def test_usage_kl_leaves_which_sentence_uses_a_dimension_free():
  """Per-sentence gates that differ but use each dimension at the prior's share cost no usage KL."""
  latent = HSVAELatent(latent_dim=1, gate="evidence")
  adaptive = jnp.array([[1.0], [0.0], [0.0], [0.0], [0.0]])  # one sentence in five: Beta(4, 1)'s share
  terms = latent.extra_loss(POSTERIOR, HSVAESample(jnp.zeros((5, 1)), adaptive),
                            HP.replace(usage_weight=jnp.float32(1.0), gate_entropy_weight=jnp.float32(1.0)))
  assert float(terms["usage_kl"][0]) == pytest.approx(0.0, abs=1e-5)
  assert float(terms["gate_entropy"].max()) < 1e-4


@pytest.mark.parametrize("gate", ["evidence", "mean_field"])
def test_adaptive_gates_sample_and_kl_are_finite_with_gradients(gate):
  latent = HSVAELatent(latent_dim=2, gate=gate)
  hp = HP.replace(usage_weight=jnp.float32(1.0), gate_entropy_weight=jnp.float32(1.0))

  def loss(posterior):
    sample = latent.sample(posterior, jax.random.key(0), hp.temperature)
    kl_z, kl_gamma = latent.kl(posterior, sample, hp)
    extra = latent.extra_loss(posterior, sample, hp)
    return (kl_z + kl_gamma + extra["usage_kl"] + extra["gate_entropy"]).sum() + sample.z_BxZ.sum()

  grads = jax.jit(jax.grad(loss))(POSTERIOR)  # one program: op by op, the Beta sampler's gradient takes seconds
  for path, grad in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(grad)), path
    assert np.any(grad != 0), path


def test_evidence_analytic_kl_z_bounds_the_mc_estimate():
  """Conditioning on the indicator only adds information: the analytic bound is above the MC mean."""
  analytic, mc = (HSVAELatent(latent_dim=2, gate="evidence", kl_z=kl_z) for kl_z in ("analytic", "mc"))

  def both(key):  # the sample does not depend on kl_z: one draw, one program, for both estimators
    sample = mc.sample(POSTERIOR, key, HP.temperature)
    return analytic.kl(POSTERIOR, sample, HP)[0], mc.kl(POSTERIOR, sample, HP)[0]

  analytic_draws, mc_draws = map(np.asarray, jax.jit(jax.vmap(both))(jax.random.split(jax.random.key(1), 2000)))
  assert np.all(np.isfinite(analytic_draws)) and np.all(np.isfinite(mc_draws))
  assert analytic_draws.mean() >= mc_draws.mean() - 3 * mc_draws.std() / np.sqrt(mc_draws.size)


@pytest.mark.xdist_group("tiny_sweep")  # test_sweep's program: see there
def test_target_active_is_a_knob_a_sweep_turns(tmp_path):
  """Trained on synthetic topics, codes use about the share of dims asked for, different dims per sentence.
  The tiny model and corpus: their evaluation program is the tiny runs' (measured shares 0.24 and 0.77, Jaccard
  0.21, gate std 0.40; 0.22, 0.76, 0.19 and 0.37 with 16 dims and 2,000 sentences)."""
  config = tiny_config()
  config.train.num_steps = 300
  config.train.log_every = 100
  config.train.checkpoint_every = 300
  config.train.learning_rate = 3e-3
  config.data.length_buckets = (16,)  # one program: over 300 steps a rare batch of short sentences compiles another
  results = sweep.sweep(config, str(tmp_path / "sweep"), {"target_active": [0.25, 0.75]}, split="test")
  share = [1 - r["zero_fraction"] for r in results]
  assert share[0] < share[1] - 0.2, share
  assert abs(share[0] - 0.25) < 0.15 and abs(share[1] - 0.75) < 0.15, share
  assert results[0]["active_jaccard"] < 0.6 and results[0]["gate_std"] > 0.15, results[0]
