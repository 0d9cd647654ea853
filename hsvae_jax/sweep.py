"""A grid of hyperparameters trained as one vmapped, jitted program over a shared data stream."""

import functools
import importlib.util
import itertools

import jax
import jax.numpy as jnp
import ml_collections

from hsvae_jax import config_validation
from hsvae_jax import evaluate
from hsvae_jax import train
from hsvae_jax import workdir as layout
from hsvae_jax.errors import InputError
from hsvae_jax.hparams import HParams

# Grid names and where each lives in the config: every field of HParams.
SWEEPABLE = {name: HParams.config_key(name) for name in HParams.__dataclass_fields__}

@functools.partial(jax.jit, donate_argnums=0, static_argnames="data_shards")
def sweep_step(state: train.TrainState, batch: dict, base_key: jax.Array, hparams: HParams,
               data_shards: int = 1) -> tuple[train.TrainState, dict[str, jax.Array]]:
  """train_step for every member of a stacked state and hparams; all see the same batch and step key."""
  step = functools.partial(train.train_step, data_shards=data_shards)
  return jax.vmap(step, in_axes=(0, None, None, 0))(state, batch, base_key, hparams)


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


def sweep(config: ml_collections.ConfigDict, workdir: str, grid: dict[str, list[float]],
          split: str = "valid") -> list[dict] | None:
  """Trains every member of the grid at once, then evaluates each (probes too when the corpus has labels).

  Returns and writes sweep.json; returns None when preempted (the sweep's checkpoint is saved; run again
  to resume). Every member's config is validated before anything is written.

  Each member is also exported as an ordinary workdir under members/<name>/ (config, vocabulary,
  checkpoint with the data position), so `hsvae evaluate`, `encode` and `train` work on it alone.
  """
  members = members_of(grid)
  configs = [member_config(config, member) for member in members]
  config_validation.validate(config)  # the base config's own errors first, without a member's name
  for member, member_cfg in zip(members, configs):
    config_validation.validate(member_cfg, f"grid member {member_name(member)}: ")
  with layout.lock(workdir):
    run = train.prepare_run(config, workdir, sweep=True)
    if run.resuming:
      layout.check_grid(workdir, grid)
    layout.write_grid(workdir, grid)  # first: it marks the workdir as a sweep's
    layout.write_run(workdir, config, run.vocab, run.fingerprint)
    hparams = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[HParams.from_config(c) for c in configs])
    state = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(configs),) + x.shape), train.init_state(run))
    state, diverged = train.train_loop(run, state, sweep_step, hparams)
    if int(state.step.max()) < config.train.num_steps:
      return None
    results = [_export_member(run, member, member_cfg, jax.tree.map(lambda x, i=i: x[i], state), bool(diverged[i]),
                              split) for i, (member, member_cfg) in enumerate(zip(members, configs))]
    if jax.process_index() == 0:
      layout.write_sweep(workdir, results)
  return results


def _export_member(run: train.Run, member: dict[str, float], config: ml_collections.ConfigDict,
                   state: train.TrainState, diverged: bool, split: str) -> dict:
  """Writes a member as an ordinary workdir; evaluates it unless it diverged."""
  member_dir = layout.member_dir(run.workdir, member_name(member))
  layout.write_run(member_dir, config, run.vocab, run.fingerprint)
  mngr = layout.checkpoint_manager(member_dir, config.train)
  layout.save_checkpoint(mngr, state, run.batches)
  mngr.wait_until_finished()
  mngr.close()
  entry = dict(member) | {"workdir": member_dir, "diverged": diverged}
  if not diverged:
    # Probes need scikit-learn, the [eval] extra.
    probe = run.labelled and importlib.util.find_spec("sklearn") is not None
    entry |= evaluate.evaluate(member_dir, split, probe=probe)
  return entry
