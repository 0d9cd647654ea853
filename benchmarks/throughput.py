"""Train-step throughput at the paper's sizes: hsvae-jax against the same model written in PyTorch.

  .venv/bin/pip install -e '.[bench]'  # torch, optional: without it the PyTorch fields are null
  .venv/bin/python benchmarks/throughput.py [--json] [--quick] [--no-torch]

One process measures the project's jitted train step (HSVAE latent, default hyperparameters), the same
architecture and loss in PyTorch, the step's FLOPs (counted from the shapes) against a large float32
matmul timed in JAX (and in PyTorch, beside PyTorch's own FLOP rate: both steps are mostly matmuls, so
the two libraries' matmul speeds bound jax_over_torch), a step of an 8-member sweep against one run's
step, and eval_step's throughput.
Steps that are compared run interleaved, one of each per round, so a change in the machine's load
touches all of them alike; every time reported is a median over rounds, compile excluded.
"""

import argparse
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hsvae_jax import default_config
from hsvae_jax import evaluate
from hsvae_jax import sweep
from hsvae_jax import train
from hsvae_jax.data.tokenizer import EOS, PAD
from hsvae_jax.hparams import HParams
from hsvae_jax.models import decoders, make_model

try:
  import torch
except ImportError:  # the optional `bench` extra
  torch = None


@dataclasses.dataclass(frozen=True)
class Sizes:
  batch_size: int
  length: int
  vocab_size: int
  embed_dim: int
  hidden_dim: int
  latent_dim: int


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
  parser.add_argument("--quick", action="store_true", help="fewer rounds: under 3 minutes on 2 CPU cores")
  parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch model")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="model.dtype and the peak matmul's type (bfloat16 for GPU/TPU); PyTorch runs float32 only")
  parser.add_argument("--token-capacity", type=float, default=default_config.get_config().model.token_capacity,
                      help="model.token_capacity: 1.0 projects every token row, padding included")
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--length", type=int, default=40, help="tokens per sentence, padding included")
  parser.add_argument("--vocab-size", type=int, default=20_000)
  parser.add_argument("--embed-dim", type=int, default=256)
  parser.add_argument("--hidden-dim", type=int, default=512)
  parser.add_argument("--latent-dim", type=int, default=32, help="the paper reports 32 and 768")
  parser.add_argument("--sweep-members", type=int, default=8)
  parser.add_argument("--encode-batch-size", type=int, default=256)
  parser.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n x n peak matmul")
  parser.add_argument("--matmul-repeats", type=int, default=8, help="peak matmuls timed together per round")
  parser.add_argument("--rounds", type=int, help="timed rounds (default 10, --quick 3)")
  parser.add_argument("--warmup", type=int,
                      help="untimed rounds first (default 2, --quick 0: the median of 3 drops a slow first round)")
  args = parser.parse_args(argv)
  if args.rounds is None:
    args.rounds = 3 if args.quick else 10
  if args.warmup is None:
    args.warmup = 0 if args.quick else 2
  return args


