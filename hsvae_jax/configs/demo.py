"""The demo (`make demo`): a small HSVAE on 2,800 DBpedia sentences shipped in examples/dbpedia (14 classes).

Trains in about two minutes on one CPU core, from a checkout (the corpus is not in the wheel):
  hsvae train --config demo --workdir runs/demo
  hsvae evaluate --workdir runs/demo --split test --probe
  hsvae explain --workdir runs/demo --input examples/sentences.txt --split train
"""

import os

from hsvae_jax import default_config

# Resolved here, so the config works from any directory of a checkout.
CORPUS_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "dbpedia"))


def get_config():
  config = default_config.get_config()
  config.data.name = "dir"
  config.data.dir = CORPUS_DIR
  config.data.vocab_size = 2_000  # train's most frequent words, each seen at least twice; the rest are _UNK
  config.data.max_length = 21  # the corpus's sentences have at most 20 words
  config.data.length_buckets = (12, 16, 21)
  config.model.latent_dim = 32
  config.model.embed_dim = 64
  config.model.hidden_dim = 128
  config.train.num_steps = 1_200  # 14 epochs
  config.train.batch_size = 32  # a step's time is mostly the GRUs': half the batch, 0.4 of the time (1 core)
  config.train.log_every = 100
  config.train.eval_every = 0  # `hsvae evaluate` follows in the demo
  config.train.checkpoint_every = 600
  config.train.learning_rate = 2e-3
  config.eval.batch_size = 256
  return config
