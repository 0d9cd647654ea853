"""A generated corpus whose structure is known: one latent topic a sentence.

Each topic owns words_per_topic pseudo-words; num_common_words more are shared by
all topics. A sentence has a topic (its label) and min_words..max_words words
following a fixed template: every third word, starting with the first, is a
common word (like a function word), the others are words of its topic. Within
each group, words are drawn with Zipf frequencies (the k-th word with
probability proportional to 1/k), as in natural text. A small sentence VAE can
learn to reconstruct such sentences in a minute of training, and the topics
should separate in its codes.
"""

import ml_collections
import numpy as np

from hsvae_jax.data import corpus
from hsvae_jax.errors import InputError

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_COMMON_EVERY = 3  # a common word at positions 0, 3, 6, ...
_MAX_WORDS = 100_000  # far below the 348,000 two- and three-syllable words


def _pseudo_words(count: int, rng: np.random.Generator) -> list[str]:
  """count distinct pronounceable words of two or three consonant-vowel syllables."""
  syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
  words = {}  # a dict keeps the order the words were drawn in
  while len(words) < count:
    size = rng.integers(2, 4)
    words["".join(syllables[i] for i in rng.integers(len(syllables), size=size))] = None
  return list(words)


def _zipf(n: int) -> np.ndarray:
  weights = 1.0 / np.arange(1, n + 1)
  return weights / weights.sum()


def _check(config: ml_collections.ConfigDict) -> None:
  minimums = {
      "num_topics": 1,
      "words_per_topic": 1,
      "num_common_words": 0,
      "num_sentences": 10,  # a sentence for each of valid and test
      "min_words": 1,
  }
  for key, minimum in minimums.items():
    if config[key] < minimum:
      raise InputError(f"data.synthetic.{key}={config[key]} is below {minimum}")
  if config.max_words < config.min_words:
    raise InputError(
        f"data.synthetic.max_words={config.max_words} is below min_words={config.min_words}"
    )
  num_words = config.num_topics * config.words_per_topic + config.num_common_words
  if num_words > _MAX_WORDS:
    raise InputError(f"data.synthetic asks for {num_words} words, more than {_MAX_WORDS}")


def make_synthetic_corpus(synthetic_config: ml_collections.ConfigDict, seed: int) -> corpus.Corpus:
  """Generates the corpus, split 80/10/10 into train/valid/test; the same for the same seed."""
  _check(synthetic_config)
  c = synthetic_config
  rng = np.random.default_rng(seed)
  num_topic_words = c.num_topics * c.words_per_topic
  words = np.array(_pseudo_words(num_topic_words + c.num_common_words, rng))
  topic_words = words[:num_topic_words].reshape(c.num_topics, c.words_per_topic)
  common_words = words[num_topic_words:]

  n = c.num_sentences
  topics = rng.integers(c.num_topics, size=n)
  lengths = rng.integers(c.min_words, c.max_words + 1, size=n)
  draws = rng.choice(c.words_per_topic, size=(n, c.max_words), p=_zipf(c.words_per_topic))
  grid = topic_words[topics[:, None], draws]
  if c.num_common_words:
    draws = rng.choice(c.num_common_words, size=(n, c.max_words), p=_zipf(c.num_common_words))
    common_slots = np.arange(c.max_words) % _COMMON_EVERY == 0
    grid = np.where(common_slots, common_words[draws], grid)
  sentences = [" ".join(row[:length]) for row, length in zip(grid.tolist(), lengths)]

  k = n // 10
  splits = {"train": slice(0, n - 2 * k), "valid": slice(n - 2 * k, n - k), "test": slice(n - k, n)}
  return corpus.Corpus(
      sentences={split: sentences[rows] for split, rows in splits.items()},
      labels={split: topics[rows].astype(np.int64) for split, rows in splits.items()},
      vocab_words=None,
      num_classes=c.num_topics,
      name="synthetic",
  )
