"""The configs shipped with the package: `hsvae train --config NAME` takes NAME.py from here."""

import os

CONFIGS_DIR = os.path.dirname(os.path.abspath(__file__))


def config_path(name_or_path: str) -> str:
  """A shipped config's file for a bare name (`quickstart`), else the path as given."""
  shipped = os.path.join(CONFIGS_DIR, f"{name_or_path}.py")
  if os.sep not in name_or_path and not name_or_path.endswith(".py") and os.path.isfile(shipped):
    return shipped
  return name_or_path
