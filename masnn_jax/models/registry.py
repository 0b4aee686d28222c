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

__all__ = ["SpikingModel", "OpCount", "OP_INPUTS", "Family", "register", "get_family", "families", "build",
           "INPUT_KINDS", "parse_dtype"]

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

    Optional methods (:mod:`masnn_jax.analysis` uses them when present and works without them):

    * ``layer_names() -> dict[str, str]``: recorded-layer path -> display name, in forward order. A path is the
      dotted module path of a recording layer (``'convs.0'``); a layer scanned over a leading block axis records
      once per block, ``'stage3.blocks[0]'``, ``'stage3.blocks[1]'``, ... (a key without the index names all of
      them, the index appended). Without it layers are named by path, in path order.
    * ``operation_counts() -> list[OpCount]``: the synaptic operations of one inference (energy, SOPs); without
      it the analysis reports no energy.
    * ``gradient_blocks() -> list[str]``: module paths (forward order) whose ``__call__`` outputs are the blocks
      of the gradient-norm analysis (default: the recorded layers).
    """

    input_kind: str
    input_shape: tuple
    T: int
    num_classes: int

    def __call__(self, x: jax.Array) -> jax.Array: ...


#: What feeds an :class:`OpCount` besides a recorded layer: the model input, or a real-valued tensor.
OP_INPUTS = ("input", "real", "membrane")


@dataclasses.dataclass(frozen=True)
class OpCount:
    """One synaptic operation (a conv or linear map) of a model, for the energy count of Yao et al., TPAMI 2023,
    §4: ``E = E_MAC · MACs(real-valued inputs) + E_AC · SOPs``, ``SOP = T · MACs · input firing rate``.

    Attributes:
      name: row name in the report (usually the recorded layer it drives, e.g. ``'conv1'``).
      macs_per_step: MACs of one dense evaluation, per sample and time step (conv: ``k_h·k_w·h_out·w_out·c_in·c_out``
        at the conv's output size; linear: ``in·out``).
      input: what it reads: the name (or path) of the recorded spiking layer whose spikes feed it (charged as
        ``T · macs · that layer's firing rate`` accumulates); ``'input'``: the model input (event frames: ``T ·
        macs · fraction of non-zero input elements``; images: ``T · macs``), charged as MACs; ``'real'`` /
        ``'membrane'``: a real-valued tensor (``T · macs`` MACs).
      layer: the recorded layer whose neurons this op drives (its firing rate and neuron count go in the row);
        None: ``name``; ``""``: none.
      kind: free text, e.g. 'conv', 'fc'.
      input_shape: one step's input shape (per sample); output_shape: one step's output shape of ``layer``;
      conv_output: ``(h_out, w_out, c_out)`` of a conv before pooling, None otherwise; kernel: the kernel shape.
      attention: module path of a :class:`masnn_jax.nn.attention.MultiDimensionalAttention` applied to this op's
        output (its own operations are counted from its shapes), or None; attention_shape: one step's shape it
        acts on (default ``output_shape``).
      time_steps: evaluations per inference (None: the model's ``T``; 1 for e.g. a stem conv evaluated once on a
        still image).
      paper_input: what the *paper's* count says feeds it, where that differs from ``input`` (None: the same). Used
        by ``energy_report(..., convention='paper')``: e.g. Spikformer (Zhou et al., ICLR 2023, App. C.2) counts
        every layer after the first conv as SOPs ``fr · T · FLOPs``, including layers that read the integer-valued
        SEW residual stream, which the honest count (``input='real'``) charges as MACs.
      paper_time_steps: evaluations per inference in the paper's count (None: ``time_steps``).
    """

    name: str
    macs_per_step: int
    input: str
    layer: str | None = None
    kind: str = ""
    input_shape: tuple = ()
    output_shape: tuple = ()
    conv_output: tuple | None = None
    kernel: tuple = ()
    attention: str | None = None
    attention_shape: tuple | None = None
    time_steps: int | None = None
    paper_input: str | None = None
    paper_time_steps: int | None = None


@dataclasses.dataclass(frozen=True)
class Family:
    """A registered model family.

    Attributes:
      name: ``config.model.name``.
      build: ``build(model_config: dict, rngs) -> model`` (the dict holds every key the config gave).
      keys: the ``config.model`` keys it understands (others are refused, naming the key).
      execution_keys: keys that change how the network is computed, not what it computes or which parameters it has
        (a checkpoint written with one value loads with another).
      interop: module path of its official-checkpoint converter, or None. The module defines
        ``from_official_torch(state_dict_or_path, config, **options) -> model`` and
        ``to_official_torch(model, config=None, **options) -> state dict``; :mod:`masnn_jax.interop` imports it by
        this path.
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


def int_tuple(key: str, value, *, minimum: int = 1) -> tuple[int, ...]:
    """``config.model.<key>`` as a tuple of ints, each >= ``minimum``; a single int is a 1-tuple. Raises ValueError
    naming the key for anything else (a string such as ``'abc'`` from ``--config.model.<key>=abc``, floats,
    bools)."""
    items = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if items is None or isinstance(value, (str, bytes)) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in items):
        raise ValueError(f"config.model.{key} must be a tuple of integers >= {minimum}, e.g. "
                         f"--config.model.{key}='(64,128)', got {value!r}")
    return items


def positive_int(key: str, value) -> int:
    """``config.model.<key>`` as an int >= 1; raises ValueError naming the key for anything else (strings, floats,
    bools, 0, negatives)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config.model.{key} must be a positive integer, got {value!r}")
    return value


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
