"""Datasets of event-frame samples: the emulated digits (default) and three real DVS datasets.

All datasets are :class:`EventFrameDataset` objects: random access by index (and epoch, for the
random training windows), items ``{'frames': float32, 'label': int32}`` with frames
``(T, H, W, 2)`` for the training split and ``(n, T, H, W, 2)`` (n test windows) for the test
split. Nothing is downloaded: a missing, empty or corrupt dataset raises an error that names the
path and the expected layout.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Sequence

import numpy as np

from masnn_jax.data.events.emulator import DEFAULT_SACCADES, emulate_dvs_batch
from masnn_jax.data.events.core import sort_events
from masnn_jax.data.events.frames import (
    events_to_frames,
    frames_for_windows,
    spread_window_starts,
    train_window_start,
)
from masnn_jax.data.events.readers import (
    DataFormatError,
    read_aedat2_dvs128,
    read_aedat31,
    read_cifar10dvs_mat,
    read_gait_txt,
    read_gesture_labels,
    read_tonic_gesture_npy,
    read_trial_list,
)

__all__ = [
    "DatasetNotFoundError",
    "EventFrameDataset",
    "DigitsDVS",
    "DVSGestureDataset",
    "DVSGaitDataset",
    "CIFAR10DVSDataset",
    "GESTURE_CLASSES",
    "CIFAR10_CLASSES",
    "TONIC_GESTURE_LAYOUT",
    "IBM_GESTURE_LAYOUT",
    "GAIT_LAYOUT",
    "CIFAR10DVS_LAYOUT",
]

GESTURE_CLASSES = (
    "hand clapping", "right hand wave", "left hand wave", "right arm clockwise",
    "right arm counter-clockwise", "left arm clockwise", "left arm counter-clockwise",
    "arm roll", "air drums", "air guitar", "other gestures",
)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

TONIC_GESTURE_LAYOUT = (
    "tonic layout: <root>/DVSGesture/ibmGestureTrain/user{NN}_{lighting}/{label}.npy and "
    "<root>/DVSGesture/ibmGestureTest/... (or the same two folders directly under <root>); "
    "each .npy an (N, 4) integer array x, y, p, t[ms]; label 0-10 = file name"
)
IBM_GESTURE_LAYOUT = (
    "IBM layout (DvsGesture.tar.gz extracted): <root>/trials_to_train.txt, "
    "<root>/trials_to_test.txt, <root>/userXX_<lighting>.aedat (AEDAT 3.1) and "
    "<root>/userXX_<lighting>_labels.csv (class 1-11, start us, end us); <root> may also be "
    "the folder that contains DvsGesture/"
)
GAIT_LAYOUT = (
    "<root>/train/<subject>/*.txt and <root>/test/<subject>/*.txt, one event 't x y p' per "
    "line (t in us), <subject> an integer 0-20 (the class); <root> may instead contain "
    "DVS128-Gait-Day/ and DVS128-Gait-Night/ (chosen by gait_lighting)"
)
CIFAR10DVS_LAYOUT = (
    "<root>/<class>/<k>.mat for the 10 classes airplane ... truck, each .mat holding 'out', an "
    "(N, 6) matrix [t_us, -, -, x, y, p] (the official MA-SNN layout; files k < 90 % of the "
    "class are train, the rest test), or the original AEDAT 2.0 recordings "
    "<root>/<class>/cifar10_<class>_<k>.aedat"
)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root/split is missing or holds no samples; the message names path and layout."""


