"""Sparsity of codes: Hoyer's measure as the original code computes it, exact zeros, active dimensions,
and whether the sparsity adapts to the sentence (gate spread, overlap of active sets, usage entropy)."""

import numpy as np

JACCARD_PAIRS = 10_000  # random pairs of sentences: the mean overlap is within about +-0.005 of all pairs'


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


def active_jaccard(active_NxZ: np.ndarray, num_pairs: int = JACCARD_PAIRS, seed: int = 0) -> float:
  """Mean Jaccard overlap |A & B| / |A | B| of the active sets of random pairs of distinct sentences.

  1 means every sentence uses the same dimensions (one fixed mask); two empty sets count as 1 (the same
  mask), so empty codes are not mistaken for adaptive ones. Pairs are drawn with a fixed seed.
  """
  active = np.asarray(active_NxZ, bool)
  n = active.shape[0]
  if n < 2:
    return 1.0
  rng = np.random.default_rng(seed)
  first = rng.integers(0, n, num_pairs)
  second = (first + rng.integers(1, n, num_pairs)) % n  # never the same sentence
  both = (active[first] & active[second]).sum(1)
  either = (active[first] | active[second]).sum(1)
  return float(np.divide(both, either, out=np.ones(num_pairs), where=either > 0).mean())


def usage_entropy(active_NxZ: np.ndarray) -> float:
  """Entropy of how often each dimension is active, over log(dims): 1 = all used alike, 0 = one or none."""
  counts_Z = np.asarray(active_NxZ, bool).sum(0).astype(np.float64)
  if counts_Z.sum() == 0 or counts_Z.size < 2:
    return 0.0
  share_Z = counts_Z[counts_Z > 0] / counts_Z.sum()
  return float(-(share_Z * np.log(share_Z)).sum() / np.log(counts_Z.size))


def sparsity(codes_NxZ: np.ndarray, slab_prob_NxZ: np.ndarray | None = None) -> dict[str, float]:
  """Every sparsity number `hsvae evaluate` reports for a set of codes (and gate_std given slab_prob)."""
  nonzero_NxZ = np.asarray(codes_NxZ) != 0
  result = {
      "hoyer": hoyer(codes_NxZ, normalise=True),
      "hoyer_raw": hoyer(codes_NxZ, normalise=False),
      "zero_fraction": float(1.0 - nonzero_NxZ.mean()),
      "active_dims": float(nonzero_NxZ.sum(axis=1).mean()),
      "dims_used": int(nonzero_NxZ.any(axis=0).sum()),
      "active_jaccard": active_jaccard(nonzero_NxZ),
      "usage_entropy": usage_entropy(nonzero_NxZ),
  }
  if slab_prob_NxZ is not None:
    # How much a dimension's probability of being used varies between sentences (0: a fixed gate).
    result["gate_std"] = float(np.asarray(slab_prob_NxZ, np.float64).std(axis=0).mean())
  return result
