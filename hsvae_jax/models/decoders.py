"""The sentence VAE's decoders, p(x | z): each reconstructs a batch from z and scores it (its NLL).

Both share SentenceVAE's namespace, so their parameters keep the names they had when SentenceVAE built
them itself, and checkpoints from then keep loading.
"""

import functools
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hsvae_jax.data.tokenizer import EOS
from hsvae_jax.models.dense import FoldedBiasDense
from hsvae_jax.models.gru import GRU


def packed_rows(rows: int, token_capacity: float) -> int:
  """How many of a device's `rows` token rows the packed projection holds: whole tiles of 8 rows."""
  return -(-math.ceil(token_capacity * rows) // 8) * 8


def sequence_nll(project: Callable[[jax.Array], jax.Array], states_BLxH: jax.Array, tokens_BxL: jax.Array,
                 lengths_B: jax.Array, token_capacity: float = 1.0, data_shards: int = 1) -> jax.Array:
  """Cross-entropy summed over each sentence's real tokens, <EOS> included: [B].

  project maps decoder states [N, H] to next-word logits [N, V]; states_BLxH is batch-major and flat
  (row b * L + t is step t of sentence b), as GRUDecoder returns it. The projection and its
  gradient are most of a train step, and padding fills a quarter to a half of a batch's rows; so when
  the real rows fit in token_capacity of them (a static size), only they are projected. A batch with
  more real rows takes every row. Both give the same loss. bfloat16 logits are summed in float32.

  data_shards is how many devices the batch is split over (the mesh's `data` axis): each packs its own
  sentences' rows, so the projection stays split. It must divide the batch.
  """
  batch, length = tokens_BxL.shape
  if batch % data_shards:
    raise ValueError(f"a batch of {batch} sentences does not split into {data_shards} data shards")
  targets_BL = tokens_BxL.reshape(-1)
  real_BL = (jnp.arange(length)[None, :] < lengths_B[:, None]).reshape(-1)

  def nll_of(states_NxH, targets_N):
    return optax.softmax_cross_entropy_with_integer_labels(project(states_NxH).astype(jnp.float32), targets_N)

  def every_row(states_BLxH):
    return jnp.where(real_BL, nll_of(states_BLxH, targets_BL), 0.0).reshape(batch, length).sum(1)

  rows = batch * length // data_shards
  capacity = packed_rows(rows, token_capacity)
  if capacity >= rows:
    return every_row(states_BLxH)
  real_SxR = real_BL.reshape(data_shards, rows)
  real_S = real_SxR.sum(1)

  def real_rows(states_BLxH):
    rows_SxC = jax.vmap(lambda real_R: jnp.nonzero(real_R, size=capacity, fill_value=0)[0])(real_SxR)
    states_SxCxH = jnp.take_along_axis(states_BLxH.reshape(data_shards, rows, -1), rows_SxC[..., None], axis=1)
    targets_SxC = jnp.take_along_axis(targets_BL.reshape(data_shards, rows), rows_SxC, axis=1)
    nll_SC = nll_of(states_SxCxH.reshape(data_shards * capacity, -1), targets_SxC.reshape(-1))
    nll_SxC = jnp.where(jnp.arange(capacity)[None, :] < real_S[:, None], nll_SC.reshape(data_shards, capacity), 0.0)
    # A device's rows are its own sentences': sum them there.
    sum_sentences = functools.partial(jax.ops.segment_sum, num_segments=batch // data_shards)
    return jax.vmap(sum_sentences)(nll_SxC, rows_SxC // length).reshape(batch)

  # A cond keeps both branches' residuals, the untaken one's filled with zeros: rematerialising the
  # fallback keeps its [B * L, V] logits out of them, which would otherwise be filled on every step.
  return jax.lax.cond(jnp.all(real_S <= capacity), real_rows, jax.checkpoint(every_row), states_BLxH)


class GRUDecoder(nn.Module):
  """The words, teacher-forced: a GRU reads the previous word and z at every step; the vocabulary
  projection of its states gives the next word's logits."""

  vocab_size: int
  embed_dim: int = 256
  hidden_dim: int = 512
  dtype: Any = jnp.float32  # the GRU's and the vocabulary projection's matmul inputs; parameters stay float32
  # The share of a batch's L x B tokens that nll projects onto the vocabulary when the real ones fit
  # (sequence_nll): a speed setting only, the loss and its gradients stay the same.
  token_capacity: float = 1.0

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)  # the GRU encoder reads the words through it too
    self.decoder = GRU(self.hidden_dim, self.dtype)  # the name its parameters have always had
    self.vocab_projection = FoldedBiasDense(self.vocab_size, self.dtype)

  def __call__(self, batch: dict[str, jax.Array], z_BxZ: jax.Array) -> jax.Array:
    """The states [B * L, H] at batch['tokens']: row b * L + t is step t of sentence b.

    The vocabulary projection (`project`) is left to nll, which runs it on the real tokens only.
    Batch-major flat states give batch-major flat logits, which are never transposed or reshaped on
    their way into the loss, keeping their gradient (the costliest part of a step at vocabulary sizes
    like 20k) a plain matmul; and a batch split over devices stays split through the projection.
    """
    tokens_BxL = batch["tokens"]
    batch_size, length = tokens_BxL.shape
    # Input at step t is token t-1, with <EOS> as the start token; z joins every step.
    previous_BxL = jnp.concatenate([jnp.full((batch_size, 1), EOS, tokens_BxL.dtype), tokens_BxL[:, :-1]], axis=1)
    z_BxLxZ = jnp.broadcast_to(z_BxZ[:, None, :], (batch_size, length, z_BxZ.shape[-1]))
    h_LxBxH = self.decoder(jnp.concatenate([self.embed(previous_BxL), z_BxLxZ], axis=-1))
    # Transposing the (small) states, not the logits: see above.
    return jnp.swapaxes(h_LxBxH, 0, 1).reshape(batch_size * length, self.hidden_dim)

  def project(self, states_NxH: jax.Array) -> jax.Array:
    """Next-word logits [N, V] from decoder states [N, H]."""
    return self.vocab_projection(states_NxH)

  def nll(self, states_BLxH: jax.Array, batch: dict[str, jax.Array], data_shards: int = 1) -> dict[str, jax.Array]:
    """{'rec_nll': the words' summed cross-entropy [B]}; data_shards: see sequence_nll."""
    if self.is_initializing():
      self.project(states_BLxH[:1])  # its parameters: sequence_nll's cond could not make them
    return {"rec_nll": sequence_nll(self.project, states_BLxH, batch["tokens"], batch["lengths"],
                                    self.token_capacity, data_shards)}

  @nn.nowrap
  def reconstruction_metrics(self, out: dict[str, np.ndarray]) -> dict[str, float]:
    """From evaluation's per-sentence 'rec_nll' and 'num_tokens': the NLL per token."""
    return {"rec_nll_token": float(out["rec_nll"].sum() / out["num_tokens"].sum())}


class Gaussian(flax.struct.PyTreeNode):
  """A diagonal Gaussian over the embedding, for each sentence."""

  loc_BxE: jax.Array
  log_scale_BxE: jax.Array


def embedding_nll(reconstruction: Gaussian, embedding_BxE: jax.Array) -> jax.Array:
  """-log N(embedding | loc, exp(log_scale)^2), summed over dimensions: [B]."""
  log_scale_BxE = reconstruction.log_scale_BxE
  standardised_BxE = (embedding_BxE - reconstruction.loc_BxE) * jnp.exp(-log_scale_BxE)
  return (0.5 * standardised_BxE**2 + log_scale_BxE + 0.5 * jnp.log(2 * jnp.pi)).sum(-1)


class LinearGaussian(nn.Module):
  """A Gaussian whose mean is linear in z around a given bias, with a per-dimension scale, learned or 1."""

  embedding_dim: int
  learn_scale: bool = True

  @nn.compact
  def __call__(self, z_BxZ: jax.Array, bias_E: jax.Array) -> Gaussian:
    loc_BxE = nn.Dense(self.embedding_dim, use_bias=False, name="loc")(z_BxZ) + bias_E
    log_scale_E = (self.param("log_scale", nn.initializers.zeros_init(), (self.embedding_dim,))
                   if self.learn_scale else jnp.zeros(self.embedding_dim))
    return Gaussian(loc_BxE, jnp.broadcast_to(log_scale_E, loc_BxE.shape))


class EmbeddingDecoder(nn.Module):
  """A frozen transformer's embedding (the batch's 'embedding'): a Gaussian, linear in z around a learned bias."""

  embedding_dim: int
  learn_scale: bool = True  # False: a unit scale, so the NLL is half the squared error plus a constant

  def setup(self):
    # Gao et al. 2024's b_pre: also taken off the encoder's input (CentredEmbeddingEncoder). Reconstruction
    # pulls it to the embeddings' mean, so codes describe how a sentence differs from the average one, not
    # the direction all mean-pooled embeddings share.
    self.embedding_bias = self.param("embedding_bias", nn.initializers.zeros_init(), (self.embedding_dim,))
    self.embedding_decoder = LinearGaussian(self.embedding_dim, self.learn_scale)

  def __call__(self, batch: dict[str, jax.Array], z_BxZ: jax.Array) -> Gaussian:
    del batch  # z alone gives the reconstruction
    return self.embedding_decoder(z_BxZ, self.embedding_bias)

  def nll(self, reconstruction: Gaussian, batch: dict[str, jax.Array], data_shards: int = 1) -> dict[str, jax.Array]:
    """{'rec_nll': the Gaussian NLL [B], 'squared_error': [B]}; every sentence is a row of its own device's."""
    del data_shards
    embedding_BxE = batch["embedding"]
    return {"rec_nll": embedding_nll(reconstruction, embedding_BxE),
            "squared_error": jnp.sum((embedding_BxE - reconstruction.loc_BxE) ** 2, -1)}

  @nn.nowrap
  def reconstruction_metrics(self, out: dict[str, np.ndarray]) -> dict[str, float]:
    """From evaluation's per-sentence 'squared_error': the mean squared error per dimension."""
    return {"mse": float(out["squared_error"].mean() / self.embedding_dim)}


Decoder = GRUDecoder | EmbeddingDecoder
