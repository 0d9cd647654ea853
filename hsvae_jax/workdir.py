"""The layout of a workdir; no other module knows it.

  config.json        the run's full config
  vocab.txt          its vocabulary
  train_data.json    a fingerprint of the training split's token ids: a resumed run must train on the same
  metrics.jsonl      one JSON object per logged step (valid/ keys: the valid split, every train.eval_every steps)
  events.out.tfevents.*  the same numbers for TensorBoard
  checkpoints/       Orbax: the train state and the data iterator's position at each saved step
  damaged_checkpoints/  steps that failed to restore, moved aside when training fell back past them
  eval_<split>.json  what `hsvae evaluate` printed
  embeddings/        a frozen transformer's embeddings of each split
  lock               flock-ed by the process training in the workdir; holds its PID
A sweep's workdir adds grid.json, sweep.json and members/<name>/, each an ordinary workdir.
"""

from collections.abc import Callable, Iterator
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from typing import Any, TypeVar

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from hsvae_jax import data
from hsvae_jax.data.corpus import SPLITS
from hsvae_jax.errors import InputError, warn

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"
DATA_FILE = "train_data.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"
EMBEDDINGS_DIR = "embeddings"
LOCK_FILE = "lock"
GRID_FILE = "grid.json"
SWEEP_FILE = "sweep.json"
MEMBERS_DIR = "members"
# Config sections that fix the parameters and the data order: a checkpoint only resumes under the same.
RESUME_KEYS = ("model", "data", "seed")
SPEED_ONLY_KEYS = ("model.token_capacity",)  # may change on resume: the trained model does not depend on them

T = TypeVar("T")


def read_json(path: str) -> Any:
  """A JSON file of a workdir; a truncated or damaged one is refused, naming it."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise InputError(f"{path}, line {e.lineno}: damaged JSON ({e.msg})") from None


def _write_json(path: str, value: Any) -> None:
  with open(path, "w") as f:
    json.dump(value, f, indent=2)


# --- config, vocabulary and the training data they were trained on


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
  return flat


def _resume_fingerprint(config_dict: dict) -> dict[str, Any]:
  return {k: v for k, v in _flatten(config_dict).items()
          if k.split(".")[0] in RESUME_KEYS and k not in SPEED_ONLY_KEYS}


def is_sweep(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, GRID_FILE))


def _refuse_sweep(workdir: str) -> None:
  if is_sweep(workdir):
    raise InputError(f"{workdir} is a sweep's workdir; its members are workdirs of their own under "
                     f"{os.path.join(workdir, MEMBERS_DIR)}: give one of them")


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with; a sweep's top-level workdir is refused, naming where its members are."""
  _refuse_sweep(workdir)
  return _read_config(workdir)


def _read_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise InputError(f"{workdir} holds no trained model ({CONFIG_FILE} is missing); run `hsvae train` first")
  return ml_collections.ConfigDict(read_json(path))


def load_vocab(workdir: str) -> data.Vocabulary:
  return data.Vocabulary.load(os.path.join(workdir, VOCAB_FILE))


def data_fingerprint(token_ids: list[np.ndarray]) -> dict[str, Any]:
  """The training split as the model sees it: its sentences' token ids, hashed."""
  digest = hashlib.sha256(np.array([len(ids) for ids in token_ids], np.int64).tobytes())
  digest.update(np.concatenate(token_ids).astype(np.int32).tobytes())
  return {"num_sentences": len(token_ids), "token_ids_sha256": digest.hexdigest()}


def check_resumable(config: ml_collections.ConfigDict, workdir: str, sweep: bool = False) -> bool:
  """Whether workdir holds a checkpoint to resume; refuses one made under another model or data config,
  and a sweep's when training a single run (and the other way round)."""
  if not sweep:
    _refuse_sweep(workdir)
  checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
  if not (os.path.isdir(checkpoint_dir) and ocp.utils.checkpoint_steps(checkpoint_dir)):
    return False
  if sweep and not is_sweep(workdir):
    raise InputError(f"{workdir} holds a single run's checkpoint, not a sweep's; use a new --workdir")
  saved = _resume_fingerprint(_read_config(workdir).to_dict())
  wanted = _resume_fingerprint(json.loads(config.to_json_best_effort()))
  differing = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
  if differing:
    shown = ", ".join(f"{k}={saved.get(k)!r} (asked {wanted.get(k)!r})" for k in differing[:3])
    raise InputError(f"{workdir} holds a checkpoint of another config: {shown}; use a new --workdir")
  return True


