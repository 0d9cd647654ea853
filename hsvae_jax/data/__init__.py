"""Data: corpus files -> sentences (corpus, synthetic) -> token ids (tokenizer) -> batches (pipeline)."""

from hsvae_jax.data.corpus import Corpus, check_split, load_corpus, read_labels, read_lines, read_vocab
from hsvae_jax.data.pipeline import bucket_length, eval_batches, train_dataset
from hsvae_jax.data.synthetic import make_synthetic_corpus
from hsvae_jax.data.tokenizer import EOS, PAD, UNK, Vocabulary, unk_rate

__all__ = [
    "Corpus",
    "EOS",
    "PAD",
    "UNK",
    "Vocabulary",
    "bucket_length",
    "check_split",
    "eval_batches",
    "load_corpus",
    "make_synthetic_corpus",
    "read_labels",
    "read_lines",
    "read_vocab",
    "train_dataset",
    "unk_rate",
]
