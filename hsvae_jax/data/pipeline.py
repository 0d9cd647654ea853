"""Batches of token ids: shuffled, sharded and checkpointable for training, in order for evaluation.

A batch is {'tokens': int32 [B, L], 'lengths': int32 [B]}, tokens post-padded with PAD and L the
smallest length bucket that holds the batch's longest sentence, so the step compiles once a bucket,
plus a [B, ...] row of every per-sentence feature given (e.g. 'embedding', a frozen encoder's output).
"""

from collections.abc import Iterator, Mapping, Sequence
import functools

import grain
import numpy as np

from hsvae_jax.data.tokenizer import EOS, PAD
from hsvae_jax.errors import InputError


def bucket_length(length: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= length."""
  fitting = [b for b in buckets if b >= length]
  if not fitting:
    raise ValueError(f"Length {length} exceeds the largest bucket {max(buckets)}.")
  return min(fitting)


def _check(token_ids: Sequence[np.ndarray], batch_size: int, buckets: Sequence[int]) -> None:
  if batch_size < 1:
    raise InputError(f"batch size {batch_size} is not positive")
  longest = max(map(len, token_ids), default=0)
  if longest > max(buckets):
    raise InputError(
        f"sentences of {longest} tokens do not fit the largest of data.length_buckets"
        f" {tuple(buckets)}: lower data.max_length or add a bucket"
    )


def _check_features(token_ids: Sequence[np.ndarray], features: Mapping[str, np.ndarray]) -> None:
  for name, rows in features.items():
    if len(rows) != len(token_ids):
      raise InputError(f"feature {name!r} has {len(rows)} rows for {len(token_ids)} sentences")


def _pad(rows: Sequence[np.ndarray], buckets: Sequence[int]) -> dict[str, np.ndarray]:
  lengths = np.array([len(r) for r in rows], dtype=np.int32)
  tokens = np.full((len(rows), bucket_length(lengths.max(), buckets)), PAD, dtype=np.int32)
  for i, row in enumerate(rows):
    tokens[i, : len(row)] = row
  return {"tokens": tokens, "lengths": lengths}


def _gather(indices: Sequence[int], token_ids: Sequence[np.ndarray], features: Mapping[str, np.ndarray],
            buckets: Sequence[int]) -> dict[str, np.ndarray]:
  indices = np.asarray(indices)
  return _pad([token_ids[i] for i in indices], buckets) | {name: rows[indices] for name, rows in features.items()}


def train_dataset(
    token_ids: Sequence[np.ndarray],
    global_batch_size: int,
    seed: int,
    length_buckets: Sequence[int],
    process_index: int = 0,
    process_count: int = 1,
    features: Mapping[str, np.ndarray] | None = None,
) -> grain.IterDataset:
  """Endless shuffled batches of token_ids (and features' rows): this process's rows of each global batch.

  Every process walks the same seeded order and keeps rows [p * b, (p + 1) * b) of each global
  batch (b = global_batch_size / process_count), so the shards are disjoint, cover the batch, and
  the global batch, its padded length and hence the trained model do not depend on how many
  processes share it. Every epoch is shuffled afresh from the seed; batches run on across epoch
  boundaries, so no sentence is dropped. Iterators of the dataset have get_state/set_state and go
  into an Orbax checkpoint with grain.checkpoint.CheckpointSave/CheckpointRestore.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is not in [0, {process_count}).")
  _check(token_ids, global_batch_size, length_buckets)
  features = dict(features or {})
  _check_features(token_ids, features)
  if global_batch_size % process_count:
    raise InputError(f"batch size {global_batch_size} does not split evenly over {process_count} processes")
  if len(token_ids) < global_batch_size:
    raise InputError(f"{len(token_ids)} training sentences, fewer than the batch size {global_batch_size}")
  local = slice(process_index * global_batch_size // process_count,
                (process_index + 1) * global_batch_size // process_count)
  return (
      grain.MapDataset.range(len(token_ids))
      .shuffle(seed=seed)
      .repeat()  # reseeds the shuffle every epoch
      .batch(
          global_batch_size,
          drop_remainder=True,
          batch_fn=functools.partial(_gather, token_ids=token_ids, features=features,
                                     buckets=tuple(length_buckets)),
      )
      .map(lambda batch: {name: rows[local] for name, rows in batch.items()})
      # Sentences are in memory: grain advises no reader threads (they only contend for the GIL).
      .to_iter_dataset(grain.ReadOptions(num_threads=0))
  )


def eval_batches(
    token_ids: Sequence[np.ndarray], batch_size: int, length_buckets: Sequence[int],
    features: Mapping[str, np.ndarray] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Batches of token_ids (and features' rows) in order, each of exactly batch_size rows.

  Besides tokens and lengths, 'mask' float32 [B] is 1 for a sentence and 0 for a row padding
  the last batch, and 'index' int32 [B] is the row's position in token_ids (-1 for padding).
  Padding rows are a lone EOS (features: a copy of the first row), so a model sees well-formed input
  and no NaN appears.
  """
  _check(token_ids, batch_size, length_buckets)  # here, not on the first next()
  features = dict(features or {})
  _check_features(token_ids, features)
  return _eval_batches(token_ids, batch_size, tuple(length_buckets), features)


def _eval_batches(
    token_ids: Sequence[np.ndarray], batch_size: int, length_buckets: Sequence[int],
    features: Mapping[str, np.ndarray],
) -> Iterator[dict[str, np.ndarray]]:
  filler = np.array([EOS], dtype=np.int32)
  for start in range(0, len(token_ids), batch_size):
    rows = list(token_ids[start : start + batch_size])
    num_real = len(rows)
    batch = _pad(rows + [filler] * (batch_size - num_real), length_buckets)
    for name, feature_rows in features.items():
      real_rows = feature_rows[start : start + batch_size]
      batch[name] = np.concatenate([real_rows, np.repeat(real_rows[:1], batch_size - num_real, axis=0)])
    batch["mask"] = (np.arange(batch_size) < num_real).astype(np.float32)
    batch["index"] = np.full(batch_size, -1, dtype=np.int32)
    batch["index"][:num_real] = np.arange(start, start + num_real)
    yield batch
