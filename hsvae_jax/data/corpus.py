"""Corpora as sentences and labels per split, read strictly from the paper's file format."""

from collections.abc import Callable
import dataclasses
import os
import pathlib

import ml_collections
import numpy as np

from hsvae_jax.errors import InputError

SPLITS = ("train", "valid", "test")
_INT64_MAX = np.iinfo(np.int64).max
# Corpora, and the splits carved from them, must not change with the model seed or the machine.
_CORPUS_SEED = 0


@dataclasses.dataclass
class Corpus:
  """Sentences (whitespace-tokenised strings) and optional integer labels per split.

  vocab_words holds the words of the corpus's own vocab.txt in file order (reserved
  tokens not added), or None when the vocabulary is to be built from train.
  """

  sentences: dict[str, list[str]]
  labels: dict[str, np.ndarray | None]
  vocab_words: list[str] | None
  num_classes: int | None
  name: str


def check_split(split: str) -> None:
  if split not in SPLITS:
    raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def read_lines(path: str | os.PathLike[str]) -> list[str]:
  """The lines of a strict UTF-8 text file, without their line endings."""
  path = pathlib.Path(path)
  try:
    data = path.read_bytes()
  except FileNotFoundError:
    raise InputError(f"{path}: no such file") from None
  except OSError as e:
    raise InputError(f"{path}: cannot read it ({e.strerror})") from None
  try:
    text = data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise InputError(f"{path}, line {line}: not valid UTF-8 ({e.reason})") from None
  # str.splitlines would also split at form feeds and Unicode separators inside a sentence.
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  return [line.removesuffix("\r") for line in lines]


def read_labels(path: str | os.PathLike[str], num_sentences: int) -> np.ndarray:
  """One non-negative integer class a line, as many as there are sentences: int64 [N]."""
  labels = []
  for number, line in enumerate(read_lines(path), start=1):
    text = line.strip()
    if not (text.isascii() and text.isdigit()):
      raise InputError(f"{path}, line {number}: {line!r} is not a non-negative integer label")
    if int(text) > _INT64_MAX:
      raise InputError(f"{path}, line {number}: label {text} does not fit in int64")
    labels.append(int(text))
  if len(labels) != num_sentences:
    raise InputError(f"{path}: {len(labels)} labels for {num_sentences} sentences")
  return np.array(labels, dtype=np.int64)


def read_vocab(path: str | os.PathLike[str]) -> list[str]:
  """The words of a vocabulary file, one a line, each once.

  Blank lines are skipped: whitespace tokenisation never yields an empty word, and the
  paper's yahoo vocab.txt has one.
  """
  words, seen = [], set()
  for number, line in enumerate(read_lines(path), start=1):
    if not line:
      continue
    if len(line.split()) != 1 or line != line.strip():
      raise InputError(f"{path}, line {number}: {line!r} is not a single word")
    if line in seen:
      raise InputError(f"{path}, line {number}: {line!r} is listed twice")
    seen.add(line)
    words.append(line)
  if not words:
    raise InputError(f"{path}: empty vocabulary file")
  return words


def _read_sentences(path: pathlib.Path) -> list[str]:
  sentences = read_lines(path)
  if not sentences:
    raise InputError(f"{path}: no sentences")
  for number, sentence in enumerate(sentences, start=1):
    if not sentence.split():
      raise InputError(f"{path}, line {number}: empty sentence")
  return sentences


def _optional_vocab(folder: pathlib.Path) -> list[str] | None:
  path = folder / "vocab.txt"
  return read_vocab(path) if path.exists() else None


def _num_classes(labels: dict[str, np.ndarray | None]) -> int | None:
  present = [int(y.max()) for y in labels.values() if y is not None and len(y)]
  return max(present) + 1 if present else None


def _load_dir(data_config: ml_collections.ConfigDict) -> Corpus:
  """The paper's format: train.txt; optional valid.txt, test.txt, <split>_class_label.txt, vocab.txt."""
  if not data_config.dir:
    raise InputError("data.dir is empty: set --config.data.dir to the corpus folder")
  folder = pathlib.Path(data_config.dir)
  if not folder.is_dir():
    raise InputError(f"{folder}: no such corpus folder")
  if not (folder / "train.txt").is_file():
    raise InputError(f"{folder / 'train.txt'}: missing (a 'dir' corpus needs train.txt)")
  sentences, labels = {}, {}
  for split in SPLITS:
    path = folder / f"{split}.txt"
    if not path.exists():
      continue
    sentences[split] = _read_sentences(path)
    label_path = folder / f"{split}_class_label.txt"
    labels[split] = (
        read_labels(label_path, len(sentences[split])) if label_path.exists() else None
    )
  _check_num_classes(folder, sentences, labels)
  return Corpus(sentences, labels, _optional_vocab(folder), _num_classes(labels), folder.name)


