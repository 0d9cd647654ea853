"""Tests of hsvae_jax.data: vocabulary, corpus files, synthetic corpus, batch pipelines."""

import pathlib
import sys
import types

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

import hsvae_jax.data
from hsvae_jax import default_config
from hsvae_jax.data import corpus as corpus_lib
from hsvae_jax.data import pipeline, synthetic, tokenizer
from hsvae_jax.errors import InputError

SHARED_DATA = pathlib.Path(__file__).parents[1].parent / "shared" / "data"
BUCKETS = (4, 8, 16)


def _data_config(**overrides):
  config = default_config.get_config().data
  config.update(overrides)
  return config


def _write(folder: pathlib.Path, files: dict[str, str | bytes]) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  for name, content in files.items():
    path = folder / name
    if isinstance(content, bytes):
      path.write_bytes(content)
    else:
      path.write_text(content, encoding="utf-8")
  return folder


def _numbered_corpus(folder: pathlib.Path, n: int, **extra: str) -> pathlib.Path:
  """train.txt with sentence i = 'sentence w<i>' and label i % 3, so labels can be checked."""
  return _write(folder, {
      "train.txt": "".join(f"sentence w{i}\n" for i in range(n)),
      "train_class_label.txt": "".join(f"{i % 3}\n" for i in range(n)),
      **extra,
  })


# Vocabulary.


def test_reserved_tokens_have_the_original_ids():
  vocab = tokenizer.Vocabulary.from_words(["b", "_UNK", "a"])
  assert (tokenizer.PAD, tokenizer.EOS, tokenizer.UNK) == (0, 1, 2)
  assert len(vocab) == 5
  assert vocab.decode([3, 4]) == "b a"
  assert vocab.decode([2]) == "_UNK"
  with pytest.raises(ValueError):
    tokenizer.Vocabulary(["a", "<PAD>", "<EOS>", "_UNK"])


def test_build_ranks_by_frequency_then_alphabet_and_caps_the_size():
  sentences = ["c b a", "c b _UNK _UNK _UNK", "c d"]
  vocab = tokenizer.Vocabulary.build(sentences, max_size=6)
  # c (3), b (2), then a and d tied at 1: a wins; _UNK is reserved, not counted.
  assert len(vocab) == 6
  assert vocab.decode(range(3, 6)) == "c b a"
  assert list(vocab.encode("d", 10)) == [tokenizer.UNK, tokenizer.EOS]
  assert len(tokenizer.Vocabulary.build(sentences, max_size=100)) == 7
  with pytest.raises(InputError):
    tokenizer.Vocabulary.build(sentences, max_size=2)


def test_encode_maps_unknown_words_truncates_and_appends_eos():
  vocab = tokenizer.Vocabulary.from_words(["the", "cat", "sat"])
  ids = vocab.encode("the  cat\tsat on", 10)
  assert ids.dtype == np.int32
  assert list(ids) == [3, 4, 5, tokenizer.UNK, tokenizer.EOS]
  assert list(vocab.encode("the cat sat on", 3)) == [3, 4, tokenizer.EOS]
  # Reserved tokens written in a sentence are unknown words, not its end.
  assert list(vocab.encode("<PAD> <EOS> _UNK", 10)) == [2, 2, 2, tokenizer.EOS]
  assert list(vocab.encode("", 10)) == [tokenizer.EOS]
  assert vocab.decode(vocab.encode("the cat sat", 10)) == "the cat sat"
  assert vocab.decode([4, 3, tokenizer.PAD, 5]) == "cat the"
  assert [list(x) for x in vocab.encode_all(["cat", "sat"], 4)] == [[4, 1], [5, 1]]
  with pytest.raises(InputError):
    vocab.encode("the", 1)


def test_vocabulary_file_round_trip_and_paper_format(tmp_path):
  vocab = tokenizer.Vocabulary.build(["x y y z z z"], max_size=10)
  vocab.save(tmp_path / "vocab.txt")
  loaded = tokenizer.Vocabulary.load(tmp_path / "vocab.txt")
  assert len(loaded) == len(vocab) == 6
  assert loaded.decode(range(3, 6)) == vocab.decode(range(3, 6)) == "z y x"

  # The paper's vocab.txt: _UNK among the words, no <PAD>/<EOS>, yahoo's with a blank line.
  _write(tmp_path, {"paper.txt": "?\nthe\n\n_UNK\n"})
  paper = tokenizer.Vocabulary.load(tmp_path / "paper.txt")
  assert len(paper) == 5
  assert list(paper.encode("the ? dog", 10)) == [4, 3, tokenizer.UNK, tokenizer.EOS]


