"""Tests of the TFDS builders of the corpora (offline: manual dirs and a fake download)."""

import pathlib
import tempfile
from unittest import mock

import numpy as np
import pytest
import requests
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import downloader

from hsvae_jax import data
from hsvae_jax import train
from hsvae_jax.data import tfds_corpora
from hsvae_jax.errors import InputError
from conftest import load_config_file

DATA = pathlib.Path(__file__).parents[1].parent / 'shared' / 'data'
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f'{DATA} is absent')


def _lines(path):
  return path.read_text(encoding='utf-8').split('\n')[:-1]


def _labels(path):
  return [int(line) for line in _lines(path)]


def _write_split(folder, split, sentences, labels):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / f'{split}.txt').write_text(''.join(f'{s}\n' for s in sentences), encoding='utf-8')
  (folder / f'{split}_class_label.txt').write_text(''.join(f'{l}\n' for l in labels))


@pytest.fixture
def yelp_dir(tmp_path):
  """The first 2,000 Yelp validation sentences, in the paper's format."""
  src = DATA / 'yelp'
  folder = tmp_path / 'yelp'
  _write_split(folder, 'valid', _lines(src / 'valid.txt')[:2000],
               _lines(src / 'valid_class_label.txt')[:2000])
  return folder


@needs_data
def test_yahoo_valid_split_equals_files(tmp_path):
  folder = DATA / 'yahoo'
  corpus = tfds_corpora.load_tfds_corpus('yahoo', str(folder), str(tmp_path / 'tfds'))
  assert list(corpus) == ['valid']
  sentences, labels = corpus['valid']
  assert sentences == _lines(folder / 'valid.txt')
  assert labels.dtype == np.int64
  np.testing.assert_array_equal(labels, _labels(folder / 'valid_class_label.txt'))
  assert sorted(set(labels.tolist())) == list(range(10))
  vocab = [word for word in _lines(folder / 'vocab.txt') if word]  # it has a blank line
  assert tfds_corpora.tfds_vocab_words('yahoo', str(folder)) == vocab
  builder = tfds_corpora.HsvaeYahoo(
      config=tfds_corpora.manual_config(str(folder)), data_dir=str(tmp_path / 'tfds'))
  assert builder.info.features['label'].num_classes == 10
  assert builder.info.metadata['vocab'] == vocab
  assert list(builder.info.splits) == ['valid']


@needs_data
def test_yelp_copy_equals_files_and_is_reused(yelp_dir, tmp_path):
  data_dir = str(tmp_path / 'tfds')
  corpus = tfds_corpora.load_tfds_corpus('yelp', str(yelp_dir), data_dir)
  assert list(corpus) == ['valid']
  sentences, labels = corpus['valid']
  assert len(sentences) == 2000
  assert sentences == _lines(yelp_dir / 'valid.txt')
  np.testing.assert_array_equal(labels, _labels(yelp_dir / 'valid_class_label.txt'))
  assert tfds_corpora.tfds_vocab_words('yelp', str(yelp_dir)) is None
  builder = tfds_corpora.HsvaeYelp(
      config=tfds_corpora.manual_config(str(yelp_dir)), data_dir=data_dir)
  assert builder.info.features['label'].num_classes == 2
  # A second call reads the prepared files without generating anything.
  with mock.patch.object(tfds_corpora.HsvaeYelp, '_split_generators',
                         side_effect=AssertionError('regenerated')):
    again = tfds_corpora.load_tfds_corpus('yelp', str(yelp_dir), data_dir)
  assert again['valid'][0] == sentences
  np.testing.assert_array_equal(again['valid'][1], labels)


def test_edited_manual_dir_is_prepared_again(tmp_path):
  folder, data_dir = tmp_path / 'corpus', str(tmp_path / 'tfds')
  _write_split(folder, 'train', ['a b', 'c'], [0, 1])
  _write_split(folder, 'test', ['d'], [1])
  first = tfds_corpora.load_tfds_corpus('yelp', str(folder), data_dir)
  assert list(first) == ['train', 'test']
  assert first['train'][0] == ['a b', 'c']
  _write_split(folder, 'train', ['a b', 'e f'], [0, 0])
  second = tfds_corpora.load_tfds_corpus('yelp', str(folder), data_dir)
  assert second['train'][0] == ['a b', 'e f']
  np.testing.assert_array_equal(second['train'][1], [0, 0])


def test_preparing_leaves_no_temporary_folder(tmp_path, monkeypatch):
  scratch = tmp_path / 'tempdir'
  scratch.mkdir()
  monkeypatch.setattr(tempfile, 'tempdir', str(scratch))
  folder = tmp_path / 'corpus'
  _write_split(folder, 'train', ['a b', 'c'], [0, 1])
  assert tfds_corpora.load_tfds_corpus('yelp', str(folder), str(tmp_path / 'tfds'))['train'][0] == ['a b', 'c']
  assert list(scratch.iterdir()) == []


def test_text_is_kept_verbatim(tmp_path):
  # Non-ASCII, a line separator inside a sentence, an empty line, CRLF line ends.
  folder = tmp_path / 'corpus'
  folder.mkdir()
  (folder / 'valid.txt').write_bytes('café \u2028 ok\r\n\r\nlast'.encode())
  (folder / 'valid_class_label.txt').write_text('1\n0\n1\n')
  corpus = tfds_corpora.load_tfds_corpus('yelp', str(folder), str(tmp_path / 'tfds'))
  assert corpus['valid'][0] == ['café \u2028 ok', '', 'last']