class EventFrameDataset:
    """Random-access dataset of event-frame samples built from event recordings.

    Subclasses provide :meth:`load_events` and the labels; this class turns a recording into
    frames (see :mod:`masnn_jax.data.events.frames`):

    * ``split == 'train'``: one window of ``T * dt_us``; with ``random_window`` its start is
      drawn by ``np.random.default_rng([seed, epoch, index])`` from
      ``[t_first, t_last - T*dt)`` (official ``is_train_Enhanced``), else the first window.
      Item ``{'frames': (T, H, W, 2) float32, 'label': int32}``.
    * ``split == 'test'``: ``n_test_windows`` windows spread over the recording like the official
      ``sample_test``. Item ``{'frames': (n, T, H, W, 2) float32, 'label': int32}``; evaluation
      votes over the n windows (correct when more than half are).

    Attributes:
      name: dataset name. split: 'train' or 'test'. num_classes: int.
      sensor_size: ``(H, W)`` of the events. frame_shape: ``(T, H // ds, W // ds, 2)``.
      item_shape: shape of ``item['frames']``. labels: ``(N,)`` int32 array.
      T, dt_us, ds, n_test_windows, seed, random_window: the framing parameters.
    """

    def __init__(self, *, name: str, split: str, num_classes: int, sensor_size: tuple[int, int],
                 T: int, dt_us: int, ds: int, n_test_windows: int, seed: int,
                 random_window: bool, labels: Sequence[int], cache_events: bool = False):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        for key, v in (("T", T), ("dt_us", dt_us), ("ds", ds), ("n_test_windows", n_test_windows)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{key} must be a positive integer, got {v!r}")
        self.name = name
        self.split = split
        self.num_classes = int(num_classes)
        self.sensor_size = (int(sensor_size[0]), int(sensor_size[1]))
        self.T, self.dt_us, self.ds = int(T), int(dt_us), int(ds)
        if self.ds > min(self.sensor_size):
            raise ValueError(f"ds={ds} is larger than the sensor {self.sensor_size}")
        self.n_test_windows = int(n_test_windows)
        self.seed = int(seed)
        self.random_window = bool(random_window)
        self.labels = np.asarray(labels, np.int32)
        self.cache_events = bool(cache_events)
        self._event_cache: dict[int, np.ndarray] = {}
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise ValueError(f"{name}: labels outside [0, {self.num_classes})")

    # -- shapes --------------------------------------------------------------------------------
    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """``(T, H // ds, W // ds, 2)``: one window's frames."""
        return (self.T, self.sensor_size[0] // self.ds, self.sensor_size[1] // self.ds, 2)

    @property
    def item_shape(self) -> tuple[int, ...]:
        """Shape of ``item['frames']``: ``frame_shape`` (train) or ``(n,) + frame_shape`` (test)."""
        return self.frame_shape if self.split == "train" else (self.n_test_windows, *self.frame_shape)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"item_shape={self.item_shape}, num_classes={self.num_classes})")

    # -- events --------------------------------------------------------------------------------
    def load_events(self, index: int) -> np.ndarray:
        """Events of recording ``index`` (:data:`EVENT_DTYPE`, sorted by t). Subclasses implement."""
        raise NotImplementedError

    def events(self, index: int) -> np.ndarray:
        """:meth:`load_events`, memoised in memory when ``cache_events`` is set."""
        if self.cache_events and index in self._event_cache:
            return self._event_cache[index]
        ev = sort_events(self.load_events(index))
        if self.cache_events:
            self._event_cache[index] = ev
        return ev

    def _check_index(self, index) -> int:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.name} {self.split} ({n} samples)")
        return int(index) % n

    # -- items ---------------------------------------------------------------------------------
    def frames(self, index: int, *, epoch: int = 0) -> np.ndarray:
        """Frames of sample ``index``: ``item_shape`` float32 (see the class docstring)."""
        index = self._check_index(index)
        ev = self.events(index)
        what = f"{self.name} {self.split} sample {index}"
        if ev.shape[0] == 0:
            return np.zeros(self.item_shape, np.float32)
        t_first, t_last = int(ev["t"][0]), int(ev["t"][-1])
        if self.split == "train":
            rng = np.random.default_rng([self.seed, int(epoch), index]) if self.random_window else None
            start = train_window_start(t_first, t_last, T=self.T, dt_us=self.dt_us, rng=rng)
            return events_to_frames(ev, self.sensor_size, T=self.T, dt_us=self.dt_us, ds=self.ds,
                                    t_start_us=start, what=what)
        starts = spread_window_starts(t_first, t_last, T=self.T, dt_us=self.dt_us, n=self.n_test_windows)
        return frames_for_windows(ev, self.sensor_size, starts, T=self.T, dt_us=self.dt_us,
                                  ds=self.ds, what=what)

    def get(self, index: int, *, epoch: int = 0) -> dict:
        """Item ``{'frames': item_shape float32, 'label': int32 scalar}`` for ``(index, epoch)``.

        A pure function of (dataset parameters, ``seed``, ``epoch``, ``index``).
        """
        index = self._check_index(index)
        return {"frames": self.frames(index, epoch=epoch), "label": np.int32(self.labels[index])}

    def __getitem__(self, index: int) -> dict:
        """``get(index, epoch=0)``."""
        return self.get(index, epoch=0)


