"""Peak memory of encoding and probing a 100,000-sentence split (`hsvae evaluate --split train --probe`).

  .venv/bin/python benchmarks/encode_memory.py [--sentences 100000] [--latent-dim 768]

Trains a small HSVAE on the synthetic corpus for a few steps, then evaluates its training split of
--sentences sentences with probes. Prints one JSON line: the most bytes of live device arrays after
any evaluation batch, the bytes of the split's dense codes for comparison, and the process's peak RSS.
"""

import argparse
import json
import resource
import sys
import tempfile
import time

import jax

from hsvae_jax import default_config
from hsvae_jax import evaluate
from hsvae_jax import train


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sentences", type=int, default=100_000, help="in the training split")
  parser.add_argument("--latent-dim", type=int, default=768)
  parser.add_argument("--eval-batch-size", type=int, default=256)
  args = parser.parse_args(argv)

  config = default_config.get_config()
  config.data.synthetic.num_sentences = round(args.sentences / 0.8)  # valid and test take 10% each
  config.model.latent_dim = args.latent_dim
  config.model.embed_dim, config.model.hidden_dim = 64, 128
  config.train.num_steps = config.train.checkpoint_every = 20
  config.train.batch_size = 64
  config.eval.batch_size = args.eval_batch_size

  live_device_bytes = []
  eval_step = evaluate.eval_step

  def measured_step(*step_args):
    out = jax.block_until_ready(eval_step(*step_args))
    live_device_bytes.append(sum(x.nbytes for x in jax.live_arrays()))
    return out

  evaluate.eval_step = measured_step
  with tempfile.TemporaryDirectory() as workdir:
    train.train_and_evaluate(config, workdir)
    start = time.perf_counter()
    result = evaluate.evaluate(workdir, "train", probe=True)
  print(json.dumps({
      "sentences": result["num_sentences"],
      "latent_dim": args.latent_dim,
      "eval_batch_size": args.eval_batch_size,
      "evaluate_s": round(time.perf_counter() - start, 1),
      "peak_live_device_bytes": max(live_device_bytes),
      "dense_codes_bytes": result["num_sentences"] * args.latent_dim * 4,
      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      "probe_accuracy": result["probe_accuracy"],
  }))


if __name__ == "__main__":
  main(sys.argv[1:])
