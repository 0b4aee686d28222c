"""Operation counts and energy of a spiking model as the paper counts them (Yao et al., TPAMI 2023, §4 energy
evaluation, ``E = 4.6 pJ · MACs(real-valued inputs) + 0.9 pJ · SOPs``; 45 nm energies from Horowitz, ISSCC 2014).

The counts come from the model's own ``operation_counts()`` (a list of
:class:`~masnn_jax.models.registry.OpCount`: MACs per step, what feeds the op, the attention block after it); the
firing rates from :mod:`~masnn_jax.analysis.activity`. Nothing here knows a model family.

Backbone (per sample, i.e. one inference of T steps):

* ``macs`` of a layer = the cost of one dense evaluation: conv ``k_h·k_w·h_out·w_out·c_in·c_out`` where
  ``h_out × w_out`` is the **convolution's** output size (the conv runs before the layer's average pool), dense
  ``in·out``. This is what the ANN counterpart spends per input.
* ``sops`` = ``T · macs · r_in``, ``r_in`` the firing rate of the op's input (``OpCount.input``: a recorded layer's
  spikes; ``'input'``: the fraction of non-zero input elements of event frames, 1 for still images; ``'real'`` /
  ``'membrane'``: 1). Ops on the model input or on real values are charged as MACs (``mac_ops``); ops on spikes
  as accumulates (``ac_ops``). ``T`` is ``OpCount.time_steps`` when given. The usual approximation: each input spike costs ``macs / n_inputs``
  accumulates, ignoring that spikes near a zero-padded border reach fewer outputs.
* BatchNorm (foldable into the conv/linear weights at inference), the average pool, biases and the neuron update
  are not counted, as in the paper.

Two conventions (``energy_report(convention=...)``): 'honest' charges each op by what really feeds it
(``OpCount.input``); 'paper' by what the paper's count says feeds it (``OpCount.paper_input`` /
``paper_time_steps`` where the model gives them, else the same). They differ for Spikformer (Zhou et al., ICLR 2023,
App. C.2: ``E = 4.6 pJ · FLOPs(first conv) + 0.9 pJ · Σ fr · T · FLOPs``): its SEW residual stream holds integers,
so the maps reading it multiply (honest: dense MACs, Spikingformer's argument) where the paper counts SOPs.

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

import numpy as np
from flax import nnx

from masnn_jax.analysis import capture as capture_lib
from masnn_jax.analysis.activity import ActivityStats
from masnn_jax.models.registry import OP_INPUTS, OpCount
from masnn_jax.nn import attention as attention_lib

__all__ = ["EnergyModel", "ENERGY_MODELS", "get_energy_model", "LayerOps", "count_operations", "energy_report",
           "CONVENTIONS"]


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
    """Static operation counts of one operation (one row of the report), per sample (see the module docstring).

    ``macs``: one dense evaluation of the conv / linear map (per time step). ``conv_output``: (h_out, w_out, c_out)
    of the conv before pooling (None for dense). ``output_shape``: one time step's output (the neurons).
    ``attention``: ``{'macs', 'mults', 'adds', 'units': {unit: {'macs', 'mults', 'adds'}}}`` over all T steps.
    ``source``: what feeds it (``OpCount.input``); ``layer``: the recorded layer it drives (None: none);
    ``time_steps``: evaluations per inference (None: T). ``paper_source`` / ``paper_time_steps``: the same in the
    paper's count (``OpCount.paper_input`` / ``paper_time_steps``; None: as ``source`` / ``time_steps``).
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    conv_output: tuple[int, ...] | None
    kernel: tuple[int, ...]
    macs: int
    attention: dict[str, Any]
    source: str = "input"
    layer: str | None = None
    time_steps: int | None = None
    paper_source: str | None = None
    paper_time_steps: int | None = None

    @property
    def neurons(self) -> int:
        return int(np.prod(self.output_shape))


def _trailing(shape, n: int) -> tuple[int, ...]:
    """The last ``n`` dims (a scanned stack of blocks adds leading axes to every kernel)."""
    return tuple(int(d) for d in tuple(shape)[-n:])


