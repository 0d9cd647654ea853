"""A grid of hyperparameters trained as one vmapped, jitted program over a shared data stream."""

import itertools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hsvae_jax import evaluate
from hsvae_jax import train
from hsvae_jax.errors import InputError
from hsvae_jax.hparams import HParams

# Grid names and where each lives in the config.
SWEEPABLE = {
    "alpha": "hparams.alpha",
    "beta": "hparams.beta",
    "z_reg_weight": "hparams.z_reg_weight",
    "gamma_reg_weight": "hparams.gamma_reg_weight",
    "temperature": "hparams.temperature",
    "learning_rate": "train.learning_rate",
}
SWEEP_FILE = "sweep.json"
GRID_FILE = "grid.json"
MEMBERS_DIR = "members"

# Every member sees the same batch and step key; only the state and the hyperparameters are batched.
sweep_step = jax.jit(jax.vmap(train.train_step, in_axes=(0, None, None, 0)), donate_argnums=0)


def parse_grid(specs: list[str]) -> dict[str, list[float]]:
  """['alpha=1,4', 'beta=2'] -> {'alpha': [1.0, 4.0], 'beta': [2.0]}."""
  grid = {}
  for spec in specs:
    name, _, values = spec.partition("=")
    if name not in SWEEPABLE:
      raise InputError(f"cannot sweep {name!r}; choose among {', '.join(SWEEPABLE)}")
    if name in grid:
      raise InputError(f"--grid {name} is given twice")
    try:
      grid[name] = [float(v) for v in values.split(",")]
    except ValueError:
      raise InputError(f"--grid {spec!r}: values must be comma-separated numbers") from None
  if not grid:
    raise InputError("a sweep needs at least one --grid NAME=V1,V2,...")
  return grid


def members_of(grid: dict[str, list[float]]) -> list[dict[str, float]]:
  return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def member_config(config: ml_collections.ConfigDict, member: dict[str, float]) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(config.to_dict())
  for name, value in member.items():
    section, key = SWEEPABLE[name].split(".")
    config[section][key] = value
  return config


def member_name(member: dict[str, float]) -> str:
  return "_".join(f"{name}-{value:g}" for name, value in member.items())


def _stack_state(state: train.TrainState, learning_rates: np.ndarray) -> train.TrainState:
  """One copy of state per member, each with its own learning rate in the optimiser state."""
  stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(learning_rates),) + x.shape), state)
  adam_state = stacked.opt_state.inner_state
  hyperparams = adam_state.hyperparams | {"learning_rate": jnp.asarray(learning_rates, jnp.float32)}
  opt_state = stacked.opt_state._replace(inner_state=adam_state._replace(hyperparams=hyperparams))
  return stacked.replace(opt_state=opt_state)


def _check_grid(workdir: str, grid: dict[str, list[float]], resuming: bool) -> None:
  path = os.path.join(workdir, GRID_FILE)
  if resuming and os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved != grid:
      raise InputError(f"{workdir} holds a sweep over another grid ({saved}); use a new --workdir")


def sweep(config: ml_collections.ConfigDict, workdir: str, grid: dict[str, list[float]],
          split: str = "valid") -> list[dict] | None:
  """Trains every member of the grid at once, then evaluates each (probes too when the corpus has labels).

  Returns and writes sweep.json.

  Returns None when preempted (the sweep's checkpoint is saved; run again to resume).

  Each member is also exported as an ordinary workdir under members/<name>/ (config, vocabulary,
  checkpoint with the data position), so `hsvae evaluate`, `encode` and `train` work on it alone.
  """
  members = members_of(grid)
  run = train.prepare_run(config, workdir)
  _check_grid(workdir, grid, run.resuming)
  train.write_workdir(config, run.vocab, workdir)
  with open(os.path.join(workdir, GRID_FILE), "w") as f:
    json.dump(grid, f)

  configs = [member_config(config, member) for member in members]
  hparams = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[HParams.from_config(c.hparams) for c in configs])
  state = _stack_state(train.init_state(run), np.array([c.train.learning_rate for c in configs]))
  state, diverged = train.train_loop(run, state, sweep_step, hparams)
  if int(state.step.max()) < config.train.num_steps:
    return None

  results = []
  for i, (member, member_cfg) in enumerate(zip(members, configs)):
    member_dir = os.path.join(workdir, MEMBERS_DIR, member_name(member))
    train.write_workdir(member_cfg, run.vocab, member_dir)
    mngr = train.checkpoint_manager(member_dir, member_cfg.train)
    train.save_checkpoint(mngr, jax.tree.map(lambda x, i=i: x[i], state), run.batches)
    mngr.wait_until_finished()
    mngr.close()
    entry = dict(member) | {"workdir": member_dir, "diverged": bool(diverged[i])}
    if not diverged[i]:
      entry |= evaluate.evaluate(member_dir, split, probe=run.labelled)
    results.append(entry)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, SWEEP_FILE), "w") as f:
      json.dump(results, f, indent=2)
  return results
