"""Trained models from Python: load a workdir, encode sentences into sparse codes, decode codes into sentences.

  import hsvae_jax
  model = hsvae_jax.load("runs/quickstart")        # config, vocabulary, parameters, compiled functions
  codes = model.encode(["medu fite fite mele", "sola rino"])
  codes.codes                                       # scipy.sparse.csr_matrix [2, latent_dim], exact zeros
  model.decode(codes)                               # greedy sentences from the codes; key= samples instead
  model.explain(["vp records is a reggae label ."], corpus)  # each active dim, with the corpus sentences most on it

Each function compiles once per batch shape (length bucket) and is reused across calls. `load` turns on
JAX's persistent compilation cache (~/.cache/hsvae-jax/xla, or JAX_COMPILATION_CACHE_DIR), so a later
process skips compiling too: pass compilation_cache=False, or set HSVAE_COMPILATION_CACHE=0, to leave it off.
"""

from collections.abc import Iterable, Iterator, Sequence
import dataclasses
import functools
import itertools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.sparse

from hsvae_jax import data
from hsvae_jax import embed
from hsvae_jax import evaluate
from hsvae_jax.errors import InputError
from hsvae_jax.models import SentenceVAE

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "hsvae-jax", "xla")
_BATCHES_PER_RUN = 16


def enable_compilation_cache() -> None:
  """JAX's persistent compilation cache, unless HSVAE_COMPILATION_CACHE=0 or JAX_COMPILATION_CACHE_DIR chose."""
  if os.environ.get("HSVAE_COMPILATION_CACHE") == "0" or jax.config.jax_compilation_cache_dir:
    return
  jax.config.update("jax_compilation_cache_dir", os.path.expanduser(DEFAULT_CACHE_DIR))


@dataclasses.dataclass(frozen=True)
class Codes:
  """Codes of N sentences: `codes` CSR [N, Z] (an HSVAE code is mu where slab_prob > 1/2, exactly 0
  elsewhere), `mu` and `slab_prob` (E_q[1 - gamma]) dense float32 [N, Z]."""

  codes: scipy.sparse.csr_matrix
  mu: np.ndarray
  slab_prob: np.ndarray

  def __len__(self) -> int:
    return self.codes.shape[0]

  @classmethod
  def concatenate(cls, parts: Iterable["Codes"]) -> "Codes":
    parts = list(parts)
    return cls(scipy.sparse.vstack([p.codes for p in parts], format="csr"),
               np.concatenate([p.mu for p in parts]), np.concatenate([p.slab_prob for p in parts]))

  def save(self, path: str | os.PathLike[str]) -> None:
    """The codes in scipy's CSR npz layout (scipy.sparse.load_npz reads it), mu and slab_prob beside them."""
    c = self.codes
    np.savez_compressed(path, format=np.array(b"csr"), shape=np.array(c.shape), data=c.data, indices=c.indices,
                        indptr=c.indptr, mu=self.mu, slab_prob=self.slab_prob)


@dataclasses.dataclass(frozen=True)
class ActiveDim:
  """An active dimension of a sentence's code, with the corpus sentences whose codes go furthest its way."""

  dim: int
  value: float  # the sentence's code on dim
  examples: list[tuple[str, float]]  # (corpus sentence, its code on dim), the largest of value's sign first


def strongest(values_N: np.ndarray, top: int) -> np.ndarray:
  """Indices of the `top` largest positive values, largest first (ties in input order)."""
  order = np.argsort(-values_N, kind="stable")[:top]
  return order[values_N[order] > 0]


def load_codes(path: str | os.PathLike[str]) -> Codes:
  """Codes that Codes.save (`hsvae encode`) wrote."""
  try:
    with np.load(path) as f:
      return Codes(scipy.sparse.load_npz(path), f["mu"], f["slab_prob"])
  except (OSError, ValueError, KeyError) as e:
    raise InputError(f"{path}: not a codes file that `hsvae encode` wrote ({e})") from None


