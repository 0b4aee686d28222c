"""Figures of the analysis (matplotlib, Agg backend, PNG files). Every function writes one file and returns its
path; inputs are the host arrays of :mod:`~masnn_jax.analysis.activity`, :mod:`~masnn_jax.analysis.probe`,
:mod:`~masnn_jax.analysis.gradients` and :mod:`~masnn_jax.analysis.energy`."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import matplotlib.pyplot as plt  # figures are saved and closed; pyplot picks Agg where there is no display
import numpy as np  # noqa: E402

from masnn_jax.analysis.activity import ActivityStats  # noqa: E402

__all__ = [
    "plot_activity",
    "plot_firing_maps",
    "plot_attention_weights",
    "plot_raster",
    "plot_membrane",
    "plot_attention_effect",
    "plot_gradient_norms",
    "plot_energy",
]


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _as_image(v: np.ndarray) -> np.ndarray:
    """A map stays a map; a vector of N values becomes a near-square image padded with NaN."""
    v = np.asarray(v, np.float64)
    if v.ndim == 2:
        return v
    n = v.size
    w = int(math.ceil(math.sqrt(n)))
    h = int(math.ceil(n / w))
    img = np.full(h * w, np.nan)
    img[:n] = v.ravel()
    return img.reshape(h, w)


def _grid(n: int, ncols: int | None = None):
    ncols = ncols or min(n, 4)
    nrows = int(math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.9 * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()


def plot_activity(stats: ActivityStats, path: str, *, bypass: ActivityStats | None = None) -> str:
    """Firing rate per time step of every layer (and of the input), and the average rate per layer (with the
    attention-bypassed network beside it when ``bypass`` is given)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    t = np.arange(1, stats.T + 1)
    a.plot(t, stats.input_rate_t, "k--", label="input (non-zero)")
    for name, r in zip(stats.names, stats.firing_rate_t):
        a.plot(t, r, marker=".", label=name)
    a.set_xlabel("time step")
    a.set_ylabel("firing rate")
    a.set_title("spiking activity per time step")
    a.legend(fontsize=7)
    x = np.arange(len(stats.names))
    width = 0.4 if bypass is not None else 0.7
    b.bar(x - (width / 2 if bypass is not None else 0), stats.firing_rate, width, label="with attention")
    if bypass is not None:
        b.bar(x + width / 2, bypass.firing_rate, width, label="attention bypassed")
        b.legend(fontsize=7)
    b.set_xticks(x, [f"{n}\n{k:,}" for n, k in zip(stats.names, stats.neurons)], fontsize=7)
    b.set_ylabel("firing rate")
    b.set_title(f"per layer (network {stats.network_firing_rate:.4f})")
    return _save(fig, path)


def plot_firing_maps(stats: ActivityStats, path: str) -> str:
    """Firing rate per position (mean over channels, time and samples) of every conv layer; per-neuron rates of
    the dense layers as a near-square image."""
    n = len(stats.names)
    fig, axes = _grid(n)
    for i, ax in enumerate(axes[:n]):
        img = _as_image(stats.firing_map(i))
        im = ax.imshow(img, cmap="viridis", interpolation="nearest")
        kind = "mean over C, T" if stats.neuron_spikes[i].ndim == 3 else "per neuron"
        ax.set_title(f"{stats.names[i]} ({kind})\nrate {stats.firing_rate[i]:.4f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"firing maps over {stats.samples} samples")
    return _save(fig, path)


def plot_attention_weights(probe: dict[str, Any], path: str) -> str | None:
    """TA weights over time (mean ± std over the probed samples), CA weights per channel (mean) and the SA map
    (mean), one row per layer that has attention. Returns None (no file) when no layer has any."""
    rows = [(n, l) for n, l in zip(probe["names"], probe["layers"])
            if any(l[k] is not None for k in ("ta", "ca", "sa"))]
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 2.8 * len(rows)), squeeze=False)
    for (name, l), (a, b, c) in zip(rows, axes):
        for ax, key in ((a, "ta"), (b, "ca"), (c, "sa")):
            if l[key] is None:
                ax.text(0.5, 0.5, f"{name}: no {key.upper()}", ha="center", va="center", transform=ax.transAxes)
                ax.axis("off")
        if l["ta"] is not None:
            w = np.asarray(l["ta"])
            t = np.arange(1, w.shape[1] + 1)
            a.plot(t, w.mean(0), marker=".")
            a.fill_between(t, w.mean(0) - w.std(0), w.mean(0) + w.std(0), alpha=0.3)
            a.set_xlabel("time step")
            a.set_title(f"{name}: TA weight", fontsize=9)
        if l["ca"] is not None:
            w = np.asarray(l["ca"])
            b.bar(np.arange(w.shape[1]), w.mean(0), width=1.0)
            b.set_xlabel("channel")
            b.set_title(f"{name}: CA weight", fontsize=9)
        if l["sa"] is not None:
            im = c.imshow(np.asarray(l["sa"]).mean(0), cmap="magma", interpolation="nearest")
            c.set_title(f"{name}: SA map", fontsize=9)
            c.set_xticks([])
            c.set_yticks([])
            fig.colorbar(im, ax=c, fraction=0.046)
    fig.suptitle(f"attention weights (mean over {probe.get('samples', 'the probed')} samples)")
    fig.tight_layout()
    return _save(fig, path)