def test_real_vocabulary_file_loads_without_duplicates():
  path = SHARED_DATA / "yahoo" / "vocab.txt"
  if not path.exists():
    pytest.skip(f"{path} absent")
  vocab = tokenizer.Vocabulary.load(path)
  # 20,000 lines: 19,999 words with _UNK and a blank line, plus <PAD> and <EOS>.
  assert len(vocab) == 20_001
  assert vocab.decode(vocab.encode("the _UNK", 40)) == "the _UNK"


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    ("", "empty vocabulary"),
    ("\n\n", "empty vocabulary"),
    ("a\nb c\n", "line 2"),
    ("a\nb\na\n", "line 3"),
])
def test_bad_vocabulary_file_is_an_input_error(tmp_path, content, problem):
  path = tmp_path / "vocab.txt"
  if content is not None:
    path.write_text(content)
  with pytest.raises(InputError, match=problem) as error:
    tokenizer.Vocabulary.load(path)
  assert str(path) in str(error.value)


# Corpus files.


def test_read_lines_strips_line_endings_and_reports_bad_utf8(tmp_path):
  _write(tmp_path, {"a.txt": "one\r\ntwo \u00e9\nthree", "bad.txt": b"ok\nok\nbad \xff\xfe\n"})
  assert corpus_lib.read_lines(tmp_path / "a.txt") == ["one", "two \u00e9", "three"]
  with pytest.raises(InputError, match=r"bad\.txt, line 3: not valid UTF-8"):
    corpus_lib.read_lines(tmp_path / "bad.txt")


def test_dir_corpus_with_every_split_loads_as_written(tmp_path):
  folder = _write(tmp_path / "mine", {
      "train.txt": "a b\nb c\nc d\n",
      "train_class_label.txt": "0\n1\n4\n",
      "valid.txt": "a\n",
      "valid_class_label.txt": "2\n",
      "test.txt": "d e\ne\n",
      "vocab.txt": "a\nb\n",
  })
  corpus = corpus_lib.load_corpus(_data_config(name="dir", dir=str(folder)))
  assert corpus.name == "mine"
  assert corpus.sentences == {"train": ["a b", "b c", "c d"], "valid": ["a"], "test": ["d e", "e"]}
  np.testing.assert_array_equal(corpus.labels["train"], [0, 1, 4])
  assert corpus.labels["train"].dtype == np.int64
  np.testing.assert_array_equal(corpus.labels["valid"], [2])
  assert corpus.labels["test"] is None
  assert corpus.num_classes == 5
  assert corpus.vocab_words == ["a", "b"]


def test_missing_splits_are_carved_deterministically(tmp_path):
  config = _data_config(name="dir", dir=str(_numbered_corpus(tmp_path, 200)))
  first = corpus_lib.load_corpus(config)
  second = corpus_lib.load_corpus(config)
  assert first.sentences == second.sentences
  for split in corpus_lib.SPLITS:
    np.testing.assert_array_equal(first.labels[split], second.labels[split])
  assert {s: len(first.sentences[s]) for s in corpus_lib.SPLITS} == {
      "train": 160, "valid": 20, "test": 20}
  seen = [w for s in corpus_lib.SPLITS for w in first.sentences[s]]
  assert sorted(seen) == sorted(f"sentence w{i}" for i in range(200))
  for split in corpus_lib.SPLITS:
    numbers = [int(s.split("w")[1]) for s in first.sentences[split]]
    assert numbers == sorted(numbers)  # corpus order kept
    np.testing.assert_array_equal(first.labels[split], np.array(numbers) % 3)
  assert first.vocab_words is None and first.num_classes == 3
  # A random carve, not the head or tail of the file.
  assert first.sentences["valid"] != [f"sentence w{i}" for i in range(20)]


def test_only_missing_splits_are_carved(tmp_path):
  folder = _numbered_corpus(tmp_path, 100, **{"valid.txt": "v\n"})
  corpus = corpus_lib.load_corpus(
      _data_config(name="dir", dir=str(folder), test_fraction=0.25))
  assert corpus.sentences["valid"] == ["v"] and corpus.labels["valid"] is None
  assert len(corpus.sentences["test"]) == 25 and len(corpus.sentences["train"]) == 75


