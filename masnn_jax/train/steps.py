"""Pure training and evaluation steps over the state pytree (the usual Flax NNX functional pattern).

The state is ``{'params': nnx.State of nnx.Param, 'rest': nnx.State of everything else (BatchNorm statistics, RNG
streams), 'opt_state': optax state}`` (:func:`init_state`). The steps are module-level functions; their keyword
arguments (``graphdef``, ``tx``, ``task``) are hashable and static, so anyone can jit them::

    step = jax.jit(functools.partial(train_step, graphdef=graphdef, tx=tx, task=task), donate_argnums=0)
    state, metrics = step(state, {'frames': x, 'label': y})

``train.py`` (:mod:`masnn_jax.train.loop`) and ``benchmarks/`` call exactly these.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from masnn_jax.nn.layers import set_recording

__all__ = ["network_firing_rate", "init_state", "train_step", "eval_step"]


def network_firing_rate(intermediates, mask: jax.Array | None = None) -> jax.Array:
    """Neuron-count-weighted mean firing rate from the ``activity`` intermediates the spiking layers record
    (:func:`masnn_jax.nn.layers.record_activity`: per sample ``[spike count, T·neurons]``, shape ``(..., B, 2)``,
    leading axes for layers stacked in a scan): ``Σ spikes / Σ (T·neurons)`` over layers and the samples where
    ``mask`` (``(B,)``, optional) is non-zero — the network average the paper reports (Yao et al., TPAMI 2023,
    energy evaluation). Only ``activity`` leaves are read (``spikes`` ones are ignored). Returns a float32 scalar (0
    when nothing was recorded)."""
    leaves = [jnp.asarray(v) for path, v in jax.tree_util.tree_leaves_with_path(intermediates)
              if any(getattr(p, "key", getattr(p, "name", None)) == "activity" for p in path)]
    if not leaves:
        return jnp.float32(0)
    per_sample = sum(leaf.reshape(-1, leaf.shape[-2], 2).sum(0) for leaf in leaves)  # (B, 2)
    if mask is not None:
        per_sample = per_sample * mask[:, None]
    total = per_sample.sum(0)
    return total[0] / jnp.maximum(total[1], 1.0)


def init_state(model: nnx.Module, tx: optax.GradientTransformation) -> tuple[Any, dict]:
    """Splits ``model`` (in training mode) into ``(graphdef, state)`` for :func:`train_step`.

    Returns the graph definition and ``{'params', 'rest', 'opt_state'}``; the model itself is left in training mode.
    """
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, {"params": params, "rest": rest, "opt_state": tx.init(params)}


def _forward(graphdef, params, rest, x):
    model = nnx.merge(graphdef, params, rest, copy=True)
    set_recording(model, "activity")
    outputs, intermediates = nnx.capture(model, nnx.Intermediate)(x)
    return outputs, nnx.state(model, nnx.Not(nnx.Param)), intermediates


def train_step(state: dict, batch: dict, *, graphdef, tx: optax.GradientTransformation, task) -> tuple[dict, dict]:
    """One optimiser step.

    Args:
      state: ``{'params', 'rest', 'opt_state'}`` (:func:`init_state`).
      batch: ``{task.input_key: inputs, 'label': (B,) int}`` and, with Mixup/CutMix, ``'soft_target'``
        ``(B, num_classes)`` float32 (then the loss is the soft-target cross-entropy) — see the task
        (:mod:`masnn_jax.train.tasks`) and :mod:`masnn_jax.train.mixing`.
      graphdef: the model's graph definition in training mode. tx: the optax optimiser. task: the task.
    Returns:
      ``(new state, metrics)`` with metrics ``loss``, ``accuracy``, ``firing_rate`` (float32 scalars) and
      ``finite`` (True when the loss and every gradient are finite). A step whose loss or gradients are not finite
      changes nothing but the RNG streams (the update is skipped on device; the loop counts it).
    """
    inputs, labels = batch[task.input_key], batch["label"]
    soft_target = batch.get("soft_target")  # Mixup/CutMix targets (masnn_jax.train.mixing); fixed for a whole run

    def compute_loss(params):
        outputs, new_rest, inter = _forward(graphdef, params, state["rest"], inputs)
        loss, metrics = (task.train_loss(outputs, labels) if soft_target is None
                         else task.train_loss(outputs, labels, soft_target))
        return loss, (metrics, new_rest, inter)

    (loss, (metrics, new_rest, inter)), grads = jax.value_and_grad(compute_loss, has_aux=True)(state["params"])
    finite = jnp.isfinite(loss) & jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"], value=loss)
    params = optax.apply_updates(state["params"], updates)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
    new_state = {
        "params": keep(params, state["params"]),
        "rest": _keep_stats(finite, new_rest, state["rest"]),
        "opt_state": keep(opt_state, state["opt_state"]),
    }
    metrics = {"loss": loss, **metrics, "firing_rate": network_firing_rate(inter), "finite": finite}
    return new_state, metrics


def _keep_stats(finite, new_rest, old_rest):
    """Floating-point state (BatchNorm statistics) only from a finite step; integer and key state (RNG stream
    counters and keys) always advances."""
    def pick(new, old):
        if not jnp.issubdtype(jnp.asarray(new).dtype, jnp.floating):
            return new
        return jnp.where(finite, new, old)

    return jax.tree.map(pick, new_rest, old_rest)


def eval_step(state: dict, batch: dict, *, graphdef, task) -> dict:
    """Evaluation sums of one batch (no state change).

    Args:
      state: as :func:`train_step` (``opt_state`` unused).
      batch: ``{task.input_key, 'label', 'mask': (B,) 1 for real rows, 0 for padding}``.
      graphdef: the model's graph definition in **eval** mode (running BatchNorm statistics).
    Returns:
      the task's sums (``loss_sum``, ``correct``, ``count``, ...) and ``spike_rate`` (network firing rate over the
      unmasked rows).
    """
    x = task.eval_inputs(batch[task.input_key])
    outputs, _, inter = _forward(graphdef, state["params"], state["rest"], x)
    sums, rate_mask = task.eval_sums(outputs, batch["label"], batch["mask"])
    return {**sums, "spike_rate": network_firing_rate(inter, rate_mask)}
