"""Shared fixtures: a tiny config that trains in seconds, the `hsvae` command in a fresh process or in this
one, a tiny BERT, and where the shared corpora live."""

import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

# The suite compiles hundreds of programs that each run for milliseconds: XLA's optimisation level 1 and its
# older fusion code generator compile them a quarter to a third faster, and the runs the tests train take
# as long (benchmarks/README.md). Set before JAX starts its CPU backend, here and in the CLI runs started.
# xdist workers inherit the flags from the controller and load this file again: each flag is added once.
os.environ["XLA_FLAGS"] = " ".join(dict.fromkeys([*os.environ.get("XLA_FLAGS", "").split(),
                                                  "--xla_backend_optimization_level=1",
                                                  "--xla_cpu_use_fusion_emitters=false"]))

from absl import flags
import filelock
import jax
import numpy as np
import pytest
import safetensors.numpy
import tokenizers

from hsvae_jax import cli
from hsvae_jax import configs
from hsvae_jax import data
from hsvae_jax import default_config
from hsvae_jax import distributed
from hsvae_jax import evaluate
from hsvae_jax import train
from hsvae_jax.models import make_model

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

# Tests compile the same programs again and again, in both xdist workers and in the CLI runs they
# start (which inherit the environment): one shared cache, small programs included, compiles each once.
for name, value in {"jax_compilation_cache_dir": str(PROJECT_ROOT / ".pytest_cache" / "xla"),
                    "jax_persistent_cache_min_compile_time_secs": 0.0}.items():
  jax.config.update(name, value)
  os.environ[name.upper()] = str(value)


def load_config_file(name: str):
  """get_config() of a shipped config, as `--config <name>` gives it."""
  return default_config.from_file(configs.config_path(name))


def tiny_config(latent: str = "hsvae"):
  config = default_config.get_config()
  config.data.name = "synthetic"
  config.data.synthetic.num_sentences = 600
  config.data.max_length = 16
  config.data.length_buckets = (8, 12, 16)
  config.model.latent = latent
  config.model.latent_dim = 8
  config.model.embed_dim = 16
  config.model.hidden_dim = 32
  config.train.batch_size = 16
  config.train.num_steps = 6
  config.train.log_every = 2
  config.train.checkpoint_every = 3
  config.eval.batch_size = 64
  return config


QUICKSTART_LATENTS = ("hsvae", "gaussian")


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory, worker_id):
  """quickstart_run(latent): a workdir of the quickstart config trained as shipped with that model.latent,
  and evaluated on its test split with probes (eval_test.json).

  Each run is trained once a session, by whichever xdist worker asks first; a worker that finds it being
  trained trains another quickstart run meanwhile, then waits. The caller gets its own copy, so what its
  tests write there (evaluations) is its own."""
  # A session's workers share their base folder's parent; a run without xdist has its base folder alone.
  shared = tmp_path_factory.getbasetemp()
  shared = shared if worker_id == "master" else shared.parent

  def trained(latent: str, timeout: float) -> pathlib.Path | None:
    """The finished run, training it unless done; None if another worker holds it past timeout."""
    workdir, finished = shared / f"quickstart_{latent}", shared / f"quickstart_{latent}.finished"
    try:
      with filelock.FileLock(shared / f"quickstart_{latent}.lock", timeout=timeout):
        if not finished.exists():
          config = load_config_file("quickstart")
          config.model.latent = latent
          train.train_and_evaluate(config, str(workdir))
          evaluate.evaluate(str(workdir), "test", probe=True)
          finished.touch()
    except filelock.Timeout:
      return None
    return workdir

  @functools.cache
  def run(latent: str) -> str:
    if trained(latent, timeout=0) is None:
      for other in QUICKSTART_LATENTS:
        if other != latent:
          trained(other, timeout=0)
    copy = tmp_path_factory.mktemp("quickstart") / latent
    shutil.copytree(trained(latent, timeout=-1), copy)
    return str(copy)

  return run


def write_dir_corpus(folder: pathlib.Path, sentences: dict[str, list[str]], labels: dict[str, list] | None = None
                     ) -> str:
  """A 'dir' corpus in folder: <split>.txt for each split, and <split>_class_label.txt where labels are given."""
  folder.mkdir(parents=True, exist_ok=True)
  for split, lines in sentences.items():
    (folder / f"{split}.txt").write_text("".join(f"{s}\n" for s in lines))
    if labels is not None:
      (folder / f"{split}_class_label.txt").write_text("".join(f"{y}\n" for y in labels[split]))
  return str(folder)


def untrained(config):
  """The corpus, a vocabulary built from its train split, the model and its freshly initialised state."""
  corpus = data.load_corpus(config.data)
  vocab = data.Vocabulary.build(corpus.sentences["train"], config.data.vocab_size)
  model = make_model(config.model, len(vocab))
  return corpus, vocab, model, fresh_state(model, config)


def fresh_state(model, config) -> train.TrainState:
  """model's freshly initialised train state, made by train.init_state's program."""
  return train.initializer(model, train.make_optimizer(config.train))(jax.random.key(0))


QUICKSTART = "quickstart"  # by name: the config shipped in the package
# tiny_config()'s model on top of the quickstart config: the same shapes, hence the same compiled programs.
TINY = ["--config.data.synthetic.num_sentences=600", "--config.model.latent_dim=8",
        "--config.model.embed_dim=16", "--config.model.hidden_dim=32", "--config.train.batch_size=16",
        "--config.train.num_steps=4", "--config.train.log_every=2", "--config.train.checkpoint_every=2",
        "--config.eval.batch_size=64"]


