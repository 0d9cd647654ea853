"""Sentence embeddings from a pretrained encoder: for `hsvae embed`, and as inputs for training."""

from collections.abc import Sequence
import hashlib
import json
import os

from absl import logging
import ml_collections
import numpy as np

from hsvae_jax.data import bucket_length, read_lines
from hsvae_jax.encoders import bert
from hsvae_jax.errors import InputError, warn

# Sentences tokenised at a time; each chunk is sorted by length so batches carry little padding.
_BATCHES_PER_CHUNK = 32


def length_buckets(max_length: int) -> tuple[int, ...]:
  """16, 32, 64, ... below max_length, then max_length: one compilation a bucket."""
  buckets = []
  length = 16
  while length < max_length:
    buckets.append(length)
    length *= 2
  return (*buckets, max_length)


def _check(pooling: str, batch_size: int, encoder: bert.Pretrained | None = None) -> None:
  bert.check_pooling(pooling, encoder)
  if batch_size < 1:
    raise InputError(f"batch size {batch_size} is not positive")


def _embed(
    encoder: bert.Pretrained, sentences: Sequence[str], pooling: str, batch_size: int
) -> tuple[np.ndarray, int]:
  _check(pooling, batch_size, encoder)
  buckets = length_buckets(encoder.max_length)
  out_NxD = np.empty((len(sentences), encoder.config.hidden_size), np.float32)
  num_truncated = 0
  chunk_size = batch_size * _BATCHES_PER_CHUNK
  for start in range(0, len(sentences), chunk_size):
    encodings, truncated = bert.tokenize(encoder, sentences[start : start + chunk_size])
    num_truncated += truncated
    order = np.argsort([len(e.ids) for e in encodings], kind="stable")
    for i in range(0, len(order), batch_size):
      rows = order[i : i + batch_size]
      length = bucket_length(len(encodings[rows[-1]].ids), buckets)  # rows[-1] is the longest
      # Every batch has batch_size rows, so the last one compiles nothing new.
      batch = bert.pad_batch([encodings[r] for r in rows], batch_size, length)
      out_NxD[start + rows] = bert.encode_batch(encoder, batch, pooling)[: len(rows)]
  return out_NxD, num_truncated


def embed_sentences(
    encoder: bert.Pretrained, sentences: Sequence[str], pooling: str = "mean", batch_size: int = 64
) -> np.ndarray:
  """The sentences' embeddings, float32 [N, hidden], in input order.

  Args:
    encoder: from hsvae_jax.encoders.load_pretrained (with modules=True, SentenceTransformer.encode's).
    sentences: any number, each truncated to encoder.max_length tokens.
    pooling: 'mean' (over the sentence's tokens) or 'cls' (the first token's state).
    batch_size: sentences a forward pass.
  """
  return _embed(encoder, sentences, pooling, batch_size)[0]


def embed_file(
    encoder_path: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    pooling: str = "mean",
    batch_size: int = 64,
    modules: bool = True,
) -> dict[str, int]:
  """Embeds each line of a UTF-8 text file into a row of a float32 [num_lines, dim] .npy file.

  Args:
    encoder_path: a Hugging Face BERT-family model directory (see load_pretrained).
    input_path: one sentence a line.
    output_path: the .npy file to write.
    pooling: 'mean' or 'cls'.
    batch_size: sentences a forward pass.
    modules: apply the directory's sentence-transformers modules.json (Normalize, ...) when it has one,
      so the rows equal SentenceTransformer.encode's.

  Returns:
    {'num_lines', 'num_truncated' (lines cut to the encoder's max length), 'dim'}.
  """
  _check(pooling, batch_size)  # before the slow load
  sentences = read_lines(input_path)
  if not sentences:
    raise InputError(f"{input_path}: no sentences to embed")
  encoder = bert.load_pretrained(encoder_path, modules=modules)
  embeddings_NxD, num_truncated = _embed(encoder, sentences, pooling, batch_size)
  try:
    with open(output_path, "wb") as f:
      np.save(f, embeddings_NxD)
  except OSError as e:
    raise InputError(f"{output_path}: cannot write it ({e.strerror})") from None
  return {"num_lines": len(sentences), "num_truncated": num_truncated,
          "dim": embeddings_NxD.shape[1]}


