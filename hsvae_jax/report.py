"""Reports on evaluated workdirs: the paper's figure, its numbers as a table, a page on what the dimensions encode.

Every file is static: the figure is a PNG, the table markdown, and the page HTML with its images embedded, so a
report can be copied anywhere and opened without a server.
"""

import base64
import dataclasses
import html
import io
import os

import matplotlib.figure
import matplotlib.patches
import ml_collections
import numpy as np
import scipy.sparse

from hsvae_jax import api
from hsvae_jax import data
from hsvae_jax import workdir as layout
from hsvae_jax.errors import InputError
from hsvae_jax.sweep import SWEEPABLE as GRID_NAMES

FIGURE_FILE = "results.png"
TABLE_FILE = "results.md"
DIMENSIONS_FILE = "dimensions.html"
FRONTIER_FILE = "frontier.png"

TABLE_KEYS = ("rec_nll", "kl_z", "kl_gamma", "zero_fraction", "active_dims", "dims_used", "active_jaccard",
              "usage_entropy", "gate_std", "hoyer")
PROBE_KEYS = ("probe_accuracy", "probe_accuracy_mu", "probe_accuracy_n10", "probe_accuracy_n100")
CURVE_KEYS = ("loss", "rec_nll", "kl_z", "kl_gamma")
# The figure and the page show one split a workdir: the held-out one if it was evaluated.
SPLIT_PREFERENCE = ("test", "valid", "train")
MAX_SENTENCES = 5_000  # encoded for the page; enough for stable word statistics, quick on a CPU
NUM_DIMENSIONS = 16
TOP_SENTENCES = 5
TOP_WORDS = 10
MIN_WORD_COUNT = 5  # rarer words' mean activations are mostly noise
_SAMPLE_SEED = 0


@dataclasses.dataclass(frozen=True)
class EvaluatedRun:
  """One workdir's config and the eval_<split>.json results `hsvae evaluate` left there."""

  workdir: str
  config: ml_collections.ConfigDict
  results: dict[str, dict]  # split -> eval_<split>.json

  @property
  def corpus(self) -> str:
    name = self.config.data.name
    return f"{name}:{os.path.basename(os.path.normpath(self.config.data.dir))}" if name == "dir" else name

  @property
  def model(self) -> str:
    return f"{self.config.model.latent} {self.config.model.latent_dim}"

  @property
  def split(self) -> str:
    return next(split for split in SPLIT_PREFERENCE if split in self.results)

  @property
  def result(self) -> dict:
    return self.results[self.split]


def load_run(workdir: str) -> EvaluatedRun:
  config = layout.load_config(workdir)
  results = layout.read_evals(workdir)
  if not results:
    raise InputError(f"{workdir} holds no eval_<split>.json; run `hsvae evaluate --workdir {workdir}` first")
  return EvaluatedRun(workdir, config, results)


def frontier_figure(sweeps: list[list[dict]]) -> matplotlib.figure.Figure:
  """Sparsity against usefulness, one point per converged sweep member, labelled with its grid values."""
  usefulness = ("probe_accuracy" if all("probe_accuracy" in m for sweep in sweeps for m in sweep
                                        if not m["diverged"]) else "rec_nll")
  figure = matplotlib.figure.Figure(figsize=(5.5, 4), layout="constrained")
  ax = figure.subplots()
  for i, sweep in enumerate(sweeps):
    members = [m for m in sweep if not m["diverged"]]
    ax.scatter([m["zero_fraction"] for m in members], [m[usefulness] for m in members], color=f"C{i}")
    for m in members:
      grid_values = {k: v for k, v in m.items() if k in GRID_NAMES}
      ax.annotate(", ".join(f"{k}={v:g}" for k, v in grid_values.items()), (m["zero_fraction"], m[usefulness]),
                  fontsize=6, xytext=(3, 3), textcoords="offset points")
  ax.set_xlabel("zero_fraction (exact zeros in the codes)")
  ax.set_ylabel(usefulness)
  ax.grid(alpha=0.3)
  return figure


