"""Per-block gradient norms (the paper's gradient-norm-equality / block-dynamical-isometry check).

Blocks are the model's ``gradient_blocks()`` module paths when it defines that hook, else its recorded spiking
layers (:func:`masnn_jax.analysis.capture.recorded_layers`); a block path with a leading block axis (a stack run by
``nnx.scan``) is one block per index. For each block ``l`` with output ``x_l`` this computes, per batch, the L2
norms of

* ``∂L/∂θ_l`` — the parameters under the block's path (``param``; for a stacked block its slice), its attention
  parameters alone (``attention_param``: under a :class:`~masnn_jax.nn.attention.MultiDimensionalAttention`) and
  its other kernels (``weight``: parameters named ``kernel`` outside attention). Parameters under no block are
  grouped by their top-level path (``other_params``);
* ``∂L/∂x_l`` (``output``): the gradient w.r.t. a zero perturbation added to the block's ``__call__`` output in
  the model's own forward pass (``Module.perturb``; :func:`masnn_jax.analysis.capture.forward`), and ``input`` =
  the previous block's ``output`` (``∂L/∂input`` for the first block), all in one ``jax.grad``;

and averages them over the batches. Ratios:

* ``block_ratio`` = ``‖∂L/∂x_{l-1}‖ / ‖∂L/∂x_l‖``: how much block ``l`` scales the gradient on its way back
  (gradient norm equality ⇔ ≈ 1 for every block);
* ``param_ratio_next`` = ``‖∂L/∂θ_l‖ / ‖∂L/∂θ_{l+1}‖`` between consecutive blocks (None for the last).

The loss is the training loss (:func:`masnn_jax.train.loss_fn` of ``loss``, or a task's ``train_loss``) averaged
over the batch; gradients flow through the spike surrogate. By default BatchNorm uses batch statistics (train
mode, as the optimiser sees it) on a clone of the model, whose statistic updates are discarded.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from masnn_jax.analysis import capture as capture_lib
from masnn_jax.analysis.activity import iterate_inputs
from masnn_jax.nn.attention import MultiDimensionalAttention
from masnn_jax.train import loss_fn

__all__ = ["gradient_norms", "Block", "gradient_blocks"]


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of the gradient analysis: display ``name``, module ``path`` and block ``index`` in a stack."""

    name: str
    path: tuple
    index: tuple = ()


def gradient_blocks(model: nnx.Module, layers=None) -> list[Block]:
    """The blocks of ``model`` in forward order: its ``gradient_blocks()`` paths (one per index of a stacked
    block, the indices those of the recorded layers under it) or, without that hook, its recorded layers.

    Raises:
      KeyError: a ``gradient_blocks()`` path that is not a module of the model.
    """
    layers = capture_lib.recorded_layers(model) if layers is None else layers
    hook = getattr(model, "gradient_blocks", None)
    if not callable(hook):
        return [Block(l.name, l.path, l.index) for l in layers]
    names_hook = getattr(model, "layer_names", None)
    names = dict(names_hook()) if callable(names_hook) else {}
    out = []
    for text in hook():
        path = tuple(int(p) if p.isdigit() else p for p in str(text).split("."))
        capture_lib.module_at(model, path)  # KeyError naming the path
        under = [l for l in layers if l.path[:len(path)] == path]
        lead = min((len(l.index) for l in under), default=0)
        indices = sorted({l.index[:lead] for l in under}) or [()]
        for idx in indices:
            full = str(text) + "".join(f"[{i}]" for i in idx)
            out.append(Block(names.get(full, full), path, idx))
    return out


def _norm(tree) -> jax.Array:
    leaves = [jnp.asarray(v, jnp.float32) for v in jax.tree_util.tree_leaves(tree)]
    if not leaves:
        return jnp.float32(0)
    return jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in leaves))


