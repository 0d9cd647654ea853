"""TFDS builders for the three HSVAE corpora: DBpedia, Yahoo! Answers and Yelp.

Each corpus is a `tfds.core.GeneratorBasedBuilder` (`hsvae_dbpedia`, `hsvae_yahoo`,
`hsvae_yelp`) with a `text` feature (one whitespace-tokenised sentence) and a `label`
`ClassLabel` (14, 10 and 2 classes), written as array_record so that
`as_data_source()` reads it back without TensorFlow.

The sentences come from one of two places, chosen by the builder config:

* `download` (the default config): DBpedia and Yahoo from the original HSVAE
  repository, Yelp from Shen et al. 2017 (negative sentences first, then positive,
  as in their files; their `dev` split is our `valid`).
* `manual_<fingerprint>`: a local folder in the paper's format, `<split>.txt` (one
  sentence a line) and `<split>_class_label.txt` (its integer class, same line) for
  any of the splits train, valid and test, plus an optional `vocab.txt`. Only the
  splits present are generated.

The prepared dataset is cached under `<data_dir>/<builder>/<config>/<version>/` and
reused by later calls. A manual folder's config name holds a hash of its files'
contents, so editing the folder prepares a fresh copy instead of reading a stale
one (old copies stay on disk until deleted). The download config trusts the
upstream files not to change.

The words of `vocab.txt`, when present, are kept in the dataset's metadata
(`builder.info.metadata['vocab']`).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import pathlib

from etils import epath
import numpy as np
import requests
import tensorflow_datasets as tfds

from hsvae_jax.data.corpus import SPLITS, read_labels, read_lines, read_vocab
from hsvae_jax.errors import InputError

_VOCAB_FILE = 'vocab.txt'
_DOWNLOAD = 'download'
_PROBE_TIMEOUT_S = 10
_NO_NETWORK_HINT = 'pass --config.data.dir= pointing to a local copy'

_HSVAE_REPO = 'https://github.com/VictorProkhorov/HSVAE'
_HSVAE_RAW = 'https://raw.githubusercontent.com/VictorProkhorov/HSVAE/master/Data'
_YELP_REPO = 'https://github.com/shentianxiao/language-style-transfer'
_YELP_RAW = ('https://raw.githubusercontent.com/shentianxiao/'
             'language-style-transfer/master/data/yelp')

_HSVAE_CITATION = """@inproceedings{prokhorov-etal-2021-learning,
  title = {Learning Sparse Sentence Encoding without Supervision: An Exploration
           of Sparsity in Variational Autoencoders},
  author = {Prokhorov, Victor and Li, Yingzhen and Shareghi, Ehsan and Collier, Nigel},
  booktitle = {Proceedings of the 6th Workshop on Representation Learning for NLP},
  year = {2021},
}"""
_YELP_CITATION = """@inproceedings{shen2017style,
  title = {Style Transfer from Non-Parallel Text by Cross-Alignment},
  author = {Shen, Tianxiao and Lei, Tao and Barzilay, Regina and Jaakkola, Tommi},
  booktitle = {Advances in Neural Information Processing Systems},
  year = {2017},
}"""


def _manual_files(manual_dir: pathlib.Path) -> dict[str, tuple[pathlib.Path, pathlib.Path]]:
  """Split -> (sentences, labels) files present in a folder in the paper's format."""
  if not manual_dir.is_dir():
    raise InputError(f'data dir {manual_dir} is not a directory')
  files = {}
  for split in SPLITS:
    text, labels = manual_dir / f'{split}.txt', manual_dir / f'{split}_class_label.txt'
    if text.exists() or labels.exists():
      for path in (text, labels):
        if not path.is_file():
          raise InputError(f'{path} is missing: each split needs its sentences and labels')
      files[split] = (text, labels)
  if not files:
    raise InputError(f'data dir {manual_dir} holds none of train.txt, valid.txt, test.txt')
  return files


@dataclasses.dataclass(eq=False)
class CorpusConfig(tfds.core.BuilderConfig):
  """Where the sentences come from: `manual_dir`, or the download when it is empty."""

  manual_dir: str = ''


def manual_config(manual_dir: str) -> CorpusConfig:
  """The config reading `manual_dir`, named after a hash of its corpus files."""
  path = pathlib.Path(manual_dir).expanduser().resolve()
  digest = hashlib.sha256()
  paths = [p for pair in _manual_files(path).values() for p in pair]
  if (path / _VOCAB_FILE).is_file():
    paths.append(path / _VOCAB_FILE)
  for p in paths:
    try:
      content = p.read_bytes()
    except OSError as e:
      raise InputError(f'{p}: cannot read it ({e.strerror})') from None
    digest.update(f'{p.name}\0{len(content)}\0'.encode())
    digest.update(content)
  return CorpusConfig(
      name=f'manual_{digest.hexdigest()[:16]}',
      description=f'Read from {path}.',
      manual_dir=str(path))


