import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsvae_jax import default_config
from hsvae_jax import objectives
from hsvae_jax.errors import InputError
from hsvae_jax.latents import HSVAELatent
from hsvae_jax.models import SentenceVAE, make_model
from hsvae_jax.models.dense import FoldedBiasDense

MODEL = SentenceVAE(vocab_size=11, latent=HSVAELatent(latent_dim=4), embed_dim=6, hidden_dim=8)
TOKENS = jnp.array([[5, 6, 7, 1, 0, 0], [4, 9, 3, 8, 2, 1]])
LENGTHS = jnp.array([4, 6])


@functools.cache
def _params():
  """Made once, by one program: run op by op, the init's Beta sample alone takes seconds."""
  return jax.jit(MODEL.init)(jax.random.key(0), TOKENS, LENGTHS, jax.random.key(1), jnp.float32(0.5))["params"]


def test_shapes_and_shared_embedding():
  params = _params()
  # Shapes only: tracing is enough.
  states, posterior, sample = jax.eval_shape(MODEL.apply, {"params": params}, TOKENS, LENGTHS, jax.random.key(2),
                                             jnp.float32(0.5))
  assert states.shape == (2 * 6, 8)  # batch-major, flat
  assert jax.eval_shape(functools.partial(MODEL.apply, method=SentenceVAE.project),
                        {"params": params}, states).shape == (6 * 2, 11)
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
  def decode(tokens, z):
    states = MODEL.apply({"params": params}, tokens, z, method=SentenceVAE.decode)
    return MODEL.apply({"params": params}, states, method=SentenceVAE.project).reshape(2, 6, 11).swapaxes(0, 1)

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


def test_bfloat16_matmuls_keep_float32_parameters_and_track_the_float32_model():
  bf16_model = MODEL.clone(dtype=jnp.bfloat16)
  params = _params()
  bf16_params = jax.eval_shape(bf16_model.init, jax.random.key(0), TOKENS, LENGTHS, jax.random.key(1),
                               jnp.float32(0.5))["params"]
  assert {leaf.dtype for leaf in jax.tree.leaves(bf16_params)} == {jnp.dtype(jnp.float32)}
  z = jax.random.normal(jax.random.key(3), (2, 4))

  def nll(model, params):
    states = model.apply({"params": params}, TOKENS, z, method=SentenceVAE.decode)
    logits = model.apply({"params": params}, states, method=SentenceVAE.project)
    return objectives.sequence_nll(lambda x: x, logits, TOKENS, LENGTHS).sum(), logits

  nll_and_grad = jax.jit(jax.value_and_grad(nll, 1, has_aux=True), static_argnums=0)
  (nll32, logits32), grads32 = nll_and_grad(MODEL, params)
  (nll16, logits16), grads16 = nll_and_grad(bf16_model, params)
  assert logits16.dtype == jnp.bfloat16 and nll16.dtype == jnp.float32
  # bfloat16 keeps 8 bits of mantissa: agreement to about 1%, not to float32's 1e-6.
  np.testing.assert_allclose(logits16.astype(jnp.float32), logits32, rtol=0.03, atol=0.03)
  np.testing.assert_allclose(nll16, nll32, rtol=0.01)
  flat32, flat16 = (jnp.concatenate([g.ravel() for g in jax.tree.leaves(g)]) for g in (grads32, grads16))
  assert flat16.dtype == jnp.float32
  assert jnp.dot(flat32, flat16) / (jnp.linalg.norm(flat32) * jnp.linalg.norm(flat16)) > 0.99


def test_an_unknown_dtype_is_refused():
  config = default_config.get_config()
  config.model.dtype = "float16"
  with pytest.raises(InputError, match="model.dtype"):
    make_model(config.model, vocab_size=11)


@pytest.mark.parametrize("capacity", [0.0, 1.5])
def test_a_token_capacity_outside_0_1_is_refused(capacity):
  config = default_config.get_config()
  config.model.token_capacity = capacity
  with pytest.raises(InputError, match="model.token_capacity"):
    make_model(config.model, vocab_size=11)
