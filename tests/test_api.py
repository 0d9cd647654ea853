"""hsvae_jax.load: encode to sparse codes, decode codes to sentences, and the CLI commands built on them."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsvae_jax
from hsvae_jax import api
from hsvae_jax import data
from hsvae_jax import evaluate
from hsvae_jax.errors import InputError

# One xdist worker takes this module whole: its tests share the loaded model's compiled programs.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def workdir(quickstart_run):
  """The quickstart HSVAE, as the quickstart config trains it."""
  return quickstart_run("hsvae")


@pytest.fixture(scope="module")
def model(workdir):
  return hsvae_jax.load(workdir)


@pytest.fixture(scope="module")
def sentences(model):
  return data.load_corpus(model.config.data).sentences["train"][:256]


def _token_accuracy(sentences, decoded):
  """The share of the sentences' words that the decoded sentences have at the same position."""
  pairs = [(s.split(), d.split()) for s, d in zip(sentences, decoded)]
  return sum(sum(a == b for a, b in zip(s, d)) for s, d in pairs) / sum(len(s) for s, _ in pairs)


def test_api_encode_equals_the_hsvae_encode_file(hsvae_in_process, workdir, model, sentences, tmp_path):
  (tmp_path / "in.txt").write_text("\n".join(sentences[:40]) + "\n")
  hsvae_in_process("encode", "--workdir", workdir, "--input", tmp_path / "in.txt", "--output", tmp_path / "codes.npz")
  from_file = api.load_codes(tmp_path / "codes.npz")
  codes = model.encode(sentences[:40])
  assert codes.codes.format == "csr" and codes.codes.shape == (40, 32)
  assert (codes.codes != from_file.codes).nnz == 0
  np.testing.assert_array_equal(codes.mu, from_file.mu)
  np.testing.assert_array_equal(codes.slab_prob, from_file.slab_prob)
  # Exact zeros are not stored; what is stored is mu where the slab is likelier than the spike.
  assert (codes.codes.data != 0).all() and 0 < codes.codes.nnz < 40 * 32
  np.testing.assert_array_equal(codes.codes.toarray(), np.where(codes.slab_prob > 0.5, codes.mu, 0.0))


def test_a_second_encode_or_decode_compiles_nothing(workdir, sentences):
  model = hsvae_jax.load(workdir)  # fresh compiled functions
  codes = model.encode(sentences[:100])
  model.decode(codes)
  compiled = model._encode_batch._cache_size(), model._generate._cache_size()
  assert compiled[0] >= 1 and compiled[1] == 1
  model.encode(sentences[100:250])  # other sentences, the same length buckets
  model.decode(codes.codes[:7])
  assert (model._encode_batch._cache_size(), model._generate._cache_size()) == compiled


def test_an_iterable_is_encoded_in_bounded_runs_and_equals_the_list(model, sentences):
  runs = list(model.iter_encode(iter(sentences), batch_size=8))
  assert [len(r) for r in runs] == [128, 128]  # 16 batches a run
  whole = model.encode(sentences)
  streamed = model.encode((s for s in sentences), batch_size=8)
  # The same zeros; values to float tolerance (another batch size is another matmul).
  np.testing.assert_array_equal(streamed.codes.toarray() != 0, whole.codes.toarray() != 0)
  np.testing.assert_allclose(streamed.codes.toarray(), whole.codes.toarray(), atol=1e-5)
  np.testing.assert_allclose(streamed.mu, whole.mu, atol=1e-5)
  with pytest.raises(InputError, match="no sentences"):
    model.encode(iter([]))


def test_reconstruction_recovers_words_that_an_untrained_model_does_not(model, sentences):
  accuracy = _token_accuracy(sentences, model.reconstruct(sentences))
  batch = {"tokens": jnp.zeros((2, 8), jnp.int32), "lengths": jnp.full((2,), 8)}
  init = jax.jit(model.module.init)(jax.random.key(1), batch, jax.random.key(2),
                                   jnp.float32(1.0))["params"]  # one program, not op by op
  untrained = api.Model(evaluate.TrainedModel(model.config, model.vocab, model.module, init))
  untrained_accuracy = _token_accuracy(sentences, untrained.reconstruct(sentences))
  # Measured: 0.18 after 300 steps, 0.20 after 1,000 (the synthetic corpus's word order is random within a
  # topic, so no code pins it down); an untrained decoder gets 0.00-0.01.
  assert accuracy > 0.12 > 0.03 > untrained_accuracy, (accuracy, untrained_accuracy)


