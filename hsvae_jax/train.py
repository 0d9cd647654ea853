"""Training: a pure jitted step, exact-resume Orbax checkpoints, metrics.jsonl and a progress bar."""

from collections.abc import Callable, Iterator
import contextlib
import dataclasses
import functools
import json
import signal
import threading
import time
from typing import Any

from absl import logging
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorboardX
import tqdm

from hsvae_jax import config_validation
from hsvae_jax import data
from hsvae_jax import embed
from hsvae_jax import evaluate
from hsvae_jax import objectives
from hsvae_jax import workdir as layout
from hsvae_jax.encoders import bert
from hsvae_jax.errors import Diverged, InputError, Interrupted, warn
from hsvae_jax.hparams import HParams
from hsvae_jax.models import SentenceVAE, make_model
from hsvae_jax.models.encoders import TransformerEncoder

BLOW_UP = 10.0  # a loss this many times the run's first (at initialisation) has diverged
UNK_WARNING_RATE = 0.5  # a vocabulary under which most training tokens are unknown is another corpus's


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  opt_state: optax.OptState
  model: SentenceVAE = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam's direction, skipping non-finite updates; train_step scales it by -hparams.learning_rate."""
  return _adam_skipping_non_finite(train_config.max_consecutive_skips)


# One object per setting: the optimizer is static in the train state, so a later run of the same model in
# this process (a notebook, a test) finds train_step traced and compiled already.
@functools.cache
def _adam_skipping_non_finite(max_consecutive_skips: int) -> optax.GradientTransformation:
  return optax.apply_if_finite(optax.scale_by_adam(), max_consecutive_errors=max_consecutive_skips)


def create_train_state(model: SentenceVAE, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
  batch = {"tokens": jnp.ones((1, 2), jnp.int32), "lengths": jnp.array([2])} | model.encoder.example_features()
  params = model.init(key, batch, jax.random.key(0), jnp.float32(1.0))["params"]
  return TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params), model=model, tx=tx)


