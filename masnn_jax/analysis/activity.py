"""Spiking activity of a spiking model over a dataset, collected in one jit-compiled pass per batch.

The model runs its own forward pass with every spiking layer recording its spikes (``record='spikes'`` and
``nnx.capture``; :mod:`masnn_jax.analysis.capture`). A jitted reduction (:func:`collect_activity`) turns them into
small per-batch sums (spikes per layer and time step, spikes per neuron, spikes per sample, non-zero input
elements), which are accumulated on the host in float64. The per-sample counts are those of the layers' own
``activity`` record, the quantity training logs.

Conventions (Yao et al., TPAMI 2023, energy evaluation; Horowitz, ISSCC 2014 for the 45 nm energies):

* one *sample* is one inference of ``T`` steps: a test item with ``n`` windows ``(n, T, H, W, C)`` counts as ``n``
  samples;
* a layer's *neurons* are the elements of one time step of its output (``H'·W'·C`` after pooling for a conv
  layer, ``N`` for a dense layer); a layer in a scanned stack of blocks counts once per block;
* firing rate = spikes / (samples · T · neurons); per time step: spikes at t / (samples · neurons);
* network firing rate = Σ spikes / Σ (samples · T · neurons) over all spiking layers (the neuron-count-weighted
  mean, the same quantity :func:`masnn_jax.train.steps.network_firing_rate` computes during training);
* input firing rate = fraction of non-zero input elements (pixels × polarities × time steps), the "firing rate"
  of event frames (a still image counts once per time step).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from masnn_jax.analysis import capture as capture_lib

__all__ = [
    "layer_names",
    "run_layers",
    "ActivityStats",
    "collect_activity",
    "iterate_frames",
    "iterate_inputs",
]


def layer_names(model: nnx.Module) -> list[str]:
    """One display name per recorded spiking layer, in forward order (``['conv1', ..., 'fc1', ...]`` for MA-SNN;
    see :func:`masnn_jax.analysis.capture.recorded_layers`)."""
    return [layer.name for layer in capture_lib.recorded_layers(model)]


def run_layers(model: nnx.Module, x: jax.Array, *, attention: bool = True) -> dict[str, Any]:
    """The model's own forward pass with every layer's output (a thin wrapper over ``nnx.capture``).

    Mutates the recording attributes of ``model``; call it on a copy (e.g. inside ``nnx.jit``, or on
    ``nnx.merge(graphdef, state, copy=True)``).

    Args:
      model: a :class:`~masnn_jax.models.registry.SpikingModel`.
      x: its input, ``(B, T, H, W, C)`` frames or ``(B, H, W, C)`` images (float).
      attention: False bypasses every attention block (:func:`masnn_jax.analysis.capture.set_attention_bypass`).
    Returns:
      ``{'output': model(x) (B, classes), 'spikes': [per recorded layer (B, T, ...)]}``, layers in the order of
      :func:`layer_names` (arrays only, so it can be returned from ``jax.jit``).
    Raises:
      ValueError: from the model (input of the wrong shape).
    """
    layers = capture_lib.recorded_layers(model, jax.ShapeDtypeStruct(x.shape, x.dtype))
    out, inter = capture_lib.forward(model, x, record="spikes", bypass=not attention)
    spikes = capture_lib.layer_values(capture_lib.flat_captures(inter), layers, "spikes")
    return {"output": out, "spikes": spikes}


@dataclasses.dataclass
class ActivityStats:
    """Spiking activity accumulated over a dataset (float64 host arrays; see the module docstring).

    Attributes:
      names: layer names; neurons: neurons per layer; shapes: one time step's output shape per layer.
      T: time steps. samples: inferences counted. batches: batches run.
      input_elements: elements of one time step of the input (H·W·C).
      input_nonzero_t: ``(T,)`` non-zero input elements at each step, summed over samples.
      spikes_t: per layer ``(T,)`` spikes at each step, summed over samples.
      neuron_spikes: per layer, spikes per neuron (one step's shape), summed over samples and time.
      sample_spikes: ``(samples, layers)`` spikes per sample and layer.
      correct: correctly classified samples (argmax of the output), or None without labels.
      paths: per layer, its module path with the block index (``'convs.0'``, ``'stage3.blocks[1]'``).
    """

    names: list[str]
    neurons: list[int]
    shapes: list[tuple[int, ...]]
    T: int
    samples: int
    batches: int
    input_elements: int
    input_nonzero_t: np.ndarray
    spikes_t: list[np.ndarray]
    neuron_spikes: list[np.ndarray]
    sample_spikes: np.ndarray
    correct: float | None = None
    paths: list[str] | None = None

    @property
    def input_rate(self) -> float:
        """Fraction of non-zero input elements over samples, time and pixels·polarities."""
        return float(self.input_nonzero_t.sum() / max(self.samples * self.T * self.input_elements, 1))

    @property
    def input_rate_t(self) -> np.ndarray:
        """``(T,)`` fraction of non-zero input elements at each step."""
        return self.input_nonzero_t / max(self.samples * self.input_elements, 1)

    @property
    def firing_rate(self) -> np.ndarray:
        """``(layers,)`` spikes / (samples · T · neurons)."""
        return np.array([s.sum() / max(self.samples * self.T * n, 1) for s, n in zip(self.spikes_t, self.neurons)])

    @property
    def firing_rate_t(self) -> np.ndarray:
        """``(layers, T)`` spikes at t / (samples · neurons)."""
        return np.stack([s / max(self.samples * n, 1) for s, n in zip(self.spikes_t, self.neurons)])

    @property
    def network_firing_rate(self) -> float:
        """Σ spikes / Σ (samples · T · neurons) over all layers (neuron-count-weighted mean)."""
        total = sum(float(s.sum()) for s in self.spikes_t)
        return total / max(self.samples * self.T * sum(self.neurons), 1)

    @property
    def spikes_per_sample(self) -> np.ndarray:
        """``(layers,)`` mean spike count of one inference."""
        return np.array([s.sum() / max(self.samples, 1) for s in self.spikes_t])

    @property
    def accuracy(self) -> float | None:
        """Fraction of samples (windows) classified correctly, or None without labels."""
        return None if self.correct is None else self.correct / max(self.samples, 1)

    def neuron_rate(self, layer: int) -> np.ndarray:
        """Firing rate of every neuron of ``layer`` (one step's output shape), over samples and time."""
        return self.neuron_spikes[layer] / max(self.samples * self.T, 1)

    def firing_map(self, layer: int) -> np.ndarray:
        """Conv layer: ``(H', W')`` firing rate averaged over channels, time and samples. Dense layer: ``(N,)``."""
        rate = self.neuron_rate(layer)
        return rate.mean(axis=-1) if rate.ndim == 3 else rate


def iterate_inputs(
    batches: Iterable[Any], num_batches: int | None = None, *, key: str = "frames", sample_ndim: int = 4
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yields ``(inputs (B, ...), labels (B,) or None)`` from an iterable of loader batches (``{key, 'label'}``
    dicts; test items with windows ``(B, n, ...)`` — rank ``sample_ndim + 2`` — are flattened to ``B·n`` samples
    whose labels are repeated) or bare arrays; stops after ``num_batches`` (None or <= 0: all).

    Raises:
      KeyError: a dict batch without ``key``.
    """
    for i, batch in enumerate(batches):
        if num_batches is not None and num_batches > 0 and i >= num_batches:
            return
        if isinstance(batch, dict):
            if key not in batch:
                raise KeyError(f"batch has no {key!r} entry (keys: {sorted(batch)})")
            x, labels = np.asarray(batch[key]), batch.get("label")
        else:
            x, labels = np.asarray(batch), None
        labels = None if labels is None else np.asarray(labels, np.int32)
        if x.ndim == sample_ndim + 2:
            n = x.shape[1]
            x = x.reshape((-1,) + x.shape[2:])
            labels = None if labels is None else np.repeat(labels, n)
        yield x, labels


def iterate_frames(
    batches: Iterable[Any], num_batches: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yields ``(frames (B, T, H, W, C), labels (B,) or None)`` from an iterable of loader batches
    (``{'frames', 'label'}`` dicts, test items with windows ``(B, n, T, ...)`` flattened to ``B·n`` samples whose
    labels are repeated) or bare frame arrays; stops after ``num_batches`` (None or <= 0: all). See
    :func:`iterate_inputs`."""
    return iterate_inputs(batches, num_batches, key="frames", sample_ndim=4)


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape[0] == size:
        return a
    return np.concatenate([a, np.zeros((size - a.shape[0],) + a.shape[1:], a.dtype)])


@functools.partial(jax.jit, static_argnames=("graphdef", "layers", "attention"))
def _activity_step(graphdef, state, x, labels, mask, *, layers, attention: bool):
    """Per-batch sums (masked): non-zero input elements per step, spikes per layer and step, per neuron, per
    sample, and correct predictions. Compiled once per (model structure, batch shape, attention)."""
    m = nnx.merge(graphdef, state, copy=True)
    output, inter = capture_lib.forward(m, x, record="spikes", bypass=not attention)
    spikes = capture_lib.layer_values(capture_lib.flat_captures(inter), layers, "spikes")
    maskf = mask.astype(jnp.float32)
    b = x.shape[0]
    t = int(m.T)
    steps = 1 if getattr(m, "input_kind", "frames") == "image" else x.shape[1]
    nz = (x != 0).astype(jnp.float32).reshape(b, steps, -1).sum(-1)  # (B, T), or (B, 1) for an image
    inp = jnp.broadcast_to(nz, (b, t))  # a still image is the input of every step
    out = {"input_nonzero_t": (inp * maskf[:, None]).sum(0), "spikes_t": [], "neuron": [], "sample": []}
    for s in spikes:
        s = s.astype(jnp.float32) * maskf.reshape((-1,) + (1,) * (s.ndim - 1))
        out["spikes_t"].append(s.reshape(b, s.shape[1], -1).sum((0, 2)))
        out["neuron"].append(s.sum((0, 1)))
        out["sample"].append(s.reshape(b, -1).sum(1))
    out["correct"] = jnp.sum((jnp.argmax(output, -1) == labels) * maskf)
    return out


def collect_activity(
    model: nnx.Module, batches: Iterable[Any], *, num_batches: int | None = None, attention: bool = True
) -> ActivityStats:
    """Runs ``model`` over ``batches`` (one jit-compiled pass per batch) and accumulates its spiking activity.

    Args:
      model: a :class:`~masnn_jax.models.registry.SpikingModel`; it is run in its current mode (call
        ``model.eval()`` first for running BN statistics) and is not modified.
      batches: iterable of loader batches (``{'frames'|'image', 'label'}``, by the model's ``input_kind``) or
        input arrays (see :func:`iterate_inputs`). Batches smaller than the first one are zero-padded and masked,
        so the step compiles once.
      num_batches: stop after this many batches (None or <= 0: all).
      attention: False bypasses every attention block (``MultiDimensionalAttention.bypass``: pre-activation
        straight to the neuron, no gates, no official ReLU).
    Returns:
      :class:`ActivityStats` (float64 sums; layers in :func:`layer_names` order).
    Raises:
      ValueError: no batch, a batch larger than the first, or inputs of the wrong shape (from the model).
    """
    graphdef, state = nnx.split(model)
    layers = None
    names: list[str] = []
    acc: dict[str, Any] | None = None
    samples = batches_run = 0
    sample_rows: list[np.ndarray] = []
    correct = 0.0
    have_labels = True
    batch_size = None
    for frames, labels in iterate_inputs(batches, num_batches, key=capture_lib.input_key(model),
                                         sample_ndim=capture_lib.sample_ndim(model)):
        k = frames.shape[0]
        batch_size = batch_size or k
        if layers is None:
            layers = tuple(capture_lib.recorded_layers(model, jax.ShapeDtypeStruct((k, *frames.shape[1:]),
                                                                                     jnp.float32)))
            names = [l.name for l in layers]
        if k > batch_size:
            raise ValueError(f"batch of {k} samples after a first batch of {batch_size}")
        have_labels = have_labels and labels is not None
        mask = np.zeros(batch_size, np.float32)
        mask[:k] = 1
        lab = _pad(labels if labels is not None else np.zeros(k, np.int32), batch_size)
        out = jax.device_get(_activity_step(graphdef, state, jnp.asarray(_pad(frames.astype(np.float32), batch_size)),
                                            lab, mask, layers=layers, attention=attention))
        out = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), out)
        if acc is None:
            acc = {"input_nonzero_t": out["input_nonzero_t"], "spikes_t": out["spikes_t"], "neuron": out["neuron"]}
        else:
            acc["input_nonzero_t"] = acc["input_nonzero_t"] + out["input_nonzero_t"]
            acc["spikes_t"] = [a + b for a, b in zip(acc["spikes_t"], out["spikes_t"])]
            acc["neuron"] = [a + b for a, b in zip(acc["neuron"], out["neuron"])]
        sample_rows.append(np.stack(out["sample"], axis=1)[:k])
        correct += float(out["correct"])
        samples += k
        batches_run += 1
    if acc is None:
        raise ValueError("collect_activity: no batches to run (empty dataset or num_batches=0?)")
    shapes = [tuple(int(d) for d in a.shape) for a in acc["neuron"]]
    return ActivityStats(
        names=names,
        neurons=[int(np.prod(s)) for s in shapes],
        shapes=shapes,
        T=int(model.T),
        samples=samples,
        batches=batches_run,
        input_elements=int(np.prod(model.input_shape)),
        input_nonzero_t=acc["input_nonzero_t"],
        spikes_t=acc["spikes_t"],
        neuron_spikes=acc["neuron"],
        sample_spikes=np.concatenate(sample_rows, axis=0),
        correct=correct if have_labels else None,
        paths=[l.path_name for l in layers],
    )
