"""Weights of the official MA-SNN event networks (PyTorch, ``BICLab/Attention-SNN``) <-> masnn-jax models.

The official networks (``MA_SNN/<dataset>/CNN/Networks/Att_SNN.py``) are ``nn.Module`` s with the conv layers as
attributes ``convAttLIF0``, ``convAttLIF1``, ... and the fully connected layers as ``FC0``, ``FC1``; the training
script wraps them in ``nn.DataParallel`` (hence the ``module.`` prefix on every key of a saved file) and saves
``{'net': state_dict, 'acc': ..., 'epoch': ..., 'acc_record': [...]}`` with ``torch.save`` (``*/utils/process.py``).

Official state-dict entries of one conv layer ``convAttLIF{i}`` (``MA_SNN/module/LIF_Module.py``, ``ConvAttLIF``;
attention units from ``MA_SNN/module/Attention.py``) and where they go in :class:`masnn_jax.models.MASNN`:

==========================================  ==========================  ==========================================
official name (shape)                       masnn-jax variable          layout change
==========================================  ==========================  ==========================================
``conv2d.weight`` (O, I, k, k)              ``convs[i].conv.kernel``    -> (k, k, I, O)
``conv2d.bias`` (O,)                        ``convs[i].conv.bias``      —
``BNLayer.weight`` / ``.bias`` (O,)         ``convs[i].bn.scale/bias``  —
``BNLayer.running_mean`` / ``_var`` (O,)    ``convs[i].bn.mean/var``    — (copied as they are)
``BNLayer.num_batches_tracked`` ()          —                           ignored (written as 0 on the way back)
``attention.ta.sharedMLP.0.weight``         ``convs[i].attention.ta``   Conv3d 1x1x1 (T//r, T, 1, 1, 1) ->
                                            ``.fc1.kernel``             Linear kernel (T, T//r)
``attention.ta.sharedMLP.2.weight``         ``...ta.fc2.kernel``        (T, T//r, 1, 1, 1) -> (T//r, T)
``attention.ca.sharedMLP.0.weight``         ``...ca.fc1.kernel``        (C//r, C, 1, 1, 1) -> (C, C//r)
``attention.ca.sharedMLP.2.weight``         ``...ca.fc2.kernel``        (C, C//r, 1, 1, 1) -> (C//r, C)
``attention.sa.conv.weight`` (1, 2, k, k)   ``...sa.conv.kernel``       -> (k, k, 2, 1); channel 0 = mean map
==========================================  ==========================  ==========================================

and of one fully connected layer ``FC{j}`` (``AttLIF``): ``linear.weight`` (out, in) -> ``fcs[j].linear.kernel``
(in, out), ``linear.bias``, ``BNLayer.*`` as above, and ``attention.ta.sharedMLP.{0,2}.weight`` (Conv1d,
``(T//r, T, 1)`` / ``(T, T//r, 1)``) -> ``fcs[j].attention.ta.fc{1,2}.kernel``. The rows of the first FC layer's
kernel are permuted: the official network flattens the last conv output ``(C, H, W)``, masnn-jax flattens
channels-last ``(H, W, C)``.

Which attention keys exist follows the scheme exactly as the official code builds it: conv layers get ``ta`` / ``ca``
/ ``sa`` for the letters of ``attention``; FC layers get ``ta`` only when the scheme contains ``T``.
The neuron (``ConvIFCell`` / ``IFCell``) has no parameters in the official configs (``pa_train_self=False``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import OrderedDict
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "StateDictMismatchError",
    "load_official_state_dict",
    "official_state_dict_shapes",
    "from_official_torch",
    "to_official_torch",
]


class StateDictMismatchError(ValueError):
    """An official state dict that does not fit the model built from the config.

    Attributes:
      missing: ``{name: expected shape}`` of keys the model needs but the state dict lacks.
      unexpected: ``{name: shape}`` of keys the model has no place for.
      mismatched: ``{name: (shape in the state dict, expected shape)}``.
    """

    def __init__(self, message: str, *, missing=None, unexpected=None, mismatched=None):
        super().__init__(message)
        self.missing = dict(missing or {})
        self.unexpected = dict(unexpected or {})
        self.mismatched = dict(mismatched or {})


# --- layout changes --------------------------------------------------------------------------------------------------


def _conv_to_jax(w: np.ndarray) -> np.ndarray:  # (O, I, kh, kw) -> (kh, kw, I, O)
    return np.transpose(w, (2, 3, 1, 0))


def _conv_to_torch(k: np.ndarray) -> np.ndarray:  # (kh, kw, I, O) -> (O, I, kh, kw)
    return np.transpose(k, (3, 2, 0, 1))


def _conv_to_jax_transposed(w: np.ndarray) -> np.ndarray:  # (O, I, kx, ky) -> (ky, kx, I, O)
    return np.transpose(w, (3, 2, 1, 0))


def _conv_to_torch_transposed(k: np.ndarray) -> np.ndarray:  # (ky, kx, I, O) -> (O, I, kx, ky)
    return np.transpose(k, (3, 2, 1, 0))


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _pointwise_to_jax(w: np.ndarray) -> np.ndarray:  # (out, in, 1, ...) -> (in, out)
    return w.reshape(w.shape[0], w.shape[1]).T


def _pointwise_to_torch(ndim: int) -> Callable[[np.ndarray], np.ndarray]:
    def f(k: np.ndarray) -> np.ndarray:  # (in, out) -> (out, in, 1, ...)
        return k.T.reshape(k.shape[1], k.shape[0], *([1] * (ndim - 2)))

    return f


def _linear_to_jax(w: np.ndarray) -> np.ndarray:  # (out, in) -> (in, out)
    return w.T


def _linear_to_torch(k: np.ndarray) -> np.ndarray:
    return k.T


def _flatten_linear(c: int, h: int, w: int, transposed: bool = False):
    """First FC layer: official rows in (C, H, W) flatten order, masnn-jax rows in (H, W, C) order. With
    ``transposed`` the official spatial axes are the masnn-jax ones swapped: official (C, W, H) -> (H, W, C)."""

    def to_jax(weight: np.ndarray) -> np.ndarray:  # (out, C·H·W) -> (H·W·C, out)
        out = weight.shape[0]
        if transposed:
            return weight.reshape(out, c, w, h).transpose(3, 2, 1, 0).reshape(h * w * c, out)
        return weight.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out)

    def to_torch(kernel: np.ndarray) -> np.ndarray:  # (H·W·C, out) -> (out, C·H·W)
        out = kernel.shape[1]
        if transposed:
            return kernel.reshape(h, w, c, out).transpose(3, 2, 1, 0).reshape(out, c * w * h)
        return kernel.reshape(h, w, c, out).transpose(3, 2, 0, 1).reshape(out, c * h * w)

    return to_jax, to_torch


#: ``frames`` choices: which spatial order the converted model will be fed.
FRAME_LAYOUTS = ("masnn", "official")


# --- the name table --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str  # official state-dict key (without 'module.')
    shape: tuple[int, ...]  # official shape
    path: tuple  # attribute / index path of the nnx.Variable inside the model
    to_jax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]


def _variable(model: nnx.Module, path: tuple) -> nnx.Variable:
    obj: Any = model
    for p in path:
        obj = obj[p] if isinstance(p, int) else getattr(obj, p)
    return obj


def _shape(model, path) -> tuple[int, ...]:
    return tuple(int(d) for d in _variable(model, path).shape)


def _bn_entries(model, prefix: str, path: tuple) -> list[_Entry]:
    n = _shape(model, path + ("bn", "scale"))
    return [
        _Entry(f"{prefix}.BNLayer.{t}", n, path + ("bn", j), _same, _same)
        for t, j in (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"), ("running_var", "var"))
    ]


def _mlp_entries(model, prefix: str, path: tuple, ndim: int) -> list[_Entry]:
    """The shared 1x1 conv MLP ``sharedMLP.0`` / ``sharedMLP.2`` (Conv3d: ndim 5, Conv1d: ndim 3)."""
    out = []
    for idx, fc in ((0, "fc1"), (2, "fc2")):
        k_in, k_out = _shape(model, path + (fc, "kernel"))
        out.append(
            _Entry(f"{prefix}.sharedMLP.{idx}.weight", (k_out, k_in) + (1,) * (ndim - 2), path + (fc, "kernel"),
                   _pointwise_to_jax, _pointwise_to_torch(ndim))
        )
    return out


def _check_supported(model: nnx.Module) -> None:
    from masnn_jax.nn import attention as attention_lib

    if not (hasattr(model, "convs") and hasattr(model, "fcs") and hasattr(model, "input_shape")):
        raise ValueError(
            "official MA-SNN weights fit masnn_jax.models.MASNN (config.model.name='masnn'), got "
            f"{type(model).__name__}"
        )
    for i, layer in enumerate(model.convs):
        att = layer.attention
        if att.ca is not None and not isinstance(att.ca, attention_lib.ChannelAttention):
            raise ValueError(
                f"convs[{i}] uses config.model.channel_attention={att.channel!r}; the official code has only the CBAM "
                "channel attention ('cbam')"
            )
        if att.sa is not None and not isinstance(att.sa, attention_lib.SpatialAttention):
            raise ValueError(
                f"convs[{i}] uses config.model.spatial_attention={att.spatial!r}; the official code has only the CBAM "
                "spatial attention ('cbam')"
            )
        if layer.neuron.plif is not None:
            raise ValueError("config.model.neuron.kind='plif' has learnable neuron parameters the official code lacks")
    for layer in model.fcs:
        if layer.neuron.plif is not None:
            raise ValueError("config.model.neuron.kind='plif' has learnable neuron parameters the official code lacks")


def _entries(model: nnx.Module, frames: str = "masnn") -> list[_Entry]:
    """The official name table for ``model`` (a :class:`masnn_jax.models.MASNN`), in the official module order.

    ``frames='masnn'``: the model will be fed masnn-jax frames, whose H axis is the sensor's y; the official frames
    (``events_timeslices.py``: ``chunks[t, p, x, y]``) have H = x, so every spatial kernel is transposed and the first
    FC layer's rows re-ordered to match. ``frames='official'``: the model is fed the official frames' spatial order
    (only moved to channels-last); kernels keep their orientation.
    """
    if frames not in FRAME_LAYOUTS:
        raise ValueError(f"frames must be one of {FRAME_LAYOUTS}, got {frames!r}")
    _check_supported(model)
    transposed = frames == "masnn"
    conv_to_jax = _conv_to_jax_transposed if transposed else _conv_to_jax
    conv_to_torch = _conv_to_torch_transposed if transposed else _conv_to_torch
    entries: list[_Entry] = []
    h, w, c = model.input_shape
    for i, layer in enumerate(model.convs):
        prefix, path = f"convAttLIF{i}", ("convs", i)
        k = _shape(model, path + ("conv", "kernel"))  # (kh, kw, I, O)
        entries.append(_Entry(f"{prefix}.conv2d.weight", (k[3], k[2], k[0], k[1]), path + ("conv", "kernel"),
                              conv_to_jax, conv_to_torch))
        entries.append(_Entry(f"{prefix}.conv2d.bias", (k[3],), path + ("conv", "bias"), _same, _same))
        entries += _bn_entries(model, prefix, path)
        att = layer.attention
        # Official module order inside TCSA/TCA/CSA is ca, ta, sa (the state dict follows it).
        if att.ca is not None:
            entries += _mlp_entries(model, f"{prefix}.attention.ca", path + ("attention", "ca"), 5)
        if att.ta is not None:
            entries += _mlp_entries(model, f"{prefix}.attention.ta", path + ("attention", "ta"), 5)
        if att.sa is not None:
            s = _shape(model, path + ("attention", "sa", "conv", "kernel"))  # (k, k, 2, 1)
            entries.append(_Entry(f"{prefix}.attention.sa.conv.weight", (s[3], s[2], s[0], s[1]),
                                  path + ("attention", "sa", "conv", "kernel"), conv_to_jax, conv_to_torch))
        c, h, w = layer.out_features, h // layer.pool, w // layer.pool
    for j, layer in enumerate(model.fcs):
        prefix, path = f"FC{j}", ("fcs", j)
        n_in, n_out = _shape(model, path + ("linear", "kernel"))
        if j == 0:
            if n_in != c * h * w:
                raise ValueError(f"fcs[0] takes {n_in} features but the last conv output is (C, H, W) = {(c, h, w)}")
            to_jax, to_torch = _flatten_linear(c, h, w, transposed)
        else:
            to_jax, to_torch = _linear_to_jax, _linear_to_torch
        entries.append(_Entry(f"{prefix}.linear.weight", (n_out, n_in), path + ("linear", "kernel"), to_jax, to_torch))
        entries.append(_Entry(f"{prefix}.linear.bias", (n_out,), path + ("linear", "bias"), _same, _same))
        entries += _bn_entries(model, prefix, path)
        if layer.attention.ta is not None:
            entries += _mlp_entries(model, f"{prefix}.attention.ta", path + ("attention", "ta"), 3)
    _check_coverage(model, entries)
    return entries


def _check_coverage(model: nnx.Module, entries: list[_Entry]) -> None:
    """Every parameter and BatchNorm statistic of the model must have an official counterpart."""
    covered = {e.path for e in entries}
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    left = [p for p, _ in nnx.to_flat_state(state) if tuple(p) not in covered]
    if left:
        names = ", ".join(".".join(str(x) for x in p) for p in left)
        raise ValueError(f"model variables without an official counterpart: {names}")


# --- state-dict loading ----------------------------------------------------------------------------------------------


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor (no torch import needed)
        t = value.detach().cpu()
        if t.is_floating_point() and t.dtype not in _torch_numpy_floats():
            t = t.float()  # bfloat16 / float8 have no NumPy dtype
        return np.array(t.numpy(), copy=True)  # never alias the torch buffer (BN running stats change in place)
    try:
        return np.array(value, copy=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"state dict entry {name!r} is not an array ({type(value).__name__}): {e}") from None


def _torch_numpy_floats():
    import torch

    return (torch.float16, torch.float32, torch.float64)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and (hasattr(v, "shape") or hasattr(v, "detach")) for k, v in obj.items()
    )


TORCH_INSTALL_HINT = "pip install -c constraints.txt -e '.[parity]' (or any torch)"


def _import_torch(path: str):
    try:
        import torch
    except ImportError:
        raise ImportError(f"reading a .pth file ({path}) needs PyTorch, which is not installed: "
                          f"{TORCH_INSTALL_HINT}") from None
    return torch


def _numpy_safe_globals() -> list:
    """The globals ``torch.save`` of NumPy arrays / scalars needs (numpy 1 and 2 module names), no object dtype."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    out: list = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        fn = getattr(multiarray, name)
        out += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    for code in "?bhilqBHILQefdgFDG":  # numeric dtypes: numpy >= 1.25 pickles their classes (numpy.dtypes.*DType)
        cls = type(np.dtype(code))
        if cls is not np.dtype:
            out.append((cls, f"numpy.dtypes.{cls.__name__}"))
    return out


