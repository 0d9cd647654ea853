"""Linear probes: how well a logistic regression on the codes predicts sentence classes (the paper's figure).

Codes may be dense arrays or scipy.sparse CSR matrices; features are scaled without centring so that sparse
codes stay sparse, and sparse and dense codes of the same values give the same probe.
"""

from collections.abc import Iterator
import contextlib
import warnings

import numpy as np
import scipy.sparse
from sklearn import exceptions
from sklearn import linear_model
from sklearn import pipeline
from sklearn import preprocessing

from hsvae_jax.errors import InputError, warn

Codes = np.ndarray | scipy.sparse.csr_matrix
# L-BFGS on the multinomial loss: each iteration is a few products with the (sparse) codes. On codes that
# separate the training set (768 dense dims, 11k sentences) it crawls on for the full cap, which took 12 min
# of a replication run at 1,000; the accuracy it reaches by 200 iterations is what the probe reports.
_MAX_ITER = 200
FEW_SHOT_SIZES = (10, 100)


@contextlib.contextmanager
def convergence_summary() -> Iterator[None]:
  """Turns the ConvergenceWarnings of the probes fitted inside (one a fit, a wall in a sweep) into one line."""
  unconverged = 0
  with warnings.catch_warnings():
    show = warnings.showwarning

    def count_or_show(message, category, *args, **kwargs):
      nonlocal unconverged
      if issubclass(category, exceptions.ConvergenceWarning):
        unconverged += 1
      else:
        show(message, category, *args, **kwargs)

    warnings.showwarning = count_or_show
    warnings.simplefilter("always", exceptions.ConvergenceWarning)
    yield
  if unconverged:
    warn(f"{unconverged} linear-probe fits stopped at max_iter={_MAX_ITER} before converging (scikit-learn "
         "ConvergenceWarning); their accuracies are those reached by then")


def check_labels(labels: np.ndarray | None, split: str) -> np.ndarray:
  if labels is None:
    raise InputError(f"the {split} split has no labels: --probe needs {split}_class_label.txt")
  return np.asarray(labels)


def _fit_score(train_codes: Codes, train_labels: np.ndarray, eval_codes: Codes, eval_labels: np.ndarray,
               seed: int) -> float:
  if len(np.unique(train_labels)) < 2:
    raise InputError("the train split has a single class: a probe needs at least two")
  probe = pipeline.make_pipeline(
      preprocessing.StandardScaler(with_mean=False),
      linear_model.LogisticRegression(solver="lbfgs", max_iter=_MAX_ITER, random_state=seed))
  probe.fit(train_codes, train_labels)
  return float(probe.score(eval_codes, eval_labels))


def probe_accuracy(train_codes: Codes, train_labels: np.ndarray | None, eval_codes: Codes,
                   eval_labels: np.ndarray | None, seed: int = 0, *, eval_split: str = "valid") -> float:
  """Accuracy on the eval codes of a logistic regression trained on all the training codes.

  `seed` is the solver's random_state: L-BFGS draws nothing, so the probe is deterministic whatever it is.
  """
  train_labels = check_labels(train_labels, "train")
  eval_labels = check_labels(eval_labels, eval_split)
  return _fit_score(train_codes, train_labels, eval_codes, eval_labels, seed)


def few_shot_rows(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
  """Sorted row indices of per_class examples of each class, drawn without replacement.

  A class with fewer than per_class examples contributes all of them.
  """
  rows = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
  return np.sort(np.concatenate(rows))


def few_shot_accuracy(train_codes: Codes, train_labels: np.ndarray | None, eval_codes: Codes,
                      eval_labels: np.ndarray | None, per_class: int, draws: int = 5, seed: int = 0, *,
                      eval_split: str = "valid") -> float:
  """Mean accuracy over `draws` probes, each trained on per_class labelled training codes of each class."""
  train_labels = check_labels(train_labels, "train")
  eval_labels = check_labels(eval_labels, eval_split)
  if per_class < 1 or draws < 1:
    raise InputError(f"few-shot probes need per_class >= 1 and draws >= 1 (got {per_class}, {draws})")
  rng = np.random.default_rng(seed)
  accuracies = []
  for _ in range(draws):
    rows = few_shot_rows(train_labels, per_class, rng)
    accuracies.append(_fit_score(train_codes[rows], train_labels[rows], eval_codes, eval_labels, seed))
  return float(np.mean(accuracies))


def probe_metrics(train_codes: Codes, train_labels: np.ndarray | None, eval_codes: Codes,
                  eval_labels: np.ndarray | None, train_mu: np.ndarray, eval_mu: np.ndarray, *,
                  eval_split: str = "valid") -> dict[str, float]:
  """The probe numbers `hsvae evaluate --probe` reports: on the codes, on the dense means, and few-shot."""
  train_labels = check_labels(train_labels, "train")
  eval_labels = check_labels(eval_labels, eval_split)
  result = {
      "probe_accuracy": probe_accuracy(train_codes, train_labels, eval_codes, eval_labels),
      "probe_accuracy_mu": probe_accuracy(train_mu, train_labels, eval_mu, eval_labels),
  }
  for per_class in FEW_SHOT_SIZES:
    result[f"probe_accuracy_n{per_class}"] = few_shot_accuracy(
        train_codes, train_labels, eval_codes, eval_labels, per_class)
  return result
