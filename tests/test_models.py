"""The sentence VAE's parts: encoders and decoders composed with a latent family, each decoder's NLL against a
hand computation, the GRUs, the vocabulary projection and its packing, parameter names, config refusals."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from hsvae_jax import default_config
from hsvae_jax.errors import InputError
from hsvae_jax.latents import GaussianLatent, HSVAELatent, TopKSAELatent
from hsvae_jax.models import SentenceVAE, make_model
from hsvae_jax.models import decoders
from hsvae_jax.models.decoders import EmbeddingDecoder, GRUDecoder
from hsvae_jax.models.dense import FoldedBiasDense
from hsvae_jax.models.encoders import CentredEmbeddingEncoder, EmbeddingEncoder, GRUEncoder
from hsvae_jax.models.gru import GRU
from conftest import tiny_bert_tensors, write_tiny_bert

MODEL = SentenceVAE(HSVAELatent(latent_dim=4), GRUEncoder(hidden_dim=8), GRUDecoder(11, embed_dim=6, hidden_dim=8))
TOKENS = jnp.array([[5, 6, 7, 1, 0, 0], [4, 9, 3, 8, 2, 1]])
LENGTHS = jnp.array([4, 6])
BATCH = {"tokens": TOKENS, "lengths": LENGTHS}
EMBEDDING = jnp.array([[0.5, -1.0, 2.0], [0.1, 0.3, -0.2]])


def _params(model=MODEL, batch=None):
  """By one program: op by op, the init's Beta sample alone takes seconds."""
  return jax.jit(model.init)(jax.random.key(0), batch or BATCH, jax.random.key(1), jnp.float32(0.5))["params"]


@functools.cache
def _model_params():
  """MODEL's parameters, made once for the tests that only read them."""
  return _params()


def _project(model, params, states_NxH):
  return model.apply({"params": params}, states_NxH, method=SentenceVAE.project)


def test_shapes_and_shared_embedding():
  params = _model_params()
  # Shapes only: tracing is enough.
  terms, posterior, sample = jax.eval_shape(
      lambda: MODEL.apply({"params": params}, BATCH, jax.random.key(2), jnp.float32(0.5)))
  states = jax.eval_shape(lambda z: MODEL.apply({"params": params}, BATCH, z, method=SentenceVAE.decode),
                          sample.z_BxZ)
  assert states.shape == (2 * 6, 8)  # batch-major, flat
  assert jax.eval_shape(lambda s: _project(MODEL, params, s), states).shape == (6 * 2, 11)
  assert set(terms) == {"rec_nll"} and terms["rec_nll"].shape == (2,)
  assert posterior.a_BxZ.shape == posterior.mu_BxZ.shape == (2, 4)
  assert sample.z_BxZ.shape == (2, 4)
  assert [k for k in params if "embed" in k.lower()] == ["embed"]


def test_encoder_reads_the_state_at_the_last_real_token():
  params = _model_params()
  encode = lambda t: MODEL.apply({"params": params}, {"tokens": t, "lengths": LENGTHS}, method=SentenceVAE.encode)
  longer = jnp.concatenate([TOKENS, jnp.zeros((2, 3), TOKENS.dtype)], axis=1)
  altered_padding = TOKENS.at[0, 4:].set(9)  # what follows the last real token must not matter
  for other in (longer, altered_padding):
    chex.assert_trees_all_close(encode(other), encode(TOKENS), rtol=1e-6, atol=1e-6)
  beheaded = TOKENS.at[0, 2].set(4)
  assert not np.allclose(encode(beheaded).mu_BxZ[0], encode(TOKENS).mu_BxZ[0])


def test_decoder_is_teacher_forced_and_causal():
  params = _model_params()
  z = jax.random.normal(jax.random.key(3), (2, 4))
  def decode(tokens, z):
    states = MODEL.apply({"params": params}, {"tokens": tokens}, z, method=SentenceVAE.decode)
    return _project(MODEL, params, states).reshape(2, 6, 11).swapaxes(0, 1)

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
  bf16_model = MODEL.clone(encoder=GRUEncoder(8, jnp.bfloat16), likelihood=MODEL.likelihood.clone(dtype=jnp.bfloat16))
  params = _model_params()
  bf16_params = jax.eval_shape(lambda: _params(bf16_model))  # dtypes only: tracing is enough
  assert {leaf.dtype for leaf in jax.tree.leaves(bf16_params)} == {jnp.dtype(jnp.float32)}
  z = jax.random.normal(jax.random.key(3), (2, 4))

  def nll(model, params):
    states = model.apply({"params": params}, BATCH, z, method=SentenceVAE.decode)
    logits = _project(model, params, states)
    return decoders.sequence_nll(lambda x: x, logits, TOKENS, LENGTHS).sum(), logits

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


