"""The train step and loop: bucketed compilation, skipped non-finite updates, exact resume, refusals."""

import functools
import json
import os
import pathlib
import struct

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from hsvae_jax import data
from hsvae_jax import default_config
from hsvae_jax import evaluate
from hsvae_jax import train
from hsvae_jax import workdir as layout
from hsvae_jax.errors import InputError
from hsvae_jax.hparams import HParams
from hsvae_jax.models import make_model
from conftest import load_config_file, tiny_config


def _state_and_batches(config, workdir):
  """A fresh state and the run's batches, on its mesh as train_loop places them: train_step is then the
  program that training compiles (another placement of the same arrays compiles another)."""
  run = train.prepare_run(config, str(workdir))
  on_mesh = jax.sharding.NamedSharding(run.mesh, jax.sharding.PartitionSpec("data"))
  return train.init_state(run), (jax.device_put(batch, on_mesh) for batch in run.batches)


def test_step_compiles_at_most_once_per_length_bucket(tmp_path):
  # Tracing does not depend on the latent family; the Gaussian VAE's step compiles fastest.
  config = tiny_config("gaussian")
  config.data.length_buckets = (8, 16)  # two buckets show it as well as three, at one compilation less
  config.train.batch_size = 2  # small batches so that every bucket turns up
  state, batches = _state_and_batches(config, tmp_path)
  step = jax.jit(chex.assert_max_traces(train.train_step.__wrapped__, n=len(config.data.length_buckets)),
                 donate_argnums=0)
  hparams = HParams.from_config(config)
  lengths_seen = set()
  for _ in range(40):
    batch = next(batches)
    lengths_seen.add(batch["tokens"].shape[1])
    state, _ = step(state, batch, jax.random.key(1), hparams)
  assert lengths_seen == set(config.data.length_buckets)  # every bucket was really exercised
  assert int(state.step) == 40


def test_a_second_run_of_the_same_model_reuses_the_compiled_step(tmp_path):
  config = tiny_config("gaussian")
  config.train.num_steps = 2
  train.train_and_evaluate(config, str(tmp_path / "first"))
  compiled = train.train_step._cache_size()
  train.train_and_evaluate(config, str(tmp_path / "second"))
  assert train.train_step._cache_size() == compiled  # the optimizer, static in the state, is the same object


def test_non_finite_update_is_skipped_and_counted(tmp_path):
  config = tiny_config()
  state, batches = _state_and_batches(config, tmp_path)
  batch = next(batches)
  hparams = HParams.from_config(config)
  state, _ = train.train_step(state, batch, jax.random.key(1), hparams)
  params_before = jax.device_get(state.params)
  poisoned = hparams.replace(z_reg_weight=jnp.float32(jnp.nan))
  state, metrics = train.train_step(state, batch, jax.random.key(1), poisoned)
  assert not np.isfinite(float(metrics["loss"]))
  assert int(metrics["skipped_steps"]) == 1 and int(metrics["consecutive_skips"]) == 1
  chex.assert_trees_all_equal(jax.device_get(state.params), params_before)
  state, metrics = train.train_step(state, batch, jax.random.key(1), hparams)
  assert int(metrics["skipped_steps"]) == 1 and int(metrics["consecutive_skips"]) == 0
  assert int(state.step) == 3


def _read_metrics(workdir):
  with open(os.path.join(workdir, layout.METRICS_FILE)) as f:
    return [{k: v for k, v in json.loads(line).items() if k != "sentences_per_s"} for line in f]


def _tensorboard_scalars(workdir) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} from the workdir's event files (TFRecords: length, its CRC, an Event, its CRC)."""
  scalars = {}
  for path in sorted(pathlib.Path(workdir).glob("events.out.tfevents.*")):
    raw = path.read_bytes()
    while raw:
      (length,) = struct.unpack("<Q", raw[:8])
      event = event_pb2.Event.FromString(raw[12:12 + length])
      raw = raw[12 + length + 4:]
      for value in event.summary.value:
        scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  return scalars


def test_valid_split_is_evaluated_every_eval_every_steps_beside_the_training_metrics(tmp_path):
  config = tiny_config()
  config.train.eval_every = 3
  train.train_and_evaluate(config, str(tmp_path))
  logged = layout.read_metrics(str(tmp_path))
  assert [m["step"] for m in logged] == [2, 3, 4, 6]
  assert [m["step"] for m in logged if "valid/elbo" in m] == [3, 6]
  assert logged[1]["valid/elbo"] != logged[3]["valid/elbo"]
  final = evaluate.evaluate(str(tmp_path), "valid")  # the checkpoint of step 6
  for key in ("rec_nll", "kl_z", "kl_gamma", "elbo", "zero_fraction", "active_dims", "active_jaccard",
              "usage_entropy", "gate_std"):
    assert logged[3][f"valid/{key}"] == pytest.approx(final[key], rel=1e-6), key
  scalars = _tensorboard_scalars(tmp_path)
  for line in logged:
    for key, value in line.items():
      if key != "step":
        assert scalars[key][line["step"]] == pytest.approx(value, rel=1e-6), (key, line["step"])