class _CorpusInfo(tfds.core.DatasetInfo):
  """DatasetInfo of a corpus that TFDS's bucket does not hold."""

  def initialize_from_bucket(self) -> None:
    # TFDS looks there for every builder not yet prepared, leaving an empty mkdtemp folder behind each time.
    pass


class _HsvaeCorpus(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Sentence-classification corpus in the format of the HSVAE paper."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [CorpusConfig(name=_DOWNLOAD, description='Downloaded from upstream.')]
  # TFDS 4.9.10 finds this itself only with the `importlib_resources` backport
  # installed, which it does not require on Python >= 3.9.
  code_path = epath.Path(__file__)

  NUM_CLASSES: int
  DESCRIPTION: str
  HOMEPAGE: str
  CITATION: str

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo is built directly: dataset_info_from_configs would read
    # README/CITATIONS files from this module's package folder.
    return _CorpusInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            'text': tfds.features.Text(),
            'label': tfds.features.ClassLabel(num_classes=self.NUM_CLASSES),
        }),
        supervised_keys=('text', 'label'),
        homepage=self.HOMEPAGE,
        citation=self.CITATION,
        metadata=tfds.core.MetadataDict(),
        # Keeps the files' line order (examples are sorted by their int key).
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    if self.builder_config.manual_dir:
      manual_dir = pathlib.Path(self.builder_config.manual_dir)
      splits = {split: self._read_split(*paths)
                for split, paths in _manual_files(manual_dir).items()}
      vocab = manual_dir / _VOCAB_FILE
      vocab_words = read_vocab(vocab) if vocab.is_file() else None
    else:
      # Only the parsing of this branch is tested offline (with a fake download).
      urls = self._urls()
      try:
        # One quick request first: TFDS retries a failing download for minutes.
        requests.head(next(iter(urls.values())), timeout=_PROBE_TIMEOUT_S)
        paths = dl_manager.download(urls)
      except (requests.RequestException, tfds.download.DownloadError) as e:
        raise InputError(
            f'cannot download the {self.name} corpus ({type(e).__name__}); '
            f'{_NO_NETWORK_HINT}') from e
      splits, vocab_words = self._parse_download(paths)
    if vocab_words is not None:
      self.info.metadata['vocab'] = vocab_words
    return {split: self._generate_examples(*pair) for split, pair in splits.items()}

  def _read_split(self, text_path, label_path) -> tuple[list[str], np.ndarray]:
    sentences = read_lines(text_path)
    labels = read_labels(label_path, len(sentences))
    too_big = labels >= self.NUM_CLASSES
    if too_big.any():
      raise InputError(
          f'{label_path}: label {labels[too_big][0]} is outside 0..{self.NUM_CLASSES - 1}')
    return sentences, labels

  @abc.abstractmethod
  def _urls(self) -> dict[str, str]:
    """Upstream files to download, by a name for `_parse_download`."""

  @abc.abstractmethod
  def _parse_download(self, paths):
    """Split -> (sentences, labels) for every split, and the vocab words or None."""

  def _generate_examples(self, sentences, labels):
    for i, (sentence, label) in enumerate(zip(sentences, labels)):
      yield i, {'text': sentence, 'label': int(label)}


class _HsvaeRepoCorpus(_HsvaeCorpus, skip_registration=True):
  """A corpus prepared by the HSVAE authors, downloaded from their repository."""

  FOLDER: str

  def _urls(self):
    names = [f'{s}{suffix}' for s in SPLITS for suffix in ('.txt', '_class_label.txt')]
    return {name: f'{_HSVAE_RAW}/{self.FOLDER}/{name}' for name in names + [_VOCAB_FILE]}

  def _parse_download(self, paths):
    splits = {split: self._read_split(paths[f'{split}.txt'], paths[f'{split}_class_label.txt'])
              for split in SPLITS}
    return splits, read_vocab(paths[_VOCAB_FILE])


