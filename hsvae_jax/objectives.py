"""The weighted negative ELBO: reconstruction NLL + psi * KL_z + lambda * KL_gamma.

The reconstruction is the words' summed cross-entropy (GRU decoder) or the Gaussian NLL of the frozen
embedding (embedding decoder).
"""

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from hsvae_jax.hparams import HParams
from hsvae_jax.latents.base import Posterior, Sample
from hsvae_jax.models import SentenceVAE
from hsvae_jax.models.sentence_vae import FEATURES


def packed_rows(rows: int, token_capacity: float) -> int:
  """How many of a device's `rows` token rows the packed projection holds: whole tiles of 8 rows."""
  return -(-math.ceil(token_capacity * rows) // 8) * 8


def sequence_nll(project: Callable[[jax.Array], jax.Array], states_BLxH: jax.Array, tokens_BxL: jax.Array,
                 lengths_B: jax.Array, token_capacity: float = 1.0, data_shards: int = 1) -> jax.Array:
  """Cross-entropy summed over each sentence's real tokens, <EOS> included: [B].

  project maps decoder states [N, H] to next-word logits [N, V]; states_BLxH is batch-major and flat
  (row b * L + t is step t of sentence b), as SentenceVAE.decode returns it. The projection and its
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


def embedding_nll(reconstruction: dict[str, jax.Array], embedding_BxE: jax.Array) -> jax.Array:
  """-log N(embedding | loc, exp(log_scale)^2), summed over dimensions: [B]."""
  log_scale_BxE = reconstruction["log_scale"]
  standardised_BxE = (embedding_BxE - reconstruction["loc"]) * jnp.exp(-log_scale_BxE)
  return (0.5 * standardised_BxE**2 + log_scale_BxE + 0.5 * jnp.log(2 * jnp.pi)).sum(-1)


def per_example_terms(model: SentenceVAE, params, batch: dict, key: jax.Array, hparams: HParams,
                      data_shards: int = 1) -> tuple[dict[str, jax.Array], Posterior, Sample]:
  """Reconstruction NLL, KLs and the weighted loss of every sentence in the batch, each [B].

  Also returns the posterior and the sample the terms were computed at. data_shards: see sequence_nll.
  """
  reconstruction, posterior, sample = model.apply(
      {"params": params}, batch["tokens"], batch["lengths"], key, hparams.temperature,
      {name: batch[name] for name in FEATURES if name in batch})
  extra_terms = {}
  if model.decoder_kind == "embedding":
    rec_nll_B = embedding_nll(reconstruction, batch["embedding"])
    extra_terms["squared_error"] = jnp.sum((batch["embedding"] - reconstruction["loc"]) ** 2, -1)
  else:
    project = functools.partial(model.apply, {"params": params}, method=SentenceVAE.project)
    rec_nll_B = sequence_nll(project, reconstruction, batch["tokens"], batch["lengths"], model.token_capacity,
                             data_shards)
  kl_z_B, kl_gamma_B = model.latent.kl(posterior, sample, hparams)
  extra_loss = model.latent.extra_loss(posterior, sample, hparams)
  loss_B = rec_nll_B + hparams.z_reg_weight * kl_z_B + hparams.gamma_reg_weight * kl_gamma_B
  loss_B = sum(extra_loss.values(), loss_B)
  terms = {"loss": loss_B, "rec_nll": rec_nll_B, "kl_z": kl_z_B, "kl_gamma": kl_gamma_B} | extra_loss | extra_terms
  return terms, posterior, sample


def loss_fn(params, model: SentenceVAE, batch: dict, key: jax.Array, hparams: HParams,
            data_shards: int = 1) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Batch mean of the weighted negative ELBO, and the mean of each term."""
  terms, _, _ = per_example_terms(model, params, batch, key, hparams, data_shards)
  means = jax.tree.map(jnp.mean, terms)
  return means["loss"], means
