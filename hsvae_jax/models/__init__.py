"""Model parts: encoders, decoders and the sentence VAE that composes them with a latent family."""

import pathlib

import jax.numpy as jnp
import ml_collections

from hsvae_jax.encoders import bert
from hsvae_jax.errors import InputError
from hsvae_jax.latents import make_latent
from hsvae_jax.models.decoders import EmbeddingDecoder, GRUDecoder
from hsvae_jax.models.encoders import CentredEmbeddingEncoder, EmbeddingEncoder, GRUEncoder, TransformerEncoder
from hsvae_jax.models.sentence_vae import SentenceVAE

ENCODERS = ("gru", "transformer")
DECODERS = ("gru", "embedding")
DTYPES = ("float32", "bfloat16")


def _check_encoder_decoder(model_config: ml_collections.ConfigDict) -> None:
  for key, kinds in (("encoder", ENCODERS), ("decoder", DECODERS)):
    if model_config[key] not in kinds:
      raise InputError(f"unknown model.{key} {model_config[key]!r}; choose one of {', '.join(kinds)}")
  uses_embedding = model_config.encoder == "transformer" or model_config.decoder == "embedding"
  if model_config.decoder == "embedding" and model_config.encoder != "transformer":
    raise InputError("model.decoder=embedding reconstructs a frozen transformer's embedding: set model.encoder=transformer")
  if model_config.latent == "topk_sae" and model_config.decoder != "embedding":
    raise InputError("model.latent=topk_sae is a sparse autoencoder of embeddings: set model.decoder=embedding")
  if model_config.decoder == "embedding" and not model_config.freeze_encoder:
    raise InputError("model.decoder=embedding reconstructs the frozen embedding: set model.freeze_encoder=true")
  if uses_embedding and not model_config.encoder_path:
    raise InputError("model.encoder=transformer needs model.encoder_path, a Hugging Face model directory")


def make_model(model_config: ml_collections.ConfigDict, vocab_size: int) -> SentenceVAE:
  """The config's encoder, latent family and decoder, composed: one of the four pairings _check_encoder_decoder allows."""
  _check_encoder_decoder(model_config)
  dtype_name = model_config.get("dtype", "float32")  # workdirs from before model.dtype trained in float32
  if dtype_name not in DTYPES:
    raise InputError(f"unknown model.dtype {dtype_name!r}; choose one of {', '.join(DTYPES)}")
  token_capacity = model_config.get("token_capacity", 1.0)
  if not 0.0 < token_capacity <= 1.0:
    raise InputError(f"model.token_capacity={token_capacity} must be in (0, 1]: the share of a batch's tokens projected")
  latent, dtype = make_latent(model_config), getattr(jnp, dtype_name)
  words = GRUDecoder(vocab_size, model_config.embed_dim, model_config.hidden_dim, dtype, token_capacity)
  if model_config.encoder == "gru":
    return SentenceVAE(latent, GRUEncoder(model_config.hidden_dim, dtype), words)
  bert.check_pooling(model_config.pooling)
  transformer = bert.BertConfig.from_json(pathlib.Path(model_config.encoder_path) / "config.json")
  if not model_config.freeze_encoder:
    return SentenceVAE(latent, TransformerEncoder(transformer, model_config.pooling), words)
  if model_config.decoder == "gru":
    return SentenceVAE(latent, EmbeddingEncoder(transformer.hidden_size), words)
  return SentenceVAE(latent, CentredEmbeddingEncoder(transformer.hidden_size),
                     EmbeddingDecoder(transformer.hidden_size, learn_scale=not latent.is_autoencoder))
