"""Why HSVAE's gates do not adapt to the sentence, and what makes them: named variants on one corpus.

  .venv/bin/python benchmarks/gate_study.py --corpus yelp --split valid --variants paper gaussian evidence
  .venv/bin/python benchmarks/gate_study.py --corpus yelp --split test --output docs   # once, at the end

Every variant is the quickstart's sizes (embedding 64, GRU 128, 32 latent dims, batch 64, Adam 2e-3) on a
corpus of ../shared/data carved 80/10/10 into train/valid/test, trained for --steps. Each run is
evaluated on --split with linear probes trained on the train split's codes; tune on valid, report test once.
Results go to WORKDIR/<variant>/eval_<split>.json and, with --output, to a section of OUTPUT/results.md.
"""

import argparse
import json
import os
import sys

from absl import logging

from hsvae_jax import default_config
import budget
import results_doc

CONFIGS_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "hsvae_jax", "configs")
# name -> (config overrides, what the variant tests)
VARIANTS = {
    "gaussian": ({"model.latent": "gaussian"}, "the Gaussian VAE: the accuracy to keep."),
    "paper": ({}, "the paper's HSVAE: Beta gates from the encoder state, per-sentence KL_gamma."),
    "lambda0": ({"hparams.gamma_reg_weight": 0.0}, "no KL_gamma: do the gates open, and adapt, without it?"),
    "usage": ({"hparams.gamma_reg_weight": 0.0, "hparams.usage_weight": 1.0},
              "the paper's gates, KL_gamma replaced by a KL on each dimension's use over the batch."),
    "evidence": ({"model.gate": "evidence"}, "gates from Bayes' rule on the encoder's message, paper's KLs."),
    "evidence_usage": ({"model.gate": "evidence", "hparams.usage_weight": 1.0},
                       "evidence gates and the batch-usage KL beside the paper's KLs."),
    "evidence_c50": ({"model.gate": "evidence", "hparams.alpha": 40.0, "hparams.beta": 10.0},
                     "evidence gates under a concentrated prior of the same mean: gamma barely varies."),
    "evidence_c50_usage": ({"model.gate": "evidence", "hparams.alpha": 40.0, "hparams.beta": 10.0,
                            "hparams.usage_weight": 1.0}, "both, and the batch-usage KL."),
    "evidence_decided": ({"model.gate": "evidence", "hparams.usage_weight": 1.0, "hparams.gate_entropy_weight": 1.0},
                         "evidence gates, batch-usage KL and a charge for undecided gates."),
    "evidence_c50_decided": ({"model.gate": "evidence", "hparams.alpha": 40.0, "hparams.beta": 10.0,
                              "hparams.usage_weight": 1.0, "hparams.gate_entropy_weight": 1.0},
                             "the same under the concentrated prior."),
    "evidence_warmup": ({"model.gate": "evidence", "hparams.warmup_steps": 200},
                        "evidence gates, KL_gamma rising from 0 over the first 200 steps."),
    "recipe": ({"model.gate": "evidence", "hparams.usage_weight": 1.0, "hparams.gate_entropy_weight": 0.1,
                "hparams.target_active": 0.5},
               "the default recipe as the quickstart config ships it (evidence gates, usage KL, gate entropy, knob 0.5)."),
    "mean_field": ({"model.gate": "mean_field", "hparams.usage_weight": 1.0, "hparams.gate_entropy_weight": 0.1,
                    "hparams.target_active": 0.5},
                   "the recipe with mean-field gates: Bayes' rule at the expected log-odds, no gamma sampled."),
    "mean_field_usage": ({"model.gate": "mean_field", "hparams.usage_weight": 1.0, "hparams.target_active": 0.5},
                         "mean-field gates and the batch-usage KL, no charge for undecided gates."),
    "decided": ({"hparams.usage_weight": 1.0, "hparams.gate_entropy_weight": 1.0, "hparams.gamma_reg_weight": 0.0},
                "the paper's gates, KL_gamma replaced by the batch-usage KL and the charge for undecided gates."),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data-root", default="../shared/data")
  parser.add_argument("--corpus", default="yelp", choices=("dbpedia", "yahoo", "yelp"))
  parser.add_argument("--workdir", default="runs/gate_study")
  parser.add_argument("--split", default="valid", choices=("valid", "test"))
  parser.add_argument("--variants", nargs="*", default=tuple(VARIANTS), help="none: only write the table")
  parser.add_argument("--set", nargs="*", default=(), metavar="KEY=VALUE",
                      help="extra overrides for every variant except gaussian, e.g. hparams.target_active=0.3")
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--latent-dim", type=int, default=32)
  parser.add_argument("--checkpoint-every", type=int, default=0, help="0: at the end only")
  parser.add_argument("--output", default=None, help="write a section of OUTPUT/results.md")
  return parser.parse_args(argv)


def parse_value(text: str):
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  return text


def variant_config(args: argparse.Namespace, overrides: dict):
  # Variants are changes to the paper's model at the quickstart's sizes.
  config = default_config.use_paper_model(default_config.from_file(os.path.join(CONFIGS_DIR, "quickstart.py")))
  config.data.name = args.corpus
  config.data.dir = os.path.join(args.data_root, args.corpus)
  config.data.max_length = 16 if args.corpus == "yelp" else 32
  config.data.length_buckets = (8, 12, 16) if args.corpus == "yelp" else (12, 20, 32)
  config.model.latent_dim = args.latent_dim
  config.train.num_steps = args.steps
  config.train.checkpoint_every = args.checkpoint_every or args.steps
  config.eval.batch_size = 512
  return budget.apply_overrides(config, overrides)


def run_name(args: argparse.Namespace, name: str) -> str:
  extra = "".join(f"_{s.split('=')[0].split('.')[-1]}{s.split('=')[1]}" for s in args.set) if name != "gaussian" else ""
  return f"{args.corpus}{args.latent_dim}_{args.steps}_{name}{extra}"


def summary(name: str, r: dict) -> str:
  return (f"{name:40s} probe {r['probe_accuracy']:.3f} mu {r['probe_accuracy_mu']:.3f} n10 {r['probe_accuracy_n10']:.3f} "
          f"zeros {r['zero_fraction']:.2f} active {r['active_dims']:.1f} used {r['dims_used']} "
          f"jaccard {r['active_jaccard']:.2f} entropy {r['usage_entropy']:.2f} gate_std {r.get('gate_std', 0):.3f} "
          f"rec {r['rec_nll']:.1f}")


def write_results(args: argparse.Namespace, argv: list[str]) -> str:
  """A table of every finished run under --workdir on --split: this invocation's and earlier ones'."""
  command = results_doc.command("gate_study.py", argv)
  lines = [f"## Gate study: every run under {args.workdir} ({args.split} split)", "",
           "Written by `benchmarks/gate_study.py` (runs accumulate over invocations); the last command:", "",
           f"    {command}", "",
           *[f"- `{name}`: {', '.join(f'{k}={v}' for k, v in overrides.items()) or 'no change'}: {why}"
             for name, (overrides, why) in VARIANTS.items()], "",
           "Run names are `<corpus><dims>_<steps>_<variant>[_<extra override><value>]`.", "",
           "| run | probe | probe mu | n10 | zeros | active | dims used | Jaccard | usage entropy | gate std | rec_nll |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for name in sorted(os.listdir(args.workdir)):
    path = os.path.join(args.workdir, name, f"eval_{args.split}.json")
    if not os.path.exists(path):
      continue
    with open(path) as f:
      r = json.load(f)
    lines.append(f"| {name} | {r['probe_accuracy']:.3f} | {r['probe_accuracy_mu']:.3f} | {r['probe_accuracy_n10']:.3f} | "
                 f"{r['zero_fraction']:.2f} | {r['active_dims']:.1f} | {r['dims_used']} | {r['active_jaccard']:.2f} | "
                 f"{r['usage_entropy']:.2f} | {r.get('gate_std', 0):.3f} | {r['rec_nll']:.1f} |")
  path = os.path.join(args.output, "results.md")
  results_doc.write_section(path, f"gate-study-{args.split}", "\n".join(lines))
  return path


def main(argv: list[str]) -> None:
  args = parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  extra = {s.split("=")[0]: parse_value(s.split("=")[1]) for s in args.set}
  results = {}
  for name in args.variants:
    overrides = VARIANTS[name][0] | (extra if name != "gaussian" else {})
    workdir = os.path.join(args.workdir, run_name(args, name))
    results[name], _ = budget.train_and_test(variant_config(args, overrides), workdir, args.split)
    print(summary(run_name(args, name), results[name]), flush=True)
  if args.output:
    print(write_results(args, argv))


if __name__ == "__main__":
  main(sys.argv[1:])
