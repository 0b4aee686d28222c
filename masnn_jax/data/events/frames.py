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

Window rules (``window_rule``, :data:`WINDOW_RULES`):

* ``'official'`` (default) reproduces the official files bit for bit (given the same window start):

  - training window ``[s, s + T*dt)``: its bins start at the **first event inside the window**
    (``sample_train`` re-zeroes the time at ``tmad[0, 0]`` and ``my_chunk_evs_pol_dvs`` starts
    its bins at ``data[0][0]``); a window without events gives all-zero frames;
  - test windows (``sample_test``): the events at the recording's **last timestamp are dropped**
    (``get_tmad_slice(times, addrs, tbegin, tend - tbegin)`` keeps ``t < tend``); with ``L`` the
    last remaining timestamp minus the first, window ``j`` starts at the spread offset and is
    moved back to end at ``L`` when it would end later, **without** being clamped at 0; each
    window holds the kept events in ``[start, start + T*dt)`` and its bins start at its first
    event. Recordings shorter than ``T*dt`` therefore give ``n`` identical windows that lack
    the events at the last two timestamps;
  - non-random training windows start at the first event (Gait's ``tbegin``).
* ``'masnn'`` (the earlier masnn-jax placement): bins start at the window start; test windows
  spread over ``[t_first, t_last]`` (last timestamp kept), clamped to start at ``t_first``.
  It keeps every event of short recordings and puts an event's bin at a fixed offset from
  the window start (the official re-zeroing shifts every bin by the gap before the first
  event, so an identical gesture framed twice can land in different bins). Use it when you do
  not need parity with the official numbers.

Both rules draw the random training start uniformly from ``[t_first, t_last - T*dt)``
(``np.random.randint(tbegin, tend)``; Gait's ``random.randint`` includes ``tend``); when the
recording is not longer than the window (the official code raises there) the start is
``t_first``. The draw comes from ``np.random.default_rng([seed, epoch, index])`` (reproducible;
the official code uses the global RNG). Layout ``(T, H, W, 2)`` (channels-last, H indexes y,
W indexes x); the official stacks are ``(T, 2, x, y)``, transposed in space.
"""

from __future__ import annotations

import numpy as np

from masnn_jax.data.events.core import DataFormatError, check_events, polarity_to_index

__all__ = [
    "WINDOW_RULES",
    "events_to_frames",
    "train_window_start",
    "spread_window_starts",
    "official_window_starts",
    "frames_for_windows",
    "frames_train_window",
    "frames_test_windows",
    "vote_correct",
]

#: ``config.data.window_rule`` values: 'official' (default, the official files' placement) | 'masnn'.
WINDOW_RULES = ("official", "masnn")


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
    if events.shape[0] == 0:
        return bin_counts(events, np.zeros(0, np.int64), (H, W), T=T, ds=ds, what=what)
    t = events["t"]
    if np.issubdtype(t.dtype, np.floating):
        t = np.floor(t)
    t = t.astype(np.int64)
    t0 = int(t.min()) if t_start_us is None else int(t_start_us)
    return bin_counts(events, np.floor_divide(t - t0, dt_us), (H, W), T=T, ds=ds, what=what)


def bin_counts(events: np.ndarray, bins: np.ndarray, sensor_size: tuple[int, int], *, T: int, ds: int,
               what: str = "events") -> np.ndarray:
    """Counts of ``events`` per frame ``bins[k]``, pixel ``(y // ds, x // ds)`` and polarity channel.

    Args:
      events: ``(N,)`` structured array (x, y, p fields; already checked with ``check_events``).
      bins: ``(N,)`` int64 frame index of each event; events with a bin outside ``[0, T)`` are dropped.
      sensor_size: ``(H, W)`` pixels; T, ds: positive ints (checked by the caller).
      what: the source named in errors.
    Returns:
      ``(T, H // ds, W // ds, 2)`` float32 (channel 0 = OFF, 1 = ON); events in an incomplete last ``ds`` block
      are dropped.
    Raises:
      ValueError: ``ds`` larger than the sensor, events outside the sensor (count, ranges and the first bad event,
        naming ``what``), bad polarity encoding.
    """
    H, W = int(sensor_size[0]), int(sensor_size[1])
    hs, ws = H // ds, W // ds
    if hs == 0 or ws == 0:
        raise ValueError(f"ds={ds} is larger than the sensor {(H, W)}")
    out_shape = (T, hs, ws, 2)
    if events.shape[0] == 0:
        return np.zeros(out_shape, np.float32)
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
    yy, xx = y // ds, x // ds
    keep = (bins >= 0) & (bins < T) & (yy < hs) & (xx < ws)
    flat = ((bins[keep] * hs + yy[keep]) * ws + xx[keep]) * 2 + p[keep]
    return np.bincount(flat, minlength=T * hs * ws * 2).reshape(out_shape).astype(np.float32)


def train_window_start(t_first: int, t_last: int, *, T: int, dt_us: int,
                       rng: np.random.Generator | None, include_high: bool = False) -> int:
    """Start (µs) of a training window of ``T*dt_us``.

    With ``rng``: uniform integer in ``[t_first, t_last - T*dt_us)`` (the official
    ``np.random.randint(tbegin, tend)`` of Gesture / CIFAR10-DVS), or ``[t_first, t_last - T*dt_us]`` with
    ``include_high`` (Gait's ``random.randint``); when that range is empty (the official code raises),
    ``t_first``. Without ``rng``: ``t_first`` (official ``is_train_Enhanced=False``).
    """
    hi = int(t_last) - T * dt_us + (1 if include_high else 0)
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
    return np.maximum(_spread_offsets(int(t_last) - int(t_first), T * dt_us, _check_positive_int("n", n)), 0) \
        + int(t_first)


def _spread_offsets(length: int, w: int, n: int) -> np.ndarray:
    if n * w - length > 0:
        step = w - int(np.floor((n * w - length) / n))
    else:
        step = w + int(np.floor((length - n * w) / n))
    starts = np.arange(n, dtype=np.int64) * step
    return np.where(starts + w > length, length - w, starts)


def official_window_starts(t_first: int, t_end: int, *, T: int, dt_us: int, n: int) -> np.ndarray:
    """Starts (µs) of the official ``sample_test`` windows: the spread of :func:`spread_window_starts` over
    ``[t_first, t_end]`` without the clamp at ``t_first`` (a window of a recording shorter than ``T*dt_us`` starts
    before ``t_first`` and ends at ``t_end``). ``t_end`` is the last timestamp the official code keeps, i.e. the
    last one *before* the recording's final timestamp.

    Returns:
      ``(n,)`` int64 absolute start times in µs (may be < ``t_first``).
    """
    return _spread_offsets(int(t_end) - int(t_first), T * dt_us, _check_positive_int("n", n)) + int(t_first)


def _window(events: np.ndarray, start: int, w: int, t: np.ndarray | None = None) -> np.ndarray:
    t = np.ascontiguousarray(events["t"]) if t is None else t  # searchsorted copies a strided field each call
    return events[np.searchsorted(t, start, "left"):np.searchsorted(t, start + w, "left")]


def frames_train_window(events: np.ndarray, sensor_size: tuple[int, int], start: int, *, T: int, dt_us: int,
                        ds: int = 1, rule: str = "official", what: str = "events", _t=None) -> np.ndarray:
    """Frames ``(T, H // ds, W // ds, 2)`` float32 of the training window ``[start, start + T*dt_us)``.

    ``events`` must be sorted by t. ``rule='official'``: bins start at the first event inside the window (all
    zeros when it holds none), as ``sample_train`` + ``my_chunk_evs_pol_dvs`` in the official
    ``MA_SNN/*/*_data_process/`` files; ``'masnn'``: bins start at ``start``.

    Raises:
      ValueError: unknown ``rule``; as :func:`events_to_frames`.
    """
    _check_rule(rule)
    if rule == "masnn":
        return events_to_frames(events, sensor_size, T=T, dt_us=dt_us, ds=ds, t_start_us=int(start), what=what)
    win = _window(events, int(start), T * dt_us, _t)
    return events_to_frames(win, sensor_size, T=T, dt_us=dt_us, ds=ds,
                            t_start_us=int(win["t"][0]) if win.shape[0] else int(start), what=what)


def frames_test_windows(events: np.ndarray, sensor_size: tuple[int, int], *, T: int, dt_us: int, n: int, ds: int = 1,
                rule: str = "official", what: str = "events") -> np.ndarray:
    """Frames ``(n, T, H // ds, W // ds, 2)`` float32 of the ``n`` test windows of a recording (sorted by t).

    ``rule='official'`` (``sample_test`` of the official loaders): drop the events at the last timestamp, place
    the windows with :func:`official_window_starts`, bin each window from its first event. ``'masnn'``:
    :func:`spread_window_starts` over ``[t_first, t_last]``, bins from each window start.

    Raises:
      DataFormatError: ``rule='official'`` and every event shares one timestamp (the official code keeps no event
        and crashes), naming ``what``. ValueError: unknown ``rule``.
    """
    _check_rule(rule)
    t = events["t"]
    if t.size == 0:
        raise DataFormatError(f"{what}: no events to frame")
    if rule == "masnn":
        starts = spread_window_starts(int(t[0]), int(t[-1]), T=T, dt_us=dt_us, n=n)
        return frames_for_windows(events, sensor_size, starts, T=T, dt_us=dt_us, ds=ds, what=what)
    kept = events[: np.searchsorted(t, t[-1], "left")]
    if kept.shape[0] == 0:
        raise DataFormatError(
            f"{what}: all {t.size} events share one timestamp ({int(t[0])} us); the official test windows drop the "
            "events at the last timestamp and would hold none (window_rule='masnn' keeps them)")
    starts = official_window_starts(int(kept["t"][0]), int(kept["t"][-1]), T=T, dt_us=dt_us, n=n)
    kt = np.ascontiguousarray(kept["t"])
    return np.stack([frames_train_window(kept, sensor_size, int(s), T=T, dt_us=dt_us, ds=ds, rule="official",
                                         what=what, _t=kt) for s in starts])


def _check_rule(rule: str) -> None:
    if rule not in WINDOW_RULES:
        raise ValueError(f"config.data.window_rule must be one of {WINDOW_RULES}, got {rule!r}")


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
