"""The whole analysis of one network: :func:`analyze` (behind ``python -m masnn_jax.analyze``) and its text summary.

Steps: load the model (latest checkpoint of ``<workdir>/checkpoints`` or a random initialisation); run the test
split once for the spiking activity (:func:`~masnn_jax.analysis.activity.collect_activity`), once more with every
attention module bypassed (same weights), count operations and energy
(:mod:`~masnn_jax.analysis.energy`), measure per-block gradient norms on a few batches
(:mod:`~masnn_jax.analysis.gradients`), probe a few samples for rasters, membrane traces and attention weights
(:mod:`~masnn_jax.analysis.probe`), and write ``report.json`` plus PNG figures to ``<workdir>/analysis``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from masnn_jax import data as data_lib
from masnn_jax import models
from masnn_jax import train as training
from masnn_jax.analysis import activity as activity_lib
from masnn_jax.analysis import energy as energy_lib
from masnn_jax.analysis import gradients as gradients_lib
from masnn_jax.analysis import probe as probe_lib

__all__ = ["load_for_analysis", "analyze", "summary", "REPORT_NAME"]

REPORT_NAME = "report.json"


def load_for_analysis(
    config: ml_collections.ConfigDict, workdir: str, *, init: str = "checkpoint", step: int | None = None
) -> tuple[nnx.Module, dict[str, Any] | None]:
    """The model to analyse, in eval mode, and the checkpoint metadata (None for a random initialisation).

    Args:
      init: 'checkpoint' (latest, or ``step``, of ``<workdir>/checkpoints`` via
        :func:`masnn_jax.training.load_model`) or 'random' (``models.build`` with ``config.seed``).
    Raises:
      FileNotFoundError: no checkpoint (the message names the path and the ``--init=random`` alternative).
      ValueError: unknown ``init``; a checkpoint that does not fit the model of ``config``.
    """
    if init == "random":
        model = models.build(config.model, rngs=nnx.Rngs(int(config.seed)))
        model.eval()
        return model, None
    if init != "checkpoint":
        raise ValueError(f"init must be 'checkpoint' or 'random', got {init!r}")
    ckpt_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    try:
        return training.load_model(config, workdir, step=step)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"no checkpoint to analyse in {ckpt_dir} ({'empty' if os.path.isdir(ckpt_dir) else 'missing'}). "
            f"Train first (python train.py --config=... --workdir={workdir}) or pass --init=random to analyse a "
            f"randomly initialised network."
        ) from e


def _has_attention(model: nnx.Module) -> bool:
    return any(not layer.attention.is_identity for layer in model.spiking_layers)


def _param_count(module) -> int:
    if module is None:
        return 0
    return int(sum(np.prod(v.shape) for v in jax.tree_util.tree_leaves(nnx.state(module, nnx.Param))))


def _first_batch_frames(loader, n: int) -> np.ndarray:
    for frames, _ in activity_lib.iterate_frames(_first_windows(loader), 1):
        return frames[:n]
    raise ValueError("empty dataset")


def _first_windows(loader):
    for batch in loader:
        frames = np.asarray(batch["frames"])
        yield {**batch, "frames": frames[:, 0] if frames.ndim == 6 else frames}


def analyze(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    init: str = "checkpoint",
    step: int | None = None,
    num_batches: int | None = None,
    grad_batches: int = 2,
    energy: str = "45nm_fp32",
    batch_stats: bool | None = None,
    bypass: bool = True,
    figures: bool = True,
    out_dir: str | None = None,
    probe_samples: int = 8,
    raster_neurons: int = 16,
    model: nnx.Module | None = None,
) -> dict[str, Any]:
    """Analyses one network on the test split of ``config.data`` and writes ``report.json`` and figures.

    Args:
      config: the run's config (``model``, ``data``, ``train.eval_batch_size``, ``train.loss``, ``seed``).
      workdir: run directory (checkpoints are read from ``<workdir>/checkpoints``).
      init: 'checkpoint' or 'random' (see :func:`load_for_analysis`); ignored when ``model`` is given.
      step: checkpoint step (default: latest).
      num_batches: test batches for the activity passes (None or <= 0: the whole test split).
      grad_batches: batches for the gradient norms (window 0 of each test item); 0 skips them
        (``gradients`` None).
      energy: :data:`~masnn_jax.analysis.energy.ENERGY_MODELS` preset.
      batch_stats: BatchNorm with batch statistics in the activity passes; None = True for a random
        initialisation (whose running statistics are the identity, which leaves most neurons silent) and False
        for a checkpoint (running averages, as ``train.py`` evaluates).
      bypass: also run the network with every attention module bypassed (when it has any).
      figures: write the PNG figures.
      out_dir: where to write (default ``<workdir>/analysis``).
      probe_samples, raster_neurons: samples probed for rasters / traces / attention weights, neurons per raster.
      model: analyse this model instead of loading one (it is left in eval mode).
    Returns:
      the report (also written to ``<out_dir>/report.json``): ``layers`` (per layer: ``name, neurons,
      firing_rate, macs, sops, energy_pj`` and more, see :func:`masnn_jax.analysis.energy.energy_report`),
      ``totals`` (``macs, sops, energy_pj, ann_energy_pj, energy_ratio, network_firing_rate`` and more),
      ``bypass_attention``, ``gradients``, ``figures``, ``energy_model``, ``dataset``, ``source``.
    Raises:
      FileNotFoundError: no checkpoint with ``init='checkpoint'``. ValueError: bad config or arguments.
    """
    meta = None
    if model is None:
        model, meta = load_for_analysis(config, workdir, init=init, step=step)
    else:
        init = "given"
    if batch_stats is None:
        batch_stats = init == "random"
    out_dir = out_dir or os.path.join(os.path.abspath(workdir), "analysis")
    os.makedirs(out_dir, exist_ok=True)

    dataset = data_lib.build(config.data, "test")
    notes = []
    if dataset.num_classes > model.num_classes:
        raise ValueError(
            f"config.model.num_classes={model.num_classes} but dataset {config.data.name!r} has "
            f"{dataset.num_classes} classes"
        )
    if dataset.num_classes < model.num_classes:  # e.g. the Gesture net (11 outputs) on the 10 digits
        notes.append(f"the model has {model.num_classes} outputs, dataset {config.data.name!r} "
                     f"{dataset.num_classes} classes (the extra outputs are never a label)")
    bs = int(config.train.eval_batch_size)
    loader = data_lib.make_loader(
        dataset, batch_size=bs, shuffle=False, seed=0, epoch=0,
        drop_remainder=bool(batch_stats) and len(dataset) >= bs,  # no zero padding inside batch statistics
    )
    if batch_stats:
        model.train()
    else:
        model.eval()
    em = energy_lib.get_energy_model(energy)

    stats = activity_lib.collect_activity(model, loader, num_batches=num_batches)
    ops = energy_lib.count_operations(model)
    layers, totals = energy_lib.energy_report(ops, stats, em)
    totals["accuracy"] = stats.accuracy
    for layer, module in zip(layers, model.spiking_layers):
        layer["params"] = _param_count(module)
        layer["attention_params"] = _param_count(module.attention)

    if any(layer.neuron.lif_params().output != "spike" for layer in model.spiking_layers):
        notes.append("LIAF neurons (analogue outputs): 'spikes' are output sums and SOPs assume binary events; "
                     "the paper's counting does not apply as such")
    bypass_stats = None
    bypass_report = None
    if bypass and _has_attention(model):
        bypass_stats = activity_lib.collect_activity(model, loader, num_batches=num_batches, attention=False)
        b_layers, b_totals = energy_lib.energy_report(ops, bypass_stats, em)
        no_att = sum(l["energy_pj"] - l["attention_energy_pj"] for l in b_layers)
        bypass_report = {
            "description": "same weights and inputs, every attention module bypassed (pre-activation straight to "
                           "the neuron, no official ReLU); energy without the attention modules' own cost",
            "network_firing_rate": b_totals["network_firing_rate"],
            "spikes_per_sample": b_totals["spikes_per_sample"],
            "firing_rate": {l["name"]: l["firing_rate"] for l in b_layers},
            "sops": b_totals["sops"],
            "energy_pj": float(no_att),
            "accuracy": bypass_stats.accuracy,
        }

    grads = None
    if grad_batches > 0:
        grads = gradients_lib.gradient_norms(model, loader, loss=str(config.train.get("loss", "mse")),
                                             num_batches=grad_batches)

    figs: list[str] = []
    if figures:
        from masnn_jax.analysis import plots

        probed = probe_lib.probe_responses(model, _first_batch_frames(loader, probe_samples), k=raster_neurons)

        figs.append(plots.plot_activity(stats, os.path.join(out_dir, "activity.png"), bypass=bypass_stats))
        figs.append(plots.plot_firing_maps(stats, os.path.join(out_dir, "firing_maps.png")))
        att_fig = plots.plot_attention_weights(probed, os.path.join(out_dir, "attention_weights.png"))
        if att_fig:
            figs.append(att_fig)
        figs.append(plots.plot_raster(probed, os.path.join(out_dir, "spike_raster.png")))
        figs.append(plots.plot_membrane(probed, os.path.join(out_dir, "membrane.png")))
        if bypass_stats is not None:
            figs.append(plots.plot_attention_effect(stats, bypass_stats, probed,
                                                    os.path.join(out_dir, "attention_effect.png")))
        if grads is not None:
            figs.append(plots.plot_gradient_norms(grads, os.path.join(out_dir, "gradient_norms.png")))
        figs.append(plots.plot_energy(layers, os.path.join(out_dir, "energy.png"), energy_model=em.name))
    model.eval()

    report = {
        "source": {
            "workdir": os.path.abspath(workdir),
            "init": init,
            "checkpoint_step": None if meta is None else int(meta.get("step", 0)),
            "checkpoint_epoch": None if meta is None else int(meta.get("epoch", 0)),
            "batch_norm": "batch statistics" if batch_stats else "running averages",
            "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in _model_summary(config, model).items()},
        },
        "dataset": {
            "name": str(config.data.name),
            "split": "test",
            "samples": stats.samples,
            "batches": stats.batches,
            "note": "one sample = one inference window of T steps",
        },
        "energy_model": em.as_dict(),
        "conventions": {
            "macs": "per sample, one dense evaluation; conv k*k*h_out*w_out*c_in*c_out at the conv's output size "
                    "(before pooling), fc in*out",
            "sops": "T * macs * firing rate of the layer input; first layer (real-valued input) charged as MAC",
            "energy_pj": "E_MAC*(first-layer ops + attention MACs + attention gate multiplies) + E_AC*(synaptic "
                         "ACs + attention pooling adds)",
            "ann_energy_pj": "E_MAC * sum(macs): the same backbone as an ANN, T = 1, no attention modules",
            "energy_ratio": "ann_energy_pj / energy_pj",
            "network_firing_rate": "sum of spikes / sum of T*neurons over all spiking layers",
        },
        "input": {"firing_rate": stats.input_rate, "firing_rate_t": [float(v) for v in stats.input_rate_t],
                  "elements": stats.input_elements},
        "layers": layers,
        "totals": totals,
        "bypass_attention": bypass_report,
        "gradients": grads,
        "figures": [os.path.basename(f) for f in figs],
        "notes": notes,
    }
    with open(os.path.join(out_dir, REPORT_NAME), "w") as f:
        json.dump(report, f, indent=1, allow_nan=False)
    return report


def _model_summary(config, model) -> dict[str, Any]:
    m = config.model
    return {
        "arch": m.get("arch"),
        "attention": m.get("attention"),
        "placement": m.get("placement"),
        "T": int(model.T),
        "input_shape": tuple(int(v) for v in model.input_shape),
        "num_classes": int(model.num_classes),
        "params": _param_count(model),
    }


def _fmt(v: float) -> str:
    return f"{v:.3e}" if abs(v) >= 1e5 else f"{v:,.1f}"


def summary(report: dict[str, Any], out_dir: str | None = None) -> str:
    """A short text summary of a report (one line per layer, totals, the bypass comparison, gradient ratios)."""
    src, em, t = report["source"], report["energy_model"], report["totals"]
    step = f", step {src['checkpoint_step']}" if src["checkpoint_step"] is not None else ""
    lines = [
        f"MA-SNN analysis ({src['init']}{step}; attention {src['model']['attention']}, T={t['T']}, BN "
        f"{src['batch_norm']}) on {report['dataset']['name']} test: {report['dataset']['samples']} samples; "
        f"energy {em['name']} (E_MAC {em['e_mac_pj']} pJ, E_AC {em['e_ac_pj']} pJ)",
        f"{'layer':<7}{'neurons':>9}{'rate':>9}{'spikes/smp':>12}{'MACs':>12}{'SOPs':>12}{'att. MACs':>11}"
        f"{'energy pJ':>12}",
    ]
    for l in report["layers"]:
        lines.append(
            f"{l['name']:<7}{l['neurons']:>9,}{l['firing_rate']:>9.4f}{l['spikes_per_sample']:>12.1f}"
            f"{_fmt(l['macs']):>12}{_fmt(l['sops']) + ('*' if l['op_kind'] == 'MAC' else ''):>12}"
            f"{_fmt(l['attention_macs'] + l['attention_mults']):>11}{_fmt(l['energy_pj']):>12}"
        )
    ratio = "n/a" if t["energy_ratio"] is None else f"{t['energy_ratio']:.2f}x"
    acc = "" if t.get("accuracy") is None else f" | accuracy {100 * t['accuracy']:.2f}%"
    lines += [
        "(* first layer: real-valued input, charged as MACs)",
        f"input non-zero rate {report['input']['firing_rate']:.4f} | network firing rate "
        f"{t['network_firing_rate']:.4f} | spikes/sample {t['spikes_per_sample']:.1f}{acc}",
        f"MACs {_fmt(t['macs'])} | SOPs {_fmt(t['sops'])} | SNN energy {_fmt(t['energy_pj'])} pJ (attention "
        f"{_fmt(t['attention_energy_pj'])}) | ANN energy {_fmt(t['ann_energy_pj'])} pJ | ANN/SNN {ratio}",
    ]
    b = report.get("bypass_attention")
    if b:
        bacc = "" if b["accuracy"] is None else f", accuracy {100 * b['accuracy']:.2f}%"
        lines.append(f"attention bypassed (same weights): network firing rate {b['network_firing_rate']:.4f}, "
                     f"spikes/sample {b['spikes_per_sample']:.1f}, energy {_fmt(b['energy_pj'])} pJ{bacc}")
    g = report["gradients"]
    if g:
        ratios = ", ".join(f"{l['name']} {l['block_ratio']:.3g}" if l["block_ratio"] is not None
                           else f"{l['name']} -" for l in g["layers"])
        lines.append(f"gradient block ratios |dL/dx_in|/|dL/dx_out| ({g['batches']} batches): {ratios}")
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    if out_dir:
        lines.append(f"wrote {os.path.join(out_dir, REPORT_NAME)} and {len(report['figures'])} figures: "
                     f"{', '.join(report['figures'])}")
    return "\n".join(lines)
