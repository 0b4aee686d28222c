"""The model's own forward pass, recorded: every analysis reads spikes (and, for the gradients, perturbations)
from ``nnx.capture`` of ``model(x)``; nothing here re-implements a forward pass.

* Recorded layers are the modules with a ``record`` attribute (:func:`masnn_jax.nn.layers.set_recording`); with
  ``record='spikes'`` each sows ``activity`` ``(…, B, 2)`` and ``spikes`` ``(…, B, T, ...)`` as
  ``nnx.Intermediate`` (:func:`masnn_jax.nn.layers.record_activity`). Leading axes before the batch (a stack of
  blocks run by ``nnx.scan``) are read off the ``activity`` leaf (``ndim − 2``) and expanded into one layer per
  block: path ``stage3.blocks`` -> ``stage3.blocks[0]``, ``stage3.blocks[1]``, ...
* Names and order: the model's optional ``layer_names()`` hook (:class:`~masnn_jax.models.registry.SpikingModel`);
  layers it does not name keep their path and follow in path order.
* Attention bypass: :func:`set_attention_bypass` sets ``bypass`` on every
  :class:`~masnn_jax.nn.attention.MultiDimensionalAttention` of the graph.
* Instrumentation (:func:`forward` with ``inputs_of`` / ``perturb``): the ``__call__`` of the probed modules'
  classes is wrapped while the model is traced (the technique of ``nnx.capture(method_outputs=...)``) so that a
  marked module sows its input as ``input`` and/or passes its output through ``Module.perturb('output', ...)``
  (the gradient w.r.t. a zero perturbation is the gradient w.r.t. that output). Unmarked modules are untouched;
  the classes are restored when the call returns. Works inside ``nnx.scan`` stacks (leading block axis).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from masnn_jax.nn.attention import MultiDimensionalAttention
from masnn_jax.nn.layers import set_recording

__all__ = [
    "RecordedLayer", "path_str", "example_input", "input_key", "sample_ndim", "set_attention_bypass",
    "has_attention", "module_at", "modules_under", "recorded_layers", "forward", "flat_captures", "layer_values",
]

_PROBE_ATTR = "_analysis_probe"


def path_str(path: Sequence[Any]) -> str:
    """``('convs', 0)`` -> ``'convs.0'`` (dotted module path)."""
    return ".".join(str(p) for p in path)


def _path_key(path: tuple) -> tuple:
    """Natural sort key of a path (integers numerically)."""
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in path)


@dataclasses.dataclass(frozen=True)
class RecordedLayer:
    """One recorded spiking layer.

    Attributes:
      name: display name (``layer_names()`` hook, else the path with the block index, ``'stage3.blocks[1]'``).
      path: module path (tuple) of the recording module; index: its block index in a scanned stack (``()`` for a
        plain layer); shape: one time step's output shape per sample (the neurons); T: time steps of its output.
    """

    name: str
    path: tuple
    index: tuple
    shape: tuple
    T: int

    @property
    def path_name(self) -> str:
        """``'convs.0'`` / ``'stage3.blocks[1]'``."""
        return path_str(self.path) + "".join(f"[{i}]" for i in self.index)

    @property
    def neurons(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


def input_key(model: nnx.Module) -> str:
    """The batch key of the model's input: 'frames' (``input_kind='frames'``) or 'image'."""
    return "image" if getattr(model, "input_kind", "frames") == "image" else "frames"


def sample_ndim(model: nnx.Module) -> int:
    """Rank of one sample of the model's input: 4 for frames ``(T, H, W, C)``, 3 for an image ``(H, W, C)``."""
    return 3 if getattr(model, "input_kind", "frames") == "image" else 4


def example_input(model: nnx.Module, batch: int = 1, dtype=jnp.float32) -> jax.ShapeDtypeStruct:
    """Abstract input of ``batch`` samples: ``(B, T, H, W, C)`` for frames, ``(B, H, W, C)`` for images."""
    shape = tuple(int(v) for v in model.input_shape)
    if getattr(model, "input_kind", "frames") != "image":
        shape = (int(model.T), *shape)
    return jax.ShapeDtypeStruct((batch, *shape), dtype)


