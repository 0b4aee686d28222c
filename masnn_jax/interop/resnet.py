"""Weights of the official Att-Res-SNN ImageNet networks (PyTorch, ``Att_Res_SNN/models/resnet_2.py``) <->
:class:`masnn_jax.models.resnet.AttResSNN`.

The official ``ResNet_origin`` state dict (``resnet18/34/104()``; saved from DDP, so keys may carry ``module.``):

=========================================================  ===========================================  ==========
official name (shape)                                      masnn-jax variable                           layout
=========================================================  ===========================================  ==========
``conv1.0.weight`` (64, 3, 7, 7)                           ``stem.conv.kernel``                         -> HWIO
``conv1.1.bn.{weight,bias,running_mean,running_var}``      ``stem.bn.{scale,bias,mean,var}``            —
``conv{s+2}_x.{j}.residual_function.1.weight``             block ``conv1.conv.kernel``                  -> HWIO
``conv{s+2}_x.{j}.residual_function.2.bn.*``               block ``conv1.bn.*``                         —
``conv{s+2}_x.{j}.residual_function.4.weight``             block ``conv2.conv.kernel``                  -> HWIO
``conv{s+2}_x.{j}.residual_function.5.bn.*``               block ``conv2.bn.*``                         —
``...residual_function.6.attention.ca.sharedMLP.0.weight``  block ``attention.ca.fc1.kernel``             (C/r,C,1,1,1) -> (C,C/r)
``...residual_function.6.attention.ca.sharedMLP.2.weight``  block ``attention.ca.fc2.kernel``             (C,C/r,1,1,1) -> (C/r,C)
``...residual_function.6.attention.sa.conv.weight``         block ``attention.sa.conv.kernel``            (1,2,k,k) -> (k,k,2,1)
``...residual_function.6.attention.ta.sharedMLP.{0,2}``     block ``attention.ta.fc{1,2}.kernel``         as CA
``conv{s+2}_x.{j}.shortcut.1.weight`` (C, C_in, 1, 1)      block ``shortcut.conv.kernel``               -> HWIO
``conv{s+2}_x.{j}.shortcut.2.bn.*``                        block ``shortcut.bn.*``                      —
``fc.weight`` (classes, 512) / ``fc.bias``                 ``fc.kernel`` (512, classes) / ``fc.bias``   transpose
=========================================================  ===========================================  ==========

Block ``j`` of stage ``s`` is ``stages[s].first`` for ``j = 0`` and row ``j − 1`` of the stacked ``stages[s].rest``
(every variable of ``rest`` has a leading block axis). ``num_batches_tracked`` entries are accepted and ignored
(written as 0 on the way back). The MS-ResNet-104 3-conv stem (``stem='3conv'``) maps ``conv1.{0,1}.{weight,bias}``
to ``stem_convs[0/1]``, ``conv1.2.{weight,bias}`` to ``stem.conv`` and ``conv1.3.bn.*`` to ``stem.bn``
(Ariande1/MS-ResNet ``models/MS_ResNet.py``).

Not expressible in the official layout (raise ValueError): ``residual='att_res_2'``, ECA and SimAM attention.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from masnn_jax.interop.official import StateDictMismatchError, load_official_state_dict

__all__ = ["official_state_dict_shapes", "from_official_torch", "to_official_torch", "StateDictMismatchError"]


def _conv_to_jax(w):  # (O, I, kh, kw) -> (kh, kw, I, O)
    return np.transpose(w, (2, 3, 1, 0))


def _conv_to_torch(k):
    return np.transpose(k, (3, 2, 0, 1))


def _mlp_to_jax(w):  # Conv3d 1x1x1 (out, in, 1, 1, 1) -> Linear kernel (in, out)
    return np.transpose(w.reshape(w.shape[:2]))


def _mlp_to_torch(k):
    return np.transpose(k).reshape(k.shape[::-1] + (1, 1, 1))


def _linear_to_jax(w):
    return np.transpose(w)


_same = lambda a: a  # noqa: E731

_BN = (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"), ("running_var", "var"))


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str  # official key
    path: tuple  # attribute path in the model
    row: int | None  # index along the stacked block axis, or None
    shape: tuple  # official shape
    to_jax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]


def _variable(model, path) -> nnx.Variable:
    node = model
    for p in path:
        node = node[p] if isinstance(p, int) else getattr(node, p)
    return node


def _entries(model) -> list[_Entry]:
    from masnn_jax.models.resnet import AttResSNN

    if not isinstance(model, AttResSNN):
        raise ValueError(f"expected a masnn_jax.models.resnet.AttResSNN, got {type(model).__name__}")
    if model.residual != "att_res_1":
        raise ValueError("config.model.residual='att_res_2' has no official counterpart (resnet_2.py implements "
                         "attention before the add only)")
    if model.attention in ("ECA", "SimAM"):
        raise ValueError(f"config.model.attention={model.attention!r} has no official counterpart")
    out: list[_Entry] = []

    def add(name, path, row, to_jax, to_torch):
        shape = tuple(_variable(model, path).shape)
        if row is not None:
            shape = shape[1:]
        jshape = np.empty(shape, np.int8)
        out.append(_Entry(name, path, row, tuple(to_torch(jshape).shape), to_jax, to_torch))

    def conv(name, path, row=None):
        add(name, path + ("kernel",), row, _conv_to_jax, _conv_to_torch)

    def bn(prefix, path, row=None):
        for off, ours in _BN:
            add(f"{prefix}.{off}", path + (ours,), row, _same, _same)

    if model.stem_convs is None:
        conv("conv1.0.weight", ("stem", "conv"))
        bn("conv1.1.bn", ("stem", "bn"))
    else:
        for i in range(2):
            conv(f"conv1.{i}.weight", ("stem_convs", i))
            add(f"conv1.{i}.bias", ("stem_convs", i, "bias"), None, _same, _same)
        conv("conv1.2.weight", ("stem", "conv"))
        add("conv1.2.bias", ("stem", "conv", "bias"), None, _same, _same)
        bn("conv1.3.bn", ("stem", "bn"))
    for s, stage in enumerate(model.stages):
        for j in range(1 + stage.num_rest):
            base, row = (("stages", s, "first"), None) if j == 0 else (("stages", s, "rest"), j - 1)
            block = stage.first if j == 0 else stage.rest
            p = f"conv{s + 2}_x.{j}"
            conv(f"{p}.residual_function.1.weight", base + ("conv1", "conv"), row)
            bn(f"{p}.residual_function.2.bn", base + ("conv1", "bn"), row)
            conv(f"{p}.residual_function.4.weight", base + ("conv2", "conv"), row)
            bn(f"{p}.residual_function.5.bn", base + ("conv2", "bn"), row)
            att = block.attention
            if att is not None:
                a = f"{p}.residual_function.6.attention"
                for unit in ("ta", "ca"):
                    if getattr(att, unit) is not None:
                        for k, fc in ((0, "fc1"), (2, "fc2")):
                            add(f"{a}.{unit}.sharedMLP.{k}.weight", base + ("attention", unit, fc, "kernel"), row,
                                _mlp_to_jax, _mlp_to_torch)
                if att.sa is not None:
                    conv(f"{a}.sa.conv.weight", base + ("attention", "sa", "conv"), row)
            if block.shortcut is not None:
                conv(f"{p}.shortcut.1.weight", base + ("shortcut", "conv"), row)
                bn(f"{p}.shortcut.2.bn", base + ("shortcut", "bn"), row)
    add("fc.weight", ("fc", "kernel"), None, _linear_to_jax, _linear_to_jax)
    add("fc.bias", ("fc", "bias"), None, _same, _same)
    return out


def _model_config(config: Any) -> dict:
    if config is None:
        raise ValueError("a masnn-jax config is needed (the full ConfigDict or config.model)")
    m = config.get("model", None) if hasattr(config, "get") else getattr(config, "model", None)
    m = m if m is not None else config
    return dict(m)


def _build(config: Any, seed: int = 0):
    from masnn_jax import models

    cfg = _model_config(config)
    cfg.setdefault("name", "att_res_snn")
    return models.build(cfg, rngs=nnx.Rngs(seed))


_BLOCK_KEY = re.compile(r"^conv(\d+)_x\.(\d+)\.")


def _blocks_in(sd: Mapping[str, Any]) -> tuple[int, ...]:
    found: dict[int, int] = {}
    for k in sd:
        m = _BLOCK_KEY.match(k)
        if m:
            s, j = int(m.group(1)), int(m.group(2))
            found[s] = max(found.get(s, 0), j + 1)
    return tuple(found[s] for s in sorted(found))


def _check(sd: Mapping[str, np.ndarray], entries: list[_Entry], model, cfg: dict) -> None:
    from masnn_jax.models.resnet import DEPTHS

    have = _blocks_in(sd)
    if have and have != model.blocks:
        depth = {v: k for k, v in DEPTHS.items()}.get(have)
        what = f"depth {depth}" if depth else "another depth"
        raise ValueError(
            f"the state dict holds blocks {list(have)} per stage ({what}) but config.model.depth="
            f"{cfg.get('depth')!r} / config.model.blocks builds {list(model.blocks)}: set config.model.depth"
            + (f"={depth}" if depth else " (or config.model.blocks)") + " to load it")
    expected = {e.name: e.shape for e in entries}
    bn_prefixes = {e.name[: -len(".running_var")] for e in entries if e.name.endswith(".running_var")}
    missing = {n: s for n, s in expected.items() if n not in sd}
    unexpected, mismatched = {}, {}
    for name, value in sd.items():
        shape = tuple(int(d) for d in np.shape(value))
        if name not in expected:
            if not (name.endswith(".num_batches_tracked") and name[: -len(".num_batches_tracked")] in bn_prefixes):
                unexpected[name] = shape
        elif shape != expected[name]:
            mismatched[name] = (shape, expected[name])
    if not (missing or unexpected or mismatched):
        return
    keys = {k: cfg.get(k) for k in ("depth", "blocks", "widths", "attention", "stem", "num_classes", "T") if k in cfg}
    lines = [f"official Att-Res-SNN state dict does not fit the model built from config.model {keys}:"]
    lines += [f"  missing key {n} (expected shape {s})" for n, s in missing.items()]
    lines += [f"  unexpected key {n} (shape {s})" for n, s in unexpected.items()]
    lines += [f"  mis-shaped key {n}: shape {g} in the state dict, expected {s}" for n, (g, s) in mismatched.items()]
    if any(".attention." in n for n in missing) or any(".attention." in n for n in unexpected):
        lines.append("  hint: attention keys differ: check config.model.attention ('no' = MS-Res-SNN, 'CSA' = "
                     "official)")
    raise StateDictMismatchError("\n".join(lines), missing=missing, unexpected=unexpected, mismatched=mismatched)


def official_state_dict_shapes(config: Any) -> "OrderedDict[str, tuple[int, ...]]":
    """``{official name: shape}`` of the ``resnet_2.py`` network for ``config`` (no ``num_batches_tracked``),
    from an abstract build (nothing allocated)."""
    model = nnx.eval_shape(lambda: _build(config))
    return OrderedDict((e.name, e.shape) for e in _entries(model))


def from_official_torch(state_dict_or_path: Any, config: Any, *, seed: int = 0, weights_only: bool = True):
    """Builds the :class:`~masnn_jax.models.resnet.AttResSNN` for ``config`` and fills it with official weights.

    Args:
      state_dict_or_path: a ``resnet_2.py`` state dict (torch tensors or NumPy arrays; ``module.`` prefixes of DDP
        removed; ``num_batches_tracked`` ignored), a dict holding one under ``'net'``/``'state_dict'``/``'model'``,
        or a path to a ``torch.save`` file.
      config: the masnn-jax config (with ``.model``) or ``config.model``; ``name`` defaults to 'att_res_snn'.
        ``param_dtype`` decides the parameter dtype (e.g. 'float64' for parity tests).
      seed: only for building before every variable is overwritten. weights_only: for ``torch.load``.
    Returns:
      the model (training mode as built) with every parameter and BN running statistic from the state dict.
    Raises:
      ValueError: a state dict of another depth (one message naming ``config.model.depth``), a model with no
        official counterpart, no state dict. StateDictMismatchError (a ValueError): missing / unexpected /
        mis-shaped keys, each named with its shapes.
    """
    sd = load_official_state_dict(state_dict_or_path, weights_only=weights_only)
    cfg = _model_config(config)
    model = nnx.eval_shape(lambda: _build(config, seed))
    entries = _entries(model)
    _check(sd, entries, model, cfg)
    values: dict[tuple, np.ndarray] = {}
    for e in entries:
        var = _variable(model, e.path)
        v = np.asarray(e.to_jax(np.asarray(sd[e.name])))
        if e.row is None:
            values[e.path] = v
        else:  # a row of a stacked stage: every row is set (the check above found every key)
            values.setdefault(e.path, np.zeros(var.shape, var.dtype))[e.row] = v
    for path, v in values.items():
        var = _variable(model, path)
        var.set_value(jnp.array(v, dtype=var.dtype, copy=True))  # jnp.array copies: no buffer shared with sd
    # The model was built abstractly (no initialiser runs: they cost seconds of compilation per shape); what the
    # official file does not hold is the dropout RNG stream, made concrete here.
    fresh = nnx.Dropout(model.dropout.rate, rngs=nnx.Rngs(seed))
    nnx.update(model.dropout, nnx.state(fresh))
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(nnx.state(model))):
        concrete = _build(config, seed)  # state outside the official layout: keep its initial values
        nnx.update(concrete, nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat)))
        model = concrete
    return model


def to_official_torch(model, *, as_torch: bool = False, num_batches_tracked: bool = True, prefix: str = ""
                      ) -> "OrderedDict[str, Any]":
    """The ``resnet_2.py`` state dict of an :class:`~masnn_jax.models.resnet.AttResSNN` (inverse of
    :func:`from_official_torch`).

    Args:
      model: the masnn-jax model. as_torch: torch tensors instead of NumPy arrays. num_batches_tracked: add the
        BN counters (int64 0) so that a strict ``load_state_dict`` accepts the dict. prefix: e.g. ``'module.'``.
    Returns:
      ``OrderedDict`` of official names to arrays in the official layouts (the variables' dtype).
    Raises:
      ValueError: a model with no official counterpart (``att_res_2``, ECA, SimAM).
    """
    out: OrderedDict[str, Any] = OrderedDict()
    for e in _entries(model):
        value = np.asarray(_variable(model, e.path)[...])
        if e.row is not None:
            value = value[e.row]
        out[prefix + e.name] = np.array(e.to_torch(value), copy=True, order="C")
        if num_batches_tracked and e.name.endswith(".running_var"):
            out[prefix + e.name[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
    if as_torch:
        import torch

        out = OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in out.items())
    return out
