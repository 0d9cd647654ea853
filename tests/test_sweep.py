"""A vmapped grid equals its members trained one by one, and a diverging member stops nobody."""

import json
import os

import chex
import jax
import pytest

from hsvae_jax import evaluate
from hsvae_jax import report
from hsvae_jax import sweep
from hsvae_jax import train
from hsvae_jax import workdir as layout
from hsvae_jax.errors import InputError
from conftest import tiny_config


def test_parse_grid():
  assert sweep.parse_grid(["alpha=1,4", "learning_rate=1e-3"]) == {"alpha": [1.0, 4.0], "learning_rate": [1e-3]}
  for bad in (["gamma=1"], ["alpha=1,x"], ["alpha=1", "alpha=2"], []):
    with pytest.raises(InputError):
      sweep.parse_grid(bad)


def test_a_grid_s_members_are_its_product_each_with_its_own_config():
  members = sweep.members_of({"alpha": [1.0, 4.0], "learning_rate": [3e-3, 1e3]})
  assert [(m["alpha"], m["learning_rate"]) for m in members] == [(1.0, 3e-3), (1.0, 1e3), (4.0, 3e-3), (4.0, 1e3)]
  base = tiny_config()
  config = sweep.member_config(base, members[1])
  assert (config.hparams.alpha, config.train.learning_rate) == (1.0, 1e3)
  assert base.to_dict() == tiny_config().to_dict()  # the base config is left as it was


# The knob's sweep (test_adaptive_gates) trains the same program: two members of the tiny model, one length
# bucket. One worker takes both, so the second finds it compiled.
@pytest.mark.xdist_group("tiny_sweep")
def test_members_equal_single_runs_and_divergence_is_contained(tmp_path):
  config = tiny_config()
  config.train.num_steps = 4
  config.train.eval_every = 4
  config.data.length_buckets = (16,)
  # A learning rate of 1000 blows the loss up at once (to ~4e5 from ~65); alpha 1 is not the default.
  grid = {"alpha": [1.0], "learning_rate": [3e-3, 1e3]}
  results = sweep.sweep(config, str(tmp_path / "sweep"), grid, split="test")

  assert [(r["alpha"], r["learning_rate"]) for r in results] == [(1.0, 3e-3), (1.0, 1e3)]
  assert [r["diverged"] for r in results] == [False, True]
  for entry in results:
    if not entry["diverged"]:
      assert {"zero_fraction", "hoyer", "rec_nll", "probe_accuracy", "probe_accuracy_n10"} <= set(entry)
  assert json.load(open(tmp_path / "sweep" / "sweep.json")) == json.loads(json.dumps(results))

  member = results[0]
  single_config = tiny_config()
  single_config.train.num_steps = 4
  single_config.data.length_buckets = (16,)
  single_config.hparams.alpha = 1.0
  single_config.train.learning_rate = 3e-3
  single = train.train_and_evaluate(single_config, str(tmp_path / "single"))
  trained = evaluate.load_trained(member["workdir"])
  # vmap batches the matmuls, which reorders float32 sums: equal to float tolerance, not bit for bit.
  chex.assert_trees_all_close(trained.params, jax.device_get(single.params), rtol=1e-4, atol=1e-5)
  assert evaluate.evaluate(str(tmp_path / "single"), "test")["rec_nll"] == pytest.approx(member["rec_nll"], rel=1e-4)
  assert os.path.isdir(os.path.join(member["workdir"], "checkpoints"))
  # The sweep's valid split evaluation logs one number per member.
  valid_elbo = layout.read_metrics(str(tmp_path / "sweep"))[-1]["valid/elbo"]
  assert len(valid_elbo) == 2
  assert valid_elbo[0] == pytest.approx(evaluate.evaluate(str(tmp_path / "single"), "valid")["elbo"], rel=1e-4)

  # The report takes the sweep's workdir for its converged members and plots their frontier.
  paths = report.write_report([str(tmp_path / "sweep")], str(tmp_path / "report"))
  assert open(paths["frontier"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  table_rows = [line for line in open(paths["table"]) if line.startswith("|")][2:]
  assert len(table_rows) == 1  # the member that did not diverge


def test_an_invalid_grid_value_is_refused_before_anything_is_written(tmp_path):
  with pytest.raises(InputError, match=r"grid member learning_rate--1: train\.learning_rate=-1\.0: must be"):
    sweep.sweep(tiny_config(), str(tmp_path / "sweep"), {"learning_rate": [1e-3, -1.0]})
  assert not (tmp_path / "sweep").exists()
