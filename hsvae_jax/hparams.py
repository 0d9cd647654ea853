"""Hyperparameters that reach the compiled step as arrays, so one program serves a whole grid."""

import flax.struct
import jax.numpy as jnp
import ml_collections


class HParams(flax.struct.PyTreeNode):
  """Prior shape, KL weights and relaxation temperature; each a float32 array (scalar or batched)."""

  alpha: jnp.ndarray  # Beta prior over the spike probability gamma
  beta: jnp.ndarray
  z_reg_weight: jnp.ndarray  # psi
  gamma_reg_weight: jnp.ndarray  # lambda
  temperature: jnp.ndarray  # binary-concrete relaxation of the spike indicator

  @classmethod
  def from_config(cls, hparams_config: ml_collections.ConfigDict) -> "HParams":
    return cls(**{name: jnp.asarray(hparams_config[name], jnp.float32) for name in cls.__dataclass_fields__})