def _codes(model: SentenceVAE, params, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  posterior = model.apply({"params": params}, batch, method=SentenceVAE.encode)
  codes = model.latent.codes(posterior)
  return {"code": codes.code_BxZ, "mu": codes.mu_BxZ, "slab_prob": codes.slab_prob_BxZ}


def _generate(model: SentenceVAE, params, z_BxZ: jax.Array, key: jax.Array, temperature: jax.Array,
              greedy: jax.Array, max_length: int) -> jax.Array:
  """Token ids [B, max_length], word by word. Each step reruns the teacher-forced decoder over the whole
  buffer (the GRU is causal, so step t sees only the words before it): quadratic in max_length, but it
  needs nothing from the model beyond what training uses. greedy is an array, not a static switch: greedy
  and sampled decoding share one program, and the sample it discards is cheap beside the buffer's rerun."""
  batch = z_BxZ.shape[0]

  def step(t, tokens_BxL):
    states_BLxH = model.apply({"params": params}, {"tokens": tokens_BxL}, z_BxZ, method=SentenceVAE.decode)
    h_BxH = states_BLxH.reshape(batch, max_length, -1)[:, t]
    logits_BxV = model.apply({"params": params}, h_BxH, method=SentenceVAE.project)
    logits_BxV = logits_BxV.astype(jnp.float32).at[:, data.PAD].set(-jnp.inf)  # padding is never a word
    word_B = jnp.where(greedy, jnp.argmax(logits_BxV, -1),
                       jax.random.categorical(jax.random.fold_in(key, t), logits_BxV / temperature))
    return tokens_BxL.at[:, t].set(word_B.astype(tokens_BxL.dtype))

  # The last position stays padding: at most max_length - 1 words, as data.max_length counts <EOS> in.
  return jax.lax.fori_loop(0, max_length - 1, step, jnp.zeros((batch, max_length), jnp.int32))


class Model:
  """A trained workdir: `config`, `vocab`, `params`, and encode / decode / reconstruct; see the module doc."""

  def __init__(self, trained: evaluate.TrainedModel):
    self.config: ml_collections.ConfigDict = trained.config
    self.vocab: data.Vocabulary = trained.vocab
    self.module: SentenceVAE = trained.model
    self.params = trained.params
    self.batch_size: int = self.config.eval.batch_size
    self._encode_batch = jax.jit(functools.partial(_codes, self.module))
    self._generate = jax.jit(functools.partial(_generate, self.module), static_argnames="max_length")

  @property
  def latent_dim(self) -> int:
    return self.config.model.latent_dim

  def iter_encode(self, sentences: Iterable[str], batch_size: int | None = None) -> Iterator[Codes]:
    """Codes of each run of sentences, in order, batch_size (the config's eval batch size by default) a
    forward pass: reads an iterable lazily, so a stream of any length takes memory for one run at a time."""
    batch_size = batch_size or self.batch_size
    if batch_size < 1:
      raise InputError(f"batch size {batch_size} is not positive")
    it = iter(sentences)
    # Runs of several batches, so that a transformer encoder is loaded once a run, not once a batch.
    while chunk := list(itertools.islice(it, batch_size * _BATCHES_PER_RUN)):
      token_ids = self.vocab.encode_all(chunk, self.config.data.max_length)
      features = embed.model_inputs(self.config.model, chunk)
      parts = []
      for batch in data.eval_batches(token_ids, batch_size, self.config.data.length_buckets, features):
        out = jax.device_get(self._encode_batch(self.params, {k: batch[k] for k in ("tokens", "lengths", *features)}))
        parts.append({name: value[batch["mask"] > 0] for name, value in out.items()})
      yield Codes(scipy.sparse.csr_matrix(np.concatenate([p["code"] for p in parts])),
                  np.concatenate([p["mu"] for p in parts]), np.concatenate([p["slab_prob"] for p in parts]))

  def encode(self, sentences: Iterable[str], batch_size: int | None = None) -> Codes:
    """Codes of the sentences (a list, or any iterable: read batch by batch), in input order."""
    parts = list(self.iter_encode(sentences, batch_size))
    if not parts:
      raise InputError("no sentences to encode")
    return Codes.concatenate(parts)

  def decode(self, codes: "Codes | scipy.sparse.spmatrix | np.ndarray", max_length: int | None = None,
             key: jax.Array | None = None, temperature: float = 1.0) -> list[str]:
    """A sentence for each code (a Codes, a sparse matrix, or an array [N, Z] or [Z]): the most likely
    word at each step, or, given a PRNG key, words sampled at `temperature`. At most max_length - 1
    words (the config's data.max_length by default)."""
    if self.config.model.decoder != "gru":
      raise InputError(f"model.decoder={self.config.model.decoder} reconstructs an embedding, not words")
    if isinstance(codes, Codes):
      codes = codes.codes
    z_NxZ = np.atleast_2d(codes.toarray() if scipy.sparse.issparse(codes) else np.asarray(codes, np.float32))
    if z_NxZ.ndim != 2 or z_NxZ.shape[1] != self.latent_dim:
      raise InputError(f"codes of shape {z_NxZ.shape}; this model's have {self.latent_dim} dimensions")
    max_length = max_length or self.config.data.max_length
    if max_length < 2:
      raise InputError(f"max_length {max_length} leaves no room for a word before <EOS>")
    greedy = key is None
    key = jax.random.key(0) if greedy else key
    sentences = []
    for start in range(0, len(z_NxZ), self.batch_size):
      rows = z_NxZ[start : start + self.batch_size]
      padded = np.zeros((self.batch_size, self.latent_dim), np.float32)  # one shape: one compilation
      padded[: len(rows)] = rows
      ids = jax.device_get(self._generate(self.params, padded, jax.random.fold_in(key, start),
                                          jnp.float32(temperature), jnp.bool_(greedy), max_length=max_length))
      sentences += [self.vocab.decode(row) for row in ids[: len(rows)]]
    return sentences

  def explain(self, sentences: Iterable[str], corpus: Sequence[str], top: int = 3) -> list[list[ActiveDim]]:
    """Each sentence's active dimensions, strongest first, each with the `top` corpus sentences whose codes on
    it are largest in the sentence's direction (its code's sign): what the dimension stands for in the corpus."""
    if top < 1:
      raise InputError(f"top {top} is not positive")
    by_dim_NxZ = self.encode(corpus).codes.tocsc()  # a column a dimension
    explained = []
    for code in self.encode(sentences).codes:
      dims = []
      for d, value in sorted(zip(code.indices, code.data), key=lambda pair: -abs(pair[1])):
        column_N = by_dim_NxZ[:, d].toarray()[:, 0]
        examples = [(corpus[i], float(column_N[i])) for i in strongest(np.sign(value) * column_N, top)]
        dims.append(ActiveDim(int(d), float(value), examples))
      explained.append(dims)
    return explained

  def reconstruct(self, sentences: Iterable[str], **decode_args) -> list[str]:
    """decode(encode(sentences)): what the code of each sentence keeps of it."""
    return self.decode(self.encode(sentences), **decode_args)


def load(workdir: str | os.PathLike[str], compilation_cache: bool = True) -> Model:
  """The model trained in workdir (its newest checkpoint that restores), ready to encode and decode."""
  if compilation_cache:
    enable_compilation_cache()
  return Model(evaluate.load_trained(os.fspath(workdir)))
