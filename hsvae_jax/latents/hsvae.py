"""HSVAE: a Beta posterior over each dimension's spike probability and a spike-and-slab posterior over z."""

import dataclasses

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from tensorflow_probability.substrates import jax as tfp

from hsvae_jax.errors import InputError
from hsvae_jax.hparams import HParams
from hsvae_jax.latents import base
from hsvae_jax.latents.gaussian import GaussianPosterior
from hsvae_jax.prior import HierarchicalSpikeSlab, SpikeAndSlab

# The original code's fix for NaN losses: Beta parameters kept in [0.5, 100] (PAPER.md); model.beta_param_clip.
BETA_PARAM_RANGE = (0.5, 100.0)


def straight_through_clip(x: jax.Array, low: float, high: float) -> jax.Array:
  """Clipped forward, identity backward, so a head pushed out of range still gets a gradient."""
  return x + jax.lax.stop_gradient(jnp.clip(x, low, high) - x)


class HSVAEPosterior(GaussianPosterior):
  """The encoder's Gaussian message about z, and q(gamma | x) = Beta(a, b) per dimension."""

  a_BxZ: jax.Array
  b_BxZ: jax.Array


class HSVAESample(base.Sample):
  slab_prob_BxZ: jax.Array  # q(slab | x, gamma), or q(slab | x) for the mean-field gate
  gamma_BxZ: jax.Array | None = None  # the drawn spike probability; the mean-field gate draws none


class HSVAEHead(nn.Module):
  latent_dim: int
  beta_param_clip: bool = True  # the Beta parameters in BETA_PARAM_RANGE

  @nn.compact
  def __call__(self, h_BxH: jax.Array) -> HSVAEPosterior:
    def positive(name):
      return jax.nn.softplus(nn.Dense(self.latent_dim, name=name)(h_BxH)) + 1e-5

    def beta_param(name):
      return straight_through_clip(positive(name), *BETA_PARAM_RANGE) if self.beta_param_clip else positive(name)

    return HSVAEPosterior(
        mu_BxZ=nn.Dense(self.latent_dim, name="mu")(h_BxH),
        sigma_BxZ=positive("sigma"),
        a_BxZ=beta_param("a"),
        b_BxZ=beta_param("b"),
    )


GATES = ("beta", "evidence", "mean_field")


def _slab_kl(loc: jax.Array, scale: jax.Array, slab_scale: float) -> jax.Array:
  return distrax.Normal(loc, scale).kl_divergence(distrax.Normal(0.0, slab_scale))


def _expected_logs(posterior: HSVAEPosterior) -> tuple[jax.Array, jax.Array]:
  """E[log gamma] and E[log(1 - gamma)] under q(gamma | x) = Beta(a, b)."""
  digamma_total_BxZ = jax.scipy.special.digamma(posterior.a_BxZ + posterior.b_BxZ)
  return (jax.scipy.special.digamma(posterior.a_BxZ) - digamma_total_BxZ,
          jax.scipy.special.digamma(posterior.b_BxZ) - digamma_total_BxZ)


