"""The one exception the CLI turns into a one-line message and exit code 2."""


class InputError(Exception):
  """Bad user input: a missing or malformed file, an unknown key, an incompatible workdir."""