def plot_raster(probe: dict[str, Any], path: str) -> str:
    """Spike raster of sample 0: the most active neurons of every layer (rows: neurons, x: time step)."""
    n = len(probe["names"])
    fig, axes = _grid(n)
    for ax, name, l in zip(axes, probe["names"], probe["layers"]):
        s = np.asarray(l["raster"])  # (T, k)
        t, k = np.nonzero(s)
        ax.scatter(t + 1, k, marker="|", s=60, c="k")
        ax.set_yticks(np.arange(s.shape[1]), [str(i) for i in np.asarray(l["neurons"])], fontsize=5)
        ax.set_xlim(0.5, s.shape[0] + 0.5)
        ax.set_ylim(-0.5, s.shape[1] - 0.5)
        ax.set_xlabel("time step")
        ax.set_title(f"{name}: {int(s.sum())} spikes", fontsize=9)
    fig.suptitle("spike raster, sample 0 (most active neurons; labels: flat neuron index)")
    fig.tight_layout()
    return _save(fig, path)


def plot_membrane(probe: dict[str, Any], path: str, *, traces: int = 4) -> str:
    """Membrane potential of sample 0's ``traces`` most active neurons per layer, with the threshold (dashed) and
    the steps where they fired (dots)."""
    n = len(probe["names"])
    fig, axes = _grid(n)
    for ax, name, l in zip(axes, probe["names"], probe["layers"]):
        if l.get("membrane") is None:
            ax.text(0.5, 0.5, f"{name}: no membrane trace", ha="center", va="center", transform=ax.transAxes)
            ax.axis("off")
            continue
        v = np.asarray(l["membrane"])[:, :traces]
        s = np.asarray(l["raster"])[:, :traces]
        t = np.arange(1, v.shape[0] + 1)
        for j in range(v.shape[1]):
            line = ax.plot(t, v[:, j], lw=1, label=f"#{int(np.asarray(l['neurons'])[j])}")[0]
            fired = s[:, j] > 0
            ax.plot(t[fired], v[fired, j], "o", ms=6, mec="k", color=line.get_color())
        th = "" if l.get("v_th") is None else f" (V_th {l['v_th']:.2f})"
        if l.get("v_th") is not None:
            ax.axhline(l["v_th"], ls="--", c="gray", lw=1)
        ax.set_xlabel("time step")
        ax.set_title(f"{name}: membrane{th}", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle("membrane potential, sample 0 (dots: spikes)")
    fig.tight_layout()
    return _save(fig, path)


def plot_attention_effect(stats: ActivityStats, bypass: ActivityStats, probe: dict[str, Any], path: str) -> str:
    """The same network with and without attention, conv layers in columns. Rows: firing map with attention,
    firing map with the attention modules bypassed (same weights), mean |pre-attention| activation and mean
    |post-attention| activation (the current the neuron integrates)."""
    conv = [i for i, s in enumerate(stats.neuron_spikes) if s.ndim == 3] or list(range(len(stats.names)))
    fig, axes = plt.subplots(4, len(conv), figsize=(3.2 * len(conv), 11), squeeze=False)
    for col, i in enumerate(conv):
        l = probe["layers"][i]
        panels = [
            (stats.firing_map(i), f"{stats.names[i]} rate, attention\n{stats.firing_rate[i]:.4f}", "viridis"),
            (bypass.firing_map(i), f"{stats.names[i]} rate, bypassed\n{bypass.firing_rate[i]:.4f}", "viridis"),
            (l.get("pre_map"), f"{stats.names[i]} |pre-attention|", "cividis"),
            (l.get("post_map"), f"{stats.names[i]} |post-attention|", "cividis"),
        ]
        vmax = max(np.nanmax(panels[0][0]), np.nanmax(panels[1][0]), 1e-12)
        for row, (img, title, cmap) in enumerate(panels):
            ax = axes[row, col]
            if img is None:
                ax.text(0.5, 0.5, f"{title}: n/a", ha="center", va="center", transform=ax.transAxes, fontsize=7)
                ax.axis("off")
                continue
            kw = {"vmin": 0, "vmax": vmax} if row < 2 else {}
            im = ax.imshow(_as_image(img), cmap=cmap, interpolation="nearest", **kw)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("attention on vs bypassed (same weights and inputs)")
    fig.tight_layout()
    return _save(fig, path)


def plot_gradient_norms(grads: dict[str, Any], path: str) -> str:
    """Gradient norms across depth (log scale): w.r.t. each block's parameters, kernel and output activation
    (and the input), and the block ratios ‖∂L/∂x_in‖/‖∂L/∂x_out‖ and ‖∂L/∂θ_l‖/‖∂L/∂θ_{l+1}‖ (1 = equality)."""
    layers = grads["layers"]
    names = [l["name"] for l in layers]
    rotate = 45 if len(names) > 8 else 0
    x = np.arange(len(names))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))

    def vals(key):
        return np.array([np.nan if l[key] is None else max(l[key], 1e-30) for l in layers], np.float64)

    a.semilogy(x, vals("param"), "o-", label="‖∂L/∂θ‖ block")
    a.semilogy(x, vals("weight"), "s--", label="‖∂L/∂W‖ kernel")
    if any(l["attention_param"] is not None for l in layers):
        a.semilogy(x, vals("attention_param"), "^:", label="‖∂L/∂θ‖ attention")
    if any(l["output"] is not None for l in layers):
        a.semilogy(x, vals("output"), "d-", label="‖∂L/∂x_out‖")
    a.semilogy([-0.5], [max(grads["input_grad_norm"], 1e-30)], "kx", label="‖∂L/∂input‖")
    a.set_xticks(x, names, rotation=rotate, fontsize=7)
    n = grads["batches"]
    bn = "train" if grads["train_mode"] else "eval"
    a.set_title(f"gradient norms ({n} batch{'es' if n != 1 else ''}, {bn}-mode BN)")
    a.legend(fontsize=7)
    if any(l["block_ratio"] is not None for l in layers):
        b.plot(x, vals("block_ratio"), "o-", label="‖∂L/∂x_in‖ / ‖∂L/∂x_out‖")
    b.plot(x, vals("param_ratio_next"), "s--", label="‖∂L/∂θ_l‖ / ‖∂L/∂θ_l+1‖")
    b.axhline(1.0, c="gray", ls=":")
    b.set_yscale("log")
    b.set_xticks(x, names, rotation=rotate, fontsize=7)
    b.set_title("ratios across depth (1 = gradient norm equality)")
    b.legend(fontsize=7)
    return _save(fig, path)


