"""The weighted negative ELBO: reconstruction NLL + psi * KL_z + lambda * KL_gamma, plus a family's extra terms.

The reconstruction NLL is the decoder's (models/decoders.py): the words' summed cross-entropy, or the
Gaussian NLL of a frozen embedding.
"""

import jax
import jax.numpy as jnp

from hsvae_jax.hparams import HParams
from hsvae_jax.latents.base import Posterior, Sample
from hsvae_jax.models import SentenceVAE


def per_example_terms(model: SentenceVAE, params, batch: dict, key: jax.Array, hparams: HParams,
                      data_shards: int = 1) -> tuple[dict[str, jax.Array], Posterior, Sample]:
  """Reconstruction NLL, KLs and the weighted loss of every sentence in the batch, each [B].

  Also returns the posterior and the sample the terms were computed at. data_shards: see
  decoders.sequence_nll.
  """
  decoder_terms, posterior, sample = model.apply({"params": params}, batch, key, hparams.temperature, data_shards)
  rec_nll_B = decoder_terms.pop("rec_nll")
  kl_z_B, kl_gamma_B = model.latent.kl(posterior, sample, hparams)
  extra_loss = model.latent.extra_loss(posterior, sample, hparams)
  loss_B = rec_nll_B + hparams.z_reg_weight * kl_z_B + hparams.gamma_reg_weight * kl_gamma_B
  loss_B = sum(extra_loss.values(), loss_B)
  terms = {"loss": loss_B, "rec_nll": rec_nll_B, "kl_z": kl_z_B, "kl_gamma": kl_gamma_B} | extra_loss | decoder_terms
  return terms, posterior, sample


def loss_fn(params, model: SentenceVAE, batch: dict, key: jax.Array, hparams: HParams,
            data_shards: int = 1) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Batch mean of the weighted negative ELBO, and the mean of each term."""
  terms, _, _ = per_example_terms(model, params, batch, key, hparams, data_shards)
  means = jax.tree.map(jnp.mean, terms)
  return means["loss"], means
