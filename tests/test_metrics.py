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
