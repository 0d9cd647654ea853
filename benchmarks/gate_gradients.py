"""The gradients that reach HSVAE's gate heads, by loss term, over training: why the gates stop adapting.

  .venv/bin/python benchmarks/gate_gradients.py --corpus yelp --variant paper --output docs

Trains a gate_study.py variant (its sizes and corpus) and, at each of --at steps, takes one fixed batch
of training sentences and --draws posterior samples. For each loss term (the reconstruction NLL,
psi * KL_z, lambda * KL_gamma and the batch-usage KL) it differentiates the batch's summed loss with
respect to every sentence's Beta parameters a and b (the two gate heads' outputs), giving a gradient
per sentence, dimension and draw. Reported per head and term:
- `signal`: |mean over draws|, averaged over sentences and dims (what a step could follow);
- `noise`: std over draws, averaged (what the sample adds);
- `shared`: |mean over sentences and draws| per dim, averaged: the push every sentence gets alike, which
  is all that reaches a head's bias and all that Adam's per-parameter normalisation keeps of a mixed sign;
- `per_sentence`: std over sentences of the draw-mean, averaged: the part that could make gates differ;
- `open`: share of (sentence, dim) whose draw-mean gradient lowers the loss by opening the gate (raising
  b / (a + b)), measured on head b.
With --output, writes its section of OUTPUT/results.md.
"""

import argparse
import functools
import os
import sys

from absl import logging
import jax
import numpy as np

from hsvae_jax import data
from hsvae_jax import train
from hsvae_jax.hparams import HParams
from hsvae_jax.models import SentenceVAE, decoders
import gate_study
import results_doc

TERMS = ("rec_nll", "kl_z", "kl_gamma", "usage_kl")


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data-root", default="../shared/data")
  parser.add_argument("--corpus", default="yelp", choices=("dbpedia", "yahoo", "yelp"))
  parser.add_argument("--variant", default="paper", choices=tuple(gate_study.VARIANTS))
  parser.add_argument("--at", nargs="+", type=int, default=(0, 50, 100, 200, 400))
  parser.add_argument("--sentences", type=int, default=256)
  parser.add_argument("--draws", type=int, default=16)
  parser.add_argument("--workdir", default="runs/gate_gradients")
  parser.add_argument("--output", default=None)
  return parser.parse_args(argv)


@functools.partial(jax.jit, static_argnums=0)
def term_gradients(model: SentenceVAE, params, batch: dict, key: jax.Array, hparams: HParams) -> dict:
  """d(batch sum of each weighted term) / d(a, b) of every sentence: {term: {'a', 'b': [B, Z]}}, and the gates."""
  posterior = model.apply({"params": params}, batch, method=SentenceVAE.encode)
  project = functools.partial(model.apply, {"params": params}, method=SentenceVAE.project)
  weights = {"rec_nll": 1.0, "kl_z": hparams.z_reg_weight, "kl_gamma": hparams.gamma_reg_weight, "usage_kl": 1.0}

  def term(name, gates):
    gated = posterior.replace(a_BxZ=gates["a"], b_BxZ=gates["b"])
    sample = model.latent.sample(gated, key, hparams.temperature)
    if name == "rec_nll":
      states = model.apply({"params": params}, batch, sample.z_BxZ, method=SentenceVAE.decode)
      return decoders.sequence_nll(project, states, batch["tokens"], batch["lengths"]).sum()
    if name == "usage_kl":  # a batch term, carried by every sentence: its batch sum is B times it
      return model.latent.extra_loss(gated, sample, hparams)["usage_kl"].sum()
    kl_z, kl_gamma = model.latent.kl(gated, sample, hparams)
    return weights[name] * (kl_z if name == "kl_z" else kl_gamma).sum()

  gates = {"a": posterior.a_BxZ, "b": posterior.b_BxZ}
  grads = {name: jax.grad(functools.partial(term, name))(gates) for name in TERMS}
  return grads | {"slab_prob": model.latent.codes(posterior).slab_prob_BxZ}