def _exited(result: subprocess.CompletedProcess, expect: int) -> subprocess.CompletedProcess:
  """result, having exited with `expect`; exit code 2 with a last line `hsvae: error: ...` and no traceback."""
  assert result.returncode == expect, result.stderr[-3000:]
  if expect == 2:
    assert "Traceback" not in result.stderr
    assert error_line(result).startswith("hsvae: error: ")
  return result


def hsvae(*args, expect: int = 0) -> subprocess.CompletedProcess:
  """`hsvae ARGS` in a fresh process, as a user runs it."""
  result = subprocess.run([sys.executable, "-m", "hsvae_jax.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)
  return _exited(result, expect)


def cli_in_process(monkeypatch: pytest.MonkeyPatch, *args) -> int:
  """Runs `hsvae ARGS` in this process and returns its exit code: no interpreter and JAX to start, and this
  process's compiled programs reused. cli.run parses sys.argv into absl's global flags, so each call starts
  from their defaults, without the --config.KEY flags that the last call's config defined. JAX is started
  here already, so `train` skips distributed.initialize (which must come first in a process; the
  subprocess tests run it)."""
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")  # what cli.run would set in os.environ for good
  monkeypatch.setattr(distributed, "initialize", lambda *args: None)
  flags.FLAGS.unparse_flags()
  for name in [name for name in flags.FLAGS if name.startswith("config.")]:
    delattr(flags.FLAGS, name)
  monkeypatch.setattr(sys, "argv", ["hsvae", *map(str, args)])
  try:
    cli.run()
    return 0
  except SystemExit as stop:
    return stop.code or 0


@pytest.fixture
def hsvae_in_process(monkeypatch, capsys):
  """hsvae, but run in this process (cli_in_process), its output captured."""

  def run(*args, expect: int = 0) -> subprocess.CompletedProcess:
    capsys.readouterr()
    returncode = cli_in_process(monkeypatch, *args)
    out, err = capsys.readouterr()
    return _exited(subprocess.CompletedProcess(["hsvae", *map(str, args)], returncode, out, err), expect)

  return run


def wait_for_logged_steps(workdir: str | os.PathLike[str], steps: int, stop: threading.Event | None = None,
                          timeout: float = 300) -> bool:
  """Polls a running training's metrics.jsonl until it holds `steps` lines (True), or until `stop` is set
  or `timeout` seconds pass (False)."""
  metrics = pathlib.Path(workdir) / "metrics.jsonl"
  deadline = time.time() + timeout
  while not (stop and stop.is_set()) and time.time() < deadline:
    if metrics.is_file() and len(metrics.read_text().splitlines()) >= steps:
      return True
    time.sleep(0.1)
  return False


def error_line(result: subprocess.CompletedProcess) -> str:
  return result.stderr.strip().splitlines()[-1]


@pytest.fixture
def shared_data() -> pathlib.Path:
  if not SHARED_DATA.is_dir():
    pytest.skip(f"{SHARED_DATA} is absent")
  return SHARED_DATA


TINY_BERT = dict(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=16, max_position_embeddings=32)
TINY_BERT_WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "and", ",", "."]


def tiny_bert_tensors(seed: int = 0) -> dict[str, np.ndarray]:
  """Random weights under Hugging Face's BertModel names, plus a pooler the loader must ignore."""
  c, rng = TINY_BERT, np.random.default_rng(seed)
  d, f = c["hidden_size"], c["intermediate_size"]
  shapes = {
      "embeddings.word_embeddings.weight": (c["vocab_size"], d),
      "embeddings.position_embeddings.weight": (c["max_position_embeddings"], d),
      "embeddings.token_type_embeddings.weight": (2, d),
      "embeddings.LayerNorm.weight": (d,), "embeddings.LayerNorm.bias": (d,),
      "pooler.dense.weight": (d, d), "pooler.dense.bias": (d,),
  }
  for i in range(c["num_hidden_layers"]):
    p = f"encoder.layer.{i}."
    for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense"):
      shapes |= {p + name + ".weight": (d, d), p + name + ".bias": (d,)}
    shapes |= {p + "intermediate.dense.weight": (f, d), p + "intermediate.dense.bias": (f,),
               p + "output.dense.weight": (d, f), p + "output.dense.bias": (d,)}
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
      shapes |= {p + name + ".weight": (d,), p + name + ".bias": (d,)}
  return {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}


def write_tiny_bert(
    model_dir: pathlib.Path, tensors: dict[str, np.ndarray], truncation: int | None = 16
) -> pathlib.Path:
  """A model directory whose tokenizer knows TINY_BERT_WORDS and truncates to `truncation` tokens."""
  specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
  vocab = {token: i for i, token in enumerate(specials + TINY_BERT_WORDS)}
  tokenizer = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
  tokenizer.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
  tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
  tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
      single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
  if truncation:
    tokenizer.enable_truncation(truncation)
  model_dir.mkdir(parents=True, exist_ok=True)
  tokenizer.save(str(model_dir / "tokenizer.json"))
  (model_dir / "config.json").write_text(json.dumps(TINY_BERT | {"model_type": "bert"}))
  safetensors.numpy.save_file(tensors, model_dir / "model.safetensors")
  return model_dir


def write_modules_json(model_dir: pathlib.Path, pooling: dict, normalize: bool = True,
                       max_seq_length: int | None = None) -> pathlib.Path:
  """Adds a sentence-transformers module list (Transformer, Pooling, optionally Normalize) to a model directory."""
  modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
  if normalize:
    modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
  (model_dir / "modules.json").write_text(json.dumps(modules))
  (model_dir / "1_Pooling").mkdir(exist_ok=True)
  (model_dir / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
  if max_seq_length:
    (model_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
  return model_dir
