"""What the benchmark scripts share: a corpus cut to its first sentences, runs that resume when finished."""

import itertools
import json
import os
import time

from hsvae_jax import evaluate
from hsvae_jax import train


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


def apply_overrides(config, overrides: dict):
  """config with each "section.key": value of overrides set; returns config."""
  for dotted, value in overrides.items():
    section, key = dotted.split(".")
    config[section][key] = value
  return config


WALL_FILE = "wall_s.json"  # marks a finished run


def _read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def finished_run(workdir: str, split: str = "test") -> tuple[dict, dict] | None:
  """(eval_<split>.json, wall times) of a run that train_and_test finished and evaluated on split, else None."""
  done, result_path = os.path.join(workdir, WALL_FILE), os.path.join(workdir, f"eval_{split}.json")
  if not (os.path.exists(done) and os.path.exists(result_path)):
    return None
  return _read_json(result_path), _read_json(done)


def train_and_test(config, workdir: str, split: str = "test") -> tuple[dict, dict]:
  """Trains one run unless finished, evaluates it on split with probes unless done; (result, wall times)."""
  finished = finished_run(workdir, split)
  if finished:
    return finished
  done = os.path.join(workdir, WALL_FILE)
  if os.path.exists(done):
    wall = _read_json(done)
  else:
    start = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    wall = {"train_s": time.perf_counter() - start}
  start = time.perf_counter()
  result = evaluate.evaluate(workdir, split, probe=True)
  wall["eval_s"] = time.perf_counter() - start  # the latest evaluation's
  with open(done, "w") as f:
    json.dump(wall, f)
  return result, wall
