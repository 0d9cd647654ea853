"""Whitespace vocabulary with the original code's reserved tokens."""

import collections
from collections.abc import Iterable, Sequence
import os

import numpy as np

from hsvae_jax.data import corpus
from hsvae_jax.errors import InputError

PAD, EOS, UNK = 0, 1, 2
RESERVED = ("<PAD>", "<EOS>", "_UNK")


class Vocabulary:
  """A list of words; a word's id is its position, ids 0..2 are PAD, EOS and UNK."""

  def __init__(self, words: Sequence[str]):
    """words[0..2] must be the reserved tokens; each word at most once."""
    if tuple(words[: len(RESERVED)]) != RESERVED:
      raise ValueError(f"A vocabulary starts with {RESERVED}, got {tuple(words[:3])}.")
    if len(set(words)) != len(words):
      raise ValueError("Vocabulary words must be unique.")
    self._words = list(words)
    # `<PAD>` or `<EOS>` written in a sentence is an unknown word, not its end.
    self._ids = {w: i for i, w in enumerate(self._words) if i >= UNK}

  @classmethod
  def from_words(cls, words: Iterable[str]) -> "Vocabulary":
    """The reserved tokens, then words without them.

    So the paper's vocab.txt, which lists `_UNK` among its words and no
    `<PAD>`/`<EOS>`, and a file written by `save` both load with the same ids.
    """
    return cls(list(RESERVED) + [w for w in words if w not in RESERVED])

  @classmethod
  def build(cls, sentences: Iterable[str], max_size: int) -> "Vocabulary":
    """The most frequent words (ties alphabetical), at most max_size ids in all."""
    if max_size < len(RESERVED):
      raise InputError(
          f"vocabulary size {max_size} leaves no room for the {len(RESERVED)} reserved tokens"
      )
    counts = collections.Counter(w for s in sentences for w in s.split())
    ranked = sorted((w for w in counts if w not in RESERVED), key=lambda w: (-counts[w], w))
    return cls.from_words(ranked[: max_size - len(RESERVED)])

  @classmethod
  def load(cls, path: str | os.PathLike[str]) -> "Vocabulary":
    """Reads one word a line (the paper's vocab.txt, or a file from `save`)."""
    return cls.from_words(corpus.read_vocab(path))

  def save(self, path: str | os.PathLike[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
      f.writelines(w + "\n" for w in self._words)

  def __len__(self) -> int:
    return len(self._words)

  def encode(self, sentence: str, max_length: int) -> np.ndarray:
    """Token ids of the first max_length - 1 words, then EOS: int32 [<= max_length]."""
    if max_length < 2:
      raise InputError(f"max_length {max_length} leaves no room for a word before <EOS>")
    ids = [self._ids.get(w, UNK) for w in sentence.split()[: max_length - 1]]
    return np.array(ids + [EOS], dtype=np.int32)

  def encode_all(self, sentences: Iterable[str], max_length: int) -> list[np.ndarray]:
    return [self.encode(s, max_length) for s in sentences]

  def decode(self, ids: Iterable[int]) -> str:
    """The words before the first EOS or PAD."""
    words = []
    for i in ids:
      if i in (EOS, PAD):
        break
      words.append(self._words[i])
    return " ".join(words)


def unk_rate(token_ids: Sequence[np.ndarray]) -> float:
  """The share of word tokens (EOS aside) that are unknown to the vocabulary that encoded them."""
  ids = np.concatenate(token_ids) if len(token_ids) else np.zeros(0, np.int32)
  words = ids[ids != EOS]
  return float((words == UNK).mean()) if len(words) else 0.0