def test_real_yahoo_slice_as_dir_corpus(tmp_path):
  source = SHARED_DATA / "yahoo"
  if not source.exists():
    pytest.skip(f"{source} absent")
  # Every 5th line: 2,000 sentences, 200 of each class (the file is grouped by class).
  lines = corpus_lib.read_lines(source / "valid.txt")[::5]
  labels = corpus_lib.read_lines(source / "valid_class_label.txt")[::5]
  folder = _write(tmp_path / "yahoo", {
      "train.txt": "\n".join(lines) + "\n",
      "train_class_label.txt": "\n".join(labels) + "\n",
      "vocab.txt": (source / "vocab.txt").read_text(),
  })
  corpus = corpus_lib.load_corpus(_data_config(name="dir", dir=str(folder)))
  assert [len(corpus.sentences[s]) for s in corpus_lib.SPLITS] == [1600, 200, 200]
  assert corpus.num_classes == 10
  assert len(corpus.vocab_words) == 19_999  # one of the 20,000 lines is blank
  assert set(corpus.labels["train"]) == set(range(10))
  vocab = tokenizer.Vocabulary.from_words(corpus.vocab_words)
  ids = vocab.encode_all(corpus.sentences["train"], 40)
  assert max(map(len, ids)) <= 40


def test_a_valid_only_tfds_corpus_is_carved_into_three_splits(monkeypatch):
  def fake_load(name, manual_dir, data_dir):
    assert (name, manual_dir, data_dir) == ("yelp", "", "")
    return {"valid": ([f"s{i}" for i in range(50)], np.arange(50) % 2)}

  def fake_vocab(name, manual_dir, data_dir):
    assert (name, manual_dir, data_dir) == ("yelp", "", "")
    return ["s1", "s0"]

  fake = types.ModuleType("hsvae_jax.data.tfds_corpora")
  fake.load_tfds_corpus = fake_load
  fake.tfds_vocab_words = fake_vocab
  monkeypatch.setitem(sys.modules, fake.__name__, fake)
  monkeypatch.setattr(hsvae_jax.data, "tfds_corpora", fake, raising=False)
  corpus = corpus_lib.load_corpus(_data_config(name="yelp"))
  assert [len(corpus.sentences[s]) for s in corpus_lib.SPLITS] == [40, 5, 5]
  assert corpus.num_classes == 2 and corpus.name == "yelp"
  assert corpus.vocab_words == ["s1", "s0"]
  everything = sorted(w for s in corpus_lib.SPLITS for w in corpus.sentences[s])
  assert everything == sorted(f"s{i}" for i in range(50))
  for split in corpus_lib.SPLITS:
    numbers = np.array([int(s[1:]) for s in corpus.sentences[split]])
    np.testing.assert_array_equal(corpus.labels[split], numbers % 2)


@pytest.mark.parametrize("files, named, problem", [
    (None, "", "no such corpus folder"),
    ({"valid.txt": "a\n"}, "train.txt", "missing"),
    ({"train.txt": ""}, "train.txt", "no sentences"),
    ({"train.txt": b"fine\n\xff\xfe\n"}, "train.txt", "line 2: not valid UTF-8"),
    ({"train.txt": "a\n\nb\n"}, "train.txt", "line 2: empty sentence"),
    ({"train.txt": "a\n   \nb\n"}, "train.txt", "line 2: empty sentence"),
    ({"train.txt": "a\nb\n", "train_class_label.txt": "1\n"}, "train_class_label.txt",
     "1 labels for 2 sentences"),
    ({"train.txt": "a\nb\n", "train_class_label.txt": "1\npositive\n"},
     "train_class_label.txt", "line 2: 'positive' is not a non-negative integer"),
    ({"train.txt": "a\nb\n", "train_class_label.txt": "1\n-1\n"}, "train_class_label.txt",
     "line 2"),
    ({"train.txt": "a\nb\n", "train_class_label.txt": "0\n9223372036854775808\n"}, "train_class_label.txt",
     "line 2: label 9223372036854775808 does not fit in int64"),
    ({"train.txt": "a\nb\n", "train_class_label.txt": "0\n1000000000\n"}, "train_class_label.txt",
     "label 1000000000 implies more classes than the corpus's 2 sentences"),
    ({"train.txt": "a\n", "valid.txt": ""}, "valid.txt", "no sentences"),
    ({"train.txt": "a\n", "vocab.txt": "a\na\n"}, "vocab.txt", "listed twice"),
])
def test_bad_dir_corpus_is_an_input_error_naming_the_file(tmp_path, files, named, problem):
  folder = tmp_path / "corpus"
  if files is not None:
    _write(folder, files)
  with pytest.raises(InputError, match=problem) as error:
    corpus_lib.load_corpus(_data_config(name="dir", dir=str(folder)))
  assert str(folder / named) in str(error.value)