def _modules_json(model_config: ml_collections.ConfigDict) -> bool:
  # A workdir's config from before the key existed was trained without the module list.
  return model_config.get("modules_json", False)


def load_encoder(model_config: ml_collections.ConfigDict) -> bert.Pretrained:
  """The frozen transformer a model config names, with its module list when model.modules_json says so."""
  return bert.load_pretrained(model_config.encoder_path, modules=_modules_json(model_config))


def _fingerprint(model_config: ml_collections.ConfigDict, sentences: Sequence[str]) -> dict:
  digest = hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest()
  return {"encoder_path": os.path.abspath(model_config.encoder_path), "pooling": model_config.pooling,
          "modules_json": _modules_json(model_config), "num_sentences": len(sentences),
          "sentences_sha256": digest}


def _cached(array_path: str, meta_path: str, fingerprint: dict) -> np.ndarray | None:
  try:
    with open(meta_path) as f:
      return np.load(array_path) if json.load(f) == fingerprint else None
  except (OSError, ValueError):  # absent, or a write cut short: recomputed
    return None


def cached_embeddings(model_config: ml_collections.ConfigDict, sentences: Sequence[str], directory: str,
                      split: str, batch_size: int = 64) -> np.ndarray:
  """The frozen encoder's embeddings of a split's sentences, computed once and kept in directory.

  A cache made by another encoder, pooling, module list or text is recomputed, never reused; one that cannot be
  written (a read-only workdir) is a warning.
  """
  array_path, meta_path = os.path.join(directory, f"{split}.npy"), os.path.join(directory, f"{split}.json")
  fingerprint = _fingerprint(model_config, sentences)
  cached = _cached(array_path, meta_path, fingerprint)
  if cached is not None:
    return cached
  logging.info("Embedding %d %s sentences with %s", len(sentences), split, model_config.encoder_path)
  embeddings_NxD = embed_sentences(load_encoder(model_config), sentences, model_config.pooling, batch_size)
  try:
    os.makedirs(directory, exist_ok=True)
    np.save(array_path, embeddings_NxD)
    with open(meta_path, "w") as f:  # written last: it vouches for the array
      json.dump(fingerprint, f)
  except OSError as e:
    warn(f"{directory}: cannot cache the {split} embeddings there ({e.strerror})")
  return embeddings_NxD


def model_inputs(model_config: ml_collections.ConfigDict, sentences: Sequence[str], cache_dir: str | None = None,
                 split: str = "") -> dict[str, np.ndarray]:
  """Per-sentence inputs besides the words: a frozen transformer's embeddings (cached in cache_dir under
  split's name when given), or the wordpiece ids and mask a fine-tuned one reads."""
  if model_config.encoder != "transformer":
    return {}
  if not model_config.freeze_encoder:
    return wordpieces(model_config.encoder_path, sentences)
  if cache_dir is None:
    return {"embedding": embed_sentences(load_encoder(model_config), sentences, model_config.pooling)}
  return {"embedding": cached_embeddings(model_config, sentences, cache_dir, split)}


def wordpieces(encoder_path: str | os.PathLike[str], sentences: Sequence[str]) -> dict[str, np.ndarray]:
  """Token ids and attention mask of each sentence, int32 [N, L'], padded to the longest (L') of them."""
  encoder = bert.load_pretrained(encoder_path)
  encodings, num_truncated = bert.tokenize(encoder, sentences)
  if num_truncated:
    logging.warning("%d sentences truncated to %d wordpieces", num_truncated, encoder.max_length)
  padded = bert.pad_batch(encodings, len(encodings), max(len(e.ids) for e in encodings))
  return {"encoder_ids": padded["ids"], "encoder_mask": padded["mask"]}
