"""The weighted negative ELBO: reconstruction NLL + psi * KL_z + lambda * KL_gamma.

The reconstruction is the words' summed cross-entropy (GRU decoder) or the Gaussian NLL of the frozen
embedding (embedding decoder).
"""

import jax
import jax.numpy as jnp
import optax

from hsvae_jax.hparams import HParams
from hsvae_jax.latents.base import Posterior, Sample
from hsvae_jax.models import SentenceVAE
from hsvae_jax.models.sentence_vae import FEATURES


def sequence_nll(logits_LBxV: jax.Array, tokens_BxL: jax.Array, lengths_B: jax.Array) -> jax.Array:
  """Cross-entropy summed over each sentence's real tokens, <EOS> included: [B].

  logits_LBxV is time-major and flat, as SentenceVAE.decode returns it; bfloat16 logits are summed in float32.
  """
  targets_LxB = tokens_BxL.T
  nll_LB = optax.softmax_cross_entropy_with_integer_labels(logits_LBxV.astype(jnp.float32), targets_LxB.reshape(-1))
  nll_LxB = nll_LB.reshape(targets_LxB.shape)
  real_LxB = jnp.arange(targets_LxB.shape[0])[:, None] < lengths_B[None, :]
  return jnp.where(real_LxB, nll_LxB, 0.0).sum(0)


def embedding_nll(reconstruction: dict[str, jax.Array], embedding_BxE: jax.Array) -> jax.Array:
  """-log N(embedding | loc, exp(log_scale)^2), summed over dimensions: [B]."""
  log_scale_BxE = reconstruction["log_scale"]
  standardised_BxE = (embedding_BxE - reconstruction["loc"]) * jnp.exp(-log_scale_BxE)
  return (0.5 * standardised_BxE**2 + log_scale_BxE + 0.5 * jnp.log(2 * jnp.pi)).sum(-1)


def per_example_terms(model: SentenceVAE, params, batch: dict, key: jax.Array,
                      hparams: HParams) -> tuple[dict[str, jax.Array], Posterior, Sample]:
  """Reconstruction NLL, KLs and the weighted loss of every sentence in the batch, each [B].

  Also returns the posterior and the sample the terms were computed at.
  """
  reconstruction, posterior, sample = model.apply(
      {"params": params}, batch["tokens"], batch["lengths"], key, hparams.temperature,
      {name: batch[name] for name in FEATURES if name in batch})
  extra_terms = {}
  if model.decoder_kind == "embedding":
    rec_nll_B = embedding_nll(reconstruction, batch["embedding"])
    extra_terms["squared_error"] = jnp.sum((batch["embedding"] - reconstruction["loc"]) ** 2, -1)
  else:
    rec_nll_B = sequence_nll(reconstruction, batch["tokens"], batch["lengths"])
  kl_z_B, kl_gamma_B = model.latent.kl(posterior, sample, hparams)
  extra_loss = model.latent.extra_loss(posterior, sample, hparams) if hasattr(model.latent, "extra_loss") else {}
  loss_B = rec_nll_B + hparams.z_reg_weight * kl_z_B + hparams.gamma_reg_weight * kl_gamma_B
  loss_B = sum(extra_loss.values(), loss_B)
  terms = {"loss": loss_B, "rec_nll": rec_nll_B, "kl_z": kl_z_B, "kl_gamma": kl_gamma_B} | extra_loss | extra_terms
  return terms, posterior, sample


def loss_fn(params, model: SentenceVAE, batch: dict, key: jax.Array,
            hparams: HParams) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Batch mean of the weighted negative ELBO, and the mean of each term."""
  terms, _, _ = per_example_terms(model, params, batch, key, hparams)
  means = jax.tree.map(jnp.mean, terms)
  return means["loss"], means
