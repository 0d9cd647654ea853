"""Evaluation: one batch of codes on the device at a time, deterministic for a seed, the training
objective's terms, and known answers for the reported numbers."""

import jax
import numpy as np
import pytest

from hsvae_jax import data
from hsvae_jax import evaluate
from hsvae_jax import objectives
from hsvae_jax.hparams import HParams
from hsvae_jax.models import make_model
from conftest import tiny_config, untrained


def _peak_live_device_bytes(trained: evaluate.TrainedModel, token_ids: list[np.ndarray], monkeypatch) -> int:
  peak = []
  eval_step = evaluate.eval_step

  def measured_step(*args):
    out = eval_step(*args)
    jax.block_until_ready(out)
    peak.append(sum(x.nbytes for x in jax.live_arrays()))
    return out

  monkeypatch.setattr(evaluate, "eval_step", measured_step)
  out = evaluate.run_batches(trained, token_ids, {})
  assert all(isinstance(v, np.ndarray) for v in out.values()) and len(out["code"]) == len(token_ids)
  return max(peak)


def test_encoding_keeps_one_batch_of_codes_on_the_device(monkeypatch):
  config = tiny_config()
  corpus, vocab, model, state = untrained(config)
  trained = evaluate.TrainedModel(config, vocab, model, state.params)
  token_ids = vocab.encode_all(corpus.sentences["train"], config.data.max_length)
  batch_size = config.eval.batch_size
  assert len(token_ids) >= 5 * batch_size
  # Every batch is padded to the longest bucket's shape so both runs compile and hold the same arrays.
  token_ids = [np.pad(t, (0, config.data.max_length - len(t)), constant_values=t[-1]) for t in token_ids]
  small = _peak_live_device_bytes(trained, token_ids[:batch_size], monkeypatch)
  large = _peak_live_device_bytes(trained, token_ids[:5 * batch_size], monkeypatch)
  assert large == small


def _trained_and_valid_ids(config):
  corpus, vocab, model, state = untrained(config)
  token_ids = vocab.encode_all(corpus.sentences["valid"], config.data.max_length)
  return evaluate.TrainedModel(config, vocab, model, state.params), token_ids


def test_evaluation_terms_are_the_training_objectives_at_the_same_key_and_repeat_for_a_fixed_seed():
  config = tiny_config()
  config.seed = 3
  trained, token_ids = _trained_and_valid_ids(config)
  out = evaluate.run_batches(trained, token_ids, {})
  again = evaluate.run_batches(trained, token_ids, {})
  for name in out:
    np.testing.assert_array_equal(again[name], out[name], err_msg=name)
  # Batch i of evaluation draws at fold_in(fold_in(key(seed), 1), i) (the key scheme in train.py).
  eval_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  hparams = HParams.from_config(config)
  per_example_terms = jax.jit(objectives.per_example_terms, static_argnums=0)  # as training runs it
  start = 0
  for i, batch in enumerate(data.eval_batches(token_ids, config.eval.batch_size, config.data.length_buckets)):
    device_batch = {k: batch[k] for k in ("tokens", "lengths")}
    terms, _, _ = per_example_terms(trained.model, trained.params, device_batch, jax.random.fold_in(eval_key, i),
                                    hparams)
    real = batch["mask"] > 0
    for name in ("loss", "rec_nll", "kl_z", "kl_gamma"):
      # eval_step's program computes the codes too, so XLA fuses it otherwise: float32 rounding (a KL near 0
      # differs by 2e-7).
      np.testing.assert_allclose(out[name][start:start + real.sum()], np.asarray(terms[name])[real], rtol=1e-5,
                                 atol=1e-5, err_msg=name)
    start += real.sum()
  assert start == len(token_ids)


def test_split_metrics_of_hand_made_terms_and_codes():
  out = {"rec_nll": np.array([10.0, 20.0, 30.0]), "kl_z": np.array([1.0, 2.0, 3.0]),
         "kl_gamma": np.array([0.5, 0.5, 2.0]), "num_tokens": np.array([5, 5, 10]),
         "code": np.array([[0.0, 1.5, 0.0, -2.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]]),
         "slab_prob": np.array([[0.2, 0.9, 0.1, 0.8], [0.3, 0.2, 0.1, 0.4], [0.7, 0.4, 0.1, 0.2]])}
  result = evaluate.split_metrics(make_model(tiny_config().model, vocab_size=11), out)  # the GRU decoder's
  assert result["elbo"] == pytest.approx(-(20.0 + 2.0 + 1.0))  # -(rec_nll + kl_z + kl_gamma), batch means
  assert result["rec_nll"] == pytest.approx(20.0) and result["rec_nll_token"] == pytest.approx(60.0 / 20)
  assert result["zero_fraction"] == pytest.approx(9 / 12)
  assert result["active_dims"] == pytest.approx(1.0)  # (2 + 0 + 1) / 3
  assert result["dims_used"] == 3
