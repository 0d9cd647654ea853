"""The `hsvae` command: train, evaluate, encode and explain. Thin: parsing and printing, the work is elsewhere."""

import contextlib
import json
import os
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from hsvae_jax import configs
from hsvae_jax.errors import Diverged, InputError, Interrupted, warn

DIVERGED_EXIT_CODE = 1
BAD_INPUT_EXIT_CODE = 2
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, so supervisors see the run did not finish
SYNOPSES = {
    "train": "hsvae train --config quickstart|FILE --workdir DIR [--config.KEY=VALUE ...]",
    "evaluate": "hsvae evaluate --workdir DIR [--split valid|test|train] [--probe]",
    "encode": "hsvae encode --workdir DIR --input FILE --output FILE.npz [--print]",
    "decode": "hsvae decode --workdir DIR --input FILE.npz [--max-length N] [--seed S]",
    "explore": "hsvae explore --workdir DIR --input FILE [--max-length N]",
    "explain": "hsvae explain --workdir DIR --input FILE [--split valid|test|train] [--top N]",
    "sweep": "hsvae sweep --config quickstart|FILE --workdir DIR --grid alpha=1,4,16 --grid beta=1,4 "
             "[--config.KEY=VALUE ...]",
    "report": "hsvae report --workdir DIR [DIR ...] --output OUT",
    "embed": "hsvae embed --encoder-path DIR --input FILE --output FILE.npy [--pooling mean|cls] [--batch-size N] "
             "[--nomodules-json]",
}
COMMANDS = tuple(SYNOPSES)
USAGE = (f"usage: hsvae {{{','.join(COMMANDS)}}} [flags]   (hsvae COMMAND --help lists its flags)\n  "
         + "\n  ".join(SYNOPSES.values()))
_DISTRIBUTED = ("coordinator_address", "num_processes", "process_id", "num_cpu_devices")
# The flags each command reads; another command's flag is refused.
COMMAND_FLAGS = {
    "train": ("config", "workdir", *_DISTRIBUTED),
    "evaluate": ("workdir", "split", "probe"),
    "encode": ("workdir", "input", "output", "print"),
    "decode": ("workdir", "input", "max-length", "seed"),
    "explore": ("workdir", "input", "max-length"),
    "explain": ("workdir", "input", "split", "top"),
    "sweep": ("config", "workdir", "grid", "split", *_DISTRIBUTED),
    "report": ("workdir", "output"),
    "embed": ("encoder-path", "input", "output", "pooling", "batch-size", "modules-json"),
}