def set_attention_bypass(model: nnx.Module, bypass: bool) -> int:
    """Sets ``bypass`` on every :class:`~masnn_jax.nn.attention.MultiDimensionalAttention` of ``model`` (see its
    docstring: the block becomes the identity). Returns how many blocks were set."""
    n = 0
    for _, module in nnx.iter_graph(model):
        if isinstance(module, MultiDimensionalAttention):
            module.bypass = bool(bypass)
            n += 1
    return n


def has_attention(model: nnx.Module) -> bool:
    """True when some attention block of ``model`` is not the identity."""
    return any(isinstance(m, MultiDimensionalAttention) and not m.is_identity for _, m in nnx.iter_graph(model))


def module_at(model: nnx.Module, path: Sequence[Any]) -> Any:
    """The node at ``path`` of ``model``'s graph (attributes and list indices). Raises KeyError naming the path."""
    node = model
    for p in path:
        try:
            node = node[p] if isinstance(p, int) else getattr(node, p)
        except (AttributeError, IndexError, KeyError, TypeError):
            raise KeyError(f"no module at path {path_str(path)!r}") from None
    return node


def modules_under(model: nnx.Module, path: Sequence[Any], cls=nnx.Module) -> list[tuple[tuple, Any]]:
    """``[(path, module)]`` of every ``cls`` instance at or below ``path`` (graph order)."""
    path = tuple(path)
    return [(tuple(p), m) for p, m in nnx.iter_graph(model)
            if isinstance(m, cls) and tuple(p)[:len(path)] == path]


# --------------------------------------------------------------------------- instrumentation


def _call_owner(cls: type) -> type:
    for c in cls.__mro__:
        if "__call__" in c.__dict__:
            return c
    raise TypeError(f"{cls.__name__} has no __call__")


def _probe_wrapper(method):
    def wrapper(self, *args, **kwargs):
        probe = getattr(self, _PROBE_ATTR, "")
        if "input" in probe and args:
            self.sow(nnx.Intermediate, "input", args[0])
        out = method(self, *args, **kwargs)
        if "output" in probe and isinstance(out, jax.Array):
            out = self.perturb("output", out)
        return out

    wrapper.__wrapped__ = method
    wrapper._analysis_wrapper = True
    return wrapper


@contextlib.contextmanager
def _instrumented(model: nnx.Module, marks: dict[tuple, str]):
    """Marks the modules at ``marks`` (path -> 'input' / 'output' / 'input,output') and wraps their classes'
    ``__call__`` for the duration (see the module docstring)."""
    patched = []
    try:
        for path, what in marks.items():
            module = module_at(model, path)
            setattr(module, _PROBE_ATTR, what)
            owner = _call_owner(type(module))
            if not getattr(owner.__dict__["__call__"], "_analysis_wrapper", False):
                original = owner.__dict__["__call__"]
                owner.__call__ = _probe_wrapper(original)
                patched.append((owner, original))
        yield
    finally:
        for owner, original in reversed(patched):
            owner.__call__ = original


def forward(
    model: nnx.Module,
    x: jax.Array,
    *,
    record: str = "spikes",
    bypass: bool = False,
    inputs_of: Iterable[tuple] = (),
    perturb: Iterable[tuple] = (),
    perturbations: nnx.State | None = None,
    capture_perturbations: bool = False,
):
    """``model(x)`` under ``nnx.capture``: the model's own forward pass with its layers recording.

    Mutates ``model`` (its ``record`` attributes, attention ``bypass``, probe marks): call it on a copy, e.g.
    ``nnx.merge(graphdef, state, copy=True)`` inside ``jax.jit``.

    Args:
      model: a :class:`~masnn_jax.models.registry.SpikingModel`.
      x: its input ``(B, T, H, W, C)`` or ``(B, H, W, C)``.
      record: 'activity' or 'spikes' (:data:`masnn_jax.nn.layers.RECORD_MODES`).
      bypass: every attention block bypassed (:func:`set_attention_bypass`).
      inputs_of: module paths whose ``__call__`` input (first argument) is sown as ``input``.
      perturb: module paths whose ``__call__`` output passes through ``Module.perturb('output', ...)``.
      perturbations: ``nnx.Perturbation`` state to add (zeros from a first call with ``capture_perturbations``);
        differentiate w.r.t. it for the gradients w.r.t. those outputs.
      capture_perturbations: return the (zero) perturbation state instead of using ``perturbations``.
    Returns:
      ``(output, intermediates)`` (``nnx.State`` of ``nnx.Intermediate``), plus the ``nnx.Perturbation`` state
      when ``capture_perturbations``.
    """
    set_recording(model, record)
    set_attention_bypass(model, bypass)
    marks: dict[tuple, str] = {}
    for p in inputs_of:
        marks[tuple(p)] = "input"
    for p in perturb:
        marks[tuple(p)] = (marks.get(tuple(p), "") + ",output").strip(",")
    with _instrumented(model, marks):
        if capture_perturbations:  # nnx.Perturbation subclasses nnx.Intermediate: filter it first
            out, pert, inter = nnx.capture(model, nnx.Perturbation, nnx.Intermediate)(x)
            return out, inter, pert
        return nnx.capture(model, nnx.Intermediate, init=perturbations)(x)


