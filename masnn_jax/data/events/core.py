"""Event arrays: the structured dtype used everywhere in ``masnn_jax.data`` and checks on it.

An event recording is a 1-D NumPy structured array with the fields ``x``, ``y``, ``p``, ``t``
(the dtype of tonic's own ``tonic.datasets.DVSGesture``: ``x`` int16, ``y`` int16, ``p`` bool,
``t`` int64 in microseconds). ``x`` indexes sensor columns (frame axis W), ``y`` sensor rows
(frame axis H), ``p`` is the polarity (False / 0 = OFF, True / 1 = ON).
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = [
    "EVENT_DTYPE",
    "SIGNED_POLARITY_MODES",
    "DataFormatError",
    "make_events",
    "polarity_to_index",
    "integer_column",
    "check_events",
    "validate_events",
    "sort_events",
]

logger = logging.getLogger("masnn_jax.data")

#: How a ``{-1, +1}`` polarity column maps to channels: ``'off_on'`` (−1 → channel 0 = OFF, +1 → 1 = ON; the
#: default) or ``'official'`` (both → channel 1: the official MA-SNN loaders index ``chunks[i, p]`` with the raw
#: value, and index −1 of a 2-channel axis is channel 1).
SIGNED_POLARITY_MODES = ("off_on", "official")


class DataFormatError(ValueError):
    """A data file exists but is empty, truncated, not in the expected format, or holds values that break one of
    the format's rules (coordinates outside the sensor, a third polarity value, non-finite, non-integral or
    decreasing timestamps, a label window outside its recording). The message names the file, the place in it
    (line, row or byte offset) where there is one, and the rule broken."""

#: The event dtype (same fields, order and types as tonic's DVSGesture dataset): x, y int16
#: (pixels), p bool (True = ON), t int64 (µs).
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])


def make_events(x, y, p, t, *, what: str = "make_events", locate=None,
                signed_polarity: str = "off_on") -> np.ndarray:
    """Builds an event array of dtype :data:`EVENT_DTYPE` from four equal-length 1-D arrays.

    Every value is checked, none is cast silently: coordinates must be finite integers in ``[0, 32767]`` (int16),
    timestamps finite integers in the int64 range (µs), polarities one of the encodings of
    :func:`polarity_to_index`.

    Args:
      x: column indices (pixels), integers (integral floats accepted).
      y: row indices (pixels), integers (integral floats accepted).
      p: polarities; bool, ``{0, 1}`` or ``{-1, +1}`` (see :func:`polarity_to_index`).
      t: timestamps in µs, integers (integral floats accepted).
      what: the source named in error messages (a file path).
      locate: optional ``index -> str`` giving the place of event ``index`` in the source (e.g. ``'line 12'``).
      signed_polarity: mapping of ``{-1, +1}`` polarities (:data:`SIGNED_POLARITY_MODES`).

    Returns:
      ``(N,)`` structured array of dtype :data:`EVENT_DTYPE` (order unchanged, not sorted).

    Raises:
      ValueError: the lengths differ. DataFormatError (a ValueError): a non-finite, non-integral or out-of-range
        value, or an unrecognised polarity encoding; the message names ``what``, the field, the rule and the first
        offending event (via ``locate``).
    """
    x = np.asarray(x).reshape(-1)
    y = np.asarray(y).reshape(-1)
    p = np.asarray(p).reshape(-1)
    t = np.asarray(t).reshape(-1)
    n = x.shape[0]
    if not (y.shape[0] == p.shape[0] == t.shape[0] == n):
        raise ValueError(
            f"{what}: fields x, y, p, t must have equal lengths, got "
            f"{x.shape[0]}, {y.shape[0]}, {p.shape[0]}, {t.shape[0]}"
        )
    out = np.empty(n, dtype=EVENT_DTYPE)
    out["x"] = integer_column(x, what=what, field="x", lo=0, hi=np.iinfo(np.int16).max, locate=locate)
    out["y"] = integer_column(y, what=what, field="y", lo=0, hi=np.iinfo(np.int16).max, locate=locate)
    out["p"] = polarity_to_index(p, what=f"{what}: field 'p'", locate=locate,
                                 signed_polarity=signed_polarity).astype(bool)
    out["t"] = integer_column(t, what=what, field="t", locate=locate)
    return out


def _where(locate, i: int) -> str:
    return locate(int(i)) if locate is not None else f"event #{int(i)}"


def integer_column(v: np.ndarray, *, what: str, field: str, lo: int | None = None, hi: int | None = None,
                   locate=None) -> np.ndarray:
    """Checks that ``v`` holds finite integers (integral floats accepted) in ``[lo, hi]``; returns them as int64.

    Args:
      v: ``(N,)`` numeric array. what: source named in errors. field: field name named in errors.
      lo, hi: inclusive bounds (None: the int64 range). locate: ``index -> str`` place of an event in the source.

    Raises:
      DataFormatError: not numeric, a NaN/inf, a non-integral float, or a value outside the bounds (the message
        names ``what``, ``field``, the rule, how many values break it and the first one with its place).
    """
    v = np.asarray(v).reshape(-1)
    if v.dtype == bool:
        v = v.astype(np.int64)
    if not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
        raise DataFormatError(f"{what}: field '{field}' must be numeric, got dtype {v.dtype}")
    if v.size == 0:
        return np.zeros(0, np.int64)
    if np.issubdtype(v.dtype, np.floating):
        bad = ~np.isfinite(v)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{what}: field '{field}' must be finite: {int(bad.sum())} value(s) are NaN or "
                                  f"infinite, first at {_where(locate, i)} ({v[i].item()})")
        bad = v != np.floor(v)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{what}: field '{field}' must be an integer: {int(bad.sum())} value(s) have a "
                                  f"fractional part, first at {_where(locate, i)} ({v[i].item()!r})")
        lim = 2.0 ** 63
        bad = (v >= lim) | (v < -lim)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{what}: field '{field}' outside the int64 range at {_where(locate, i)} ({v[i].item()!r})")
    elif v.dtype == np.uint64:
        bad = v > np.uint64(np.iinfo(np.int64).max)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{what}: field '{field}' outside the int64 range at {_where(locate, i)} ({v[i].item()})")
    out = v.astype(np.int64)
    if lo is not None or hi is not None:
        bad = np.zeros(out.shape, bool)
        if lo is not None:
            bad |= out < lo
        if hi is not None:
            bad |= out > hi
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(
                f"{what}: field '{field}' must lie in [{lo}, {hi}]: {int(bad.sum())} value(s) outside, first at "
                f"{_where(locate, i)} ({field}={out[i]})")
    return out


def polarity_to_index(p: np.ndarray, *, what: str = "field 'p'", locate=None,
                      signed_polarity: str = "off_on") -> np.ndarray:
    """Maps polarity values to channel indices 0 (OFF) / 1 (ON).

    Accepted encodings: bool (False/True), integers in ``{0, 1}`` and integers in ``{-1, +1}``. An array holding
    only 1s is ON in both integer encodings. For ``{-1, +1}``: ``signed_polarity='off_on'`` (default) maps −1 to
    OFF (channel 0); ``'official'`` maps both values to channel 1, as the official MA-SNN loaders do
    (``np.add.at(chunks, (i, pol, x, y), 1)`` with ``pol = -1`` indexes the last of the 2 channels).

    Args:
      p: ``(N,)`` polarity array (bool, integer or integral float).
      what: name of the source used in error messages.
      locate: optional ``index -> str`` place of an event in the source (for the first bad value).
      signed_polarity: :data:`SIGNED_POLARITY_MODES`.

    Returns:
      ``(N,)`` int64 array of 0/1.

    Raises:
      ValueError (DataFormatError): mixed encodings (e.g. ``{-1, 0, 1}``), other values, NaN or non-integral
        floats, naming ``what`` and the first bad value's place; an unknown ``signed_polarity``.
    """
    if signed_polarity not in SIGNED_POLARITY_MODES:
        raise ValueError(f"config.data.signed_polarity must be one of {SIGNED_POLARITY_MODES}, got {signed_polarity!r}")
    p = np.asarray(p)
    if p.dtype == bool:
        return p.astype(np.int64)
    if p.size == 0:
        return np.zeros(0, np.int64)
    if not (np.issubdtype(p.dtype, np.integer) or np.issubdtype(p.dtype, np.floating)):
        raise DataFormatError(f"{what}: polarity must be bool or integer, got dtype {p.dtype}")
    if np.issubdtype(p.dtype, np.floating):
        bad = ~np.isfinite(p) | (p != np.round(np.where(np.isfinite(p), p, 0)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{what}: polarity values must be integers, got {p[i].item()!r} at {_where(locate, i)}")
    pmin, pmax = p.min(), p.max()
    if pmin >= 0 and pmax <= 1:
        return p.astype(np.int64)
    if pmin >= -1 and pmax <= 1 and not np.any(p == 0):
        if signed_polarity == "official":
            return np.ones(p.shape, np.int64)
        return (p > 0).astype(np.int64)
    values = np.unique(p)[:6].tolist()
    in01 = (p == 0) | (p == 1)
    inpm = (p == -1) | (p == 1)
    bad = ~in01 if in01.sum() >= inpm.sum() else ~inpm
    i = int(np.flatnonzero(bad)[0]) if bad.any() else 0
    raise DataFormatError(
        f"{what}: polarity must take two values, bool, {{0, 1}} or {{-1, +1}}; got values {values}"
        f"{'...' if len(values) == 6 else ''}, first unexpected one {p[i].item()!r} at {_where(locate, i)}"
    )


def check_events(events: np.ndarray, *, what: str = "events") -> None:
    """Checks that ``events`` is a 1-D structured array with fields x, y, p, t.

    Raises:
      TypeError: not a structured NumPy array.
      ValueError: a field is missing (naming it) or the array is not 1-D.
    """
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise TypeError(
            f"{what}: expected a NumPy structured array with fields x, y, p, t, got "
            f"{type(events).__name__}"
            + (f" of dtype {events.dtype}" if isinstance(events, np.ndarray) else "")
        )
    missing = [f for f in ("x", "y", "p", "t") if f not in events.dtype.names]
    if missing:
        raise ValueError(
            f"{what}: missing field(s) {missing}; fields present: {list(events.dtype.names)}"
        )
    if events.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D event array, got shape {events.shape}")


def validate_events(events: np.ndarray, sensor_size: tuple[int, int], *, what: str, locate=None,
                    require_sorted: bool = False) -> np.ndarray:
    """Checks the rules every event recording must keep; returns ``events`` unchanged.

    Rules: ``0 <= x < W`` and ``0 <= y < H`` (``sensor_size = (H, W)``); with ``require_sorted`` the timestamps
    never decrease (formats that promise it: AEDAT 3.1). Polarity and finiteness are checked when the array is
    made (:func:`make_events`).

    Args:
      events: ``(N,)`` :data:`EVENT_DTYPE` array. sensor_size: ``(H, W)`` pixels. what: the file (named in errors).
      locate: ``index -> str`` place of an event in the file (``'line 7'``, ``'byte 1234'``).
      require_sorted: check that ``t`` is non-decreasing.

    Raises:
      DataFormatError: the first broken rule, naming ``what``, the rule, the count and the first event's place.
    """
    H, W = int(sensor_size[0]), int(sensor_size[1])
    if events.shape[0] == 0:
        return events
    x, y = events["x"], events["y"]
    bad = (x < 0) | (x >= W) | (y < 0) | (y >= H)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{what}: coordinates must lie inside the {H}x{W} sensor (0 <= x < {W}, 0 <= y < {H}): "
            f"{int(bad.sum())} event(s) outside, first at {_where(locate, i)} (x={int(x[i])}, y={int(y[i])})")
    if require_sorted:
        t = events["t"]
        dec = t[1:] < t[:-1]
        if dec.any():
            i = int(np.flatnonzero(dec)[0]) + 1
            raise DataFormatError(
                f"{what}: timestamps must not decrease (the format promises time order): {int(dec.sum())} "
                f"decrease(s), first at {_where(locate, i)} (t={int(t[i])} us after t={int(t[i - 1])} us)")
    return events


def sort_events(events: np.ndarray, *, what: str | None = None) -> np.ndarray:
    """Returns ``events`` sorted by ``t`` (stable: ties keep their order); no copy if already sorted.

    With ``what`` (a file path), sorting an unsorted array logs one warning naming it and the number of events out
    of order (formats that do not promise time order: tonic npy, Gait txt, CIFAR10-DVS mat / AEDAT 2.0).
    """
    t = events["t"]
    if t.size < 2:
        return events
    dec = t[1:] < t[:-1]
    if not dec.any():
        return events
    if what is not None:
        logger.warning("%s: %d of %d events are earlier than the event before them; sorted by time (stable)",
                       what, int(dec.sum()), t.size)
    return events[np.argsort(t, kind="stable")]
