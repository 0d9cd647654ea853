"""Training: a pure jitted step, exact-resume Orbax checkpoints, metrics.jsonl and a progress bar."""

from collections.abc import Callable, Iterator
import dataclasses
import functools
import json
import os
import time
from typing import Any

from absl import logging
import flax.struct
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from hsvae_jax import data
from hsvae_jax import embed
from hsvae_jax import objectives
from hsvae_jax.encoders import bert
from hsvae_jax.errors import InputError
from hsvae_jax.hparams import HParams
from hsvae_jax.models import SentenceVAE, make_model

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
# Config sections that fix the parameters and the data order: a checkpoint only resumes under the same.
RESUME_KEYS = ("model", "data", "seed")
SPEED_ONLY_KEYS = ("model.token_capacity",)  # may change on resume: the trained model does not depend on them


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  opt_state: optax.OptState
  model: SentenceVAE = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  # The learning rate lives in the optimiser state so a sweep can give each member its own.
  adam = optax.inject_hyperparams(optax.adam)(learning_rate=train_config.learning_rate)
  return optax.apply_if_finite(adam, max_consecutive_errors=train_config.max_consecutive_skips)


def create_train_state(model: SentenceVAE, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
  tokens_BxL = jnp.ones((1, 2), jnp.int32)
  features = {"embedding": jnp.zeros((1, model.embedding_dim)),
              "encoder_ids": tokens_BxL, "encoder_mask": tokens_BxL}
  params = model.init(key, tokens_BxL, jnp.array([2]), jax.random.key(0), jnp.float32(1.0), features)["params"]
  return TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params), model=model, tx=tx)


@functools.partial(jax.jit, donate_argnums=0)
def train_step(state: TrainState, batch: dict, base_key: jax.Array,
               hparams: HParams) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam update on the weighted negative ELBO; a non-finite update is skipped and counted."""
  key = jax.random.fold_in(base_key, state.step)
  grad_fn = jax.value_and_grad(objectives.loss_fn, has_aux=True)
  (_, terms), grads = grad_fn(state.params, state.model, batch, key, hparams.at_step(state.step))
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = terms | {
      "grad_norm": optax.tree.norm(grads),
      "skipped_steps": opt_state.total_notfinite,
      "consecutive_skips": opt_state.notfinite_count,
  }
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


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


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise InputError(f"{workdir} holds no trained model ({CONFIG_FILE} is missing); run `hsvae train` first")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def checkpoint_manager(workdir: str, train_config: ml_collections.ConfigDict | None = None,
                       read_only: bool = False) -> ocp.CheckpointManager:
  keep = train_config.checkpoints_to_keep if train_config else 1
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.LatestN(keep), read_only=read_only, create=not read_only)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)), options=options)


def check_resumable(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether workdir holds a checkpoint to resume; refuses one made under another model or data config."""
  checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
  if not (os.path.isdir(checkpoint_dir) and ocp.utils.checkpoint_steps(checkpoint_dir)):
    return False
  saved = _resume_fingerprint(load_workdir_config(workdir).to_dict())
  wanted = _resume_fingerprint(json.loads(config.to_json_best_effort()))
  differing = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
  if differing:
    shown = ", ".join(f"{k}={saved.get(k)!r} (asked {wanted.get(k)!r})" for k in differing[:3])
    raise InputError(f"{workdir} holds a checkpoint of another config: {shown}; use a new --workdir")
  return True


def prepare_vocabulary(corpus: data.Corpus, data_config: ml_collections.ConfigDict,
                       workdir: str, resuming: bool) -> data.Vocabulary:
  if resuming:
    return data.Vocabulary.load(os.path.join(workdir, VOCAB_FILE))
  if corpus.vocab_words:
    return data.Vocabulary.from_words(corpus.vocab_words[: data_config.vocab_size])
  return data.Vocabulary.build(corpus.sentences["train"], data_config.vocab_size)


