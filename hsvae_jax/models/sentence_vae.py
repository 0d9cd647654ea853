"""The sentence VAE: shared embedding, GRU encoder, a latent family's head, GRU decoder (PAPER.md sizes)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from hsvae_jax.data.tokenizer import EOS
from hsvae_jax.latents import Latent
from hsvae_jax.latents.base import Posterior, Sample
from hsvae_jax.models.dense import FoldedBiasDense
from hsvae_jax.models.gru import GRU


class SentenceVAE(nn.Module):
  """Returns the posterior's parameters, the decoder's sample and logits; the loss lives in objectives."""

  vocab_size: int
  latent: Latent
  embed_dim: int = 256
  hidden_dim: int = 512

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.encoder = GRU(self.hidden_dim)
    self.posterior_head = self.latent.head()
    self.decoder = GRU(self.hidden_dim)
    self.vocab_projection = FoldedBiasDense(self.vocab_size)

  def encode(self, tokens_BxL: jax.Array, lengths_B: jax.Array) -> Posterior:
    h_LxBxH = self.encoder(self.embed(tokens_BxL))
    # The encoder's state at the last real token (padding comes after it).
    h_BxH = h_LxBxH[lengths_B - 1, jnp.arange(tokens_BxL.shape[0])]
    return self.posterior_head(h_BxH)

  def decode(self, tokens_BxL: jax.Array, z_BxZ: jax.Array) -> jax.Array:
    """Teacher-forced logits [L * B, V], time-major: row t * B + b is step t of sentence b.

    A 2-D, time-major logits array is never transposed or reshaped on its way into the loss, which
    keeps its gradient (the costliest part of a step at vocabulary sizes like 20k) a plain matmul.
    """
    batch, length = tokens_BxL.shape
    # Input at step t is token t-1, with <EOS> as the start token; z joins every step.
    previous_BxL = jnp.concatenate([jnp.full((batch, 1), EOS, tokens_BxL.dtype), tokens_BxL[:, :-1]], axis=1)
    z_BxLxZ = jnp.broadcast_to(z_BxZ[:, None, :], (batch, length, z_BxZ.shape[-1]))
    h_LxBxH = self.decoder(jnp.concatenate([self.embed(previous_BxL), z_BxLxZ], axis=-1))
    return self.vocab_projection(h_LxBxH.reshape(length * batch, self.hidden_dim))

  def __call__(self, tokens_BxL: jax.Array, lengths_B: jax.Array, key: jax.Array,
               temperature: jax.Array) -> tuple[jax.Array, Posterior, Sample]:
    posterior = self.encode(tokens_BxL, lengths_B)
    sample = self.latent.sample(posterior, key, temperature)
    return self.decode(tokens_BxL, sample["z"]), posterior, sample
