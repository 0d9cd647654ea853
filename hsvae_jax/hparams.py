"""Hyperparameters that reach the compiled step as arrays, so one program serves a whole grid."""

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections


class HParams(flax.struct.PyTreeNode):
  """Prior shape, KL weights and relaxation temperature; each a float32 array (scalar or batched)."""

  alpha: jnp.ndarray  # Beta prior over the spike probability gamma
  beta: jnp.ndarray
  z_reg_weight: jnp.ndarray  # psi
  gamma_reg_weight: jnp.ndarray  # lambda
  temperature: jnp.ndarray  # binary-concrete relaxation of the spike indicator
  # The wanted share of active dimensions: in (0, 1) it replaces the prior's mean slab share
  # beta / (alpha + beta), keeping alpha + beta; 0 leaves alpha and beta as they are.
  target_active: jnp.ndarray = 0.0
  # Weight of the KL between each dimension's slab share over the batch and the prior's (0: the paper's loss).
  usage_weight: jnp.ndarray = 0.0
  # Weight of the gates' mean binary entropy: charges for undecided gates (0: the paper's loss).
  gate_entropy_weight: jnp.ndarray = 0.0

  @classmethod
  def from_config(cls, hparams_config: ml_collections.ConfigDict) -> "HParams":
    # Workdirs written before target_active, usage_weight and gate_entropy_weight existed trained without them (0).
    return cls(**{name: jnp.asarray(hparams_config.get(name, 0.0), jnp.float32) for name in cls.__dataclass_fields__})

  def prior_shape(self) -> tuple[jax.Array, jax.Array]:
    """(alpha, beta) of the Beta prior on gamma, after target_active."""
    total = self.alpha + self.beta
    targeted = self.target_active > 0
    return (jnp.where(targeted, (1 - self.target_active) * total, self.alpha),
            jnp.where(targeted, self.target_active * total, self.beta))
