"""Event frames the way the official MA-SNN code builds them, in this project's layout.

Official source: ``MA_SNN/DVSGestures/DVS_gesture_data_process/events_timeslices.py``
(``my_chunk_evs_pol_dvs``) and ``DVS_Gesture_dataloders.py`` (``sample_train``,
``sample_test``); the Gait and CIFAR10-DVS folders hold copies of the same functions.

* A frame stack holds integer event counts per (time bin, polarity, y // ds, x // ds); bins are
  ``dt`` long, half-open ``[t0 + i*dt, t0 + (i+1)*dt)``; counts are neither binarised nor
  normalised.
* Training: one window of ``T*dt`` whose start is drawn uniformly from
  ``[t_first, t_last - T*dt)`` (``is_train_Enhanced``), or the first window.
* Test: ``clip`` (here ``n``) windows spread over the recording; a sample counts as correct
  when more than half of its windows are.

Differences from the official code, on purpose:

* layout ``(T, H, W, 2)`` (channels-last, H indexes y, W indexes x). The official stacks are
  ``(T, 2, x, y)``, i.e. transposed in space: a model trained on one layout is not
  interchangeable with the other without a transpose.
* bins start at the window start (the official code re-zeroes the time at the first event
  inside the window, a shift of at most the gap before that event).
* the random training window comes from ``np.random.default_rng([seed, epoch, index])``
  (reproducible; the official code uses the global NumPy RNG).
* recordings shorter than ``T*dt`` give trailing empty frames (the official ``np.random.randint``
  would raise for them in training).
"""

from __future__ import annotations

import numpy as np

from masnn_jax.data.events.core import check_events, polarity_to_index

__all__ = [
    "events_to_frames",
    "train_window_start",
    "spread_window_starts",
    "frames_for_windows",
    "vote_correct",
]


def _check_sensor_size(sensor_size) -> tuple[int, int]:
    if (
        not isinstance(sensor_size, (tuple, list))
        or len(sensor_size) != 2
        or not all(isinstance(s, (int, np.integer)) and s > 0 for s in sensor_size)
    ):
        raise ValueError(
            f"sensor_size must be (H, W) positive integers (rows, columns), got {sensor_size!r}; "
            "note tonic's (W, H, P) triple is not accepted here"
        )
    return int(sensor_size[0]), int(sensor_size[1])


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def events_to_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int],
    *,
    T: int,
    dt_us: int,
    ds: int = 1,
    t_start_us: int | None = None,
    what: str = "events",
) -> np.ndarray:
    """Counts events per polarity in ``T`` consecutive bins of ``dt_us`` after downsampling.

    Bin i holds the events with ``t_start_us + i*dt_us <= t < t_start_us + (i+1)*dt_us``, at
    pixel ``(y // ds, x // ds)`` and channel 0 (OFF) / 1 (ON). Events before the first bin or
    after the last are ignored; bins without events (e.g. after the end of a recording shorter
    than ``T*dt_us``) are all-zero frames. Event order does not matter (unsorted input gives the
    same counts as sorted input). When H or W is not a multiple of ``ds``, the output has
    ``H // ds`` rows / ``W // ds`` columns and events in the incomplete last block are dropped.

    Args:
      events: ``(N,)`` structured array with fields x, y (pixels), p (bool, {0,1} or {-1,+1})
        and t (µs).
      sensor_size: ``(H, W)``: events must satisfy ``0 <= y < H`` and ``0 <= x < W``.
      T: number of bins.
      dt_us: bin length in µs (positive integer).
      ds: spatial downsampling factor (positive integer).
      t_start_us: start of the first bin in µs; ``None`` = the earliest event (0 if empty).
      what: name of the source used in error messages (e.g. a file path).

    Returns:
      ``(T, H // ds, W // ds, 2)`` float32 event counts.

    Raises:
      TypeError / ValueError: not an event array, missing field, bad polarity encoding,
        bad ``sensor_size``/``T``/``dt_us``/``ds``, or events outside the sensor (naming the
        field, the offending range and ``what``).

    Source: ``my_chunk_evs_pol_dvs`` in the official ``events_timeslices.py`` (binning and
    ``x // ds`` downsampling); layout and polarity channel order are this project's.
    """
    check_events(events, what=what)
    H, W = _check_sensor_size(sensor_size)
    T = _check_positive_int("T", T)
    dt_us = _check_positive_int("dt_us", dt_us)
    ds = _check_positive_int("ds", ds)
    hs, ws = H // ds, W // ds
    if hs == 0 or ws == 0:
        raise ValueError(f"ds={ds} is larger than the sensor {sensor_size}")
    out = np.zeros((T, hs, ws, 2), np.float32)
    if events.shape[0] == 0:
        return out
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    bad = (x < 0) | (x >= W) | (y < 0) | (y >= H)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what}: {int(bad.sum())} event(s) outside the sensor (H, W) = ({H}, {W}): "
            f"x in [{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}]; first bad event #{i} "
            f"(x={x[i]}, y={y[i]})"
        )
    p = polarity_to_index(events["p"], what=f"{what}: field 'p'")
    t = events["t"]
    if np.issubdtype(t.dtype, np.floating):
        t = np.floor(t)
    t = t.astype(np.int64)
    t0 = int(t.min()) if t_start_us is None else int(t_start_us)
    b = np.floor_divide(t - t0, dt_us)
    yy, xx = y // ds, x // ds
    keep = (b >= 0) & (b < T) & (yy < hs) & (xx < ws)
    flat = ((b[keep] * hs + yy[keep]) * ws + xx[keep]) * 2 + p[keep]
    counts = np.bincount(flat, minlength=T * hs * ws * 2)
    return counts.reshape(T, hs, ws, 2).astype(np.float32)


