"""Spike responses of a few samples for the figures: rasters, membrane traces, attention weights, pre- vs
post-attention activations — one jit-compiled call that returns only small arrays.

For every spiking layer ``l`` (run on the actual input it receives in the attention-enabled network):

* ``raster`` ``(T, k)`` spikes and ``membrane`` ``(T, k)`` potentials of sample 0's ``k`` most active neurons
  (``neurons`` holds their flat indices into one step's output, most active first; ties by index);
* ``pre_map`` / ``post_map``: mean over the batch, time and channels of ``|pre-activation|`` (conv → BN → pool)
  and of the attention output that drives the neuron, ``(H', W')`` for conv layers, ``(N,)`` for dense layers;
* ``ta`` ``(B, T)``, ``ca`` ``(B, C)``, ``sa`` ``(B, H', W')``: the attention weights (``None`` where the unit is
  absent). In ``placement='membrane'`` CA and SA act per step inside the neuron scan and are not reported here
  (``ca``/``sa`` None), and ``post_map`` is the TA output.
* ``v_th``: the layer's firing threshold (mean, for per-channel thresholds).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from masnn_jax.analysis.activity import layer_names

__all__ = ["probe_responses"]


def _weights(att, y):
    """TA/CA/SA weights of the pre-activation ``y`` as the input-placement block computes them."""
    ta = ca = sa = None
    out = y
    if att.ta is not None:
        w = att.ta(out)
        ta = w.reshape(w.shape[0], w.shape[1])
        out = w * out
    if att.placement == "input" and not att.fc:
        if att.ca is not None:
            w = att.ca(out)
            ca = w.reshape(w.shape[0], w.shape[-1])
            out = w * out
        if att.sa is not None:
            w = att.sa(out)
            sa = w.mean(axis=(1, 4)) if w.ndim == 5 else w  # (B, H, W); SimAM per-neuron: mean over T, C
    return ta, ca, sa


@functools.partial(jax.jit, static_argnames=("graphdef", "k"))
def _probe_step(graphdef, state, frames, *, k: int):
    """Per-layer small arrays (see the module docstring); compiled once per (model structure, shape, k)."""
    m = nnx.merge(graphdef, state, copy=True)
    x = frames if m.dtype is None else frames.astype(m.dtype)
    n_conv = len(m.convs)
    out = []
    for i, layer in enumerate(m.spiking_layers):
        if i == n_conv:
            x = x.reshape(x.shape[0], x.shape[1], -1)
        y = layer.preactivation(x)
        post = layer.attention.input_transform(y)
        ta, ca, sa = _weights(layer.attention, y)
        s, v = layer.fire(y, return_v=True)  # the conv ran once, in preactivation
        b, t = s.shape[:2]
        counts = s[0].reshape(t, -1).sum(0)
        kk = min(k, counts.shape[0])
        _, idx = jax.lax.top_k(counts, kk)  # stable: ties keep the lower index first
        spatial = (1, 4) if y.ndim == 5 else (1,)
        out.append({
            "raster": s[0].reshape(t, -1)[:, idx],
            "membrane": v[0].reshape(t, -1)[:, idx],
            "neurons": idx,
            "pre_map": jnp.abs(y).mean(axis=spatial).mean(0),
            "post_map": jnp.abs(post).mean(axis=spatial).mean(0),
            "ta": ta, "ca": ca, "sa": sa,
        })
        x = s
    return out


def probe_responses(model: nnx.Module, frames: np.ndarray, *, k: int = 16) -> dict[str, Any]:
    """Spike responses of ``frames`` ``(B, T, H, W, C)`` (see the module docstring) as host NumPy arrays.

    Returns ``{'names': [...], 'samples': B, 'layers': [{'raster', 'membrane', 'neurons', 'pre_map', 'post_map',
    'ta', 'ca', 'sa', 'v_th'}]}`` (shapes in the module docstring).
    """
    graphdef, state = nnx.split(model)
    names = layer_names(model)
    layers = jax.device_get(_probe_step(graphdef, state, jnp.asarray(frames, jnp.float32), k=k))
    for layer, module in zip(layers, model.spiking_layers):
        layer["v_th"] = float(np.mean(np.asarray(module.neuron.lif_params().v_th)))
    return {"names": names, "layers": layers, "samples": int(frames.shape[0])}
