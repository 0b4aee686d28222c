"""Spiking activity of an MA-SNN over a dataset, collected in one jit-compiled pass per batch.

The network is run layer by layer with :func:`run_layers`, which walks ``model.spiking_layers`` exactly as
:class:`~masnn_jax.models.masnn_event.MASNN` does (convs, flatten, dense layers, mean over T) but returns every layer's
spikes. A jitted reduction (:func:`collect_activity`) turns them into small per-batch sums (spikes per layer and
time step, spikes per neuron, spikes per sample, non-zero input elements), which are accumulated on the host in
float64. No Python hooks run inside the compiled computation; the layers' own ``record`` /
``nnx.Intermediate('activity')`` mechanism gives the same per-sample counts (the tests check that).

Conventions (Yao et al., TPAMI 2023, energy evaluation; Horowitz, ISSCC 2014 for the 45 nm energies):

* one *sample* is one inference of ``T`` steps: a test item with ``n`` windows ``(n, T, H, W, C)`` counts as ``n``
  samples;
* a layer's *neurons* are the elements of one time step of its output (``H'·W'·C`` after pooling for a conv
  layer, ``N`` for a dense layer);
* firing rate = spikes / (samples · T · neurons); per time step: spikes at t / (samples · neurons);
* network firing rate = Σ spikes / Σ (samples · T · neurons) over all spiking layers (the neuron-count-weighted
  mean, the same quantity :func:`masnn_jax.training.network_firing_rate` computes during training);
* input firing rate = fraction of non-zero input elements (pixels × polarities × time steps), the "firing rate"
  of event frames.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "layer_names",
    "layer_forward",
    "run_layers",
    "ActivityStats",
    "collect_activity",
    "iterate_frames",
]


def layer_names(model: nnx.Module) -> list[str]:
    """``['conv1', ..., 'fc1', ...]``: one name per spiking layer, in ``model.spiking_layers`` order."""
    return [f"conv{i + 1}" for i in range(len(model.convs))] + [f"fc{i + 1}" for i in range(len(model.fcs))]


def layer_forward(layer: nnx.Module, x: jax.Array, *, attention: bool = True, return_v: bool = False):
    """One spiking layer, with its attention module (``layer(x)``) or with the attention bypassed
    (pre-activation fed straight to the neuron: no TA/CA/SA gates and no official trailing ReLU)."""
    if attention:
        return layer(x, return_v=return_v)
    return layer.neuron(layer.preactivation(x), return_v=return_v)


def run_layers(
    model: nnx.Module,
    frames: jax.Array,
    *,
    attention: bool = True,
    return_v: bool = False,
    deltas: list[jax.Array] | None = None,
) -> dict[str, Any]:
    """Runs an MA-SNN layer by layer and returns every layer's output.

    Args:
      model: a :class:`~masnn_jax.models.masnn_event.MASNN` (``convs``, ``fcs``, ``input_shape``, ``T``, ``dtype``).
      frames: ``(B, T, H, W, C)``.
      attention: False bypasses every layer's attention module (see :func:`layer_forward`).
      return_v: also return each layer's membrane trace (the potential each step fired on).
      deltas: optional additive perturbations ``[d_in, d_1, ..., d_L]`` on the input and on every layer's output
        (zeros for the gradient-norm analysis: the gradient w.r.t. ``d_l`` is the gradient w.r.t. that activation).
    Returns:
      ``{'output': (B, classes) mean over T of the last layer, 'spikes': [per layer (B, T, ...)],
      'membranes': [per layer (B, T, ...)] (empty unless return_v), 'input': the (cast, perturbed) input}``.
      With ``attention=True`` and no deltas, ``output`` equals ``model(frames)``.
    Raises:
      ValueError: input of the wrong shape.
    """
    if frames.ndim != 5 or tuple(frames.shape[2:]) != tuple(model.input_shape) or frames.shape[1] != model.T:
        raise ValueError(
            f"expected input (B, T={model.T}, H, W, C={tuple(model.input_shape)}) channels-last, got shape "
            f"{tuple(frames.shape)}"
        )
    x = frames if model.dtype is None else frames.astype(model.dtype)
    if deltas is not None:
        x = x + deltas[0]
    first = x
    n_conv = len(model.convs)
    spikes, membranes = [], []
    for i, layer in enumerate(model.spiking_layers):
        if i == n_conv:
            x = x.reshape(x.shape[0], x.shape[1], -1)
        out = layer_forward(layer, x, attention=attention, return_v=return_v)
        if return_v:
            out, v = out
            membranes.append(v)
        if deltas is not None:
            out = out + deltas[i + 1]
        spikes.append(out)
        x = out
    return {"output": x.mean(axis=1), "spikes": spikes, "membranes": membranes, "input": first}


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


def iterate_frames(
    batches: Iterable[Any], num_batches: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yields ``(frames (B, T, H, W, C), labels (B,) or None)`` from an iterable of loader batches
    (``{'frames', 'label'}`` dicts, test items with windows ``(B, n, T, ...)`` flattened to ``B·n`` samples whose
    labels are repeated) or bare frame arrays; stops after ``num_batches`` (None or <= 0: all)."""
    for i, batch in enumerate(batches):
        if num_batches is not None and num_batches > 0 and i >= num_batches:
            return
        if isinstance(batch, dict):
            frames, labels = np.asarray(batch["frames"]), batch.get("label")
        else:
            frames, labels = np.asarray(batch), None
        labels = None if labels is None else np.asarray(labels, np.int32)
        if frames.ndim == 6:
            n = frames.shape[1]
            frames = frames.reshape((-1,) + frames.shape[2:])
            labels = None if labels is None else np.repeat(labels, n)
        yield frames, labels


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape[0] == size:
        return a
    return np.concatenate([a, np.zeros((size - a.shape[0],) + a.shape[1:], a.dtype)])


