import warnings

import numpy as np
import pytest
import scipy.sparse

from hsvae_jax import probes
from hsvae_jax.errors import InputError

NUM_CLASSES = 4


def linear_classes(n: int, seed: int, dims: int = 20, density: float = 0.5):
  """Sparse codes whose class, one of four about equally likely, is given by two hyperplanes in 3 dimensions."""
  rng = np.random.default_rng(seed)
  codes = np.where(rng.random((n, dims)) < density, rng.normal(size=(n, dims)), 0.0)
  codes[:, :3] = rng.normal(size=(n, 3))  # the informative dimensions are always on
  return codes, 2 * (codes[:, 0] + codes[:, 1] > 0) + (codes[:, 0] - codes[:, 2] > 0)


@pytest.fixture(scope="module")
def problem():
  train_codes, train_labels = linear_classes(2000, seed=0)
  eval_codes, eval_labels = linear_classes(2000, seed=1)
  return train_codes, train_labels, eval_codes, eval_labels


def test_linear_classes_are_recovered(problem):
  assert probes.probe_accuracy(*problem) > 0.97


def test_random_labels_give_chance(problem):
  train_codes, train_labels, eval_codes, eval_labels = problem
  rng = np.random.default_rng(7)
  accuracy = probes.probe_accuracy(train_codes, rng.integers(NUM_CLASSES, size=len(train_labels)), eval_codes,
                                   rng.integers(NUM_CLASSES, size=len(eval_labels)))
  assert accuracy == pytest.approx(1 / NUM_CLASSES, abs=0.05)  # 5 standard errors at 2000 examples


def test_sparse_and_dense_codes_agree(problem):
  train_codes, train_labels, eval_codes, eval_labels = problem
  sparse = scipy.sparse.csr_matrix(train_codes), train_labels, scipy.sparse.csr_matrix(eval_codes), eval_labels
  assert probes.probe_accuracy(*sparse) == probes.probe_accuracy(*problem)
  assert probes.few_shot_accuracy(*sparse, per_class=10) == probes.few_shot_accuracy(*problem, per_class=10)


def test_few_shot_rows_take_per_class_of_each_class_or_all_of_a_small_one():
  labels = np.array([0] * 50 + [1] * 30 + [2] * 4)
  rows = probes.few_shot_rows(labels, 10, np.random.default_rng(0))
  assert np.bincount(labels[rows]).tolist() == [10, 10, 4]
  assert len(set(rows)) == len(rows) and np.all(np.diff(rows) > 0)


def test_few_shot_draws_are_seeded_and_of_per_class_examples(problem, monkeypatch):
  fit_score = probes._fit_score
  drawn = []

  def recording_fit_score(train_codes, train_labels, *args):
    drawn.append(train_codes[:, 0].copy())
    assert np.bincount(train_labels, minlength=NUM_CLASSES).tolist() == [10] * NUM_CLASSES
    return fit_score(train_codes, train_labels, *args)

  monkeypatch.setattr(probes, "_fit_score", recording_fit_score)
  first = probes.few_shot_accuracy(*problem, per_class=10, draws=3, seed=1)
  assert len(drawn) == 3 and not np.array_equal(drawn[0], drawn[1])
  assert probes.few_shot_accuracy(*problem, per_class=10, draws=3, seed=1) == first
  np.testing.assert_array_equal(drawn[3], drawn[0])
  probes.few_shot_accuracy(*problem, per_class=10, draws=1, seed=2)
  assert not np.array_equal(drawn[6], drawn[0])


def test_probe_metrics(problem):
  train_codes, train_labels, eval_codes, eval_labels = problem
  result = probes.probe_metrics(scipy.sparse.csr_matrix(train_codes), train_labels,
                                scipy.sparse.csr_matrix(eval_codes), eval_labels, train_codes, eval_codes)
  assert set(result) == {"probe_accuracy", "probe_accuracy_mu", "probe_accuracy_n10", "probe_accuracy_n100"}
  assert result["probe_accuracy"] == pytest.approx(result["probe_accuracy_mu"])
  assert 1 / NUM_CLASSES < result["probe_accuracy_n10"] <= result["probe_accuracy_n100"] <= result["probe_accuracy"]


def test_missing_labels_are_refused(problem):
  train_codes, train_labels, eval_codes, eval_labels = problem
  with pytest.raises(InputError, match=r"train split has no labels: --probe needs train_class_label\.txt"):
    probes.probe_accuracy(train_codes, None, eval_codes, eval_labels)
  with pytest.raises(InputError, match=r"test split has no labels: --probe needs test_class_label\.txt"):
    probes.probe_metrics(train_codes, train_labels, eval_codes, None, train_codes, eval_codes, eval_split="test")
  with pytest.raises(InputError, match="single class"):
    probes.probe_accuracy(train_codes, np.zeros_like(train_labels), eval_codes, eval_labels)


def test_unconverged_probes_print_one_summary_line_and_other_warnings_pass(problem, monkeypatch, capsys):
  monkeypatch.setattr(probes, "_MAX_ITER", 1)  # every fit stops before converging
  train_codes, train_labels, eval_codes, eval_labels = problem
  with pytest.warns(UserWarning, match="not a convergence warning"):
    with probes.convergence_summary():
      probes.probe_metrics(train_codes, train_labels, eval_codes, eval_labels, train_codes, eval_codes)
      warnings.warn("not a convergence warning")
  lines = capsys.readouterr().err.splitlines()
  # probe_accuracy, probe_accuracy_mu and 5 draws for each of the 2 few-shot sizes.
  assert lines == ["hsvae: warning: 12 linear-probe fits stopped at max_iter=1 before converging (scikit-learn "
                   "ConvergenceWarning); their accuracies are those reached by then"]


def test_converged_probes_print_nothing(problem, capsys):
  with probes.convergence_summary():
    probes.probe_accuracy(*problem)
  assert capsys.readouterr().err == ""
