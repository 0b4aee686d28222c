"""Operation counts and energy of an MA-SNN as the paper counts them (Yao et al., TPAMI 2023, energy evaluation; 45 nm energies from Horowitz, ISSCC 2014).

Backbone (per sample, i.e. one inference of T steps):

* ``macs`` of a layer = the cost of one dense evaluation: conv ``k_h·k_w·h_out·w_out·c_in·c_out`` where
  ``h_out × w_out`` is the **convolution's** output size (the conv runs before the layer's average pool), dense
  ``in·out``. This is what the ANN counterpart spends per input.
* ``sops`` = ``T · macs · r_in``, ``r_in`` the firing rate of the layer's input (previous layer's spikes; for the
  first layer the fraction of non-zero input elements of the event frames, 1 for static images). For the first
  layer the input is real-valued (event counts), so its ``sops`` are charged as MACs (``mac_ops``); every other
  layer's as accumulates (``ac_ops``). The usual approximation: each input spike costs ``macs / n_inputs``
  accumulates, ignoring that spikes near a zero-padded border reach fewer outputs.
* BatchNorm (foldable into the conv/linear weights at inference), the average pool, biases and the neuron update
  are not counted, as in the paper.

Attention modules (counted separately, from the module shapes; ``placement='input'`` runs each unit once on the
whole ``(T, H', W', C)`` pre-activation of a sample; ``placement='membrane'`` runs CA and SA once per step):

* TA: avg- and max-pool over ``H'·W'·C`` per step (``2·T·H'·W'·C`` adds/compares), shared MLP on both pooled
  vectors (``2·(T·T_h + T_h·T)`` MACs), gate multiply ``T·H'·W'·C``.
* CA (CBAM): avg/max pools ``2·T·H'·W'·C`` adds, MLP ``2·(C·C_h + C_h·C)`` MACs (× T for 'membrane'), gate
  multiply ``T·H'·W'·C``. ECA: avg pool ``T·H'·W'·C`` adds, 1-D conv ``k·C`` MACs (× T for 'membrane').
* SA (CBAM): mean/max over ``T·C`` (``2·T·H'·W'·C`` adds), conv 2→1 ``k²·2·H'·W'`` MACs (× T for 'membrane'),
  gate multiply ``T·H'·W'·C``. SimAM (approximate): mean pool ``T·H'·W'·C`` adds, about 3 multiplies and 3 adds
  per map pixel, gate multiply.
* Dense layers: TA only, with ``N`` in place of ``H'·W'·C``.
* Sigmoids and the trailing ReLU are not counted.

Attention MACs and gate multiplies act on real values and are charged ``E_MAC`` each; pooling adds/compares
``E_AC`` each. The ANN counterpart (``ann_energy_pj``) is the same backbone evaluated once (T = 1) with every
operation a MAC and no attention modules: ``E_MAC · Σ macs``, as the paper compares Att-Res-SNN with Res-ANN
(``E_ANN = 4.6 pJ × FLOPs``); ``energy_ratio = ann_energy_pj / energy_pj`` (> 1: the SNN is cheaper).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from masnn_jax.nn import attention as attention_lib
from masnn_jax.analysis.activity import ActivityStats, layer_names

__all__ = ["EnergyModel", "ENERGY_MODELS", "get_energy_model", "LayerOps", "count_operations", "energy_report"]


@dataclasses.dataclass(frozen=True)
class EnergyModel:
    """Energy per operation in pJ: ``e_mac`` (multiply + add) and ``e_ac`` (add), with the source."""

    name: str
    e_mac: float
    e_ac: float
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "e_mac_pj": self.e_mac, "e_ac_pj": self.e_ac, "source": self.source}


_HOROWITZ = "M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, 45 nm, 0.9 V"

#: Presets. ``45nm_fp32`` is what the MA-SNN paper (and most SNN papers) use. MAC = multiply + add.
ENERGY_MODELS: dict[str, EnergyModel] = {
    "45nm_fp32": EnergyModel("45nm_fp32", 4.6, 0.9, f"{_HOROWITZ}: fp32 mult 3.7 + add 0.9 pJ (MA-SNN paper)"),
    "45nm_fp16": EnergyModel("45nm_fp16", 1.5, 0.4, f"{_HOROWITZ}: fp16 mult 1.1 + add 0.4 pJ"),
    "45nm_int32": EnergyModel("45nm_int32", 3.2, 0.1, f"{_HOROWITZ}: int32 mult 3.1 + add 0.1 pJ"),
    "45nm_int8": EnergyModel("45nm_int8", 0.23, 0.03, f"{_HOROWITZ}: int8 mult 0.2 + add 0.03 pJ"),
}


def get_energy_model(name_or_model: str | EnergyModel) -> EnergyModel:
    """A preset by name (see :data:`ENERGY_MODELS`), or the :class:`EnergyModel` itself.

    Raises:
      ValueError: unknown name (lists the presets).
    """
    if isinstance(name_or_model, EnergyModel):
        return name_or_model
    if name_or_model not in ENERGY_MODELS:
        raise ValueError(f"unknown energy model {name_or_model!r}; presets: {', '.join(ENERGY_MODELS)}")
    return ENERGY_MODELS[name_or_model]


@dataclasses.dataclass
class LayerOps:
    """Static operation counts of one spiking layer, per sample (see the module docstring).

    ``macs``: one dense evaluation of the conv / linear map. ``conv_output``: (h_out, w_out, c_out) of the conv
    before pooling (None for dense). ``output_shape``: one time step's output (the neurons).
    ``attention``: ``{'macs', 'mults', 'adds', 'units': {unit: {'macs', 'mults', 'adds'}}}`` over all T steps.
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    conv_output: tuple[int, ...] | None
    kernel: tuple[int, ...]
    macs: int
    attention: dict[str, Any]

    @property
    def neurons(self) -> int:
        return int(np.prod(self.output_shape))


