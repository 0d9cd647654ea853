"""The paper's settings on Yelp sentiment sentences (2 classes; Shen et al. 2017, 444k train sentences).

Online, TFDS downloads the corpus; offline, point data.dir at a local copy in the paper's format
(<split>.txt, <split>_class_label.txt, vocab.txt), e.g. ../shared/data/yelp:
  hsvae train --config yelp --workdir runs/yelp_hsvae768
  hsvae train --config yelp --workdir runs/yelp_hsvae768 --config.data.dir=../shared/data/yelp
  hsvae evaluate --workdir runs/yelp_hsvae768 --split test
32 latent dimensions, or the Gaussian VAE baseline: --config.model.latent_dim=32, --config.model.latent=gaussian.
"""

from hsvae_jax import default_config


def get_config():
  config = default_config.get_config()
  config.data.name = "yelp"
  config.data.max_length = 16  # <EOS> included
  config.data.length_buckets = (8, 12, 16)
  config.model.latent_dim = 768
  config.train.batch_size = 256
  config.train.num_steps = 26_000  # 15 epochs of 1_735 steps (PAPER.md)
  return config
