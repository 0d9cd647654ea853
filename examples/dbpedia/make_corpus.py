"""Regenerates this folder's demo corpus from the HSVAE authors' DBpedia validation split.

  python examples/dbpedia/make_corpus.py            # reads ../shared/data/dbpedia, writes examples/dbpedia

Each line of the source is the start of a Wikipedia abstract; its first sentence (up to the first "." token)
is kept when it has MIN_WORDS to MAX_WORDS tokens, the "." included, and was not kept before (the source's
_UNK makes some first sentences alike). The first PER_CLASS such sentences of
each of the 14 classes, in file order, are taken; of every ten, eight go to train, one to valid, one to test.
The output is the paper's corpus format: <split>.txt and <split>_class_label.txt. Deterministic: no randomness.
"""

import argparse
import collections
import os

MIN_WORDS = 8  # shorter first "sentences" are mostly cut at an abbreviation ("osaka gas co .")
MAX_WORDS = 20  # the demo's data.max_length is this plus <EOS>
PER_CLASS = 250


def first_sentence(line: str) -> str:
  words = line.split()
  end = words.index(".") + 1 if "." in words else len(words)
  return " ".join(words[:end])


def select(lines: list[str], labels: list[str]) -> dict[str, list[tuple[str, str]]]:
  """(sentence, label) pairs per split, in source order."""
  taken, seen = collections.Counter(), set()
  splits = {"train": [], "valid": [], "test": []}
  for line, label in zip(lines, labels, strict=True):
    sentence = first_sentence(line)
    if taken[label] == PER_CLASS or sentence in seen or not MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
      continue
    seen.add(sentence)
    split = {8: "valid", 9: "test"}.get(taken[label] % 10, "train")
    splits[split].append((sentence, label))
    taken[label] += 1
  short = {label: n for label, n in taken.items() if n < PER_CLASS}
  if short:
    raise SystemExit(f"classes with fewer than {PER_CLASS} sentences that fit: {short}")
  return splits


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--source", default="../shared/data/dbpedia", help="holds valid.txt, valid_class_label.txt")
  parser.add_argument("--output", default=os.path.dirname(os.path.abspath(__file__)))
  args = parser.parse_args()
  read = lambda name: open(os.path.join(args.source, name), encoding="utf-8").read().splitlines()
  for split, pairs in select(read("valid.txt"), read("valid_class_label.txt")).items():
    for suffix, column in ((".txt", 0), ("_class_label.txt", 1)):
      with open(os.path.join(args.output, split + suffix), "w", encoding="utf-8") as f:
        f.writelines(pair[column] + "\n" for pair in pairs)
    print(f"{split}: {len(pairs)} sentences")


if __name__ == "__main__":
  main()
