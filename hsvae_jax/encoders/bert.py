"""Pretrained BERT-family sentence encoders (BERT, MiniLM, ...) from Hugging Face model files.

A model directory holds config.json, model.safetensors and tokenizer.json, as on the Hugging Face
Hub; neither torch nor transformers is needed. The module is inference only: no dropout, no pooler.
"""

from collections.abc import Sequence
import dataclasses
import functools
import importlib
import json
import math
import pathlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from hsvae_jax.errors import InputError

if TYPE_CHECKING:
  import tokenizers

POOLINGS = ("mean", "cls")

_ACTIVATIONS = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),  # Hugging Face's "gelu": exact erf
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
}


def _read_json(path: pathlib.Path) -> Any:
  try:
    return json.loads(path.read_text(encoding="utf-8"))
  except FileNotFoundError:
    raise InputError(f"{path}: no such file") from None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise InputError(f"{path}: cannot read it as JSON ({e})") from None


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The architecture fields of a Hugging Face BERT config.json; frozen, as jit statics must be."""

  vocab_size: int
  hidden_size: int
  num_hidden_layers: int
  num_attention_heads: int
  intermediate_size: int
  max_position_embeddings: int
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"

  @classmethod
  def from_json(cls, path: pathlib.Path) -> "BertConfig":
    raw = _read_json(path)
    if not isinstance(raw, dict):
      raise InputError(f"{path}: not a JSON object")
    if raw.get("model_type", "bert") != "bert":
      raise InputError(f"{path}: model_type {raw['model_type']!r} is not 'bert'")
    if raw.get("position_embedding_type", "absolute") != "absolute":
      raise InputError(f"{path}: only absolute position embeddings are supported")
    fields = {}
    for field in dataclasses.fields(cls):
      if field.name in raw:
        fields[field.name] = raw[field.name]
      elif field.default is dataclasses.MISSING:
        raise InputError(f"{path}: no {field.name!r}")
    config = cls(**fields)
    if config.hidden_act not in _ACTIVATIONS:
      raise InputError(
          f"{path}: hidden_act {config.hidden_act!r} is not one of {', '.join(_ACTIVATIONS)}")
    if config.hidden_size % config.num_attention_heads:
      raise InputError(f"{path}: hidden_size is not a multiple of num_attention_heads")
    return config


class TransformerLayer(nn.Module):
  """Post-LayerNorm self-attention and feed-forward blocks, each with a residual."""

  config: BertConfig

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, mask_BxL: jax.Array) -> jax.Array:
    c = self.config
    batch, length, dim = x_BxLxD.shape
    heads = c.num_attention_heads

    def project(name):
      return nn.Dense(dim, name=name)(x_BxLxD).reshape(batch, length, heads, dim // heads)

    attended_BxLxHxK = jax.nn.dot_product_attention(
        project("query"), project("key"), project("value"),
        mask=mask_BxL[:, None, None, :].astype(bool),  # keys only: padded queries are never read
    )
    attended_BxLxD = attended_BxLxHxK.reshape(batch, length, dim)
    x_BxLxD = x_BxLxD + nn.Dense(dim, name="attention_output")(attended_BxLxD)
    x_BxLxD = nn.LayerNorm(epsilon=c.layer_norm_eps, name="attention_norm")(x_BxLxD)
    h_BxLxF = _ACTIVATIONS[c.hidden_act](nn.Dense(c.intermediate_size, name="mlp_in")(x_BxLxD))
    x_BxLxD = x_BxLxD + nn.Dense(dim, name="mlp_out")(h_BxLxF)
    return nn.LayerNorm(epsilon=c.layer_norm_eps, name="mlp_norm")(x_BxLxD)


class Bert(nn.Module):
  """Token ids, token type ids and attention mask [B, L] -> last hidden state [B, L, D]."""

  config: BertConfig

  @nn.compact
  def __call__(self, ids_BxL: jax.Array, type_ids_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
    c = self.config
    x_BxLxD = (
        nn.Embed(c.vocab_size, c.hidden_size, name="word_embeddings")(ids_BxL)
        + nn.Embed(c.max_position_embeddings, c.hidden_size, name="position_embeddings")(
            jnp.arange(ids_BxL.shape[1]))
        + nn.Embed(c.type_vocab_size, c.hidden_size, name="token_type_embeddings")(type_ids_BxL)
    )
    x_BxLxD = nn.LayerNorm(epsilon=c.layer_norm_eps, name="embeddings_norm")(x_BxLxD)
    for i in range(c.num_hidden_layers):
      x_BxLxD = TransformerLayer(c, name=f"layer_{i}")(x_BxLxD, mask_BxL)
    return x_BxLxD


class Pretrained(NamedTuple):
  """What load_pretrained returns; encode_batch and hsvae_jax.embed take it whole."""

  module: Bert
  params: dict
  tokenizer: "tokenizers.Tokenizer"  # truncates to max_length, never pads
  config: BertConfig
  pooling: str | None = None  # what the directory's modules.json pools by; None without one
  normalize: bool = False  # its module list ends in Normalize: unit-length embeddings

  @property
  def max_length(self) -> int:
    """Tokens a sentence keeps, [CLS] and [SEP] included."""
    return self.tokenizer.truncation["max_length"]


# Our module names -> the checkpoint's, under encoder.layer.<i>. for the layers' own.
_EMBEDDING_NAMES = {
    "word_embeddings": "embeddings.word_embeddings",
    "position_embeddings": "embeddings.position_embeddings",
    "token_type_embeddings": "embeddings.token_type_embeddings",
    "embeddings_norm": "embeddings.LayerNorm",
}
_LAYER_NAMES = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "mlp_in": "intermediate.dense",
    "mlp_out": "output.dense",
    "mlp_norm": "output.LayerNorm",
}
# Checkpoints converted from TensorFlow name LayerNorm parameters gamma and beta.
_LEAF_NAMES = {"kernel": ("weight",), "bias": ("bias", "beta"), "scale": ("weight", "gamma"),
               "embedding": ("weight",)}


def _checkpoint_names(path: tuple[str, ...], prefix: str) -> list[str]:
  *modules, leaf = path
  if modules[0].startswith("layer_"):
    module = f"encoder.layer.{modules[0].removeprefix('layer_')}.{_LAYER_NAMES[modules[1]]}"
  else:
    module = _EMBEDDING_NAMES[modules[0]]
  return [f"{prefix}{module}.{name}" for name in _LEAF_NAMES[leaf]]


def _transformers_extra(module: str) -> ModuleType:
  """Imported on use: the [transformers] extra, which a model without a pretrained encoder does not need."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise InputError(f"a pretrained encoder needs {module}: pip install 'hsvae-jax[transformers]'") from None