def test_bad_corpus_config_is_an_input_error(tmp_path):
  with pytest.raises(InputError, match="dir, synthetic, dbpedia, yahoo, yelp"):
    corpus_lib.load_corpus(_data_config(name="wiki"))
  with pytest.raises(InputError, match="data.dir is empty"):
    corpus_lib.load_corpus(_data_config(name="dir"))
  folder = str(_numbered_corpus(tmp_path, 2))
  with pytest.raises(InputError, match="leave none for train"):
    corpus_lib.load_corpus(_data_config(name="dir", dir=folder))
  with pytest.raises(InputError, match="data.valid_fraction"):
    corpus_lib.load_corpus(_data_config(name="dir", dir=folder, valid_fraction=1.5))


# Synthetic corpus.


def _small_synthetic(**overrides):
  config = default_config.get_config().data.synthetic
  config.update({"num_sentences": 600, **overrides})
  return config


def test_synthetic_corpus_is_deterministic_and_labelled_by_topic():
  config = _small_synthetic()
  corpus = synthetic.make_synthetic_corpus(config, seed=3)
  again = synthetic.make_synthetic_corpus(config, seed=3)
  other = synthetic.make_synthetic_corpus(config, seed=4)
  assert corpus.sentences == again.sentences
  assert corpus.sentences != other.sentences
  assert [len(corpus.sentences[s]) for s in corpus_lib.SPLITS] == [480, 60, 60]
  assert corpus.num_classes == config.num_topics
  for split in corpus_lib.SPLITS:
    np.testing.assert_array_equal(corpus.labels[split], again.labels[split])
    assert corpus.labels[split].dtype == np.int64
  labels = np.concatenate([corpus.labels[s] for s in corpus_lib.SPLITS])
  assert set(labels) == set(range(config.num_topics))

  # Structure: a word off the common slots belongs to one topic; common words to many.
  topics_of = {}
  common = set()
  for split in corpus_lib.SPLITS:
    for sentence, label in zip(corpus.sentences[split], corpus.labels[split]):
      words = sentence.split()
      assert config.min_words <= len(words) <= config.max_words
      for position, word in enumerate(words):
        if position % 3:
          topics_of.setdefault(word, set()).add(label)
        else:
          common.add(word)
  assert all(len(topics) == 1 for topics in topics_of.values())
  assert not common & topics_of.keys()
  assert len(topics_of) <= config.num_topics * config.words_per_topic
  assert len(common) <= config.num_common_words


def test_synthetic_corpus_loads_through_load_corpus_and_checks_its_config():
  data_config = _data_config(name="synthetic")
  data_config.synthetic.num_sentences = 100
  corpus = corpus_lib.load_corpus(data_config)
  assert [len(corpus.sentences[s]) for s in corpus_lib.SPLITS] == [80, 10, 10]
  with pytest.raises(InputError, match="data.synthetic.max_words"):
    synthetic.make_synthetic_corpus(_small_synthetic(min_words=5, max_words=4), seed=0)
  with pytest.raises(InputError, match="data.synthetic.num_sentences"):
    synthetic.make_synthetic_corpus(_small_synthetic(num_sentences=5), seed=0)


# Batch pipelines.


def _token_ids(n: int, seed: int = 0) -> list[np.ndarray]:
  """Sentence i is i + 3 repeated, then EOS: its first token names it."""
  lengths = np.random.default_rng(seed).integers(1, max(BUCKETS) + 1, size=n)
  return [np.array([i + 3] * (k - 1) + [tokenizer.EOS], np.int32) for i, k in enumerate(lengths)]


def _names(batch) -> list[int]:
  """Which sentences a batch holds; -1 for a lone EOS, which names no sentence."""
  return [int(row[0]) - 3 if length > 1 else -1 for row, length in
          zip(batch["tokens"], batch["lengths"])]


def _check_batch(batch, token_ids):
  tokens, lengths = batch["tokens"], batch["lengths"]
  assert tokens.dtype == np.int32 and lengths.dtype == np.int32
  assert tokens.shape[1] in BUCKETS
  assert tokens.shape[1] == pipeline.bucket_length(lengths.max(), BUCKETS)
  for row, length in zip(tokens, lengths):
    assert row[length - 1] == tokenizer.EOS
    assert np.all(row[length:] == tokenizer.PAD)
    assert np.all(row[: length - 1] > tokenizer.UNK)
    if length > 1:
      np.testing.assert_array_equal(row[:length], token_ids[row[0] - 3])