@pytest.mark.parametrize("latent", ["hsvae", "gaussian"])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, latent):
  config = tiny_config(latent)
  straight = train.train_and_evaluate(config, str(tmp_path / "straight"))
  config.train.num_steps = 3  # "interrupted" at step 3, then resumed to the end
  train.train_and_evaluate(config, str(tmp_path / "resumed"))
  config.train.num_steps = 6
  resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert int(resumed.step) == 6
  chex.assert_trees_all_equal(jax.device_get(resumed.params), jax.device_get(straight.params))
  chex.assert_trees_all_equal(jax.device_get(resumed.opt_state), jax.device_get(straight.opt_state))
  assert _read_metrics(tmp_path / "resumed") == _read_metrics(tmp_path / "straight")


def test_token_capacity_changes_speed_only_so_a_run_may_resume_under_another(tmp_path):
  """Packing 70% of the rows trains the every-row model: the first 3 batches are 69%, 68% and 73% real,
  so two are packed and the third overflows and takes every row. Packing is the decoder's: the Gaussian
  latent's steps compile faster than HSVAE's."""
  config = tiny_config("gaussian")
  config.model.token_capacity = 1.0
  every_row = train.train_and_evaluate(config, str(tmp_path / "every_row"))
  config.model.token_capacity, config.train.num_steps = 0.7, 3
  train.train_and_evaluate(config, str(tmp_path / "packed_then_every_row"))
  config.model.token_capacity, config.train.num_steps = 1.0, 6
  resumed = train.train_and_evaluate(config, str(tmp_path / "packed_then_every_row"))
  # Packed rows are summed in another order: float32 rounding, moved by Adam where gradients are near 0.
  chex.assert_trees_all_close(jax.device_get(resumed.params), jax.device_get(every_row.params), rtol=1e-4, atol=1e-5)


def test_checkpoint_of_another_config_is_refused_and_nothing_is_overwritten(tmp_path):
  config = tiny_config()
  config.train.num_steps = 3
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  files = {name: open(os.path.join(workdir, name), "rb").read()
           for name in (layout.CONFIG_FILE, layout.VOCAB_FILE, layout.METRICS_FILE)}
  config.model.latent_dim = 4
  with pytest.raises(InputError, match="model.latent_dim"):
    train.train_and_evaluate(config, workdir)
  for name, content in files.items():
    assert open(os.path.join(workdir, name), "rb").read() == content


@pytest.mark.parametrize("name", ["quickstart", "default", "dbpedia", "yahoo", "yelp"])
def test_every_config_file_builds_a_model(name):
  config = load_config_file(name)
  model = make_model(config.model, 50)
  shapes = jax.eval_shape(functools.partial(train.create_train_state, model, train.make_optimizer(config.train)),
                          jax.random.key(0))
  assert shapes.params["posterior_head"]["mu"]["kernel"].shape == (config.model.hidden_dim, config.model.latent_dim)
  assert max(config.data.length_buckets) == config.data.max_length


def test_vocabulary_keeps_the_first_vocab_size_words_of_the_corpus_file(tmp_path):
  corpus = data.Corpus({"train": ["a b"]}, {"train": None}, ["the", "a", "_UNK", "of", "b"], None, "dir")
  data_config = default_config.get_config().data
  data_config.vocab_size = 3
  vocab = train.prepare_vocabulary(corpus, data_config, str(tmp_path), resuming=False)
  assert vocab.encode("the a of b", 10).tolist() == [3, 4, 2, 2, 1]  # <UNK> is 2, <EOS> 1
  data_config.vocab_size = 20_000
  assert len(train.prepare_vocabulary(corpus, data_config, str(tmp_path), resuming=False)) == 3 + 4


def test_a_vocabulary_under_which_most_training_words_are_unknown_is_warned_of(tmp_path, capfd):
  folder = tmp_path / "corpus"
  folder.mkdir()
  (folder / "train.txt").write_text("\n".join(data.load_corpus(tiny_config().data).sentences["train"]) + "\n")
  (folder / "vocab.txt").write_text("zebra\nquartz\n")  # another corpus's
  config = tiny_config()
  config.data.name, config.data.dir = "dir", str(folder)
  train.prepare_run(config, str(tmp_path / "run"))
  assert "hsvae: warning: 100% of the training tokens are unknown to the vocabulary" in capfd.readouterr().err