_CONFIG = config_flags.DEFINE_config_file("config", None, "A config file, or the name of one shipped in hsvae_jax/configs/ (demo, quickstart, default, paper, dbpedia, yahoo, yelp).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
_SPLIT = flags.DEFINE_string("split", "valid", "Split to evaluate (`explain`: whose sentences show what each "
                             "dimension stands for): valid, test or train.")
_INPUT = flags.DEFINE_string("input", None, "Text file to encode, one sentence a line.")
_TOP = flags.DEFINE_integer("top", 3, "`explain`: the split's sentences shown for each active dimension.")
_OUTPUT = flags.DEFINE_string("output", None, "Where `encode` writes the codes (.npz).")
_GRID = flags.DEFINE_multi_string("grid", [], "`sweep`: NAME=V1,V2,... (NAME: a key of the config's hparams "
                                   "section, or learning_rate); members are the cross product.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs "
                                   "outside SLURM and TPU VMs (which are detected).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --coordinator_address: processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --coordinator_address: this process's index.")
_NUM_CPU_DEVICES = flags.DEFINE_integer("num_cpu_devices", None, "Split the CPU into this many JAX devices.")
_PROBE = flags.DEFINE_bool("probe", False, "`evaluate`: add linear-probe accuracies (needs class labels).")
_ENCODER_PATH = flags.DEFINE_string("encoder-path", None, "`embed`: a Hugging Face BERT-family model directory.")
_POOLING = flags.DEFINE_enum("pooling", "mean", ["mean", "cls"], "`embed`: how token states become one vector.")
_BATCH_SIZE = flags.DEFINE_integer("batch-size", 64, "`embed`: sentences per batch.")
_MODULES_JSON = flags.DEFINE_bool("modules-json", True, "`embed`: apply the model directory's sentence-transformers "
                                  "modules.json (its pooling, Normalize), as SentenceTransformer.encode does.")
_PRINT = flags.DEFINE_bool("print", False, "`encode` also prints each sentence's non-zero dimensions.")
_MAX_LENGTH = flags.DEFINE_integer("max-length", None, "`decode`, `explore`: tokens a generated sentence may take "
                                   "(<EOS> included); the model's data.max_length by default.")
_SEED = flags.DEFINE_integer("seed", None, "`decode`: sample the words with this seed instead of taking the likeliest.")


def _fail(message: str, code: int = BAD_INPUT_EXIT_CODE) -> None:
  for line in message.splitlines():
    print(f"hsvae: error: {line}", file=sys.stderr)
  sys.exit(code)


def _config_path(argv: list[str]) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _config_file_error(error: BaseException, path: str) -> str | None:
  """Where loading the config file failed, as `file, line N: what`; None if the error is not the file's."""
  chain = []
  while error is not None and error not in chain:
    chain.append(error)
    error = error.__cause__ or error.__context__
  target = os.path.abspath(path)
  for link in reversed(chain):  # the innermost first
    if isinstance(link, SyntaxError) and link.filename and os.path.abspath(link.filename) == target:
      return f"{path}, line {link.lineno}: {link.msg}"
    lines = [frame.lineno for frame in traceback.extract_tb(link.__traceback__)
             if os.path.abspath(frame.filename) == target]
    if lines:
      return f"{path}, line {lines[-1]}: {type(link).__name__}: {link}"
    if isinstance(link, AttributeError) and "get_config" in str(link):
      return f"{path}: defines no get_config() function"
  return None


def _command_help(command: str) -> str:
  lines = [f"usage: {SYNOPSES[command]}", "", "flags:"]
  for name in COMMAND_FLAGS[command]:
    flag = flags.FLAGS[name]
    default = "" if flag.default in (None, [], False) else f" (default: {flag.default})"
    lines.append(f"  --{name}: {flag.help}{default}")
  if "config" in COMMAND_FLAGS[command]:
    lines.append("  --config.KEY=VALUE: override one key of the config (hsvae_jax/default_config.py lists them)")
  return "\n".join(lines)


def _refuse_other_commands_flags(command: str) -> None:
  ours = {name for names in COMMAND_FLAGS.values() for name in names}
  for name in sorted(ours - set(COMMAND_FLAGS[command])):
    if flags.FLAGS[name].present:
      _fail(f"--{name} is not a flag of `hsvae {command}` (hsvae {command} --help lists its flags)")


def _named_configs(argv: list[str]) -> list[str]:
  """argv with `--config NAME` of a shipped config replaced by its file."""
  resolved = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      resolved[i] = "--config=" + configs.config_path(arg.split("=", 1)[1])
    elif arg == "--config" and i + 1 < len(argv):
      resolved[i + 1] = configs.config_path(argv[i + 1])
  return resolved


def _load_flags(argv: list[str]) -> list[str]:
  """Parses the flags and loads --config; a config file that fails to load is one line naming its line."""
  argv = _named_configs(argv)
  try:
    leftover = flags.FLAGS([argv[0]] + argv[2:])
    if flags.FLAGS["config"].present:
      _CONFIG.value.keys()  # config_flags reports a failed load only at first use
  except Exception as error:  # a config file can raise anything
    located = _config_file_error(error, _config_path(argv) or "")
    if located:
      _fail(located)
    if isinstance(error, flags.Error):
      _fail(str(error).splitlines()[0])
    if isinstance(error, (AttributeError, KeyError)):
      # A locked config: an override naming a key the config does not have.
      _fail(f"unknown config key in --config override: {error}")
    if isinstance(error, OSError):
      _fail(f"cannot load --config: {str(error).strip().splitlines()[-1].strip()}")
    raise
  return leftover


def _parse(argv: list[str]) -> list[str]:
  if len(argv) > 1 and argv[1] in ("-h", "--help", "help"):
    print(USAGE)
    sys.exit(0)
  if argv[1:] == ["--version"]:
    from hsvae_jax import __version__
    print(f"hsvae {__version__}")
    sys.exit(0)
  if len(argv) < 2 or argv[1] not in COMMANDS:
    print(USAGE, file=sys.stderr)
    _fail(f"unknown command {argv[1]!r}" if len(argv) > 1 else "a command is required")
  if {"-h", "--help", "-help", "--helpfull"} & set(argv[2:]):
    print(_command_help(argv[1]))
    sys.exit(0)
  leftover = _load_flags(argv)
  _refuse_other_commands_flags(argv[1])
  if len(leftover) > 1 and argv[1] != "report":  # report takes more workdirs after --workdir
    _fail(f"unexpected arguments: {' '.join(leftover[1:])}")
  return [argv[0], argv[1], *leftover[1:]]


def _require(*flag_holders) -> None:
  for holder in flag_holders:
    if holder.value is None:
      _fail(f"--{holder.name} is required")


def _train() -> None:
  _require(_CONFIG, _WORKDIR)
  from hsvae_jax import distributed, train  # heavy imports after flags are known to be good
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _NUM_CPU_DEVICES.value)
  state = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if int(state.step) < _CONFIG.value.train.num_steps:
    print(f"preempted: checkpoint saved at step {int(state.step)}; run again to resume", file=sys.stderr)
    sys.exit(PREEMPTED_EXIT_CODE)


