"""One pass over a whole config before anything is written: types, ranges, choices and rules across keys.

A key's rule is a row of RULES; a rule over several keys is a row of CROSS_RULES. A new config key gets
checked by adding its row. Keys without a row pass (the code reading them may still refuse a value), and
a row whose key a config lacks (a workdir from before the key existed) is skipped.
"""

from collections.abc import Callable
import dataclasses
import functools
import math
from typing import Any

import ml_collections

from hsvae_jax.data.corpus import CORPORA
from hsvae_jax.data.tokenizer import RESERVED
from hsvae_jax.encoders.bert import POOLINGS
from hsvae_jax.errors import InputError
from hsvae_jax.latents import KL_ESTIMATORS, LATENTS
from hsvae_jax.latents.hsvae import GATES
from hsvae_jax.models import DECODERS, DTYPES, ENCODERS


@dataclasses.dataclass(frozen=True)
class Check:
  test: Callable[[Any], bool]
  allowed: str  # what the value may be, as the message says it


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
  return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def integer(low: int, high: int | None = None) -> Check:
  allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
  return Check(lambda v: _is_int(v) and low <= v and (high is None or v <= high), allowed)


def real(low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False) -> Check:
  """A finite number in the interval (open at either end when asked)."""
  above = (lambda v: v > low) if low_open else (lambda v: v >= low)
  below = (lambda v: high is None or v < high) if high_open else (lambda v: high is None or v <= high)
  interval = f"{'(' if low_open else '['}{low:g}, {'inf' if high is None else f'{high:g}'}{')' if high_open or high is None else ']'}"
  return Check(lambda v: _is_real(v) and above(v) and below(v), f"a finite number in {interval}")


def positive() -> Check:
  return real(0, low_open=True)


def choice(*options: Any) -> Check:
  return Check(lambda v: v in options, f"one of {', '.join(map(str, options))}")


def boolean() -> Check:
  return Check(lambda v: isinstance(v, bool), "true or false")


def sequence(element: Check, increasing: bool = False) -> Check:
  def test(value: Any) -> bool:
    items = list(value) if isinstance(value, (list, tuple)) else None
    return (bool(items) and all(element.test(x) for x in items)
            and (not increasing or all(a < b for a, b in zip(items, items[1:]))))
  return Check(test, f"a non-empty{' increasing' if increasing else ''} list, each {element.allowed}")


def _mesh_size(value: Any) -> bool:
  return _is_int(value) and (value == -1 or value >= 1)


RULES: dict[str, Check] = {
    "seed": integer(0),
    "data.name": choice(*CORPORA),
    "data.vocab_size": integer(len(RESERVED) + 1),
    "data.max_length": integer(2),
    "data.length_buckets": sequence(integer(1), increasing=True),
    "data.valid_fraction": real(0, 1, low_open=True, high_open=True),
    "data.test_fraction": real(0, 1, low_open=True, high_open=True),
    "data.synthetic.num_topics": integer(1),
    "data.synthetic.words_per_topic": integer(1),
    "data.synthetic.num_common_words": integer(0),
    "data.synthetic.num_sentences": integer(1),
    "data.synthetic.min_words": integer(1),
    "data.synthetic.max_words": integer(1),
    "model.encoder": choice(*ENCODERS),
    "model.freeze_encoder": boolean(),
    "model.pooling": choice(*POOLINGS),
    "model.decoder": choice(*DECODERS),
    "model.latent": choice(*LATENTS),
    "model.latent_dim": integer(1),
    "model.embed_dim": integer(1),
    "model.hidden_dim": integer(1),
    "model.dtype": choice(*DTYPES),
    "model.token_capacity": real(0, 1, low_open=True),
    "model.kl_z": choice(*KL_ESTIMATORS),
    "model.gate": choice(*GATES),
    "model.beta_param_clip": boolean(),
    "model.spike_scale": positive(),
    "model.slab_scale": positive(),
    "model.matvae_spike_weight": real(0, 1),
    "model.matvae_kernel_scales": sequence(positive()),
    "model.matvae_discrepancy_weight": real(0),
    "model.vsc_prior_slab_prob": real(0, 1, low_open=True, high_open=True),
    "model.topk_k": integer(1),
    "hparams.alpha": positive(),
    "hparams.beta": positive(),
    "hparams.z_reg_weight": real(0),
    "hparams.gamma_reg_weight": real(0),
    "hparams.temperature": positive(),
    "hparams.target_active": real(0, 1, high_open=True),
    "hparams.usage_weight": real(0),
    "hparams.code_usage_weight": real(0),
    "hparams.gate_entropy_weight": real(0),
    "hparams.warmup_steps": real(0),
    "train.num_steps": integer(1),
    "train.batch_size": integer(1),
    "train.learning_rate": positive(),
    "train.max_consecutive_skips": integer(1),
    "train.log_every": integer(1),
    "train.eval_every": integer(0),
    "train.checkpoint_every": integer(1),
    "train.checkpoints_to_keep": integer(1),
    "mesh.data": Check(_mesh_size, "-1 (every device) or an integer >= 1"),
    "eval.batch_size": integer(1),
}

# (keys, holds(values of the keys), what must hold); checked once each key passed its own rule.
CROSS_RULES: list[tuple[tuple[str, ...], Callable[..., bool], str]] = [
    (("data.length_buckets", "data.max_length"), lambda buckets, length: max(buckets) >= length,
     "the largest length bucket must hold data.max_length tokens"),
    (("data.valid_fraction", "data.test_fraction"), lambda valid, test: valid + test < 1,
     "together they must leave part of the corpus for training"),
    (("data.synthetic.min_words", "data.synthetic.max_words"), lambda low, high: low <= high,
     "min_words must not exceed max_words"),
    (("model.latent", "model.topk_k", "model.latent_dim"), lambda latent, k, dim: latent != "topk_sae" or k <= dim,
     "a TopK code keeps at most latent_dim entries"),
    (("train.batch_size", "mesh.data"), lambda batch, devices: devices == -1 or batch % devices == 0,
     "the batch must split evenly over the mesh's devices"),
]

_MISSING = object()


def _lookup(config: ml_collections.ConfigDict, key: str) -> Any:
  try:
    return functools.reduce(lambda node, name: node[name], key.split("."), config)
  except (KeyError, AttributeError, TypeError):
    return _MISSING


def violations(config: ml_collections.ConfigDict) -> list[str]:
  """One line per broken rule, naming the key, its value and what is allowed."""
  lines, broken = [], set()
  for key, check in RULES.items():
    value = _lookup(config, key)
    if value is not _MISSING and not check.test(value):
      lines.append(f"{key}={value!r}: must be {check.allowed}")
      broken.add(key)
  for keys, holds, requirement in CROSS_RULES:
    values = [_lookup(config, key) for key in keys]
    if broken.isdisjoint(keys) and _MISSING not in values and not holds(*values):
      lines.append(f"{', '.join(f'{k}={v!r}' for k, v in zip(keys, values))}: {requirement}")
  return lines


def validate(config: ml_collections.ConfigDict, prefix: str = "") -> None:
  """Raises InputError listing every violation (one a line, each led by prefix)."""
  lines = violations(config)
  if lines:
    raise InputError("\n".join(prefix + line for line in lines))
