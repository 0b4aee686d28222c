"""Event arrays: the structured dtype used everywhere in ``masnn_jax.data`` and checks on it.

An event recording is a 1-D NumPy structured array with the fields ``x``, ``y``, ``p``, ``t``
(the dtype of tonic's own ``tonic.datasets.DVSGesture``: ``x`` int16, ``y`` int16, ``p`` bool,
``t`` int64 in microseconds). ``x`` indexes sensor columns (frame axis W), ``y`` sensor rows
(frame axis H), ``p`` is the polarity (False / 0 = OFF, True / 1 = ON).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "EVENT_DTYPE",
    "make_events",
    "polarity_to_index",
    "check_events",
    "sort_events",
]

#: The event dtype (same fields, order and types as tonic's DVSGesture dataset): x, y int16
#: (pixels), p bool (True = ON), t int64 (µs).
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])


def make_events(x, y, p, t) -> np.ndarray:
    """Builds an event array of dtype :data:`EVENT_DTYPE` from four equal-length 1-D arrays.

    Args:
      x: column indices (pixels), integers.
      y: row indices (pixels), integers.
      p: polarities; bool, ``{0, 1}`` or ``{-1, +1}`` (see :func:`polarity_to_index`).
      t: timestamps in µs (integers; floats are floored).

    Returns:
      ``(N,)`` structured array of dtype :data:`EVENT_DTYPE` (order unchanged, not sorted).

    Raises:
      ValueError: if the lengths differ or the polarity encoding is not recognised.
    """
    x = np.asarray(x).reshape(-1)
    y = np.asarray(y).reshape(-1)
    p = np.asarray(p).reshape(-1)
    t = np.asarray(t).reshape(-1)
    n = x.shape[0]
    if not (y.shape[0] == p.shape[0] == t.shape[0] == n):
        raise ValueError(
            f"make_events: fields x, y, p, t must have equal lengths, got "
            f"{x.shape[0]}, {y.shape[0]}, {p.shape[0]}, {t.shape[0]}"
        )
    out = np.empty(n, dtype=EVENT_DTYPE)
    out["x"] = x
    out["y"] = y
    out["p"] = polarity_to_index(p, what="make_events: field 'p'").astype(bool)
    out["t"] = np.floor(t).astype(np.int64) if np.issubdtype(t.dtype, np.floating) else t
    return out


def polarity_to_index(p: np.ndarray, *, what: str = "field 'p'") -> np.ndarray:
    """Maps polarity values to channel indices 0 (OFF) / 1 (ON).

    Accepted encodings: bool (False/True), integers in ``{0, 1}`` and integers in ``{-1, +1}``
    (−1 = OFF). An array holding only 1s is ON in both integer encodings.

    Args:
      p: ``(N,)`` polarity array (bool, integer or integral float).
      what: name of the source used in error messages.

    Returns:
      ``(N,)`` int64 array of 0/1.

    Raises:
      ValueError: mixed encodings (e.g. ``{-1, 0, 1}``) or other values, naming ``what``.
    """
    p = np.asarray(p)
    if p.dtype == bool:
        return p.astype(np.int64)
    if p.size == 0:
        return np.zeros(0, np.int64)
    if np.issubdtype(p.dtype, np.floating):
        if not np.all(np.isfinite(p)) or not np.all(p == np.round(p)):
            raise ValueError(f"{what}: polarity values must be integers, got non-integral floats")
    if not (np.issubdtype(p.dtype, np.integer) or np.issubdtype(p.dtype, np.floating)):
        raise ValueError(f"{what}: polarity must be bool or integer, got dtype {p.dtype}")
    pmin, pmax = p.min(), p.max()
    if pmin >= 0 and pmax <= 1:
        return p.astype(np.int64)
    if pmin >= -1 and pmax <= 1 and not np.any(p == 0):
        return (p > 0).astype(np.int64)
    values = np.unique(p)[:6].tolist()
    raise ValueError(
        f"{what}: polarity encoding not recognised (values {values}...); expected bool, "
        "{0, 1} or {-1, +1}"
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


def sort_events(events: np.ndarray) -> np.ndarray:
    """Returns ``events`` sorted by ``t`` (stable: ties keep their order); no copy if sorted."""
    t = events["t"]
    if t.size < 2 or np.all(t[1:] >= t[:-1]):
        return events
    return events[np.argsort(t, kind="stable")]