@pytest.mark.parametrize('files, culprit', [
    ({'valid.txt': b'a\nb\n', 'valid_class_label.txt': b'0\n'}, 'valid_class_label.txt'),
    ({'valid.txt': b'a\n', 'valid_class_label.txt': b'x\n'}, 'valid_class_label.txt'),
    ({'valid.txt': b'a\n', 'valid_class_label.txt': b'2\n'}, 'valid_class_label.txt'),
    ({'valid.txt': b'\xff\n', 'valid_class_label.txt': b'0\n'}, 'valid.txt'),
    ({'test.txt': b'a\n'}, 'test_class_label.txt'),
    ({'vocab.txt': b'a\n'}, 'corpus'),
])
def test_bad_manual_dir_names_the_file(tmp_path, files, culprit):
  folder = tmp_path / 'corpus'
  folder.mkdir()
  for name, content in files.items():
    (folder / name).write_bytes(content)
  with pytest.raises(InputError, match=culprit):
    tfds_corpora.load_tfds_corpus('yelp', str(folder), str(tmp_path / 'tfds'))


def test_missing_manual_dir_and_unknown_name(tmp_path):
  with pytest.raises(InputError, match='not a directory'):
    tfds_corpora.load_tfds_corpus('yahoo', str(tmp_path / 'nope'), str(tmp_path))
  with pytest.raises(InputError, match='imdb'):
    tfds_corpora.load_tfds_corpus('imdb', '', str(tmp_path))
  with pytest.raises(InputError, match='imdb'):
    tfds_corpora.tfds_vocab_words('imdb', '')


@pytest.mark.parametrize('probe_fails', [True, False])
def test_no_manual_dir_and_no_network(tmp_path, probe_fails):
  offline = requests.ConnectionError('offline')
  probe = mock.patch.object(requests, 'head', side_effect=offline if probe_fails else None)
  download = mock.patch.object(downloader, '_open_url', side_effect=offline)
  with probe, download, pytest.raises(InputError, match='--config.data.dir='):
    tfds_corpora.load_tfds_corpus('dbpedia', '', str(tmp_path))


def _fake_download(tmp_path, contents):
  """Patches TFDS downloads to serve `contents` (url basename -> text) from tmp_path."""
  served = tmp_path / 'served'
  served.mkdir()
  for name, text in contents.items():
    (served / name).write_text(text, encoding='utf-8')

  def download(_, urls):
    assert all(url.startswith('https://raw.githubusercontent.com/') for url in urls.values())
    return {key: served / url.rsplit('/', 1)[1] for key, url in urls.items()}

  return mock.patch.multiple(
      tfds.download.DownloadManager, download=download), mock.patch.object(requests, 'head')


def test_fake_yelp_download_merges_the_sentiment_files(tmp_path):
  contents = {f'sentiment.{s}.{l}': f'{s} {l} one\n{s} {l} two\n'
              for s in ('train', 'dev', 'test') for l in (0, 1)}
  patch_download, patch_probe = _fake_download(tmp_path, contents)
  with patch_download, patch_probe:
    corpus = tfds_corpora.load_tfds_corpus('yelp', '', str(tmp_path / 'tfds'))
  assert list(corpus) == ['train', 'valid', 'test']
  assert corpus['valid'][0] == ['dev 0 one', 'dev 0 two', 'dev 1 one', 'dev 1 two']
  np.testing.assert_array_equal(corpus['valid'][1], [0, 0, 1, 1])


def test_fake_hsvae_download_keeps_the_vocab(tmp_path):
  contents = {'vocab.txt': 'the\n_UNK\n'}
  for split in ('train', 'valid', 'test'):
    contents |= {f'{split}.txt': f'{split} a\n{split} b\n', f'{split}_class_label.txt': '13\n0\n'}
  patch_download, patch_probe = _fake_download(tmp_path, contents)
  data_dir = str(tmp_path / 'tfds')
  with patch_download, patch_probe:
    corpus = tfds_corpora.load_tfds_corpus('dbpedia', '', data_dir)
  assert corpus['test'][0] == ['test a', 'test b']
  np.testing.assert_array_equal(corpus['train'][1], [13, 0])
  # Reads the prepared dataset: no download needed any more.
  assert tfds_corpora.tfds_vocab_words('dbpedia', '', data_dir) == ['the', '_UNK']


def test_online_dbpedia_trains_with_the_corpus_s_own_vocab(tmp_path):
  # --config dbpedia without data.dir, as a user runs it: TFDS downloads the corpus and its vocab.txt.
  vocab = ['zebra', 'walks', 'the', 'runs']  # not the training text's frequency order
  contents = {'vocab.txt': ''.join(f'{word}\n' for word in vocab)}
  for split in ('train', 'valid', 'test'):
    contents |= {f'{split}.txt': 'the zebra runs\nthe the walks\n' * 4, f'{split}_class_label.txt': '3\n0\n' * 4}
  config = load_config_file('dbpedia')
  config.data.tfds_data_dir = str(tmp_path / 'tfds')
  config.model.latent_dim, config.model.embed_dim, config.model.hidden_dim = 4, 8, 8
  config.model.latent = 'gaussian'  # the vocabulary is what is tested: the latent whose step compiles fastest
  config.train.num_steps = config.train.batch_size = config.eval.batch_size = 2
  config.train.log_every = config.train.checkpoint_every = 2
  patch_download, patch_probe = _fake_download(tmp_path, contents)
  with patch_download, patch_probe:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert data.Vocabulary.load(tmp_path / 'run' / 'vocab.txt').decode([3, 4, 5, 6]) == ' '.join(vocab)