def plot_energy(layers: Sequence[dict[str, Any]], path: str, *, energy_model: str = "") -> str:
    """Energy per layer (pJ, log scale): SNN first-layer MACs, synaptic ACs and attention, beside the ANN
    counterpart."""
    names = [l["name"] for l in layers]
    x = np.arange(len(names))
    mac = np.array([l["energy_pj"] - l["attention_energy_pj"] if l["op_kind"] == "MAC" else 0.0 for l in layers])
    ac = np.array([l["energy_pj"] - l["attention_energy_pj"] if l["op_kind"] == "AC" else 0.0 for l in layers])
    mac_label = "SNN MAC (real-valued input)"
    att = np.array([l["attention_energy_pj"] for l in layers])
    ann = np.array([l["ann_energy_pj"] for l in layers])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(x - 0.2, mac, 0.4, label=mac_label)
    ax.bar(x - 0.2, ac, 0.4, bottom=mac, label="SNN AC (spikes)")
    ax.bar(x - 0.2, att, 0.4, bottom=mac + ac, label="attention")
    ax.bar(x + 0.2, ann, 0.4, label="ANN (T=1)", color="gray")
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=45 if len(names) > 8 else 0, fontsize=7)
    ax.set_ylabel("energy per sample (pJ)")
    ax.set_title(f"energy per layer {energy_model}".strip())
    ax.legend(fontsize=7)
    return _save(fig, path)