def _attention_ops(att: attention_lib.MultiDimensionalAttention, T: int, shape: tuple[int, ...]) -> dict[str, Any]:
    """Operation counts of one attention block on a ``(T, *shape)`` pre-activation (per sample)."""
    n = int(np.prod(shape))  # elements of one step
    membrane = att.placement == "membrane"
    per_step = T if membrane else 1  # CA/SA run once per step in the paper's placement
    units: dict[str, dict[str, int]] = {}
    if att.ta is not None:
        t1, th = _trailing(att.ta.fc1.kernel.shape, 2)
        th2, t2 = _trailing(att.ta.fc2.kernel.shape, 2)
        units["TA"] = {"macs": 2 * (t1 * th + th2 * t2), "mults": T * n, "adds": 2 * T * n}
    if att.ca is not None:
        if isinstance(att.ca, attention_lib.ChannelAttention):
            c1, ch = _trailing(att.ca.fc1.kernel.shape, 2)
            ch2, c2 = _trailing(att.ca.fc2.kernel.shape, 2)
            units["CA"] = {"macs": 2 * (c1 * ch + ch2 * c2) * per_step, "mults": T * n, "adds": 2 * T * n}
        else:  # ECA
            k = _trailing(att.ca.conv.kernel.shape, 3)[0]
            units["CA"] = {"macs": k * int(att.ca.C) * per_step, "mults": T * n, "adds": T * n}
    if att.sa is not None:
        hw = int(np.prod(shape[:-1]))
        if isinstance(att.sa, attention_lib.SpatialAttention):
            kh, kw, cin, cout = _trailing(att.sa.conv.kernel.shape, 4)
            units["SA"] = {"macs": kh * kw * cin * cout * hw * per_step, "mults": T * n, "adds": 2 * T * n}
        else:  # SimAM (approximate, see the module docstring)
            maps = (T * n) if att.sa.per_neuron else hw * per_step
            units["SA"] = {"macs": 0, "mults": T * n + 3 * maps, "adds": T * n + 3 * maps}
    total = {k: int(sum(u[k] for u in units.values())) for k in ("macs", "mults", "adds")}
    return {**total, "units": units}


def _path(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in text.split(".")) if text else ()


def count_operations(model: nnx.Module) -> list[LayerOps]:
    """Static per-sample operation counts of a model, from its ``operation_counts()``
    (:class:`~masnn_jax.models.registry.OpCount`), with each op's attention block counted from the block's own
    shapes (see the module docstring). Works on an abstract model (``nnx.eval_shape``) too.

    Returns:
      one :class:`LayerOps` per ``OpCount``, in the model's order.
    Raises:
      ValueError: the model has no ``operation_counts`` method, an ``OpCount.attention`` path that is not a
        ``MultiDimensionalAttention``.
    """
    hook = getattr(model, "operation_counts", None)
    if not callable(hook):
        raise ValueError(f"{type(model).__name__} has no operation_counts() method (see "
                         f"masnn_jax.models.registry.SpikingModel); operations and energy cannot be counted")
    T = int(model.T)
    out: list[LayerOps] = []
    for op in hook():
        if not isinstance(op, OpCount):
            raise ValueError(f"{type(model).__name__}.operation_counts() must return OpCount entries, got {op!r}")
        att: dict[str, Any] = {"macs": 0, "mults": 0, "adds": 0, "units": {}}
        if op.attention:
            module = capture_lib.module_at(model, _path(op.attention))
            if not isinstance(module, attention_lib.MultiDimensionalAttention):
                raise ValueError(f"OpCount {op.name!r}: attention path {op.attention!r} is a "
                                 f"{type(module).__name__}, not a MultiDimensionalAttention")
            att = _attention_ops(module, T, tuple(op.attention_shape or op.output_shape))
        out.append(LayerOps(
            name=op.name, kind=op.kind, input_shape=tuple(op.input_shape), output_shape=tuple(op.output_shape),
            conv_output=None if op.conv_output is None else tuple(op.conv_output), kernel=tuple(op.kernel),
            macs=int(op.macs_per_step), attention=att, source=op.input,
            layer=op.layer if op.layer is not None else op.name, time_steps=op.time_steps,
            paper_source=op.paper_input, paper_time_steps=op.paper_time_steps))
    return out


def _rate_of(source: str, stats: ActivityStats, index: dict[str, int], input_kind: str) -> tuple[float, str]:
    """``(r_in, 'MAC' | 'AC')`` of an op fed by ``source``."""
    if source == "input":
        return (1.0 if input_kind == "image" else float(stats.input_rate)), "MAC"
    if source in OP_INPUTS:  # 'real', 'membrane'
        return 1.0, "MAC"
    if source not in index:
        raise ValueError(f"OpCount input {source!r} is neither one of {OP_INPUTS} nor a recorded layer "
                         f"({', '.join(stats.names)})")
    return float(stats.firing_rate[index[source]]), "AC"