def _load_params(path: pathlib.Path, module: Bert) -> dict:
  """The module's parameters from a Hugging Face safetensors file; other tensors are ignored."""
  if not path.is_file():
    raise InputError(f"{path}: no such file")
  safetensors = _transformers_extra("safetensors")
  try:
    tensors = _transformers_extra("safetensors.numpy").load_file(path)
  except (OSError, safetensors.SafetensorError) as e:
    raise InputError(f"{path}: not a safetensors file ({e})") from None
  # Checkpoints of BertForPreTraining and the like nest the encoder under "bert.".
  prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""
  dummy_1x1 = jnp.zeros((1, 1), jnp.int32)
  shapes = jax.eval_shape(module.init, jax.random.key(0), dummy_1x1, dummy_1x1, dummy_1x1)["params"]
  params = {}
  for leaf_path, shape in traverse_util.flatten_dict(shapes).items():
    names = _checkpoint_names(leaf_path, prefix)
    name = next((n for n in names if n in tensors), None)
    if name is None:
      raise InputError(f"{path}: no tensor {names[0]}")
    # PyTorch's Linear stores weight [out, in]; Dense wants kernel [in, out].
    value = tensors[name].T if leaf_path[-1] == "kernel" else tensors[name]
    if value.shape != shape.shape:
      raise InputError(
          f"{path}: {name} has shape {tensors[name].shape}, config.json implies {shape.shape}")
    params[leaf_path] = jnp.asarray(value, jnp.float32)
  return {"params": traverse_util.unflatten_dict(params)}


