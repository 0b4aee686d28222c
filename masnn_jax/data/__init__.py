"""Data layer of masnn-jax: one sub-package per *kind* of input, and the grain loader they share.

Kinds (each a sub-package with ``DATASET_NAMES``, ``default_data_config(name)`` and ``build(config.data, split)``):

* ``events`` (:mod:`masnn_jax.data.events`): DVS recordings turned into event frames ``(T, H, W, 2)`` — the embedded
  digits, DVS128 Gesture, DVS128 Gait, CIFAR10-DVS. Items ``{'frames', 'label'}``.
* ``images`` (:mod:`masnn_jax.data.images`, when installed in this tree): still images ``(H, W, 3)`` —
  ImageNet (tfds ArrayRecord or ImageFolder) and small offline sets. Items ``{'image', 'label'}``.

``config.data.name`` selects the dataset and with it the kind; :func:`build` and :func:`default_data_config`
dispatch on it, so a config carries only the keys of its own kind. :func:`make_loader` / :func:`num_batches`
(:mod:`masnn_jax.data.loader`) batch any of them in an order that is a function of (seed, epoch).
"""

from __future__ import annotations

import importlib
from typing import Any

from masnn_jax.data.loader import Loader, epoch_seed, make_loader, num_batches

__all__ = ["KINDS", "kind_of", "dataset_names", "default_data_config", "build", "make_loader", "num_batches",
           "Loader", "epoch_seed"]

#: Data kinds: name -> module implementing ``DATASET_NAMES``, ``default_data_config`` and ``build``.
KINDS = {"events": "masnn_jax.data.events", "images": "masnn_jax.data.images"}


def _module(kind: str):
    try:
        return importlib.import_module(KINDS[kind])
    except ModuleNotFoundError as e:
        if e.name == KINDS[kind]:
            return None
        raise


def dataset_names() -> dict[str, str]:
    """``{dataset name: kind}`` over every data kind present."""
    out = {}
    for kind in KINDS:
        module = _module(kind)
        if module is not None:
            out.update({name: kind for name in getattr(module, "DATASET_NAMES", ())})
    return out


def kind_of(name: str) -> str:
    """The data kind (``'events'``, ``'images'``) of dataset ``name``.

    Raises:
      ValueError: unknown ``config.data.name`` (the message lists the known ones).
    """
    names = dataset_names()
    if name not in names:
        raise ValueError(f"config.data.name must be one of {sorted(names)}, got {name!r}")
    return names[name]


def default_data_config(name: str):
    """An ``ml_collections.ConfigDict`` with every ``config.data`` key of dataset ``name`` and its kind, at their
    defaults. Raises ValueError for an unknown name."""
    return _module(kind_of(name)).default_data_config(name)


def build(data_config: Any, split: str):
    """Builds ``split`` ('train' | 'test') of the dataset ``config.data`` names, through its kind's ``build``.

    Returns a dataset with ``num_classes``, ``__len__`` and ``__getitem__`` (see the kinds above).
    Raises:
      ValueError: unknown ``config.data.name`` or key, bad values (named); the kind's data errors (missing or
        corrupt files, naming the path).
    """
    name = data_config.get("name", "digits_dvs") if hasattr(data_config, "get") else None
    return _module(kind_of(name)).build(data_config, split)
