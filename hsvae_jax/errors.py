"""What the CLI turns into one line on stderr and an exit code, and warnings for the user."""

import sys


class InputError(Exception):
  """Bad user input: a missing or malformed file, an unknown key, an incompatible workdir (exit 2)."""


class Diverged(FloatingPointError):
  """Training stopped on a diverged loss; the message names the step and the last good checkpoint (exit 1)."""


class Interrupted(Exception):
  """Training stopped on SIGINT after saving a checkpoint (exit 130)."""


def warn(message: str) -> None:
  """One line on stderr: the CLI hides absl's logs, and a user must see these."""
  print(f"hsvae: warning: {message}", file=sys.stderr, flush=True)
