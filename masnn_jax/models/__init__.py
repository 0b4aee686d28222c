"""Model zoo and the config-driven entry point :func:`build`."""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp
from flax import nnx

from masnn_jax.layers import neuron_from_config
from masnn_jax.models.event import ARCHITECTURES, MASNN

__all__ = ["build", "MASNN", "ARCHITECTURES", "MODEL_KEYS", "EXECUTION_KEYS"]

#: Keys understood under ``config.model`` (for ``name='masnn'``).
MODEL_KEYS = (
    "name", "arch", "input_shape", "T", "num_classes", "channels", "pools", "fc", "attention", "placement",
    "c_ratio", "t_ratio", "sa_kernel", "channel_attention", "spatial_attention", "neuron", "surrogate",
    "checkpoint", "unroll", "dtype", "param_dtype", "conv_impl", "remat", "batch_chunks",
)

#: ``config.model`` keys that change how the network is computed, not what it computes or which parameters it has
#: (a checkpoint written with one value loads with another).
EXECUTION_KEYS = ("checkpoint", "unroll", "dtype", "conv_impl", "remat", "batch_chunks")

_DTYPES = {None: None, "float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16, "float64": jnp.float64}


def _dtype(key: str, value):
    if value is None or not isinstance(value, str):
        return value
    if value not in _DTYPES:
        raise ValueError(f"config.model.{key} must be one of {[k for k in _DTYPES if k]}, got {value!r}")
    return _DTYPES[value]


def build(model_config: Mapping[str, Any], *, rngs: nnx.Rngs) -> nnx.Module:
    """Builds a model from ``config.model``.

    ``model_config`` keys (an ``ml_collections.ConfigDict`` or plain dict; see ``configs/*.py``):

    - ``name``: 'masnn' (the MA-SNN event nets; default).
    - ``arch``: 'dvs_gesture' | 'dvs_gait' | 'cifar10_dvs' fills ``channels``, ``pools``, ``fc``, ``input_shape`` and
      ``num_classes`` with the official layer plan; explicit keys override it. ``None``/'custom': give them all.
    - ``T``; ``attention`` (scheme, e.g. 'TCSA'); ``placement`` ('input' = official code, 'membrane' = paper);
      ``c_ratio``, ``t_ratio``, ``sa_kernel``, ``channel_attention`` ('cbam'|'eca'), ``spatial_attention``
      ('cbam'|'simam').
    - ``neuron``: mapping with ``kind`` and preset arguments; ``surrogate``: mapping with ``name`` and hparam.
    - ``checkpoint``, ``unroll``: neuron scan options; ``dtype`` (computation, e.g. 'bfloat16'), ``param_dtype``.
    - ``conv_impl``: 'auto' (im2col on CPU, XLA/cuDNN elsewhere) | 'xla' | 'im2col' (:mod:`masnn_jax.ops`).
    - ``remat``: 'none' | 'layer' (recompute each spiking layer in the backward pass; keeps only layer inputs).
    - ``batch_chunks``: n >= 1; conv layers run BN/pool/attention/neuron over n checkpointed chunks of the batch
      (lower peak memory in training, same results; see :class:`~masnn_jax.layers.ConvAttLIF`).

    Returns:
      an ``nnx.Module`` taking ``(B, T, H, W, C)`` float frames and returning ``(B, num_classes)``.
    Raises:
      ValueError: unknown ``config.model.name``, ``arch`` or key, or inconsistent sizes (the message names the key).
    """
    cfg = dict(model_config)
    unknown = set(cfg) - set(MODEL_KEYS)
    if unknown:
        raise ValueError(f"unknown config.model keys {sorted(unknown)}; known: {MODEL_KEYS}")
    name = cfg.pop("name", "masnn")
    if name != "masnn":
        raise ValueError(f"config.model.name must be 'masnn', got {name!r}")
    arch = cfg.pop("arch", None)
    plan: dict[str, Any] = {}
    if arch not in (None, "custom"):
        if arch not in ARCHITECTURES:
            raise ValueError(f"config.model.arch must be one of {sorted(ARCHITECTURES)} or 'custom', got {arch!r}")
        plan.update(ARCHITECTURES[arch])
    plan.update({k: v for k, v in cfg.items() if v is not None or k in ("dtype",)})
    for key in ("input_shape", "T", "num_classes", "channels", "pools", "fc"):
        if key not in plan:
            raise ValueError(f"config.model.{key} is required (or set config.model.arch)")
    neuron = neuron_from_config(plan.pop("neuron", {"kind": "masnn_official"}), plan.pop("surrogate", None))
    plan["dtype"] = _dtype("dtype", plan.get("dtype"))
    plan["param_dtype"] = _dtype("param_dtype", plan.get("param_dtype", "float32"))
    for key in ("channels", "pools", "fc", "input_shape"):
        plan[key] = tuple(int(v) for v in plan[key])
    return MASNN(neuron=neuron, rngs=rngs, **plan)
