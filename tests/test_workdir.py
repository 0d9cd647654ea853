"""What a workdir survives: damaged checkpoints and JSON, a second process, changed data, Ctrl-C, divergence."""

import glob
import json
import os
import shutil
import signal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hsvae_jax import api
from hsvae_jax import data
from hsvae_jax import evaluate
from hsvae_jax import sweep
from hsvae_jax import train
from hsvae_jax import workdir as layout
from hsvae_jax.errors import Diverged, InputError, Interrupted
from hsvae_jax.hparams import HParams
from conftest import tiny_config, write_dir_corpus

# One xdist worker takes the whole module (pyproject: --dist loadgroup), so its shared run is made once.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """An uninterrupted 6-step run with checkpoints at steps 3 and 6, and its final state."""
  workdir = str(tmp_path_factory.mktemp("workdir") / "straight")
  return workdir, jax.device_get(train.train_and_evaluate(tiny_config(), workdir))


def _copy(workdir: str, tmp_path) -> str:
  target = str(tmp_path / "copy")
  shutil.copytree(workdir, target)
  return target


def _damage(workdir: str, step: int) -> None:
  """Truncates the array files of a checkpoint to half, as a disk filling up mid-write would."""
  for path in glob.glob(f"{workdir}/checkpoints/{step}/state/**/d/*", recursive=True):
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)


def _logged(workdir: str) -> list[dict]:
  return [{k: v for k, v in m.items() if k != "sentences_per_s"} for m in layout.read_metrics(workdir)]


def test_damaged_newest_checkpoint_falls_back_and_resumes_bit_identically(straight, tmp_path, capfd):
  workdir, final = straight
  damaged = _copy(workdir, tmp_path)
  _damage(damaged, 6)
  step3 = _copy(workdir, tmp_path / "step3")
  shutil.rmtree(os.path.join(step3, "checkpoints", "6"))

  # Evaluation reads the step before, and leaves the damaged one where it is.
  chex.assert_trees_all_equal(evaluate.load_trained(damaged).params, evaluate.load_trained(step3).params)
  said = [line for line in capfd.readouterr().err.splitlines() if line.startswith("hsvae:")]
  assert len(said) == 1 and said[0].startswith("hsvae: warning: checkpoint step 6 does not restore (")
  assert said[0].endswith("falling back to step 3")
  assert os.path.isdir(os.path.join(damaged, "checkpoints", "6"))

  # Training resumes from step 3 to the uninterrupted run's state, bit for bit, and saves step 6 anew.
  resumed = train.train_and_evaluate(tiny_config(), damaged)
  chex.assert_trees_all_equal(jax.device_get(resumed.params), final.params)
  chex.assert_trees_all_equal(jax.device_get(resumed.opt_state), final.opt_state)
  assert _logged(damaged) == _logged(workdir)
  assert os.listdir(os.path.join(damaged, layout.DAMAGED_DIR)) == ["6"]
  assert sorted(os.listdir(os.path.join(damaged, "checkpoints"))) == ["3", "6"]


def test_a_damaged_data_position_falls_back_too(straight, tmp_path, capfd):
  workdir, final = straight
  damaged = _copy(workdir, tmp_path)
  position = os.path.join(damaged, "checkpoints", "6", "data", "process_0-of-1.json")
  open(position, "w").write(open(position).read()[:5])  # the data iterator's state, truncated
  resumed = train.train_and_evaluate(tiny_config(), damaged)
  assert "hsvae: warning: checkpoint step 6 does not restore (" in capfd.readouterr().err
  chex.assert_trees_all_equal(jax.device_get(resumed.params), final.params)


def test_no_restorable_checkpoint_is_one_error(straight, tmp_path):
  damaged = _copy(straight[0], tmp_path)
  for step in (3, 6):
    _damage(damaged, step)
  with pytest.raises(InputError, match=r"no checkpoint in .*checkpoints restores \(the oldest, step 3: "):
    evaluate.load_trained(damaged)


