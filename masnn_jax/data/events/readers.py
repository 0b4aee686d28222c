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

Every reader validates what it reads (:func:`~masnn_jax.data.events.core.validate_events`): coordinates inside
the sensor (``sensor_size``, default the DVS128's 128x128), polarity in its two values, timestamps finite integers,
and non-decreasing where the format promises it (AEDAT 3.1). A violation raises :class:`DataFormatError` (a
``ValueError``) naming the file, the place in it (line for text, row for npy/mat, byte offset for AEDAT) and the
rule broken; a missing file raises ``FileNotFoundError`` naming it.
"""

from __future__ import annotations

import mmap
import os
import struct

import numpy as np

from masnn_jax.data.events.core import DataFormatError, make_events, validate_events

DVS128_SENSOR = (128, 128)

__all__ = [
    "DataFormatError",
    "read_aedat31",
    "read_gesture_labels",
    "read_trial_list",
    "read_tonic_gesture_npy",
    "read_gait_txt",
    "read_cifar10dvs_mat",
    "read_aedat2_dvs128",
    "aedat31_time_ranges",
    "count_events_in_windows",
    "DVS128_SENSOR",
]


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


def _aedat31_polarity_packets(buf, path: str, offset: int):
    """Yields ``(byte position of the events in buf, number of events, tsOverflow)`` of each polarity packet.

    ``buf`` is the file's content after the text header (which is ``offset`` bytes long). Raises DataFormatError
    for a truncated packet or a polarity packet whose event size is not 8, naming the file and byte offset.
    """
    pos = 0
    size = len(buf)
    while pos < size:
        if pos + 28 > size:
            raise DataFormatError(
                f"{path}: truncated packet header at byte {offset + pos} (file ends after "
                f"{size - pos} bytes)"
            )
        etype, _src, esize, _tsoff, overflow, capacity, number, _valid = _AEDAT3_HEADER.unpack_from(buf, pos)
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
            yield pos, min(number, capacity), overflow
        pos += nbytes


def _open_aedat31(path: str):
    """(mmap of the file or b'', byte offset of the packets). Raises FileNotFoundError / DataFormatError."""
    _require_file(path, "AEDAT 3.1 file")
    with open(path, "rb") as f:
        first = f.readline()
        if not first.startswith(b"#!AER-DAT3"):
            raise DataFormatError(
                f"{path}: not an AEDAT 3.x file (first line {first[:20]!r}, expected '#!AER-DAT3.1')"
            )
        f.seek(0)
        offset = _skip_text_header(f, path)
        if os.fstat(f.fileno()).st_size == offset:
            return b"", offset
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return memoryview(mm)[offset:], offset


def read_aedat31(path: str, *, sensor_size: tuple[int, int] = DVS128_SENSOR, require_sorted: bool = True) -> np.ndarray:
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

    Validation: every event inside ``sensor_size`` and (``require_sorted``, the format's promise) timestamps
    non-decreasing over the file; a violation names the byte offset of the first offending event.

    Args:
      path: the ``.aedat`` file.
      sensor_size: ``(H, W)`` of the camera (128x128 for the DVS128).
      require_sorted: refuse timestamps that decrease.

    Returns:
      ``(N,)`` :data:`EVENT_DTYPE` events in file order.

    Raises:
      FileNotFoundError: missing file (names it).
      DataFormatError: no AEDAT 3.x header, a truncated packet, a bad event size, no polarity events, an event
        outside the sensor or a decreasing timestamp (names the file, the byte offset and the rule).

    Source: iniVation AEDAT 3.1 format description; the bit layout matches the official
    ``MA_SNN/DVSGestures/data/DVS_Gesture.py`` (which masks 13 bits) and SpikingJelly.
    """
    buf, offset = _open_aedat31(path)
    xs, ys, ps, ts, where = [], [], [], [], []
    for pos, number, overflow in _aedat31_polarity_packets(buf, path, offset):
        words = np.frombuffer(buf, dtype="<u4", count=2 * number, offset=pos)
        w, t = words[0::2], words[1::2]
        xs.append(((w >> 17) & 0x7FFF).astype(np.int16))
        ys.append(((w >> 2) & 0x7FFF).astype(np.int16))
        ps.append(((w >> 1) & 1).astype(bool))
        ts.append(t.astype(np.int64) | (np.int64(overflow) << 31))
        where.append((pos, number))
    if not xs:
        raise DataFormatError(f"{path}: no polarity events (eventType 1) in the file")
    starts = np.cumsum([0] + [n for _, n in where])

    def locate(i: int) -> str:
        """Byte offset of event ``i`` in the file."""
        k = int(np.searchsorted(starts, i, "right")) - 1
        return f"byte {offset + where[k][0] + 8 * (i - int(starts[k]))} (event #{i})"

    from masnn_jax.data.events.core import EVENT_DTYPE

    ev = np.empty(int(starts[-1]), EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = (np.concatenate(a) for a in (xs, ys, ps, ts))
    return validate_events(ev, sensor_size, what=path, locate=locate, require_sorted=require_sorted)


def aedat31_time_ranges(path: str) -> np.ndarray:
    """Per polarity packet of an AEDAT 3.1 file: ``(K, 4)`` int64 rows ``[first t, last t, byte pos, count]``.

    Reads only the packet headers and the first and last event of each packet (a memory map), so it takes
    milliseconds on a file of millions of events. Times are µs (with the packet's overflow); ``byte pos`` is
    relative to the end of the text header. Used to check label windows against the recording when a dataset is
    built (:func:`count_events_in_windows`).

    Raises:
      FileNotFoundError / DataFormatError: as :func:`read_aedat31` for a missing or malformed file.
    """
    buf, offset = _open_aedat31(path)
    rows = []
    for pos, number, overflow in _aedat31_polarity_packets(buf, path, offset):
        if number == 0:
            continue
        hi = np.int64(overflow) << 31
        t0 = struct.unpack_from("<I", buf, pos + 4)[0]
        t1 = struct.unpack_from("<I", buf, pos + 8 * (number - 1) + 4)[0]
        rows.append((int(hi | t0), int(hi | t1), pos, number))
    out = np.asarray(rows, np.int64).reshape(-1, 4)
    out.flags.writeable = False
    return out


def count_events_in_windows(path: str, windows) -> np.ndarray:
    """Whether each ``[start, end)`` window (µs) of an AEDAT 3.1 file holds an event: ``(R,)`` bool.

    Uses :func:`aedat31_time_ranges`; a packet that straddles a window without its first or last event inside it
    is read (timestamps only). Assumes time order within a packet (checked when the file is read).
    """
    ranges = aedat31_time_ranges(path)
    windows = np.asarray(windows, np.int64).reshape(-1, 2)
    out = np.zeros(windows.shape[0], bool)
    if ranges.shape[0] == 0:
        return out
    buf = None
    for r, (s, e) in enumerate(windows):
        first, last = ranges[:, 0], ranges[:, 1]
        cand = np.flatnonzero((first < e) & (last >= s))
        if cand.size == 0:
            continue
        if np.any(first[cand] >= s) or np.any(last[cand] < e):
            out[r] = True
            continue
        if buf is None:
            buf, _ = _open_aedat31(path)
        for k in cand:
            pos, number = int(ranges[k, 2]), int(ranges[k, 3])
            hi = int(ranges[k, 0]) >> 31 << 31
            t = np.frombuffer(buf, dtype="<u4", count=2 * number, offset=pos)[1::2].astype(np.int64) | hi
            i = int(np.searchsorted(t, s, "left"))
            if i < t.size and t[i] < e:
                out[r] = True
                break
    return out


def read_gesture_labels(path: str) -> np.ndarray:
    """Reads an IBM DVS Gesture ``userXX_<lighting>_labels.csv``.

    Layout: a header line (``class,startTime_usec,endTime_usec``) then one row per gesture:
    class (1-11), start and end time in µs.

    Returns:
      ``(R, 3)`` int64 array: class (1-11), start µs, end µs.

    Raises:
      FileNotFoundError: missing file.
      DataFormatError: empty, unparsable (a non-integer, NaN or inf field), classes outside 1-11 or
        end <= start (names the file and the row).
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
        if len(parts) < 3:
            raise DataFormatError(f"{path}: label row {i + 1} has {len(parts)} fields, expected 3: {ln!r}")
        try:
            rows.append([int(p.strip()) for p in parts[:3]])
        except ValueError:
            raise DataFormatError(
                f"{path}: label row {i + 1} must be three integers 'class,start_us,end_us': {ln!r}") from None
    if not rows:
        raise DataFormatError(f"{path}: no label rows after the header")
    try:
        arr = np.asarray(rows, np.int64)
    except OverflowError:
        raise DataFormatError(f"{path}: a label field is outside the int64 range") from None
    if arr[:, 0].min() < 1 or arr[:, 0].max() > 11:
        raise DataFormatError(f"{path}: class ids must be 1-11, got {sorted(set(arr[:, 0].tolist()))}")
    bad = np.flatnonzero(arr[:, 2] <= arr[:, 1])
    if bad.size:
        raise DataFormatError(f"{path}: label row {int(bad[0]) + 1} has endTime <= startTime (an empty window; "
                              f"{bad.size} such row(s))")
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


def read_tonic_gesture_npy(path: str, *, sensor_size: tuple[int, int] = DVS128_SENSOR) -> np.ndarray:
    """Reads one sample of tonic's DVS Gesture layout: ``(N, 4)`` integers x, y, p, t (t in ms).

    Returns events with t converted to µs (x1000, as ``tonic.datasets.DVSGesture`` does), in file order.
    Validation: numeric values, finite integers (integral floats accepted), x, y inside ``sensor_size``, p in
    ``{0, 1}`` (or bool / ``{-1, +1}``); the error names the file, the row and the rule.

    Raises:
      FileNotFoundError: missing. DataFormatError: unreadable, not ``(N, 4)``, empty, or a value breaking a rule.
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
    locate = lambda i: f"row {i}"  # noqa: E731
    t_ms = _int_col(a[:, 3], path, "t", locate)
    lim = np.iinfo(np.int64).max // 1000
    bad = np.abs(t_ms) > lim
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(f"{path}: field 't' (ms) too large to convert to us at row {i} ({t_ms[i]})")
    ev = make_events(a[:, 0], a[:, 1], a[:, 2], t_ms * 1000, what=path, locate=locate)
    return validate_events(ev, sensor_size, what=path, locate=locate)


def _int_col(v, path, field, locate):
    from masnn_jax.data.events.core import integer_column

    return integer_column(v, what=path, field=field, locate=locate)


# --------------------------------------------------------------------------------------------
# DVS128 Gait text


def read_gait_txt(path: str, *, sensor_size: tuple[int, int] = DVS128_SENSOR,
                  signed_polarity: str = "off_on") -> np.ndarray:
    """Reads a DVS128 Gait text recording: one event per line, ``t x y p`` (whitespace separated).

    ``t`` is taken as µs (the official MA-SNN config's ``dt`` in ms is multiplied by 1000 before
    it is compared with these timestamps); p in {0, 1} or {-1, +1}. For ``{-1, +1}`` files
    ``signed_polarity='off_on'`` (default) puts −1 in channel 0 (OFF); ``'official'`` reproduces the official
    loader, whose ``chunks[i, p]`` indexing puts every event of such a file in channel 1.

    Validation: four integers per line, ``0 <= x, y < 128`` (``sensor_size``), p in its two values; the error
    names the file, the line number, its text and the rule.

    Returns:
      ``(N,)`` :data:`EVENT_DTYPE` events in file order.

    Raises:
      FileNotFoundError: missing. DataFormatError: empty, a line that is not four integers, a coordinate outside
        the sensor or a third polarity value (names the file, the first such line's number and its text).

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
    except (ValueError, OverflowError):
        raise DataFormatError(_gait_bad_line(path, len(tokens))) from None

    def locate(i: int) -> str:
        """Line number and text of event ``i``."""
        number, text = _gait_line_of_event(path, i)
        return f"line {number} {text!r}"

    ev = make_events(a[:, 1], a[:, 2], a[:, 3], a[:, 0], what=path, locate=locate, signed_polarity=signed_polarity)
    return validate_events(ev, sensor_size, what=path, locate=locate)


def _gait_line_of_event(path: str, index: int) -> tuple[int, str]:
    """(1-based line number, text) of the ``index``-th non-blank line of a Gait file (only called for errors)."""
    k = -1
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if raw.split():
                k += 1
                if k == index:
                    text = raw.decode("utf-8", "replace").strip()
                    return number, text if len(text) <= 80 else text[:77] + "..."
    return -1, ""


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
                    ok = all(abs(int(v)) < 2 ** 63 for v in fields)
                except ValueError:
                    ok = False
            if not ok:
                text = raw.decode("utf-8", "replace").strip()
                text = text if len(text) <= 80 else text[:77] + "..."
                why = f"{len(fields)} fields" if len(fields) != 4 else "a non-integer field, or one outside the int64 range"
                count = f"; the file's {n_tokens} fields are not a multiple of 4" if n_tokens % 4 else ""
                return (f"{path}: line {number} is not four numbers 't x y p' (integers, t in us): {text!r} "
                        f"({why}){count}")
    return f"{path}: {n_tokens} numbers is not a multiple of 4 (lines 't x y p')"


# --------------------------------------------------------------------------------------------
# CIFAR10-DVS


def read_cifar10dvs_mat(path: str, *, sensor_size: tuple[int, int] = DVS128_SENSOR,
                        signed_polarity: str = "off_on") -> np.ndarray:
    """Reads a CIFAR10-DVS sample as the official MA-SNN loader does: ``.mat`` with ``out``.

    ``out`` is an ``(N, 6)`` numeric matrix; the official code deletes columns 1 and 2 and reads
    the rest as t (µs), x, y, p. Columns used here: 0 = t, 3 = x, 4 = y, 5 = p.

    Validation: every used column holds finite integers (the matrix is usually float64), x, y inside
    ``sensor_size``, p in its two values (``{-1, +1}`` mapped by ``signed_polarity``, see
    :func:`read_gait_txt`); errors name the file, the row and the rule.

    Raises:
      FileNotFoundError: missing. DataFormatError: unreadable, no ``out`` variable, wrong shape,
        no events, or a value breaking a rule (names the file and row).

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
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataFormatError(f"{path}: 'out' must be numeric, got dtype {a.dtype}")
    locate = lambda i: f"row {i} of 'out'"  # noqa: E731
    ev = make_events(a[:, 3], a[:, 4], a[:, 5], a[:, 0], what=path, locate=locate, signed_polarity=signed_polarity)
    return validate_events(ev, sensor_size, what=path, locate=locate)


def read_aedat2_dvs128(path: str) -> np.ndarray:
    """Reads an AEDAT 2.0 DVS128 recording (the original CIFAR10-DVS ``.aedat`` files).

    Layout: ``#`` header lines (``#!AER-DAT2.0``), then big-endian 8-byte events: uint32 address,
    uint32 timestamp (µs). DVS128 address: ``x = (a >> 1) & 0x7F``, ``y = (a >> 8) & 0x7F``,
    ``p = a & 1``. Coordinates are returned as stored (SpikingJelly additionally transposes and
    flips them and inverts p; the official MA-SNN code reads converted ``.mat`` files instead).

    Coordinates (7-bit fields) always lie on the 128x128 sensor; timestamps are uint32 µs. Time order is
    not checked here (datasets sort a recording and log how many events were out of order).

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
    return make_events((a >> 1) & 0x7F, (a >> 8) & 0x7F, (a & 1).astype(bool), t.astype(np.int64), what=path)


