"""Shared fixtures: a tiny config that trains in seconds, and where the shared corpora live."""

import importlib.util
import pathlib

import jax
import pytest

from hsvae_jax import default_config

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

# Many tests train the same tiny model: compile its step once for the whole session (and xdist workers).
jax.config.update("jax_compilation_cache_dir", str(PROJECT_ROOT / ".pytest_cache" / "xla"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def load_config_file(name: str):
  """get_config() of configs/<name>.py, as `--config configs/<name>.py` gives it."""
  spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def tiny_config(latent: str = "hsvae"):
  config = default_config.get_config()
  config.data.name = "synthetic"
  config.data.synthetic.num_sentences = 600
  config.data.max_length = 16
  config.data.length_buckets = (8, 12, 16)
  config.model.latent = latent
  config.model.latent_dim = 8
  config.model.embed_dim = 16
  config.model.hidden_dim = 32
  config.train.batch_size = 16
  config.train.num_steps = 6
  config.train.log_every = 2
  config.train.checkpoint_every = 3
  config.eval.batch_size = 64
  return config


@pytest.fixture
def shared_data() -> pathlib.Path:
  if not SHARED_DATA.is_dir():
    pytest.skip(f"{SHARED_DATA} is absent")
  return SHARED_DATA
