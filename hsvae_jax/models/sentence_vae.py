"""The sentence VAE: an encoder, a latent family's head and a decoder (PAPER.md sizes).

A batch is the data pipeline's dict: 'tokens' [B, L] and 'lengths' [B], and the features its encoder
reads (a frozen transformer's 'embedding' [B, E], or a fine-tuned one's 'encoder_ids' and 'encoder_mask').
"""

import flax.linen as nn
import jax

from hsvae_jax.latents import Latent
from hsvae_jax.latents.base import Posterior, Sample
from hsvae_jax.models.decoders import Decoder
from hsvae_jax.models.encoders import Encoder


class SentenceVAE(nn.Module):
  """Returns the decoder's NLL of a batch at a posterior sample, the posterior and the sample; objectives
  adds the latent family's KLs."""

  latent: Latent
  encoder: Encoder
  # The decoder shares this module's namespace, so that its parameters keep the names checkpoints have from
  # before it was a module of its own; this module's methods set that up, so reach it through them. Not named
  # `decoder`: in that namespace, `decoder` is the GRU decoder's recurrent net.
  likelihood: Decoder

  def setup(self):
    nn.share_scope(self, self.likelihood)
    self.posterior_head = self.latent.head()

  def encode(self, batch: dict[str, jax.Array]) -> Posterior:
    return self.posterior_head(self.encoder(batch, self.likelihood))

  def decode(self, batch: dict[str, jax.Array], z_BxZ: jax.Array):
    """The decoder's reconstruction of the batch from z: GRUDecoder's states, EmbeddingDecoder's Gaussian."""
    return self.likelihood(batch, z_BxZ)

  def project(self, states_NxH: jax.Array) -> jax.Array:
    """The GRU decoder's next-word logits [N, V] from its states, for generating words."""
    return self.likelihood.project(states_NxH)

  def __call__(self, batch: dict[str, jax.Array], key: jax.Array, temperature: jax.Array,
               data_shards: int = 1) -> tuple[dict[str, jax.Array], Posterior, Sample]:
    """The decoder's per-sentence terms ('rec_nll', and the squared error of an embedding's), the posterior
    and the sample they were computed at. data_shards: see decoders.sequence_nll."""
    posterior = self.encode(batch)
    sample = self.latent.sample(posterior, key, temperature)
    return self.likelihood.nll(self.decode(batch, sample.z_BxZ), batch, data_shards), posterior, sample
