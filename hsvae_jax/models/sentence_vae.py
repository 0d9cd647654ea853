"""The sentence VAE: an encoder, a latent family's head and a decoder (PAPER.md sizes).

Encoders: a GRU over the words, or a pretrained transformer: frozen (its pooled embedding arrives in
the batch) or fine-tuned (its wordpiece ids arrive in the batch and its parameters are the model's).
Decoders: a GRU over the words, or a linear map back to the frozen embedding.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hsvae_jax.data.tokenizer import EOS
from hsvae_jax.encoders import bert
from hsvae_jax.latents import Latent
from hsvae_jax.latents.base import Posterior, Sample
from hsvae_jax.models.dense import FoldedBiasDense
from hsvae_jax.models.gru import GRU

ENCODERS = ("gru", "transformer")
DECODERS = ("gru", "embedding")
# The GRU decoder's states [B * L, H] (SentenceVAE.project makes them logits), or an embedding's {'loc', 'log_scale'}.
Reconstruction = jax.Array | dict[str, jax.Array]
# Batch entries besides tokens and lengths that an encoder reads: the frozen embedding [B, E], or the
# fine-tuned transformer's wordpiece ids and attention mask [B, L'].
FEATURES = ("embedding", "encoder_ids", "encoder_mask")


class EmbeddingDecoder(nn.Module):
  """A Gaussian over the frozen embedding: linear mean around a given bias, per-dimension scale.

  The scale is learned, or fixed at 1 (squared error) for a deterministic autoencoder.
  """

  embedding_dim: int
  learn_scale: bool = True

  @nn.compact
  def __call__(self, z_BxZ: jax.Array, bias_E: jax.Array) -> dict[str, jax.Array]:
    loc_BxE = nn.Dense(self.embedding_dim, use_bias=False, name="loc")(z_BxZ) + bias_E
    log_scale_E = (self.param("log_scale", nn.initializers.zeros_init(), (self.embedding_dim,))
                   if self.learn_scale else jnp.zeros(self.embedding_dim))
    return {"loc": loc_BxE, "log_scale": jnp.broadcast_to(log_scale_E, loc_BxE.shape)}


class SentenceVAE(nn.Module):
  """Returns the posterior's parameters, the decoder's sample and its reconstruction; the loss lives in objectives."""

  vocab_size: int
  latent: Latent
  embed_dim: int = 256
  hidden_dim: int = 512
  encoder_kind: str = "gru"  # one of ENCODERS
  decoder_kind: str = "gru"  # one of DECODERS
  embedding_dim: int = 0  # the frozen encoder's embedding size (encoder 'transformer', decoder 'embedding')
  transformer: bert.BertConfig | None = None  # set to fine-tune the transformer instead of freezing it
  pooling: str = "mean"  # how the fine-tuned transformer's states become one vector
  dtype: Any = jnp.float32  # the GRUs' and the vocabulary projection's matmul inputs; parameters stay float32
  # The share of a batch's L x B tokens that the loss projects onto the vocabulary when the real ones
  # fit (objectives.sequence_nll): a speed setting only, the loss and its gradients stay the same.
  token_capacity: float = 1.0

  def setup(self):
    if "gru" in (self.encoder_kind, self.decoder_kind):
      self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    if self.encoder_kind == "gru":
      self.encoder = GRU(self.hidden_dim, self.dtype)
    elif self.transformer is not None:
      self.encoder = bert.Bert(self.transformer)
    self.posterior_head = self.latent.head()
    if self.decoder_kind == "gru":
      self.decoder = GRU(self.hidden_dim, self.dtype)
      self.vocab_projection = FoldedBiasDense(self.vocab_size, self.dtype)
    else:
      # A sparse autoencoder's reconstruction is plain squared error: a Gaussian of unit scale.
      self.embedding_decoder = EmbeddingDecoder(
          self.embedding_dim, learn_scale=not self.latent.is_autoencoder)
      # Subtracted before encoding and added back after decoding (Gao et al. 2024's b_pre): reconstruction
      # pulls it to the embeddings' mean, so codes describe how a sentence differs from the average one,
      # not the direction all mean-pooled embeddings share.
      self.embedding_bias = self.param("embedding_bias", nn.initializers.zeros_init(), (self.embedding_dim,))

  def encode(self, tokens_BxL: jax.Array, lengths_B: jax.Array,
             features: dict[str, jax.Array] | None = None) -> Posterior:
    features = features or {}
    if self.transformer is not None:
      ids_BxL, mask_BxL = features["encoder_ids"], features["encoder_mask"]
      h_BxLxD = self.encoder(ids_BxL, jnp.zeros_like(ids_BxL), mask_BxL)
      return self.posterior_head(bert.pool(h_BxLxD, mask_BxL, self.pooling))
    if self.encoder_kind == "transformer":
      embedding_BxE = features["embedding"]
      if self.decoder_kind == "embedding":
        embedding_BxE = embedding_BxE - self.embedding_bias
      return self.posterior_head(embedding_BxE)
    h_LxBxH = self.encoder(self.embed(tokens_BxL))
    # The encoder's state at the last real token (padding comes after it).
    h_BxH = jnp.take_along_axis(h_LxBxH, (lengths_B - 1)[None, :, None], axis=0)[0]  # local to a batch shard
    return self.posterior_head(h_BxH)

  def decode(self, tokens_BxL: jax.Array, z_BxZ: jax.Array) -> Reconstruction:
    """The embedding's Gaussian, or the teacher-forced decoder's states [B * L, H]: row b * L + t is step t of sentence b.

    The vocabulary projection (`project`) is left to the loss, which runs it on the real tokens only.
    Batch-major flat states give batch-major flat logits, which are never transposed or reshaped on
    their way into the loss, keeping their gradient (the costliest part of a step at vocabulary sizes
    like 20k) a plain matmul; and a batch split over devices stays split through the projection.
    """
    if self.decoder_kind == "embedding":
      return self.embedding_decoder(z_BxZ, self.embedding_bias)
    batch, length = tokens_BxL.shape
    # Input at step t is token t-1, with <EOS> as the start token; z joins every step.
    previous_BxL = jnp.concatenate([jnp.full((batch, 1), EOS, tokens_BxL.dtype), tokens_BxL[:, :-1]], axis=1)
    z_BxLxZ = jnp.broadcast_to(z_BxZ[:, None, :], (batch, length, z_BxZ.shape[-1]))
    h_LxBxH = self.decoder(jnp.concatenate([self.embed(previous_BxL), z_BxLxZ], axis=-1))
    # Transposing the (small) states, not the logits: see above.
    return jnp.swapaxes(h_LxBxH, 0, 1).reshape(batch * length, self.hidden_dim)

  def project(self, states_NxH: jax.Array) -> jax.Array:
    """Next-word logits [N, V] from decoder states [N, H]."""
    return self.vocab_projection(states_NxH)

  def __call__(self, tokens_BxL: jax.Array, lengths_B: jax.Array, key: jax.Array, temperature: jax.Array,
               features: dict[str, jax.Array] | None = None) -> tuple[Reconstruction, Posterior, Sample]:
    """features: the batch's FEATURES entries that the encoder reads."""
    posterior = self.encode(tokens_BxL, lengths_B, features)
    sample = self.latent.sample(posterior, key, temperature)
    reconstruction = self.decode(tokens_BxL, sample.z_BxZ)
    if self.decoder_kind == "gru" and self.is_initializing():
      self.project(reconstruction[:1])  # the loss applies it; init must create its parameters
    return reconstruction, posterior, sample
