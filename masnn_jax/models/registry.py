"""The model registry and the protocol every model family follows.

A family is one file under ``masnn_jax/models/`` that calls :func:`register` at import; :func:`build` finds it by
``config.model.name`` (every module of this package is imported on the first lookup, so adding a family needs no
edit anywhere else). What the trainer, the analysis and the converters may rely on is :class:`SpikingModel` and
nothing else.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["SpikingModel", "Family", "register", "get_family", "families", "build", "INPUT_KINDS", "parse_dtype"]

#: Input kinds: event frames ``(B, T, H, W, C)`` or still images ``(B, H, W, C)`` (repeated over T inside the model).
INPUT_KINDS = ("frames", "image")


@runtime_checkable
class SpikingModel(Protocol):
    """What every registered model is (an ``nnx.Module`` with these attributes):

    * ``input_kind``: 'frames' (input ``(B, T, H, W, C)``) or 'image' (input ``(B, H, W, C)``);
    * ``input_shape``: ``(H, W, C)`` of one frame / image; ``T``: time steps; ``num_classes``;
    * ``dtype``: computation dtype or None;
    * ``model(x)`` -> ``(B, num_classes)`` float outputs (firing rates or logits; the task decides the loss);
    * ``model.train()`` / ``model.eval()`` switch BatchNorm (and dropout);
    * every spiking layer has a ``record`` attribute and calls :func:`masnn_jax.nn.layers.record_activity` on its
      output, so ``set_recording(model, 'activity'|'spikes')`` + ``nnx.capture(model, nnx.Intermediate)`` gives
      each layer's activity (training's firing rate, :mod:`masnn_jax.analysis`) from the model's own forward pass;
    * modules that chunk the batch have a ``data_shards`` attribute (:func:`masnn_jax.snn.chunking.set_data_shards`).
    """

    input_kind: str
    input_shape: tuple
    T: int
    num_classes: int

    def __call__(self, x: jax.Array) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class Family:
    """A registered model family.

    Attributes:
      name: ``config.model.name``.
      build: ``build(model_config: dict, rngs) -> model`` (the dict holds every key the config gave).
      keys: the ``config.model`` keys it understands (others are refused, naming the key).
      execution_keys: keys that change how the network is computed, not what it computes or which parameters it has
        (a checkpoint written with one value loads with another).
      interop: module path of its official-checkpoint converter (``from_official`` / ``to_official``), or None.
    """

    name: str
    build: Callable[[dict, nnx.Rngs], nnx.Module]
    keys: tuple[str, ...]
    execution_keys: tuple[str, ...] = ()
    interop: str | None = None


_FAMILIES: dict[str, Family] = {}
_DISCOVERED = False


def register(name: str, *, build: Callable[[dict, nnx.Rngs], nnx.Module], keys, execution_keys=(),
             interop: str | None = None) -> Family:
    """Registers a model family under ``config.model.name == name`` (call it at a family module's import).

    Raises:
      ValueError: ``name`` already registered by another module.
    """
    family = Family(name, build, tuple(keys), tuple(execution_keys), interop)
    old = _FAMILIES.get(name)
    if old is not None and old.build.__module__ != build.__module__:
        raise ValueError(f"model family {name!r} is already registered by {old.build.__module__}")
    _FAMILIES[name] = family
    return family


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    import masnn_jax.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in ("registry",):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    _DISCOVERED = True


def families() -> dict[str, Family]:
    """Every registered family, by name."""
    _discover()
    return dict(_FAMILIES)


def get_family(name: str) -> Family:
    """The family registered as ``name``. Raises ValueError naming ``config.model.name`` and the known names."""
    fams = families()
    if name not in fams:
        raise ValueError(f"config.model.name must be one of {sorted(fams)}, got {name!r}")
    return fams[name]


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16, "float64": jnp.float64}


def parse_dtype(key: str, value):
    """``config.model.<key>`` as a dtype: None, a dtype, or one of 'float32', 'bfloat16', 'float16', 'float64'.
    Raises ValueError naming the key."""
    if value is None or not isinstance(value, str):
        return value
    if value not in _DTYPES:
        raise ValueError(f"config.model.{key} must be one of {sorted(_DTYPES)}, got {value!r}")
    return _DTYPES[value]


def build(model_config: Mapping[str, Any], *, rngs: nnx.Rngs) -> nnx.Module:
    """Builds the model ``config.model`` describes: the family ``config.model.name`` (default 'masnn').

    Args:
      model_config: ``ml_collections.ConfigDict`` or dict; the keys are the family's (see its module).
      rngs: ``nnx.Rngs`` for initialisation.
    Returns:
      an ``nnx.Module`` following :class:`SpikingModel`.
    Raises:
      ValueError: unknown family or key, or bad values (the message names ``config.model.<key>``).
    """
    cfg = dict(model_config)
    family = get_family(cfg.get("name", "masnn"))
    unknown = set(cfg) - set(family.keys) - {"name"}
    if unknown:
        raise ValueError(f"unknown config.model keys {sorted(unknown)} for model {family.name!r}; known: "
                         f"{sorted(family.keys)}")
    return family.build(cfg, rngs)