def write_report(workdirs: list[str], output_dir: str) -> dict[str, str]:
  """Writes results.png, results.md and dimensions.html on the workdirs into output_dir; returns their paths.

  A sweep's workdir (one holding sweep.json) stands for its converged members, and adds frontier.png:
  the sparsity-usefulness frontier of the grid.
  """
  if not workdirs:
    raise InputError("no workdirs to report on")
  sweeps = {workdir: layout.read_sweep(workdir) for workdir in workdirs}
  expanded = [member["workdir"] for workdir in workdirs
              for member in (sweeps[workdir] or [{"workdir": workdir, "diverged": False}]) if not member["diverged"]]
  runs = [load_run(workdir) for workdir in expanded]
  os.makedirs(output_dir, exist_ok=True)
  paths = {name: os.path.join(output_dir, file) for name, file in
           (("figure", FIGURE_FILE), ("table", TABLE_FILE), ("dimensions", DIMENSIONS_FILE))}
  if any(sweeps.values()):
    paths["frontier"] = os.path.join(output_dir, FRONTIER_FILE)
    with open(paths["frontier"], "wb") as f:
      f.write(_png(frontier_figure([sweep for sweep in sweeps.values() if sweep])))
  with open(paths["figure"], "wb") as f:
    f.write(_png(results_figure(runs)))
  with open(paths["table"], "w", encoding="utf-8") as f:
    f.write(results_table(runs))
  with open(paths["dimensions"], "w", encoding="utf-8") as f:
    f.write(dimensions_page(runs))
  return paths


def _png(figure: matplotlib.figure.Figure) -> bytes:
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
  return buffer.getvalue()


def _bar_labels(runs: list[EvaluatedRun]) -> list[str]:
  """Model names; a name shared by two workdirs on one corpus gets the workdir's name added."""
  keys = [(run.corpus, run.model) for run in runs]
  return [f"{run.model} ({os.path.basename(os.path.normpath(run.workdir))})" if keys.count(key) > 1
          else run.model for run, key in zip(runs, keys)]


def results_figure(runs: list[EvaluatedRun]) -> matplotlib.figure.Figure:
  """Grouped bars as in the paper: a bar per model in each corpus; probe accuracy in one panel, Hoyer in the other.

  A panel is left out when no run has its number (probe accuracy needs `hsvae evaluate --probe`).
  """
  panels = [(key, title) for key, title in (("probe_accuracy", "probe accuracy (sparse codes)"),
                                            ("hoyer", "Hoyer (normalised)"))
            if any(key in run.result for run in runs)]
  labels = _bar_labels(runs)
  results = {(run.corpus, label): run.result for run, label in zip(runs, labels)}
  corpora = list(dict.fromkeys(run.corpus for run in runs))
  models = list(dict.fromkeys(labels))
  width = 0.8 / len(models)
  crowded = len(models) > 4  # level value labels over more than four bars a group would overlap
  figure = matplotlib.figure.Figure(figsize=(4.5 * len(panels) + 0.5 * len(corpora), 3.8), layout="constrained")
  axes = figure.subplots(1, len(panels), squeeze=False)[0]
  for ax, (key, title) in zip(axes, panels):
    for m, model in enumerate(models):
      x = [c for c, corpus in enumerate(corpora) if key in results.get((corpus, model), {})]
      if x:
        heights = [results[corpora[c], model][key] for c in x]
        drawn = ax.bar(np.array(x) + (m - (len(models) - 1) / 2) * width, heights, width, color=f"C{m}")
        ax.bar_label(drawn, fmt="%.2f", fontsize=6 if crowded else 7, padding=1, rotation=90 if crowded else 0)
    ax.set_title(title)
    ax.set_xticks(range(len(corpora)), corpora)
    ax.set_xlim(-0.5, len(corpora) - 0.5)
    ax.set_ylim(0, 1.15)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
  splits = sorted({run.split for run in runs})
  figure.suptitle(f"{' / '.join(splits)} split{'s' if len(splits) > 1 else ''}", fontsize=10)
  # One legend for both panels: a model without probe numbers still has a Hoyer bar.
  handles = [matplotlib.patches.Patch(color=f"C{m}", label=model) for m, model in enumerate(models)]
  figure.legend(handles=handles, loc="outside right center", fontsize=8)
  return figure


def _cell(value) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.4f}"
  return str(value).replace("|", "\\|")


