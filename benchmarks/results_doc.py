"""docs/results.md is shared: each benchmark script owns one marked section of it and rewrites only that."""

import os
import re
import shlex


def command(script: str, argv: list[str]) -> str:
  """The shell command that reruns benchmarks/<script> with argv, as the sections quote it."""
  return " ".join(shlex.quote(a) for a in [".venv/bin/python", f"benchmarks/{script}", *argv])


def write_section(path: str, name: str, markdown: str) -> None:
  """Puts markdown between `<!-- begin NAME -->` and `<!-- end NAME -->`, appending the pair if absent."""
  begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
  block = f"{begin}\n{markdown.strip()}\n{end}\n"
  text = open(path).read() if os.path.exists(path) else "# Results\n\n"
  pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
  text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
