"""The paper's settings on DBpedia (14 classes; the HSVAE authors' sentence-level split, 140k train sentences).

Online, TFDS downloads the corpus; offline, point data.dir at a local copy in the paper's format
(<split>.txt, <split>_class_label.txt, vocab.txt), e.g. ../shared/data/dbpedia:
  hsvae train --config dbpedia --workdir runs/dbpedia_hsvae768
  hsvae train --config dbpedia --workdir runs/dbpedia_hsvae768 --config.data.dir=../shared/data/dbpedia
  hsvae evaluate --workdir runs/dbpedia_hsvae768 --split test
32 latent dimensions, or the Gaussian VAE baseline: --config.model.latent_dim=32, --config.model.latent=gaussian.
"""

from hsvae_jax import default_config


def get_config():
  config = default_config.get_config()
  config.data.name = "dbpedia"
  config.data.max_length = 61  # <EOS> included
  config.data.length_buckets = (16, 32, 48, 61)
  config.model.latent_dim = 768
  config.train.batch_size = 256
  config.train.num_steps = 8_200  # 15 epochs of 547 steps (PAPER.md)
  return config
