"""Optimisers and learning-rate schedules built from ``config.train``.

Optimisers (``config.train.optimizer``):

* ``'adam'``: ``torch.optim.Adam`` (``b1``, ``b2``, ``eps``; ``weight_decay`` added to the gradient, coupled, as
  torch does) — the MA-SNN event recipe.
* ``'sgd'``: ``torch.optim.SGD`` with ``momentum`` (``nesterov`` optional) and coupled ``weight_decay`` on every
  parameter — the Att-Res-SNN ImageNet recipe (``Att_Res_SNN/train_amp.py``).
* ``'adamw'``: ``torch.optim.AdamW`` (decoupled weight decay); ``weight_decay_mask='ndim>1'`` exempts 1-D
  parameters (biases, BatchNorm γ/β), as timm's ``param_groups_weight_decay`` does (Spikformer's recipe).

``config.train.lr_base_batch`` (optional) applies the linear scaling rule: the rate used is
``learning_rate · batch_size / lr_base_batch``.

Schedules (``config.train.schedule``; every per-epoch schedule holds the rate constant within an epoch):

* ``'constant'``; ``'plateau'``: ``ReduceLROnPlateau(plateau_factor, plateau_patience)`` on the training loss of
  each epoch (the update takes ``value=loss``);
* ``'cosine'``: per-step cosine from ``learning_rate`` to 0 over ``num_epochs``;
* ``'torch_cosine'``: ``CosineAnnealingLR(T_max=num_epochs, eta_min=min_lr, last_epoch=0)`` stepped once per epoch —
  epoch e (0-based) trains at ``min_lr + (lr − min_lr)·(1 + cos(π·(e + 1)/num_epochs))/2`` (the official code's
  epoch 1 is already decayed and its last epoch runs at ``min_lr``);
* ``'cosine_epoch'``: per-epoch cosine with ``warmup_epochs`` of linear warm-up from ``warmup_lr``: epoch e < W
  trains at ``warmup_lr + (lr − warmup_lr)·e/W``, later epochs at
  ``min_lr + (lr − min_lr)·(1 + cos(π·(e − W)/(num_epochs − W)))/2``;
* ``'timm_cosine'``: timm's ``CosineLRScheduler(t_initial=num_epochs − cooldown_epochs, warmup_t=warmup_epochs,
  warmup_lr_init=warmup_lr, lr_min=min_lr, t_in_epochs=True)`` (Spikformer's recipe): the same warm-up, then
  ``min_lr + (lr − min_lr)·(1 + cos(π·e/t_initial))/2`` counted from epoch 0 (warm-up included, no
  ``warmup_prefix``), and ``min_lr`` for the last ``cooldown_epochs`` epochs;
* ``'step'``: ``lr · step_gamma^⌊e / step_epochs⌋`` (per-epoch staircase, ``torch.optim.lr_scheduler.StepLR``).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

__all__ = ["OPTIMIZERS", "SCHEDULES", "base_lr", "epoch_lr_fn", "make_schedule", "make_optimizer", "current_lr",
           "validate_optimizer_config"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("plateau", "constant", "cosine", "torch_cosine", "cosine_epoch", "timm_cosine", "step")
_PER_EPOCH = ("torch_cosine", "cosine_epoch", "timm_cosine", "step")


def _get(tc, key, default):
    value = tc.get(key, default)
    return default if value is None else value


def validate_optimizer_config(tc) -> None:
    """Checks the optimiser and schedule keys of ``config.train``.

    Raises:
      ValueError: unknown ``optimizer``, ``schedule`` or ``weight_decay_mask``, a non-positive ``learning_rate``,
        negative ``weight_decay``/``warmup_epochs``, or ``warmup_epochs >= num_epochs`` (each naming the key).
    """
    name = _get(tc, "optimizer", "adam")
    if name not in OPTIMIZERS:
        raise ValueError(f"config.train.optimizer must be one of {OPTIMIZERS}, got {name!r}")
    schedule = _get(tc, "schedule", "plateau")
    if schedule not in SCHEDULES:
        raise ValueError(f"config.train.schedule must be one of {SCHEDULES}, got {schedule!r}")
    for key in ("learning_rate",):
        try:
            ok = float(tc[key]) > 0 and math.isfinite(float(tc[key]))
        except (TypeError, ValueError, KeyError):
            ok = False
        if not ok:
            raise ValueError(f"config.train.{key} must be a positive number, got {tc.get(key)!r}")
    for key in ("weight_decay", "warmup_epochs", "min_lr", "warmup_lr", "cooldown_epochs"):
        value = tc.get(key)
        if value is None:
            continue
        try:
            ok = float(value) >= 0 and math.isfinite(float(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"config.train.{key} must be a number >= 0, got {value!r}")
    if schedule == "timm_cosine" and int(_get(tc, "cooldown_epochs", 0)) >= int(tc.num_epochs):
        raise ValueError(f"config.train.cooldown_epochs={tc.get('cooldown_epochs')} must be below "
                         f"config.train.num_epochs={tc.num_epochs}")
    if schedule in ("cosine_epoch", "timm_cosine") and int(_get(tc, "warmup_epochs", 0)) >= int(tc.num_epochs):
        raise ValueError(f"config.train.warmup_epochs={tc.get('warmup_epochs')} must be below "
                         f"config.train.num_epochs={tc.num_epochs}")
    base = tc.get("lr_base_batch", None)
    if base is not None and (isinstance(base, bool) or not isinstance(base, int) or base < 1):
        raise ValueError(f"config.train.lr_base_batch must be a positive integer (or None), got {base!r}")
    if schedule == "step" and int(_get(tc, "step_epochs", 30)) < 1:
        raise ValueError(f"config.train.step_epochs must be >= 1, got {tc.get('step_epochs')!r}")
    if _get(tc, "weight_decay_mask", "all") not in ("all", "ndim>1"):
        raise ValueError(f"config.train.weight_decay_mask must be 'all' or 'ndim>1', got {tc.get('weight_decay_mask')!r}")


def base_lr(tc) -> float:
    """``config.train.learning_rate``, scaled by the linear rule ``batch_size / lr_base_batch`` when
    ``lr_base_batch`` is set (the official Att-Res-SNN rate 0.6 is for a global batch of 600)."""
    lr = float(tc.learning_rate)
    base = tc.get("lr_base_batch", None)
    if base:
        lr *= int(tc.batch_size) / int(base)
    return lr


def epoch_lr_fn(tc) -> Callable[[jax.Array], jax.Array]:
    """For a per-epoch schedule: ``epoch (0-based, int array) -> learning rate`` (see the module docstring)."""
    lr = base_lr(tc)
    schedule = _get(tc, "schedule", "plateau")
    epochs = int(tc.num_epochs)
    min_lr = float(_get(tc, "min_lr", 0.0))
    if schedule == "torch_cosine":
        return lambda e: min_lr + (lr - min_lr) * (1 + jnp.cos(jnp.pi * (e + 1) / epochs)) / 2
    if schedule == "cosine_epoch":
        warm = int(_get(tc, "warmup_epochs", 0))
        warm_lr = float(_get(tc, "warmup_lr", 0.0))

        def fn(e):
            e = jnp.asarray(e, jnp.float32)
            cos = min_lr + (lr - min_lr) * (1 + jnp.cos(jnp.pi * (e - warm) / max(epochs - warm, 1))) / 2
            return jnp.where(e < warm, warm_lr + (lr - warm_lr) * e / max(warm, 1), cos)

        return fn
    if schedule == "timm_cosine":
        warm = int(_get(tc, "warmup_epochs", 0))
        warm_lr = float(_get(tc, "warmup_lr", 0.0))
        t_initial = epochs - int(_get(tc, "cooldown_epochs", 0))

        def timm_fn(e):
            e = jnp.asarray(e, jnp.float32)
            cos = min_lr + (lr - min_lr) * (1 + jnp.cos(jnp.pi * e / t_initial)) / 2
            cos = jnp.where(e >= t_initial, min_lr, cos)
            return jnp.where(e < warm, warm_lr + (lr - warm_lr) * e / max(warm, 1), cos)

        return timm_fn
    if schedule == "step":
        gamma, every = float(_get(tc, "step_gamma", 0.1)), int(_get(tc, "step_epochs", 30))
        return lambda e: lr * gamma ** (e // every)
    raise ValueError(f"config.train.schedule={schedule!r} is not a per-epoch schedule")


def make_schedule(tc, steps_per_epoch: int) -> optax.Schedule | float:
    """The learning rate as a function of the optimiser step (a float for 'constant' and 'plateau')."""
    lr = base_lr(tc)
    schedule = _get(tc, "schedule", "plateau")
    if schedule == "cosine":
        return optax.cosine_decay_schedule(lr, max(1, int(tc.num_epochs) * steps_per_epoch))
    if schedule in _PER_EPOCH:
        fn = epoch_lr_fn(tc)
        spe = max(int(steps_per_epoch), 1)
        return lambda step: fn(jnp.asarray(step) // spe)
    return lr


def _decay_mask(params):
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def make_optimizer(tc, steps_per_epoch: int) -> optax.GradientTransformationExtraArgs:
    """The optimiser of ``config.train`` (module docstring); ``steps_per_epoch`` sizes the schedules.

    Raises:
      ValueError: bad keys (see :func:`validate_optimizer_config`).
    """
    validate_optimizer_config(tc)
    lr = make_schedule(tc, steps_per_epoch)
    name = _get(tc, "optimizer", "adam")
    wd = float(_get(tc, "weight_decay", 0.0))
    mask = _decay_mask if _get(tc, "weight_decay_mask", "all") == "ndim>1" else None
    parts = []
    if wd and name != "adamw":
        parts.append(optax.add_decayed_weights(wd, mask=mask))  # coupled: torch's weight_decay for Adam and SGD
    if name == "adam":
        parts.append(optax.adam(lr, b1=float(_get(tc, "b1", 0.9)), b2=float(_get(tc, "b2", 0.999)),
                                eps=float(_get(tc, "eps", 1e-8))))
    elif name == "adamw":
        parts.append(optax.adamw(lr, b1=float(_get(tc, "b1", 0.9)), b2=float(_get(tc, "b2", 0.999)),
                                 eps=float(_get(tc, "eps", 1e-8)), weight_decay=wd, mask=mask))
    else:
        parts.append(optax.sgd(lr, momentum=float(_get(tc, "momentum", 0.9)) or None,
                               nesterov=bool(_get(tc, "nesterov", False))))
    if _get(tc, "schedule", "plateau") == "plateau":
        parts.append(
            optax.contrib.reduce_on_plateau(
                factor=float(_get(tc, "plateau_factor", 0.1)),
                patience=int(_get(tc, "plateau_patience", 5)),
                rtol=1e-4,  # PyTorch's default threshold (mode 'rel')
                accumulation_size=steps_per_epoch,
            )
        )
    return optax.chain(*parts)


def current_lr(tc, opt_state, step: int, steps_per_epoch: int) -> float:
    """The learning rate in force at optimiser ``step`` (base rate × plateau scale for 'plateau')."""
    schedule = _get(tc, "schedule", "plateau")
    if schedule == "plateau":
        return base_lr(tc) * float(opt_state[-1].scale)
    lr = make_schedule(tc, steps_per_epoch)
    return float(lr(step)) if callable(lr) else float(lr)
