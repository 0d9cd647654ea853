"""What moves HSVAE's codes at the replication's CPU budget: named changes, each beside the Gaussian VAE.

  .venv/bin/python benchmarks/hsvae_study.py --data-root ../shared/data --workdir runs/replication --output docs

At 600 steps HSVAE's posterior spike probabilities stay near the prior's 0.8, so its codes are almost
empty (docs/results.md, replication). Each variant below changes the replication's config; it trains
HSVAE at --latent-dim dims on each corpus (and the Gaussian VAE at the same step count, as the
reference the targets use), evaluates on --split with probes (tune on valid, report test once), and writes
the "hsvae-study-<dims>[-valid]" section of OUTPUT/results.md. Runs share --workdir with replicate_paper.py: the
unchanged variant is the replication's own run, and finished runs are not trained again.
"""

import argparse
import os
import shlex
import sys

from absl import logging

import budget
import replicate_paper
import results_doc

# The default recipe's gates and sparsity terms, at a quarter of the dims asked for.
MEAN_FIELD = {"model.gate": "mean_field", "hparams.usage_weight": 1.0, "hparams.gate_entropy_weight": 0.1,
              "hparams.target_active": 0.25}
# The same for 4x the replication's steps, its sparsity terms warming up.
MEAN_FIELD_LONG = MEAN_FIELD | {"hparams.warmup_steps": 1000, "train.num_steps": 2400}
# name -> (config overrides, what the change tests)
VARIANTS = {
    "replication": ({}, "the replication's config: alpha 4, beta 1, psi = lambda = 0.01, 600 steps."),
    "lambda0": ({"hparams.gamma_reg_weight": 0.0}, "no KL on gamma. Do the gates open without the prior's pull?"),
    "lambda0.001": ({"hparams.gamma_reg_weight": 0.001}, "a tenth of the prior's pull."),
    "steps2400": ({"train.num_steps": 2400}, "4x the steps."),
    "lambda0.001_steps2400": ({"hparams.gamma_reg_weight": 0.001, "train.num_steps": 2400}, "both."),
    "adaptive": (MEAN_FIELD | {"model.gate": "evidence"},
                 "the adaptive recipe (docs/results.md, gate study): evidence gates, batch-usage KL, gate entropy."),
    "evidence": ({"model.gate": "evidence"}, "evidence gates alone, the paper's prior and KLs."),
    "adaptive_per_dim": (MEAN_FIELD | {"model.gate": "evidence", "hparams.usage_weight": 0.04,
                                       "hparams.gate_entropy_weight": 0.004},
                         "the recipe with its usage and entropy weights scaled by 32/768, as much per sentence as at 32 dims."),
    "mean_field": (MEAN_FIELD,
                   "the recipe with mean-field gates: Bayes' rule at the expected log-odds, no gamma sampled."),
    "mean_field_evidence": ({"model.gate": "mean_field", "hparams.gate_entropy_weight": 0.1,
                             "hparams.target_active": 0.25},
                            "mean-field gates without the batch-usage KL: each gate opens on the message's evidence."),
    "mean_field_per_dim": (MEAN_FIELD | {"hparams.usage_weight": 0.0417, "hparams.gate_entropy_weight": 0.00417},
                           "mean-field gates with the usage and entropy weights scaled by 32/768."),
    "mean_field_no_entropy": (MEAN_FIELD | {"hparams.usage_weight": 0.0417, "hparams.gate_entropy_weight": 0.0},
                              "mean-field gates, usage weight scaled by 32/768, no gate entropy."),
    "mean_field_long": (MEAN_FIELD_LONG,
                        "the mean-field recipe for 4x the steps (2400), its sparsity terms rising over the first 1000."),
    "mean_field_9600": (MEAN_FIELD_LONG | {"train.num_steps": 9600},
                        "mean_field_long for 16x the replication's steps (9600): does the gap keep closing with "
                        "budget?"),
    "mean_field_9600_entropy0.05": (MEAN_FIELD_LONG | {"train.num_steps": 9600, "hparams.gate_entropy_weight": 0.05},
                                    "mean_field_9600 with the entropy charge chosen at 2400 steps on dbpedia valid."),
    "mean_field_long_mix": (MEAN_FIELD_LONG | {"hparams.usage_weight": 0.3, "hparams.code_usage_weight": 1.0},
                            "mean_field_long with the usage KLs mixed as over MiniLM (per dim 0.3, per code 1): "
                            "may dimensions differ in how often they are used?"),
    **{f"mean_field_long_entropy{weight:g}": (
        MEAN_FIELD_LONG | {"hparams.gate_entropy_weight": weight},
        f"mean_field_long with the gates' entropy charge at {weight:g} a dim instead of 0.1: what it costs over "
        "768 dims.") for weight in (0.0, 0.01, 0.03, 0.05, 0.07)},
    **{f"mean_field_long_entropy0_target{share:g}": (
        MEAN_FIELD_LONG | {"hparams.gate_entropy_weight": 0.0, "hparams.target_active": share},
        f"no entropy charge, the prior's slab share {share:g}: where do undecided gates round?")
       for share in (0.4, 0.45, 0.5)},
}
CHECKPOINT_EVERY = 400
# How an override reads in a workdir's name.
SHORT_NAMES = {"hparams.gamma_reg_weight": "lambda", "train.num_steps": "steps", "model.gate": "gate",
               "hparams.usage_weight": "usage", "hparams.code_usage_weight": "codeusage",
               "hparams.gate_entropy_weight": "entropy", "hparams.target_active": "target",
               "hparams.warmup_steps": "warmup"}


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data-root", default="../shared/data")
  parser.add_argument("--workdir", default="runs/replication", help="replicate_paper.py's, to reuse its runs")
  parser.add_argument("--output", default="docs")
  parser.add_argument("--corpora", nargs="+", default=("dbpedia", "yahoo"), choices=replicate_paper.CORPORA)
  parser.add_argument("--variants", nargs="+", default=tuple(VARIANTS), choices=tuple(VARIANTS))
  parser.add_argument("--latent-dim", type=int, default=32)
  parser.add_argument("--split", default="test", choices=("valid", "test"), help="tune on valid, report test once")
  parser.add_argument("--latents", nargs="+", default=("gaussian", "hsvae"), choices=("gaussian", "hsvae"),
                      help="leave out gaussian to reuse the replication's reported numbers instead of rerunning it")
  parser.add_argument("--section", help="the section of OUTPUT/results.md to write (default: "
                      "hsvae-study-<dims>, -valid appended for the valid split)")
  return parser.parse_args(argv)


