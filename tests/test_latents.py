"""What every latent family shares: the base class's defaults, the exact-zero rule, containers that are pytrees."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsvae_jax.hparams import HParams
from hsvae_jax.latents import LATENTS, GaussianLatent, HSVAELatent, VSCLatent, base
from hsvae_jax.latents.gaussian import GaussianPosterior
from hsvae_jax.latents.hsvae import HSVAEPosterior, HSVAESample
from hsvae_jax.latents.vsc import VSCPosterior

HP = HParams(alpha=jnp.float32(4.0), beta=jnp.float32(1.0), z_reg_weight=jnp.float32(0.01),
             gamma_reg_weight=jnp.float32(0.01), temperature=jnp.float32(0.5))
MU = jnp.array([[1.5, -0.5, 0.3], [0.2, 0.9, -1.0]])
SIGMA = jnp.full((2, 3), 0.4)


@dataclasses.dataclass(frozen=True)
class SignLatent(base.Latent[GaussianPosterior, base.Sample]):
  """A family that defines only what the base class requires: z = mu, its code the positive entries of mu."""

  latent_dim: int

  @classmethod
  def from_config(cls, model_config):
    return cls(model_config.latent_dim)

  def head(self):
    raise NotImplementedError

  def sample(self, posterior, key, temperature):
    return base.Sample(posterior.mu_BxZ)

  def kl(self, posterior, sample, hparams):
    zeros_B = jnp.zeros(posterior.mu_BxZ.shape[:1])
    return zeros_B, zeros_B

  def codes(self, posterior):
    return base.BatchCodes.where_slab(posterior.mu_BxZ, (posterior.mu_BxZ > 0).astype(jnp.float32))


def test_a_family_gets_the_base_class_defaults():
  latent, posterior = SignLatent(3), GaussianPosterior(MU, SIGMA)
  sample = latent.sample(posterior, jax.random.key(0), HP.temperature)
  assert latent.extra_loss(posterior, sample, HP) == {}  # no terms beyond the KLs
  assert not latent.is_autoencoder
  # The spike-and-slab mean weights mu by E_q[slab]: here 1 where mu > 0, else 0.
  np.testing.assert_array_equal(latent.spike_slab_mean(latent.codes(posterior), sample), jnp.where(MU > 0, MU, 0.0))
  with pytest.raises(TypeError, match="abstract"):
    base.Latent()


def test_only_the_sparse_autoencoder_is_an_autoencoder_and_the_gaussian_vae_adds_no_loss_terms():
  assert [name for name, family in LATENTS.items() if family.is_autoencoder] == ["topk_sae"]
  assert GaussianLatent(3).extra_loss(GaussianPosterior(MU, SIGMA), base.Sample(MU), HP) == {}


def test_codes_follow_one_rule_for_exact_zeros():
  slab_prob = jnp.array([[0.9, 0.5, 0.1], [0.51, 0.0, 1.0]])
  codes = base.BatchCodes.where_slab(MU, slab_prob)
  np.testing.assert_array_equal(codes.code_BxZ, jnp.array([[1.5, 0.0, 0.0], [0.2, 0.0, -1.0]]))  # 1/2 is not enough
  np.testing.assert_array_equal(codes.mu_BxZ, MU)
  np.testing.assert_array_equal(codes.slab_prob_BxZ, slab_prob)
  vsc = VSCLatent(3).codes(VSCPosterior(MU, SIGMA, jnp.log(slab_prob) - jnp.log1p(-slab_prob)))
  chex.assert_trees_all_close(vsc, codes, atol=1e-6)
  dense = GaussianLatent(3).codes(GaussianPosterior(MU, SIGMA))  # no spike: mu itself
  np.testing.assert_array_equal(dense.code_BxZ, MU)
  np.testing.assert_array_equal(dense.slab_prob_BxZ, jnp.ones_like(MU))


@pytest.mark.parametrize("gate", ["beta", "mean_field"])
def test_hsvae_spike_slab_mean_weights_mu_by_the_drawn_gamma_or_the_mean_field_slab_probability(gate):
  latent = HSVAELatent(3, gate=gate)
  posterior = HSVAEPosterior(MU, SIGMA, jnp.full((2, 3), 2.0), jnp.array([[1.0, 3.0, 0.5], [4.0, 1.0, 2.0]]))
  sample = latent.sample(posterior, jax.random.key(0), HP.temperature)
  codes = latent.codes(posterior)
  if gate == "mean_field":
    assert sample.gamma_BxZ is None
    expected = codes.slab_prob_BxZ * codes.mu_BxZ
  else:
    expected = (1 - sample.gamma_BxZ) * codes.mu_BxZ
  np.testing.assert_allclose(latent.spike_slab_mean(codes, sample), expected, rtol=1e-6)


def test_samples_are_pytrees_under_jit_and_vmap_with_or_without_a_gamma():
  drawn = HSVAESample(MU, jnp.full((2, 3), 0.3), jnp.full((2, 3), 0.7))
  undrawn = HSVAESample(MU, jnp.full((2, 3), 0.3))
  assert len(jax.tree.leaves(drawn)) == 3 and len(jax.tree.leaves(undrawn)) == 2
  for sample in (drawn, undrawn):
    chex.assert_trees_all_equal(jax.jit(lambda s: s)(sample), sample)
    stacked = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), sample)
    doubled = jax.vmap(lambda s: s.replace(z_BxZ=2 * s.z_BxZ))(stacked)
    np.testing.assert_array_equal(doubled.z_BxZ[1], 4 * MU)
    assert (doubled.gamma_BxZ is None) == (sample.gamma_BxZ is None)