def _probe_warnings_summarised() -> contextlib.AbstractContextManager:
  """probes.convergence_summary(); nothing where scikit-learn (the [eval] extra), hence any probe, is absent."""
  try:
    from hsvae_jax import probes
  except ImportError:
    return contextlib.nullcontext()
  return probes.convergence_summary()


def _evaluate() -> None:
  _require(_WORKDIR)
  from hsvae_jax import evaluate
  with _probe_warnings_summarised():
    result = evaluate.evaluate(_WORKDIR.value, _SPLIT.value, probe=_PROBE.value)
  print(json.dumps(result))


def _output_file(path: str, suffix: str) -> str:
  """The file a command will write (numpy adds suffix when it is missing), refused before any work when it
  cannot be written there."""
  written = path if path.endswith(suffix) else path + suffix
  if os.path.isdir(path) or os.path.isdir(written):
    _fail(f"--output {path} is a directory; give a file name")
  if not os.path.isdir(os.path.dirname(os.path.abspath(written))):
    _fail(f"--output {path}: its directory does not exist")
  return written


def _input_sentences() -> list[str]:
  """--input's lines; an empty file is refused before the model loads, and empty lines are a warning."""
  from hsvae_jax.data import read_lines
  sentences = read_lines(_INPUT.value)
  if not sentences:
    _fail(f"{_INPUT.value}: no sentences")
  empty = sum(not sentence.split() for sentence in sentences)
  if empty:
    warn(f"{empty} of the {len(sentences)} sentences are empty; each is encoded as a lone <EOS>")
  return sentences


def _encode() -> None:
  _require(_WORKDIR, _INPUT, _OUTPUT)
  output = _output_file(_OUTPUT.value, ".npz")
  from hsvae_jax import api
  sentences = _input_sentences()
  codes = api.load(_WORKDIR.value).encode(sentences)
  codes.save(output)
  if _PRINT.value:
    for sentence, code in zip(sentences, codes.codes):
      print(f"{sentence}\n  {code.nnz} non-zero dims: {_active(code)}")
  print(f"wrote {len(sentences)} codes to {output}")


def _active(code) -> dict[int, float]:
  """A CSR row's non-zero dimensions and their values."""
  return {int(i): round(float(v), 3) for i, v in zip(code.indices, code.data)}


def _decode() -> None:
  _require(_WORKDIR, _INPUT)
  import jax
  from hsvae_jax import api
  codes = api.load_codes(_INPUT.value)
  key = None if _SEED.value is None else jax.random.key(_SEED.value)
  for sentence in api.load(_WORKDIR.value).decode(codes, _MAX_LENGTH.value, key):
    print(sentence)


