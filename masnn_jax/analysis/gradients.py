"""Per-block gradient norms (the paper's gradient-norm-equality / block-dynamical-isometry check).

For each spiking layer ("block") ``l`` with input ``x_{l-1}`` and output ``x_l`` this computes, per batch, the L2
norms of

* ``∂L/∂θ_l`` — all parameters of the block (``param``), its attention parameters alone (``attention_param``) and
  its conv / linear kernel alone (``weight``);
* ``∂L/∂x_l`` (``output``) and ``∂L/∂x_{l-1}`` (``input``): obtained as gradients w.r.t. zero perturbations added
  to every activation (:func:`masnn_jax.analysis.activity.run_layers` with ``deltas``), in one ``jax.grad``;

and averages them over the batches. Ratios:

* ``block_ratio`` = ``‖∂L/∂x_{l-1}‖ / ‖∂L/∂x_l‖``: how much block ``l`` scales the gradient on its way back
  (gradient norm equality ⇔ ≈ 1 for every block);
* ``param_ratio_next`` = ``‖∂L/∂θ_l‖ / ‖∂L/∂θ_{l+1}‖`` between consecutive blocks (None for the last).

The loss is the training loss of ``config.train.loss`` averaged over the batch; gradients flow through the spike
surrogate. By default BatchNorm uses batch statistics (train mode, as the optimiser sees it) on a clone of the
model, whose statistic updates are discarded.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from masnn_jax import train as training
from masnn_jax.analysis.activity import iterate_frames, layer_names, run_layers

__all__ = ["gradient_norms"]


def _norm(tree) -> jax.Array:
    leaves = [jnp.asarray(v, jnp.float32) for v in jax.tree_util.tree_leaves(tree)]
    if not leaves:
        return jnp.float32(0)
    return jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in leaves))


def _block_norms(grads) -> dict[str, jax.Array]:
    """Norms per block of a Param-gradient State of an MA-SNN (paths ``('convs'|'fcs', i, ...)``):
    ``param/<name>`` (all), ``weight/<name>`` (conv / linear kernel), ``attention_param/<name>``."""
    sq: dict[str, jax.Array] = {}
    for path, var in nnx.to_flat_state(grads):
        path = tuple(path)
        value = jnp.asarray(var[...] if isinstance(var, nnx.Variable) else var, jnp.float32)
        name = f"conv{int(path[1]) + 1}" if path[0] == "convs" else f"fc{int(path[1]) + 1}"
        for key in ("param", "weight", "attention_param"):
            sq.setdefault(f"{key}/{name}", jnp.float32(0))
        s = jnp.sum(jnp.square(value))
        sq[f"param/{name}"] += s
        if "attention" in path:
            sq[f"attention_param/{name}"] += s
        elif path[2] in ("conv", "linear") and path[-1] == "kernel":
            sq[f"weight/{name}"] += s
    return {k: jnp.sqrt(v) for k, v in sq.items()}


@functools.partial(jax.jit, static_argnames=("graphdef", "loss", "num_classes"))
def _grad_step(graphdef, params, rest, frames, labels, *, loss: str, num_classes: int):
    """Loss, per-block parameter-gradient norms and activation-gradient norms (input, then every block's output)
    of one batch. Compiled once per (model structure, batch shape, loss)."""

    def loss_fn(params, deltas):
        m = nnx.merge(graphdef, params, rest, copy=True)
        res = run_layers(m, frames, deltas=deltas)
        return training.loss_fn(loss, res["output"], labels, num_classes).mean()

    shapes = jax.eval_shape(lambda p, r, f: run_layers(nnx.merge(graphdef, p, r, copy=True), f), params, rest, frames)
    deltas = [jnp.zeros(shapes["input"].shape, shapes["input"].dtype)]
    deltas += [jnp.zeros(s.shape, s.dtype) for s in shapes["spikes"]]
    value, (g_params, g_deltas) = jax.value_and_grad(loss_fn, argnums=(0, 1))(params, deltas)
    out = _block_norms(g_params)
    out["activation"] = jnp.stack([_norm(g) for g in g_deltas])
    out["loss"] = value
    return out


def gradient_norms(
    model: nnx.Module,
    batches: Iterable[Any],
    *,
    loss: str = "mse",
    num_batches: int | None = 2,
    train_mode: bool = True,
) -> dict[str, Any]:
    """Per-block gradient norms of the loss, averaged over ``num_batches`` labelled batches.

    Args:
      model: an MA-SNN (not modified: a clone is used).
      batches: loader batches with ``frames`` and ``label`` (test items with windows use their first window).
      loss: 'mse' or 'cross_entropy' (see :func:`masnn_jax.training.loss_fn`).
      num_batches: batches to average over (None or <= 0: all).
      train_mode: BatchNorm with batch statistics (True) or running averages (False).
    Returns:
      ``{'batches', 'train_mode', 'loss', 'input_grad_norm' (∂L/∂frames), 'layers': [{name, param, weight,
      attention_param (None without attention parameters), input, output, block_ratio, param_ratio_next}]}``.
    Raises:
      ValueError: no labelled batch.
    """
    clone = nnx.clone(model)
    if train_mode:
        clone.train()
    else:
        clone.eval()
    graphdef, params, rest = nnx.split(clone, nnx.Param, ...)
    names = layer_names(clone)
    num_classes = int(clone.num_classes)

    sums: dict[str, np.ndarray] | None = None
    count = 0
    for frames, labels in iterate_frames(_first_window(batches), num_batches):
        if labels is None:
            raise ValueError("gradient_norms needs labelled batches ({'frames', 'label'})")
        out = jax.device_get(_grad_step(graphdef, params, rest, jnp.asarray(frames, jnp.float32),
                                        jnp.asarray(labels, jnp.int32), loss=loss, num_classes=num_classes))
        out = {k: np.asarray(v, np.float64) for k, v in out.items()}
        sums = out if sums is None else {k: sums[k] + out[k] for k in sums}
        count += 1
    if sums is None:
        raise ValueError("gradient_norms: no batches to run")
    mean = {k: v / count for k, v in sums.items()}
    act = mean["activation"]
    layers = []
    for i, name in enumerate(names):
        has_att = any(isinstance(v, nnx.Param) for _, v in nnx.iter_graph(clone.spiking_layers[i].attention))
        param = float(mean[f"param/{name}"])
        nxt = float(mean[f"param/{names[i + 1]}"]) if i + 1 < len(names) else None
        layers.append({
            "name": name,
            "param": param,
            "weight": float(mean[f"weight/{name}"]),
            "attention_param": float(mean[f"attention_param/{name}"]) if has_att else None,
            "input": float(act[i]),
            "output": float(act[i + 1]),
            "block_ratio": float(act[i] / act[i + 1]) if act[i + 1] > 0 else None,
            "param_ratio_next": (param / nxt) if nxt else None,
        })
    return {
        "batches": count,
        "train_mode": bool(train_mode),
        "loss": float(mean["loss"]),
        "input_grad_norm": float(act[0]),
        "layers": layers,
    }


def _first_window(batches: Iterable[Any]):
    for batch in batches:
        if isinstance(batch, dict) and np.ndim(batch["frames"]) == 6:
            batch = {**batch, "frames": np.asarray(batch["frames"])[:, 0]}
        yield batch
