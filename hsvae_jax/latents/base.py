"""What every latent family provides, with its defaults, and the containers that pass between its methods."""

import abc
from typing import ClassVar, Generic, NamedTuple, Self, TypeVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from hsvae_jax.hparams import HParams


class Posterior(flax.struct.PyTreeNode):
  """What a family's head gives for a batch: one subclass a family, its fields the posterior's parameters."""


class Sample(flax.struct.PyTreeNode):
  """A reparameterised draw for the decoder; a family's subclass adds what its KL and extra loss read."""

  z_BxZ: jax.Array


class BatchCodes(NamedTuple):
  """Deterministic codes of a batch on the device: the sparse code, the slab mean and E_q[slab indicator]
  (api.Codes holds the codes of many sentences, on the host)."""

  code_BxZ: jax.Array
  mu_BxZ: jax.Array
  slab_prob_BxZ: jax.Array

  @classmethod
  def where_slab(cls, mu_BxZ: jax.Array, slab_prob_BxZ: jax.Array) -> "BatchCodes":
    """Every family's rule for exact zeros: mu where the slab is likelier than the spike, exactly 0 elsewhere."""
    return cls(jnp.where(slab_prob_BxZ > 0.5, mu_BxZ, 0.0), mu_BxZ, slab_prob_BxZ)


PosteriorT = TypeVar("PosteriorT", bound=Posterior)
SampleT = TypeVar("SampleT", bound=Sample)


class Latent(abc.ABC, Generic[PosteriorT, SampleT]):
  """A latent family: a frozen dataclass (hashable, for it is a static argument of the compiled step).

  Subclasses name their posterior and sample types, Latent[HSVAEPosterior, HSVAESample], and override a
  default only where they differ from it.
  """

  latent_dim: int
  # Deterministic codes and no KL: the embedding decoder's reconstruction is squared error (unit scale).
  is_autoencoder: ClassVar[bool] = False

  @classmethod
  @abc.abstractmethod
  def from_config(cls, model_config: ml_collections.ConfigDict) -> Self:
    ...

  @abc.abstractmethod
  def head(self) -> nn.Module:
    """The Flax module mapping the encoder's output [B, H] to the posterior."""

  @abc.abstractmethod
  def sample(self, posterior: PosteriorT, key: jax.Array, temperature: jax.Array) -> SampleT:
    ...

  @abc.abstractmethod
  def kl(self, posterior: PosteriorT, sample: SampleT, hparams: HParams) -> tuple[jax.Array, jax.Array]:
    """(KL_z [B], KL_gamma [B]), each summed over latent dimensions."""

  @abc.abstractmethod
  def codes(self, posterior: PosteriorT) -> BatchCodes:
    """Codes for evaluation and encoding (no sampling)."""

  def extra_loss(self, posterior: PosteriorT, sample: SampleT, hparams: HParams) -> dict[str, jax.Array]:
    """Loss terms beyond the two KLs, by name, each [B] and already weighted: the objective adds them to
    the loss and reports them. None by default."""
    del posterior, sample, hparams
    return {}

  def spike_slab_mean(self, codes: BatchCodes, sample: SampleT) -> jax.Array:
    """The original code's "spike-and-slab mean" [B, Z], one of evaluation's Hoyer variants, from the batch's
    codes: mu weighted by the slab's probability, E_q[slab indicator] by default."""
    del sample
    return codes.slab_prob_BxZ * codes.mu_BxZ