def check_training_data(workdir: str, fingerprint: dict[str, Any]) -> None:
  """Refuses to resume on a training split other than the one the checkpoint was trained on."""
  path = os.path.join(workdir, DATA_FILE)
  saved = read_json(path) if os.path.exists(path) else fingerprint  # workdirs from before the fingerprint
  if saved != fingerprint:
    raise InputError(f"{workdir} was trained on another training split ({saved['num_sentences']} sentences, "
                     f"sha256 {saved['token_ids_sha256'][:12]}; now {fingerprint['num_sentences']}, "
                     f"{fingerprint['token_ids_sha256'][:12]}); restore that data or use a new --workdir")


def write_run(workdir: str, config: ml_collections.ConfigDict, vocab: data.Vocabulary,
              fingerprint: dict[str, Any]) -> None:
  """config.json, vocab.txt and the fingerprint of the training data."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  vocab.save(os.path.join(workdir, VOCAB_FILE))
  _write_json(os.path.join(workdir, DATA_FILE), fingerprint)


# --- the lock


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds workdir's lock (the OS releases it if the process dies); a second holder is refused with the
  first one's PID. In a multi-process job process 0 holds it for all. A workdir made here that is left
  holding only the lock (the run was refused) is removed again."""
  if jax.process_index() != 0:
    yield
    return
  made = not os.path.isdir(workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  with open(path, "a+") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "unknown"
      raise InputError(f"{workdir} is in use by another process (PID {holder}); wait for it to finish "
                       "or use another --workdir") from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    try:
      yield
    finally:
      if made and os.listdir(workdir) == [LOCK_FILE]:
        os.remove(path)
        os.rmdir(workdir)


# --- metrics


def metrics_path(workdir: str) -> str:
  return os.path.join(workdir, METRICS_FILE)


def _metrics_lines(workdir: str) -> list[tuple[str, dict]]:
  """Each line of metrics.jsonl with its object; a truncated last line (a write cut short) is dropped."""
  path = metrics_path(workdir)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  parsed = []
  for number, line in enumerate(lines, start=1):
    try:
      parsed.append((line if line.endswith("\n") else line + "\n", json.loads(line)))
    except json.JSONDecodeError as e:
      if number < len(lines):
        raise InputError(f"{path}, line {number}: damaged JSON ({e.msg})") from None
      warn(f"{path}: dropped its truncated last line {number}")
  return parsed


def read_metrics(workdir: str) -> list[dict]:
  return [metrics for _, metrics in _metrics_lines(workdir)]


def tensorboard_dir(workdir: str) -> str:
  return workdir


def rewind_metrics(workdir: str, step: int) -> None:
  """Keeps the lines logged up to step (none for a fresh run), so the log matches the run that resumes."""
  kept = [line for line, metrics in _metrics_lines(workdir) if metrics["step"] <= step] if step else []
  with open(metrics_path(workdir), "w") as f:
    f.writelines(kept)


# --- checkpoints


def checkpoint_manager(workdir: str, train_config: ml_collections.ConfigDict | None = None,
                       read_only: bool = False) -> ocp.CheckpointManager:
  keep = train_config.checkpoints_to_keep if train_config else 2
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.LatestN(keep), read_only=read_only, create=not read_only)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)), options=options,
                               item_handlers={"state": ocp.PyTreeCheckpointHandler(),
                                              "data": grain.checkpoint.CheckpointHandler()})


def save_checkpoint(mngr: ocp.CheckpointManager, state, batches) -> None:
  mngr.save(int(state.step.max()), args=ocp.args.Composite(
      state=ocp.args.PyTreeSave(state), data=grain.checkpoint.CheckpointSave(batches)), force=True)


def _reason(error: Exception) -> str:
  """The first line of an Orbax or tensorstore error, which may run to a hundred."""
  first = (str(error).strip().splitlines() or [type(error).__name__])[0]
  return first if len(first) <= 160 else first[:157] + "..."