def flat_captures(state: nnx.State) -> dict[tuple, dict[str, jax.Array]]:
    """``{module path: {name: value}}`` of a captured state; a sown tuple gives its first entry (a layer called
    once), a perturbation its array."""
    out: dict[tuple, dict[str, jax.Array]] = {}
    for path, var in nnx.to_flat_state(state):
        path = tuple(path)
        value = var.get_value() if isinstance(var, nnx.Variable) else var
        if isinstance(value, tuple):
            if not value:
                continue
            value = value[0]
        out.setdefault(path[:-1], {})[path[-1]] = value
    return out


def _names_hook(model) -> dict[str, str]:
    hook = getattr(model, "layer_names", None)
    return dict(hook()) if callable(hook) else {}


def recorded_layers(model: nnx.Module, x_shape: jax.ShapeDtypeStruct | None = None) -> list[RecordedLayer]:
    """The recorded layers of ``model`` in forward order (``layer_names()`` order, then path order), from an
    abstract call (``jax.eval_shape``; nothing is computed). Works on abstract models.

    Raises:
      ValueError: the model has no recording layer.
    """
    graphdef, state = nnx.split(model)
    x_shape = x_shape or example_input(model, 1)

    def run(state, x):
        m = nnx.merge(graphdef, state, copy=True)
        return forward(m, x, record="spikes")[1]

    spikes = flat_captures(jax.eval_shape(run, state, x_shape))
    names = _names_hook(model)
    layers = []
    for path, leaves in sorted(spikes.items(), key=lambda kv: _path_key(kv[0])):
        if "activity" not in leaves or "spikes" not in leaves:
            continue
        idx_list = [()]
        for n in leaves["activity"].shape[:-2]:
            idx_list = [i + (j,) for i in idx_list for j in range(int(n))]
        layers += [(path, idx) for idx in idx_list]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no recording layer (no module with a 'record' attribute "
                         f"sowed 'activity' and 'spikes'; see masnn_jax.nn.layers.record_activity)")
    order = list(names)
    out = []
    for path, idx in layers:
        s = spikes[path]["spikes"].shape[len(idx):]  # (B, T, ...)
        ps = path_str(path)
        full = ps + "".join(f"[{i}]" for i in idx)
        name = names.get(full) or (names[ps] + "".join(f"[{i}]" for i in idx) if ps in names else full)
        out.append(RecordedLayer(name, path, idx, tuple(int(d) for d in s[2:]), int(s[1])))
    rank = {key: r for r, key in enumerate(order)}
    big = len(order)
    return sorted(out, key=lambda l: (rank.get(l.path_name, rank.get(path_str(l.path), big)),))


def layer_values(flat: dict[tuple, dict[str, Any]], layers: Sequence[RecordedLayer], key: str) -> list[Any]:
    """Per layer, the captured ``key`` of its module at its block index (None where absent)."""
    out = []
    for layer in layers:
        v = flat.get(layer.path, {}).get(key)
        out.append(None if v is None else (v[layer.index] if layer.index else v))
    return out