def results_table(runs: list[EvaluatedRun]) -> str:
  """A markdown table of the figure's numbers and the ELBO terms: a row per workdir and evaluated split."""
  probe_keys = [key for key in PROBE_KEYS if any(key in r for run in runs for r in run.results.values())]
  header = ["workdir", "corpus", "model", "latent_dim", "split", *TABLE_KEYS, *probe_keys]
  lines = ["# Results", "", f"![results]({FIGURE_FILE})", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for run in runs:
    for split, result in run.results.items():
      row = [run.workdir, run.corpus, run.config.model.latent, run.config.model.latent_dim, split,
             *(result.get(key) for key in (*TABLE_KEYS, *probe_keys))]
      lines.append("| " + " | ".join(_cell(value) for value in row) + " |")
  return "\n".join(lines) + "\n"


def _sample(sentences: list[str], labels: np.ndarray | None) -> tuple[list[str], np.ndarray | None]:
  """At most MAX_SENTENCES, drawn at random: a split's file may be sorted by class."""
  if len(sentences) <= MAX_SENTENCES:
    return sentences, labels
  rows = np.sort(np.random.default_rng(_SAMPLE_SEED).choice(len(sentences), MAX_SENTENCES, replace=False))
  return [sentences[i] for i in rows], None if labels is None else labels[rows]


def word_effects(sentences: list[str], activation_NxD: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
  """Per word and dimension, mean activation of the sentences with the word minus that of those without.

  Returns the words, how many sentences hold each [W], and the differences [W, D]; only words in at least
  MIN_WORD_COUNT sentences, and not in all of them, are kept.
  """
  index: dict[str, int] = {}
  indices, indptr = [], [0]
  for sentence in sentences:
    indices.extend(sorted({index.setdefault(word, len(index)) for word in sentence.split()}))
    indptr.append(len(indices))
  n = len(sentences)
  presence_NxW = scipy.sparse.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n, len(index)))
  count_W = np.bincount(indices, minlength=len(index))
  keep_W = (count_W >= MIN_WORD_COUNT) & (count_W < n)
  with_WxD = np.asarray(presence_NxW.T @ activation_NxD)[keep_W]
  count_W = count_W[keep_W]
  without_WxD = activation_NxD.sum(axis=0) - with_WxD
  effect_WxD = with_WxD / count_W[:, None] - without_WxD / (n - count_W)[:, None]
  words = [word for word, keep in zip(index, keep_W) if keep]
  return words, count_W, effect_WxD


def _img(figure: matplotlib.figure.Figure, alt: str) -> str:
  encoded = base64.b64encode(_png(figure)).decode("ascii")
  return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _curves_figure(log: list[dict]) -> matplotlib.figure.Figure:
  figure = matplotlib.figure.Figure(figsize=(3.2 * len(CURVE_KEYS), 2.6), layout="constrained")
  for ax, key in zip(figure.subplots(1, len(CURVE_KEYS)), CURVE_KEYS):
    ax.plot([m["step"] for m in log if key in m], [m[key] for m in log if key in m])
    ax.set_title(key)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  return figure


def _heatmap_figure(mean_DxC: np.ndarray, dims: np.ndarray, classes: np.ndarray) -> matplotlib.figure.Figure:
  figure = matplotlib.figure.Figure(figsize=(1.2 + 0.45 * mean_DxC.shape[1], 1.0 + 0.3 * len(dims)),
                                    layout="constrained")
  ax = figure.subplots()
  image = ax.imshow(mean_DxC, aspect="auto", cmap="viridis")
  ax.set_xticks(range(len(classes)), [str(c) for c in classes])
  ax.set_yticks(range(len(dims)), [str(d) for d in dims])
  ax.set_xlabel("class")
  ax.set_ylabel("dimension")
  figure.colorbar(image, ax=ax, label="mean |code|")
  return figure


def _class_heatmap(activation_NxZ: np.ndarray, labels: np.ndarray, dims: np.ndarray) -> str:
  classes = np.unique(labels)  # the classes present: a label's value may be any int64
  mean_DxC = np.stack([activation_NxZ[labels == c][:, dims].mean(axis=0) for c in classes], axis=1)
  return _img(_heatmap_figure(mean_DxC, dims, classes), "mean activation per dimension and class")


