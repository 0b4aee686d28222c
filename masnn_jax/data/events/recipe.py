"""The CIFAR10-DVS data recipe of the official Spikformer code: frames by event number and ``SNNAugmentWide``.

Sources (ZK-Zhou/spikformer at b196880): ``cifar10dvs/train.py`` (``load_data``: SpikingJelly
``CIFAR10DVS(data_type='frame', frames_number=T, split_by='number')``; ``train_one_epoch``: per sample
``RandomHorizontalFlip(p=0.5)`` then ``SNNAugmentWide()`` on the whole ``[T, C, H, W]`` clip) and
``cifar10dvs/autoaugment.py`` (``SNNAugmentWide``, ``_apply_op``). SpikingJelly (2.0.0 here; 0.0.0.0.12 in the
official README, same rule): ``spikingjelly/datasets/utils.py`` ``cal_fixed_frames_number_segment_index`` and
``integrate_events_segment_to_frame``.

This file is an independent NumPy implementation (no torch / torchvision); the tests compare it with SpikingJelly's
functions and with torch's ``grid_sample`` used the way torchvision's tensor ``affine`` / ``rotate`` use it.
"""

from __future__ import annotations

import math

import numpy as np

from masnn_jax.data.events.core import check_events
from masnn_jax.data.events.frames import bin_counts

__all__ = ["FRAME_MODES", "AUGMENT_MODES", "SNN_AUGMENT_OPS", "frames_by_number", "number_segments",
           "affine_nearest", "snn_augment_wide", "hflip_then_snn_augment_wide"]

#: ``config.data.frame_mode`` values: 'time' (``T`` bins of ``dt_ms`` inside windows, the MA-SNN loaders) |
#: 'number' (SpikingJelly ``split_by='number'``: ``T`` frames with equal event counts over the whole recording).
FRAME_MODES = ("time", "number")
#: ``config.data.augment`` values: 'none' | 'snn_augment_wide' (Spikformer CIFAR10-DVS: hflip 0.5 + SNNAugmentWide).
AUGMENT_MODES = ("none", "snn_augment_wide")
#: ``SNNAugmentWide._augmentation_space`` keys, in the official order (op index drawn uniformly from it).
SNN_AUGMENT_OPS = ("Identity", "ShearX", "TranslateX", "TranslateY", "Rotate", "Cutout")
_NUM_BINS = 31