def log(message: str) -> None:
  # Progress goes to stderr, so stdout holds only the results (one line with --json).
  print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def synthetic_batch(sizes: Sizes, batch_size: int, seed: int) -> dict[str, np.ndarray]:
  """Random word ids, sentences of half to full length ending in <EOS>, post-padded."""
  rng = np.random.default_rng(seed)
  lengths_B = rng.integers(sizes.length // 2, sizes.length + 1, batch_size).astype(np.int32)
  tokens_BxL = rng.integers(EOS + 2, sizes.vocab_size, (batch_size, sizes.length)).astype(np.int32)
  positions_BxL = np.arange(sizes.length)[None, :]
  tokens_BxL[positions_BxL == lengths_B[:, None] - 1] = EOS
  tokens_BxL[positions_BxL >= lengths_B[:, None]] = PAD
  return {"tokens": tokens_BxL, "lengths": lengths_B}


def train_step_flops(sizes: Sizes, projected_rows: int) -> int:
  """2 x multiply-adds of the forward pass's matmuls, x3 for forward and backward.

  projected_rows: the token rows the vocabulary projection runs on. Embedding lookups and elementwise
  work are not counted; the backward pass of each matmul is two matmuls of the same size (gradients of
  its input and of its weights).
  """
  tokens = sizes.batch_size * sizes.length
  gates = 3 * sizes.hidden_dim
  multiply_adds = (
      tokens * sizes.embed_dim * gates  # encoder input projection
      + tokens * sizes.hidden_dim * gates  # encoder recurrence
      + sizes.batch_size * sizes.hidden_dim * 4 * sizes.latent_dim  # mu, sigma, a and b heads
      + tokens * (sizes.embed_dim + sizes.latent_dim) * gates  # decoder input projection
      + tokens * sizes.hidden_dim * gates  # decoder recurrence
      + projected_rows * sizes.hidden_dim * sizes.vocab_size)  # vocabulary projection
  return 3 * 2 * multiply_adds


def jax_projected_rows(batch: dict[str, np.ndarray], token_capacity: float) -> int:
  """The rows decoders.sequence_nll projects on one device: the packed capacity when the real tokens fit."""
  rows = batch["tokens"].size
  capacity = decoders.packed_rows(rows, token_capacity)
  return capacity if capacity < rows and batch["lengths"].sum() <= capacity else rows


def interleaved_medians(steps: dict[str, Callable[[], None]], rounds: int, warmup: int) -> dict[str, float]:
  """Median seconds of each blocking callable, run one after another in every round."""
  for _ in range(warmup):
    for step in steps.values():
      step()
  seconds = {name: [] for name in steps}
  for _ in range(rounds):
    for name, step in steps.items():
      start = time.perf_counter()
      step()
      seconds[name].append(time.perf_counter() - start)
  return {name: statistics.median(times) for name, times in seconds.items()}


def timed_compile(jitted, *args):
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


def stateful_step(compiled, state, *args) -> Callable[[], None]:
  """A blocking callable that advances state by one compiled step; the state buffers are donated."""

  def step():
    nonlocal state
    state, metrics = compiled(state, *args)
    jax.block_until_ready((state, metrics))

  return step


def matmul_step(size: int, repeats: int, dtype: str) -> Callable[[], None]:
  """Blocks on `repeats` back-to-back n x n matmuls: near a step's length, so load swings hit both alike."""
  a_NxN, b_NxN = jax.random.normal(jax.random.key(0), (2, size, size), dtype)
  matmul = jax.jit(jnp.matmul).lower(a_NxN, b_NxN).compile()
  return lambda: jax.block_until_ready([matmul(a_NxN, b_NxN) for _ in range(repeats)])


def torch_matmul_step(size: int, repeats: int) -> Callable[[], None]:
  """matmul_step in PyTorch (float32): whose matmul library is faster on this machine bounds jax_over_torch."""
  a_NxN, b_NxN = torch.randn(2, size, size)
  return lambda: [a_NxN @ b_NxN for _ in range(repeats)]


def torch_train_step(sizes: Sizes, batch: dict[str, np.ndarray], config, packed: bool) -> Callable[[], None]:
  """The same model, loss and optimiser as hsvae-jax in PyTorch: one blocking Adam step.

  Its four latent heads are one Linear(H, 4Z) split in four: the same maths as four layers. packed:
  the vocabulary projection runs on the real tokens only (a boolean-mask gather), as hsvae-jax's does.
  """
  nn, functional = torch.nn, torch.nn.functional
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  latent_dim, hidden_dim = sizes.latent_dim, sizes.hidden_dim
  modules = nn.ModuleDict({
      "embed": nn.Embedding(sizes.vocab_size, sizes.embed_dim),
      "encoder": nn.GRU(sizes.embed_dim, hidden_dim),
      "heads": nn.Linear(hidden_dim, 4 * latent_dim),
      "decoder": nn.GRU(sizes.embed_dim + latent_dim, hidden_dim),
      "vocab": nn.Linear(hidden_dim, sizes.vocab_size),
  })
  optimizer = torch.optim.Adam(modules.parameters(), lr=config.train.learning_rate)
  hp, model_config = config.hparams, config.model
  tokens_LxB = torch.from_numpy(batch["tokens"]).long().T.contiguous()
  lengths_B = torch.from_numpy(batch["lengths"]).long()
  length, batch_size = tokens_LxB.shape
  real_LxB = (torch.arange(length)[:, None] < lengths_B[None, :]).float()
  previous_LxB = torch.cat([torch.full((1, batch_size), EOS), tokens_LxB[:-1]])
  beta_prior = torch.distributions.Beta(torch.tensor(hp.alpha), torch.tensor(hp.beta))
  eps = 1e-5

  def positive(x):
    return functional.softplus(x) + eps

  def straight_through_clip(x, low, high):
    return x + (x.clamp(low, high) - x).detach()

  def spike_slab_log_prob(z, spike_prob, loc, scale):
    log_w_spike, log_w_slab = torch.log_softmax(
        torch.stack([torch.log(spike_prob + eps), torch.log(1.0 - spike_prob + eps)]), 0)
    spike = torch.distributions.Normal(0.0, model_config.spike_scale).log_prob(z)
    slab = torch.distributions.Normal(loc, scale).log_prob(z)
    return torch.logaddexp(log_w_spike + spike, log_w_slab + slab)

  def loss():
    h_LxBxH, _ = modules["encoder"](modules["embed"](tokens_LxB))
    h_BxH = h_LxBxH[lengths_B - 1, torch.arange(batch_size)]
    mu, sigma, a, b = modules["heads"](h_BxH).chunk(4, dim=-1)
    sigma = positive(sigma)
    q_gamma = torch.distributions.Beta(straight_through_clip(positive(a), 0.5, 100.0),
                                       straight_through_clip(positive(b), 0.5, 100.0))
    gamma = q_gamma.rsample()
    # Binary-concrete spike indicator, hardened at 0.5 with a straight-through gradient.
    u = torch.rand_like(gamma).clamp_min(torch.finfo(gamma.dtype).tiny)
    spike_logit = torch.log(gamma + eps) - torch.log(1.0 - gamma + eps)
    soft = torch.sigmoid((spike_logit + torch.log(u) - torch.log1p(-u)) / hp.temperature)
    spike = (soft > 0.5).float() + soft - soft.detach()
    z = (spike * model_config.spike_scale * torch.randn_like(mu)
         + (1.0 - spike) * (mu + sigma * torch.randn_like(mu)))
    kl_z_B = (spike_slab_log_prob(z, gamma, mu, sigma)
              - spike_slab_log_prob(z, gamma, 0.0, model_config.slab_scale)).sum(-1)
    kl_gamma_B = torch.distributions.kl_divergence(q_gamma, beta_prior).sum(-1)
    decoder_in = torch.cat([modules["embed"](previous_LxB), z.expand(length, -1, -1)], dim=-1)
    h_LxBxH, _ = modules["decoder"](decoder_in)
    if packed:
      real = real_LxB.bool()
      rec_nll = functional.cross_entropy(modules["vocab"](h_LxBxH[real]), tokens_LxB[real], reduction="sum")
    else:
      logits_LBxV = modules["vocab"](h_LxBxH.reshape(length * batch_size, hidden_dim))
      nll_LxB = functional.cross_entropy(logits_LBxV, tokens_LxB.reshape(-1), reduction="none").view(length, -1)
      rec_nll = (nll_LxB * real_LxB).sum()
    # The batch mean of each sentence's summed NLL + the weighted KLs.
    return (rec_nll + (hp.z_reg_weight * kl_z_B + hp.gamma_reg_weight * kl_gamma_B).sum()) / batch_size

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss().backward()
    optimizer.step()

  return step


def time_train_step(args: argparse.Namespace, sizes: Sizes, config, init, hparams: HParams,
                    batch: dict[str, np.ndarray]) -> tuple[dict, Callable]:
  """JAX's step beside PyTorch's and the peak matmul; also returns the compiled JAX step."""
  log("compiling the train step")
  key, device_batch = jax.random.key(0), jax.tree.map(jnp.asarray, batch)
  state = init(key)
  compiled_step, compile_s = timed_compile(train.train_step, state, device_batch, key, hparams)
  steps = {"matmul": matmul_step(args.matmul_size, args.matmul_repeats, args.dtype),
           "jax": stateful_step(compiled_step, state, device_batch, key, hparams)}
  result = {"jax_compile_s": compile_s}
  skip_torch = ("--no-torch" if args.no_torch else
                "torch is not installed (pip install -e '.[bench]')" if torch is None else
                f"the PyTorch model runs float32 only (--dtype {args.dtype})" if args.dtype != "float32" else None)
  if skip_torch:
    result["torch_skipped"] = skip_torch
    log(f"PyTorch skipped: {result['torch_skipped']}")
  else:
    steps["torch_matmul"] = torch_matmul_step(args.matmul_size, args.matmul_repeats)
    steps["torch"] = torch_train_step(sizes, batch, config, packed=False)
    steps["torch_packed"] = torch_train_step(sizes, batch, config, packed=True)
  log(f"timing {', '.join(steps)}: {args.warmup} + {args.rounds} rounds")
  seconds = interleaved_medians(steps, args.rounds, args.warmup)
  projected_rows = jax_projected_rows(batch, config.model.token_capacity)
  flops, all_rows_flops = train_step_flops(sizes, projected_rows), train_step_flops(sizes, batch["tokens"].size)
  matmul_flops = 2 * args.matmul_size**3 * args.matmul_repeats
  peak = matmul_flops / seconds["matmul"]
  torch_s, torch_packed_s = seconds.get("torch"), seconds.get("torch_packed")
  return result | {
      "jax_step_s": seconds["jax"],
      "jax_sentences_per_s": sizes.batch_size / seconds["jax"],
      "torch_step_s": torch_s,
      "torch_sentences_per_s": sizes.batch_size / torch_s if torch_s else None,
      "jax_over_torch": torch_s / seconds["jax"] if torch_s else None,
      "torch_packed_step_s": torch_packed_s,
      "jax_over_torch_packed": torch_packed_s / seconds["jax"] if torch_packed_s else None,
      "real_tokens": int(batch["lengths"].sum()),
      "projected_rows": projected_rows,
      "flops_per_step": flops,
      "all_rows_flops_per_step": all_rows_flops,
      "achieved_flops_per_s": flops / seconds["jax"],
      "matmul_peak_flops_per_s": peak,
      "fraction_of_peak": flops / seconds["jax"] / peak,
      "torch_achieved_flops_per_s": all_rows_flops / torch_s if torch_s else None,
      "torch_matmul_peak_flops_per_s": matmul_flops / seconds["torch_matmul"] if torch_s else None,
  }, compiled_step


def time_sweep(args: argparse.Namespace, init, compiled_step, hparams: HParams, device_batch: dict) -> dict:
  """A step of sweep.sweep_step over stacked members against one run's step, on the same batch."""
  log(f"compiling the {args.sweep_members}-member sweep step")
  key = jax.random.key(0)
  stack = functools.partial(jax.tree.map, lambda x: jnp.broadcast_to(x, (args.sweep_members,) + x.shape))
  members, member_hparams = stack(init(key)), stack(hparams)
  compiled_sweep, compile_s = timed_compile(sweep.sweep_step, members, device_batch, key, member_hparams)
  # One run's step is timed again beside the sweep's, so the ratio shares the sweep's load.
  steps = {"sweep": stateful_step(compiled_sweep, members, device_batch, key, member_hparams),
           "single": stateful_step(compiled_step, init(key), device_batch, key, hparams)}
  log(f"timing sweep, single: {args.warmup} + {args.rounds} rounds")
  seconds = interleaved_medians(steps, args.rounds, args.warmup)
  return {"sweep_compile_s": compile_s, "sweep_members": args.sweep_members, "sweep_step_s": seconds["sweep"],
          f"sweep{args.sweep_members}_over_single": seconds["sweep"] / seconds["single"]}


def time_encode(args: argparse.Namespace, sizes: Sizes, model, params, hparams: HParams) -> dict:
  log(f"compiling eval_step at batch {args.encode_batch_size}")
  key = jax.random.key(0)
  batch = jax.tree.map(jnp.asarray, synthetic_batch(sizes, args.encode_batch_size, seed=1))
  compiled_eval, compile_s = timed_compile(evaluate.eval_step, model, params, batch, key, hparams)
  log(f"timing encode: {args.warmup} + {args.rounds} rounds")
  seconds = interleaved_medians(
      {"encode": lambda: jax.block_until_ready(compiled_eval(params, batch, key, hparams))}, args.rounds, args.warmup)
  return {"encode_compile_s": compile_s, "encode_batch_s": seconds["encode"],
          "encode_sentences_per_s": args.encode_batch_size / seconds["encode"]}


def run(args: argparse.Namespace) -> dict:
  sizes = Sizes(args.batch_size, args.length, args.vocab_size, args.embed_dim, args.hidden_dim, args.latent_dim)
  config = default_config.get_config()
  config.model.latent_dim = sizes.latent_dim
  config.model.embed_dim = sizes.embed_dim
  config.model.hidden_dim = sizes.hidden_dim
  config.model.dtype = args.dtype
  config.model.token_capacity = args.token_capacity
  model = make_model(config.model, sizes.vocab_size)
  init = jax.jit(functools.partial(train.create_train_state, model, train.make_optimizer(config.train)))
  hparams = HParams.from_config(config)
  batch = synthetic_batch(sizes, sizes.batch_size, seed=0)
  result = {"load_average_start": os.getloadavg(), "quick": args.quick, "latent": config.model.latent,
            "dtype": args.dtype, "device": str(jax.devices()[0].device_kind),
            "jax_version": jax.__version__, "torch_version": torch.__version__ if torch else None,
            "cpu_count": os.cpu_count()} | dataclasses.asdict(sizes)
  train_result, compiled_step = time_train_step(args, sizes, config, init, hparams, batch)
  result |= train_result
  result |= time_sweep(args, init, compiled_step, hparams, jax.tree.map(jnp.asarray, batch))
  result |= time_encode(args, sizes, model, init(jax.random.key(0)).params, hparams)
  return result | {"load_average_end": os.getloadavg()}


def main(argv: list[str]) -> None:
  args = parse_args(argv)
  result = run(args)
  if args.json:
    print(json.dumps(result))
  else:
    for name, value in result.items():
      print(f"{name:>26}  {value:.4g}" if isinstance(value, float) else f"{name:>26}  {value}")


if __name__ == "__main__":
  main(sys.argv[1:])