def test_bucket_length():
  assert [pipeline.bucket_length(n, BUCKETS) for n in (1, 4, 5, 8, 9, 16)] == [4, 4, 8, 8, 16, 16]
  assert pipeline.bucket_length(3, (16, 4)) == 4
  with pytest.raises(ValueError):
    pipeline.bucket_length(17, BUCKETS)


def test_train_batches_are_bucketed_padded_and_reshuffled_each_epoch():
  token_ids = _token_ids(60)
  iterator = iter(pipeline.train_dataset(token_ids, 6, 0, BUCKETS))
  epochs = []
  for _ in range(3):
    batches = [next(iterator) for _ in range(10)]
    for batch in batches:
      assert batch["tokens"].shape[0] == batch["lengths"].shape[0] == 6
      _check_batch(batch, token_ids)
    epochs.append([np.asarray(b["lengths"]) for b in batches])
  # Each epoch sees every sentence once (by length multiset) in a new order.
  all_lengths = sorted(len(t) for t in token_ids)
  for epoch in epochs:
    assert sorted(np.concatenate(epoch)) == all_lengths
  assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))
  # Single sentences reach every bucket.
  single = iter(pipeline.train_dataset(token_ids, 1, 0, BUCKETS))
  assert {next(single)["tokens"].shape[1] for _ in range(60)} == set(BUCKETS)


def test_train_shuffle_depends_on_the_seed():
  token_ids = _token_ids(40)

  def first_epoch(seed):
    iterator = iter(pipeline.train_dataset(token_ids, 4, seed, BUCKETS))
    return [n for _ in range(10) for n in _names(next(iterator))]

  assert first_epoch(0) == first_epoch(0)
  assert first_epoch(0) != first_epoch(1)


def test_train_iterator_state_round_trip(tmp_path):
  token_ids = _token_ids(50)
  dataset = pipeline.train_dataset(token_ids, 8, 7, BUCKETS)
  iterator = iter(dataset)
  for _ in range(3):
    next(iterator)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(2)]

  restored = iter(dataset)
  restored.set_state(state)
  for want in expected:
    got = next(restored)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])

  # The same through an Orbax composite checkpoint, as training saves it.
  iterator = iter(dataset)
  for _ in range(3):
    next(iterator)
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(iterator)))
    manager.wait_until_finished()
    fresh = iter(dataset)
    manager.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  for want in expected:
    np.testing.assert_array_equal(next(fresh)["tokens"], want["tokens"])


def test_process_shards_split_the_global_batch():
  token_ids = _token_ids(30)
  whole = iter(pipeline.train_dataset(token_ids, 6, 0, BUCKETS))
  shards = [iter(pipeline.train_dataset(token_ids, 6, 0, BUCKETS, process, 3)) for process in range(3)]
  for _ in range(7):  # across an epoch boundary
    parts = [next(shard) for shard in shards]
    expected = next(whole)
    for name in ("tokens", "lengths"):
      assert all(len(part[name]) == 2 for part in parts)
      np.testing.assert_array_equal(np.concatenate([part[name] for part in parts]), expected[name])


def test_train_dataset_rejects_what_cannot_be_batched():
  with pytest.raises(InputError, match="fewer than the batch size"):
    pipeline.train_dataset(_token_ids(10), 12, 0, BUCKETS, 0, 3)
  with pytest.raises(InputError, match="split evenly"):
    pipeline.train_dataset(_token_ids(10), 5, 0, BUCKETS, 0, 3)
  with pytest.raises(InputError, match="data.length_buckets"):
    pipeline.train_dataset(_token_ids(10), 2, 0, (4, 8))


def test_eval_batches_cover_every_sentence_once_in_order():
  token_ids = _token_ids(23)
  batches = list(pipeline.eval_batches(token_ids, 5, BUCKETS))
  assert len(batches) == 5
  index = np.concatenate([b["index"] for b in batches])
  mask = np.concatenate([b["mask"] for b in batches])
  np.testing.assert_array_equal(index, list(range(23)) + [-1] * 2)
  np.testing.assert_array_equal(mask, [1.0] * 23 + [0.0] * 2)
  for batch in batches:
    assert batch["mask"].dtype == np.float32 and batch["index"].dtype == np.int32
    assert batch["tokens"].shape[0] == 5
    _check_batch(batch, token_ids)
    for row, length, i in zip(batch["tokens"], batch["lengths"], batch["index"]):
      if i >= 0:
        np.testing.assert_array_equal(row[:length], token_ids[i])
      else:
        assert length == 1 and row[0] == tokenizer.EOS
  with pytest.raises(InputError):
    pipeline.eval_batches(_token_ids(3), 0, BUCKETS)