# ============================================================================================
# Digits (emulated, ships with scikit-learn)

_DIGITS_EVENTS: dict[tuple, list[np.ndarray]] = {}
_DIGITS_FRAMES: dict[tuple, np.ndarray] = {}


def _digits_events(emu_key: tuple) -> list[np.ndarray]:
    if emu_key not in _DIGITS_EVENTS:
        from sklearn.datasets import load_digits

        params = dict(emu_key)
        images = load_digits().images.astype(np.float32) / 16.0
        _DIGITS_EVENTS[emu_key] = emulate_dvs_batch(images, **params)
    return _DIGITS_EVENTS[emu_key]


class DigitsDVS(EventFrameDataset):
    """scikit-learn's 8x8 handwritten digits, turned into DVS recordings by :func:`emulate_dvs`.

    ``sklearn.datasets.load_digits()`` (1,797 images, 10 classes, intensities 0-16 scaled to
    [0, 1]) is split once, stratified by class, with ``train_test_split(test_size=test_fraction,
    random_state=seed)``: 1,437 train / 360 test for the defaults. Each image is scaled by
    ``scale`` (default 3 -> 24x24) onto a ``sensor_size`` sensor (default 32x32) and moved along
    the N-MNIST-like closed triangle of three saccades (vertices
    ``saccade_amplitude * DEFAULT_SACCADES`` px, i.e. a triangle 2 px wide and 2 px high for
    the default amplitude 1) over ``duration = T * dt_ms`` ms, sampled every ``time_step_us``. Frames come from
    ``tonic.transforms.ToFrame(time_window=dt_us, start_time=0, end_time=T*dt_us)`` (after
    ``x // ds``, ``y // ds``), transposed to ``(T, H // ds, W // ds, 2)`` float32 counts; they equal
    :func:`events_to_frames` with ``t_start_us=0``.

    Events and frames are computed once per process for all 1,797 images and parameter set
    (in-memory caches shared by the train and test splits); everything is deterministic for a
    ``seed``. Test items hold ``n_test_windows`` copies of the one window (the recording is
    exactly one window long), default 1.

    Args:
      split: 'train' or 'test'.
      seed: split seed (and emulator noise seed).
      test_fraction: fraction of images in the test split (0 < f < 1).
      T: time bins per sample. dt_ms: bin length in ms (the recording lasts ``T * dt_ms``).
      ds: spatial downsampling of the frames. n_test_windows: windows per test item.
      sensor_size, scale, saccade_amplitude, time_step_us, contrast_threshold, refractory_us,
      log_eps, threshold_sigma, noise_rate_hz: emulator parameters (see :func:`emulate_dvs`;
      the saccade vertices are ``saccade_amplitude * DEFAULT_SACCADES``).

    Raises:
      ValueError: bad split, fraction or emulator parameter (named).
    """

    def __init__(self, split: str = "train", *, seed: int = 0, test_fraction: float = 0.2,
                 T: int = 8, dt_ms: float = 25.0, ds: int = 2, n_test_windows: int = 1,
                 sensor_size: tuple[int, int] = (32, 32), scale: float = 3.0,
                 saccade_amplitude: float = 1.0, time_step_us: int = 2000,
                 contrast_threshold: float = 0.2, refractory_us: int = 0, log_eps: float = 0.1,
                 threshold_sigma: float = 0.0, noise_rate_hz: float = 0.0):
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        dt_us = _ms_to_us(dt_ms, "dt_ms")
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        all_labels = load_digits().target.astype(np.int32)
        idx_train, idx_test = train_test_split(
            np.arange(all_labels.shape[0]), test_size=float(test_fraction), random_state=int(seed),
            stratify=all_labels,
        )
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.indices = np.sort(idx_train if split == "train" else idx_test)
        sensor_size = (int(sensor_size[0]), int(sensor_size[1]))
        super().__init__(name="digits_dvs", split=split, num_classes=10, sensor_size=sensor_size,
                         T=T, dt_us=dt_us, ds=ds, n_test_windows=n_test_windows, seed=seed,
                         random_window=False, labels=all_labels[self.indices])
        saccades = tuple((float(saccade_amplitude) * a, float(saccade_amplitude) * b)
                         for a, b in DEFAULT_SACCADES)
        self._emu_key = tuple(sorted(dict(
            sensor_size=sensor_size, scale=float(scale), saccades=saccades, closed_path=True,
            duration_us=self.T * self.dt_us, time_step_us=int(time_step_us),
            contrast_threshold=float(contrast_threshold), threshold_sigma=float(threshold_sigma),
            refractory_us=int(refractory_us), log_eps=float(log_eps),
            interpolate_timestamps=True, noise_rate_hz=float(noise_rate_hz), seed=int(seed),
        ).items()))
        # validate the emulator parameters now (cheap: one tiny image)
        emulate_dvs_batch(np.zeros((1, 2, 2), np.float32), **dict(self._emu_key))

    def load_events(self, index: int) -> np.ndarray:
        return _digits_events(self._emu_key)[int(self.indices[index])]

    def _all_frames(self) -> np.ndarray:
        key = (self._emu_key, self.T, self.dt_us, self.ds)
        if key not in _DIGITS_FRAMES:
            from tonic.transforms import ToFrame

            H, W = self.sensor_size
            hs, ws = H // self.ds, W // self.ds
            to_frame = ToFrame(sensor_size=(ws, hs, 2), time_window=self.dt_us, start_time=0,
                               end_time=self.T * self.dt_us)
            out = np.zeros((len(_digits_events(self._emu_key)), self.T, hs, ws, 2), np.float32)
            for i, ev in enumerate(_digits_events(self._emu_key)):
                if ev.shape[0] == 0:
                    continue
                ev = ev.copy()
                ev["x"] //= self.ds
                ev["y"] //= self.ds
                ev = ev[(ev["x"] < ws) & (ev["y"] < hs)]
                fr = to_frame(ev)  # (T', 2, hs, ws) int16, T' <= T
                out[i, : fr.shape[0]] = fr.transpose(0, 2, 3, 1)
            _DIGITS_FRAMES[key] = out
        return _DIGITS_FRAMES[key]

    def __getstate__(self) -> dict:
        # Ship the frames with the object (about 29 MB for the defaults) so that grain worker
        # processes do not emulate the whole digits set again.
        state = self.__dict__.copy()
        state["_frames_payload"] = self._all_frames()
        return state

    def __setstate__(self, state: dict) -> None:
        payload = state.pop("_frames_payload", None)
        self.__dict__.update(state)
        if payload is not None:
            _DIGITS_FRAMES.setdefault((self._emu_key, self.T, self.dt_us, self.ds), payload)

    def frames(self, index: int, *, epoch: int = 0) -> np.ndarray:
        index = self._check_index(index)
        fr = self._all_frames()[int(self.indices[index])]
        if self.split == "train":
            return fr.copy()
        return np.broadcast_to(fr, (self.n_test_windows, *fr.shape)).copy()


