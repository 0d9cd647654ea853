import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hsvae_jax.latents import HSVAELatent
from hsvae_jax.models import SentenceVAE
from hsvae_jax.models.dense import FoldedBiasDense

MODEL = SentenceVAE(vocab_size=11, latent=HSVAELatent(latent_dim=4), embed_dim=6, hidden_dim=8)
TOKENS = jnp.array([[5, 6, 7, 1, 0, 0], [4, 9, 3, 8, 2, 1]])
LENGTHS = jnp.array([4, 6])


def _params():
  return MODEL.init(jax.random.key(0), TOKENS, LENGTHS, jax.random.key(1), jnp.float32(0.5))["params"]


def test_shapes_and_shared_embedding():
  params = _params()
  logits, posterior, sample = MODEL.apply({"params": params}, TOKENS, LENGTHS, jax.random.key(2), jnp.float32(0.5))
  assert logits.shape == (6 * 2, 11)  # time-major, flat
  assert set(posterior) == {"mu", "sigma", "a", "b"}
  assert sample["z"].shape == (2, 4)
  assert [k for k in params if "embed" in k.lower()] == ["embed"]


def test_encoder_reads_the_state_at_the_last_real_token():
  params = _params()
  encode = lambda t: MODEL.apply({"params": params}, t, LENGTHS, method=SentenceVAE.encode)
  longer = jnp.concatenate([TOKENS, jnp.zeros((2, 3), TOKENS.dtype)], axis=1)
  altered_padding = TOKENS.at[0, 4:].set(9)  # what follows the last real token must not matter
  for other in (longer, altered_padding):
    for name, value in encode(other).items():
      np.testing.assert_allclose(value, encode(TOKENS)[name], rtol=1e-6, atol=1e-6)
  beheaded = TOKENS.at[0, 2].set(4)
  assert not np.allclose(encode(beheaded)["mu"][0], encode(TOKENS)["mu"][0])


def test_decoder_is_teacher_forced_and_causal():
  params = _params()
  z = jax.random.normal(jax.random.key(3), (2, 4))
  decode = lambda t, z: MODEL.apply({"params": params}, t, z, method=SentenceVAE.decode).reshape(6, 2, 11)
  changed = TOKENS.at[:, 3].set(10)
  before, after = decode(TOKENS, z), decode(changed, z)
  # Logits at step t see tokens < t only: changing token 3 changes steps 4 onwards.
  np.testing.assert_allclose(before[:4], after[:4], rtol=1e-6)
  assert not np.allclose(before[4], after[4])
  # z reaches every step.
  shifted = decode(TOKENS, z + 1.0)
  assert all(not np.allclose(before[t], shifted[t]) for t in range(6))


def test_folded_bias_dense_equals_dense_in_value_and_gradient():
  x_NxD = jax.random.normal(jax.random.key(0), (6, 5))
  params = FoldedBiasDense(7).init(jax.random.key(1), x_NxD)
  params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape), params)

  def loss(module, params):
    return jnp.sum(jnp.sin(module.apply(params, x_NxD)))

  np.testing.assert_allclose(FoldedBiasDense(7).apply(params, x_NxD), nn.Dense(7).apply(params, x_NxD),
                             rtol=1e-6, atol=1e-6)
  folded, dense = jax.grad(loss, 1)(FoldedBiasDense(7), params), jax.grad(loss, 1)(nn.Dense(7), params)
  chex.assert_trees_all_close(folded, dense, rtol=1e-6, atol=1e-6)