def train_window_start(t_first: int, t_last: int, *, T: int, dt_us: int,
                       rng: np.random.Generator | None) -> int:
    """Start (µs) of a training window of ``T*dt_us``.

    With ``rng``: uniform integer in ``[t_first, t_last - T*dt_us)`` (the official
    ``np.random.randint(tbegin, tend)``); when the recording is not longer than the window,
    ``t_first``. Without ``rng``: ``t_first`` (official ``is_train_Enhanced=False``).
    """
    hi = int(t_last) - T * dt_us
    if rng is None or hi <= t_first:
        return int(t_first)
    return int(rng.integers(int(t_first), hi))


def spread_window_starts(t_first: int, t_last: int, *, T: int, dt_us: int, n: int) -> np.ndarray:
    """Starts (µs) of ``n`` test windows of ``T*dt_us`` spread over ``[t_first, t_last]``.

    Reproduces ``sample_test`` of the official loaders: with ``L = t_last - t_first`` and
    ``w = T*dt_us``, window j starts at ``j*(w - floor((n*w - L)/n))`` when the windows overlap
    (``n*w > L``), else at ``j*(w + floor((L - n*w)/n))``; a window that would end after
    ``t_last`` is moved back to end there. Offsets are relative to ``t_first``; a window that
    would start before ``t_first`` (recording shorter than ``w``) starts at ``t_first`` (the
    official code then re-zeroes at the first event, which is the same).

    Returns:
      ``(n,)`` int64 absolute start times in µs.
    """
    n = _check_positive_int("n", n)
    w = T * dt_us
    length = int(t_last) - int(t_first)
    if n * w - length > 0:
        step = w - int(np.floor((n * w - length) / n))
    else:
        step = w + int(np.floor((length - n * w) / n))
    starts = np.arange(n, dtype=np.int64) * step
    starts = np.where(starts + w > length, length - w, starts)
    return np.maximum(starts, 0) + int(t_first)


def frames_for_windows(events: np.ndarray, sensor_size: tuple[int, int], starts, *, T: int,
                       dt_us: int, ds: int = 1, what: str = "events") -> np.ndarray:
    """Frame stacks for several windows: ``(len(starts), T, H // ds, W // ds, 2)`` float32.

    Each window is :func:`events_to_frames` with ``t_start_us = starts[j]``.
    """
    return np.stack([
        events_to_frames(events, sensor_size, T=T, dt_us=dt_us, ds=ds, t_start_us=int(s), what=what)
        for s in np.asarray(starts).reshape(-1)
    ])


def vote_correct(window_predictions, labels) -> np.ndarray:
    """Official test rule: a sample is correct when more than half of its windows are.

    Args:
      window_predictions: ``(B, n)`` integer class predictions, one per test window.
      labels: ``(B,)`` integer labels.

    Returns:
      ``(B,)`` bool array: ``mean_j(window_predictions[:, j] == labels) > 0.5``.

    Raises:
      ValueError: shapes that do not match.

    Source: ``test`` in the official ``DVS_Gesture_utils/test.py`` (``test_clip_correct /
    config.clip > 0.5``).
    """
    pred = np.asarray(window_predictions)
    labels = np.asarray(labels)
    if pred.ndim != 2 or labels.ndim != 1 or pred.shape[0] != labels.shape[0]:
        raise ValueError(
            f"vote_correct: expected predictions (B, n) and labels (B,), got {pred.shape} and {labels.shape}"
        )
    return (pred == labels[:, None]).mean(axis=1) > 0.5
