"""CPU budgets shared by the benchmark scripts: a corpus cut to its first sentences."""

import itertools
import os


def first_sentences(corpus_dir: str, max_sentences: int, out_dir: str) -> str:
  """corpus_dir itself when its files are short enough, else a copy of their first max_sentences lines.

  The shared corpora are shuffled with a fixed seed, so their first lines are a fair sample. Labels are
  cut alike; vocab.txt is copied whole.
  """
  files = sorted(f for f in os.listdir(corpus_dir) if f.endswith(".txt"))
  sentence_files = [f for f in files if f != "vocab.txt" and not f.endswith("_class_label.txt")]
  longest = max(sum(1 for _ in open(os.path.join(corpus_dir, f), encoding="utf-8")) for f in sentence_files)
  if longest <= max_sentences:
    return corpus_dir
  os.makedirs(out_dir, exist_ok=True)
  for name in files:
    with open(os.path.join(corpus_dir, name), encoding="utf-8") as src, \
        open(os.path.join(out_dir, name), "w", encoding="utf-8") as dst:
      dst.writelines(src if name == "vocab.txt" else itertools.islice(src, max_sentences))
  return out_dir
