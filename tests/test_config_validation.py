"""Every config value is checked, by a table of rules, before a run touches its workdir."""

import math

import ml_collections
import pytest

from hsvae_jax import config_validation
from hsvae_jax import train
from hsvae_jax.errors import InputError
from conftest import load_config_file, tiny_config


@pytest.mark.parametrize("name", ["quickstart", "default", "dbpedia", "yahoo", "yelp"])
def test_every_config_file_is_valid(name):
  assert config_validation.violations(load_config_file(name)) == []


# What each once did: trained by gradient ascent, logged an infinite loss, trained nothing, crashed after
# writing config.json and vocab.txt, or trained and then dumped a traceback.
@pytest.mark.parametrize("key, value, allowed", [
    ("train.learning_rate", -1.0, "a finite number in (0, inf)"),
    ("train.learning_rate", math.nan, "a finite number in (0, inf)"),
    ("hparams.alpha", 0.0, "a finite number in (0, inf)"),
    ("hparams.temperature", 0.0, "a finite number in (0, inf)"),
    ("train.num_steps", -5, "an integer >= 1"),
    ("model.latent_dim", 0, "an integer >= 1"),
    ("train.checkpoint_every", 0, "an integer >= 1"),
    ("train.batch_size", 2.5, "an integer >= 1"),
    ("model.latent", "sparse", "one of hsvae, gaussian"),
    ("model.freeze_encoder", 1, "true or false"),
    ("data.length_buckets", (16, 8), "a non-empty increasing list, each an integer >= 1"),
    ("mesh.data", 0, "-1 (every device) or an integer >= 1"),
    ("hparams.target_active", 1.0, "a finite number in [0, 1)"),
    ("hparams.usage_weight", -1.0, "a finite number in [0, inf)"),
    ("model.gate", "bernoulli", "one of beta, evidence"),
])
def test_a_bad_value_is_refused_naming_key_value_and_range_before_the_workdir_is_touched(tmp_path, key, value,
                                                                                          allowed):
  settings = tiny_config().to_dict()
  section, name = key.split(".")
  settings[section][name] = value  # through a dict: a ConfigDict would refuse a value of another type itself
  with pytest.raises(InputError) as error:
    train.train_and_evaluate(ml_collections.ConfigDict(settings), str(tmp_path / "run"))
  assert str(error.value).startswith(f"{key}={value!r}: must be {allowed}") and "\n" not in str(error.value)
  assert not (tmp_path / "run").exists()


def test_every_violation_is_reported_at_once_with_rules_across_keys():
  config = tiny_config()
  config.hparams.beta, config.train.batch_size, config.mesh.data = -2.0, 15, 2
  config.data.length_buckets = (8, 12)
  assert config_validation.violations(config) == [
      "hparams.beta=-2.0: must be a finite number in (0, inf)",
      "data.length_buckets=(8, 12), data.max_length=16: the largest length bucket must hold data.max_length tokens",
      "train.batch_size=15, mesh.data=2: the batch must split evenly over the mesh's devices",
  ]


def test_keys_without_a_rule_pass_and_a_new_rule_is_one_table_row(monkeypatch):
  config = tiny_config()
  config.model.unlock().future_width = -3  # a key another change adds: unchecked until it has a row
  del config.data.synthetic["max_words"]  # a config.json from before a key existed: its rule is skipped
  assert config_validation.violations(config) == []
  monkeypatch.setitem(config_validation.RULES, "model.future_width", config_validation.integer(1))
  assert config_validation.violations(config) == ["model.future_width=-3: must be an integer >= 1"]
