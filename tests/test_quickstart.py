"""The quickstart's promise: HSVAE codes use about the share of dims asked for, different dims per sentence."""

import pytest

from hsvae_jax import workdir as layout
from conftest import load_config_file

# One xdist worker takes this module whole: its tests share the evaluations.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def quickstart_results(quickstart_run):
  return {latent: layout.read_evals(quickstart_run(latent))["test"] for latent in ("hsvae", "gaussian")}


def test_hsvae_codes_are_sparse_adaptive_and_gaussian_codes_dense(quickstart_results):
  hsvae, gaussian = quickstart_results["hsvae"], quickstart_results["gaussian"]
  asked = load_config_file("quickstart").hparams.target_active
  assert abs((1 - hsvae["zero_fraction"]) - asked) < 0.15  # the knob: about the share asked for
  assert gaussian["zero_fraction"] <= 0.05
  assert hsvae["hoyer"] > gaussian["hoyer"] + 0.1
  # Adaptive, not one mask: sentences share under half their active dims, and every dim gets used.
  assert hsvae["active_jaccard"] < 0.5 and hsvae["usage_entropy"] > 0.9 and hsvae["gate_std"] > 0.2
  # Sparse, yet still a usable autoencoder: it reconstructs about as well as the dense model.
  assert hsvae["rec_nll_token"] < 1.5 * gaussian["rec_nll_token"]


def test_codes_separate_the_synthetic_topics(quickstart_results):
  # Eight topics, chance is 1/8: a code that means something separates them.
  for result in quickstart_results.values():
    assert result["probe_accuracy"] > 0.9
  # Exact zeros cost the HSVAE little against its own dense means.
  hsvae = quickstart_results["hsvae"]
  assert hsvae["probe_accuracy"] > hsvae["probe_accuracy_mu"] - 0.05