def _restore_metrics_log(path: str, step: int) -> None:
  """Drops lines logged after the checkpoint being resumed, so the log matches the replayed run."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    kept = [line for line in f if json.loads(line)["step"] <= step]
  with open(path, "w") as f:
    f.writelines(kept)


def _host_means(metrics: list[dict[str, jax.Array]]) -> dict[str, Any]:
  """Means over the logging interval (per member for a sweep); counters as of its last step."""
  stacked = jax.device_get(metrics)
  means = {k: np.mean(np.stack([m[k] for m in stacked]), axis=0).tolist() for k in stacked[0]}
  for counter in ("skipped_steps", "consecutive_skips"):
    means[counter] = np.asarray(stacked[-1][counter]).tolist()
  return means


@dataclasses.dataclass
class Run:
  """What a training loop needs, prepared and validated before anything is written to the workdir."""

  config: ml_collections.ConfigDict
  workdir: str
  vocab: data.Vocabulary
  model: SentenceVAE
  tx: optax.GradientTransformation
  mesh: jax.sharding.Mesh
  batches: Iterator[dict[str, np.ndarray]]
  resuming: bool
  labelled: bool  # every split has class labels, so codes can be probed


def make_mesh(mesh_config: ml_collections.ConfigDict, global_batch_size: int) -> jax.sharding.Mesh:
  """A 1-D mesh over `mesh.data` devices (-1: all) that the global batch is split across."""
  devices = jax.devices()
  size = len(devices) if mesh_config.data == -1 else mesh_config.data
  if not 1 <= size <= len(devices):
    raise InputError(f"mesh.data={mesh_config.data} but {len(devices)} devices are available")
  if global_batch_size % size:
    raise InputError(f"train.batch_size={global_batch_size} does not split evenly over {size} devices")
  return jax.sharding.Mesh(np.array(devices[:size]), ("data",))


def split_features(config: ml_collections.ConfigDict, sentences: list[str], workdir: str,
                   split: str) -> dict[str, np.ndarray]:
  """Per-sentence inputs besides the words: a frozen transformer's embeddings, cached in workdir, or
  the wordpiece ids and mask a fine-tuned one reads."""
  if config.model.encoder != "transformer":
    return {}
  if not config.model.freeze_encoder:
    return embed.wordpieces(config.model.encoder_path, sentences)
  return {"embedding": embed.cached_embeddings(config.model, sentences, workdir, split)}


def prepare_run(config: ml_collections.ConfigDict, workdir: str) -> Run:
  resuming = check_resumable(config, workdir)
  corpus = data.load_corpus(config.data)
  vocab = prepare_vocabulary(corpus, config.data, workdir, resuming)
  mesh = make_mesh(config.mesh, config.train.batch_size)
  model = make_model(config.model, len(vocab))
  token_ids = vocab.encode_all(corpus.sentences["train"], config.data.max_length)
  features = split_features(config, corpus.sentences["train"], workdir, "train")
  dataset = data.train_dataset(token_ids, config.train.batch_size, config.seed, config.data.length_buckets,
                               jax.process_index(), jax.process_count(), features)
  labelled = all(labels is not None for labels in corpus.labels.values())
  return Run(config, workdir, vocab, model, make_optimizer(config.train), mesh, iter(dataset), resuming, labelled)


def write_workdir(config: ml_collections.ConfigDict, vocab: data.Vocabulary, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  vocab.save(os.path.join(workdir, VOCAB_FILE))


def init_state(run: Run) -> TrainState:
  """Parameters initialised from the config's seed, replicated over the mesh."""
  init_key = jax.random.split(jax.random.key(run.config.seed))[0]
  replicated = jax.sharding.NamedSharding(run.mesh, jax.sharding.PartitionSpec())
  state = jax.jit(functools.partial(create_train_state, run.model, run.tx), out_shardings=replicated)(init_key)
  if run.model.transformer is None:
    return state
  # A fine-tuned transformer starts from its checkpoint (Adam's moments are zeros either way).
  pretrained = bert.load_pretrained(run.config.model.encoder_path).params["params"]
  return state.replace(params=state.params | {"encoder": jax.device_put(pretrained, replicated)})