def _load_tokenizer(
    path: pathlib.Path, config: BertConfig, max_length: int | None
) -> "tokenizers.Tokenizer":
  if not path.is_file():
    raise InputError(f"{path}: no such file")
  try:
    tokenizer = _transformers_extra("tokenizers").Tokenizer.from_file(str(path))
  except Exception as e:  # tokenizers raises a bare Exception for every kind of bad file
    raise InputError(f"{path}: not a tokenizers tokenizer.json ({e})") from None
  if tokenizer.get_vocab_size() > config.vocab_size:
    raise InputError(
        f"{path}: {tokenizer.get_vocab_size()} tokens, more than config.json's vocab_size")
  if max_length is None:
    truncation = tokenizer.truncation or {}
    max_length = min(truncation.get("max_length", math.inf), config.max_position_embeddings)
  if not 2 <= max_length <= config.max_position_embeddings:
    raise InputError(f"max_length {max_length} is not in [2, {config.max_position_embeddings}]")
  tokenizer.enable_truncation(max_length)
  tokenizer.no_padding()  # batches are padded to length buckets instead
  return tokenizer


class Modules(NamedTuple):
  """What a sentence-transformers modules.json prescribes after the transformer."""

  pooling: str | None = None
  normalize: bool = False
  max_length: int | None = None  # sentence_bert_config.json's max_seq_length


_MODULE_TYPE = "sentence_transformers.models."
_POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}


def _pooling_mode(path: pathlib.Path) -> str:
  """The one pooling a Pooling module's config.json turns on: mean or cls, or an InputError."""
  raw = _read_json(path)
  modes = [key for key, on in raw.items() if key.startswith("pooling_mode") and on is True]
  if len(modes) != 1 or modes[0] not in _POOLING_MODES:
    raise InputError(f"{path}: pooling {' + '.join(modes) or 'none'} is not supported, only one of "
                     f"{', '.join(_POOLING_MODES)}")
  return _POOLING_MODES[modes[0]]


def read_modules(model_dir: str | pathlib.Path) -> Modules:
  """The directory's sentence-transformers module list (Transformer, Pooling, optionally Normalize), as
  SentenceTransformer.encode applies it; Modules() when the directory has no modules.json."""
  model_dir = pathlib.Path(model_dir)
  path = model_dir / "modules.json"
  if not path.is_file():
    return Modules()
  entries = _read_json(path)
  try:
    types = [entry["type"].removeprefix(_MODULE_TYPE) for entry in entries]
    paths = [model_dir / entry.get("path", "") for entry in entries]
  except (TypeError, KeyError, AttributeError):
    raise InputError(f"{path}: not a list of modules with a type each") from None
  if types not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
    raise InputError(f"{path}: modules {' -> '.join(types)} are not supported, only Transformer -> Pooling"
                     " [-> Normalize]; skip the module list to use the transformer alone")
  transformer = paths[0] / "sentence_bert_config.json"
  settings = _read_json(transformer) if transformer.is_file() else {}
  if settings.get("do_lower_case"):
    raise InputError(f"{transformer}: do_lower_case is not supported")
  return Modules(_pooling_mode(paths[1] / "config.json"), len(types) == 3, settings.get("max_seq_length"))


def load_pretrained(model_dir: str | pathlib.Path, max_length: int | None = None,
                    modules: bool = False) -> Pretrained:
  """A BERT-family model from a directory of Hugging Face files.

  Args:
    model_dir: holds config.json, model.safetensors and tokenizer.json.
    max_length: tokens kept of each sentence, [CLS] and [SEP] included. By default modules.json's
      transformer's max_seq_length (with `modules`), else tokenizer.json's truncation length, else
      max_position_embeddings.
    modules: apply the directory's sentence-transformers modules.json, when it has one, as
      SentenceTransformer.encode does: its truncation length, its pooling (encode_batch refuses
      another) and its Normalize module.

  Returns:
    (module, params, tokenizer, config, pooling, normalize) as a Pretrained.
  """
  model_dir = pathlib.Path(model_dir)
  if not model_dir.is_dir():
    raise InputError(f"{model_dir}: not a directory")
  config = BertConfig.from_json(model_dir / "config.json")
  listed = read_modules(model_dir) if modules else Modules()
  module = Bert(config)
  params = _load_params(model_dir / "model.safetensors", module)
  tokenizer = _load_tokenizer(model_dir / "tokenizer.json", config, max_length or listed.max_length)
  return Pretrained(module, params, tokenizer, config, listed.pooling, listed.normalize)