def number_segments(n_events: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Event index ranges ``[j_l[i], j_r[i])`` of the ``T`` frames of SpikingJelly's ``split_by='number'``.

    Frame i holds events ``i*d`` to ``(i+1)*d - 1`` with ``d = n_events // T``; the last frame also takes the
    remainder (``j_r[T-1] = n_events``). With fewer events than frames, ``d = 0`` and every event lands in the
    last frame.

    Returns:
      ``(j_l, j_r)``, two ``(T,)`` int64 arrays.

    Raises:
      ValueError: ``T`` not a positive integer or ``n_events`` negative.

    Source: ``cal_fixed_frames_number_segment_index`` (``split_by == 'number'``) in SpikingJelly's
    ``datasets/utils.py``.
    """
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0:
        raise ValueError(f"config.data.T must be a positive integer, got {T!r}")
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    d = int(n_events) // int(T)
    j_l = np.arange(T, dtype=np.int64) * d
    j_r = j_l + d
    j_r[-1] = int(n_events)
    return j_l, j_r


def frames_by_number(events: np.ndarray, sensor_size: tuple[int, int], *, T: int, ds: int = 1,
                     what: str = "events") -> np.ndarray:
    """Frames ``(T, H // ds, W // ds, 2)`` float32 holding equal numbers of events, in the events' given order.

    Frame i counts, per pixel ``(y // ds, x // ds)`` and polarity channel (0 = OFF / p == 0, 1 = ON), the events of
    index range :func:`number_segments` ``(N, T)[i]`` of ``events`` **as ordered** (SpikingJelly integrates the
    file order; sort first if you want time order). Bit-identical (after the layout change ``(T, 2, H, W)`` ->
    ``(T, H, W, 2)`` and the float64 -> float32 cast, exact for counts below 2**24) to SpikingJelly's
    ``integrate_events_by_fixed_frames_number(events, 'number', T, H, W)`` for ``ds = 1``; ``ds > 1`` sums
    ``ds x ds`` blocks and drops an incomplete last block (as :func:`~masnn_jax.data.events.frames.events_to_frames`).

    Args:
      events: ``(N,)`` structured array with fields x, y (pixels), p, t (:data:`~masnn_jax.data.events.EVENT_DTYPE`).
      sensor_size: ``(H, W)`` pixels; events must lie inside.
      T: number of frames (positive int). ds: spatial downsampling (positive int).
      what: the source named in errors.

    Returns:
      ``(T, H // ds, W // ds, 2)`` float32 event counts (all zero for no events).

    Raises:
      TypeError / ValueError: not an event array, bad ``T`` / ``ds`` / ``sensor_size``, events outside the sensor
        (naming ``what``).

    Source: ``integrate_events_by_fixed_frames_number`` / ``integrate_events_segment_to_frame`` in SpikingJelly's
    ``datasets/utils.py``.
    """
    check_events(events, what=what)
    H, W = int(sensor_size[0]), int(sensor_size[1])
    if isinstance(ds, bool) or not isinstance(ds, (int, np.integer)) or ds <= 0:
        raise ValueError(f"config.data.ds must be a positive integer, got {ds!r}")
    if (H // ds) == 0 or (W // ds) == 0:
        raise ValueError(f"config.data.ds={ds} is larger than the sensor {(H, W)}")
    _, j_r = number_segments(events.shape[0], T)
    # frame index of event k: the i with j_l[i] <= k < j_r[i] (segments are contiguous and cover [0, N))
    frame = np.searchsorted(j_r, np.arange(events.shape[0]), side="right").astype(np.int64)
    return bin_counts(events, frame, (H, W), T=T, ds=ds, what=what)


# ---------------------------------------------------------------------------------------------------------------
# SNNAugmentWide


def _inverse_affine(angle_deg: float, translate: tuple[float, float], shear_deg: tuple[float, float]) -> list:
    """The 2x3 inverse map (output centred coords -> input centred coords) torchvision builds for a centred affine
    with scale 1 (``_get_inverse_affine_matrix``: rotation, then shear, then translation, inverted)."""
    rot = math.radians(angle_deg)
    sx, sy = math.radians(shear_deg[0]), math.radians(shear_deg[1])
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * (-tx) + m[1] * (-ty)
    m[5] += m[3] * (-tx) + m[4] * (-ty)
    return m


def affine_nearest(frames: np.ndarray, *, angle_deg: float = 0.0, translate: tuple[float, float] = (0.0, 0.0),
                   shear_deg: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Centred affine warp of ``(..., H, W, C)`` frames with nearest sampling and fill 0, same map for all frames.

    Output pixel (row i, column j) has centred coordinates ``x = j - (W-1)/2``, ``y = i - (H-1)/2``; the inverse
    map of :func:`_inverse_affine` gives the input point, which is read at the nearest pixel (round half to even,
    as ``grid_sample(mode='nearest', align_corners=False)``); points outside the frame give 0. The grid is computed
    in float32 in the order torchvision's ``_gen_affine_grid`` + ``grid_sample`` use (for float32 frames), so
    ties broken by float32 rounding fall the same way: equal to that rule, restated with torch's ``grid_sample``, for
    every ShearX / Rotate / Translate magnitude of :func:`snn_augment_wide` on 16x21 (tests) and 128x128 frames
    (measured once); a different platform's float rounding could in principle break a near-tie differently.
    ``angle_deg`` is ``F.affine``'s ``angle`` (clockwise on screen; ``F.rotate(img, a)`` is ``angle_deg=-a``);
    ``shear_deg = (sx, 0)`` shears along x as ``F.affine(..., shear=[sx, 0])``; ``translate = (tx, ty)`` pixels.

    Args:
      frames: ``(..., H, W, C)`` array (any dtype; kept). angle_deg, shear_deg in degrees; translate in pixels.

    Returns:
      the warped frames, same shape and dtype.

    Source: ``torchvision.transforms.functional.affine`` / ``rotate`` on tensors (``_get_inverse_affine_matrix``,
    ``_gen_affine_grid``, ``_apply_grid_transform``), which ``_apply_op`` of the official
    ``cifar10dvs/autoaugment.py`` calls with ``interpolation=NEAREST, fill=None``.
    """
    frames = np.asarray(frames)
    if frames.ndim < 3:
        raise ValueError(f"affine_nearest: frames must be (..., H, W, C), got shape {frames.shape}")
    H, W = frames.shape[-3], frames.shape[-2]
    theta = np.asarray(_inverse_affine(angle_deg, translate, shear_deg), np.float32).reshape(2, 3)
    xs = np.linspace(-W * 0.5 + 0.5, W * 0.5 + 0.5 - 1, W, dtype=np.float32)
    ys = np.linspace(-H * 0.5 + 0.5, H * 0.5 + 0.5 - 1, H, dtype=np.float32)
    rescaled = theta.T / np.asarray([0.5 * W, 0.5 * H], np.float32)  # (3, 2)
    gx = xs[None, :] * rescaled[0, 0] + ys[:, None] * rescaled[1, 0] + rescaled[2, 0]
    gy = xs[None, :] * rescaled[0, 1] + ys[:, None] * rescaled[1, 1] + rescaled[2, 1]
    ix = ((gx.astype(np.float32) + np.float32(1)) * np.float32(W) - np.float32(1)) / np.float32(2)
    iy = ((gy.astype(np.float32) + np.float32(1)) * np.float32(H) - np.float32(1)) / np.float32(2)
    ix = np.rint(ix).astype(np.int64)
    iy = np.rint(iy).astype(np.int64)
    inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    out = frames[..., np.clip(iy, 0, H - 1), np.clip(ix, 0, W - 1), :]
    return np.where(inside[..., None], out, np.zeros((), frames.dtype)).astype(frames.dtype, copy=False)


def _cutout(frames: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """RandomErasing(p=1, scale=(0.001, 0.11), ratio=(1, 1), value=0) on ``(..., H, W, C)``: one square for all."""
    H, W = frames.shape[-3], frames.shape[-2]
    for _ in range(10):
        erase_area = H * W * rng.uniform(0.001, 0.11)
        h = int(round(math.sqrt(erase_area)))
        w = int(round(math.sqrt(erase_area)))
        if not (h < H and w < W):
            continue
        i = int(rng.integers(0, H - h + 1))
        j = int(rng.integers(0, W - w + 1))
        out = frames.copy()
        out[..., i:i + h, j:j + w, :] = 0
        return out, (i, j, h, w)
    return frames.copy(), (0, 0, H, W)  # torchvision's fallback erases the whole frame with itself: unchanged


def _linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` (float32) value for value: a float32 step, the first half counted up from
    ``start`` and the rest down from ``end``, each value one rounding of the exact ``start + step * i`` (a fused
    multiply-add). ``np.linspace`` rounds differently, which moves ``int(magnitude)`` of some translations by 1."""
    f = np.float32
    step = np.float64(f((f(end) - f(start)) / f(steps - 1)))
    i = np.arange(steps)
    up = np.float64(f(start)) + step * i
    down = np.float64(f(end)) - step * (steps - 1 - i)
    return np.where(i < steps // 2, up, down).astype(np.float32)


def snn_augment_wide(frames: np.ndarray, rng: np.random.Generator, *, return_op: bool = False):
    """``SNNAugmentWide`` of the official Spikformer CIFAR10-DVS code on one clip ``(T, H, W, C)`` (or any
    ``(..., H, W, C)``): one op and one magnitude drawn for the clip and applied to every frame.

    The op is uniform over :data:`SNN_AUGMENT_OPS`; for the signed ops a magnitude index is uniform over 31 bins of
    ``linspace(-m, m, 31)`` (ShearX m = 0.3, TranslateX/Y m = 5 px, Rotate m = 30 degrees) and the sign is flipped
    with probability 1/2 (the bins are symmetric, so this changes no distribution). ShearX: ``affine`` with shear
    ``degrees(magnitude)`` along x; TranslateX/Y: ``int(magnitude)`` pixels (truncated toward 0: -5..5); Rotate:
    ``rotate(magnitude)``; all nearest, fill 0 (:func:`affine_nearest`). Cutout: RandomErasing p = 1, area
    fraction U(0.001, 0.11), aspect 1 (side ``round(sqrt(area))``, Python rounding), value 0, uniform position
    (the Cutout magnitude is drawn but unused, as in the official code). Identity: unchanged.

    Differs from the official code only in the random stream (NumPy ``rng`` instead of torch's global generator).
    The official ``RandomErasing`` falls back to leaving the clip unchanged (``return 0, 0, H, W, img``) after 10
    failed tries, which cannot happen for a square of at most 11 % of the frame (side < H, W for H, W >= 4).

    Args:
      frames: ``(..., H, W, C)`` array. rng: a NumPy Generator. return_op: also return ``(op, magnitude)``.

    Returns:
      the augmented frames (same shape, dtype), or ``(frames, (op_name, magnitude))``.

    Source: ``SNNAugmentWide.forward`` and ``_apply_op`` in ``cifar10dvs/autoaugment.py`` (ZK-Zhou/spikformer).
    """
    op = SNN_AUGMENT_OPS[int(rng.integers(len(SNN_AUGMENT_OPS)))]
    span = {"ShearX": 0.3, "TranslateX": 5.0, "TranslateY": 5.0, "Rotate": 30.0, "Cutout": None}
    magnitude = 0.0
    if op != "Identity":
        k = int(rng.integers(_NUM_BINS))
        if op == "Cutout":
            magnitude = float(_linspace_f32(1.0, 30.0, _NUM_BINS)[k])
        else:
            m = span[op]
            magnitude = float(_linspace_f32(-m, m, _NUM_BINS)[k])
        if rng.integers(2):
            magnitude = -magnitude
    if op == "Identity":
        out = np.array(frames, copy=True)
    elif op == "ShearX":
        out = affine_nearest(frames, shear_deg=(math.degrees(magnitude), 0.0))
    elif op == "TranslateX":
        out = affine_nearest(frames, translate=(int(magnitude), 0))
    elif op == "TranslateY":
        out = affine_nearest(frames, translate=(0, int(magnitude)))
    elif op == "Rotate":
        out = affine_nearest(frames, angle_deg=-magnitude)
    else:
        out, _ = _cutout(np.asarray(frames), rng)
    return (out, (op, magnitude)) if return_op else out


def hflip_then_snn_augment_wide(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The official per-sample training augmentation of Spikformer on CIFAR10-DVS, on one clip ``(T, H, W, C)``.

    With probability 0.5 the clip is flipped left-right (every frame, ``W`` axis), then :func:`snn_augment_wide`.

    Returns:
      the augmented clip (same shape and dtype).

    Source: ``train_snn_aug = Compose([RandomHorizontalFlip(p=0.5)])`` then ``train_trivalaug = SNNAugmentWide()``
    applied per sample in ``train_one_epoch`` of ``cifar10dvs/train.py``.
    """
    frames = np.asarray(frames)
    if rng.random() < 0.5:
        frames = frames[..., :, ::-1, :]
    return snn_augment_wide(frames, rng)
