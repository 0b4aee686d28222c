"""Mixup / CutMix on a host batch, as timm's ``Mixup`` does it in ``mode='batch'`` (the Spikformer recipes; spec §4).

Source: timm ``timm/data/mixup.py`` (``Mixup._params_per_batch``, ``_mix_batch``, ``rand_bbox``,
``cutmix_bbox_and_lam``, ``mixup_target``; unchanged between timm 0.5.4, which Spikformer pins, and 1.0). One ``lam``
per batch; every sample is paired with the reversed batch (``flip(0)``); soft targets
``lam·y + (1 − lam)·flip(y)`` with label smoothing ``y = onehot·(1 − ε) + ε/K``. The random draws happen in timm's
order, so with an ``np.random.RandomState`` seeded like timm's global NumPy state the result is identical.

Arrays are NumPy and channels-last: images ``(B, H, W, C)`` or event frames ``(B, T, H, W, C)`` (``spatial_axes``
names H and W). Training applies them through :mod:`masnn_jax.train.mixing` (``config.train.mixup``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["MixupDecision", "mixup_target", "sample_mixup", "apply_mixup", "mixup_batch"]


class MixupDecision(NamedTuple):
    """One batch's draw: ``lam`` (1.0 = no mixing), whether CutMix is used, and its box ``(yl, yh, xl, xh)``
    (None for Mixup); for CutMix ``lam`` is already the area-corrected one (``correct_lam``)."""

    lam: float
    use_cutmix: bool
    bbox: tuple[int, int, int, int] | None


def mixup_target(labels: np.ndarray, num_classes: int, lam: float = 1.0, smoothing: float = 0.0) -> np.ndarray:
    """timm ``mixup_target``: smoothed one-hot ``(B, K)`` float32 (on = 1 − ε + ε/K, off = ε/K) mixed with its
    reversal, ``lam·y + (1 − lam)·y[::-1]``.

    Raises:
      ValueError: labels outside ``[0, num_classes)`` or not 1-D.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() >= num_classes)):
        raise ValueError(f"mixup_target expects 1-D labels in [0, {num_classes}), got shape {labels.shape}")
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    y = np.full((labels.shape[0], num_classes), off, np.float32)
    y[np.arange(labels.shape[0]), labels] = on
    return (y * lam + y[::-1] * (1.0 - lam)).astype(np.float32)


def _rand_bbox(rng, h: int, w: int, lam: float):
    """timm ``rand_bbox`` (margin 0): a box of side ``√(1 − lam)`` of each dimension centred at a uniform pixel,
    clipped to the image."""
    ratio = np.sqrt(1 - lam)
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    cy = rng.randint(0, h)
    cx = rng.randint(0, w)
    yl = int(np.clip(cy - cut_h // 2, 0, h))
    yh = int(np.clip(cy + (cut_h + 1) // 2, 0, h))
    xl = int(np.clip(cx - cut_w // 2, 0, w))
    xh = int(np.clip(cx + (cut_w + 1) // 2, 0, w))
    return yl, yh, xl, xh


def sample_mixup(rng: np.random.RandomState, image_hw: tuple[int, int], *, mixup_alpha: float = 0.8,
                 cutmix_alpha: float = 1.0, prob: float = 1.0, switch_prob: float = 0.5,
                 correct_lam: bool = True) -> MixupDecision:
    """timm ``Mixup._params_per_batch`` then, for CutMix, ``cutmix_bbox_and_lam`` (no ``cutmix_minmax``).

    Draw order (as timm): ``rand() < prob``; if both are on ``rand() < switch_prob`` picks CutMix; ``beta(α, α)``;
    CutMix box centre ``randint(0, H)`` then ``randint(0, W)``.

    Args:
      rng: ``np.random.RandomState`` (timm uses the global one: ``np.random.seed(s)`` there equals
        ``RandomState(s)`` here).
      image_hw: ``(H, W)``. mixup_alpha / cutmix_alpha: Beta parameters (0 = off; one must be > 0).
      prob: probability of mixing the batch. switch_prob: probability of CutMix when both are on.
      correct_lam: recompute ``lam`` from the clipped box area.
    Raises:
      ValueError: both alphas 0.
    """
    if not (mixup_alpha > 0 or cutmix_alpha > 0):
        raise ValueError("sample_mixup: one of mixup_alpha > 0, cutmix_alpha > 0 must hold")
    lam, use_cutmix = 1.0, False
    if rng.rand() < prob:
        if mixup_alpha > 0 and cutmix_alpha > 0:
            use_cutmix = bool(rng.rand() < switch_prob)
            lam = rng.beta(cutmix_alpha, cutmix_alpha) if use_cutmix else rng.beta(mixup_alpha, mixup_alpha)
        elif mixup_alpha > 0:
            lam = rng.beta(mixup_alpha, mixup_alpha)
        else:
            use_cutmix = True
            lam = rng.beta(cutmix_alpha, cutmix_alpha)
        lam = float(lam)
    if lam == 1.0 or not use_cutmix:
        return MixupDecision(lam, False if lam == 1.0 else use_cutmix, None)
    h, w = image_hw
    yl, yh, xl, xh = _rand_bbox(rng, h, w, lam)
    if correct_lam:
        lam = 1.0 - (yh - yl) * (xh - xl) / float(h * w)
    return MixupDecision(float(lam), True, (yl, yh, xl, xh))


def apply_mixup(x: np.ndarray, decision: MixupDecision, spatial_axes: tuple[int, int] = (-3, -2)) -> np.ndarray:
    """timm ``_mix_batch`` on a copy of ``x`` (batch on axis 0): CutMix pastes the box from ``x[::-1]``; Mixup
    returns ``x·lam + x[::-1]·(1 − lam)``; ``lam == 1`` returns ``x`` unchanged. Returns ``x``'s dtype."""
    x = np.asarray(x)
    if decision.lam == 1.0:
        return x
    flipped = x[::-1]
    if decision.use_cutmix:
        out = x.copy()
        yl, yh, xl, xh = decision.bbox
        idx = [slice(None)] * x.ndim
        idx[spatial_axes[0]] = slice(yl, yh)
        idx[spatial_axes[1]] = slice(xl, xh)
        out[tuple(idx)] = flipped[tuple(idx)]
        return out
    lam = np.asarray(decision.lam, x.dtype)
    return (x * lam + flipped * (np.asarray(1.0, x.dtype) - lam)).astype(x.dtype)


def mixup_batch(x: np.ndarray, labels: np.ndarray, *, num_classes: int, rng: np.random.RandomState,
                mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0, switch_prob: float = 0.5,
                label_smoothing: float = 0.1, correct_lam: bool = True,
                spatial_axes: tuple[int, int] = (-3, -2)) -> tuple[np.ndarray, np.ndarray, float]:
    """timm ``Mixup(mode='batch')(x, target)``: ``(mixed x, soft targets (B, K) float32, lam)``.

    Raises:
      ValueError: an odd batch (timm asserts an even one), bad labels, both alphas 0.
    """
    x = np.asarray(x)
    if x.shape[0] % 2:
        raise ValueError(f"mixup_batch needs an even batch size, got {x.shape[0]}")
    h, w = x.shape[spatial_axes[0]], x.shape[spatial_axes[1]]
    d = sample_mixup(rng, (h, w), mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob,
                     switch_prob=switch_prob, correct_lam=correct_lam)
    return apply_mixup(x, d, spatial_axes), mixup_target(labels, num_classes, d.lam, label_smoothing), d.lam
