"""The sentence VAE's encoders: each maps a batch to what the latent family's head reads, [B, H].

An encoder may read parameters of the decoder it is paired with (the word embedding, the embedding's
bias): SentenceVAE hands it the decoder.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hsvae_jax.encoders import bert
from hsvae_jax.models.decoders import Decoder, EmbeddingDecoder, GRUDecoder
from hsvae_jax.models.gru import GRU


class GRUEncoder(nn.Module):
  """A GRU over the words (batch 'tokens', 'lengths'): its state at each sentence's last real token."""

  hidden_dim: int = 512
  dtype: Any = jnp.float32  # the GRU's matmul inputs; parameters stay float32

  def setup(self):
    self.gru = GRU(self.hidden_dim, self.dtype)
    nn.share_scope(self, self.gru)  # its parameters right under `encoder`, as before encoders were modules

  def __call__(self, batch: dict[str, jax.Array], decoder: GRUDecoder) -> jax.Array:
    h_LxBxH = self.gru(decoder.embed(batch["tokens"]))  # the words' embedding, shared with the decoder
    # The state at the last real token (padding comes after it).
    return jnp.take_along_axis(h_LxBxH, (batch["lengths"] - 1)[None, :, None], axis=0)[0]  # local to a batch shard

  @nn.nowrap
  def example_features(self) -> dict[str, jax.Array]:
    """What it reads of a batch besides the tokens and lengths, for one sentence (init's example)."""
    return {}


class EmbeddingEncoder(nn.Module):
  """A frozen transformer's pooled embedding, computed once outside the model (batch 'embedding')."""

  embedding_dim: int

  def __call__(self, batch: dict[str, jax.Array], decoder: Decoder) -> jax.Array:
    del decoder
    return batch["embedding"]

  @nn.nowrap
  def example_features(self) -> dict[str, jax.Array]:
    return {"embedding": jnp.zeros((1, self.embedding_dim))}


class CentredEmbeddingEncoder(EmbeddingEncoder):
  """The frozen embedding less the embedding decoder's bias, which the decoder adds back (Gao et al. 2024's
  b_pre)."""

  def __call__(self, batch: dict[str, jax.Array], decoder: EmbeddingDecoder) -> jax.Array:
    return batch["embedding"] - decoder.embedding_bias


class TransformerEncoder(nn.Module):
  """A transformer fine-tuned with the model: its pooled states over the wordpieces (batch 'encoder_ids',
  'encoder_mask'). train.init_state starts it from the pretrained checkpoint."""

  config: bert.BertConfig
  pooling: str = "mean"

  def setup(self):
    self.transformer = bert.Bert(self.config)
    nn.share_scope(self, self.transformer)  # the checkpoint's parameters right under `encoder`

  def __call__(self, batch: dict[str, jax.Array], decoder: Decoder) -> jax.Array:
    del decoder
    ids_BxL, mask_BxL = batch["encoder_ids"], batch["encoder_mask"]
    h_BxLxD = self.transformer(ids_BxL, jnp.zeros_like(ids_BxL), mask_BxL)
    return bert.pool(h_BxLxD, mask_BxL, self.pooling)

  @nn.nowrap
  def example_features(self) -> dict[str, jax.Array]:
    ones_BxL = jnp.ones((1, 2), jnp.int32)
    return {"encoder_ids": ones_BxL, "encoder_mask": ones_BxL}


Encoder = GRUEncoder | EmbeddingEncoder | TransformerEncoder
