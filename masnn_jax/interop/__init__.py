"""Interoperability with official PyTorch checkpoints, for every model family that has a converter.

* :func:`from_official_torch` — official weights (state dict, or a ``torch.save`` file) -> masnn-jax model.
* :func:`to_official_torch` — the reverse: a masnn-jax model -> official state dict (NumPy or torch tensors).
* :func:`converter` — the converter module of a family: ``models.get_family(config.model.name).interop``
  (``masnn_jax.interop.official`` for ``'masnn'``, the MA-SNN event nets of ``BICLab/Attention-SNN``), imported by
  path; these functions dispatch to it and hold no per-family code.
* :func:`official_config_to_masnn` — official MA-SNN ``Config.py`` fields -> masnn-jax ``ConfigDict``.
* :func:`load_official_state_dict`, :func:`official_state_dict_shapes`, :class:`StateDictMismatchError`.
* ``python -m masnn_jax.interop <official.pth> --config=<config.py> --out=<dir>`` writes a checkpoint that
  ``train.py --mode=eval --workdir=<dir>`` loads (see :mod:`masnn_jax.interop.__main__`).
"""

from __future__ import annotations

import importlib
import inspect
import types
from typing import Any

from masnn_jax.interop.official import StateDictMismatchError, load_official_state_dict
from masnn_jax.interop.official_config import OFFICIAL_ARCHS, official_config_to_masnn

__all__ = [
    "StateDictMismatchError",
    "converter",
    "from_official_torch",
    "to_official_torch",
    "load_official_state_dict",
    "official_state_dict_shapes",
    "official_config_to_masnn",
    "OFFICIAL_ARCHS",
]


def _model_name(config: Any) -> str:
    """``config.model.name`` (default 'masnn') of a full config or of ``config.model`` itself."""
    if config is None:
        raise ValueError("a masnn-jax config is needed (the full ConfigDict or config.model)")
    get = config.get if hasattr(config, "get") else (lambda k, d=None: getattr(config, k, d))
    model_cfg = get("model", None)
    if model_cfg is not None and (hasattr(model_cfg, "get") or hasattr(model_cfg, "name")):
        config = model_cfg
        get = config.get if hasattr(config, "get") else (lambda k, d=None: getattr(config, k, d))
    return str(get("name", None) or "masnn")


def converter(name_or_config: Any) -> types.ModuleType:
    """The converter module of a model family: ``models.get_family(name).interop``, imported.

    Args:
      name_or_config: a family name (``config.model.name``), a full config or ``config.model``.
    Returns:
      the module; it defines ``from_official_torch(state_dict_or_path, config, **options)`` and
      ``to_official_torch(model, **options)`` (with an optional ``config`` keyword to check the model against).
    Raises:
      ValueError: unknown family; a family without a converter (``interop=None`` in its registration); a
        converter module that does not exist or lacks those functions.
    """
    from masnn_jax import models

    name = name_or_config if isinstance(name_or_config, str) else _model_name(name_or_config)
    family = models.get_family(name)
    if not family.interop:
        have = sorted(n for n, f in models.families().items() if f.interop)
        raise ValueError(f"model family {name!r} has no official-checkpoint converter (registered with "
                         f"interop=None); families with one: {have}")
    try:
        module = importlib.import_module(family.interop)
    except ModuleNotFoundError as e:
        if e.name and family.interop.startswith(e.name):
            raise ValueError(f"the converter module {family.interop!r} of model family {name!r} does not exist") from e
        raise
    missing = [f for f in ("from_official_torch", "to_official_torch") if not callable(getattr(module, f, None))]
    if missing:
        raise ValueError(f"converter module {family.interop!r} of model family {name!r} lacks {missing}")
    return module


def _family_of_model(model) -> str:
    """The family whose ``build`` lives in the module defining ``type(model)``."""
    from masnn_jax import models

    module = type(model).__module__
    names = [n for n, f in models.families().items() if f.build.__module__ == module]
    if len(names) != 1:
        raise ValueError(f"cannot tell the model family of a {type(model).__name__} ({module}); pass the config: "
                         f"to_official_torch(model, config)")
    return names[0]


def from_official_torch(state_dict: Any, config: Any, **options) -> Any:
    """Builds the model ``config`` describes and fills it with official PyTorch weights, through the converter of
    its family (:func:`converter`; for MA-SNN: :func:`masnn_jax.interop.official.from_official_torch`, options
    ``frames``, ``seed``, ``weights_only``).

    Args:
      state_dict: a mapping of names to tensors / arrays, the dict the official scripts save, or a file path.
      config: the masnn-jax config (``ConfigDict`` with ``.model``) or ``config.model``.
      options: keyword options of the family's converter.
    Returns:
      the ``nnx.Module``.
    Raises:
      ValueError: no converter for the family (:func:`converter`); the converter's errors (e.g.
        :class:`StateDictMismatchError` listing every missing / unexpected / mis-shaped key).
    """
    return converter(config).from_official_torch(state_dict, config, **options)


def to_official_torch(model: Any, config: Any = None, **options) -> Any:
    """The official state dict of a masnn-jax model (the inverse of :func:`from_official_torch`), through the
    converter of its family: ``config.model.name`` when ``config`` is given, else the family whose module defines
    the model's class.

    Args:
      model: the ``nnx.Module``. config: optional; picks the family, and is passed on (``config=``) to a converter
        that accepts it (which checks the model against it).
      options: keyword options of the family's converter (MA-SNN: ``frames``, ``as_torch``, ``num_batches_tracked``,
        ``prefix``).
    Returns:
      ``OrderedDict`` of official names to arrays (or torch tensors).
    Raises:
      ValueError: no converter for the family, the family cannot be told without ``config``, or the converter's
        errors.
    """
    name = _model_name(config) if config is not None else _family_of_model(model)
    fn = converter(name).to_official_torch
    if config is not None and "config" in inspect.signature(fn).parameters:  # a named option, not **kwargs
        options["config"] = config
    return fn(model, **options)


def official_state_dict_shapes(config: Any):
    """``{official name: shape}`` of the official network for ``config`` (the converter's
    ``official_state_dict_shapes``). Raises ValueError: no converter, or one without that function."""
    module = converter(config)
    fn = getattr(module, "official_state_dict_shapes", None)
    if not callable(fn):
        raise ValueError(f"converter {module.__name__!r} has no official_state_dict_shapes()")
    return fn(config)
