"""The `hsvae` command end to end, and every bad input refused with one line and exit code 2.

Ctrl-C and two refusals run in a fresh process, as a user runs them (test_distributed trains there too); the
other commands run in this process (hsvae_in_process), where exit codes and output are the same and nothing
starts again."""

import json
import os
import signal
import threading

import numpy as np
import pytest
import scipy.sparse

from conftest import QUICKSTART, TINY, cli_in_process, error_line, hsvae, wait_for_logged_steps

# One xdist worker takes the whole module (pyproject: --dist loadgroup), so its shared run is made once.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cli") / "run"
  with pytest.MonkeyPatch.context() as monkeypatch:
    assert cli_in_process(monkeypatch, "train", "--config", QUICKSTART, "--workdir", workdir, *TINY) == 0
  return workdir


def test_train_evaluate_encode(hsvae_in_process, trained, tmp_path):
  files = sorted(os.listdir(trained))
  assert len(files) == 7 and files.pop(2).startswith("events.out.tfevents.")  # TensorBoard's
  assert files == ["checkpoints", "config.json", "lock", "metrics.jsonl", "train_data.json", "vocab.txt"]
  logged = [json.loads(line) for line in open(trained / "metrics.jsonl")]
  assert [m["step"] for m in logged] == [2, 4]
  assert {"loss", "rec_nll", "kl_z", "kl_gamma", "skipped_steps", "sentences_per_s"} <= set(logged[0])

  result = json.loads(hsvae_in_process("evaluate", "--workdir", trained, "--split", "test").stdout)
  for key in ("rec_nll", "rec_nll_token", "kl_z", "kl_gamma", "hoyer", "hoyer_raw", "active_dims", "zero_fraction"):
    assert np.isfinite(result[key]), key
  assert result["num_sentences"] == 60 and 0.0 <= result["unk_rate"] < 0.5
  assert result == json.load(open(trained / "eval_test.json"))

  sentences = tmp_path / "in.txt"
  vocab = open(trained / "vocab.txt").read().split()
  sentences.write_text(f"{vocab[5]} {vocab[6]} {vocab[7]}\nan unknown sentence\n{vocab[9]}\n")
  output = tmp_path / "codes.npz"
  printed = hsvae_in_process("encode", "--workdir", trained, "--input", sentences, "--output", output, "--print").stdout
  assert "non-zero dims" in printed
  codes = scipy.sparse.load_npz(output)
  assert codes.format == "csr" and codes.shape == (3, 8)
  with np.load(output) as arrays:
    mu, slab_prob = arrays["mu"], arrays["slab_prob"]
  np.testing.assert_array_equal(codes.toarray(), np.where(slab_prob > 0.5, mu, 0.0))


def test_evaluate_with_probes_and_report(hsvae_in_process, trained, tmp_path):
  result = json.loads(hsvae_in_process("evaluate", "--workdir", trained, "--split", "test", "--probe").stdout)
  for key in ("probe_accuracy", "probe_accuracy_mu", "probe_accuracy_n10", "probe_accuracy_n100"):
    assert 0.0 <= result[key] <= 1.0, key
  assert set(result["hoyer_variants"]) == {"z", "z_raw", "mu", "mu_raw", "spike_slab_mean", "spike_slab_mean_raw"}
  assert 0 <= result["dims_used"] <= 8
  printed = hsvae_in_process("report", "--workdir", trained, trained, "--output", tmp_path / "report").stdout
  for name in ("results.png", "results.md", "dimensions.html"):
    assert (tmp_path / "report" / name).stat().st_size > 0 and name in printed


def test_unknown_config_key(hsvae_in_process, tmp_path):
  result = hsvae_in_process("train", "--config", QUICKSTART, "--workdir", tmp_path / "w",
                            "--config.model.no_such_key=1", expect=2)
  assert "no_such_key" in error_line(result)
  assert not (tmp_path / "w").exists()


def test_missing_config_file(hsvae_in_process, tmp_path):
  hsvae_in_process("train", "--config", tmp_path / "nope.py", "--workdir", tmp_path / "w", expect=2)


def test_unknown_command_and_missing_flag(hsvae_in_process):
  hsvae_in_process("fly", expect=2)
  assert "--workdir" in error_line(hsvae_in_process("evaluate", expect=2))


def test_each_commands_help_lists_its_own_flags_only(hsvae_in_process):
  listed = lambda command: {line.split(":")[0].strip()
                            for line in hsvae_in_process(command, "--help").stdout.splitlines()
                            if line.startswith("  --")}
  assert listed("evaluate") == {"--workdir", "--split", "--probe"}
  assert {"--config", "--workdir", "--config.KEY=VALUE"} <= listed("train") and "--probe" not in listed("train")
  assert listed("embed") == {"--encoder-path", "--input", "--output", "--pooling", "--batch-size", "--modules-json"}
  assert listed("explain") == {"--workdir", "--input", "--split", "--top"}