_TORCH_BOILERPLATE = ("Weights only load failed", "In PyTorch 2.6", "Re-running `torch.load`", "Please file an issue",
                      "Alternatively", "Check the documentation", "do those steps only")


def _short_reason(e: BaseException, path: str) -> str:
    """torch's reason without its weights_only boilerplate, on one line of at most 200 characters."""
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return "the file is empty (0 bytes)"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    text = text.split("Please use `torch.serialization", 1)[0].split("Check the documentation", 1)[0]
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not any(b in ln for b in _TORCH_BOILERPLATE)]
    text = " ".join(" ".join(lines).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def read_torch_file(path: str | os.PathLike, *, weights_only: bool = True, cli: bool = False) -> Any:
    """``torch.load(path, map_location='cpu', weights_only=weights_only)`` with errors that say what to do.

    With ``weights_only`` a file that holds NumPy arrays (e.g. a ``torch.save`` of :func:`to_official_torch`'s
    default output) is loaded too: the NumPy reconstruction globals (numeric dtypes only) are allowed.

    Raises:
      FileNotFoundError: no such file. ImportError: torch is not installed.
      ValueError: the file cannot be read as a PyTorch checkpoint (the message has torch's reason, shortened, and
        the option to pass: ``weights_only=False``, or ``--noweights_only`` when ``cli``).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"official checkpoint {path} does not exist")
    torch = _import_torch(path)
    option = "--noweights_only" if cli else "weights_only=False"
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        first = e
    if weights_only and "numpy" in str(first) and hasattr(torch.serialization, "safe_globals"):
        try:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            if "numpy" in str(e):
                raise ValueError(
                    f"cannot read {path} as a PyTorch checkpoint (torch.load failed: {_short_reason(e, path)}); it "
                    "holds NumPy objects that weights_only loading does not accept: save the state dict as torch "
                    "tensors (to_official_torch(..., as_torch=True) before torch.save), or, if you trust the file, "
                    f"pass {option}"
                ) from e
            first = e  # something else than NumPy objects stops it: the generic message below
    hint = f"; if you trust the file and it holds non-tensor objects, pass {option}" if weights_only else ""
    raise ValueError(
        f"cannot read {path} as a PyTorch checkpoint (torch.load failed: {_short_reason(first, path)}){hint}"
    ) from first


def load_official_state_dict(source: Any, *, weights_only: bool = True) -> "OrderedDict[str, np.ndarray]":
    """Reads an official state dict into ``{name: np.ndarray}`` (``module.`` prefixes removed, order kept).

    Args:
      source: a mapping of names to arrays (torch tensors or NumPy), a mapping that holds one under ``'net'`` (what
        the official scripts save), ``'state_dict'`` or ``'model'``, or a path (``str`` / ``os.PathLike``) to a file
        written by ``torch.save`` (``.pth``, ``.pt``, or the official ``.t7``). torch is imported only for a path.
      weights_only: passed to ``torch.load`` (the official files need nothing else; files holding NumPy arrays, as a
        ``torch.save`` of :func:`to_official_torch`'s default output, load as well).
    Raises:
      ValueError: nothing that looks like a state dict, keys that collide once the prefix is removed, entries that
        are not arrays; a file that ``torch.load`` cannot read (names it, with torch's reason and the
        ``weights_only=False`` option).
      FileNotFoundError: a path that does not exist.
      ImportError: a path given but PyTorch not installed (says how to install it).
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        source = read_torch_file(path, weights_only=weights_only)
    if not _is_state_dict(source):
        if isinstance(source, Mapping):
            for key in ("net", "state_dict", "model"):
                if key in source and _is_state_dict(source[key]):
                    source = source[key]
                    break
            else:
                raise ValueError(
                    "no state dict found: expected a mapping of names to arrays, or one under 'net' / 'state_dict' / "
                    f"'model'; got keys {list(source)[:10]}"
                )
        else:
            raise ValueError(
                f"expected a state dict (mapping of names to arrays) or a path, got {type(source).__name__}"
            )
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for key, value in source.items():
        name = key
        while name.startswith("module."):
            name = name[len("module."):]
        if name in out:
            raise ValueError(f"state dict key {key!r} collides with {name!r} once the 'module.' prefix is removed")
        out[name] = _to_numpy(value, key)
    return out


def _model_config(config: Any) -> Mapping[str, Any]:
    if config is None:
        raise ValueError("a masnn-jax config is needed (the full ConfigDict or config.model)")
    model_cfg = config.get("model", None) if hasattr(config, "get") else getattr(config, "model", None)
    if isinstance(model_cfg, Mapping) or hasattr(model_cfg, "to_dict"):
        return model_cfg
    return config


def _build(config: Any, seed: int = 0) -> nnx.Module:
    from masnn_jax import models

    return models.build(_model_config(config), rngs=nnx.Rngs(seed))


def _hint(state_dict: Mapping[str, np.ndarray]) -> str:
    """What the state dict itself says about the scheme and T (to help pick the config)."""
    letters = "".join(
        x.upper() for x in ("t", "c", "s") if any(k.startswith(f"convAttLIF0.attention.{x}a.") for k in state_dict)
    )
    parts = [f"attention={letters + 'A' if letters else 'no'!r}"]
    ta = state_dict.get("convAttLIF0.attention.ta.sharedMLP.0.weight")
    if ta is not None and ta.ndim >= 2:
        parts.append(f"T={ta.shape[1]} (T // t_ratio = {ta.shape[0]})")
    n_conv = len({k.split(".")[0] for k in state_dict if k.startswith("convAttLIF")})
    n_fc = len({k.split(".")[0] for k in state_dict if k.startswith("FC")})
    parts.append(f"{n_conv} conv and {n_fc} FC layers")
    return "the state dict looks like " + ", ".join(parts)


def _check(state_dict: Mapping[str, np.ndarray], entries: list[_Entry], model_cfg: Mapping[str, Any]) -> None:
    expected = {e.name: e.shape for e in entries}
    bn_prefixes = {e.name[: -len(".weight")] for e in entries if e.name.endswith(".BNLayer.weight")}
    missing = {n: s for n, s in expected.items() if n not in state_dict}
    unexpected, mismatched = {}, {}
    for name, value in state_dict.items():
        shape = tuple(int(d) for d in np.shape(value))
        if name not in expected:
            if name.endswith(".num_batches_tracked") and name[: -len(".num_batches_tracked")] in bn_prefixes:
                continue
            unexpected[name] = shape
        elif shape != expected[name]:
            mismatched[name] = (shape, expected[name])
    if not (missing or unexpected or mismatched):
        return
    cfg = {k: model_cfg.get(k) for k in ("arch", "attention", "T", "t_ratio", "c_ratio") if k in model_cfg}
    lines = [f"official state dict does not fit the model built from config.model {cfg}:"]
    lines += [f"  missing key {n} (expected shape {s})" for n, s in missing.items()]
    lines += [f"  unexpected key {n} (shape {s})" for n, s in unexpected.items()]
    lines += [f"  mis-shaped key {n}: shape {g} in the state dict, expected {s}" for n, (g, s) in mismatched.items()]
    lines.append(f"  hint: {_hint(state_dict)}")
    raise StateDictMismatchError("\n".join(lines), missing=missing, unexpected=unexpected, mismatched=mismatched)


# --- API -------------------------------------------------------------------------------------------------------------


def official_state_dict_shapes(config: Any) -> "OrderedDict[str, tuple[int, ...]]":
    """``{official name: shape}`` that the official network for ``config`` has (without ``num_batches_tracked``).

    Builds the model abstractly (no parameters are allocated).
    """
    model = nnx.eval_shape(lambda: _build(config))
    return OrderedDict((e.name, e.shape) for e in _entries(model))


def from_official_torch(
    state_dict: Any, config: Any, *, frames: str = "masnn", seed: int = 0, weights_only: bool = True
) -> nnx.Module:
    """Builds the masnn-jax model for ``config`` and fills it with official PyTorch weights.

    Args:
      state_dict: the official weights: a mapping of names to torch tensors or NumPy arrays, the dict the official
        scripts save (``{'net': state_dict, 'acc': ..., 'epoch': ...}``), or a path to such a ``torch.save`` file
        (``.pth`` / ``.pt`` / ``.t7``). ``module.`` prefixes (``nn.DataParallel``) are removed;
        ``BNLayer.num_batches_tracked`` entries are accepted and ignored.
      config: the masnn-jax config (``ConfigDict`` with ``.model``) or ``config.model`` itself; it must describe the
        same network (``attention``, ``T``, ``t_ratio``, ``c_ratio``, layer sizes; see :func:`official_config_to_masnn`
        to derive it from an official ``Config.py``). ``param_dtype`` decides the parameter dtype.
      frames: 'masnn' (default) to feed the model masnn-jax frames ``(B, T, H=y, W=x, 2)`` — the official frames are
        ``(B, T, 2, x, y)``, so every spatial kernel is transposed and the first FC layer re-ordered, and the model
        predicts on masnn-jax data what the official network predicts on its own; 'official' to feed it the official
        frames moved to channels-last, ``(B, T, x, y, 2)`` (kernels keep their orientation).
      seed: only used to build the model before every variable is overwritten.
      weights_only: passed to ``torch.load`` for a path.
    Returns:
      the model (``nnx.Module``, in training mode as built; call ``.eval()`` to use the running statistics) with
      every parameter and the BatchNorm running statistics taken from ``state_dict`` (running variances copied as
      they are), laid out channels-last.
    Raises:
      StateDictMismatchError (a ValueError): missing, unexpected or mis-shaped keys; the message lists each key with
        its shapes.
      ValueError: a config the official code cannot express (PLIF neurons, ECA or SimAM attention), or no state dict.
    """
    sd = load_official_state_dict(state_dict, weights_only=weights_only)
    # Built abstractly (no initialisers run: the first concrete build compiles one initialiser per shape, seconds),
    # then every variable is set from the state dict.
    model = nnx.eval_shape(lambda: _build(config, seed))
    entries = _entries(model, frames)
    _check(sd, entries, dict(_model_config(config)))
    if _fill(model, entries, sd):
        return model
    model = _build(config, seed)  # the model holds state the official code has none of: keep its initial value
    _fill(model, _entries(model, frames), sd)
    return model


def _fill(model: nnx.Module, entries: list[_Entry], sd: Mapping[str, np.ndarray]) -> bool:
    """Sets the variables named by ``entries``; False when some other state is left abstract."""
    for e in entries:
        var = _variable(model, e.path)
        value = np.asarray(e.to_jax(sd[e.name]))
        # jnp.array copies (never share a buffer with the caller's arrays)
        var.set_value(jnp.array(value, dtype=var.dtype, copy=True))
    leaves = jax.tree_util.tree_leaves(nnx.state(model))
    return not any(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)


def to_official_torch(
    model: nnx.Module,
    config: Any = None,
    *,
    frames: str = "masnn",
    as_torch: bool = False,
    num_batches_tracked: bool = True,
    prefix: str = "",
) -> "OrderedDict[str, Any]":
    """The official state dict of a masnn-jax MA-SNN event model (the inverse of :func:`from_official_torch`).

    Args:
      model: a :class:`masnn_jax.models.MASNN`.
      config: optional; when given, the model must have the variables of the model ``config`` builds (checked).
      frames: the frame layout the model works on, as in :func:`from_official_torch` (use the same value both ways).
      as_torch: return ``torch.Tensor`` s (CPU) instead of NumPy arrays. Use it to write a file the official code
        loads: ``torch.save({'net': to_official_torch(model, as_torch=True)}, path)`` (a ``torch.save`` of NumPy
        arrays needs ``weights_only=False`` in a plain ``torch.load``; :func:`load_official_state_dict` reads both).
      num_batches_tracked: add ``BNLayer.num_batches_tracked`` (int64 0; masnn-jax does not count batches) so that a
        strict ``load_state_dict`` of the official network accepts the dict.
      prefix: prepended to every key, e.g. ``'module.'`` for an ``nn.DataParallel`` model.
    Returns:
      ``OrderedDict`` of official names to arrays in the official layouts, dtype of the model's variables.
    Raises:
      ValueError: a model the official code cannot express, or one that does not match ``config``.
    """
    entries = _entries(model, frames)
    if config is not None:
        want = official_state_dict_shapes(config)
        have = OrderedDict((e.name, e.shape) for e in entries)
        if want != have:
            diff = sorted(set(want.items()) ^ set(have.items()))
            raise ValueError(f"the model does not match config.model; differing (name, shape): {diff}")
    out: OrderedDict[str, Any] = OrderedDict()
    for e in entries:
        # np.array copies: np.asarray of a CPU jax.Array may share its buffer
        value = np.array(e.to_torch(np.asarray(_variable(model, e.path)[...])), copy=True, order="C")
        out[prefix + e.name] = value
        if num_batches_tracked and e.name.endswith(".BNLayer.running_var"):
            out[prefix + e.name[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
    if as_torch:
        try:
            import torch
        except ImportError:
            raise ImportError(f"to_official_torch(as_torch=True) needs PyTorch: {TORCH_INSTALL_HINT}") from None

        out = OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in out.items())
    return out