def _dimension_html(d: int, sentences: list[str], code_N: np.ndarray, words: list[str], count_W: np.ndarray,
                    effect_W: np.ndarray) -> str:
  """One dimension: how often it is used, its strongest sentences, the words that raise it."""
  esc = html.escape
  used = int((code_N != 0).sum())
  top = api.strongest(np.abs(code_N), TOP_SENTENCES)
  rows = "".join(f'<tr><td class="num">{code_N[i]:+.3f}</td><td>{esc(sentences[i])}</td></tr>' for i in top)
  raising = [w for w in np.argsort(-effect_W, kind="stable")[:TOP_WORDS] if effect_W[w] > 0]
  listed = ", ".join(f"<b>{esc(words[w])}</b> {effect_W[w]:+.3f} ({count_W[w]})" for w in raising) or "none"
  return (f'<div class="dim"><h4>Dimension {d}: non-zero in {used} of {len(sentences)} sentences'
          f" ({used / len(sentences):.0%})</h4>\n"
          f"<table><tr><th>code</th><th>sentence</th></tr>{rows}</table>\n"
          f'<p class="words">Words raising its mean |code| (by how much; in how many sentences): {listed}</p>'
          "</div>")


def _run_section(number: int, run: EvaluatedRun) -> str:
  """A workdir's part of the page; encodes (a sample of) the split it was evaluated on."""
  corpus = data.load_corpus(run.config.data)
  sentences, labels = _sample(corpus.sentences[run.split], corpus.labels[run.split])
  code_NxZ = api.load(run.workdir, compilation_cache=False).encode(sentences).codes.toarray()
  activation_NxZ = np.abs(code_NxZ)
  used_Z = (code_NxZ != 0).sum(axis=0)
  # Most used first; ties (every dimension of a dense code is used) broken by mean activation.
  dims = np.lexsort((-activation_NxZ.mean(axis=0), -used_Z))[:NUM_DIMENSIONS]
  dims = dims[used_Z[dims] > 0]
  esc = html.escape
  summary = ", ".join(f"{key} {_cell(run.result[key])}" for key in (*TABLE_KEYS, *PROBE_KEYS) if key in run.result)
  log = layout.read_metrics(run.workdir)
  parts = [f'<section id="run-{number}">',
           f"<h2>{esc(run.corpus)} · {esc(run.model)}: <code>{esc(run.workdir)}</code></h2>",
           f"<p>{esc(run.split)} split ({len(sentences)} of {len(corpus.sentences[run.split])} sentences"
           f" encoded for this page): {esc(summary)}.</p>",
           "<h3>Training curves</h3>",
           _img(_curves_figure(log), "training curves") if log else f"<p>No {layout.METRICS_FILE}.</p>",
           "<h3>Mean activation by class</h3>"]
  if labels is None:
    parts.append(f"<p>The {esc(run.split)} split has no labels.</p>")
  elif len(dims):
    parts.append(_class_heatmap(activation_NxZ, labels, dims))
  parts.append("<h3>Most used dimensions</h3>")
  if not len(dims):
    parts.append("<p>Every code is all zeros.</p>")
  words, count_W, effect_WxD = word_effects(sentences, activation_NxZ[:, dims])
  parts += [_dimension_html(d, sentences, code_NxZ[:, d], words, count_W, effect_WxD[:, j])
            for j, d in enumerate(dims)]
  parts.append("</section>")
  return "\n".join(parts)


_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
section { border-top: 2px solid #ccc; margin-top: 2em; }
img { max-width: 100%; }
table { border-collapse: collapse; margin: 0.3em 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; font-size: 0.9em; }
td.num { font-family: monospace; text-align: right; }
.dim { margin: 1em 0; }
.words { font-size: 0.9em; }
"""


def dimensions_page(runs: list[EvaluatedRun]) -> str:
  """The HTML page: per workdir, training curves, a dimension x class heatmap and the most used dimensions."""
  links = "".join(f'<li><a href="#run-{i}">{html.escape(run.corpus)} · {html.escape(run.model)}:'
                  f" {html.escape(run.workdir)}</a></li>" for i, run in enumerate(runs))
  sections = "\n".join(_run_section(i, run) for i, run in enumerate(runs))
  return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>hsvae-jax: what the dimensions encode</title><style>{_STYLE}</style></head>
<body>
<h1>What the dimensions encode</h1>
<p>For each model, on the split it was evaluated on (at most {MAX_SENTENCES} sentences drawn at random): its
{NUM_DIMENSIONS} most used dimensions (non-zero most often), the {TOP_SENTENCES} sentences with the largest |code|
on each, and the words whose presence most raises its mean |code| (words in at least {MIN_WORD_COUNT}
sentences).</p>
<ul>{links}</ul>
{sections}
</body>
</html>
"""
