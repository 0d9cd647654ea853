"""The TopK sparse autoencoder baseline (Gao et al. 2024): keep a code's k largest pre-activations.

Not a VAE: the code is deterministic, there is no KL, and with the embedding decoder the reconstruction
is squared error. Each code has at most k non-zero entries, all positive.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from hsvae_jax.errors import InputError
from hsvae_jax.hparams import HParams
from hsvae_jax.latents import base


def topk_relu(pre_BxW: jax.Array, k: int) -> jax.Array:
  """ReLU of the k largest entries of each row, zeros elsewhere; the gradient flows to the kept entries."""
  _, indices_BxK = jax.lax.top_k(pre_BxW, k)
  keep_BxW = jax.nn.one_hot(indices_BxK, pre_BxW.shape[-1], dtype=pre_BxW.dtype).sum(-2)
  return jax.nn.relu(pre_BxW) * keep_BxW


class TopKPosterior(base.Posterior):
  pre_BxW: jax.Array  # the pre-activations


class TopKHead(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x_BxE: jax.Array) -> TopKPosterior:
    return TopKPosterior(nn.Dense(self.width, name="encoder")(x_BxE))


@dataclasses.dataclass(frozen=True)
class TopKSAELatent(base.Latent[TopKPosterior, base.Sample]):
  latent_dim: int  # the dictionary's width
  k: int = 32
  is_autoencoder = True

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict) -> "TopKSAELatent":
    if not 1 <= model_config.topk_k <= model_config.latent_dim:
      raise InputError(f"model.topk_k={model_config.topk_k} must be in [1, model.latent_dim={model_config.latent_dim}]")
    return cls(model_config.latent_dim, model_config.topk_k)

  def head(self) -> nn.Module:
    return TopKHead(self.latent_dim)

  def sample(self, posterior: TopKPosterior, key: jax.Array, temperature: jax.Array) -> base.Sample:
    del key, temperature  # deterministic
    return base.Sample(topk_relu(posterior.pre_BxW, self.k))

  def kl(self, posterior: TopKPosterior, sample: base.Sample, hparams: HParams) -> tuple[jax.Array, jax.Array]:
    del sample, hparams
    zeros_B = jnp.zeros(posterior.pre_BxW.shape[:-1])
    return zeros_B, zeros_B

  def codes(self, posterior: TopKPosterior) -> base.BatchCodes:
    code_BxW = topk_relu(posterior.pre_BxW, self.k)
    # The dense counterpart of the code is the ReLU before the top-k cut.
    return base.BatchCodes(code_BxW, jax.nn.relu(posterior.pre_BxW), (code_BxW != 0).astype(code_BxW.dtype))
