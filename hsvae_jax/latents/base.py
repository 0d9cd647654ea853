"""What every latent family provides; each family is one small module registered in __init__."""

from typing import NamedTuple, Protocol

import flax.linen as nn
import jax
import ml_collections

from hsvae_jax.hparams import HParams

Posterior = dict[str, jax.Array]  # the posterior's parameters, each [B, Z]
Sample = dict[str, jax.Array]  # 'z' [B, Z] and whatever else the family's KL needs


class BatchCodes(NamedTuple):
  """Deterministic codes of a batch on the device: the sparse code, the slab mean and E_q[slab indicator]
  (api.Codes holds the codes of many sentences, on the host)."""

  code_BxZ: jax.Array
  mu_BxZ: jax.Array
  slab_prob_BxZ: jax.Array


class Latent(Protocol):
  """A latent family: a hashable config object (a frozen dataclass) with these methods.

  Families with a loss term beyond the two KLs (e.g. a kernel discrepancy) also define
  `extra_loss(posterior, sample, hparams) -> dict[str, [B]]`: named terms, already weighted,
  that the objective adds to the loss and reports. A deterministic autoencoder (no KL) sets
  `is_autoencoder = True`, which gives its embedding decoder a squared-error reconstruction.
  """

  latent_dim: int

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict) -> "Latent":
    ...

  def head(self) -> nn.Module:
    """The Flax module mapping the encoder state [B, H] to the posterior's parameters."""

  def sample(self, posterior: Posterior, key: jax.Array, temperature: jax.Array) -> Sample:
    """A reparameterised sample for the decoder."""

  def kl(self, posterior: Posterior, sample: Sample, hparams: HParams) -> tuple[jax.Array, jax.Array]:
    """(KL_z [B], KL_gamma [B]), each summed over latent dimensions."""

  def codes(self, posterior: Posterior) -> BatchCodes:
    """Codes for evaluation and encoding (no sampling)."""