class HsvaeDbpedia(_HsvaeRepoCorpus):
  """DBpedia sentences in 14 ontology classes (HSVAE's `New_DBPedia`)."""

  NUM_CLASSES = 14
  FOLDER = 'New_DBPedia'
  DESCRIPTION = ('Sentences from DBpedia abstracts labelled with one of 14 ontology '
                 'classes, as prepared by the HSVAE authors (140k/14k/14k).')
  HOMEPAGE = _HSVAE_REPO
  CITATION = _HSVAE_CITATION


class HsvaeYahoo(_HsvaeRepoCorpus):
  """Yahoo! Answers questions in 10 topics (HSVAE's `New_Yahoo`)."""

  NUM_CLASSES = 10
  FOLDER = 'New_Yahoo'
  DESCRIPTION = ('Yahoo! Answers sentences labelled with one of 10 topics, as '
                 'prepared by the HSVAE authors (100k/10k/10k).')
  HOMEPAGE = _HSVAE_REPO
  CITATION = _HSVAE_CITATION


class HsvaeYelp(_HsvaeCorpus):
  """Yelp review sentences, 0 = negative, 1 = positive (Shen et al. 2017)."""

  NUM_CLASSES = 2
  DESCRIPTION = ('Yelp review sentences labelled with their sentiment '
                 '(0 = negative, 1 = positive), from Shen et al. 2017.')
  HOMEPAGE = _YELP_REPO
  CITATION = _YELP_CITATION

  def _urls(self):
    upstream = {'train': 'train', 'valid': 'dev', 'test': 'test'}
    return {f'{split}.{label}': f'{_YELP_RAW}/sentiment.{name}.{label}'
            for split, name in upstream.items() for label in (0, 1)}

  def _parse_download(self, paths):
    splits = {}
    for split in SPLITS:
      negative, positive = read_lines(paths[f'{split}.0']), read_lines(paths[f'{split}.1'])
      labels = np.repeat(np.array([0, 1], np.int64), [len(negative), len(positive)])
      splits[split] = (negative + positive, labels)
    return splits, None


_BUILDERS = {'dbpedia': HsvaeDbpedia, 'yahoo': HsvaeYahoo, 'yelp': HsvaeYelp}


def _builder_class(name: str) -> type[_HsvaeCorpus]:
  if name not in _BUILDERS:
    raise InputError(f'unknown TFDS corpus {name!r}: expected one of {", ".join(_BUILDERS)}')
  return _BUILDERS[name]


def _prepared_builder(name: str, manual_dir: str, data_dir: str) -> _HsvaeCorpus:
  """The builder of corpus `name`, prepared in `data_dir` unless already there."""
  builder_cls = _builder_class(name)
  config = manual_config(manual_dir) if manual_dir else _DOWNLOAD
  builder = builder_cls(config=config, data_dir=data_dir or None, file_format='array_record')
  builder.download_and_prepare(file_format='array_record')
  return builder


def load_tfds_corpus(name: str, manual_dir: str,
                     data_dir: str) -> dict[str, tuple[list[str], np.ndarray | None]]:
  """Prepares corpus `name` with TFDS and reads it back in file order.

  Args:
    name: 'dbpedia', 'yahoo' or 'yelp'.
    manual_dir: local folder in the paper's format; '' downloads the corpus.
    data_dir: where TFDS keeps the prepared dataset; '' for TFDS's default.

  Returns:
    Split ('train', 'valid' or 'test', those present) -> (sentences, int64 labels).

  Several processes sharing one `data_dir` must not prepare the same corpus at
  once (TFDS renames its finished folder into place and the loser fails): prepare
  it on one process first.
  """
  builder = _prepared_builder(name, manual_dir, data_dir)
  corpus = {}
  for split, source in builder.as_data_source().items():
    # One batched read: indexing record by record pays a lookup a record.
    examples = source.__getitems__(range(len(source)))
    sentences = [example['text'].decode('utf-8') for example in examples]
    labels = np.fromiter((example['label'] for example in examples), np.int64, len(examples))
    corpus[split] = (sentences, labels)
  return {split: corpus[split] for split in SPLITS if split in corpus}


def tfds_vocab_words(name: str, manual_dir: str, data_dir: str = '') -> list[str] | None:
  """The words of the corpus's `vocab.txt`, or None when it has none.

  With a `manual_dir` the file is read straight from it; otherwise from the
  downloaded dataset in `data_dir` (prepared first if needed, as by
  `load_tfds_corpus`).
  """
  _builder_class(name)
  if manual_dir:
    vocab = pathlib.Path(manual_dir).expanduser() / _VOCAB_FILE
    return read_vocab(vocab) if vocab.is_file() else None
  return _prepared_builder(name, manual_dir, data_dir).info.metadata.get('vocab')
