"""Research analysis of MA-SNNs: spiking activity, operations and energy, spike-response figures, gradient norms.

* :mod:`~masnn_jax.analysis.activity` — :func:`collect_activity` (one jitted pass per batch) -> :class:`ActivityStats`
  (per-layer firing rates, per time step, per neuron, per sample; network rate; input non-zero rate);
  :func:`run_layers` (the network layer by layer, optionally with attention bypassed or activations perturbed).
* :mod:`~masnn_jax.analysis.energy` — :func:`count_operations` (MACs per layer, attention operations) and
  :func:`energy_report` (SOPs, energy, ANN counterpart and ratio) with :data:`ENERGY_MODELS` presets.
* :mod:`~masnn_jax.analysis.gradients` — :func:`gradient_norms` per block (parameters and activations).
* :mod:`~masnn_jax.analysis.probe` — :func:`probe_responses`: rasters, membrane traces, attention weights of a few samples.
* :mod:`~masnn_jax.analysis.plots` — the PNG figures (matplotlib, Agg).
* :mod:`~masnn_jax.analysis.report` — :func:`analyze` (everything, writes ``report.json``) and :func:`summary`;
  command line: ``python -m masnn_jax.analyze``.
"""

from masnn_jax.analysis.activity import ActivityStats, collect_activity, iterate_frames, layer_forward, layer_names, run_layers
from masnn_jax.analysis.energy import ENERGY_MODELS, EnergyModel, LayerOps, count_operations, energy_report, get_energy_model
from masnn_jax.analysis.gradients import gradient_norms
from masnn_jax.analysis.probe import probe_responses
from masnn_jax.analysis.report import REPORT_NAME, analyze, load_for_analysis, summary

__all__ = [
    "ActivityStats", "collect_activity", "iterate_frames", "layer_forward", "layer_names", "run_layers",
    "ENERGY_MODELS", "EnergyModel", "LayerOps", "count_operations", "energy_report", "get_energy_model",
    "gradient_norms", "probe_responses", "REPORT_NAME", "analyze", "load_for_analysis", "summary",
]