def _newest_that_restores(mngr: ocp.CheckpointManager, restore: Callable[[int], T], move_aside: bool) -> T:
  """restore(step) of the newest step for which it succeeds; each step skipped is one line on stderr.

  Training moves a skipped step aside (to damaged_checkpoints/), so that it can save that step again.
  """
  directory = str(mngr.directory)
  steps = sorted(mngr.all_steps(), reverse=True)
  if not steps:
    raise InputError(f"{directory} holds no checkpoint; run `hsvae train` first")
  for i, step in enumerate(steps):
    try:
      return restore(step)
    except Exception as e:  # Orbax and tensorstore raise bare Exceptions for damaged files
      if i == len(steps) - 1:
        raise InputError(f"no checkpoint in {directory} restores (the oldest, step {step}: {_reason(e)})") from None
      warn(f"checkpoint step {step} does not restore ({_reason(e)}); falling back to step {steps[i + 1]}")
      if move_aside and jax.process_index() == 0:
        damaged = os.path.join(os.path.dirname(directory), DAMAGED_DIR)
        os.makedirs(damaged, exist_ok=True)
        shutil.move(os.path.join(directory, str(step)), os.path.join(damaged, f"{step}"))
        mngr.reload()
  raise AssertionError("unreachable")


def restore_checkpoint(mngr: ocp.CheckpointManager, state, batches):
  """The newest checkpoint that restores, into state's structure and shardings; batches continue where it
  stopped."""
  def restore(step: int):
    return mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(state, restore_args=ocp.checkpoint_utils.construct_restore_args(state)),
        data=grain.checkpoint.CheckpointRestore(batches))).state
  return _newest_that_restores(mngr, restore, move_aside=True)


def restore_params(workdir: str) -> Any:
  """The parameters of the newest checkpoint that restores, on this process's first device, whatever
  topology trained them; the optimiser state is not read."""
  mngr = checkpoint_manager(workdir, read_only=True)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def restore(step: int):
    saved = mngr.item_metadata(step)["state"].tree["params"]
    target = {"params": jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)}
    return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))).state["params"]
  return _newest_that_restores(mngr, restore, move_aside=False)


# --- evaluation results, the features cache, sweeps


def eval_path(workdir: str, split: str) -> str:
  return os.path.join(workdir, f"eval_{split}.json")


def write_eval(workdir: str, split: str, result: dict) -> None:
  """eval_<split>.json; a workdir that cannot be written to (read-only) is a warning: the result was printed."""
  try:
    _write_json(eval_path(workdir, split), result)
  except OSError as e:
    warn(f"{eval_path(workdir, split)}: cannot write it ({e.strerror}); the result is only on stdout")


def read_evals(workdir: str) -> dict[str, dict]:
  """split -> the eval_<split>.json results `hsvae evaluate` left in workdir."""
  return {split: read_json(eval_path(workdir, split)) for split in SPLITS
          if os.path.exists(eval_path(workdir, split))}


def embeddings_dir(workdir: str) -> str:
  return os.path.join(workdir, EMBEDDINGS_DIR)


def member_dir(workdir: str, name: str) -> str:
  return os.path.join(workdir, MEMBERS_DIR, name)


def check_grid(workdir: str, grid: dict[str, list[float]]) -> None:
  """Refuses to resume a sweep over another grid."""
  path = os.path.join(workdir, GRID_FILE)
  if read_json(path) != grid:
    raise InputError(f"{workdir} holds a sweep over another grid ({read_json(path)}); use a new --workdir")


def write_grid(workdir: str, grid: dict[str, list[float]]) -> None:
  os.makedirs(workdir, exist_ok=True)
  _write_json(os.path.join(workdir, GRID_FILE), grid)


def write_sweep(workdir: str, results: list[dict]) -> None:
  _write_json(os.path.join(workdir, SWEEP_FILE), results)


def read_sweep(workdir: str) -> list[dict] | None:
  """sweep.json's member results, or None when workdir is not a finished sweep."""
  path = os.path.join(workdir, SWEEP_FILE)
  return read_json(path) if os.path.exists(path) else None
