"""Data parallelism over fake CPU devices and processes, and preemption, through the real CLI."""

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import chex
import pytest

from conftest import PROJECT_ROOT, QUICKSTART, TINY, wait_for_logged_steps

# One xdist worker takes the whole module (pyproject: --dist loadgroup), so its shared run is made once.
pytestmark = pytest.mark.xdist_group(__name__)

# Batch 16 over 4 devices. The Gaussian latent: what is split over devices is the batch, whatever the latent,
# and its step compiles faster than HSVAE's (benchmarks/README.md).
PARALLEL = [*TINY, "--config.model.latent=gaussian"]
ENV = os.environ | {"PYTHONUNBUFFERED": "1"}


def _start(workdir, *flags, launcher=()):
  return subprocess.Popen([*launcher, sys.executable, "-m", "hsvae_jax.cli", "train", "--config", QUICKSTART,
                           "--workdir", str(workdir), *PARALLEL, *flags],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _finish(processes, timeout=420):
  """Waits for all; kills every survivor on a timeout so no orphan outlives the test."""
  deadline = time.time() + timeout
  try:
    for p in processes:
      p.wait(timeout=max(1, deadline - time.time()))
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p in processes:
    assert p.returncode == 0, p.stderr.read()[-3000:]


def _params(workdir):
  from hsvae_jax import evaluate
  return evaluate.load_trained(str(workdir)).params


def _for_steps(steps: int) -> list[str]:
  return [f"--config.train.num_steps={steps}", f"--config.train.checkpoint_every={steps}"]


@dataclasses.dataclass
class Preempted:
  workdir: pathlib.Path
  returncode: int
  stderr: str
  step: int  # of the one checkpoint saved


@pytest.fixture(scope="module")
def preempted(tmp_path_factory) -> Preempted:
  """A run over 4 devices in one process, sent SIGTERM once it has logged 3 steps: one fresh process is both
  the preemption test's and the reference of the data-parallel tests (its checkpoint, at whatever step the
  signal stopped it)."""
  workdir = tmp_path_factory.mktemp("parallel") / "one_process_4_devices"
  process = _start(workdir, "--num_cpu_devices=4", "--config.mesh.data=4", "--config.train.num_steps=100000",
                   "--config.train.log_every=1", "--config.train.checkpoint_every=100000")
  try:
    wait_for_logged_steps(workdir, 3)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
  steps = [int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit()]
  return Preempted(workdir, process.returncode, process.stderr.read(), max(steps, default=0))


def test_sigterm_saves_a_checkpoint_and_the_next_launch_resumes(hsvae_in_process, preempted, tmp_path):
  assert preempted.returncode == 143, preempted.stderr[-3000:]
  assert os.listdir(preempted.workdir / "checkpoints") == [str(preempted.step)] and 3 <= preempted.step < 100000
  # The next launch, on one device (the mesh may change on resume), in a copy: the other tests read the
  # preempted checkpoint.
  workdir = tmp_path / "resumed"
  shutil.copytree(preempted.workdir, workdir)
  hsvae_in_process("train", "--config", QUICKSTART, "--workdir", workdir, *PARALLEL,
                   f"--config.train.num_steps={preempted.step + 2}", "--config.train.log_every=1",
                   "--config.train.checkpoint_every=100000")
  logged = [json.loads(line)["step"] for line in open(workdir / "metrics.jsonl")]
  assert logged == list(range(1, preempted.step + 3))


# Adam divides by sqrt(v): where a gradient is near zero, the reordered float32 sums of another device
# count move a parameter by up to a few 1e-7 in a few steps (measured: max abs difference 2.2e-7 after 4).


def test_batch_split_over_4_devices_trains_the_same_model(hsvae_in_process, preempted, tmp_path):
  hsvae_in_process("train", "--config", QUICKSTART, "--workdir", tmp_path / "one", *PARALLEL,
                   *_for_steps(preempted.step))
  chex.assert_trees_all_close(_params(preempted.workdir), _params(tmp_path / "one"), rtol=1e-5, atol=1e-5)


def test_two_processes_of_two_devices_train_the_same_model(preempted, tmp_path):
  # launch/local.sh starts the two processes with their coordinator flags and stops both if one fails.
  _finish([_start(tmp_path / "two", *_for_steps(preempted.step),
                  launcher=("bash", str(PROJECT_ROOT / "launch" / "local.sh"), "2", "2"))])
  chex.assert_trees_all_close(_params(preempted.workdir), _params(tmp_path / "two"), rtol=1e-5, atol=1e-5)


# Per-device packing of the real tokens, checked in one fresh process with 4 fake devices for the axis types
# it is given (argv): 8 sentences of
# 10 tokens, 2 per device; half a device's 20 rows rounds up to a capacity of 16, which every device's
# real rows (13, 7, 8 and 10) fit. The loss reads the shard count from its argument, not the mesh: on
# Auto axes no mesh is set (Explicit axes need one set, for JAX's own sharding rules).
PACKING_SCRIPT = """
import contextlib, functools, json, re, sys
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_num_cpu_devices", 4)
from hsvae_jax.models import decoders

keys = jax.random.split(jax.random.key(0), 3)
kernel = jax.random.normal(keys[1], (6, 12))
inputs = (jax.random.normal(keys[0], (80, 6)), jax.random.randint(keys[2], (8, 10), 0, 12),
          jnp.array([3, 10, 2, 5, 7, 1, 4, 6]))

def total(states, kernel, tokens, lengths, capacity):
  return decoders.sequence_nll(lambda x: x @ kernel, states, tokens, lengths, capacity, data_shards=4).sum()

result = {}
for axis_type in sys.argv[1:]:
  mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType[axis_type],))
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  states, tokens, lengths = (jax.device_put(x, split) for x in inputs)
  with jax.set_mesh(mesh) if axis_type == "Explicit" else contextlib.nullcontext():
    for capacity in (1.0, 0.5):
      step = jax.jit(jax.value_and_grad(functools.partial(total, capacity=capacity), (0, 1)))
      hlo = step.lower(states, kernel, tokens, lengths).compile().as_text()
      value, grads = step(states, kernel, tokens, lengths)
      result.setdefault(axis_type, {})[str(capacity)] = {
          "value": float(value), "grads": [np.asarray(g).tolist() for g in grads],
          "all_gathers": len(re.findall(r"all-gather[.0-9]* = ", hlo)),
          "projected_rows": sorted({int(m) for m in re.findall(r"f32\\[(\\d+),12\\]\\S* dot\\(", hlo)})}
print(json.dumps(result))
"""
AXIS_TYPES = ["Auto", "Explicit"]  # train.make_mesh's; jax.make_mesh's default


@pytest.fixture(scope="module")
def packing() -> dict:
  """PACKING_SCRIPT's results for each axis type: one process (and one start of JAX) for both."""
  out = subprocess.run([sys.executable, "-c", PACKING_SCRIPT, *AXIS_TYPES], capture_output=True, text=True, env=ENV,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_each_device_packs_its_own_real_tokens_for_the_vocabulary_projection(packing, axis_type):
  every_row, packed = packing[axis_type]["1.0"], packing[axis_type]["0.5"]
  assert every_row["projected_rows"] == [20]  # each device projects its own 20 rows
  assert packed["projected_rows"] == [16, 20]  # 16 packed rows; the fallback's 20, for batches that overflow
  assert packed["all_gathers"] == every_row["all_gathers"] == 0  # no device reads another's states
  assert abs(packed["value"] - every_row["value"]) <= 1e-5 * abs(every_row["value"])
  chex.assert_trees_all_close(packed["grads"], every_row["grads"], rtol=1e-5, atol=1e-6)
