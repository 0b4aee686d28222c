"""Research analysis of spiking models (every registered family): spiking activity, operations and energy,
spike-response figures, gradient norms — all read from the model's own recorded forward pass.

* :mod:`~masnn_jax.analysis.capture` — the forward pass under ``nnx.capture`` with every spiking layer recording
  (:func:`recorded_layers`, :func:`set_attention_bypass`, activation probes).
* :mod:`~masnn_jax.analysis.activity` — :func:`collect_activity` (one jitted pass per batch) -> :class:`ActivityStats`
  (per-layer firing rates, per time step, per neuron, per sample; network rate; input non-zero rate);
  :func:`run_layers` (one recorded forward pass: output and every layer's spikes, attention optionally bypassed).
* :mod:`~masnn_jax.analysis.energy` — :func:`count_operations` (from the model's ``operation_counts()``, attention
  operations) and :func:`energy_report` (SOPs, energy, ANN counterpart and ratio) with :data:`ENERGY_MODELS` presets.
* :mod:`~masnn_jax.analysis.gradients` — :func:`gradient_norms` per block (parameters and activations).
* :mod:`~masnn_jax.analysis.probe` — :func:`probe_responses`: rasters, membrane traces, attention weights of a few samples.
* :mod:`~masnn_jax.analysis.plots` — the PNG figures (matplotlib, Agg).
* :mod:`~masnn_jax.analysis.report` — :func:`analyze` (everything, writes ``report.json``) and :func:`summary`;
  command line: ``python -m masnn_jax.analyze``.
"""

from masnn_jax.analysis.activity import (
    ActivityStats, collect_activity, iterate_frames, iterate_inputs, layer_names, run_layers,
)
from masnn_jax.analysis.capture import RecordedLayer, recorded_layers, set_attention_bypass
from masnn_jax.analysis.energy import ENERGY_MODELS, EnergyModel, LayerOps, count_operations, energy_report, get_energy_model
from masnn_jax.analysis.gradients import gradient_norms
from masnn_jax.analysis.probe import probe_responses
from masnn_jax.analysis.report import REPORT_NAME, analyze, load_for_analysis, summary

__all__ = [
    "ActivityStats", "collect_activity", "iterate_frames", "iterate_inputs", "layer_names", "run_layers",
    "RecordedLayer", "recorded_layers", "set_attention_bypass",
    "ENERGY_MODELS", "EnergyModel", "LayerOps", "count_operations", "energy_report", "get_energy_model",
    "gradient_norms", "probe_responses", "REPORT_NAME", "analyze", "load_for_analysis", "summary",
]
