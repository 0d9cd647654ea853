import html
import json
import os
import shutil

import matplotlib.image
import numpy as np
import pytest

from conftest import tiny_config, write_dir_corpus
from hsvae_jax import data
from hsvae_jax import evaluate
from hsvae_jax import report
from hsvae_jax import train
from hsvae_jax.errors import InputError

# One xdist worker takes this module whole: its tests share the trained runs.
pytestmark = pytest.mark.xdist_group(__name__)

# Every test sentence of the folder corpus starts with it: the page must show it escaped, never raw.
MARKUP = '<b>&"x"'


def write_folder_corpus(folder) -> None:
  """The tiny config's synthetic corpus as a labelled 'dir' corpus (its vocabulary, hence the tiny runs'
  compiled programs); its test sentences hold markup."""
  corpus = data.load_corpus(tiny_config().data)
  marked_test = [f"{MARKUP} {sentence}" for sentence in corpus.sentences["test"]]
  write_dir_corpus(folder, corpus.sentences | {"test": marked_test}, corpus.labels)


@pytest.fixture(scope="module")
def workdirs(quickstart_run, tmp_path_factory):
  """The quickstart's HSVAE (used dims for the page to show) with probe numbers, and a folder-corpus Gaussian
  VAE without."""
  hsvae = quickstart_run("hsvae")
  root = tmp_path_factory.mktemp("report")
  write_folder_corpus(root / "tiny")
  config = tiny_config("gaussian")
  config.data.name = "dir"
  config.data.dir = str(root / "tiny")
  gaussian = str(root / "gaussian")
  train.train_and_evaluate(config, gaussian)
  evaluate.evaluate(gaussian, "test")
  return hsvae, gaussian


@pytest.fixture(scope="module")
def written(workdirs, tmp_path_factory):
  output_dir = str(tmp_path_factory.mktemp("out") / "report")
  return report.write_report(list(workdirs), output_dir)


def test_files_and_figure(written):
  assert set(written) == {"figure", "table", "dimensions"}
  assert [os.path.basename(written[k]) for k in ("figure", "table", "dimensions")] == [
      "results.png", "results.md", "dimensions.html"]
  with open(written["figure"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  height, width, _ = matplotlib.image.imread(written["figure"]).shape
  assert 300 < height < 1500 and 600 < width < 3000


def test_figure_panels_follow_the_numbers_present(workdirs):
  hsvae, gaussian = map(report.load_run, workdirs)
  assert [ax.get_title() for ax in report.results_figure([hsvae, gaussian]).axes] == [
      "probe accuracy (sparse codes)", "Hoyer (normalised)"]
  assert [ax.get_title() for ax in report.results_figure([gaussian]).axes] == ["Hoyer (normalised)"]


def test_table_rows_hold_each_workdirs_numbers(workdirs, written):
  with open(written["table"]) as f:
    lines = [line for line in f.read().splitlines() if line.startswith("|")]
  header = [cell.strip() for cell in lines[0].strip("|").split("|")]
  rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
  assert [row["workdir"] for row in rows] == list(workdirs)
  assert [(row["corpus"], row["model"], row["latent_dim"], row["split"]) for row in rows] == [
      ("synthetic", "hsvae", "32", "test"), ("dir:tiny", "gaussian", "8", "test")]
  for workdir, row in zip(workdirs, rows):
    with open(os.path.join(workdir, "eval_test.json")) as f:
      result = json.load(f)
    for key in (*report.TABLE_KEYS, *report.PROBE_KEYS):
      if key in result:
        assert float(row[key]) == pytest.approx(result[key], abs=6e-5), key
      else:
        assert row[key] == "", key
  assert rows[0]["probe_accuracy"] and not rows[1]["probe_accuracy"]


def test_dimensions_page(workdirs, written):
  with open(written["dimensions"], encoding="utf-8") as f:
    page = f.read()
  for workdir in workdirs:
    assert f"<code>{html.escape(workdir)}</code>" in page
  for section in ("Training curves", "Mean activation by class", "Most used dimensions"):
    assert page.count(f"<h3>{section}</h3>") == 2
  # A curves image and a heatmap for each workdir.
  assert page.count('alt="training curves" src="data:image/png;base64,') == 2
  assert page.count('alt="mean activation per dimension and class" src="data:image/png;base64,') == 2
  used = [min(report.NUM_DIMENSIONS, report.load_run(workdir).result["dims_used"]) for workdir in workdirs]
  assert page.count("<h4>Dimension ") == sum(used) > 0
  assert MARKUP not in page
  assert f"<td>{html.escape(MARKUP)} " in page


def test_word_effects_known_answer(monkeypatch):
  monkeypatch.setattr(report, "MIN_WORD_COUNT", 2)
  sentences = ["a b d", "a c d", "b c d", "a b d", "e d"]
  activation = np.array([[3.0], [1.0], [0.0], [2.0], [4.0]])
  words, counts, effects = report.word_effects(sentences, activation)
  # d is in every sentence and e in one: neither tells anything.
  assert words == ["a", "b", "c"] and counts.tolist() == [3, 3, 2]
  np.testing.assert_allclose(effects[:, 0], [2 - 2, 5 / 3 - 2.5, 0.5 - 3])


def test_workdir_without_evaluation_is_refused(workdirs, tmp_path):
  unevaluated = tmp_path / "unevaluated"
  unevaluated.mkdir()
  shutil.copy(os.path.join(workdirs[0], "config.json"), unevaluated)
  with pytest.raises(InputError, match=rf"{unevaluated} holds no eval_<split>\.json; run `hsvae evaluate"):
    report.write_report([workdirs[0], str(unevaluated)], str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()


def test_class_heatmap_sizes_by_the_classes_present_not_the_largest_label():
  activation_NxZ = np.abs(np.random.default_rng(0).normal(size=(4, 3)))
  labels = np.array([0, 10**12, 10**12, 7])  # an int64 label that once made `report` allocate 8 TB
  assert report._class_heatmap(activation_NxZ, labels, np.arange(3)).startswith('<img alt="mean activation')