# ============================================================================================
# DVS128 Gesture


def _listdir_sorted(path: str) -> list[str]:
    return sorted(os.listdir(path))


@functools.lru_cache(maxsize=2)
def _cached_aedat31(path: str) -> np.ndarray:
    return sort_events(read_aedat31(path))


class DVSGestureDataset(EventFrameDataset):
    """IBM DVS128 Gesture (11 classes, 128x128) from local files, in one of two layouts.

    * ``layout='ibm'`` (the original ``DvsGesture`` folder; official MA-SNN and SpikingJelly
      split): files listed in ``trials_to_train.txt`` / ``trials_to_test.txt``; one sample per
      row of ``userXX_<lighting>_labels.csv``: the events with ``start <= t < end`` of that
      AEDAT 3.1 recording, label = class - 1. 1,176 train / 288 test samples for the full
      dataset. Parsed recordings are cached by path (the 2 most recent files per process; a
      file changed on disk during the run is not re-read); ``cache_events`` keeps every
      sample's events in memory.
    * ``layout='tonic'``: tonic's pre-cut ``.npy`` files (timestamps in ms; 1,077 / 264
      samples), sorted by folder then label.

    ``layout='auto'`` picks 'ibm' when a ``trials_to_train.txt`` is found, else 'tonic' (when neither is
    there, the error describes both layouts). Every recording file of the split is checked up front (one
    ``os.stat`` each: exists, regular, not empty); contents are checked when first read.
    Official defaults: T = 60, dt = 25 ms, ds = 4 (frames 60x32x32x2), random training windows,
    10 test windows.

    Raises:
      ValueError: ``root`` is None or the layout name is unknown.
      DatasetNotFoundError: missing folder / no samples (message names the path and layout).
      FileNotFoundError, DataFormatError: a listed file is missing or empty (when the dataset is built) or
        corrupt (when read; names it).
    """

    def __init__(self, root: str | None, split: str = "train", *, layout: str = "auto", T: int = 60,
                 dt_ms: float = 25.0, ds: int = 4, n_test_windows: int = 10, seed: int = 0,
                 random_window: bool = True, cache_events: bool = False):
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
                self._samples, labels = self._index_ibm(root, split)
        elif layout == "ibm":
            self._samples, labels = self._index_ibm(root, split)
        else:
            self._samples, labels = self._index_tonic(root, split)
        self.layout = layout
        self.root = root
        super().__init__(name="dvs_gesture", split=split, num_classes=11, sensor_size=(128, 128),
                         T=T, dt_us=_ms_to_us(dt_ms, "dt_ms"), ds=ds, n_test_windows=n_test_windows,
                         seed=seed, random_window=random_window, labels=labels,
                         cache_events=cache_events)

    @staticmethod
    def _index_ibm(root: str, split: str):
        base = _find_ibm_root(root)
        if base is None:
            raise DatasetNotFoundError(
                f"DVS Gesture (IBM layout): no trials_to_train.txt under {root}. Expected {IBM_GESTURE_LAYOUT}"
            )
        trials = read_trial_list(os.path.join(base, f"trials_to_{split}.txt"))
        samples, labels = [], []
        for name in trials:
            aedat = os.path.join(base, name)
            stem = name[:-6] if name.endswith(".aedat") else name
            csv = os.path.join(base, stem + "_labels.csv")
            if not os.path.isfile(aedat):
                raise FileNotFoundError(
                    f"DVS Gesture: {aedat} (listed in trials_to_{split}.txt) not found. Expected {IBM_GESTURE_LAYOUT}"
                )
            _check_recordings([aedat], "DVS Gesture (IBM layout)", IBM_GESTURE_LAYOUT)
            for cls, start, end in read_gesture_labels(csv):
                samples.append((aedat, int(start), int(end)))
                labels.append(int(cls) - 1)
        return samples, labels

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

    def load_events(self, index: int) -> np.ndarray:
        s = self._samples[index]
        if self.layout == "tonic":
            return read_tonic_gesture_npy(s)
        path, start, end = s
        ev = _cached_aedat31(path)
        t = ev["t"]
        return ev[np.searchsorted(t, start, "left") : np.searchsorted(t, end, "left")]


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
                 random_window: bool = False, cache_events: bool = False):
        root = _require_root(root, "dvs_gait")
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
                         labels=labels, cache_events=cache_events)

    def load_events(self, index: int) -> np.ndarray:
        return read_gait_txt(self._files[index])


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
    official split: 900 / 100 per class, 9,000 / 1,000 in all). Official defaults: T = 20,
    dt = 10 ms, ds = 1, random training windows, 10 test windows.

    Raises:
      ValueError: ``root`` None, bad layout/fraction. DatasetNotFoundError: missing root, a
      class folder missing, or no sample files (names the path and layout). DataFormatError: an empty
      recording of the split (when built; every file is stat'ed) or a corrupt one (when read).
    """

    def __init__(self, root: str | None, split: str = "train", *, layout: str = "auto",
                 train_fraction: float = 0.9, T: int = 20, dt_ms: float = 10.0, ds: int = 1,
                 n_test_windows: int = 10, seed: int = 0, random_window: bool = True,
                 cache_events: bool = False):
        root = _require_root(root, "cifar10_dvs")
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
        ext = ".mat" if layout == "mat" else ".aedat"
        files, labels = [], []
        for label, cls in enumerate(CIFAR10_CLASSES):
            d = os.path.join(root, cls)
            found = [(k, f) for f in os.listdir(d) if f.endswith(ext)
                     for k in [_trailing_int(f)] if k is not None]
            if not found:
                raise DatasetNotFoundError(
                    f"CIFAR10-DVS ({layout} layout): no '*{ext}' files in {d}. Expected {CIFAR10DVS_LAYOUT}"
                )
            found.sort()
            n_train = int(np.floor(float(train_fraction) * len(found)))
            part = found[:n_train] if split == "train" else found[n_train:]
            files += [os.path.join(d, f) for _, f in part]
            labels += [label] * len(part)
        if not files:
            raise DatasetNotFoundError(f"CIFAR10-DVS: the {split} split of {root} is empty (train_fraction={train_fraction})")
        _check_recordings(files, f"CIFAR10-DVS ({layout} layout)", CIFAR10DVS_LAYOUT)
        self._files = files
        self.layout = layout
        self.root = root
        super().__init__(name="cifar10_dvs", split=split, num_classes=10, sensor_size=(128, 128),
                         T=T, dt_us=_ms_to_us(dt_ms, "dt_ms"), ds=ds, n_test_windows=n_test_windows,
                         seed=seed, random_window=random_window, labels=labels,
                         cache_events=cache_events)

    def load_events(self, index: int) -> np.ndarray:
        f = self._files[index]
        return read_cifar10dvs_mat(f) if self.layout == "mat" else read_aedat2_dvs128(f)


# ============================================================================================
# helpers


def _ms_to_us(dt_ms, key: str) -> int:
    try:
        v = float(dt_ms)
    except (TypeError, ValueError):
        raise ValueError(f"config.data.{key} must be a positive number (ms), got {dt_ms!r}") from None
    us = int(round(v * 1000.0))
    if not v > 0 or us <= 0 or abs(us - v * 1000.0) > 1e-6 * max(1.0, v * 1000.0):
        raise ValueError(f"config.data.{key} must be a positive multiple of 0.001 ms, got {dt_ms!r}")
    return us


def _check_recordings(paths: Sequence[str], what: str, expected: str) -> None:
    """Up-front check of a split's recording files, one ``os.stat`` each (no parsing).

    Raises FileNotFoundError for a file that cannot be stat'ed (e.g. a broken link) and DataFormatError for one that
    is not a regular file or is empty, naming the path (the first few of the empty ones, and their count) and the
    expected layout. Contents are checked when a recording is first read.
    """
    empty = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as e:
            raise FileNotFoundError(
                f"{what}: recording {path} cannot be read ({e.strerror or e}). Expected {expected}"
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise DataFormatError(f"{what}: recording {path} is not a regular file. Expected {expected}")
        if st.st_size == 0:
            empty.append(path)
    if empty:
        more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
        raise DataFormatError(
            f"{what}: {len(empty)} of {len(paths)} recording file(s) are empty (0 bytes): "
            f"{', '.join(empty[:3])}{more}. Expected {expected}"
        )


def _require_root(root, name: str) -> str:
    if root is None or (isinstance(root, str) and not root.strip()):
        raise ValueError(
            f"config.data.root must be set to the local folder of the {name} dataset (it cannot be "
            "downloaded at run time)"
        )
    root = os.path.expanduser(str(root))
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"{name}: root folder {root} (config.data.root) does not exist")
    return root

