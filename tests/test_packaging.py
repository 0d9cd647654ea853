"""What an installed package promises: its version in three places that agree, the licence text, py.typed."""

import importlib.metadata
import pathlib
import subprocess
import sys

import hsvae_jax

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_version_of_the_module_the_metadata_and_the_cli_agree():
  printed = subprocess.run([sys.executable, "-m", "hsvae_jax.cli", "--version"], capture_output=True, text=True,
                           check=True).stdout
  assert printed == f"hsvae {hsvae_jax.__version__}\n"
  assert importlib.metadata.version("hsvae-jax") == hsvae_jax.__version__


def test_licence_file_is_the_declared_apache_2_0_and_the_package_is_typed():
  assert importlib.metadata.metadata("hsvae-jax")["License-Expression"] == "Apache-2.0"
  licence = (PROJECT_ROOT / "LICENSE").read_text()
  assert "Apache License\n                           Version 2.0, January 2004" in licence
  assert "END OF TERMS AND CONDITIONS" in licence
  assert (pathlib.Path(hsvae_jax.__file__).parent / "py.typed").is_file()


def test_import_is_light_and_the_prior_and_load_come_on_use():
  code = ("import sys, hsvae_jax; heavy = {'jax', 'distrax', 'flax'} & set(sys.modules); "
          "print(sorted(heavy), hsvae_jax.SpikeAndSlab.__module__, callable(hsvae_jax.load))")
  printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert printed == "[] hsvae_jax.prior.spike_and_slab True\n"


def test_configs_are_package_data_and_named_configs_resolve():
  from hsvae_jax import configs
  assert configs.config_path("quickstart") == str(pathlib.Path(configs.CONFIGS_DIR) / "quickstart.py")
  assert pathlib.Path(configs.config_path("quickstart")).is_file()
  assert configs.config_path("mine.py") == "mine.py" and configs.config_path("no_such") == "no_such"
