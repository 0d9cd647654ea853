"""The sparsity-accuracy frontier: HSVAE at a requested share of active dimensions against fixed-sparsity baselines.

  .venv/bin/python benchmarks/sparsity_frontier.py --family minilm --split test --output docs
  .venv/bin/python benchmarks/sparsity_frontier.py --family gru --split test --output docs

--family minilm: over frozen all-MiniLM-L6-v2 embeddings (compare_sparse_embeddings.py's setting: width
768, 1,000 steps of batch 256), the TopK SAE at k in --ks against HSVAE with hparams.target_active = k / 768,
on dbpedia, yahoo and yelp. --family gru: the GRU sentence VAE at gate_study.py's sizes on --gru-corpus (32
dims, 400 steps): HSVAE (the default recipe) at each --targets share against the paper's HSVAE with that
prior slab share, VSC with that prior slab probability, and the dense Gaussian VAE. --set adds overrides to
the recipe's runs. Each point is a run evaluated on
--split, probes trained on the train split (tune on valid; report test once). With --output, writes
OUTPUT/frontier_<family>.png and a section of OUTPUT/results.md.
"""

import argparse
import json
import os
import sys

from absl import logging
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from hsvae_jax import data
import budget
import compare_sparse_embeddings
import gate_study
import results_doc

MINILM_CORPORA = ("dbpedia", "yahoo", "yelp")
MARKERS = {"topk_sae": "s", "hsvae": "o", "paper": "v", "vsc": "^", "gaussian": "D", "dense": "*"}


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--family", default="minilm", choices=("minilm", "gru"))
  parser.add_argument("--data-root", default="../shared/data")
  parser.add_argument("--workdir", default="runs/frontier")
  parser.add_argument("--split", default="valid", choices=("valid", "test"))
  parser.add_argument("--corpora", nargs="+", default=MINILM_CORPORA, choices=MINILM_CORPORA)
  parser.add_argument("--ks", nargs="+", type=int, default=(8, 16, 32, 64))
  parser.add_argument("--gru-corpus", default="yelp", choices=MINILM_CORPORA)
  parser.add_argument("--targets", nargs="+", type=float, default=(0.125, 0.25, 0.5))
  parser.add_argument("--set", nargs="*", default=(), metavar="KEY=VALUE", help="extra overrides of HSVAE runs")
  parser.add_argument("--output", default=None)
  parser.add_argument("--tag", default="", help="appended to the figure's and section's names: a variant (--set) "
                      "written beside the recipe's frontier, not over it")
  return parser.parse_args(argv)


def _overrides(args: argparse.Namespace) -> dict:
  return {s.split("=")[0]: gate_study.parse_value(s.split("=")[1]) for s in args.set}


def minilm_points(args: argparse.Namespace, corpus: str) -> list[dict]:
  """The dense embedding, then the TopK SAE and HSVAE at each k."""
  sae_args = compare_sparse_embeddings.parse_args(["--data-root", args.data_root, "--workdir", args.workdir])
  cache_dir = os.path.join(args.workdir, f"{corpus}_minilm")
  config = compare_sparse_embeddings.run_config(sae_args, corpus, "topk_sae")
  corpus_data = data.load_corpus(config.data)
  compare_sparse_embeddings.share_embeddings(config, corpus_data, cache_dir, cache_dir)
  points = [{"model": "dense", "setting": "384 dims"} | compare_sparse_embeddings.dense_baseline(
      cache_dir, corpus_data, args.split)]
  for k in args.ks:
    for latent in ("topk_sae", "hsvae"):
      config = compare_sparse_embeddings.run_config(sae_args, corpus, latent)
      config.model.topk_k = k
      setting = f"k={k}" if latent == "topk_sae" else f"target_active={k}/{config.model.latent_dim}"
      if latent == "hsvae":
        config.hparams.target_active = k / config.model.latent_dim
        budget.apply_overrides(config, _overrides(args))
      workdir = os.path.join(args.workdir, f"{corpus}_{latent}_k{k}")
      compare_sparse_embeddings.share_embeddings(config, corpus_data, cache_dir, workdir)
      result, _ = budget.train_and_test(config, workdir, args.split)
      points.append({"model": latent, "setting": setting} | result)
      print(corpus, gate_study.summary(f"{latent} {setting}", result), flush=True)
  return points