def test_a_checkpoint_with_the_learning_rate_in_the_optimiser_state_is_refused_and_still_evaluates(
    tmp_path, monkeypatch):
  """Checkpoints from before HParams.learning_rate kept it in optax's inject_hyperparams state."""
  config = tiny_config()
  workdir = str(tmp_path / "old")
  old_layout = lambda train_config: optax.apply_if_finite(
      optax.inject_hyperparams(optax.adam)(learning_rate=train_config.learning_rate), 10)
  with monkeypatch.context() as patched:  # an old run's step-3 checkpoint, as train_loop saves it
    patched.setattr(train, "make_optimizer", old_layout)
    run = train.prepare_run(config, workdir)
    layout.write_run(workdir, config, run.vocab, run.fingerprint)
    state = train.init_state(run)
  with layout.checkpoint_manager(workdir) as mngr:
    layout.save_checkpoint(mngr, state.replace(step=jnp.full_like(state.step, 3)), run.batches)
  with pytest.raises(InputError, match=r"no checkpoint in .*checkpoints restores \(the oldest, step 3: "):
    train.train_and_evaluate(config, workdir)
  evaluate.load_trained(workdir)  # evaluate and encode read the parameters only


def test_a_second_trainer_is_refused_naming_the_holder_and_readers_take_no_lock(straight, tmp_path):
  workdir = _copy(straight[0], tmp_path)
  before = open(os.path.join(workdir, layout.METRICS_FILE)).read()
  with layout.lock(workdir):
    with pytest.raises(InputError, match=f"in use by another process \\(PID {os.getpid()}\\)"):
      train.train_and_evaluate(tiny_config(), workdir)
    assert evaluate.load_trained(workdir).config.seed == 0  # evaluate and encode only read
  assert open(os.path.join(workdir, layout.METRICS_FILE)).read() == before
  with layout.lock(workdir):  # released when its holder is done
    pass


def test_a_refused_run_leaves_no_workdir_behind(tmp_path):
  config = tiny_config()
  config.data.name, config.data.dir = "dir", str(tmp_path / "missing")
  with pytest.raises(InputError, match="no such corpus folder"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_resuming_on_changed_training_data_is_refused(tmp_path):
  # The synthetic corpus's splits as files: its vocabulary, hence the tiny runs' compiled programs.
  splits = data.load_corpus(tiny_config().data).sentences
  config = tiny_config()
  config.train.num_steps = 3
  config.data.name, config.data.dir = "dir", write_dir_corpus(tmp_path / "corpus", splits)
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  # The same file names and config, other training data.
  write_dir_corpus(tmp_path / "corpus", splits | {"train": splits["train"][::-1]})
  config.train.num_steps = 6
  with pytest.raises(InputError, match=r"trained on another training split \(\d+ sentences"):
    train.train_and_evaluate(config, workdir)


def test_sigint_saves_a_checkpoint_and_the_run_resumes_bit_identically(straight, tmp_path):
  config = tiny_config()
  workdir = str(tmp_path / "run")

  def interrupted_at_4(state, batch, key, hparams, data_shards):
    if int(state.step) == 3:  # Ctrl-C arrives during the fourth step
      os.kill(os.getpid(), signal.SIGINT)
    return train.train_step(state, batch, key, hparams, data_shards)

  run = train.prepare_run(config, workdir)
  layout.write_run(workdir, config, run.vocab, run.fingerprint)
  handler = signal.getsignal(signal.SIGINT)
  with pytest.raises(Interrupted, match="checkpoint saved at step 4"):
    train.train_loop(run, train.init_state(run), interrupted_at_4, HParams.from_config(config))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "4"]  # no *.orbax-checkpoint-tmp
  assert signal.getsignal(signal.SIGINT) is handler
  resumed = train.train_and_evaluate(config, workdir)
  chex.assert_trees_all_equal(jax.device_get(resumed.params), straight[1].params)


