"""Tasks: what a batch holds, the loss, and how evaluation counts. A task is a frozen (hashable) dataclass, so it
can be a static argument of the jitted steps.

* :class:`EventTask` — event frames: MSE between firing rates and one-hot labels (official MA-SNN) or softmax
  cross-entropy; evaluation over ``n`` windows per recording, a recording correct when more than half of its
  windows are (the official vote, ``MA_SNN/*/CNN/main.py``).
* :class:`ImageTask` — still images: softmax cross-entropy with label smoothing (``Att_Res_SNN/train_amp.py``,
  ε = 0.1), top-1 and top-5 over every image once.

:func:`task_from_config` picks one from the model's ``input_kind`` and ``config.train``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

__all__ = ["LOSSES", "loss_fn", "soft_target_cross_entropy", "EventTask", "ImageTask", "task_from_config"]

LOSSES = ("mse", "cross_entropy")


def loss_fn(kind: str, outputs: jax.Array, labels: jax.Array, num_classes: int,
            label_smoothing: float = 0.0) -> jax.Array:
    """Per-sample loss, ``(B,)`` float32.

    Args:
      kind: 'mse' (mean over classes of the squared difference between the output and the one-hot label, as
        ``nn.MSELoss``) or 'cross_entropy' (softmax cross-entropy on the outputs).
      outputs: ``(B, num_classes)``; labels: ``(B,)`` int.
      label_smoothing: ε: targets ``(1 − ε)·onehot + ε/K`` (cross-entropy only; the official
        ``LabelSmoothingCrossEntropy`` of Att-Res-SNN).
    Raises:
      ValueError: unknown kind (names ``config.train.loss``).
    """
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    outputs = outputs.astype(jnp.float32)
    if kind == "mse":
        return jnp.mean(jnp.square(outputs - onehot), axis=-1)
    if kind == "cross_entropy":
        if label_smoothing:
            onehot = optax.smooth_labels(onehot, label_smoothing)
        return optax.softmax_cross_entropy(outputs, onehot)
    raise ValueError(f"config.train.loss must be one of {LOSSES}, got {kind!r}")


def soft_target_cross_entropy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-sample ``Σ_k −t_k · log_softmax(outputs)_k``, ``(B,)`` float32: timm's ``SoftTargetCrossEntropy``
    (``timm/loss/cross_entropy.py``) before its batch mean; the Spikformer training loss on Mixup/CutMix targets
    (:mod:`masnn_jax.train.mixing`). outputs, targets: ``(B, K)``."""
    logp = jax.nn.log_softmax(outputs.astype(jnp.float32), axis=-1)
    return -jnp.sum(targets.astype(jnp.float32) * logp, axis=-1)


def _train_loss(task, outputs, labels, soft_target):
    """Mean training loss and accuracy: soft-target cross-entropy when ``soft_target`` ``(B, K)`` is given (Mixup /
    CutMix; label smoothing already inside), else the task's loss; accuracy against ``labels`` (argmax)."""
    if soft_target is not None:
        loss = soft_target_cross_entropy(outputs, soft_target).mean()
    else:
        loss = loss_fn(task.loss, outputs, labels, task.num_classes, task.label_smoothing).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(outputs, -1) == labels)}