def gru_points(args: argparse.Namespace) -> list[dict]:
  """The Gaussian VAE, then HSVAE and VSC at each target share of active dimensions."""
  study_args = gate_study.parse_args(["--data-root", args.data_root, "--corpus", args.gru_corpus])
  recipe = gate_study.VARIANTS["recipe"][0]
  runs = [("gaussian", "dense", {"model.latent": "gaussian"})]
  for target in args.targets:
    runs.append(("hsvae", f"target_active={target:g}", recipe | {"hparams.target_active": target} | _overrides(args)))
    # The paper's HSVAE with the same prior mean slab share, and VSC with that prior slab probability.
    runs.append(("paper", f"prior slab share={target:g}", {"hparams.target_active": target}))
    runs.append(("vsc", f"prior slab share={target:g}", {"model.latent": "vsc", "model.vsc_prior_slab_prob": target}))
  points = []
  for model, setting, overrides in runs:
    workdir = os.path.join(args.workdir, f"{args.gru_corpus}_gru_{model}_{setting.split()[-1].replace('=', '')}")
    result, _ = budget.train_and_test(gate_study.variant_config(study_args, overrides), workdir, args.split)
    points.append({"model": model, "setting": setting} | result)
    print(gate_study.summary(f"{model} {setting}", result), flush=True)
  return points


def plot(panels: dict[str, list[dict]], path: str) -> None:
  fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
  for ax, (title, points) in zip(axes[0], panels.items()):
    for model in MARKERS:
      mine = sorted((p for p in points if p["model"] == model), key=lambda p: p["active_dims"])
      if mine:
        ax.plot([p["active_dims"] for p in mine], [p["probe_accuracy"] for p in mine], marker=MARKERS[model],
                label=model)
    ax.set_xscale("log", base=2)
    ax.set(title=title, xlabel="active dimensions a sentence (log scale)", ylabel="probe accuracy")
    ax.grid(alpha=0.3)
  axes[0][0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_results(args: argparse.Namespace, argv: list[str], panels: dict[str, list[dict]]) -> str:
  command = results_doc.command("sparsity_frontier.py", argv)
  name = f"{args.family}-{args.tag}" if args.tag else args.family
  figure = f"frontier_{name}.png"
  os.makedirs(args.output, exist_ok=True)
  plot(panels, os.path.join(args.output, figure))
  lines = [f"## Sparsity-accuracy frontier ({name}, {args.split} split)", "",
           "Written by `benchmarks/sparsity_frontier.py`; the command:", "", f"    {command}", "",
           f"![frontier]({figure})", "",
           "| panel | model | setting | probe | n10 | zeros | active | dims used | Jaccard | usage entropy |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for title, points in panels.items():
    for p in points:
      lines.append(f"| {title} | {p['model']} | {p['setting']} | {p['probe_accuracy']:.3f} | "
                   f"{p['probe_accuracy_n10']:.3f} | {p['zero_fraction']:.3f} | {p['active_dims']:.1f} | "
                   f"{p['dims_used']} | {p['active_jaccard']:.2f} | {p['usage_entropy']:.2f} |")
  path = os.path.join(args.output, "results.md")
  results_doc.write_section(path, f"frontier-{name}", "\n".join(lines))
  return path


def main(argv: list[str]) -> None:
  args = parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  if args.family == "minilm":
    panels = {f"{corpus} (MiniLM)": minilm_points(args, corpus) for corpus in args.corpora}
  else:
    panels = {f"{args.gru_corpus} (GRU, 32 dims)": gru_points(args)}
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, f"frontier_{args.family}_{args.split}.json"), "w") as f:
    json.dump(panels, f, indent=2, default=float)
  if args.output:
    print(write_results(args, argv, panels))


if __name__ == "__main__":
  main(sys.argv[1:])