def test_sequence_nll_sums_real_tokens_only():
  rng = np.random.default_rng(0)
  logits_LxBxV = jnp.asarray(rng.normal(size=(4, 2, 5)), jnp.float32)
  tokens_BxL = jnp.array([[3, 4, 1, 0], [2, 2, 3, 1]])
  lengths_B = jnp.array([3, 4])
  log_probs = jax.nn.log_softmax(logits_LxBxV, axis=-1)
  expected = [-sum(float(log_probs[t, b, tokens_BxL[b, t]]) for t in range(int(lengths_B[b]))) for b in range(2)]
  logits_BLxV = jnp.swapaxes(logits_LxBxV, 0, 1).reshape(8, 5)  # batch-major, flat
  nll = decoders.sequence_nll(lambda x: x, logits_BLxV, tokens_BxL, lengths_B)
  np.testing.assert_allclose(nll, expected, rtol=1e-5)


@pytest.mark.parametrize("lengths", [(3, 9, 1, 12, 5, 2), (12, 12, 11, 12, 12, 10)], ids=["fit", "overflow"])
def test_sequence_nll_on_real_rows_only_has_the_every_row_value_and_gradient(lengths):
  """A capacity of half the 6 x 12 rows (40 after rounding up): the first batch's 32 real rows fit, the second's
  69 do not."""
  batch, length, hidden, vocab = 6, 12, 7, 9
  keys = jax.random.split(jax.random.key(0), 3)
  states_BLxH = jax.random.normal(keys[0], (batch * length, hidden))
  kernel_HxV = jax.random.normal(keys[1], (hidden, vocab))
  tokens_BxL = jax.random.randint(keys[2], (batch, length), 0, vocab)
  lengths_B = jnp.array(lengths)

  def total_nll(states_BLxH, kernel_HxV, capacity):
    return decoders.sequence_nll(lambda x: jnp.tanh(x) @ kernel_HxV, states_BLxH, tokens_BxL, lengths_B, capacity)

  per_sentence = {c: total_nll(states_BLxH, kernel_HxV, c) for c in (1.0, 0.5)}
  np.testing.assert_allclose(per_sentence[0.5], per_sentence[1.0], rtol=1e-6)
  grads = {c: jax.grad(lambda s, k: total_nll(s, k, c).sum(), (0, 1))(states_BLxH, kernel_HxV) for c in (1.0, 0.5)}
  chex.assert_trees_all_close(grads[0.5], grads[1.0], rtol=1e-5, atol=1e-6)
  # Padding's states get no gradient.
  real_BL = (jnp.arange(length)[None, :] < lengths_B[:, None]).reshape(-1)
  assert not np.any(grads[0.5][0][~real_BL]) and np.all(np.any(grads[0.5][0][real_BL], axis=-1))


def test_sequence_nll_refuses_a_batch_that_does_not_split_into_the_data_shards():
  states_BLxH, tokens_BxL, lengths_B = jnp.zeros((6 * 4, 3)), jnp.zeros((6, 4), jnp.int32), jnp.full(6, 4)
  with pytest.raises(ValueError, match="a batch of 6 sentences does not split into 4 data shards"):
    decoders.sequence_nll(lambda x: x, states_BLxH, tokens_BxL, lengths_B, 0.5, data_shards=4)
  assert decoders.sequence_nll(lambda x: x, states_BLxH, tokens_BxL, lengths_B, 0.5, data_shards=3).shape == (6,)


def test_gru_decoders_nll_is_the_cross_entropy_of_the_real_words_packed_or_not():
  padded = {"tokens": jnp.pad(TOKENS, ((0, 0), (0, 6))), "lengths": LENGTHS}  # 10 real rows of 24: packed in 16
  packed_model = MODEL.clone(likelihood=MODEL.likelihood.clone(token_capacity=0.5))
  params = _params(packed_model, padded)
  for model in (packed_model, MODEL):
    terms, _, sample = model.apply({"params": params}, padded, jax.random.key(2), jnp.float32(0.5))
    states = model.apply({"params": params}, padded, sample.z_BxZ, method=SentenceVAE.decode)
    log_probs = np.asarray(jax.nn.log_softmax(_project(model, params, states)), np.float64).reshape(2, 12, 11)
    expected = [-sum(log_probs[b, t, padded["tokens"][b, t]] for t in range(LENGTHS[b])) for b in range(2)]
    assert set(terms) == {"rec_nll"}
    np.testing.assert_allclose(terms["rec_nll"], expected, rtol=1e-5)


def _embedding_model(latent, embedding_dim=3):
  return SentenceVAE(latent, CentredEmbeddingEncoder(embedding_dim),
                     EmbeddingDecoder(embedding_dim, learn_scale=not latent.is_autoencoder))