@dataclasses.dataclass(frozen=True)
class EventTask:
    """Event-frame classification. Batches: ``{'frames': (B, T, H, W, C), 'label': (B,)}`` (+ ``'soft_target'``
    ``(B, K)`` float32 with Mixup) for training,
    ``{'frames': (B, n, T, H, W, C), 'label', 'mask': (B,)}`` for evaluation (``n`` windows per recording)."""

    num_classes: int
    loss: str = "mse"
    label_smoothing: float = 0.0
    input_key: str = "frames"

    def train_loss(self, outputs, labels, soft_target=None):
        """``(mean loss, {'accuracy'})`` of one training batch; with ``soft_target`` ``(B, K)`` (Mixup on event
        frames, the Spikformer CIFAR10-DVS recipe) the loss is the soft-target cross-entropy."""
        return _train_loss(self, outputs, labels, soft_target)

    def eval_inputs(self, x):
        """``(B, n, ...)`` -> ``(B·n, ...)``: every window is one inference."""
        return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])

    def eval_sums(self, outputs, labels, mask):
        """Sums over the batch (masked rows excluded): ``loss_sum``, ``correct`` (vote), ``count``; and the per-window
        mask for the firing rate."""
        b = labels.shape[0]
        n = outputs.shape[0] // b
        rep = jnp.repeat(labels, n)
        losses = loss_fn(self.loss, outputs, rep, self.num_classes, self.label_smoothing).reshape(b, n)
        correct = (jnp.argmax(outputs, -1) == rep).reshape(b, n)
        voted = correct.sum(1) * 2 > n
        mask = mask.astype(jnp.float32)
        sums = {"loss_sum": jnp.sum(losses.mean(1) * mask), "correct": jnp.sum(voted * mask), "count": jnp.sum(mask)}
        return sums, jnp.repeat(mask, n)


@dataclasses.dataclass(frozen=True)
class ImageTask:
    """Image classification. Batches: ``{'image': (B, H, W, C), 'label': (B,)}`` (+ ``'soft_target'`` ``(B, K)``
    float32 in training with Mixup/CutMix, + ``'mask'`` for evaluation)."""

    num_classes: int
    loss: str = "cross_entropy"
    label_smoothing: float = 0.1
    input_key: str = "image"

    def train_loss(self, outputs, labels, soft_target=None):
        """``(mean loss, {'accuracy'})`` (top-1 of the training batch against ``labels``); with ``soft_target``
        ``(B, K)`` (Mixup/CutMix targets) the loss is timm's soft-target cross-entropy."""
        return _train_loss(self, outputs, labels, soft_target)

    def eval_inputs(self, x):
        return x

    def eval_sums(self, outputs, labels, mask):
        """``loss_sum``, ``correct`` (top-1), ``correct_top5``, ``count`` over the unmasked rows."""
        mask = mask.astype(jnp.float32)
        losses = loss_fn(self.loss, outputs, labels, self.num_classes, self.label_smoothing)
        k = min(5, outputs.shape[-1])
        top = jax.lax.top_k(outputs.astype(jnp.float32), k)[1]
        in_top = jnp.any(top == labels[:, None], axis=-1)
        top1 = jnp.argmax(outputs, -1) == labels
        sums = {"loss_sum": jnp.sum(losses * mask), "correct": jnp.sum(top1 * mask),
                "correct_top5": jnp.sum(in_top * mask), "count": jnp.sum(mask)}
        return sums, mask


def task_from_config(train_config, input_kind: str, num_classes: int):
    """The task for a model of ``input_kind`` ('frames' | 'image') with ``config.train.loss`` (default 'mse' for
    frames, 'cross_entropy' for images) and ``config.train.label_smoothing`` (default 0 / 0.1).

    Raises:
      ValueError: unknown loss or input kind, label smoothing outside [0, 1) (naming the key).
    """
    if input_kind not in ("frames", "image"):
        raise ValueError(f"model input_kind must be 'frames' or 'image', got {input_kind!r}")
    default_loss = "mse" if input_kind == "frames" else "cross_entropy"
    loss = train_config.get("loss", default_loss) or default_loss
    if loss not in LOSSES:
        raise ValueError(f"config.train.loss must be one of {LOSSES}, got {loss!r}")
    smoothing = train_config.get("label_smoothing", None)
    smoothing = (0.0 if input_kind == "frames" else 0.1) if smoothing is None else float(smoothing)
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"config.train.label_smoothing must be in [0, 1), got {smoothing!r}")
    cls = EventTask if input_kind == "frames" else ImageTask
    return cls(num_classes=int(num_classes), loss=loss, label_smoothing=smoothing)