@dataclasses.dataclass(frozen=True)
class HSVAELatent(base.Latent[HSVAEPosterior, HSVAESample]):
  """gate 'beta' is the paper's q(z|x, gamma) = gamma N(0, spike^2) + (1 - gamma) N(mu, sigma^2).

  gate 'evidence' reads (mu, sigma^2) as the encoder's Gaussian message about z and applies Bayes' rule
  with p(z|gamma): the spike's weight is its posterior probability given the message and gamma, and the
  slab is the slab prior times the message (the precision-weighted combination of Ladder VAEs, Sonderby
  et al. 2016). The gate then depends on the sentence through mu and sigma, whose gradients are those of
  the reconstruction, rather than only through the Beta heads' reparameterised, relaxed sample.

  gate 'mean_field' factorises q(gamma, s, z | x) = q(gamma | x) q(s | x) q(z | x, s), s the spike-or-slab
  indicator, and takes q(s | x) as the variational-Bayes update given q(gamma | x) and the message: Bayes'
  rule as in 'evidence', with the prior log-odds log gamma - log(1 - gamma) replaced by their expectation
  under Beta(a, b), digamma(a) - digamma(b). No gamma is sampled, so the gates get exact, noise-free
  gradients (no Beta-sampler gradient, the step's largest cost over a cheap decoder), the KL of (s, z) is
  exact, and the codes read the very posterior the decoder was trained on.
  """

  latent_dim: int
  spike_scale: float = 0.05
  slab_scale: float = 1.0
  kl_z: str = "mc"
  gate: str = "beta"
  beta_param_clip: bool = True

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict) -> "HSVAELatent":
    if model_config.gate not in GATES:
      raise InputError(f"unknown model.gate {model_config.gate!r}; choose one of {', '.join(GATES)}")
    # Workdirs from before model.beta_param_clip trained with the clip.
    return cls(model_config.latent_dim, model_config.spike_scale, model_config.slab_scale, model_config.kl_z,
               model_config.gate, model_config.get("beta_param_clip", True))

  def head(self) -> nn.Module:
    return HSVAEHead(self.latent_dim, self.beta_param_clip)

  def posterior_z(self, posterior: HSVAEPosterior, gamma_BxZ: jax.Array | None = None) -> SpikeAndSlab:
    """q(z | x, gamma); q(z | x) for the mean-field gate, which takes no gamma."""
    if self.gate == "beta":
      return SpikeAndSlab(gamma_BxZ, posterior.mu_BxZ, posterior.sigma_BxZ, spike_scale=self.spike_scale)
    if self.gate == "mean_field":
      log_gamma_BxZ, log1m_gamma_BxZ = _expected_logs(posterior)
      return self._bayes_rule(posterior, log_gamma_BxZ - log1m_gamma_BxZ)
    gamma_BxZ = jnp.clip(gamma_BxZ, 1e-6, 1 - 1e-6)
    return self._bayes_rule(posterior, jnp.log(gamma_BxZ) - jnp.log1p(-gamma_BxZ))

  def _bayes_rule(self, posterior: HSVAEPosterior, prior_spike_log_odds_BxZ: jax.Array) -> SpikeAndSlab:
    """The spike-and-slab posterior of z from the prior's spike log-odds and the encoder's message."""
    variance_BxZ = jnp.square(posterior.sigma_BxZ)
    slab_var, spike_var = self.slab_scale**2, self.spike_scale**2
    message_fit = lambda prior_var: distrax.Normal(0.0, jnp.sqrt(prior_var + variance_BxZ)).log_prob(posterior.mu_BxZ)
    spike_logit_BxZ = prior_spike_log_odds_BxZ + message_fit(spike_var) - message_fit(slab_var)
    shrink_BxZ = slab_var / (slab_var + variance_BxZ)
    return SpikeAndSlab(jax.nn.sigmoid(spike_logit_BxZ), shrink_BxZ * posterior.mu_BxZ,
                        jnp.sqrt(shrink_BxZ * variance_BxZ), spike_scale=self.spike_scale)

  def sample(self, posterior: HSVAEPosterior, key: jax.Array, temperature: jax.Array) -> HSVAESample:
    gamma_key, z_key = jax.random.split(key)
    if self.gate == "mean_field":
      q_z = self.posterior_z(posterior)
      z_BxZ, _ = q_z.relaxed_sample(z_key, temperature)
      return HSVAESample(z_BxZ, q_z.slab_prob)
    # TFP's Beta sampler: the same implicit reparameterisation gradient as distrax's (jax.random.beta),
    # but jax's gamma-sampler gradient is far slower on CPU.
    gamma_BxZ = tfp.distributions.Beta(posterior.a_BxZ, posterior.b_BxZ).sample(seed=gamma_key)
    q_z = self.posterior_z(posterior, gamma_BxZ)
    z_BxZ, _ = q_z.relaxed_sample(z_key, temperature)
    return HSVAESample(z_BxZ, q_z.slab_prob, gamma_BxZ)

  def kl(self, posterior: HSVAEPosterior, sample: HSVAESample, hparams: HParams) -> tuple[jax.Array, jax.Array]:
    prior = HierarchicalSpikeSlab(*hparams.prior_shape(), self.spike_scale, self.slab_scale)
    q_gamma = distrax.Beta(posterior.a_BxZ, posterior.b_BxZ)
    kl_gamma_BxZ = q_gamma.kl_divergence(prior.gamma_prior)
    if self.gate == "mean_field":
      # Exact whatever kl_z says: the spike branches of q and p agree, and E_q(gamma) of the indicator's
      # KL to Bernoulli(gamma) has a closed form.
      q_z = self.posterior_z(posterior)
      log_gamma_BxZ, log1m_gamma_BxZ = _expected_logs(posterior)
      slab_prob_BxZ = jnp.clip(q_z.slab_prob, 1e-6, 1 - 1e-6)  # a saturated gate's entropy has a NaN gradient
      kl_s_BxZ = (-distrax.Bernoulli(probs=slab_prob_BxZ).entropy()
                  - (1 - slab_prob_BxZ) * log_gamma_BxZ - slab_prob_BxZ * log1m_gamma_BxZ)
      kl_z_BxZ = slab_prob_BxZ * _slab_kl(q_z.loc, q_z.scale, self.slab_scale) + kl_s_BxZ
    elif self.kl_z == "mc":
      # The paper's one-sample estimate of KL(q(z|x,gamma) || p(z|gamma)) at the gamma drawn for z.
      gamma_BxZ = sample.gamma_BxZ
      q_z = self.posterior_z(posterior, gamma_BxZ)
      kl_z_BxZ = q_z.log_prob(sample.z_BxZ) - prior.conditional(gamma_BxZ).log_prob(sample.z_BxZ)
    elif self.gate == "beta":
      # With the spike/slab indicator as a latent shared by q and p, only the slab branch differs:
      # KL = E_q[1 - gamma] * KL(N(mu, sigma) || N(0, slab)), an upper bound on the marginal KL.
      kl_z_BxZ = self.slab_prob(posterior) * _slab_kl(posterior.mu_BxZ, posterior.sigma_BxZ, self.slab_scale)
    else:
      # The same bound with indicators that differ: the indicator's KL at the drawn gamma, plus the slab's.
      q_z = self.posterior_z(posterior, sample.gamma_BxZ)
      kl_z_BxZ = (q_z.slab_prob * _slab_kl(q_z.loc, q_z.scale, self.slab_scale)
                  + distrax.Bernoulli(probs=q_z.slab_prob).kl_divergence(distrax.Bernoulli(probs=1 - sample.gamma_BxZ)))
    return kl_z_BxZ.sum(-1), kl_gamma_BxZ.sum(-1)

  def extra_loss(self, posterior: HSVAEPosterior, sample: HSVAESample, hparams: HParams) -> dict[str, jax.Array]:
    """The batch-usage KLs and the gates' entropy, each weighted (all 0 in the paper's loss).

    Averaged over sentences, the indicator's per-sentence KL to the prior is KL(u || rho) + I(x; s): u the
    batch's mean slab probability of a dimension, rho the prior's, and I the information the gates carry
    about the sentence. KL_gamma, its hierarchical counterpart, likewise charges for gates that differ
    between sentences. usage_kl = KL(u || rho), summed over dims, pulls only each dimension's use over the
    batch to the prior's share; code_usage_kl pulls only the mean over dims of those shares, so that
    dimensions may differ in how often they are used; gate_entropy = the mean binary entropy of the slab
    probabilities charges for undecided gates, which the decoder sees as random dropout and the code rounds
    away.
    """
    del posterior
    alpha, beta = hparams.prior_shape()
    slab_prob_BxZ = jnp.clip(sample.slab_prob_BxZ, 1e-6, 1 - 1e-6)
    prior_usage = distrax.Bernoulli(probs=beta / (alpha + beta))
    usage_kl = distrax.Bernoulli(probs=slab_prob_BxZ.mean(0)).kl_divergence(prior_usage).sum()
    # The same KL at the mean over every dimension too, times their number: as much pull on the code's
    # share as usage_kl's when every dimension is used alike.
    code_usage_kl = self.latent_dim * distrax.Bernoulli(probs=slab_prob_BxZ.mean()).kl_divergence(prior_usage)
    gate_entropy_B = distrax.Bernoulli(probs=slab_prob_BxZ).entropy().sum(-1)
    batch = lambda loss: jnp.broadcast_to(loss, gate_entropy_B.shape)
    return {"usage_kl": batch(hparams.usage_weight * usage_kl),
            "code_usage_kl": batch(hparams.code_usage_weight * code_usage_kl),
            "gate_entropy": hparams.gate_entropy_weight * gate_entropy_B}

  @staticmethod
  def slab_prob(posterior: HSVAEPosterior) -> jax.Array:
    return posterior.b_BxZ / (posterior.a_BxZ + posterior.b_BxZ)

  def codes(self, posterior: HSVAEPosterior) -> base.BatchCodes:
    """The slab's mean where the spike-or-slab posterior (at gamma = E_q[gamma] unless mean-field) favours
    the slab, else 0."""
    q_z = self.posterior_z(posterior, 1 - self.slab_prob(posterior))
    return base.BatchCodes.where_slab(q_z.loc, q_z.slab_prob)

  def spike_slab_mean(self, codes: base.BatchCodes, sample: HSVAESample) -> jax.Array:
    """(1 - gamma) mu at the gamma drawn for z, as the original code has it; E_q[slab] mu for the mean-field
    gate, which draws no gamma."""
    if sample.gamma_BxZ is None:
      return super().spike_slab_mean(codes, sample)
    return (1.0 - sample.gamma_BxZ) * codes.mu_BxZ
