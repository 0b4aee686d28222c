"""Spike responses of a few samples for the figures: rasters, membrane traces, attention weights, pre- vs
post-attention activations — one jit-compiled call that returns only small arrays.

The model runs its own forward pass with every spiking layer recording its spikes and its input
(:func:`masnn_jax.analysis.capture.forward` with ``inputs_of``). For every recorded layer:

* ``raster`` ``(T, k)`` spikes of sample 0's ``k`` most active neurons (``neurons`` holds their flat indices into
  one step's output, most active first; ties by index);
* when the layer has the spiking-layer API of :mod:`masnn_jax.nn.layers` (``preactivation``, ``attention``,
  ``fire``; not inside a scanned stack), its internals on the input it received in the forward pass:
  ``membrane`` ``(T, k)`` potentials of those neurons; ``pre_map`` / ``post_map``: mean over the batch, time and
  channels of ``|pre-activation|`` (conv → BN → pool) and of the attention output that drives the neuron, ``(H',
  W')`` for conv layers, ``(N,)`` for dense layers; ``ta`` ``(B, T)``, ``ca`` ``(B, C)``, ``sa`` ``(B, H', W')``:
  the attention weights (``None`` where the unit is absent). In ``placement='membrane'`` CA and SA act per step
  inside the neuron scan and are not reported here (``ca``/``sa`` None), and ``post_map`` is the TA output. Other
  layers: these are None;
* ``v_th``: the firing threshold of the layer's first :class:`~masnn_jax.nn.layers.SpikingNeuron` (mean, for
  per-channel thresholds), None without one.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from masnn_jax.analysis import capture as capture_lib
from masnn_jax.nn.layers import SpikingNeuron

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


def _has_layer_api(module) -> bool:
    return all(hasattr(module, a) for a in ("preactivation", "attention", "fire"))


@functools.partial(jax.jit, static_argnames=("graphdef", "layers", "k"))
def _probe_step(graphdef, state, x, *, layers, k: int):
    """Per-layer small arrays (see the module docstring); compiled once per (model structure, shape, k)."""
    m = nnx.merge(graphdef, state, copy=True)
    inside = tuple(dict.fromkeys(l.path for l in layers if not l.index))
    _, inter = capture_lib.forward(m, x, record="spikes", inputs_of=inside)
    flat = capture_lib.flat_captures(inter)
    spikes = capture_lib.layer_values(flat, layers, "spikes")
    out = []
    for layer, s in zip(layers, spikes):
        module = capture_lib.module_at(m, layer.path)
        inp = None if layer.index else flat.get(layer.path, {}).get("input")
        entry = {"membrane": None, "pre_map": None, "post_map": None, "ta": None, "ca": None, "sa": None}
        v = None
        if inp is not None and _has_layer_api(module):
            y = module.preactivation(inp)
            post = module.attention.input_transform(y)
            entry["ta"], entry["ca"], entry["sa"] = _weights(module.attention, y)
            s, v = module.fire(y, return_v=True)  # the layer's own neuron loop on its recorded input
            spatial = (1, y.ndim - 1) if y.ndim == 5 else (1,)
            entry["pre_map"] = jnp.abs(y).mean(axis=spatial).mean(0)
            entry["post_map"] = jnp.abs(post).mean(axis=spatial).mean(0)
        t = s.shape[1]
        counts = s[0].reshape(t, -1).sum(0)
        kk = min(k, counts.shape[0])
        _, idx = jax.lax.top_k(counts, kk)  # stable: ties keep the lower index first
        entry["raster"] = s[0].reshape(t, -1)[:, idx]
        entry["neurons"] = idx
        if v is not None:
            entry["membrane"] = v[0].reshape(t, -1)[:, idx]
        out.append(entry)
    return out


def probe_responses(model: nnx.Module, frames: np.ndarray, *, k: int = 16) -> dict[str, Any]:
    """Spike responses of ``frames`` (the model's input, ``(B, T, H, W, C)`` or ``(B, H, W, C)``; see the module
    docstring) as host NumPy arrays. The model runs in its current mode and is not modified.

    Returns ``{'names': [...], 'samples': B, 'layers': [{'raster', 'membrane', 'neurons', 'pre_map', 'post_map',
    'ta', 'ca', 'sa', 'v_th'}]}`` (shapes in the module docstring; None where a layer does not expose them).
    Raises:
      ValueError: input of the wrong shape (from the model).
    """
    x = jnp.asarray(frames, jnp.float32)
    graphdef, state = nnx.split(model)
    layers = tuple(capture_lib.recorded_layers(model, jax.ShapeDtypeStruct(x.shape, x.dtype)))
    out = jax.device_get(_probe_step(graphdef, state, x, layers=layers, k=k))
    for entry, layer in zip(out, layers):
        neurons = capture_lib.modules_under(model, layer.path, SpikingNeuron)
        entry["v_th"] = float(np.mean(np.asarray(neurons[0][1].lif_params().v_th))) if neurons else None
    return {"names": [l.name for l in layers], "layers": out, "samples": int(x.shape[0])}