def test_another_commands_flag_is_refused_in_one_line(tmp_path):
  result = hsvae("train", "--config", QUICKSTART, "--workdir", tmp_path / "w", "--probe", expect=2)
  assert result.stderr.strip().splitlines() == [
      "hsvae: error: --probe is not a flag of `hsvae train` (hsvae train --help lists its flags)"]
  assert not (tmp_path / "w").exists()


def test_config_takes_a_path_as_well_as_a_shipped_name(hsvae_in_process, tmp_path):
  own = tmp_path / "mine.py"
  own.write_text("from hsvae_jax import default_config\n\ndef get_config():\n  return default_config.get_config()\n")
  result = hsvae_in_process("train", "--config", own, "--workdir", tmp_path / "w", "--config.train.learning_rate=-1",
                            expect=2)
  assert "train.learning_rate=-1" in error_line(result)  # mine.py was loaded, then validated


def _dir_corpus(tmp_path, train=b"a b c\nb c d\n", labels=None):
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  (corpus / "train.txt").write_bytes(train)
  if labels is not None:
    (corpus / "train_class_label.txt").write_bytes(labels)
  return corpus


@pytest.mark.parametrize("case, expected", [
    ("missing_dir", "does_not_exist"),
    ("empty", "train.txt"),
    ("bad_utf8", "train.txt"),
    ("label_count", "train_class_label.txt"),
    ("label_value", "train_class_label.txt"),
])
def test_bad_corpus_is_refused(hsvae_in_process, tmp_path, case, expected):
  corpus = {
      "missing_dir": lambda: tmp_path / "does_not_exist",
      "empty": lambda: _dir_corpus(tmp_path, train=b""),
      "bad_utf8": lambda: _dir_corpus(tmp_path, train=b"fine line\nbad \xff\xfe line\n"),
      "label_count": lambda: _dir_corpus(tmp_path, labels=b"0\n1\n1\n"),
      "label_value": lambda: _dir_corpus(tmp_path, labels=b"0\nsports\n"),
  }[case]()
  result = hsvae_in_process("train", "--config", QUICKSTART, "--workdir", tmp_path / "w", "--config.data.name=dir",
                            f"--config.data.dir={corpus}", expect=2)
  assert expected in error_line(result)
  assert not (tmp_path / "w").exists()


def test_workdir_of_another_config_is_refused_and_kept(hsvae_in_process, trained):
  before = {name: (trained / name).read_bytes() for name in ("config.json", "metrics.jsonl", "vocab.txt")}
  result = hsvae_in_process("train", "--config", QUICKSTART, "--workdir", trained, *TINY,
                            "--config.model.latent=gaussian", expect=2)
  assert "model.latent" in error_line(result)
  assert {name: (trained / name).read_bytes() for name in before} == before


def test_evaluate_and_encode_bad_input(hsvae_in_process, trained, tmp_path):
  assert "hsvae train" in error_line(hsvae_in_process("evaluate", "--workdir", tmp_path / "empty", expect=2))
  hsvae_in_process("evaluate", "--workdir", trained, "--split", "dev", expect=2)
  missing = hsvae_in_process("encode", "--workdir", trained, "--input", tmp_path / "none.txt",
                             "--output", tmp_path / "o.npz", expect=2)
  assert "none.txt" in error_line(missing)
  (tmp_path / "bad.txt").write_bytes(b"ok\n\xc3\x28\n")
  bad = hsvae_in_process("encode", "--workdir", trained, "--input", tmp_path / "bad.txt",
                         "--output", tmp_path / "o.npz", expect=2)
  assert "bad.txt" in error_line(bad) and not (tmp_path / "o.npz").exists()


def test_explain_bad_input(hsvae_in_process, trained, tmp_path):
  explain = lambda path, *flags: error_line(
      hsvae_in_process("explain", "--workdir", trained, "--input", path, *flags, expect=2))
  assert explain(tmp_path / "none.txt") == f"hsvae: error: {tmp_path / 'none.txt'}: no such file"
  (tmp_path / "empty.txt").write_text("")
  assert explain(tmp_path / "empty.txt") == f"hsvae: error: {tmp_path / 'empty.txt'}: no sentences"
  (tmp_path / "in.txt").write_text("a b\n")
  assert "unknown split 'dev'" in explain(tmp_path / "in.txt", "--split", "dev")
  assert explain(tmp_path / "in.txt", "--top", "0") == "hsvae: error: --top 0 is not positive"
  untrained = hsvae_in_process("explain", "--workdir", tmp_path / "untrained", "--input", tmp_path / "in.txt",
                               expect=2)
  assert "hsvae train" in error_line(untrained)


def test_encode_names_the_file_it_wrote_and_warns_of_empty_lines(hsvae_in_process, trained, tmp_path):
  sentences = tmp_path / "in.txt"
  sentences.write_text("a b\n\nc\n")
  result = hsvae_in_process("encode", "--workdir", trained, "--input", sentences, "--output", tmp_path / "codes")
  assert result.stdout.strip().endswith(f"wrote 3 codes to {tmp_path / 'codes.npz'}")
  assert scipy.sparse.load_npz(tmp_path / "codes.npz").shape == (3, 8)
  assert "hsvae: warning: 1 of the 3 sentences are empty" in result.stderr