@functools.partial(jax.jit, donate_argnums=0, static_argnames="data_shards")
def train_step(state: TrainState, batch: dict, base_key: jax.Array, hparams: HParams,
               data_shards: int = 1) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam update on the weighted negative ELBO; a non-finite update is skipped and counted.

  data_shards: the devices the batch is split over (the mesh's `data` axis), see decoders.sequence_nll.
  """
  key = jax.random.fold_in(base_key, state.step)
  grad_fn = jax.value_and_grad(objectives.loss_fn, has_aux=True)
  (_, terms), grads = grad_fn(state.params, state.model, batch, key, hparams.at_step(state.step), data_shards)
  directions, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, jax.tree.map(lambda d: -hparams.learning_rate * d, directions))
  metrics = terms | {
      "grad_norm": optax.tree.norm(grads),
      "skipped_steps": opt_state.total_notfinite,
      "consecutive_skips": opt_state.notfinite_count,
  }
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def prepare_vocabulary(corpus: data.Corpus, data_config: ml_collections.ConfigDict,
                       workdir: str, resuming: bool) -> data.Vocabulary:
  if resuming:
    return layout.load_vocab(workdir)
  if corpus.vocab_words:
    return data.Vocabulary.from_words(corpus.vocab_words[: data_config.vocab_size])
  return data.Vocabulary.build(corpus.sentences["train"], data_config.vocab_size)


def _host_means(stacked: list[dict[str, np.ndarray]]) -> dict[str, Any]:
  """Means over the logging interval (per member for a sweep); counters as of its last step."""
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
  fingerprint: dict[str, Any]  # of the training split's token ids
  valid_inputs: tuple[list[np.ndarray], dict[str, np.ndarray]] | None  # token ids, features; with train.eval_every


def make_mesh(mesh_config: ml_collections.ConfigDict, global_batch_size: int) -> jax.sharding.Mesh:
  """A 1-D mesh over `mesh.data` devices (-1: all) that the global batch is split across."""
  devices = jax.devices()
  size = len(devices) if mesh_config.data == -1 else mesh_config.data
  if not 1 <= size <= len(devices):
    raise InputError(f"mesh.data={mesh_config.data} but {len(devices)} devices are available")
  if global_batch_size % size:
    raise InputError(f"train.batch_size={global_batch_size} does not split evenly over {size} devices")
  return jax.sharding.Mesh(np.array(devices[:size]), ("data",))


def prepare_run(config: ml_collections.ConfigDict, workdir: str, sweep: bool = False) -> Run:
  """Validates config, the corpus and the workdir; writes nothing."""
  config_validation.validate(config)
  resuming = layout.check_resumable(config, workdir, sweep)
  corpus = data.load_corpus(config.data)
  vocab = prepare_vocabulary(corpus, config.data, workdir, resuming)
  mesh = make_mesh(config.mesh, config.train.batch_size)
  model = make_model(config.model, len(vocab))
  token_ids = vocab.encode_all(corpus.sentences["train"], config.data.max_length)
  fingerprint = layout.data_fingerprint(token_ids)
  if resuming:
    layout.check_training_data(workdir, fingerprint)
  unk_rate = data.unk_rate(token_ids)
  if unk_rate > UNK_WARNING_RATE:
    warn(f"{unk_rate:.0%} of the training tokens are unknown to the vocabulary: is it another corpus's vocab.txt?")
  features = embed.model_inputs(config.model, corpus.sentences["train"], layout.embeddings_dir(workdir), "train")
  dataset = data.train_dataset(token_ids, config.train.batch_size, config.seed, config.data.length_buckets,
                               jax.process_index(), jax.process_count(), features)
  labelled = all(labels is not None for labels in corpus.labels.values())
  valid_inputs = None
  if config.train.eval_every:
    valid = corpus.sentences["valid"]
    valid_inputs = (vocab.encode_all(valid, config.data.max_length),
                    embed.model_inputs(config.model, valid, layout.embeddings_dir(workdir), "valid"))
  return Run(config, workdir, vocab, model, make_optimizer(config.train), mesh, iter(dataset), resuming, labelled,
             fingerprint, valid_inputs)


# PRNG keys, all from config.seed; root = jax.random.key(seed):
#   initialisation  split(root)[0] (init_state); the sample in init's forward pass draws at key(0), and
#                   no parameter depends on it (create_train_state)
#   training steps  base_key = split(root)[1]; step s draws at fold_in(base_key, s) inside train_step, so
#                   a resumed run draws what an uninterrupted one does, and every sweep member the same
#   evaluation      batch i draws at fold_in(fold_in(root, 1), i) (evaluate.run_batches): a fixed seed
#                   evaluates the same every time
def init_state(run: Run) -> TrainState:
  """Parameters initialised from the config's seed, replicated over the mesh."""
  init_key = jax.random.split(jax.random.key(run.config.seed))[0]
  replicated = jax.sharding.NamedSharding(run.mesh, jax.sharding.PartitionSpec())
  state = initializer(run.model, run.tx, replicated)(init_key)
  if not isinstance(run.model.encoder, TransformerEncoder):
    return state
  # A fine-tuned transformer starts from its checkpoint (Adam's moments are zeros either way).
  pretrained = bert.load_pretrained(run.config.model.encoder_path).params["params"]
  return state.replace(params=state.params | {"encoder": jax.device_put(pretrained, replicated)})


@functools.cache
def initializer(model: SentenceVAE, tx: optax.GradientTransformation,
                sharding: jax.sharding.Sharding | None = None) -> Callable[[jax.Array], TrainState]:
  """create_train_state compiled for model and tx: one program, not op by op; cached like the optimizer."""
  return jax.jit(functools.partial(create_train_state, model, tx), out_shardings=sharding)


def base_key(config: ml_collections.ConfigDict) -> jax.Array:
  return jax.random.split(jax.random.key(config.seed))[1]


def _global_batch(local_batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


StepFn = Callable[[TrainState, dict, jax.Array, HParams, int], tuple[TrainState, dict[str, jax.Array]]]


@contextlib.contextmanager
def _sigint_requests() -> Iterator[list[int]]:
  """Ctrl-C asks the loop to save and stop after the current step, as SIGTERM does, instead of raising."""
  requests = []
  if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
    yield requests
    return
  previous = signal.signal(signal.SIGINT, lambda signum, frame: requests.append(signum))
  try:
    yield requests
  finally:
    signal.signal(signal.SIGINT, previous)


def _diverged(stacked: list[dict[str, np.ndarray]], initial_loss: np.ndarray, max_skips: int) -> np.ndarray:
  """Per member: no finite loss in the interval, a mean finite loss BLOW_UP times the initial one, or
  max_skips non-finite updates in a row."""
  loss = np.stack([m["loss"] for m in stacked]).astype(np.float64)
  finite = np.isfinite(loss)
  mean = np.where(finite, loss, 0.0).sum(axis=0) / np.maximum(finite.sum(axis=0), 1)
  with np.errstate(invalid="ignore"):  # a NaN initial loss (or none logged) never compares
    blown_up = mean > BLOW_UP * initial_loss
  return ~finite.any(axis=0) | blown_up | (np.asarray(stacked[-1]["consecutive_skips"]) >= max_skips)


def _initial_loss(workdir: str) -> np.ndarray | None:
  """The loss of a run's first step, which its first metrics line holds (NaN in logs from before it)."""
  logged = layout.read_metrics(workdir)
  return np.asarray(logged[0].get("initial_loss", np.nan), np.float64) if logged else None


def _validate(run: Run, state: TrainState, hparams: HParams) -> dict[str, Any]:
  """The valid split's ELBO terms and code sparsity as evaluate reports them, keys prefixed valid/, each
  shaped as state.step is (a list over members for a sweep's stacked state)."""
  token_ids, features = run.valid_inputs

  def member(index: tuple[int, ...]) -> dict[str, float]:
    # This process's replica of the parameters, so that every process evaluates on its own.
    params = jax.tree.map(lambda x: x.addressable_data(0)[index], state.params)
    trained = evaluate.TrainedModel(run.config, run.vocab, run.model, params)
    out = evaluate.run_batches(trained, token_ids, features, jax.tree.map(lambda x: x[index], hparams))
    return evaluate.split_metrics(run.model, out)

  members = [member(index) for index in np.ndindex(np.shape(state.step))]  # one index, (), for a single run
  return {f"valid/{k}": np.reshape([m[k] for m in members], np.shape(state.step)).tolist() for k in members[0]}


@contextlib.contextmanager
def _tensorboard(workdir: str, start: int) -> Iterator[Callable[[int, dict[str, Any]], None]]:
  """Writes metrics lines as TensorBoard scalars beside metrics.jsonl (a sweep: one curve per member).

  purge_step drops what an interrupted run logged after its checkpoint, as rewind_metrics does.
  """
  if jax.process_index() != 0:
    yield lambda step, line: None
    return
  with tensorboardX.SummaryWriter(layout.tensorboard_dir(workdir), purge_step=start + 1 if start else None) as writer:
    def write(step: int, line: dict[str, Any]) -> None:
      for name, value in line.items():
        for tag, scalar in (zip([f"{name}/member_{i}" for i in range(len(value))], value)
                            if isinstance(value, list) else [(name, value)]):
          writer.add_scalar(tag, scalar, step)
    yield write


def _log_interval(pending: list[dict[str, jax.Array]], initial_loss: np.ndarray | None, step: int, seconds: float,
                  config: ml_collections.ConfigDict, metrics_log, scalars, valid: dict[str, Any]
                  ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
  """Writes the interval's means and `valid` to metrics.jsonl and TensorBoard; returns the means, the initial
  loss and who diverged in the interval."""
  stacked = jax.device_get(pending)
  means = _host_means(stacked)
  means["sentences_per_s"] = len(pending) * config.train.batch_size / seconds
  if initial_loss is None:  # the run's first line: a blow-up is measured against its first step
    initial_loss = np.asarray(stacked[0]["loss"], np.float64)
    means["initial_loss"] = initial_loss.tolist()
  if jax.process_index() == 0:
    metrics_log.write(json.dumps({"step": step} | means | valid) + "\n")
    metrics_log.flush()
    scalars(step, means | valid)
  return means, initial_loss, _diverged(stacked, initial_loss, config.train.max_consecutive_skips)


def _divergence(step: int, means: dict[str, Any], initial_loss: np.ndarray, mngr) -> Diverged:
  mngr.wait_until_finished()  # the last good checkpoint, whole
  last = mngr.latest_step()
  return Diverged(f"training diverged at step {step} (loss {means['loss']}, initially {initial_loss.tolist()}, "
                  f"{means['consecutive_skips']} non-finite updates in a row); the last good checkpoint is "
                  + ("none" if last is None else f"step {last} in {mngr.directory}"))


def train_loop(run: Run, state: TrainState, step_fn: StepFn, hparams: HParams) -> tuple[TrainState, np.ndarray]:
  """Runs step_fn to train.num_steps with logging and checkpoints, resuming run.workdir's checkpoint.

  Returns the final state and which runs diverged, a bool array shaped as state.step (one per member for
  a sweep's stacked state); raises Diverged only when all have, and Interrupted on Ctrl-C, after saving.
  A pending checkpoint is always finished.
  """
  config = run.config
  mngr = layout.checkpoint_manager(run.workdir, config.train)
  try:
    if run.resuming:
      state = layout.restore_checkpoint(mngr, state, run.batches)
      logging.info("Resumed from step %d", int(state.step.max()))
    start = int(state.step.max())
    layout.rewind_metrics(run.workdir, start)
    initial_loss = _initial_loss(run.workdir)
    step_key = base_key(config)
    diverged = np.zeros(np.shape(state.step), bool)
    pending, interval_start = [], time.perf_counter()
    with _sigint_requests() as interrupts, open(layout.metrics_path(run.workdir), "a") as metrics_log, _tensorboard(
        run.workdir, start) as scalars, tqdm.tqdm(total=config.train.num_steps, initial=start, desc="train",
                                                  unit="step", disable=jax.process_index() != 0) as progress:
      for step in range(start + 1, config.train.num_steps + 1):
        state, metrics = step_fn(state, _global_batch(next(run.batches), run.mesh), step_key, hparams,
                                 data_shards=run.mesh.shape["data"])
        pending.append(metrics)
        progress.update()
        at_checkpoint = step % config.train.checkpoint_every == 0 or step == config.train.num_steps
        at_eval = config.train.eval_every and step % config.train.eval_every == 0
        if step % config.train.log_every == 0 or at_checkpoint or at_eval:
          seconds = time.perf_counter() - interval_start  # training only, not the evaluation
          valid = _validate(run, state, hparams) if at_eval else {}
          means, initial_loss, diverged_now = _log_interval(
              pending, initial_loss, step, seconds, config, metrics_log, scalars, valid)
          progress.set_postfix(loss=f"{np.mean(means['loss']):.2f}", kl_z=f"{np.mean(means['kl_z']):.1f}")
          diverged |= diverged_now
          if diverged.all():
            raise _divergence(step, means, initial_loss, mngr)
          pending, interval_start = [], time.perf_counter()
        stop = bool(interrupts) or mngr.reached_preemption(step)
        if at_checkpoint or stop:
          layout.save_checkpoint(mngr, state, run.batches)
        if stop:
          mngr.wait_until_finished()
          if interrupts:
            raise Interrupted(f"interrupted: checkpoint saved at step {step}; run again to resume")
          logging.warning("Preempted at step %d: checkpoint saved", step)
          break
  finally:
    mngr.wait_until_finished()
    mngr.close()
  return state, diverged


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains config's model in workdir, resuming the checkpoint there if any, and evaluates the valid split
  every train.eval_every steps (valid/ keys of metrics.jsonl); returns the final state."""
  with layout.lock(workdir):
    run = prepare_run(config, workdir)
    layout.write_run(workdir, config, run.vocab, run.fingerprint)
    state, _ = train_loop(run, init_state(run), train_step, HParams.from_config(config))
  return state
