"""The `hsvae` command end to end, and every bad input refused with one line and exit code 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse

from conftest import PROJECT_ROOT

# One xdist worker takes the whole module (pyproject: --dist loadgroup), so its shared run is made once.
pytestmark = pytest.mark.xdist_group(__name__)

TINY = ["--config.data.synthetic.num_sentences=600", "--config.model.latent_dim=8",
        "--config.model.embed_dim=16", "--config.model.hidden_dim=32", "--config.train.batch_size=16",
        "--config.train.num_steps=4", "--config.train.log_every=2", "--config.train.checkpoint_every=2",
        "--config.eval.batch_size=64"]
QUICKSTART = str(PROJECT_ROOT / "configs" / "quickstart.py")


def hsvae(*args, expect=0):
  result = subprocess.run([sys.executable, "-m", "hsvae_jax.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == expect, result.stderr[-3000:]
  if expect == 2:
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("hsvae: error: ")
  return result


def error_line(result) -> str:
  return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cli") / "run"
  hsvae("train", "--config", QUICKSTART, "--workdir", workdir, *TINY)
  return workdir


def test_train_evaluate_encode(trained, tmp_path):
  assert sorted(os.listdir(trained)) == ["checkpoints", "config.json", "metrics.jsonl", "vocab.txt"]
  logged = [json.loads(line) for line in open(trained / "metrics.jsonl")]
  assert [m["step"] for m in logged] == [2, 4]
  assert {"loss", "rec_nll", "kl_z", "kl_gamma", "skipped_steps", "sentences_per_s"} <= set(logged[0])

  result = json.loads(hsvae("evaluate", "--workdir", trained, "--split", "test").stdout)
  for key in ("rec_nll", "rec_nll_token", "kl_z", "kl_gamma", "hoyer", "hoyer_raw", "active_dims", "zero_fraction"):
    assert np.isfinite(result[key]), key
  assert result["num_sentences"] == 60
  assert result == json.load(open(trained / "eval_test.json"))

  sentences = tmp_path / "in.txt"
  vocab = open(trained / "vocab.txt").read().split()
  sentences.write_text(f"{vocab[5]} {vocab[6]} {vocab[7]}\nan unknown sentence\n{vocab[9]}\n")
  output = tmp_path / "codes.npz"
  printed = hsvae("encode", "--workdir", trained, "--input", sentences, "--output", output, "--print").stdout
  assert "non-zero dims" in printed
  codes = scipy.sparse.load_npz(output)
  assert codes.format == "csr" and codes.shape == (3, 8)
  with np.load(output) as arrays:
    mu, slab_prob = arrays["mu"], arrays["slab_prob"]
  np.testing.assert_array_equal(codes.toarray(), np.where(slab_prob > 0.5, mu, 0.0))


def test_evaluate_with_probes_and_report(trained, tmp_path):
  result = json.loads(hsvae("evaluate", "--workdir", trained, "--split", "test", "--probe").stdout)
  for key in ("probe_accuracy", "probe_accuracy_mu", "probe_accuracy_n10", "probe_accuracy_n100"):
    assert 0.0 <= result[key] <= 1.0, key
  assert set(result["hoyer_variants"]) == {"z", "z_raw", "mu", "mu_raw", "spike_slab_mean", "spike_slab_mean_raw"}
  assert 0 <= result["dims_used"] <= 8
  printed = hsvae("report", "--workdir", trained, trained, "--output", tmp_path / "report").stdout
  for name in ("results.png", "results.md", "dimensions.html"):
    assert (tmp_path / "report" / name).stat().st_size > 0 and name in printed


def test_unknown_config_key(tmp_path):
  result = hsvae("train", "--config", QUICKSTART, "--workdir", tmp_path / "w", "--config.model.no_such_key=1",
                 expect=2)
  assert "no_such_key" in error_line(result)
  assert not (tmp_path / "w").exists()


def test_missing_config_file(tmp_path):
  hsvae("train", "--config", tmp_path / "nope.py", "--workdir", tmp_path / "w", expect=2)


def test_unknown_command_and_missing_flag():
  hsvae("fly", expect=2)
  assert "--workdir" in error_line(hsvae("evaluate", expect=2))


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
def test_bad_corpus_is_refused(tmp_path, case, expected):
  corpus = {
      "missing_dir": lambda: tmp_path / "does_not_exist",
      "empty": lambda: _dir_corpus(tmp_path, train=b""),
      "bad_utf8": lambda: _dir_corpus(tmp_path, train=b"fine line\nbad \xff\xfe line\n"),
      "label_count": lambda: _dir_corpus(tmp_path, labels=b"0\n1\n1\n"),
      "label_value": lambda: _dir_corpus(tmp_path, labels=b"0\nsports\n"),
  }[case]()
  result = hsvae("train", "--config", QUICKSTART, "--workdir", tmp_path / "w", "--config.data.name=dir",
                 f"--config.data.dir={corpus}", expect=2)
  assert expected in error_line(result)
  assert not (tmp_path / "w").exists()


def test_workdir_of_another_config_is_refused_and_kept(trained):
  before = {name: (trained / name).read_bytes() for name in ("config.json", "metrics.jsonl", "vocab.txt")}
  result = hsvae("train", "--config", QUICKSTART, "--workdir", trained, *TINY, "--config.model.latent=gaussian",
                 expect=2)
  assert "model.latent" in error_line(result)
  assert {name: (trained / name).read_bytes() for name in before} == before


def test_evaluate_and_encode_bad_input(trained, tmp_path):
  assert "hsvae train" in error_line(hsvae("evaluate", "--workdir", tmp_path / "empty", expect=2))
  hsvae("evaluate", "--workdir", trained, "--split", "dev", expect=2)
  missing = hsvae("encode", "--workdir", trained, "--input", tmp_path / "none.txt", "--output", tmp_path / "o.npz",
                  expect=2)
  assert "none.txt" in error_line(missing)
  (tmp_path / "bad.txt").write_bytes(b"ok\n\xc3\x28\n")
  bad = hsvae("encode", "--workdir", trained, "--input", tmp_path / "bad.txt", "--output", tmp_path / "o.npz",
              expect=2)
  assert "bad.txt" in error_line(bad) and not (tmp_path / "o.npz").exists()
