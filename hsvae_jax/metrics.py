"""Sparsity of codes: Hoyer's measure as the original code computes it, exact zeros, active dimensions."""

import numpy as np


def hoyer(codes_NxZ: np.ndarray, normalise: bool = True) -> float:
  """Mean over rows of (sqrt(d) - |z|_1 / |z|_2) / (sqrt(d) - 1); 1 = one non-zero entry.

  With `normalise`, each dimension is first divided by its std over the rows (the original's default);
  a dimension that is constant zero stays zero rather than becoming NaN. All-zero rows count as 1.
  """
  codes = np.asarray(codes_NxZ, np.float64)
  d = codes.shape[1]
  if normalise:
    std_Z = codes.std(axis=0)
    codes = np.divide(codes, std_Z, out=np.zeros_like(codes), where=std_Z > 0)
  l1_N = np.abs(codes).sum(axis=1)
  l2_N = np.sqrt((codes**2).sum(axis=1))
  ratio_N = np.divide(l1_N, l2_N, out=np.ones_like(l1_N), where=l2_N > 0)
  return float((np.sqrt(d) - ratio_N.mean()) / (np.sqrt(d) - 1))


def sparsity(codes_NxZ: np.ndarray) -> dict[str, float]:
  """Every sparsity number `hsvae evaluate` reports for a set of codes."""
  nonzero_NxZ = np.asarray(codes_NxZ) != 0
  return {
      "hoyer": hoyer(codes_NxZ, normalise=True),
      "hoyer_raw": hoyer(codes_NxZ, normalise=False),
      "zero_fraction": float(1.0 - nonzero_NxZ.mean()),
      "active_dims": float(nonzero_NxZ.sum(axis=1).mean()),
      "dims_used": int(nonzero_NxZ.any(axis=0).sum()),
  }
