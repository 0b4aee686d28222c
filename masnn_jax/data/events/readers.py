"""Readers for event files on local disk (no downloads). Each returns :data:`EVENT_DTYPE` arrays.

Formats:

* AEDAT 3.1 (IBM DVS128 Gesture ``userXX_<lighting>.aedat``), with the ``_labels.csv`` files and
  the ``trials_to_train.txt`` / ``trials_to_test.txt`` lists: :func:`read_aedat31`,
  :func:`read_gesture_labels`, :func:`read_trial_list`.
* tonic's pre-cut DVS Gesture ``.npy`` files (``(N, 4)`` integers x, y, p, t in ms):
  :func:`read_tonic_gesture_npy`.
* DVS128 Gait text files (one event ``t x y p`` per line): :func:`read_gait_txt`.
* CIFAR10-DVS as the official MA-SNN loader reads it (MATLAB ``.mat`` with a 6-column ``out``
  matrix): :func:`read_cifar10dvs_mat`; and the original AEDAT 2.0 ``.aedat`` recordings:
  :func:`read_aedat2_dvs128`.

Every reader raises :class:`DataFormatError` (a ``ValueError``) naming the file for a corrupt or
empty file and ``FileNotFoundError`` naming it when it is missing.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from masnn_jax.data.events.core import make_events, polarity_to_index

__all__ = [
    "DataFormatError",
    "read_aedat31",
    "read_gesture_labels",
    "read_trial_list",
    "read_tonic_gesture_npy",
    "read_gait_txt",
    "read_cifar10dvs_mat",
    "read_aedat2_dvs128",
]


class DataFormatError(ValueError):
    """A data file exists but is empty, truncated or not in the expected format."""


def _require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")


def _skip_text_header(f, path: str) -> int:
    """Skips '#' header lines; returns the byte offset of the binary data."""
    offset = 0
    while True:
        line = f.readline()
        if not line:
            break
        if not line.startswith(b"#"):
            break
        offset += len(line)
        if line.strip() == b"#!END-HEADER":
            break
    f.seek(offset)
    return offset


# --------------------------------------------------------------------------------------------
# AEDAT 3.1


_AEDAT3_HEADER = struct.Struct("<HHIIIIII")  # 28 bytes, little endian


def read_aedat31(path: str) -> np.ndarray:
    """Reads the polarity events of an AEDAT 3.1 file (e.g. IBM DVS128 Gesture recordings).

    Layout: ASCII header lines starting with ``#`` (the first one ``#!AER-DAT3.1``; the last
    ``#!END-HEADER``), then packets. Each packet: a 28-byte little-endian header (uint16
    eventType, uint16 eventSource, uint32 eventSize, eventTSOffset, eventTSOverflow,
    eventCapacity, eventNumber, eventValid) followed by ``eventCapacity * eventSize`` bytes of
    events. Polarity packets (eventType 1) hold 8-byte events: a uint32 data word and a uint32
    timestamp; ``x = (w >> 17) & 0x7FFF``, ``y = (w >> 2) & 0x7FFF``, ``p = (w >> 1) & 1``,
    ``t = ts | (eventTSOverflow << 31)`` µs. The first ``eventNumber`` events of a packet are
    kept (valid or not, as the official and SpikingJelly readers do); other packet types are
    skipped. Coordinates are returned as stored (no flip: the official code does not flip y).

    Args:
      path: the ``.aedat`` file.

    Returns:
      ``(N,)`` :data:`EVENT_DTYPE` events in file order (sorted by t in well-formed files).

    Raises:
      FileNotFoundError: missing file (names it).
      DataFormatError: no AEDAT 3.x header, a truncated packet, a bad event size, or no
        polarity events (names the file and the byte offset).

    Source: iniVation AEDAT 3.1 format description; the bit layout matches the official
    ``MA_SNN/DVSGestures/data/DVS_Gesture.py`` (which masks 13 bits) and SpikingJelly.
    """
    _require_file(path, "AEDAT 3.1 file")
    with open(path, "rb") as f:
        first = f.readline()
        if not first.startswith(b"#!AER-DAT3"):
            raise DataFormatError(
                f"{path}: not an AEDAT 3.x file (first line {first[:20]!r}, expected '#!AER-DAT3.1')"
            )
        f.seek(0)
        offset = _skip_text_header(f, path)
        data = f.read()
    xs, ys, ps, ts = [], [], [], []
    pos = 0
    size = len(data)
    while pos < size:
        if pos + 28 > size:
            raise DataFormatError(
                f"{path}: truncated packet header at byte {offset + pos} (file ends after "
                f"{size - pos} bytes)"
            )
        etype, _src, esize, _tsoff, overflow, capacity, number, _valid = _AEDAT3_HEADER.unpack_from(data, pos)
        pos += 28
        nbytes = capacity * esize
        if pos + nbytes > size:
            raise DataFormatError(
                f"{path}: truncated packet at byte {offset + pos - 28}: header announces "
                f"{capacity} x {esize} bytes, {size - pos} left"
            )
        if etype == 1:
            if esize != 8:
                raise DataFormatError(
                    f"{path}: polarity packet at byte {offset + pos - 28} has eventSize {esize}, expected 8"
                )
            words = np.frombuffer(data, dtype="<u4", count=2 * min(number, capacity), offset=pos)
            w, t = words[0::2], words[1::2]
            xs.append((w >> 17) & 0x7FFF)
            ys.append((w >> 2) & 0x7FFF)
            ps.append(((w >> 1) & 1).astype(bool))
            ts.append(t.astype(np.int64) | (np.int64(overflow) << 31))
        pos += nbytes
    if not xs:
        raise DataFormatError(f"{path}: no polarity events (eventType 1) in the file")
    return make_events(np.concatenate(xs), np.concatenate(ys), np.concatenate(ps), np.concatenate(ts))


def read_gesture_labels(path: str) -> np.ndarray:
    """Reads an IBM DVS Gesture ``userXX_<lighting>_labels.csv``.

    Layout: a header line (``class,startTime_usec,endTime_usec``) then one row per gesture:
    class (1-11), start and end time in µs.

    Returns:
      ``(R, 3)`` int64 array: class (1-11), start µs, end µs.

    Raises:
      FileNotFoundError: missing file.
      DataFormatError: empty, unparsable, classes outside 1-11 or end < start (names the file).
    """
    _require_file(path, "gesture label file")
    rows = []
    with open(path) as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    if not lines:
        raise DataFormatError(f"{path}: empty label file (expected a header then 'class,start_us,end_us' rows)")
    body = lines[1:] if not lines[0].replace(",", "").replace(" ", "").isdigit() else lines
    for i, ln in enumerate(body):
        parts = [p for p in ln.replace("\t", ",").split(",") if p.strip() != ""]
        try:
            rows.append([int(float(p)) for p in parts[:3]])
        except ValueError:
            raise DataFormatError(f"{path}: cannot parse label row {i + 1}: {ln!r}") from None
        if len(parts) < 3:
            raise DataFormatError(f"{path}: label row {i + 1} has {len(parts)} fields, expected 3: {ln!r}")
    if not rows:
        raise DataFormatError(f"{path}: no label rows after the header")
    arr = np.asarray(rows, np.int64)
    if arr[:, 0].min() < 1 or arr[:, 0].max() > 11:
        raise DataFormatError(f"{path}: class ids must be 1-11, got {sorted(set(arr[:, 0].tolist()))}")
    if np.any(arr[:, 2] < arr[:, 1]):
        raise DataFormatError(f"{path}: a row has endTime < startTime")
    return arr


def read_trial_list(path: str) -> list[str]:
    """Reads ``trials_to_train.txt`` / ``trials_to_test.txt``: one ``.aedat`` file name per line.

    Returns:
      the non-empty, stripped lines in file order.

    Raises:
      FileNotFoundError: missing file. DataFormatError: no names in it.
    """
    _require_file(path, "trial list")
    with open(path) as f:
        names = [ln.strip() for ln in f if ln.strip()]
    if not names:
        raise DataFormatError(f"{path}: empty trial list (expected one 'userXX_<lighting>.aedat' per line)")
    return names


# --------------------------------------------------------------------------------------------
# tonic DVS Gesture npy


def read_tonic_gesture_npy(path: str) -> np.ndarray:
    """Reads one sample of tonic's DVS Gesture layout: ``(N, 4)`` integers x, y, p, t (t in ms).

    Returns events with t converted to µs (x1000, as ``tonic.datasets.DVSGesture`` does).

    Raises:
      FileNotFoundError: missing. DataFormatError: unreadable, not ``(N, 4)``, or empty.
    """
    _require_file(path, "tonic DVSGesture sample")
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any numpy load failure means a corrupt file
        raise DataFormatError(f"{path}: cannot read as .npy ({type(e).__name__}: {e})") from None
    if a.ndim != 2 or a.shape[1] != 4:
        raise DataFormatError(f"{path}: expected an (N, 4) array of x, y, p, t(ms), got shape {a.shape}")
    if a.shape[0] == 0:
        raise DataFormatError(f"{path}: no events")
    return make_events(a[:, 0], a[:, 1], a[:, 2], a[:, 3].astype(np.int64) * 1000)


# --------------------------------------------------------------------------------------------
# DVS128 Gait text


def read_gait_txt(path: str) -> np.ndarray:
    """Reads a DVS128 Gait text recording: one event per line, ``t x y p`` (whitespace separated).

    ``t`` is taken as µs (the official MA-SNN config's ``dt`` in ms is multiplied by 1000 before
    it is compared with these timestamps); p in {0, 1} (or {-1, 1}).

    Returns:
      ``(N,)`` :data:`EVENT_DTYPE` events in file order.

    Raises:
      FileNotFoundError: missing. DataFormatError: empty, or a line that is not four integers (names the
        file, the first such line's number and its text).

    Source: ``DVS128_Gait_txt_to_npy`` in the official ``DVS128_Gait_dataloaders.py``
    (columns t, x, y, p).
    """
    _require_file(path, "DVS128 Gait text file")
    with open(path, "rb") as f:
        tokens = f.read().split()
    if not tokens:
        raise DataFormatError(f"{path}: empty file (expected lines 't x y p')")
    try:
        if len(tokens) % 4:
            raise ValueError
        a = np.array(tokens).astype(np.int64).reshape(-1, 4)
    except ValueError:
        raise DataFormatError(_gait_bad_line(path, len(tokens))) from None
    return make_events(a[:, 1], a[:, 2], polarity_to_index(a[:, 3], what=f"{path}: column p"), a[:, 0])


def _gait_bad_line(path: str, n_tokens: int) -> str:
    """The error message for a Gait file that is not all 't x y p' lines: the first bad line, its number and text."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            fields = raw.split()
            if not fields:
                continue
            ok = len(fields) == 4
            if ok:
                try:
                    [int(v) for v in fields]
                except ValueError:
                    ok = False
            if not ok:
                text = raw.decode("utf-8", "replace").strip()
                text = text if len(text) <= 80 else text[:77] + "..."
                why = f"{len(fields)} fields" if len(fields) != 4 else "a non-integer field"
                count = f"; the file's {n_tokens} fields are not a multiple of 4" if n_tokens % 4 else ""
                return (f"{path}: line {number} is not four numbers 't x y p' (integers, t in us): {text!r} "
                        f"({why}){count}")
    return f"{path}: {n_tokens} numbers is not a multiple of 4 (lines 't x y p')"


# --------------------------------------------------------------------------------------------
# CIFAR10-DVS


def read_cifar10dvs_mat(path: str) -> np.ndarray:
    """Reads a CIFAR10-DVS sample as the official MA-SNN loader does: ``.mat`` with ``out``.

    ``out`` is an ``(N, 6)`` numeric matrix; the official code deletes columns 1 and 2 and reads
    the rest as t (µs), x, y, p. Columns used here: 0 = t, 3 = x, 4 = y, 5 = p.

    Raises:
      FileNotFoundError: missing. DataFormatError: unreadable, no ``out`` variable, wrong shape,
        or no events (names the file).

    Source: ``DVS_CIFAR10_Dataset.__getitem__`` in the official ``DVS_CIFAR10_dataloaders.py``.
    """
    _require_file(path, "CIFAR10-DVS .mat file")
    try:
        from scipy.io import loadmat

        m = loadmat(path)
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(f"{path}: cannot read as a MATLAB .mat file ({type(e).__name__}: {e})") from None
    if "out" not in m:
        keys = [k for k in m if not k.startswith("__")]
        raise DataFormatError(f"{path}: no variable 'out' (found {keys}); expected an (N, 6) event matrix")
    a = np.asarray(m["out"])
    if a.ndim != 2 or a.shape[1] != 6:
        raise DataFormatError(f"{path}: 'out' must be (N, 6) [t, -, -, x, y, p], got shape {a.shape}")
    if a.shape[0] == 0:
        raise DataFormatError(f"{path}: 'out' holds no events")
    return make_events(a[:, 3].astype(np.int64), a[:, 4].astype(np.int64),
                       polarity_to_index(a[:, 5], what=f"{path}: column p"), a[:, 0].astype(np.int64))


def read_aedat2_dvs128(path: str) -> np.ndarray:
    """Reads an AEDAT 2.0 DVS128 recording (the original CIFAR10-DVS ``.aedat`` files).

    Layout: ``#`` header lines (``#!AER-DAT2.0``), then big-endian 8-byte events: uint32 address,
    uint32 timestamp (µs). DVS128 address: ``x = (a >> 1) & 0x7F``, ``y = (a >> 8) & 0x7F``,
    ``p = a & 1``. Coordinates are returned as stored (SpikingJelly additionally transposes and
    flips them and inverts p; the official MA-SNN code reads converted ``.mat`` files instead).

    Raises:
      FileNotFoundError: missing. DataFormatError: no AER-DAT2 header, a length that is not a
        multiple of 8, or no events (names the file).
    """
    _require_file(path, "AEDAT 2.0 file")
    with open(path, "rb") as f:
        first = f.readline()
        if not first.startswith(b"#!AER-DAT2"):
            raise DataFormatError(f"{path}: not an AEDAT 2.x file (first line {first[:20]!r})")
        f.seek(0)
        _skip_text_header(f, path)
        data = f.read()
    if len(data) % 8:
        raise DataFormatError(f"{path}: event data of {len(data)} bytes is not a multiple of 8")
    if not data:
        raise DataFormatError(f"{path}: no events")
    words = np.frombuffer(data, dtype=">u4")
    a, t = words[0::2], words[1::2]
    return make_events((a >> 1) & 0x7F, (a >> 8) & 0x7F, (a & 1).astype(bool), t.astype(np.int64))