def measure(model, params, batch, hparams, draws: int, seed: int) -> dict:
  per_draw = [jax.device_get(term_gradients(model, params, batch, jax.random.key(seed * 1000 + k), hparams))
              for k in range(draws)]
  rows = {"slab_prob": float(per_draw[0]["slab_prob"].mean()),
          "gate_std": float(per_draw[0]["slab_prob"].std(0).mean())}
  for name in TERMS:
    for head in ("a", "b"):
      g_DxBxZ = np.stack([d[name][head] for d in per_draw])
      mean_BxZ = g_DxBxZ.mean(0)
      rows[f"{name}.{head}"] = {
          "signal": float(np.abs(mean_BxZ).mean()),
          "noise": float(g_DxBxZ.std(0).mean()),
          "shared": float(np.abs(g_DxBxZ.mean((0, 1))).mean()),
          "per_sentence": float(mean_BxZ.std(0).mean()),
          # d p / d b = a / (a + b)^2 > 0: a negative gradient on b means opening lowers the loss
          "open": float((mean_BxZ < 0).mean()) if head == "b" else float("nan"),
      }
  return rows


def fixed_batch(run, sentences: list[str], config, count: int) -> dict:
  token_ids = run.vocab.encode_all(sentences[:count], config.data.max_length)
  batch = next(data.eval_batches(token_ids, count, config.data.length_buckets))
  return {"tokens": batch["tokens"], "lengths": batch["lengths"]}


def study(args: argparse.Namespace) -> dict:
  study_args = gate_study.parse_args(["--data-root", args.data_root, "--corpus", args.corpus])
  config = gate_study.variant_config(study_args, gate_study.VARIANTS[args.variant][0])
  config.train.num_steps = max(args.at)
  workdir = os.path.join(args.workdir, f"{args.corpus}_{args.variant}")
  run = train.prepare_run(config, workdir)
  corpus = data.load_corpus(config.data)
  batch = fixed_batch(run, corpus.sentences["train"], config, args.sentences)
  hparams = HParams.from_config(config)
  state = train.init_state(run)
  step_key = train.base_key(config)
  results = {}
  for step in range(max(args.at) + 1):
    if step in args.at:
      results[step] = measure(run.model, state.params, batch, hparams, args.draws, step)
      print(step, {k: v for k, v in results[step].items() if not isinstance(v, dict)}, flush=True)
    if step < max(args.at):
      state, _ = train.train_step(state, next(run.batches), step_key, hparams)
  return results


def write_results(args: argparse.Namespace, argv: list[str], results: dict) -> str:
  command = results_doc.command("gate_gradients.py", argv)
  lines = [f"## Gradients reaching the gate heads ({args.corpus}, variant `{args.variant}`)", "",
           "Written by `benchmarks/gate_gradients.py`; the command:", "", f"    {command}", "",
           f"{args.sentences} training sentences, {args.draws} posterior draws at each step. Gradients of the "
           "batch's summed, weighted term with respect to each sentence's Beta parameters; columns as in the "
           "script's docstring. `slab` is the mean slab probability of the codes, `gate std` its std over "
           "sentences.", "",
           "| step | slab | gate std | term | head | signal | noise | shared | per sentence | open |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for step, rows in results.items():
    for name in TERMS:
      for head in ("a", "b"):
        r = rows[f"{name}.{head}"]
        if r["signal"] == 0 and r["noise"] == 0:
          continue
        opened = "" if head == "a" else f"{r['open']:.2f}"
        lines.append(f"| {step} | {rows['slab_prob']:.3f} | {rows['gate_std']:.3f} | {name} | {head} | "
                     f"{r['signal']:.2e} | {r['noise']:.2e} | {r['shared']:.2e} | {r['per_sentence']:.2e} | {opened} |")
  path = os.path.join(args.output, "results.md")
  results_doc.write_section(path, f"gate-gradients-{args.corpus}-{args.variant}", "\n".join(lines))
  return path


def main(argv: list[str]) -> None:
  args = parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  results = study(args)
  if args.output:
    print(write_results(args, argv, results))


if __name__ == "__main__":
  main(sys.argv[1:])
