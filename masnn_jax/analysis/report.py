"""The whole analysis of one network: :func:`analyze` (behind ``python -m masnn_jax.analyze``) and its text summary.

Works for every registered model family (:class:`~masnn_jax.models.registry.SpikingModel`): activity from the
model's own recorded forward pass, energy from its ``operation_counts()`` (skipped, with a note, without it).

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
from masnn_jax.analysis import activity as activity_lib
from masnn_jax.analysis import capture as capture_lib
from masnn_jax.analysis import energy as energy_lib
from masnn_jax.analysis import gradients as gradients_lib
from masnn_jax.analysis import probe as probe_lib
from masnn_jax.nn.attention import MultiDimensionalAttention
from masnn_jax.nn.layers import SpikingNeuron
from masnn_jax.train import load_model, task_from_config
from masnn_jax.train.checkpoint import checkpoint_manager

__all__ = ["load_for_analysis", "analyze", "summary", "REPORT_NAME"]

REPORT_NAME = "report.json"


def load_for_analysis(
    config: ml_collections.ConfigDict, workdir: str, *, init: str = "checkpoint", step: int | None = None
) -> tuple[nnx.Module, dict[str, Any] | None]:
    """The model to analyse, in eval mode, and the checkpoint metadata (None for a random initialisation).

    Args:
      init: 'checkpoint' (latest, or ``step``, of ``<workdir>/checkpoints`` via
        :func:`masnn_jax.train.load_model`) or 'random' (``models.build`` with ``config.seed``).
    Raises:
      FileNotFoundError: no checkpoint (the message names the path and the ``--init=random`` alternative); no
        checkpoint for ``step`` in a folder that holds others (the message, as ``train.py --mode=eval --step``
        words it, lists the available steps).
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
        return load_model(config, workdir, step=step)
    except FileNotFoundError as e:
        if step is not None and _checkpoint_steps(workdir):
            raise  # restore_state's "no checkpoint for step S in <dir>; available steps: [...]"
        raise FileNotFoundError(
            f"no checkpoint to analyse in {ckpt_dir} ({'empty' if os.path.isdir(ckpt_dir) else 'missing'}). "
            f"Train first (python train.py --config=... --workdir={workdir}) or pass --init=random to analyse a "
            f"randomly initialised network."
        ) from e


def _checkpoint_steps(workdir: str) -> list[int]:
    """The checkpoint steps in ``<workdir>/checkpoints`` ([] when there is no such folder)."""
    if not os.path.isdir(os.path.join(os.path.abspath(workdir), "checkpoints")):
        return []
    manager = checkpoint_manager(workdir, 3, create=False)
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def _make_out_dir(out_dir: str) -> None:
    """``os.makedirs(out_dir, exist_ok=True)``; ValueError naming ``out_dir`` (a file in the way, no permission)."""
    from masnn_jax.train.workdir import check_workdir

    check_workdir(out_dir, f"output folder {out_dir}")  # a file in the way, no write permission
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:  # e.g. a read-only file system
        raise ValueError(f"output folder {out_dir}: cannot be created ({e.strerror or e})") from None


def _param_count(module, lead: int = 0) -> int:
    """Parameters of ``module``; ``lead`` leading (block) axes are not counted (one block of a stack)."""
    if module is None:
        return 0
    return int(sum(np.prod(v.shape[lead:]) for v in jax.tree_util.tree_leaves(nnx.state(module, nnx.Param))))


def _layer_params(model: nnx.Module, path_name: str | None) -> tuple[int | None, int | None]:
    """``(params, attention params)`` of the recorded layer ``path_name`` (``'convs.0'``, ``'stage3.blocks[1]'``)."""
    if path_name is None:
        return None, None
    base, _, rest = path_name.partition("[")
    lead = rest.count("[") + 1 if rest else 0
    path = tuple(int(p) if p.isdigit() else p for p in base.split("."))
    try:
        module = capture_lib.module_at(model, path)
    except KeyError:
        return None, None
    att = sum(_param_count(m, lead) for _, m in capture_lib.modules_under(model, path, MultiDimensionalAttention))
    return _param_count(module, lead), int(att)


def _first_batch_inputs(model, loader, n: int) -> np.ndarray:
    key, ndim = capture_lib.input_key(model), capture_lib.sample_ndim(model)
    for x, _ in activity_lib.iterate_inputs(_first_windows(loader, key, ndim), 1, key=key, sample_ndim=ndim):
        return x[:n]
    raise ValueError("empty dataset")