def test_output_that_cannot_be_written_is_refused_before_any_work(hsvae_in_process, tmp_path):
  for output in (tmp_path / "missing" / "codes.npz", tmp_path):
    # Neither the workdir nor the input exists: the output is checked first.
    result = hsvae_in_process("encode", "--workdir", tmp_path / "none", "--input", tmp_path / "none.txt",
                              "--output", output, expect=2)
    assert error_line(result).startswith(f"hsvae: error: --output {output}")
  embedded = hsvae_in_process("embed", "--encoder-path", tmp_path / "none", "--input", tmp_path / "none.txt",
                              "--output", tmp_path, expect=2)
  assert error_line(embedded) == f"hsvae: error: --output {tmp_path} is a directory; give a file name"


@pytest.mark.parametrize("source, expected", [
    ("def get_config(:\n  pass\n", "bad.py, line 1: invalid syntax"),
    ("def get_config():\n  x = 1\n  raise ValueError('no data')\n", "bad.py, line 3: ValueError: no data"),
    ("import no_such_module_anywhere\n", "bad.py, line 1: ModuleNotFoundError"),
    ("CONFIG = 1\n", "bad.py: defines no get_config() function"),
])
def test_a_config_file_that_fails_to_load_is_one_line_with_its_line(tmp_path, source, expected):
  # In a fresh process (before JAX starts: quick): config_flags loads every config file into one module,
  # which a second load in the same process would find already holding the first file's get_config.
  (tmp_path / "bad.py").write_text(source)
  result = hsvae("train", "--config", tmp_path / "bad.py", "--workdir", tmp_path / "w", expect=2)
  assert len(result.stderr.strip().splitlines()) == 1 and expected in error_line(result)


def test_invalid_config_values_are_each_one_line_and_nothing_is_written(hsvae_in_process, tmp_path):
  result = hsvae_in_process("train", "--config", QUICKSTART, "--workdir", tmp_path / "w",
                            "--config.train.learning_rate=-1", "--config.hparams.alpha=0", expect=2)
  assert result.stderr.strip().splitlines()[-2:] == [
      "hsvae: error: hparams.alpha=0.0: must be a finite number in (0, inf)",
      "hsvae: error: train.learning_rate=-1.0: must be a finite number in (0, inf)"]
  assert not (tmp_path / "w").exists()


def test_a_second_trainer_exits_2_naming_the_holder(hsvae_in_process, tmp_path):
  from hsvae_jax import workdir as layout
  (tmp_path / "w").mkdir()
  with layout.lock(str(tmp_path / "w")):
    result = hsvae_in_process("train", "--config", QUICKSTART, "--workdir", tmp_path / "w", *TINY, expect=2)
  assert f"in use by another process (PID {os.getpid()})" in error_line(result)
  assert os.listdir(tmp_path / "w") == ["lock"]


def test_divergence_exits_1_naming_the_step_and_the_last_good_checkpoint(hsvae_in_process, tmp_path):
  result = hsvae_in_process("train", "--config", QUICKSTART, "--workdir", tmp_path / "w", *TINY,
                            "--config.train.learning_rate=1000", "--config.train.checkpoint_every=1", expect=1)
  assert "Traceback" not in result.stderr
  assert error_line(result).startswith("hsvae: error: training diverged at step 2 (loss ")
  assert error_line(result).endswith(f"the last good checkpoint is step 1 in {tmp_path / 'w' / 'checkpoints'}")
  assert os.listdir(tmp_path / "w" / "checkpoints") == ["1"]


def test_ctrl_c_saves_a_checkpoint_and_exits_130(hsvae_in_process, tmp_path):
  # A real SIGINT to this process once the first step is logged; the run is this worker's (SIGTERM, which
  # needs JAX's coordinator, is test_distributed's fresh process).
  workdir = tmp_path / "w"
  slow = ["--config.train.num_steps=100000", "--config.train.log_every=1", "--config.train.checkpoint_every=100000"]
  done = threading.Event()

  def interrupt_once_logged():
    if wait_for_logged_steps(workdir, 1, stop=done):
      os.kill(os.getpid(), signal.SIGINT)

  watcher = threading.Thread(target=interrupt_once_logged)
  watcher.start()
  try:
    result = hsvae_in_process("train", "--config", QUICKSTART, "--workdir", workdir, *TINY, *slow, expect=130)
  finally:
    done.set()
    watcher.join()
  assert "Traceback" not in result.stderr
  steps = os.listdir(workdir / "checkpoints")  # no *.orbax-checkpoint-tmp
  assert len(steps) == 1 and result.stderr.strip().splitlines()[-1] == (
      f"hsvae: interrupted: checkpoint saved at step {steps[0]}; run again to resume")
