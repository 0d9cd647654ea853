"""Evaluation and encoding of a trained workdir: ELBO terms, sparsity of the codes, sparse codes on disk."""

import dataclasses
import functools
import types

import jax
import ml_collections
import numpy as np
import scipy.sparse

from hsvae_jax import data
from hsvae_jax import embed
from hsvae_jax import metrics
from hsvae_jax import objectives
from hsvae_jax import workdir as layout
from hsvae_jax.errors import InputError
from hsvae_jax.hparams import HParams
from hsvae_jax.models import SentenceVAE, make_model

@dataclasses.dataclass(frozen=True)
class TrainedModel:
  config: ml_collections.ConfigDict
  vocab: data.Vocabulary
  model: SentenceVAE
  params: dict


def load_trained(workdir: str) -> TrainedModel:
  """The newest restorable checkpoint's parameters with the config and vocabulary they were trained with."""
  config = layout.load_config(workdir)
  vocab = layout.load_vocab(workdir)
  model = make_model(config.model, len(vocab))
  return TrainedModel(config, vocab, model, layout.restore_params(workdir))


@functools.partial(jax.jit, static_argnums=0)
def eval_step(model: SentenceVAE, params, batch: dict, key: jax.Array, hparams: HParams) -> dict:
  """Per-sentence ELBO terms (one posterior sample), the deterministic codes and the sampled ones."""
  terms, posterior, sample = objectives.per_example_terms(model, params, batch, key, hparams)
  codes = model.latent.codes(posterior)
  return terms | {"code": codes.code_BxZ, "mu": codes.mu_BxZ, "slab_prob": codes.slab_prob_BxZ,
                  "z": sample.z_BxZ, "spike_slab_mean": model.latent.spike_slab_mean(codes, sample)}


def run_batches(trained: TrainedModel, token_ids: list[np.ndarray], features: dict[str, np.ndarray],
                hparams: HParams | None = None) -> dict[str, np.ndarray]:
  """eval_step over every sentence, results in input order; only one batch at a time on the device.

  hparams default to the config's (a sweep member passes its own).
  """
  config = trained.config
  hparams = HParams.from_config(config) if hparams is None else hparams
  eval_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  outputs: dict[str, list[np.ndarray]] = {}
  batches = data.eval_batches(token_ids, config.eval.batch_size, config.data.length_buckets, features)
  for i, batch in enumerate(batches):
    device_batch = {k: batch[k] for k in ("tokens", "lengths", *features)}
    result = jax.device_get(eval_step(trained.model, trained.params, device_batch,
                                      jax.random.fold_in(eval_key, i), hparams))
    real = batch["mask"] > 0
    result["num_tokens"] = batch["lengths"]
    for name, value in result.items():
      outputs.setdefault(name, []).append(np.asarray(value)[real])
  return {name: np.concatenate(parts) for name, parts in outputs.items()}


def _hoyer_variants(out: dict[str, np.ndarray]) -> dict[str, float]:
  """The original code's six Hoyer numbers: {sampled z, mu, spike-and-slab mean} x {std-normalised, raw}."""
  return {f"{codes}{suffix}": metrics.hoyer(out[codes], normalise=not suffix)
          for codes in ("z", "mu", "spike_slab_mean") for suffix in ("", "_raw")}


def split_metrics(model: SentenceVAE, out: dict[str, np.ndarray]) -> dict[str, float]:
  """The ELBO terms and the sparsity of the codes in run_batches' output, each one number."""
  return {
      "rec_nll": float(out["rec_nll"].mean()),
      **model.likelihood.reconstruction_metrics(out),
      "kl_z": float(out["kl_z"].mean()),
      "kl_gamma": float(out["kl_gamma"].mean()),
      "elbo": float(-(out["rec_nll"] + out["kl_z"] + out["kl_gamma"]).mean()),
  } | metrics.sparsity(out["code"], out["slab_prob"])


def _probes() -> types.ModuleType:
  """hsvae_jax.probes, imported on use: scikit-learn is the [eval] extra."""
  try:
    from hsvae_jax import probes  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise InputError("probes need scikit-learn: pip install 'hsvae-jax[eval]'") from None
  return probes


def evaluate(workdir: str, split: str = "valid", probe: bool = False) -> dict:
  """ELBO terms and sparsity of the codes of `split`, with `probe` also linear-probe accuracies.

  The result is also written to workdir/eval_<split>.json (a warning when it cannot be). Probes train on the
  codes of the training split and score on `split`. `unk_rate` is the share of the split's words the
  vocabulary does not know.
  """
  data.check_split(split)
  trained = load_trained(workdir)
  corpus = data.load_corpus(trained.config.data)
  if probe:  # fail on a corpus without labels before the slow part
    probes = _probes()
    for needed in ("train", split):
      probes.check_labels(corpus.labels[needed], needed)
  token_ids = {name: trained.vocab.encode_all(corpus.sentences[name], trained.config.data.max_length)
               for name in ({split, "train"} if probe else {split})}
  encode_split = lambda name: run_batches(trained, token_ids[name], embed.model_inputs(
      trained.config.model, corpus.sentences[name], layout.embeddings_dir(workdir), name))
  out = encode_split(split)
  result = {
      "split": split,
      "num_sentences": len(out["code"]),
      "unk_rate": data.unk_rate(token_ids[split]),
      "latent": trained.config.model.latent,
      "latent_dim": trained.config.model.latent_dim,
  } | split_metrics(trained.model, out) | {"hoyer_variants": _hoyer_variants(out)}
  if probe:
    train_out = out if split == "train" else encode_split("train")
    result |= probes.probe_metrics(
        scipy.sparse.csr_matrix(train_out["code"]), corpus.labels["train"], scipy.sparse.csr_matrix(out["code"]),
        corpus.labels[split], train_out["mu"], out["mu"], eval_split=split)
  layout.write_eval(workdir, split, result)
  return result