def _check_num_classes(folder: pathlib.Path, sentences: dict[str, list[str]],
                       labels: dict[str, np.ndarray | None]) -> None:
  """Refuses labels implying more classes than the corpus has sentences: a label file gone wrong."""
  total = sum(map(len, sentences.values()))
  for split, y in labels.items():
    if y is not None and int(y.max()) >= total:
      raise InputError(f"{folder / f'{split}_class_label.txt'}: label {int(y.max())} implies more classes than the"
                       f" corpus's {total} sentences")


def _load_synthetic(data_config: ml_collections.ConfigDict) -> Corpus:
  # Imported here: synthetic builds a Corpus, so it imports this module.
  from hsvae_jax.data import synthetic  # pylint: disable=g-import-not-at-top

  return synthetic.make_synthetic_corpus(data_config.synthetic, _CORPUS_SEED)


def _load_tfds(data_config: ml_collections.ConfigDict) -> Corpus:
  # Imported here: tensorflow_datasets is slow to import and only these corpora need it.
  from hsvae_jax.data import tfds_corpora  # pylint: disable=g-import-not-at-top

  splits = tfds_corpora.load_tfds_corpus(
      data_config.name, data_config.dir, data_config.tfds_data_dir
  )
  sentences = {split: list(s) for split, (s, _) in splits.items()}
  labels = {split: y for split, (_, y) in splits.items()}
  # The builder keeps the corpus's vocab.txt, downloaded or read from data.dir.
  vocab_words = tfds_corpora.tfds_vocab_words(data_config.name, data_config.dir, data_config.tfds_data_dir)
  return Corpus(sentences, labels, vocab_words, _num_classes(labels), data_config.name)


_LOADERS: dict[str, Callable[[ml_collections.ConfigDict], Corpus]] = {
    "dir": _load_dir,
    "synthetic": _load_synthetic,
    "dbpedia": _load_tfds,
    "yahoo": _load_tfds,
    "yelp": _load_tfds,
}
CORPORA = tuple(_LOADERS)  # the values data.name may take


def load_corpus(data_config: ml_collections.ConfigDict) -> Corpus:
  """Loads the corpus named by data_config.name with train, valid and test splits.

  A missing valid or test split is carved from train (data_config.valid_fraction,
  test_fraction of it). A corpus without train, such as a TFDS corpus prepared
  from a folder holding only valid.txt (../shared/data), uses its valid split as
  the pool that train, valid and test are all carved from. Carving is fixed by a
  constant seed, so every run and machine sees the same splits.
  """
  loader = _LOADERS.get(data_config.name)
  if loader is None:
    raise InputError(
        f"data.name={data_config.name!r} is not one of: {', '.join(_LOADERS)}"
    )
  return _complete_splits(
      loader(data_config), data_config.valid_fraction, data_config.test_fraction
  )


def _complete_splits(corpus: Corpus, valid_fraction: float, test_fraction: float) -> Corpus:
  """Carves the missing valid/test splits (labels in step) from train, or from valid."""
  pool = "train" if "train" in corpus.sentences else "valid"
  if pool not in corpus.sentences:
    raise InputError(f"corpus {corpus.name!r} has neither a train nor a valid split")
  fractions = {"valid": valid_fraction, "test": test_fraction}
  carve = {s: f for s, f in fractions.items() if s == pool or s not in corpus.sentences}
  if not carve:
    return corpus
  sentences, labels = dict(corpus.sentences), dict(corpus.labels)
  pool_sentences, pool_labels = sentences.pop(pool), labels.pop(pool, None)
  order = np.random.default_rng(_CORPUS_SEED).permutation(len(pool_sentences))
  parts, start = {}, 0
  for split, fraction in carve.items():
    if not 0 < fraction < 1:
      raise InputError(f"data.{split}_fraction={fraction} is not between 0 and 1")
    size = max(1, round(fraction * len(pool_sentences)))
    parts[split] = order[start : start + size]
    start += size
  if start >= len(pool_sentences):
    raise InputError(
        f"corpus {corpus.name!r}: {len(pool_sentences)} {pool} sentences leave none for"
        f" train after carving {', '.join(carve)} ({', '.join(map(str, carve.values()))})"
    )
  parts["train"] = order[start:]
  for split, rows in parts.items():
    rows = np.sort(rows)  # every split keeps the corpus order
    sentences[split] = [pool_sentences[i] for i in rows]
    labels[split] = None if pool_labels is None else pool_labels[rows]
  return dataclasses.replace(
      corpus,
      sentences={s: sentences[s] for s in SPLITS},
      labels={s: labels.get(s) for s in SPLITS},
  )