def test_divergence_finishes_the_pending_save_and_names_the_last_good_checkpoint(tmp_path):
  config = tiny_config()
  config.train.checkpoint_every, config.train.log_every = 2, 2  # no finite loss in steps 3-4: diverged at 4
  workdir = str(tmp_path / "run")

  def poisoned_after_2(state, batch, key, hparams, data_shards):
    nan = hparams.replace(z_reg_weight=jnp.float32(jnp.nan))
    return train.train_step(state, batch, key, hparams if int(state.step) < 2 else nan, data_shards=data_shards)

  run = train.prepare_run(config, workdir)
  layout.write_run(workdir, config, run.vocab, run.fingerprint)
  with pytest.raises(Diverged, match=r"diverged at step 4 .*the last good checkpoint is step 2 in .*checkpoints"):
    train.train_loop(run, train.init_state(run), poisoned_after_2, HParams.from_config(config))
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]  # saved whole: no *.orbax-checkpoint-tmp
  evaluate.load_trained(workdir)


def test_a_loss_that_blows_up_is_divergence():
  # Four members whose first logged loss was 10: fine; 10x that; no finite loss; 10 skips in a row.
  stacked = [{"loss": np.array([10.0, 150.0, np.nan, 10.0]), "consecutive_skips": np.array([0, 0, 1, 9])},
             {"loss": np.array([20.0, 200.0, np.nan, np.nan]), "consecutive_skips": np.array([0, 0, 2, 10])}]
  diverged = train._diverged(stacked, np.full(4, 10.0), max_skips=10)
  assert diverged.tolist() == [False, True, True, True]


def test_truncated_metrics_line_is_dropped_and_other_damaged_json_refused(straight, tmp_path, capfd):
  workdir = _copy(straight[0], tmp_path)
  path = os.path.join(workdir, layout.METRICS_FILE)
  lines = open(path).read().splitlines(keepends=True)
  open(path, "w").write("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
  assert layout.read_metrics(workdir) == [json.loads(line) for line in lines[:-1]]
  assert f"{path}: dropped its truncated last line {len(lines)}" in capfd.readouterr().err
  open(path, "w").write(lines[0][:10] + "\n" + "".join(lines[1:]))
  with pytest.raises(InputError, match=f"{path}, line 1: damaged JSON"):
    layout.read_metrics(workdir)
  config_path = os.path.join(workdir, layout.CONFIG_FILE)
  open(config_path, "w").write(open(config_path).read()[:100])
  with pytest.raises(InputError, match=f"{config_path}, line \\d+: damaged JSON"):
    evaluate.load_trained(workdir)


def test_evaluate_in_a_workdir_it_cannot_write_warns_and_returns_the_result(straight, tmp_path, capfd):
  workdir = _copy(straight[0], tmp_path)
  os.mkdir(layout.eval_path(workdir, "test"))  # in its way: writing it fails even for root
  result = evaluate.evaluate(workdir, "test")
  assert np.isfinite(result["rec_nll"]) and 0.0 <= result["unk_rate"] <= 1.0
  err = capfd.readouterr().err
  assert f"hsvae: warning: {layout.eval_path(workdir, 'test')}: cannot write it" in err


def test_a_sweeps_workdir_is_refused_by_single_run_commands(tmp_path):
  workdir = str(tmp_path / "sweep")
  os.makedirs(workdir)
  layout.write_grid(workdir, {"alpha": [1.0, 4.0]})
  layout.write_run(workdir, tiny_config(), data.Vocabulary.from_words(["a"]), {})
  members = os.path.join(workdir, layout.MEMBERS_DIR)
  for command in (lambda: evaluate.load_trained(workdir), lambda: api.load(workdir),
                  lambda: train.train_and_evaluate(tiny_config(), workdir)):
    with pytest.raises(InputError, match=f"is a sweep's workdir; its members are workdirs of their own under {members}"):
      command()


def test_a_single_runs_workdir_is_refused_by_sweep(straight, tmp_path):
  workdir = _copy(straight[0], tmp_path)
  with pytest.raises(InputError, match="holds a single run's checkpoint, not a sweep's"):
    sweep.sweep(tiny_config(), workdir, {"alpha": [1.0, 4.0]})