def _perturbed(params, seed=4):
  """Parameters moved off their initial values (a zero bias and log-scale would hide a sign error)."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tree, [p + 0.5 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@pytest.mark.parametrize("latent", [GaussianLatent(latent_dim=2), TopKSAELatent(latent_dim=2, k=1)])
def test_embedding_decoders_nll_is_the_gaussian_density_and_an_autoencoders_is_squared_error(latent):
  model = _embedding_model(latent)
  batch = {"embedding": EMBEDDING}
  params = _perturbed(_params(model, batch))
  terms, _, sample = model.apply({"params": params}, batch, jax.random.key(2), jnp.float32(0.5))
  loc = sample.z_BxZ @ params["embedding_decoder"]["loc"]["kernel"] + params["embedding_bias"]
  squared_error = ((EMBEDDING - loc) ** 2).sum(-1)
  np.testing.assert_allclose(terms["squared_error"], squared_error, rtol=1e-5)
  if latent.is_autoencoder:  # a unit scale, and no parameter for it
    assert set(params["embedding_decoder"]) == {"loc"}
    expected = 0.5 * squared_error + 1.5 * np.log(2 * np.pi)
  else:
    expected = -scipy.stats.norm.logpdf(EMBEDDING, loc, np.exp(params["embedding_decoder"]["log_scale"])).sum(-1)
  np.testing.assert_allclose(terms["rec_nll"], expected, rtol=1e-5)


def test_encoders_read_the_decoders_word_embedding_or_take_its_bias_off_the_frozen_embedding():
  # GRU encoder: the GRU over the decoder's embedding of the words, read at the last real token.
  params = _model_params()
  h_LxBxH = GRU(8).apply({"params": params["encoder"]}, params["embed"]["embedding"][TOKENS])
  h_BxH = h_LxBxH[LENGTHS - 1, jnp.arange(2)]
  mu = MODEL.apply({"params": params}, BATCH, method=SentenceVAE.encode).mu_BxZ
  head = params["posterior_head"]["mu"]
  np.testing.assert_allclose(mu, h_BxH @ head["kernel"] + head["bias"], rtol=1e-5, atol=1e-6)
  # Frozen embedding: centred by the embedding decoder's bias, and read as it is beside the GRU decoder.
  batch = {"tokens": TOKENS, "lengths": LENGTHS, "embedding": EMBEDDING}
  for model, centre in ((_embedding_model(GaussianLatent(latent_dim=2)), True),
                        (MODEL.clone(encoder=EmbeddingEncoder(3)), False)):
    params = _perturbed(_params(model, batch))
    head = params["posterior_head"]["mu"]
    expected = (EMBEDDING - params["embedding_bias"] if centre else EMBEDDING) @ head["kernel"] + head["bias"]
    mu = model.apply({"params": params}, batch, method=SentenceVAE.encode).mu_BxZ
    np.testing.assert_allclose(mu, expected, rtol=1e-5, atol=1e-6)


GRU_PARAMS = {"input", "recurrent_kernel", "recurrent_bias"}
BERT_PARAMS = {"word_embeddings", "position_embeddings", "token_type_embeddings", "embeddings_norm", "layer_0",
               "layer_1"}


@pytest.mark.parametrize("encoder,freeze,decoder,latent,expected", [
    ("gru", True, "gru", "hsvae", {"embed": {"embedding"}, "encoder": GRU_PARAMS, "decoder": GRU_PARAMS,
                                   "vocab_projection": {"kernel", "bias"}}),
    ("transformer", True, "gru", "hsvae", {"embed": {"embedding"}, "decoder": GRU_PARAMS,
                                           "vocab_projection": {"kernel", "bias"}}),
    ("transformer", False, "gru", "hsvae", {"embed": {"embedding"}, "encoder": BERT_PARAMS,
                                            "decoder": GRU_PARAMS, "vocab_projection": {"kernel", "bias"}}),
    ("transformer", True, "embedding", "hsvae", {"embedding_decoder": {"loc", "log_scale"}, "embedding_bias": None}),
    ("transformer", True, "embedding", "topk_sae", {"embedding_decoder": {"loc"}, "embedding_bias": None}),
])
def test_parameters_keep_the_names_of_checkpoints_from_before_encoders_and_decoders_were_modules(
    tmp_path, encoder, freeze, decoder, latent, expected):
  config = default_config.get_config().model
  config.update(encoder=encoder, freeze_encoder=freeze, decoder=decoder, latent=latent, latent_dim=4, topk_k=2,
                embed_dim=6, hidden_dim=8, encoder_path=str(write_tiny_bert(tmp_path / "bert", tiny_bert_tensors())))
  model = make_model(config, vocab_size=11)
  batch = {"tokens": jnp.ones((1, 2), jnp.int32), "lengths": jnp.array([2])} | model.encoder.example_features()
  params = jax.eval_shape(lambda: _params(model, batch))
  assert set(params) == set(expected) | {"posterior_head"}
  for name, children in expected.items():
    assert children is None or set(params[name]) == children, name