def _attention_ops(att: attention_lib.MultiDimensionalAttention, T: int, shape: tuple[int, ...]) -> dict[str, Any]:
    """Operation counts of one layer's attention module on a ``(T, *shape)`` pre-activation (per sample)."""
    n = int(np.prod(shape))  # elements of one step
    membrane = att.placement == "membrane"
    per_step = T if membrane else 1  # CA/SA run once per step in the paper's placement
    units: dict[str, dict[str, int]] = {}
    if att.ta is not None:
        t1, th = att.ta.fc1.kernel.shape
        th2, t2 = att.ta.fc2.kernel.shape
        units["TA"] = {"macs": 2 * (t1 * th + th2 * t2), "mults": T * n, "adds": 2 * T * n}
    if att.ca is not None:
        if isinstance(att.ca, attention_lib.ChannelAttention):
            c1, ch = att.ca.fc1.kernel.shape
            ch2, c2 = att.ca.fc2.kernel.shape
            units["CA"] = {"macs": 2 * (c1 * ch + ch2 * c2) * per_step, "mults": T * n, "adds": 2 * T * n}
        else:  # ECA
            k = int(att.ca.conv.kernel.shape[0])
            units["CA"] = {"macs": k * int(att.ca.C) * per_step, "mults": T * n, "adds": T * n}
    if att.sa is not None:
        hw = int(np.prod(shape[:-1]))
        if isinstance(att.sa, attention_lib.SpatialAttention):
            kh, kw, cin, cout = att.sa.conv.kernel.shape
            units["SA"] = {"macs": kh * kw * cin * cout * hw * per_step, "mults": T * n, "adds": 2 * T * n}
        else:  # SimAM (approximate, see the module docstring)
            maps = (T * n) if att.sa.per_neuron else hw * per_step
            units["SA"] = {"macs": 0, "mults": T * n + 3 * maps, "adds": T * n + 3 * maps}
    total = {k: int(sum(u[k] for u in units.values())) for k in ("macs", "mults", "adds")}
    return {**total, "units": units}