#: ``energy_report(convention=...)``: 'honest' charges every op by what really feeds it (``OpCount.input``);
#: 'paper' by what the paper's count says feeds it (``OpCount.paper_input`` where given).
CONVENTIONS = ("honest", "paper")


def energy_report(
    ops: list[LayerOps], stats: ActivityStats, energy: str | EnergyModel = "45nm_fp32", *, input_kind: str = "frames",
    convention: str = "honest",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-operation and total operations and energy from static counts and measured firing rates.

    Args:
      ops: from :func:`count_operations`.
      stats: from :func:`~masnn_jax.analysis.activity.collect_activity` on the same model.
      energy: an :data:`ENERGY_MODELS` name or an :class:`EnergyModel`.
      input_kind: the model's ``input_kind`` ('frames': an op on the input is weighted by the fraction of non-zero
        input elements; 'image': by 1).
      convention: 'honest' (default: each op charged by ``LayerOps.source``) or 'paper' (by ``paper_source`` and
        ``paper_time_steps`` where the model gives them, e.g. Spikformer's residual-stream layers as SOPs at the
        rate of the neuron that last wrote the stream; see :data:`CONVENTIONS`). The rows' ``source`` is the one
        used.
    Returns:
      ``(layers, totals)``. Each layer (one per op): ``name, kind, layer, source, neurons, output_shape,
      conv_output, firing_rate, firing_rate_t, spikes_per_sample, spikes_per_sample_std, input_rate, macs, sops,
      op_kind ('MAC' for ops on the input or real values, else 'AC'), mac_ops, ac_ops, attention_macs,
      attention_mults, attention_adds, attention_units, attention_energy_pj, energy_pj, ann_energy_pj`` (the
      activity fields come from ``layer``, the recorded layer the op drives; None when it drives none). Totals:
      ``macs, sops, mac_ops, ac_ops, attention_macs, attention_mults, attention_adds, attention_energy_pj,
      energy_pj, ann_energy_pj, energy_ratio, network_firing_rate, spikes_per_sample, spikes_per_sample_std,
      input_rate, T``.
    Raises:
      ValueError: an op fed by a layer that was not recorded; an unknown ``convention``.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"energy convention must be one of {CONVENTIONS}, got {convention!r}")
    paper = convention == "paper"
    em = get_energy_model(energy)
    rates = stats.firing_rate
    rates_t = stats.firing_rate_t
    spikes = stats.spikes_per_sample
    T = stats.T
    index = {name: i for i, name in enumerate(stats.names)}
    index.update({p: i for i, p in enumerate(stats.paths or [])})
    layers: list[dict[str, Any]] = []
    for op in ops:
        source = op.paper_source if paper and op.paper_source is not None else op.source
        time_steps = op.paper_time_steps if paper and op.paper_time_steps is not None else op.time_steps
        r_in, op_kind = _rate_of(source, stats, index, input_kind)
        steps = T if time_steps is None else int(time_steps)
        sops = steps * op.macs * r_in
        mac_ops, ac_ops = (sops, 0.0) if op_kind == "MAC" else (0.0, sops)
        att = op.attention
        att_e = em.e_mac * (att["macs"] + att["mults"]) + em.e_ac * att["adds"]
        i = index.get(op.layer) if op.layer is not None else None
        layers.append({
            "name": op.name,
            "kind": op.kind,
            "layer": None if i is None else stats.names[i],
            "source": source,
            "neurons": op.neurons if i is None else int(stats.neurons[i]),
            "output_shape": list(op.output_shape),
            "conv_output": None if op.conv_output is None else list(op.conv_output),
            "firing_rate": None if i is None else float(rates[i]),
            "firing_rate_t": None if i is None else [float(v) for v in rates_t[i]],
            "spikes_per_sample": None if i is None else float(spikes[i]),
            "spikes_per_sample_std": None if i is None else float(stats.sample_spikes[:, i].std()),
            "input_rate": float(r_in),
            "macs": int(op.macs),
            "sops": float(sops),
            "op_kind": op_kind,
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