def _explore() -> None:
  """Each sentence's active dimensions, its greedy reconstruction, and what each dimension switched off changes."""
  _require(_WORKDIR, _INPUT)
  import numpy as np
  from hsvae_jax import api
  sentences = _input_sentences()
  model = api.load(_WORKDIR.value)
  codes = model.encode(sentences).codes
  for sentence, code in zip(sentences, codes):
    active = _active(code)
    dense = code.toarray()[0]
    switched_off = [np.where(np.arange(len(dense)) == dim, 0.0, dense) for dim in active]
    decoded = model.decode(np.stack([dense, *switched_off]), _MAX_LENGTH.value)
    print(f"{sentence}\n  {len(active)} active dims: {active}\n  decoded: {decoded[0]}")
    for dim, text in zip(active, decoded[1:]):
      print(f"  without {dim}: {text}")


def _explain() -> None:
  """Each sentence's active dimensions, each with the sentences of a split whose codes are largest on it."""
  _require(_WORKDIR, _INPUT)
  from hsvae_jax import api
  from hsvae_jax import data
  data.check_split(_SPLIT.value)
  if _TOP.value < 1:
    _fail(f"--top {_TOP.value} is not positive")
  sentences = _input_sentences()
  model = api.load(_WORKDIR.value)
  corpus = data.load_corpus(model.config.data).sentences[_SPLIT.value]
  for sentence, dims in zip(sentences, model.explain(sentences, corpus, _TOP.value)):
    print(f"{sentence}\n  {len(dims)} active dims")
    for active in dims:
      print(f"  dim {active.dim} = {active.value:+.2f}; the {_SPLIT.value} sentences most this way:")
      for example, value in active.examples:
        print(f"    {value:+.2f}  {example}")


def _sweep() -> None:
  _require(_CONFIG, _WORKDIR)
  from hsvae_jax import distributed, sweep
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _NUM_CPU_DEVICES.value)
  grid = sweep.parse_grid(_GRID.value)
  with _probe_warnings_summarised():
    results = sweep.sweep(_CONFIG.value, _WORKDIR.value, grid, _SPLIT.value)
  if results is None:
    print("preempted: sweep checkpoint saved; run again to resume", file=sys.stderr)
    sys.exit(PREEMPTED_EXIT_CODE)
  for entry in results:
    shown = {k: entry[k] for k in (*grid, "diverged", "zero_fraction", "hoyer", "rec_nll") if k in entry}
    print(json.dumps(shown))


def _report(extra_workdirs: list[str]) -> None:
  _require(_WORKDIR, _OUTPUT)
  from hsvae_jax import report
  for kind, path in report.write_report([_WORKDIR.value, *extra_workdirs], _OUTPUT.value).items():
    print(f"{kind}: {path}")


def _embed() -> None:
  _require(_ENCODER_PATH, _INPUT, _OUTPUT)
  output = _output_file(_OUTPUT.value, "")  # written through a file handle: numpy adds no suffix
  from hsvae_jax import embed
  stats = embed.embed_file(_ENCODER_PATH.value, _INPUT.value, output, _POOLING.value, _BATCH_SIZE.value,
                           _MODULES_JSON.value)
  print(json.dumps(stats))


def main(argv: list[str]) -> None:
  command = {"train": _train, "evaluate": _evaluate, "encode": _encode, "decode": _decode, "explore": _explore,
             "explain": _explain, "sweep": _sweep,
             "report": lambda: _report(argv[2:]), "embed": _embed}[argv[1]]
  from hsvae_jax import api
  api.enable_compilation_cache()
  try:
    command()
  except InputError as error:
    _fail(str(error))
  except Diverged as error:
    _fail(str(error), DIVERGED_EXIT_CODE)
  except Interrupted as error:
    print(f"hsvae: {error}", file=sys.stderr)
    sys.exit(INTERRUPTED_EXIT_CODE)
  except KeyboardInterrupt:
    print("hsvae: interrupted", file=sys.stderr)
    sys.exit(INTERRUPTED_EXIT_CODE)


def run() -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  logging.set_verbosity(logging.ERROR)
  app.run(main, flags_parser=_parse)


if __name__ == "__main__":
  run()
