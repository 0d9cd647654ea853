import numpy as np
import pytest

from hsvae_jax import metrics


def test_hoyer_extremes():
  one_hot = np.eye(4)[[0, 1, 2, 3, 0]]
  assert metrics.hoyer(one_hot, normalise=False) == pytest.approx(1.0)
  flat = np.ones((5, 4))
  assert metrics.hoyer(flat, normalise=False) == pytest.approx(0.0)


def test_hoyer_closed_form_row():
  codes = np.array([[3.0, 4.0, 0.0, 0.0]])  # |z|_1 = 7, |z|_2 = 5
  expected = (2.0 - 7.0 / 5.0) / (2.0 - 1.0)
  assert metrics.hoyer(codes, normalise=False) == pytest.approx(expected)


def test_hoyer_normalisation_divides_by_std_and_keeps_dead_dims_zero():
  rng = np.random.default_rng(0)
  codes = rng.normal(size=(100, 3)) * np.array([100.0, 1.0, 0.0])
  normalised = metrics.hoyer(codes, normalise=True)
  assert np.isfinite(normalised)
  rescaled = codes / np.array([100.0, 1.0, 1.0])
  assert normalised == pytest.approx(metrics.hoyer(rescaled / rescaled.std(0).clip(1e-30), normalise=False))


def test_sparsity_counts():
  codes = np.array([[0.0, 1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
  s = metrics.sparsity(codes)
  assert s["zero_fraction"] == pytest.approx(9 / 12)
  assert s["active_dims"] == pytest.approx(1.0)
  assert s["dims_used"] == 2
  assert s["hoyer_raw"] == pytest.approx(1.0)


def test_active_jaccard_of_one_fixed_mask_is_one_and_of_disjoint_sets_zero():
  fixed = np.tile([1.0, 0.0, 2.0, 0.0], (50, 1))
  assert metrics.active_jaccard(fixed != 0) == pytest.approx(1.0)
  disjoint = np.eye(2)[np.arange(50) % 2]  # every sentence one of two dims: overlap 1 or 0
  expected = 24 / 49  # the chance that a distinct second row has the same dim
  assert metrics.active_jaccard(disjoint != 0, num_pairs=200_000) == pytest.approx(expected, abs=0.01)


def test_active_jaccard_closed_form_pair_and_empty_codes():
  two = np.array([[1, 1, 1, 0], [0, 1, 1, 1]], bool)  # |A & B| = 2, |A | B| = 4
  assert metrics.active_jaccard(two) == pytest.approx(0.5)
  assert metrics.active_jaccard(np.zeros((10, 4), bool)) == pytest.approx(1.0)


def test_usage_entropy_uniform_single_and_empty():
  assert metrics.usage_entropy(np.eye(4, dtype=bool)) == pytest.approx(1.0)
  assert metrics.usage_entropy(np.eye(4, dtype=bool)[[0, 0, 0]]) == pytest.approx(0.0)
  assert metrics.usage_entropy(np.zeros((3, 4), bool)) == 0.0
  half = np.array([[1, 1, 0, 0]] * 3, bool)  # two of four dims used alike: log 2 / log 4
  assert metrics.usage_entropy(half) == pytest.approx(0.5)


def test_sparsity_reports_gate_std_of_the_slab_probabilities():
  codes = np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0], [4.0, 0.0]])
  slab_prob = np.array([[0.2, 0.9], [0.8, 0.1], [0.2, 0.9], [0.8, 0.1]])  # stds 0.3 and 0.4
  s = metrics.sparsity(codes, slab_prob)
  assert s["gate_std"] == pytest.approx(0.35)
  assert s["usage_entropy"] == pytest.approx(1.0)
  assert "gate_std" not in metrics.sparsity(codes)