def _group(path: tuple) -> str:
    """Top-level group of a parameter under no block: ``'head'``, or ``'convs.0'`` for a list entry."""
    return capture_lib.path_str(path[:2] if len(path) > 1 and isinstance(path[1], int) else path[:1])


def _block_norms(grads, blocks: tuple[Block, ...], att_paths: tuple[tuple, ...]) -> dict[str, jax.Array]:
    """``param/<i>``, ``weight/<i>``, ``attention_param/<i>`` per block index ``i`` and ``other/<group>``."""
    sq: dict[str, jax.Array] = {}
    for i in range(len(blocks)):
        for key in ("param", "weight", "attention_param"):
            sq[f"{key}/{i}"] = jnp.float32(0)
    by_path: dict[tuple, list[int]] = {}
    for i, b in enumerate(blocks):
        by_path.setdefault(b.path, []).append(i)
    for path, var in nnx.to_flat_state(grads):
        path = tuple(path)
        value = jnp.asarray(var.get_value() if isinstance(var, nnx.Variable) else var, jnp.float32)
        owner = max((p for p in by_path if path[:len(p)] == p), key=len, default=None)
        if owner is None:
            key = f"other/{_group(path)}"
            sq[key] = sq.get(key, jnp.float32(0)) + jnp.sum(jnp.square(value))
            continue
        in_att = any(path[:len(a)] == a for a in att_paths)
        for i in by_path[owner]:
            idx = blocks[i].index
            v = value[idx] if idx else value
            s = jnp.sum(jnp.square(v))
            sq[f"param/{i}"] += s
            if in_att:
                sq[f"attention_param/{i}"] += s
            elif path[-1] == "kernel":
                sq[f"weight/{i}"] += s
    return {k: jnp.sqrt(v) for k, v in sq.items()}


@functools.partial(jax.jit, static_argnames=("graphdef", "blocks", "att_paths", "loss", "num_classes"))
def _grad_step(graphdef, params, rest, x, labels, *, blocks, att_paths, loss, num_classes: int):
    """Loss, per-block parameter-gradient norms and activation-gradient norms (the input, then every block's
    output) of one batch. Compiled once per (model structure, batch shape, loss)."""
    perturb = tuple(dict.fromkeys(b.path for b in blocks))

    def zeros(params, x):
        m = nnx.merge(graphdef, params, rest, copy=True)
        return capture_lib.forward(m, x, record="off", perturb=perturb, capture_perturbations=True)[2]

    shapes = jax.eval_shape(zeros, params, x)
    pert = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def compute_loss(params, pert, x):
        m = nnx.merge(graphdef, params, rest, copy=True)
        out, _ = capture_lib.forward(m, x, record="off", perturb=perturb, perturbations=pert)
        if isinstance(loss, str):
            return loss_fn(loss, out, labels, num_classes).mean()
        return loss.train_loss(out, labels)[0]

    value, (g_params, g_pert, g_x) = jax.value_and_grad(compute_loss, argnums=(0, 1, 2))(params, pert, x)
    out = _block_norms(g_params, blocks, att_paths)
    flat = capture_lib.flat_captures(g_pert)
    acts = [_norm(g_x)]
    for b in blocks:
        g = flat.get(b.path, {}).get("output")
        acts.append(jnp.float32(jnp.nan) if g is None else _norm(g[b.index] if b.index else g))
    out["activation"] = jnp.stack(acts)
    out["loss"] = value
    return out


