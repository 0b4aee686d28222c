"""The recorded DVS datasets: DVS128 Gesture (IBM AEDAT 3.1 or tonic's npy), DVS128 Gait (txt) and CIFAR10-DVS
(mat or aedat), as :class:`~masnn_jax.data.events.datasets.EventFrameDataset` objects that read, validate and cache
their recordings (see that module).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re

import numpy as np

from masnn_jax.data.events.core import DataFormatError, sort_events, validate_events
from masnn_jax.data.events.datasets import (
    BAD_WINDOW_MODES, CIFAR10_CLASSES, CIFAR10DVS_LAYOUT, GAIT_LAYOUT, IBM_GESTURE_LAYOUT, TONIC_GESTURE_LAYOUT,
    DatasetNotFoundError,
    EventFrameDataset, _check_recordings, _ms_to_us, _require_root,
)
from masnn_jax.data.events.readers import (
    aedat31_time_ranges,
    count_events_in_windows,
    read_aedat2_dvs128,
    read_aedat31,
    read_cifar10dvs_mat,
    read_gait_txt,
    read_gesture_labels,
    read_tonic_gesture_npy,
    read_trial_list,
)

__all__ = ["DVSGestureDataset", "DVSGaitDataset", "CIFAR10DVSDataset"]

logger = logging.getLogger("masnn_jax.data")


def _listdir_sorted(path: str) -> list[str]:
    return sorted(os.listdir(path))


def _check_label_windows(aedat: str, csv: str, rows: np.ndarray) -> list[tuple[int, str]]:
    """Problems of the label rows of one recording: ``(row index, message)`` per bad row (empty: all fine).

    A row ``[start, end)`` must lie inside the recording (``t_first <= start`` and ``end <= t_last + 1``) and hold
    at least one event. Reads only the packet index of the file (:func:`aedat31_time_ranges`).
    """
    ranges = aedat31_time_ranges(aedat)
    if ranges.shape[0] == 0:
        raise DataFormatError(f"{aedat}: no polarity events (eventType 1) in the file")
    t0, t1 = int(ranges[:, 0].min()), int(ranges[:, 1].max())
    has = count_events_in_windows(aedat, rows[:, 1:3])
    out = []
    for r, (cls, start, end) in enumerate(rows.tolist()):
        if start < t0 or end > t1 + 1:
            out.append((r, f"{csv} row {r + 1} (class {cls}, {start}-{end} us) is not inside the recording {aedat} "
                       f"({t0}-{t1} us)" + ("" if has[r] else " and holds no events")))
        elif not has[r]:
            out.append((r, f"{csv} row {r + 1} (class {cls}, {start}-{end} us) holds no events of {aedat}"))
    return out


class DVSGestureDataset(EventFrameDataset):
    """IBM DVS128 Gesture (11 classes, 128x128) from local files, in one of two layouts.

    * ``layout='ibm'`` (the original ``DvsGesture`` folder; official MA-SNN and SpikingJelly
      split): files listed in ``trials_to_train.txt`` / ``trials_to_test.txt``; one sample per
      row of ``userXX_<lighting>_labels.csv``: the events with ``start <= t < end`` of that
      AEDAT 3.1 recording, label = class - 1. 1,176 train / 288 test samples for the full
      dataset. When the dataset is built every label row is checked against its recording
      (inside it, not empty; reading only the packet index of each file, in threads): a bad
      row is dropped with one warning per file (``bad_windows='skip'``) or refused, listing
      every bad row (``'error'``).
    * ``layout='tonic'``: tonic's pre-cut ``.npy`` files (timestamps in ms; 1,077 / 264
      samples), sorted by folder then label.

    ``layout='auto'`` picks 'ibm' when a ``trials_to_train.txt`` is found, else 'tonic' (when neither is
    there, the error describes both layouts). Every recording file of the split is checked up front (one
    ``os.stat`` each: exists, regular, not empty); contents are validated when first read (or all at once by
    :func:`masnn_jax.data.events.verify`). Parsed recordings are kept in an LRU cache of ``cache_mb`` MiB per
    process (a file changed on disk during the run is not re-read).
    Official defaults: T = 60, dt = 25 ms, ds = 4 (frames 60x32x32x2), random training windows,
    10 test windows.

    Raises:
      ValueError: ``root`` is None or the layout name is unknown.
      DatasetNotFoundError: missing folder / no samples (message names the path and layout; an IBM split whose
        label windows were all refused as bad says how many and why).
      FileNotFoundError, DataFormatError: a listed file is missing or empty, or (IBM, ``bad_windows='error'``)
        label rows outside their recording or without events (when the dataset is built; every one named), or a
        file is corrupt or breaks a rule (when read; names it, the place and the rule).
    """

    def __init__(self, root: str | None, split: str = "train", *, layout: str = "auto", T: int = 60,
                 dt_ms: float = 25.0, ds: int = 4, n_test_windows: int = 10, seed: int = 0,
                 random_window: bool = True, cache_events: bool = False, cache_mb: float = 1024,
                 window_rule: str = "official", bad_windows: str = "skip"):
        if bad_windows not in BAD_WINDOW_MODES:
            raise ValueError(f"config.data.bad_windows must be one of {BAD_WINDOW_MODES}, got {bad_windows!r}")
        self.bad_windows = bad_windows
        root = _require_root(root, "dvs_gesture")
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if layout not in ("auto", "ibm", "tonic"):
            raise ValueError(f"config.data.gesture_layout must be 'tonic', 'ibm' or 'auto', got {layout!r}")
        if layout == "auto":
            layout = "ibm" if _find_ibm_root(root) is not None else "tonic"
            if layout == "tonic":
                try:
                    self._samples, labels = self._index_tonic(root, split)
                except DatasetNotFoundError as e:
                    tonic = str(e).split(". Expected ", 1)[0].replace("DVS Gesture (tonic layout): ", "")
                    raise DatasetNotFoundError(
                        f"DVS Gesture (gesture_layout='auto'): {root} holds neither layout: no trials_to_train.txt "
                        f"in {root} or {os.path.join(root, 'DvsGesture')} (IBM layout), and {tonic} (tonic layout). "
                        f"Expected either the {IBM_GESTURE_LAYOUT}; or the {TONIC_GESTURE_LAYOUT}"
                    ) from None
            else:
                self._samples, labels, self.skipped_windows = self._index_ibm(root, split, bad_windows)
        elif layout == "ibm":
            self._samples, labels, self.skipped_windows = self._index_ibm(root, split, bad_windows)
        else:
            self._samples, labels = self._index_tonic(root, split)
        self.layout = layout
        self.root = root
        if layout == "tonic":
            self.skipped_windows = []
        self._bounds: dict[int, tuple[int, int, int]] = {}  # IBM: sample -> (first, end, recording length)
        self._by_recording = None
        super().__init__(name="dvs_gesture", split=split, num_classes=11, sensor_size=(128, 128),
                         T=T, dt_us=_ms_to_us(dt_ms, "dt_ms"), ds=ds, n_test_windows=n_test_windows,
                         seed=seed, random_window=random_window, labels=labels,
                         cache_events=cache_events, cache_mb=cache_mb, window_rule=window_rule)

    @staticmethod
    def _index_ibm(root: str, split: str, bad_windows: str = "skip"):
        base = _find_ibm_root(root)
        if base is None:
            raise DatasetNotFoundError(
                f"DVS Gesture (IBM layout): no trials_to_train.txt under {root}. Expected {IBM_GESTURE_LAYOUT}"
            )
        trials = read_trial_list(os.path.join(base, f"trials_to_{split}.txt"))
        files = []
        for name in trials:
            aedat = os.path.join(base, name)
            stem = name[:-6] if name.endswith(".aedat") else name
            csv = os.path.join(base, stem + "_labels.csv")
            if not os.path.isfile(aedat):
                raise FileNotFoundError(
                    f"DVS Gesture: {aedat} (listed in trials_to_{split}.txt) not found. Expected {IBM_GESTURE_LAYOUT}"
                )
            files.append((aedat, csv))
        _check_recordings([a for a, _ in files], "DVS Gesture (IBM layout)", IBM_GESTURE_LAYOUT)

        def check(item):
            """(label rows, problems) of one (aedat, csv) pair."""
            aedat, csv = item
            rows = read_gesture_labels(csv)
            return rows, _check_label_windows(aedat, csv, rows)

        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
            checked = list(pool.map(check, files))
        problems = [msg for _, bad in checked for _, msg in bad]
        if problems and bad_windows == "error":
            raise DataFormatError(
                f"DVS Gesture: {len(problems)} label window(s) of the {split} split are outside their recording or "
                "hold no events (config.data.bad_windows='skip' drops them with a warning):\n  " + "\n  ".join(problems))
        samples, labels = [], []
        skipped = []
        for (aedat, csv), (rows, bad) in zip(files, checked):
            bad_rows = {r for r, _ in bad}
            if bad_rows:
                logger.warning("%s: skipping %d of %d label window(s) (config.data.bad_windows='skip'): %s",
                               csv, len(bad_rows), len(rows), "; ".join(msg for _, msg in bad))
                skipped += [msg for _, msg in bad]
            for r, (cls, start, end) in enumerate(rows.tolist()):
                if r not in bad_rows:
                    samples.append((aedat, int(start), int(end), r + 1))
                    labels.append(int(cls) - 1)
        if not samples:
            if not files:
                why = f"trials_to_{split}.txt lists no recording"
            else:
                shown = "\n  ".join(skipped[:5]) + (f"\n  ... and {len(skipped) - 5} more" if len(skipped) > 5 else "")
                why = (f"all {len(skipped)} label window(s) of its {len(files)} recording(s) were refused as bad "
                       "(outside their recording or without events; config.data.bad_windows='skip' drops them). A "
                       "recording whose events do not cover its label rows is usually truncated or corrupt "
                       "(`python -m masnn_jax.data verify --config=...` reads every file):\n  " + shown)
            raise DatasetNotFoundError(f"DVS Gesture (IBM layout): the {split} split of {base} is empty: {why}")
        return samples, labels, skipped

    @staticmethod
    def _index_tonic(root: str, split: str):
        folder = "ibmGestureTrain" if split == "train" else "ibmGestureTest"
        base = None
        for cand in (os.path.join(root, "DVSGesture", folder), os.path.join(root, folder)):
            if os.path.isdir(cand):
                base = cand
                break
        if base is None:
            raise DatasetNotFoundError(
                f"DVS Gesture (tonic layout): neither {os.path.join(root, 'DVSGesture', folder)} "
                f"nor {os.path.join(root, folder)} exists. Expected {TONIC_GESTURE_LAYOUT}"
            )
        samples, labels = [], []
        for sub in _listdir_sorted(base):
            d = os.path.join(base, sub)
            if not os.path.isdir(d):
                continue
            files = [f for f in os.listdir(d) if f.endswith(".npy")]
            for f in sorted(files, key=lambda s: (len(s), s)):
                stem = f[:-4]
                if not stem.isdigit() or not 0 <= int(stem) <= 10:
                    raise DataFormatError(
                        f"DVS Gesture (tonic layout): {os.path.join(d, f)}: file name must be the "
                        "label 0-10 ('{label}.npy')"
                    )
                samples.append(os.path.join(d, f))
                labels.append(int(stem))
        if not samples:
            raise DatasetNotFoundError(
                f"DVS Gesture (tonic layout): no .npy samples under {base}. Expected {TONIC_GESTURE_LAYOUT}"
            )
        _check_recordings(samples, "DVS Gesture (tonic layout)", TONIC_GESTURE_LAYOUT)
        return samples, labels

    def recording_of(self, index: int) -> str:
        """The ``.npy`` (tonic) or ``.aedat`` (IBM) file of sample ``index``."""
        s = self._samples[index]
        return s if self.layout == "tonic" else s[0]

    def read_recording(self, path: str) -> np.ndarray:
        """The validated events of ``path`` sorted by t (AEDAT 3.1 must already be in time order)."""
        if self.layout == "tonic":
            return sort_events(read_tonic_gesture_npy(path, sensor_size=self.sensor_size), what=path)
        return read_aedat31(path, sensor_size=self.sensor_size, require_sorted=True)

    def sample_events(self, index: int, recording: np.ndarray) -> np.ndarray:
        """IBM: the events with ``start <= t < end`` of the label row; tonic: the whole file."""
        if self.layout == "tonic":
            return recording
        bounds = self._bounds.get(index)
        if bounds is None or bounds[2] != recording.shape[0]:
            # one contiguous copy of t per recording read: the slice bounds of all its label windows
            path = self.recording_of(index)
            if self._by_recording is None:
                self._by_recording = self.recordings()
            t = np.ascontiguousarray(recording["t"])
            for i in self._by_recording[path]:
                _, start, end, _ = self._samples[i]
                self._bounds[i] = (int(np.searchsorted(t, start, "left")), int(np.searchsorted(t, end, "left")),
                                   recording.shape[0])
            bounds = self._bounds[index]
        return recording[bounds[0]:bounds[1]]

    def sample_name(self, index: int) -> str:
        """The ``.npy`` file (tonic) or ``'<aedat> (label row r, start-end us)'`` (IBM) of sample ``index``."""
        s = self._samples[index]
        if self.layout == "tonic":
            return s
        return f"{s[0]} (label row {s[3]}, {s[1]}-{s[2]} us)"


def _find_ibm_root(root: str) -> str | None:
    for cand in (root, os.path.join(root, "DvsGesture")):
        if os.path.isfile(os.path.join(cand, "trials_to_train.txt")):
            return cand
    return None


# ============================================================================================
# DVS128 Gait


class DVSGaitDataset(EventFrameDataset):
    """DVS128 Gait-Day / Gait-Night (21 subjects = classes, 128x128) from text files.

    Layout: ``<root>/<split>/<subject>/*.txt`` (one event ``t x y p`` per line, t in µs), the
    subject folder name being the class 0-20 (as the official loader: ``int(dir)``); ``root`` may
    instead contain ``DVS128-Gait-Day`` / ``DVS128-Gait-Night`` (or ``day`` / ``night``), chosen
    by ``lighting``. Files are sorted by subject then name. Official defaults (``MA_SNN/DVSGait``
    config): T = 8, dt = 500 ms, ds = 1 (frames 8x128x128x2), the first window for training
    (``is_train_Enhanced=False``) and 1 test window.

    Raises:
      ValueError: ``root`` None, bad ``lighting``. DatasetNotFoundError: missing split folder
      or no ``.txt`` files (names the path and layout). DataFormatError: a subject folder name
      that is not an integer 0-20 or an empty recording (when built; every file is stat'ed), or a
      corrupt file (when read).
    """

    NUM_CLASSES = 21

    def __init__(self, root: str | None, split: str = "train", *, lighting: str = "day", T: int = 8,
                 dt_ms: float = 500.0, ds: int = 1, n_test_windows: int = 1, seed: int = 0,
                 random_window: bool = False, cache_events: bool = False, cache_mb: float = 1024,
                 window_rule: str = "official", signed_polarity: str = "off_on"):
        root = _require_root(root, "dvs_gait")
        from masnn_jax.data.events.core import SIGNED_POLARITY_MODES

        if signed_polarity not in SIGNED_POLARITY_MODES:
            raise ValueError(f"config.data.signed_polarity must be one of {SIGNED_POLARITY_MODES}, "
                             f"got {signed_polarity!r}")
        self.signed_polarity = signed_polarity
        if lighting not in ("day", "night"):
            raise ValueError(f"config.data.gait_lighting must be 'day' or 'night', got {lighting!r}")
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        base = root
        if not os.path.isdir(os.path.join(root, split)):
            names = {"day": ("DVS128-Gait-Day", "DVS128_Gait_Day", "day", "Day"),
                     "night": ("DVS128-Gait-Night", "DVS128_Gait_Night", "night", "Night")}[lighting]
            for n in names:
                if os.path.isdir(os.path.join(root, n, split)):
                    base = os.path.join(root, n)
                    break
        split_dir = os.path.join(base, split)
        if not os.path.isdir(split_dir):
            raise DatasetNotFoundError(f"DVS128 Gait: split folder {split_dir} not found. Expected {GAIT_LAYOUT}")
        files, labels = [], []
        for sub in _listdir_sorted(split_dir):
            d = os.path.join(split_dir, sub)
            if not os.path.isdir(d):
                continue
            if not re.fullmatch(r"\d+", sub) or not 0 <= int(sub) < self.NUM_CLASSES:
                raise DataFormatError(
                    f"DVS128 Gait: subject folder {d} must be named by its class, an integer 0-20"
                )
            for f in sorted(os.listdir(d)):
                if f.endswith(".txt"):
                    files.append(os.path.join(d, f))
                    labels.append(int(sub))
        if not files:
            raise DatasetNotFoundError(f"DVS128 Gait: no .txt recordings under {split_dir}. Expected {GAIT_LAYOUT}")
        _check_recordings(files, "DVS128 Gait", GAIT_LAYOUT)
        self._files = files
        self.root = base
        self.lighting = lighting
        super().__init__(name="dvs_gait", split=split, num_classes=self.NUM_CLASSES,
                         sensor_size=(128, 128), T=T, dt_us=_ms_to_us(dt_ms, "dt_ms"), ds=ds,
                         n_test_windows=n_test_windows, seed=seed, random_window=random_window,
                         labels=labels, cache_events=cache_events, cache_mb=cache_mb, window_rule=window_rule)

    #: the official Gait loader draws random starts with ``random.randint`` (both ends included)
    include_high = True

    def recording_of(self, index: int) -> str:
        """The ``.txt`` file of sample ``index``."""
        return self._files[index]

    def read_recording(self, path: str) -> np.ndarray:
        """The validated events of ``path`` sorted by t (one warning when the file is not in time order)."""
        return sort_events(read_gait_txt(path, sensor_size=self.sensor_size, signed_polarity=self.signed_polarity),
                           what=path)


# ============================================================================================
# CIFAR10-DVS


def _trailing_int(name: str) -> int | None:
    m = re.search(r"(\d+)$", os.path.splitext(name)[0])
    return int(m.group(1)) if m else None


class CIFAR10DVSDataset(EventFrameDataset):
    """CIFAR10-DVS (10 classes, 128x128) from local files.

    Layouts (``layout='auto'`` picks by the files found):

    * ``'mat'`` (official MA-SNN): ``<root>/<class>/<k>.mat`` with an ``(N, 6)`` variable ``out``
      (columns t µs, -, -, x, y, p; :func:`~masnn_jax.data.events.readers.read_cifar10dvs_mat`);
    * ``'aedat'`` (original release): ``<root>/<class>/cifar10_<class>_<k>.aedat`` (AEDAT 2.0).

    ``<class>`` is one of airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck
    (label = index in that list; the official code uses ``os.listdir`` order). Per class, files
    are sorted by k and the first ``floor(train_fraction * n)`` are train, the rest test (the
    official split: 900 / 100 per class, 9,000 / 1,000 in all). ``split_order='spikingjelly'`` gives the Spikformer
    split instead (``split_to_train_test_set(0.9, CIFAR10DVS(...))`` in ``cifar10dvs/train.py``): files ordered as
    SpikingJelly's ``DatasetFolder`` lists them, i.e. by ``k`` **as a string** (0, 1, 10, 100, 101, ...), and the
    first ``ceil(train_fraction * n)`` are train (for 1,000 files per class the test files are the last 100 in that
    order, not k = 900-999). ``orientation='spikingjelly'`` (``.aedat`` layout only) re-maps each event as
    SpikingJelly's ``CIFAR10DVS`` reader (``_load_origin_data``) does: ``x = 127 - y``, ``y = 127 - x``, ``p = 1 - p``
    (``'as_stored'``, the default, keeps the file's values). Official defaults: T = 20,
    dt = 10 ms, ds = 1, random training windows, 10 test windows. ``signed_polarity`` as for
    :class:`DVSGaitDataset`; ``.mat`` files are validated when read (errors name the file and row).

    Raises:
      ValueError: ``root`` None, bad layout/fraction. DatasetNotFoundError: missing root, a
      class folder missing, no sample files (names the path and layout), or a split left empty by the split rule
      (the message gives the per-class counts and the rule). DataFormatError: an empty
      recording of the split (when built; every file is stat'ed) or a corrupt one (when read).
    """

    def __init__(self, root: str | None, split: str = "train", *, layout: str = "auto",
                 train_fraction: float = 0.9, T: int = 20, dt_ms: float = 10.0, ds: int = 1,
                 n_test_windows: int = 10, seed: int = 0, random_window: bool = True,
                 cache_events: bool = False, cache_mb: float = 1024, window_rule: str = "official",
                 signed_polarity: str = "off_on", split_order: str = "numeric", orientation: str = "as_stored"):
        root = _require_root(root, "cifar10_dvs")
        if orientation not in ("as_stored", "spikingjelly"):
            raise ValueError(f"config.data.cifar_orientation must be 'as_stored' or 'spikingjelly', got {orientation!r}")
        self.orientation = orientation
        if split_order not in ("numeric", "spikingjelly"):
            raise ValueError(f"config.data.cifar_split_order must be 'numeric' or 'spikingjelly', got {split_order!r}")
        self.split_order = split_order
        self.signed_polarity = signed_polarity
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if layout not in ("auto", "mat", "aedat"):
            raise ValueError(f"config.data.cifar_layout must be 'mat', 'aedat' or 'auto', got {layout!r}")
        if not 0.0 < float(train_fraction) < 1.0:
            raise ValueError(f"config.data.cifar_train_fraction must be in (0, 1), got {train_fraction!r}")
        if not os.path.isdir(root):
            raise DatasetNotFoundError(f"CIFAR10-DVS: root {root} not found. Expected {CIFAR10DVS_LAYOUT}")
        missing = [c for c in CIFAR10_CLASSES if not os.path.isdir(os.path.join(root, c))]
        if missing:
            raise DatasetNotFoundError(
                f"CIFAR10-DVS: class folder(s) {missing} missing under {root}. Expected {CIFAR10DVS_LAYOUT}"
            )
        if layout == "auto":
            first = os.listdir(os.path.join(root, CIFAR10_CLASSES[0]))
            layout = "aedat" if any(f.endswith(".aedat") for f in first) and not any(
                f.endswith(".mat") for f in first) else "mat"
        if orientation == "spikingjelly" and layout != "aedat":
            raise ValueError(
                "config.data.cifar_orientation='spikingjelly' re-maps the original AEDAT addresses as SpikingJelly's "
                f"CIFAR10DVS reader does; {root} holds the {layout!r} layout, whose orientation relative to the AEDAT "
                "files is not known here: use the .aedat files or set config.data.cifar_orientation='as_stored'")
        ext = ".mat" if layout == "mat" else ".aedat"
        files, labels, counts, unnumbered = [], [], [], 0
        for label, cls in enumerate(CIFAR10_CLASSES):
            d = os.path.join(root, cls)
            named = [f for f in os.listdir(d) if f.endswith(ext)]
            found = [(k, f) for f in named for k in [_trailing_int(f)] if k is not None]
            unnumbered += len(named) - len(found)
            if not found:
                raise DatasetNotFoundError(
                    f"CIFAR10-DVS ({layout} layout): no '*{ext}' files in {d}. Expected {CIFAR10DVS_LAYOUT}"
                )
            if split_order == "numeric":
                found.sort()
                n_train = int(np.floor(float(train_fraction) * len(found)))
            else:  # SpikingJelly's DatasetFolder order (names as strings) and the Spikformer math.ceil split
                found.sort(key=lambda kf: (str(kf[0]), kf[1]))
                n_train = int(np.ceil(float(train_fraction) * len(found)))
            part = found[:n_train] if split == "train" else found[n_train:]
            files += [os.path.join(d, f) for _, f in part]
            labels += [label] * len(part)
            counts.append(f"{cls} {n_train} of {len(found)}")
        if not files:
            rule = "floor" if split_order == "numeric" else "ceil"
            ignored = (f"; {unnumbered} '*{ext}' file(s) without a trailing number k in their name were ignored"
                       if unnumbered else "")
            raise DatasetNotFoundError(
                f"CIFAR10-DVS: the {split} split of {root} is empty, by counting, not because files were refused as "
                f"bad (none is read to make the split; verification reports corrupt ones): "
                f"config.data.cifar_split_order={split_order!r} puts the first {rule}(cifar_train_fraction * n) = "
                f"{rule}({float(train_fraction)} * n) of the n files of each class in train ({', '.join(counts)}), "
                f"which leaves no {split} file{ignored}. Add files or change config.data.cifar_train_fraction / "
                "cifar_split_order")
        _check_recordings(files, f"CIFAR10-DVS ({layout} layout)", CIFAR10DVS_LAYOUT)
        self._files = files
        self.layout = layout
        self.root = root
        super().__init__(name="cifar10_dvs", split=split, num_classes=10, sensor_size=(128, 128),
                         T=T, dt_us=_ms_to_us(dt_ms, "dt_ms"), ds=ds, n_test_windows=n_test_windows,
                         seed=seed, random_window=random_window, labels=labels,
                         cache_events=cache_events, cache_mb=cache_mb, window_rule=window_rule)

    def recording_of(self, index: int) -> str:
        """The ``.mat`` / ``.aedat`` file of sample ``index``."""
        return self._files[index]

    def read_recording(self, path: str) -> np.ndarray:
        """The validated events of ``path`` sorted by t (one warning when the file is not in time order); in file order
        when ``frame_mode == 'number'`` (SpikingJelly's ``split_by='number'`` counts events in file order)."""
        if self.layout == "mat":
            ev = read_cifar10dvs_mat(path, sensor_size=self.sensor_size, signed_polarity=self.signed_polarity)
        else:
            ev = validate_events(read_aedat2_dvs128(path), self.sensor_size, what=path)
            if self.orientation == "spikingjelly":  # SJ _load_origin_data: x = 127 - y, y = 127 - x, p = 1 - p
                ev = ev.copy()
                x = ev["x"].copy()
                ev["x"] = 127 - ev["y"]
                ev["y"] = 127 - x
                ev["p"] = ~ev["p"]
        if self.frame_mode == "number":  # SpikingJelly integrates the file order (no sort)
            return ev
        return sort_events(ev, what=path)


# ============================================================================================
# helpers


