"""Mixup / CutMix in training: ``config.train.mixup`` read, checked and applied to each process's host batch.

The Spikformer recipes (Zhou et al., ICLR 2023; spec ``shared/specs/spikformer.md`` §4) train with timm's
``Mixup(mode='batch')`` + ``SoftTargetCrossEntropy``: timm mixes the batch of each GPU on the host before the
forward pass, pairing every sample with the reversed batch (``flip(0)``), and the loss is the cross-entropy against
soft targets that carry the label smoothing. :class:`MixupSpec` holds ``config.train.mixup``; :func:`mix_batch`
applies it to one process's batch with the draws of :mod:`masnn_jax.data.images.mixup` (timm's order) from a NumPy
stream that is a function of ``(config.seed, epoch, batch index, process index)`` — so a resumed run draws exactly
what an uninterrupted one does. The batch always gets ``'soft_target'`` ``(B, num_classes)`` float32 when mixing is
configured, also from ``off_epoch`` on (then the smoothed one-hot, as timm with ``mixup_enabled = False``), so the
jitted step's input structure is fixed for the whole run.

``config.train.mixup`` keys (defaults in :func:`masnn_jax.config.train_defaults`, mixing off):

* ``mixup_alpha`` / ``cutmix_alpha``: Beta(α, α) parameters, 0 = that kind off (both 0 = no mixing at all).
* ``prob``: probability that a batch is mixed; ``switch_prob``: probability of CutMix when both are on.
* ``mode``: ``'batch'`` (one ``lam`` per batch; the only mode implemented).
* ``off_epoch``: from this 0-based epoch on, no mixing (0 or None = never); timm's ``mixup_off_epoch``.

Label smoothing stays ``config.train.label_smoothing`` and goes into the soft targets (timm ``mixup_target``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from masnn_jax.data.images import mixup as mixup_lib

__all__ = ["MixupSpec", "mixup_spec_from_config", "mix_batch", "mixup_rng"]

MODES = ("batch",)
_KEYS = ("mixup_alpha", "cutmix_alpha", "prob", "switch_prob", "mode", "off_epoch")
_STREAM = 0x6D6978  # separates the mixing stream from the data-order stream of the same (seed, epoch)


@dataclasses.dataclass(frozen=True)
class MixupSpec:
    """``config.train.mixup`` checked: see the module docstring for the meaning of each field."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5
    mode: str = "batch"
    off_epoch: int = 0

    @property
    def enabled(self) -> bool:
        """True when mixing is configured at all (either alpha > 0); the batch then always carries soft targets."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def active(self, epoch: int) -> bool:
        """Whether batches of the 0-based ``epoch`` are mixed (configured and before ``off_epoch``)."""
        return self.enabled and not (self.off_epoch and epoch >= self.off_epoch)


def mixup_spec_from_config(train_config, *, loss: str | None = None) -> MixupSpec:
    """``config.train.mixup`` (a ConfigDict or dict; missing = off) -> :class:`MixupSpec`.

    Args:
      train_config: ``config.train``. loss: the resolved ``config.train.loss`` (default: the key's value).
    Raises:
      ValueError: naming the key (``config.train.mixup.<key>``): an unknown key, a negative alpha, ``prob`` or
        ``switch_prob`` outside [0, 1], a ``mode`` other than 'batch', a negative or non-integer ``off_epoch``;
        mixing with ``config.train.loss='mse'`` (soft targets are defined for the cross-entropy only).
    """
    cfg = train_config.get("mixup", None)
    if cfg is None:
        return MixupSpec()
    cfg = dict(cfg)
    unknown = sorted(set(cfg) - set(_KEYS))
    if unknown:
        raise ValueError(f"config.train.mixup has unknown key(s) {unknown}; known: {list(_KEYS)}")
    values = {}
    for key in ("mixup_alpha", "cutmix_alpha", "prob", "switch_prob"):
        raw = cfg.get(key, getattr(MixupSpec, key))
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"config.train.mixup.{key} must be a number, got {raw!r}") from None
        if not np.isfinite(value) or value < 0 or (key in ("prob", "switch_prob") and value > 1):
            bound = "in [0, 1]" if key in ("prob", "switch_prob") else ">= 0 (0 = off)"
            raise ValueError(f"config.train.mixup.{key} must be {bound}, got {raw!r}")
        values[key] = value
    mode = cfg.get("mode", "batch")
    if mode not in MODES:
        raise ValueError(f"config.train.mixup.mode must be one of {MODES} (timm's 'pair'/'elem' are not "
                         f"implemented), got {mode!r}")
    off = cfg.get("off_epoch", 0)
    if off is None:
        off = 0
    if isinstance(off, bool) or not isinstance(off, (int, np.integer)) or off < 0:
        raise ValueError(f"config.train.mixup.off_epoch must be an integer >= 0 (0 or None = never), got {off!r}")
    spec = MixupSpec(mode=mode, off_epoch=int(off), **values)
    loss = train_config.get("loss", None) if loss is None else loss
    if spec.enabled and loss == "mse":
        raise ValueError("config.train.mixup needs config.train.loss='cross_entropy' (soft-target cross-entropy, as "
                         "timm's SoftTargetCrossEntropy); it is not defined for loss 'mse'. Set "
                         "config.train.mixup.mixup_alpha=0 and cutmix_alpha=0, or the loss to 'cross_entropy'.")
    return spec


def mixup_rng(seed: int, epoch: int, batch_index: int, process_index: int = 0) -> np.random.RandomState:
    """The NumPy stream of one batch's mixing draws: a function of ``(seed, epoch, batch index in the epoch,
    process index)`` only (each process mixes its own rows with its own draws, as each timm GPU does)."""
    state = np.random.SeedSequence([_STREAM, int(seed), int(epoch), int(batch_index), int(process_index)])
    return np.random.RandomState(state.generate_state(4))


def mix_batch(batch: dict, spec: MixupSpec, *, input_key: str, num_classes: int, label_smoothing: float,
              rng: np.random.RandomState | None, active: bool = True) -> dict:
    """One process's training batch -> the same dict with ``input_key`` mixed and ``'soft_target'`` added.

    Args:
      batch: ``{input_key: (B, ..., H, W, C), 'label': (B,) int, ...}`` NumPy; images ``(B, H, W, C)``, event
        frames ``(B, T, H, W, C)``; mixing pairs row ``i`` with row ``B - 1 - i`` (timm's ``flip(0)``).
      spec: :class:`MixupSpec` (``spec.enabled`` must hold). input_key: the task's input key.
      num_classes: K. label_smoothing: ε inside the targets (``config.train.label_smoothing``).
      rng: the batch's stream (:func:`mixup_rng`); unused when ``active`` is False.
      active: False from ``off_epoch`` on: inputs unchanged, targets the smoothed one-hot.
    Returns:
      a new dict; ``'soft_target'`` is ``(B, K)`` float32 (timm ``mixup_target``), the input keeps its dtype,
      ``'label'`` is unchanged (training accuracy counts against it).
    Raises:
      ValueError: an odd batch (timm asserts an even one; names ``config.train.batch_size``), CutMix on an input
        with fewer than 3 axes per sample (no spatial H, W), labels outside ``[0, K)``.
    """
    x = np.asarray(batch[input_key])
    labels = np.asarray(batch["label"])
    out = dict(batch)
    if not active:
        out["soft_target"] = mixup_lib.mixup_target(labels, num_classes, 1.0, label_smoothing)
        return out
    if x.shape[0] % 2:
        raise ValueError(f"config.train.mixup needs an even batch on each process (timm pairs sample i with "
                         f"B-1-i), got {x.shape[0]} rows: change config.train.batch_size")
    if spec.cutmix_alpha > 0 and x.ndim < 4:
        raise ValueError(f"config.train.mixup.cutmix_alpha > 0 needs inputs with spatial axes (B, ..., H, W, C); "
                         f"{input_key!r} has shape {x.shape}")
    spatial = (-3, -2)
    hw = (x.shape[-3], x.shape[-2]) if x.ndim >= 4 else (1, 1)
    d = mixup_lib.sample_mixup(rng, hw, mixup_alpha=spec.mixup_alpha, cutmix_alpha=spec.cutmix_alpha,
                               prob=spec.prob, switch_prob=spec.switch_prob, correct_lam=True)
    out[input_key] = mixup_lib.apply_mixup(x, d, spatial)
    out["soft_target"] = mixup_lib.mixup_target(labels, num_classes, d.lam, label_smoothing)
    return out