def tokenize(
    encoder: Pretrained, sentences: Sequence[str]
) -> tuple[list["tokenizers.Encoding"], int]:
  """The sentences' encodings, truncated to encoder.max_length, and how many were truncated."""
  encodings = encoder.tokenizer.encode_batch(list(sentences))
  return encodings, sum(bool(e.overflowing) for e in encodings)


def pad_batch(
    encodings: Sequence["tokenizers.Encoding"], batch_size: int, length: int
) -> dict[str, np.ndarray]:
  """ids, type_ids and mask, int32 [batch_size, length]; rows past the encodings are all padding."""
  batch = {name: np.zeros((batch_size, length), np.int32) for name in ("ids", "type_ids", "mask")}
  for i, e in enumerate(encodings):
    batch["ids"][i, : len(e.ids)] = e.ids
    batch["type_ids"][i, : len(e.ids)] = e.type_ids
    batch["mask"][i, : len(e.ids)] = e.attention_mask
  return batch


def mean_pool(h_BxLxD: jax.Array, mask_BxL: jax.Array) -> jax.Array:
  """The mean over unmasked tokens; an all-padding row gives zeros."""
  mask_BxLx1 = mask_BxL[..., None].astype(h_BxLxD.dtype)
  return (h_BxLxD * mask_BxLx1).sum(1) / jnp.maximum(mask_BxLx1.sum(1), 1.0)


def cls_pool(h_BxLxD: jax.Array) -> jax.Array:
  """The first ([CLS]) token's state."""
  return h_BxLxD[:, 0]


def pool(h_BxLxD: jax.Array, mask_BxL: jax.Array, pooling: str) -> jax.Array:
  """One vector a sentence, by `pooling` (one of POOLINGS)."""
  return mean_pool(h_BxLxD, mask_BxL) if pooling == "mean" else cls_pool(h_BxLxD)


@functools.partial(jax.jit, static_argnames=("module", "pooling", "normalize"))
def _encode(module: Bert, params: dict, batch: dict[str, jax.Array], pooling: str, normalize: bool) -> jax.Array:
  h_BxLxD = module.apply(params, batch["ids"], batch["type_ids"], batch["mask"])
  pooled_BxD = pool(h_BxLxD, batch["mask"], pooling)
  if not normalize:
    return pooled_BxD
  # torch.nn.functional.normalize's epsilon, as sentence-transformers' Normalize uses it.
  return pooled_BxD / jnp.maximum(jnp.linalg.norm(pooled_BxD, axis=-1, keepdims=True), 1e-12)


def check_pooling(pooling: str, encoder: Pretrained | None = None) -> None:
  """Refuses an unknown pooling, or one other than the encoder's modules.json prescribes."""
  if pooling not in POOLINGS:
    raise InputError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
  if encoder is not None and encoder.pooling not in (None, pooling):
    raise InputError(f"the encoder's modules.json pools by {encoder.pooling}, not {pooling}: ask for"
                     f" {encoder.pooling} pooling, or skip its module list (hsvae embed --nomodules-json,"
                     " model.modules_json=false)")


def encode_batch(
    encoder: Pretrained, batch: dict[str, np.ndarray], pooling: str = "mean"
) -> np.ndarray:
  """Pooled (and, when its modules.json says so, normalised) last hidden states, float32 [B, D], of a
  pad_batch batch; compiles once a shape."""
  check_pooling(pooling, encoder)
  return np.asarray(_encode(encoder.module, encoder.params, batch, pooling, encoder.normalize))
