"""A GRU whose input projections run as one matmul over all time steps, outside the recurrence."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class GRU(nn.Module):
  """Gated recurrent unit over a batch of sequences, returning time-major hidden states.

  dtype is the matmuls' input type (bfloat16 on accelerators); parameters, the state and the gate
  arithmetic stay float32, so rounding does not build up over the steps.
  """

  hidden_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
    h = self.hidden_dim
    # Transposing the (small) inputs keeps the scan and every later op time-major.
    xproj_LxBx3H = nn.Dense(3 * h, dtype=self.dtype, name="input")(jnp.swapaxes(x_BxLxD, 0, 1))
    xproj_LxBx3H = xproj_LxBx3H.astype(jnp.float32)
    kernel_Hx3H = self.param("recurrent_kernel", nn.initializers.orthogonal(), (h, 3 * h)).astype(self.dtype)
    bias_3H = self.param("recurrent_bias", nn.initializers.zeros_init(), (3 * h,))

    def step(h_BxH, xproj_Bx3H):
      hproj_Bx3H = jnp.dot(h_BxH.astype(self.dtype), kernel_Hx3H, preferred_element_type=jnp.float32) + bias_3H
      x_reset, x_update, x_new = jnp.split(xproj_Bx3H, 3, axis=-1)
      h_reset, h_update, h_new = jnp.split(hproj_Bx3H, 3, axis=-1)
      reset = jax.nn.sigmoid(x_reset + h_reset)
      update = jax.nn.sigmoid(x_update + h_update)
      candidate = jnp.tanh(x_new + reset * h_new)
      h_BxH = (1.0 - update) * candidate + update * h_BxH
      return h_BxH, h_BxH

    h0_BxH = jnp.zeros((x_BxLxD.shape[0], h), jnp.float32)
    _, h_LxBxH = jax.lax.scan(step, h0_BxH, xproj_LxBx3H)
    return h_LxBxH
