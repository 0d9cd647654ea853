"""Hyperparameters that reach the compiled step as arrays, so one program serves a whole grid."""

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections


class HParams(flax.struct.PyTreeNode):
  """Prior shape, KL weights, relaxation temperature and learning rate; each a float32 array (scalar or
  batched). Each is set at config key `config_key(name)`, and a sweep may vary any of them."""

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
  # Weight of the KL between the codes' mean slab share (over the batch and every dimension) and the prior's:
  # a per-code target that lets dimensions differ in how often they are used (0: off).
  code_usage_weight: jnp.ndarray = 0.0
  # Weight of the gates' mean binary entropy: charges for undecided gates (0: the paper's loss).
  gate_entropy_weight: jnp.ndarray = 0.0
  # Steps over which the weights that make codes sparse (gamma_reg_weight, the usage weights, gate_entropy_weight)
  # rise linearly from 0, so the decoder learns to read z before gates close (0: full weight from the start).
  warmup_steps: jnp.ndarray = 0.0
  learning_rate: jnp.ndarray = 0.0  # Adam's step size

  @staticmethod
  def config_key(name: str) -> str:
    """The config key that sets field `name`: hparams.<name>, but train.learning_rate as users set it."""
    return "train.learning_rate" if name == "learning_rate" else f"hparams.{name}"

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "HParams":
    def value(name):
      section, key = cls.config_key(name).split(".")
      # Workdirs written before the fields that default to 0 existed trained without them.
      return jnp.asarray(config[section].get(key, 0.0), jnp.float32)
    return cls(**{name: value(name) for name in cls.__dataclass_fields__})

  def at_step(self, step: jax.Array) -> "HParams":
    """These hyperparameters at training step `step`, with the sparsity weights warmed up."""
    ramp = jnp.where(self.warmup_steps > 0, jnp.clip(step / jnp.maximum(self.warmup_steps, 1.0), 0.0, 1.0), 1.0)
    return self.replace(gamma_reg_weight=ramp * self.gamma_reg_weight, usage_weight=ramp * self.usage_weight,
                        code_usage_weight=ramp * self.code_usage_weight,
                        gate_entropy_weight=ramp * self.gate_entropy_weight)

  def prior_shape(self) -> tuple[jax.Array, jax.Array]:
    """(alpha, beta) of the Beta prior on gamma, after target_active."""
    total = self.alpha + self.beta
    targeted = self.target_active > 0
    return (jnp.where(targeted, (1 - self.target_active) * total, self.alpha),
            jnp.where(targeted, self.target_active * total, self.beta))
