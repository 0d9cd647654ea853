"""A dense layer whose bias rides in the matmul, for very wide outputs such as a vocabulary."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class FoldedBiasDense(nn.Module):
  """`nn.Dense` with the same parameters (`kernel`, `bias`), computed as [x, 1] @ [kernel; bias].

  The bias's gradient is then a row of the kernel's gradient matmul, not a separate column sum over
  every row of the output, which XLA:CPU runs far below matmul speed (measured in benchmarks/README.md).
  The output has type dtype (the matmul's inputs are cast to it); parameters stay float32.
  """

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_NxD: jax.Array) -> jax.Array:
    kernel_DxF = self.param("kernel", nn.initializers.lecun_normal(), (x_NxD.shape[-1], self.features))
    bias_F = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    ones_Nx1 = jnp.ones((*x_NxD.shape[:-1], 1), self.dtype)
    folded_Dp1xF = jnp.concatenate([kernel_DxF, bias_F[None]], axis=0).astype(self.dtype)
    return jnp.concatenate([x_NxD.astype(self.dtype), ones_Nx1], axis=-1) @ folded_Dp1xF