def base_key(config: ml_collections.ConfigDict) -> jax.Array:
  return jax.random.split(jax.random.key(config.seed))[1]


def save_checkpoint(mngr: ocp.CheckpointManager, state: TrainState, batches) -> None:
  mngr.save(int(state.step.max()), args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(batches)), force=True)


def restore_checkpoint(mngr: ocp.CheckpointManager, state: TrainState, batches) -> TrainState:
  """The latest checkpoint, into state's structure and shardings; batches continue where it stopped."""
  restored = mngr.restore(mngr.latest_step(), args=ocp.args.Composite(
      state=ocp.args.StandardRestore(state), data=grain.checkpoint.CheckpointRestore(batches)))
  return restored.state


def _global_batch(local_batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


StepFn = Callable[[TrainState, dict, jax.Array, HParams], tuple[TrainState, dict[str, jax.Array]]]


def train_loop(run: Run, state: TrainState, step_fn: StepFn, hparams: HParams) -> tuple[TrainState, np.ndarray]:
  """Runs step_fn to train.num_steps with logging and checkpoints, resuming run.workdir's checkpoint.

  Returns the final state and which runs diverged (a bool, or one per member when step_fn is a sweep's
  vmapped step); fails only when all of them have.
  """
  config = run.config
  mngr = checkpoint_manager(run.workdir, config.train)
  metrics_path = os.path.join(run.workdir, METRICS_FILE)
  if run.resuming:
    state = restore_checkpoint(mngr, state, run.batches)
    logging.info("Resumed from step %d", int(state.step.max()))
  else:
    open(metrics_path, "w").close()
  start = int(state.step.max())
  _restore_metrics_log(metrics_path, start)
  step_key = base_key(config)
  diverged = np.zeros(np.shape(state.step), bool)
  pending, interval_start, interval_first = [], time.perf_counter(), start
  with open(metrics_path, "a") as metrics_log, tqdm.tqdm(
      total=config.train.num_steps, initial=start, desc="train", unit="step",
      disable=jax.process_index() != 0) as progress:
    for step in range(start + 1, config.train.num_steps + 1):
      with jax.set_mesh(run.mesh):  # the loss keeps each device's share of the batch on it (objectives)
        state, metrics = step_fn(state, _global_batch(next(run.batches), run.mesh), step_key, hparams)
      pending.append(metrics)
      progress.update()
      at_checkpoint = step % config.train.checkpoint_every == 0 or step == config.train.num_steps
      if step % config.train.log_every == 0 or at_checkpoint:
        means = _host_means(pending)
        diverged |= np.asarray(means["consecutive_skips"]) >= config.train.max_consecutive_skips
        if diverged.all():
          raise FloatingPointError(
              f"training diverged at step {step}: {config.train.max_consecutive_skips} non-finite updates in a row")
        elapsed = time.perf_counter() - interval_start
        means["sentences_per_s"] = (step - interval_first) * config.train.batch_size / elapsed
        if jax.process_index() == 0:
          metrics_log.write(json.dumps({"step": step} | means) + "\n")
          metrics_log.flush()
        progress.set_postfix(loss=f"{np.mean(means['loss']):.2f}", kl_z=f"{np.mean(means['kl_z']):.1f}")
        pending, interval_start, interval_first = [], time.perf_counter(), step
      if at_checkpoint or mngr.reached_preemption(step):
        save_checkpoint(mngr, state, run.batches)
        if not at_checkpoint:
          logging.warning("Preempted at step %d: checkpoint saved", step)
          break
  mngr.wait_until_finished()
  mngr.close()
  return state, diverged


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains config's model in workdir, resuming the checkpoint there if any; returns the final state."""
  run = prepare_run(config, workdir)
  write_workdir(config, run.vocab, workdir)
  state, _ = train_loop(run, init_state(run), train_step, HParams.from_config(config.hparams))
  return state