def gradient_norms(
    model: nnx.Module,
    batches: Iterable[Any],
    *,
    loss: Any = "mse",
    num_batches: int | None = 2,
    train_mode: bool = True,
) -> dict[str, Any]:
    """Per-block gradient norms of the loss, averaged over ``num_batches`` labelled batches.

    Args:
      model: a :class:`~masnn_jax.models.registry.SpikingModel` (not modified: a clone is used).
      batches: loader batches with the model's input (``frames`` or ``image``) and ``label`` (test items with
        windows use their first window).
      loss: 'mse' or 'cross_entropy' (:func:`masnn_jax.train.loss_fn`), or a task
        (:func:`masnn_jax.train.task_from_config`: its ``train_loss``, label smoothing included).
      num_batches: batches to average over (None or <= 0: all).
      train_mode: BatchNorm with batch statistics (True) or running averages (False).
    Returns:
      ``{'batches', 'train_mode', 'loss', 'input_grad_norm' (∂L/∂input), 'layers': [{name, param, weight,
      attention_param (None without attention parameters), input, output (None where the block's output is not
      an array), block_ratio, param_ratio_next}], 'other_params': {group: ‖∂L/∂θ‖} (parameters under no block)}``.
    Raises:
      ValueError: no labelled batch.
    """
    clone = nnx.clone(model)
    if train_mode:
        clone.train()
    else:
        clone.eval()
    graphdef, params, rest = nnx.split(clone, nnx.Param, ...)
    num_classes = int(clone.num_classes)
    att_paths = tuple(p for p, _ in capture_lib.modules_under(clone, (), MultiDimensionalAttention))
    key, ndim = capture_lib.input_key(clone), capture_lib.sample_ndim(clone)

    blocks: tuple[Block, ...] | None = None
    sums: dict[str, np.ndarray] | None = None
    count = 0
    for x, labels in iterate_inputs(_first_window(batches, key, ndim), num_batches, key=key, sample_ndim=ndim):
        if labels is None:
            raise ValueError(f"gradient_norms needs labelled batches ({{{key!r}, 'label'}})")
        x = jnp.asarray(x, jnp.float32)
        if blocks is None:
            layers = capture_lib.recorded_layers(clone, jax.ShapeDtypeStruct(x.shape, x.dtype))
            blocks = tuple(gradient_blocks(clone, layers))
        out = jax.device_get(_grad_step(graphdef, params, rest, x, jnp.asarray(labels, jnp.int32), blocks=blocks,
                                        att_paths=att_paths, loss=loss, num_classes=num_classes))
        out = {k: np.asarray(v, np.float64) for k, v in out.items()}
        sums = out if sums is None else {k: sums[k] + out[k] for k in sums}
        count += 1
    if sums is None:
        raise ValueError("gradient_norms: no batches to run")
    mean = {k: v / count for k, v in sums.items()}
    act = mean["activation"]

    def opt(v):
        return None if v is None or not np.isfinite(v) else float(v)

    layers_out = []
    for i, b in enumerate(blocks):
        has_att = any(
            isinstance(v, nnx.Param) for a in att_paths if a[:len(b.path)] == b.path
            for _, v in nnx.iter_graph(capture_lib.module_at(clone, a)))
        param = float(mean[f"param/{i}"])
        nxt = float(mean[f"param/{i + 1}"]) if i + 1 < len(blocks) else None
        inp, outp = opt(act[i]), opt(act[i + 1])
        layers_out.append({
            "name": b.name,
            "param": param,
            "weight": float(mean[f"weight/{i}"]),
            "attention_param": float(mean[f"attention_param/{i}"]) if has_att else None,
            "input": inp,
            "output": outp,
            "block_ratio": (inp / outp) if inp is not None and outp else None,
            "param_ratio_next": (param / nxt) if nxt else None,
        })
    return {
        "batches": count,
        "train_mode": bool(train_mode),
        "loss": float(mean["loss"]),
        "input_grad_norm": float(act[0]),
        "layers": layers_out,
        "other_params": {k[len("other/"):]: float(v) for k, v in mean.items() if k.startswith("other/")},
    }


def _first_window(batches: Iterable[Any], key: str = "frames", sample_ndim: int = 4):
    for batch in batches:
        if isinstance(batch, dict) and key in batch and np.ndim(batch[key]) == sample_ndim + 2:
            batch = {**batch, key: np.asarray(batch[key])[:, 0]}
        yield batch
