"""Model parts: the GRU and the sentence VAE built on a latent family."""

import ml_collections

from hsvae_jax.latents import make_latent
from hsvae_jax.models.sentence_vae import SentenceVAE


def make_model(model_config: ml_collections.ConfigDict, vocab_size: int) -> SentenceVAE:
  return SentenceVAE(
      vocab_size=vocab_size,
      latent=make_latent(model_config),
      embed_dim=model_config.embed_dim,
      hidden_dim=model_config.hidden_dim,
  )
