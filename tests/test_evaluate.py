"""Evaluation holds one batch of codes on the device at a time, whatever the split's size."""

import jax
import numpy as np

from hsvae_jax import data
from hsvae_jax import evaluate
from hsvae_jax import train
from hsvae_jax.models import make_model
from conftest import tiny_config


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
  config.eval.batch_size = 32
  corpus = data.load_corpus(config.data)
  vocab = data.Vocabulary.build(corpus.sentences["train"], config.data.vocab_size)
  model = make_model(config.model, len(vocab))
  state = train.create_train_state(model, train.make_optimizer(config.train), jax.random.key(0))
  trained = evaluate.TrainedModel(config, vocab, model, state.params)
  token_ids = vocab.encode_all(corpus.sentences["train"], config.data.max_length)
  assert len(token_ids) >= 320
  # Every batch is padded to the longest bucket's shape so both runs compile and hold the same arrays.
  token_ids = [np.pad(t, (0, config.data.max_length - len(t)), constant_values=t[-1]) for t in token_ids]
  small = _peak_live_device_bytes(trained, token_ids[:32], monkeypatch)
  large = _peak_live_device_bytes(trained, token_ids[:320], monkeypatch)
  assert large == small
