"""The paper's architecture and training settings on a corpus in the paper's format.

Run:
  hsvae train --config default --workdir runs/default \
      --config.data.name=dir --config.data.dir=PATH
"""

from hsvae_jax.default_config import get_config  # pylint: disable=unused-import