@functools.partial(jax.jit, static_argnames=("graphdef", "attention"))
def _activity_step(graphdef, state, frames, labels, mask, *, attention: bool):
    """Per-batch sums (masked): non-zero input elements per step, spikes per layer and step, per neuron, per
    sample, and correct predictions. Compiled once per (model structure, batch shape, attention)."""
    m = nnx.merge(graphdef, state, copy=True)
    res = run_layers(m, frames, attention=attention)
    maskf = mask.astype(jnp.float32)
    b, t = frames.shape[:2]
    inp = (res["input"] != 0).astype(jnp.float32).reshape(b, t, -1).sum(-1)  # (B, T)
    out = {"input_nonzero_t": (inp * maskf[:, None]).sum(0), "spikes_t": [], "neuron": [], "sample": []}
    for s in res["spikes"]:
        s = s.astype(jnp.float32) * maskf.reshape((-1,) + (1,) * (s.ndim - 1))
        out["spikes_t"].append(s.reshape(b, t, -1).sum((0, 2)))
        out["neuron"].append(s.sum((0, 1)))
        out["sample"].append(s.reshape(b, -1).sum(1))
    out["correct"] = jnp.sum((jnp.argmax(res["output"], -1) == labels) * maskf)
    return out


def collect_activity(
    model: nnx.Module, batches: Iterable[Any], *, num_batches: int | None = None, attention: bool = True
) -> ActivityStats:
    """Runs ``model`` over ``batches`` (one jit-compiled pass per batch) and accumulates its spiking activity.

    Args:
      model: an MA-SNN; it is run in its current mode (call ``model.eval()`` first for running BN statistics).
      batches: iterable of loader batches or frame arrays (see :func:`iterate_frames`). Batches smaller than the
        first one are zero-padded and masked, so the step compiles once.
      num_batches: stop after this many batches (None or <= 0: all).
      attention: False bypasses every attention module (see :func:`layer_forward`).
    Returns:
      :class:`ActivityStats`.
    Raises:
      ValueError: no batch, or frames of the wrong shape.
    """
    graphdef, state = nnx.split(model)
    names = layer_names(model)
    acc: dict[str, Any] | None = None
    samples = batches_run = 0
    sample_rows: list[np.ndarray] = []
    correct = 0.0
    have_labels = True
    batch_size = None
    for frames, labels in iterate_frames(batches, num_batches):
        k = frames.shape[0]
        batch_size = batch_size or k
        if k > batch_size:
            raise ValueError(f"batch of {k} samples after a first batch of {batch_size}")
        have_labels = have_labels and labels is not None
        mask = np.zeros(batch_size, np.float32)
        mask[:k] = 1
        lab = _pad(labels if labels is not None else np.zeros(k, np.int32), batch_size)
        out = jax.device_get(_activity_step(graphdef, state, jnp.asarray(_pad(frames.astype(np.float32), batch_size)),
                                            lab, mask, attention=attention))
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
    )