def _first_windows(loader, key: str = "frames", sample_ndim: int = 4):
    for batch in loader:
        x = np.asarray(batch[key])
        yield {**batch, key: x[:, 0] if x.ndim == sample_ndim + 2 else x}


def _activity_rows(stats: activity_lib.ActivityStats) -> list[dict[str, Any]]:
    """Report rows of a model without ``operation_counts()``: activity only, the energy fields None."""
    rows = []
    for i, name in enumerate(stats.names):
        rows.append({
            "name": name, "kind": None, "layer": name, "source": None, "neurons": int(stats.neurons[i]),
            "firing_rate": float(stats.firing_rate[i]),
            "firing_rate_t": [float(v) for v in stats.firing_rate_t[i]],
            "spikes_per_sample": float(stats.spikes_per_sample[i]),
            "spikes_per_sample_std": float(stats.sample_spikes[:, i].std()),
            "macs": None, "sops": None, "op_kind": None, "mac_ops": None, "ac_ops": None, "attention_macs": None,
            "attention_mults": None, "energy_pj": None, "ann_energy_pj": None, "attention_energy_pj": None,
        })
    return rows


def _activity_totals(stats: activity_lib.ActivityStats) -> dict[str, Any]:
    return {
        "macs": None, "sops": None, "energy_pj": None, "ann_energy_pj": None, "energy_ratio": None,
        "attention_energy_pj": None, "network_firing_rate": float(stats.network_firing_rate),
        "spikes_per_sample": float(stats.spikes_per_sample.sum()),
        "spikes_per_sample_std": float(stats.sample_spikes.sum(1).std()), "input_rate": float(stats.input_rate),
        "T": int(stats.T),
    }


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
      out_dir: where to write (default ``<workdir>/analysis``; created if missing).
      probe_samples, raster_neurons: samples probed for rasters / traces / attention weights, neurons per raster
        (both >= 1).
      model: analyse this model instead of loading one (it is left in eval mode).
    Returns:
      the report (also written to ``<out_dir>/report.json``): ``layers`` (per layer: ``name, neurons,
      firing_rate, macs, sops, energy_pj`` and more, see :func:`masnn_jax.analysis.energy.energy_report`),
      ``totals`` (``macs, sops, energy_pj, ann_energy_pj, energy_ratio, network_firing_rate`` and more),
      ``paper_count`` (None without ``operation_counts()``; else ``layers`` and ``totals`` charged the paper's way,
      ``energy_report(convention='paper')``, and ``differs``: whether any op is counted differently),
      ``bypass_attention``, ``gradients``, ``figures``, ``energy_model``, ``dataset``, ``source``.
    Raises:
      FileNotFoundError: no checkpoint (or none for ``step``) with ``init='checkpoint'``. ValueError: bad config or
        arguments (``probe_samples`` or ``raster_neurons`` < 1, checked before loading anything), an ``out_dir``
        that cannot be created or written.
    """
    for name, value in (("probe_samples", probe_samples), ("raster_neurons", raster_neurons)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    meta = None
    if model is None:
        model, meta = load_for_analysis(config, workdir, init=init, step=step)
    else:
        init = "given"
    if batch_stats is None:
        batch_stats = init == "random"
    out_dir = out_dir or os.path.join(os.path.abspath(workdir), "analysis")
    _make_out_dir(out_dir)

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
    input_kind = getattr(model, "input_kind", "frames")
    ops = energy_lib.count_operations(model) if callable(getattr(model, "operation_counts", None)) else None
    if ops is None:
        notes.append(f"{type(model).__name__} has no operation_counts(): no operation or energy counts")
        layers, totals = _activity_rows(stats), _activity_totals(stats)
    else:
        layers, totals = energy_lib.energy_report(ops, stats, em, input_kind=input_kind)
    paper_count = None
    if ops is not None:  # the paper's way (differs where the model's ops give a paper_input, e.g. Spikformer)
        p_layers, p_totals = energy_lib.energy_report(ops, stats, em, input_kind=input_kind, convention="paper")
        paper_count = {
            "description": "the paper's count: each op charged by what the paper says feeds it (OpCount.paper_input, "
                           "e.g. Spikformer's SEW residual stream as spikes at the rate of the neuron that last "
                           "wrote it); 'layers' and 'totals' above are the honest count (integer or real inputs "
                           "charged as MACs)",
            "differs": any(op.paper_source is not None or op.paper_time_steps is not None for op in ops),
            "layers": p_layers,
            "totals": p_totals,
        }
    totals["accuracy"] = stats.accuracy
    path_of = dict(zip(stats.names, stats.paths or []))
    for layer in layers:
        layer["params"], layer["attention_params"] = _layer_params(model, path_of.get(layer.get("layer")))

    if any(m.lif_params().output != "spike" for _, m in nnx.iter_graph(model) if isinstance(m, SpikingNeuron)):
        notes.append("LIAF neurons (analogue outputs): 'spikes' are output sums and SOPs assume binary events; "
                     "the paper's counting does not apply as such")
    bypass_stats = None
    bypass_report = None
    if bypass and capture_lib.has_attention(model):
        bypass_stats = activity_lib.collect_activity(model, loader, num_batches=num_batches, attention=False)
        if ops is None:
            b_layers, b_totals, no_att = _activity_rows(bypass_stats), _activity_totals(bypass_stats), None
        else:
            b_layers, b_totals = energy_lib.energy_report(ops, bypass_stats, em, input_kind=input_kind)
            no_att = float(sum(l["energy_pj"] - l["attention_energy_pj"] for l in b_layers))
        bypass_report = {
            "description": "same weights and inputs, every attention module bypassed (pre-activation straight to "
                           "the neuron, no official ReLU); energy without the attention modules' own cost",
            "network_firing_rate": b_totals["network_firing_rate"],
            "spikes_per_sample": b_totals["spikes_per_sample"],
            "firing_rate": {name: float(r) for name, r in zip(bypass_stats.names, bypass_stats.firing_rate)},
            "sops": b_totals["sops"],
            "energy_pj": no_att,
            "accuracy": bypass_stats.accuracy,
        }

    grads = None
    if grad_batches > 0:
        task = task_from_config(config.train, input_kind, int(model.num_classes))
        grads = gradients_lib.gradient_norms(model, loader, loss=task, num_batches=grad_batches)

    figs: list[str] = []
    if figures:
        from masnn_jax.analysis import plots

        probed = probe_lib.probe_responses(model, _first_batch_inputs(model, loader, probe_samples),
                                           k=raster_neurons)

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
        if ops is not None:
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
            "macs": "dense MACs: per sample, one dense evaluation (T = 1, every input counted, the ANN count); "
                    "conv k*k*h_out*w_out*c_in*c_out at the conv's output size (before pooling), fc in*out",
            "sops": "ops run: T * macs * firing rate of the op's input (the model's operation_counts(): a recorded "
                    "layer's spikes, or the input's non-zero fraction); ops on the input or real values charged as "
                    "MAC (summary column 'ops run')",
            "mac_ops": "the part of sops on non-binary inputs (the model input, real or integer values), charged as "
                       "MACs at E_MAC (summary: 'MACs on non-binary inputs')",
            "ac_ops": "the part of sops on spikes, charged as accumulates at E_AC (summary: 'ACs on spikes')",
            "energy_pj": "E_MAC*(ops on the input or real values + attention MACs + attention gate multiplies) + "
                         "E_AC*(synaptic ACs + attention pooling adds)",
            "ann_energy_pj": "E_MAC * sum(macs): the same backbone as an ANN, T = 1, no attention modules",
            "energy_ratio": "ann_energy_pj / energy_pj",
            "paper_count": "the same rows and totals charging each op by what the paper's count says feeds it "
                           "(Spikformer: maps on the integer SEW residual stream as SOPs at the rate of the "
                           "stream's last writer, the head as T SOP steps); 'layers'/'totals' are the honest count",
            "network_firing_rate": "sum of spikes / sum of T*neurons over all spiking layers",
        },
        "input": {"firing_rate": stats.input_rate, "firing_rate_t": [float(v) for v in stats.input_rate_t],
                  "elements": stats.input_elements},
        "layers": layers,
        "totals": totals,
        "paper_count": paper_count,
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
        "attention": m.get("attention") if m.get("attention") is not None else (
            None if m.get("sps_attention") is None else  # Spikformer: MA-SNN attention on SPS / block outputs
            f"sps {m.get('sps_attention')}, block {m.get('block_attention')}"),
        "placement": m.get("placement") if m.get("placement") is not None else m.get("attention_placement"),
        "T": int(model.T),
        "input_shape": tuple(int(v) for v in model.input_shape),
        "num_classes": int(model.num_classes),
        "params": _param_count(model),
    }


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3e}" if abs(v) >= 1e5 else f"{v:,.1f}"


def _num(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def summary(report: dict[str, Any], out_dir: str | None = None) -> str:
    """A short text summary of a report (one line per layer, totals, the bypass comparison, gradient ratios); with
    ``out_dir``, a last line naming the report and the figures written there ("(no figures)" when there are none)."""
    src, em, t = report["source"], report["energy_model"], report["totals"]
    step = f", step {src['checkpoint_step']}" if src["checkpoint_step"] is not None else ""
    wn = max([7] + [len(str(l["name"])) + 1 for l in report["layers"]])  # name column (long block names)
    lines = [
        f"MA-SNN analysis ({src['init']}{step}; attention {src['model']['attention']}, T={t['T']}, BN "
        f"{src['batch_norm']}) on {report['dataset']['name']} test: {report['dataset']['samples']} samples; "
        f"energy {em['name']} (E_MAC {em['e_mac_pj']} pJ, E_AC {em['e_ac_pj']} pJ)",
        f"{'layer':<{wn}}{'neurons':>9}{'rate':>9}{'spikes/smp':>12}{'dense MACs':>12}{'ops run':>12}"
        f"{'att. MACs':>11}{'energy pJ':>12}",
    ]
    for l in report["layers"]:
        lines.append(
            f"{l['name']:<{wn}}{_num(l['neurons'], ','):>9}{_num(l['firing_rate'], '.4f'):>9}"
            f"{_num(l['spikes_per_sample'], '.1f'):>12}"
            f"{_fmt(l['macs']):>12}{_fmt(l['sops']) + ('*' if l['op_kind'] == 'MAC' else ''):>12}"
            f"{_fmt(None if l['attention_macs'] is None else l['attention_macs'] + l['attention_mults']):>11}"
            f"{_fmt(l['energy_pj']):>12}"
        )
    ratio = "n/a" if t["energy_ratio"] is None else f"{t['energy_ratio']:.2f}x"
    acc = "" if t.get("accuracy") is None else f" | accuracy {100 * t['accuracy']:.2f}%"
    lines += [
        "(dense MACs: one evaluation of the layer as an ANN, T = 1, every input counted: the ANN energy's count. "
        "ops run: T (or the op's own step count) * dense MACs * the input's non-zero rate: accumulates (SOPs) on "
        "spike inputs, or, marked *, MACs on non-binary inputs: the model input, real or integer values)",
        f"input non-zero rate {report['input']['firing_rate']:.4f} | network firing rate "
        f"{t['network_firing_rate']:.4f} | spikes/sample {t['spikes_per_sample']:.1f}{acc}",
        f"dense MACs {_fmt(t['macs'])} | ops run {_fmt(t['sops'])} = MACs on non-binary inputs {_fmt(t['mac_ops'])} "
        f"+ ACs on spikes {_fmt(t['ac_ops'])} | SNN energy {_fmt(t['energy_pj'])} pJ (attention "
        f"{_fmt(t['attention_energy_pj'])}) | ANN energy {_fmt(t['ann_energy_pj'])} pJ | ANN/SNN {ratio}",
    ]
    pc = report.get("paper_count")
    if pc and pc.get("differs"):
        pt = pc["totals"]
        lines.append(f"paper's count (integer residual stream taken as spikes): MACs on non-binary inputs "
                     f"{_fmt(pt['mac_ops'])} | ACs on spikes {_fmt(pt['ac_ops'])} | energy {_fmt(pt['energy_pj'])} pJ; "
                     f"honest count (above): MACs on non-binary inputs {_fmt(t['mac_ops'])} | ACs on spikes "
                     f"{_fmt(t['ac_ops'])} | energy {_fmt(t['energy_pj'])} pJ")
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
        figs = report.get("figures") or []
        listed = (f" and {len(figs)} figure{'s' if len(figs) > 1 else ''}: {', '.join(figs)}" if figs
                  else " (no figures)")
        lines.append(f"wrote {os.path.join(out_dir, REPORT_NAME)}{listed}")
    return "\n".join(lines)
