"""The paper's HSVAE exactly (PAPER.md): Beta gates from the encoder state, per-sentence KL_gamma, no knob.

The default recipe (default_config.py) changes the gate and the KL on it so that codes adapt to the sentence;
this config turns those changes off, for replication:
  hsvae train --config paper --workdir runs/paper --config.data.name=dir --config.data.dir=PATH
Any other config becomes the paper's with the same four overrides:
  --config.model.gate=beta --config.hparams.target_active=0 --config.hparams.usage_weight=0 \
  --config.hparams.gate_entropy_weight=0
"""

from hsvae_jax import default_config


def get_config():
  return default_config.use_paper_model(default_config.get_config())
