"""Shared fixtures: a tiny config that trains in seconds, and where the shared corpora live."""

import pathlib

import pytest

from hsvae_jax import default_config

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
