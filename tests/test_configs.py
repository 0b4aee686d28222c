"""Every key of every shipped config can be set from the command line (``--config.<key>=``), including keys whose
default is None (ml_collections refuses to override an untyped None)."""

import glob
import importlib.util
import os
import sys

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f for f in glob.glob(os.path.join(ROOT, "configs", "*.py")) if not f.endswith("__init__.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location("cfg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _untyped_none_leaves(cd, prefix=""):
    for key in cd.keys():
        value = cd._fields[key]  # noqa: SLF001 - the raw field, FieldReference or value
        if isinstance(value, ml_collections.ConfigDict):
            yield from _untyped_none_leaves(value, f"{prefix}{key}.")
        elif value is None or (isinstance(value, ml_collections.FieldReference) and value.get() is None
                               and value.get_type() is type(None)):
            yield prefix + key


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_no_key_defaults_to_an_untyped_none(path):
    assert list(_untyped_none_leaves(_load(path))) == []


def _parse(monkeypatch, *overrides):
    argv = ["train.py", f"--config={os.path.join(ROOT, 'configs', 'digits_dvs.py')}", *overrides]
    monkeypatch.setattr(sys, "argv", argv)  # ml_collections reads the overrides from sys.argv
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=fv)
    fv(argv)
    return fv.config


def test_none_defaults_are_overridable_from_the_command_line(monkeypatch):
    """The two keys a newcomer found refused: ``train.lr_base_batch`` (None in most configs: no LR scaling) and
    ``model.arch`` (None in the digits config: sizes given directly)."""
    config = _parse(monkeypatch, "--config.train.lr_base_batch=256", "--config.model.arch=dvs_gesture")
    assert config.train.lr_base_batch == 256 and config.model.arch == "dvs_gesture"
    config = _parse(monkeypatch)
    assert config.train.lr_base_batch is None and config.model.arch is None
