"""Quickstart: a small HSVAE on the built-in synthetic topic corpus; trains in about 20 s on 2 CPU cores.

Run:
  hsvae train --config quickstart --workdir runs/quickstart
  hsvae evaluate --workdir runs/quickstart --split test
The Gaussian VAE baseline on the same data:
  hsvae train --config quickstart --workdir runs/quickstart_gaussian --config.model.latent=gaussian
"""

from hsvae_jax import default_config


def get_config():
  config = default_config.get_config()
  config.data.name = "synthetic"
  config.data.max_length = 16
  config.data.length_buckets = (8, 12, 16)
  config.model.latent_dim = 32
  config.model.embed_dim = 64
  config.model.hidden_dim = 128
  config.train.num_steps = 300
  config.train.batch_size = 64
  config.train.log_every = 50
  config.train.eval_every = 150
  config.train.checkpoint_every = 300
  config.train.learning_rate = 2e-3  # a small model on easy data: converges in fewer steps
  config.hparams.target_active = 0.5  # about half of the 32 dims a sentence (docs/results.md: gate study)
  config.eval.batch_size = 256
  return config