def test_sampled_decoding_is_seeded_and_greedy_is_the_default(model, sentences):
  codes = model.encode(sentences[:20])
  greedy = model.decode(codes)
  # A row decoded alone (padded to a batch of its own) reads as it does among the others.
  assert greedy == model.decode(codes.codes.toarray())
  assert greedy[:3] == [model.decode(row)[0] for row in codes.codes[:3]]
  first, again = model.decode(codes, key=jax.random.key(3)), model.decode(codes, key=jax.random.key(3))
  assert first == again and first != model.decode(codes, key=jax.random.key(4))
  assert all(len(s.split()) <= 4 for s in model.decode(codes, max_length=5))
  with pytest.raises(InputError, match="this model's have 32 dimensions"):
    model.decode(np.zeros((2, 5)))


def test_decode_and_explore_commands(hsvae_in_process, workdir, model, sentences, tmp_path):
  model.encode(sentences[:3]).save(tmp_path / "codes.npz")
  decoded = hsvae_in_process("decode", "--workdir", workdir, "--input", tmp_path / "codes.npz").stdout.splitlines()
  assert decoded == model.decode(api.load_codes(tmp_path / "codes.npz"))
  (tmp_path / "in.txt").write_text(sentences[0] + "\n")
  printed = hsvae_in_process("explore", "--workdir", workdir, "--input", tmp_path / "in.txt").stdout.splitlines()
  active = model.encode(sentences[:1]).codes.nnz
  assert printed[0] == sentences[0] and f"{active} active dims" in printed[1]
  assert printed[2] == f"  decoded: {decoded[0]}"
  assert len([line for line in printed if line.startswith("  without ")]) == active


def test_strongest_takes_the_largest_positive_values_largest_first():
  values = np.array([0.5, -2.0, 0.0, 3.0, 0.5, 1.0])
  np.testing.assert_array_equal(api.strongest(values, 3), [3, 5, 0])
  np.testing.assert_array_equal(api.strongest(values, 10), [3, 5, 0, 4])  # ties in input order; no zeros
  np.testing.assert_array_equal(api.strongest(-values, 3), [1])


def test_explain_gives_each_active_dim_the_corpus_sentences_furthest_its_way(model, sentences):
  corpus, queries = sentences[:200], sentences[200:206]
  explained = model.explain(queries, corpus, top=3)
  code_NxZ, corpus_NxZ = model.encode(queries).codes.toarray(), model.encode(corpus).codes.toarray()
  assert len(explained) == len(queries)
  for code_Z, dims in zip(code_NxZ, explained):
    assert sorted(active.dim for active in dims) == list(np.flatnonzero(code_Z))  # every active dim, only those
    strengths = [abs(active.value) for active in dims]
    assert strengths == sorted(strengths, reverse=True)
    for active in dims:
      assert active.value == pytest.approx(code_Z[active.dim])
      sign = np.sign(active.value)
      column_N = corpus_NxZ[:, active.dim]
      shown = [value for _, value in active.examples]
      # The corpus's largest codes on the dim in the sentence's direction, largest first, as many as there are.
      assert len(shown) == min(3, int((sign * column_N > 0).sum()))
      np.testing.assert_allclose(sign * np.array(shown), np.sort(sign * column_N)[::-1][: len(shown)], rtol=1e-6)
      for text, value in active.examples:
        assert corpus_NxZ[corpus.index(text), active.dim] == pytest.approx(value)
  with pytest.raises(InputError, match="top 0 is not positive"):
    model.explain(queries, corpus, top=0)


def test_explain_command_prints_what_model_explain_finds(hsvae_in_process, workdir, model, tmp_path):
  train = data.load_corpus(model.config.data).sentences["train"]
  queries = train[:2]
  (tmp_path / "in.txt").write_text("\n".join(queries) + "\n")
  printed = hsvae_in_process("explain", "--workdir", workdir, "--input", tmp_path / "in.txt", "--split", "train",
                             "--top", "2").stdout.splitlines()
  expected = []
  for sentence, dims in zip(queries, model.explain(queries, train, top=2)):
    expected += [sentence, f"  {len(dims)} active dims"]
    for active in dims:
      expected.append(f"  dim {active.dim} = {active.value:+.2f}; the train sentences most this way:")
      expected += [f"    {value:+.2f}  {text}" for text, value in active.examples]
  assert printed == expected
