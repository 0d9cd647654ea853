"""The paper's settings on Yahoo! Answers (10 classes; the HSVAE authors' sentence-level split, 100k train sentences).

Online, TFDS downloads the corpus; offline, point data.dir at a local copy in the paper's format
(<split>.txt, <split>_class_label.txt, vocab.txt), e.g. ../shared/data/yahoo:
  hsvae train --config yahoo --workdir runs/yahoo_hsvae768
  hsvae train --config yahoo --workdir runs/yahoo_hsvae768 --config.data.dir=../shared/data/yahoo
  hsvae evaluate --workdir runs/yahoo_hsvae768 --split test
32 latent dimensions, or the Gaussian VAE baseline: --config.model.latent_dim=32, --config.model.latent=gaussian.
"""

from hsvae_jax import default_config


def get_config():
  config = default_config.get_config()
  config.data.name = "yahoo"
  config.data.max_length = 31  # <EOS> included
  config.data.length_buckets = (12, 20, 31)
  config.model.latent_dim = 768
  config.train.batch_size = 256
  config.train.num_steps = 5_900  # 15 epochs of 391 steps (PAPER.md)
  return config