def _conv_output_shape(conv: nnx.Conv, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape of one image ``shape`` (H, W, C) through ``conv`` (works on abstract models too)."""
    graphdef, state = nnx.split(conv)
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    return jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x).shape[1:]


def count_operations(model: nnx.Module) -> list[LayerOps]:
    """Static per-sample operation counts of every spiking layer of an MA-SNN (see the module docstring).

    The conv output size comes from ``jax.eval_shape`` of the layer's own ``nnx.Conv`` (so kernel, padding and
    stride are those of the model); works on an abstract model (``nnx.eval_shape``) too.
    """
    T = int(model.T)
    h, w, c = model.input_shape
    shape: tuple[int, ...] = (h, w, c)
    out: list[LayerOps] = []
    names = layer_names(model)
    for i, layer in enumerate(model.spiking_layers):
        if i == len(model.convs):
            shape = (int(np.prod(shape)),)
        if i < len(model.convs):
            kh, kw, cin, cout = (int(d) for d in layer.conv.kernel.shape)
            conv_out = _conv_output_shape(layer.conv, shape)
            ho, wo = int(conv_out[0]), int(conv_out[1])
            macs = kh * kw * ho * wo * cin * cout
            p = int(layer.pool)
            out_shape = (ho // p, wo // p, cout) if p > 1 else (ho, wo, cout)
            ops = LayerOps(names[i], "conv", shape, out_shape, (ho, wo, cout), (kh, kw, cin, cout), macs,
                           _attention_ops(layer.attention, T, out_shape))
        else:
            nin, nout = (int(d) for d in layer.linear.kernel.shape)
            ops = LayerOps(names[i], "fc", shape, (nout,), None, (nin, nout), nin * nout,
                           _attention_ops(layer.attention, T, (nout,)))
        out.append(ops)
        shape = ops.output_shape
    return out


def energy_report(
    ops: list[LayerOps], stats: ActivityStats, energy: str | EnergyModel = "45nm_fp32"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-layer and total operations and energy from static counts and measured firing rates.

    Args:
      ops: from :func:`count_operations`.
      stats: from :func:`~masnn_jax.analysis.activity.collect_activity` on the same model.
      energy: an :data:`ENERGY_MODELS` name or an :class:`EnergyModel`.
    Returns:
      ``(layers, totals)``. Each layer: ``name, kind, neurons, output_shape, conv_output, firing_rate,
      firing_rate_t, spikes_per_sample, spikes_per_sample_std, input_rate, macs, sops, op_kind ('MAC' for the
      first layer, else 'AC'), mac_ops, ac_ops, attention_macs, attention_mults, attention_adds, attention_units,
      attention_energy_pj, energy_pj, ann_energy_pj``. Totals: ``macs, sops, mac_ops, ac_ops, attention_macs,
      attention_mults, attention_adds, attention_energy_pj, energy_pj, ann_energy_pj, energy_ratio,
      network_firing_rate, spikes_per_sample, spikes_per_sample_std, input_rate, T``.
    """
    em = get_energy_model(energy)
    rates = stats.firing_rate
    rates_t = stats.firing_rate_t
    spikes = stats.spikes_per_sample
    T = stats.T
    layers: list[dict[str, Any]] = []
    for i, op in enumerate(ops):
        r_in = stats.input_rate if i == 0 else float(rates[i - 1])
        sops = T * op.macs * r_in
        mac_ops, ac_ops = (sops, 0.0) if i == 0 else (0.0, sops)
        att = op.attention
        att_e = em.e_mac * (att["macs"] + att["mults"]) + em.e_ac * att["adds"]
        layers.append({
            "name": op.name,
            "kind": op.kind,
            "neurons": op.neurons,
            "output_shape": list(op.output_shape),
            "conv_output": None if op.conv_output is None else list(op.conv_output),
            "firing_rate": float(rates[i]),
            "firing_rate_t": [float(v) for v in rates_t[i]],
            "spikes_per_sample": float(spikes[i]),
            "spikes_per_sample_std": float(stats.sample_spikes[:, i].std()),
            "input_rate": float(r_in),
            "macs": int(op.macs),
            "sops": float(sops),
            "op_kind": "MAC" if i == 0 else "AC",
            "mac_ops": float(mac_ops),
            "ac_ops": float(ac_ops),
            "attention_macs": int(att["macs"]),
            "attention_mults": int(att["mults"]),
            "attention_adds": int(att["adds"]),
            "attention_units": att["units"],
            "attention_energy_pj": float(att_e),
            "energy_pj": float(em.e_mac * mac_ops + em.e_ac * ac_ops + att_e),
            "ann_energy_pj": float(em.e_mac * op.macs),
        })
    s = lambda key: float(sum(l[key] for l in layers))  # noqa: E731
    energy_pj = s("energy_pj")
    ann = s("ann_energy_pj")
    totals = {
        "macs": int(sum(l["macs"] for l in layers)),
        "sops": s("sops"),
        "mac_ops": s("mac_ops"),
        "ac_ops": s("ac_ops"),
        "attention_macs": int(s("attention_macs")),
        "attention_mults": int(s("attention_mults")),
        "attention_adds": int(s("attention_adds")),
        "attention_energy_pj": s("attention_energy_pj"),
        "energy_pj": energy_pj,
        "ann_energy_pj": ann,
        "energy_ratio": ann / energy_pj if energy_pj > 0 else None,
        "network_firing_rate": float(stats.network_firing_rate),
        "spikes_per_sample": float(spikes.sum()),
        "spikes_per_sample_std": float(stats.sample_spikes.sum(1).std()),
        "input_rate": float(stats.input_rate),
        "T": int(T),
    }
    return layers, totals