def variant_config(args: argparse.Namespace, corpus: str, latent: str, overrides: dict):
  # The replication's budget flags at their defaults, so its runs are reused as they are.
  budget_args = replicate_paper.parse_args(["--data-root", args.data_root, "--workdir", args.workdir])
  config = budget.apply_overrides(replicate_paper.run_config(budget_args, corpus, latent, args.latent_dim), overrides)
  # Long runs may be stopped and resumed; checkpoints do not change what a run computes.
  config.train.checkpoint_every = min(config.train.num_steps, CHECKPOINT_EVERY)
  return config


def workdir_for(args: argparse.Namespace, corpus: str, latent: str, overrides: dict) -> str:
  # Named by the overrides alone: an unchanged run is the replication's own, and variants that change
  # only HSVAE's weights share one Gaussian run.
  suffix = "".join(f"_{SHORT_NAMES[key]}{value:g}" if isinstance(value, float) else f"_{SHORT_NAMES[key]}{value}"
                   for key, value in sorted(overrides.items()))
  return os.path.join(args.workdir, f"{corpus}_{latent}{args.latent_dim}{suffix}")


def study(args: argparse.Namespace) -> dict:
  results = {}
  for corpus in args.corpora:
    for name in args.variants:
      overrides, _ = VARIANTS[name]
      steps_only = {k: v for k, v in overrides.items() if k.startswith("train.")}
      for latent, latent_overrides in (("gaussian", steps_only), ("hsvae", overrides)):
        if latent not in args.latents:
          continue
        workdir = workdir_for(args, corpus, latent, latent_overrides)
        print(f"{corpus} {name} {latent}: {workdir}", file=sys.stderr, flush=True)
        result, wall = budget.train_and_test(variant_config(args, corpus, latent, latent_overrides), workdir,
                                              args.split)
        results.setdefault(corpus, {}).setdefault(name, {})[latent] = result | wall
  return results


def _target(latent_dim: int) -> str:
  gap = replicate_paper.TARGET_PROBE_GAP.get(latent_dim)
  if gap is None:
    return "The issue sets no target at this size."
  zeros = (f" with at least {replicate_paper.TARGET_ZERO_FRACTION_768:.0%} exact zeros"
           if latent_dim == 768 else "")
  return f"The target at {latent_dim} dims: a gap of at most {gap * 100:.0f} point(s){zeros}."


def write_results(args: argparse.Namespace, argv: list[str], results: dict) -> str:
  command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/hsvae_study.py", *argv])
  lines = [
      f"## What moves HSVAE's codes at the replication's budget ({args.latent_dim} dims, "
      f"{', '.join(args.corpora)}, {args.split} split)", "",
      "Written by `benchmarks/hsvae_study.py`; the command:", "", f"    {command}", "",
      "Each variant changes the replication's config (its budget above) as listed. `gap` is the "
      "Gaussian VAE's probe accuracy minus HSVAE's, at the same number of steps. " + _target(args.latent_dim), "",
      *[f"- `{name}`: {', '.join(f'{k}={v}' for k, v in VARIANTS[name][0].items()) or 'no change'}: "
        f"{VARIANTS[name][1]}" for name in args.variants], "",
      "| corpus | variant | HSVAE probe | probe mu | n10 | zeros | active | Jaccard | gate std | Gaussian probe | "
      "gap (points) | Gaussian n10 | wall s (HSVAE train + eval) |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for corpus, by_variant in results.items():
    for name, runs in by_variant.items():
      if "hsvae" not in runs:  # --latents gaussian: its runs are kept for a later table
        continue
      hsvae, dense = runs["hsvae"], runs.get("gaussian")
      reference = (f"{dense['probe_accuracy']:.3f} | {(dense['probe_accuracy'] - hsvae['probe_accuracy']) * 100:+.1f} | "
                   f"{dense['probe_accuracy_n10']:.3f}" if dense else "not rerun: see the replication | | ")
      lines.append(
          f"| {corpus} | {name} | {hsvae['probe_accuracy']:.3f} | {hsvae['probe_accuracy_mu']:.3f} | "
          f"{hsvae['probe_accuracy_n10']:.3f} | {hsvae['zero_fraction']:.3f} | {hsvae['active_dims']:.1f} | "
          f"{hsvae['active_jaccard']:.2f} | {hsvae['gate_std']:.3f} | "
          f"{reference} | {hsvae['train_s']:.0f} + {hsvae['eval_s']:.0f} |")
  path = os.path.join(args.output, replicate_paper.RESULTS_FILE)
  section = args.section or f"hsvae-study-{args.latent_dim}" + ("-valid" if args.split == "valid" else "")
  results_doc.write_section(path, section, "\n".join(lines))
  return path


def main(argv: list[str]) -> None:
  args = parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  print(write_results(args, argv, study(args)))


if __name__ == "__main__":
  main(sys.argv[1:])
