"""Datasets of event-frame samples: the emulated digits (default) and three real DVS datasets.

All datasets are :class:`EventFrameDataset` objects: random access by index (and epoch, for the
random training windows), items ``{'frames': float32, 'label': int32}`` with frames
``(T, H, W, 2)`` for the training split and ``(n, T, H, W, 2)`` (n test windows) for the test
split. Nothing is downloaded: a missing, empty or corrupt dataset raises an error that names the
path and the expected layout; a file that breaks a rule of its format (coordinates, polarity, timestamps,
label windows) raises an error naming the file, the place in it and the rule. Parsed recordings are cached per
process in an LRU bounded by ``cache_mb``.
"""

from __future__ import annotations

import collections
import logging
import os
import stat
import threading
from collections.abc import Sequence

import numpy as np

from masnn_jax.data.events.emulator import DEFAULT_SACCADES, emulate_dvs_batch
from masnn_jax.data.events.core import DataFormatError
from masnn_jax.data.events.frames import (
    WINDOW_RULES,
    frames_test_windows,
    frames_train_window,
    train_window_start,
)

logger = logging.getLogger("masnn_jax.data")

#: ``config.data.bad_windows`` values: 'skip' (default; drop a bad label window, one warning per file with the
#: count) | 'error' (refuse the dataset, listing every bad window).
BAD_WINDOW_MODES = ("skip", "error")

__all__ = [
    "BAD_WINDOW_MODES",
    "EventCache",
    "DatasetNotFoundError",
    "EventFrameDataset",
    "DigitsDVS",
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


def _cache_mb(v) -> float:
    try:
        mb = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"config.data.cache_mb must be a number >= 0 (MiB), got {v!r}") from None
    if not (mb >= 0 and np.isfinite(mb)):
        raise ValueError(f"config.data.cache_mb must be a finite number >= 0 (MiB), got {v!r}")
    return mb


class EventCache:
    """A least-recently-used cache of parsed recordings bounded by their size in bytes (thread-safe).

    Args:
      budget_bytes: most bytes kept (``ndarray.nbytes`` summed); None = unbounded; 0 = keep nothing. A
        recording larger than the budget is not kept.

    Methods: ``get(key)`` (None on a miss), ``put(key, array)``, ``stats()`` ->
    ``{'hits', 'misses', 'bytes', 'items', 'budget_bytes'}``.
    """

    def __init__(self, budget_bytes: int | None):
        self.budget_bytes = None if budget_bytes is None else int(budget_bytes)
        self._items: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        """The array stored under ``key`` (now most recently used), or None."""
        with self._lock:
            arr = self._items.get(key)
            if arr is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return arr

    def put(self, key, arr: np.ndarray) -> None:
        """Stores ``arr`` under ``key``, evicting least recently used entries to stay within the budget."""
        size = int(arr.nbytes)
        with self._lock:
            if self.budget_bytes is not None and size > self.budget_bytes:
                return
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= int(old.nbytes)
            self._items[key] = arr
            self._bytes += size
            while self.budget_bytes is not None and self._bytes > self.budget_bytes:
                _, victim = self._items.popitem(last=False)
                self._bytes -= int(victim.nbytes)

    def stats(self) -> dict:
        """``{'hits', 'misses', 'bytes', 'items', 'budget_bytes'}``."""
        with self._lock:
            return dict(hits=self.hits, misses=self.misses, bytes=self._bytes, items=len(self._items),
                        budget_bytes=self.budget_bytes)

    def __getstate__(self):
        return {"budget_bytes": self.budget_bytes}

    def __setstate__(self, state):
        self.__init__(state["budget_bytes"])


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

    Window placement and binning follow ``window_rule`` (:mod:`masnn_jax.data.events.frames`; 'official' by
    default). Parsed recordings are kept in a per-process LRU cache of ``cache_mb`` MiB (:class:`EventCache`;
    ``cache_events=True`` = unbounded; each grain worker process has its own). A recording is validated when it
    is read (errors name the file); a sample without events is an error naming it.

    Subclasses implement :meth:`recording_of`, :meth:`read_recording` and, when a sample is a part of a
    recording, :meth:`sample_events`.

    Attributes:
      name: dataset name. split: 'train' or 'test'. num_classes: int.
      sensor_size: ``(H, W)`` of the events. frame_shape: ``(T, H // ds, W // ds, 2)``.
      item_shape: shape of ``item['frames']``. labels: ``(N,)`` int32 array.
      T, dt_us, ds, n_test_windows, seed, random_window, window_rule: the framing parameters.
      cache: the :class:`EventCache` (``cache.stats()`` gives hits, misses and bytes).
    """

    #: Random training starts include ``t_last - T*dt`` (Gait's ``random.randint``) when True.
    include_high = False
    #: ``config.data.frame_mode`` ('time' | 'number', :mod:`masnn_jax.data.events.recipe`); set by :meth:`set_recipe`.
    frame_mode = "time"
    #: ``config.data.augment`` ('none' | 'snn_augment_wide'); set by :meth:`set_recipe`.
    augment = "none"

    def set_recipe(self, *, frame_mode: str = "time", augment: str = "none") -> "EventFrameDataset":
        """Chooses how frames are made and augmented (``config.data.frame_mode`` / ``config.data.augment``).

        * ``frame_mode='time'`` (default): windows of ``T`` bins of ``dt_us`` (the MA-SNN loaders, module docstring).
        * ``frame_mode='number'``: SpikingJelly's ``split_by='number'`` over the whole sample
          (:func:`~masnn_jax.data.events.recipe.frames_by_number`: ``T`` frames with equal event counts, in the
          sample's event order); ``dt_ms``, ``window_rule`` and the windows do not apply; test items are
          ``(1, T, H, W, 2)`` (one clip, so ``n_test_windows`` must be 1 and ``train_random_window`` False).
        * ``augment='snn_augment_wide'``: every training item gets the official Spikformer CIFAR10-DVS augmentation
          (:func:`~masnn_jax.data.events.recipe.hflip_then_snn_augment_wide`) drawn from
          ``np.random.default_rng([seed, epoch, index, 7])``; test items are never augmented.

        Returns:
          ``self``.

        Raises:
          ValueError: an unknown value, or ``'number'`` with ``n_test_windows != 1`` or random training windows
            (naming the ``config.data`` keys).
        """
        from masnn_jax.data.events.recipe import AUGMENT_MODES, FRAME_MODES

        if frame_mode not in FRAME_MODES:
            raise ValueError(f"config.data.frame_mode must be one of {FRAME_MODES}, got {frame_mode!r}")
        if augment not in AUGMENT_MODES:
            raise ValueError(f"config.data.augment must be one of {AUGMENT_MODES}, got {augment!r}")
        if frame_mode == "number":
            if self.n_test_windows != 1:
                raise ValueError(f"config.data.frame_mode='number' frames the whole recording as one clip: set "
                                 f"config.data.n_test_windows=1 (got {self.n_test_windows})")
            if self.random_window:
                raise ValueError("config.data.frame_mode='number' frames the whole recording (no window): set "
                                 "config.data.train_random_window=False")
        self.frame_mode = frame_mode
        self.augment = augment
        return self

    def __init__(self, *, name: str, split: str, num_classes: int, sensor_size: tuple[int, int],
                 T: int, dt_us: int, ds: int, n_test_windows: int, seed: int,
                 random_window: bool, labels: Sequence[int], cache_events: bool = False,
                 cache_mb: float = 1024, window_rule: str = "official"):
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
        if window_rule not in WINDOW_RULES:
            raise ValueError(f"config.data.window_rule must be one of {WINDOW_RULES}, got {window_rule!r}")
        self.window_rule = window_rule
        self.cache_mb = _cache_mb(cache_mb)
        self.cache = EventCache(None if self.cache_events else int(self.cache_mb * 2 ** 20))
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

    # -- events ------------------------------------------------------------------------------
    def recording_of(self, index: int) -> str:
        """The file (cache key) holding sample ``index``. Subclasses implement."""
        raise NotImplementedError

    def read_recording(self, path: str) -> np.ndarray:
        """All events of ``path``, validated and sorted by t (:data:`EVENT_DTYPE`). Subclasses implement."""
        raise NotImplementedError

    def sample_events(self, index: int, recording: np.ndarray) -> np.ndarray:
        """The events of sample ``index`` within its ``recording`` (default: all of it)."""
        return recording

    def sample_name(self, index: int) -> str:
        """How errors name sample ``index``: its file (and label row where a file holds several samples)."""
        return self.recording_of(index)

    def recordings(self) -> dict[str, list[int]]:
        """``{file: [sample indices]}`` over the split, in first-use order (what :func:`verify` reads)."""
        out: dict[str, list[int]] = {}
        for i in range(len(self)):
            out.setdefault(self.recording_of(i), []).append(i)
        return out

    def load_events(self, index: int) -> np.ndarray:
        """Events of sample ``index`` read from disk (no cache): validated, sorted by t."""
        return self.sample_events(index, self.read_recording(self.recording_of(index)))

    def events(self, index: int) -> np.ndarray:
        """Events of sample ``index`` (:data:`EVENT_DTYPE`, sorted by t), the recording served from the cache."""
        path = self.recording_of(index)
        rec = self.cache.get(path)
        if rec is None:
            rec = self.read_recording(path)
            self.cache.put(path, rec)
        return self.sample_events(index, rec)

    def __getstate__(self) -> dict:
        # every process (grain worker) starts with an empty cache of the same budget
        state = self.__dict__.copy()
        state["cache"] = EventCache(self.cache.budget_bytes)
        return state

    def _check_index(self, index) -> int:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.name} {self.split} ({n} samples)")
        return int(index) % n

    # -- items ---------------------------------------------------------------------------------
    def frames(self, index: int, *, epoch: int = 0) -> np.ndarray:
        """Frames of sample ``index``: ``item_shape`` float32 (see the class docstring).

        Raises:
          DataFormatError: the sample holds no events (or, official test rule, events at one timestamp only),
            naming its file; a corrupt file (from the reader).
        """
        index = self._check_index(index)
        ev = self.events(index)
        what = self.sample_name(index)
        if ev.shape[0] == 0:
            raise DataFormatError(f"{what}: the sample holds no events")
        if self.frame_mode == "number":  # SpikingJelly split_by='number' over the whole sample (recipe.py)
            from masnn_jax.data.events.recipe import frames_by_number, hflip_then_snn_augment_wide

            fr = frames_by_number(ev, self.sensor_size, T=self.T, ds=self.ds, what=what)
            if self.split == "test":
                return fr[None]
            if self.augment == "snn_augment_wide":
                fr = hflip_then_snn_augment_wide(fr, np.random.default_rng([self.seed, int(epoch), index, 7]))
            return fr
        if self.split == "train":
            rng = np.random.default_rng([self.seed, int(epoch), index]) if self.random_window else None
            start = train_window_start(int(ev["t"][0]), int(ev["t"][-1]), T=self.T, dt_us=self.dt_us, rng=rng,
                                       include_high=self.include_high)
            fr = frames_train_window(ev, self.sensor_size, start, T=self.T, dt_us=self.dt_us, ds=self.ds,
                                     rule=self.window_rule, what=what)
            if self.augment == "snn_augment_wide":
                from masnn_jax.data.events.recipe import hflip_then_snn_augment_wide

                fr = hflip_then_snn_augment_wide(fr, np.random.default_rng([self.seed, int(epoch), index, 7]))
            return fr
        return frames_test_windows(ev, self.sensor_size, T=self.T, dt_us=self.dt_us, n=self.n_test_windows,
                                   ds=self.ds, rule=self.window_rule, what=what)

    def check_sample(self, index: int, recording: np.ndarray) -> str | None:
        """The problem of sample ``index`` (given its parsed recording) that :meth:`frames` would raise, or None."""
        ev = self.sample_events(index, recording)
        if ev.shape[0] == 0:
            return f"{self.sample_name(index)}: the sample holds no events"
        if (self.split == "test" and self.frame_mode == "time" and self.window_rule == "official"
                and ev["t"][0] == ev["t"][-1]):
            return (f"{self.sample_name(index)}: all events share one timestamp; the official test windows would "
                    "hold none")
        return None

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
        """Emulated events of sample ``index`` (sorted by t)."""
        return _digits_events(self._emu_key)[int(self.indices[index])]

    def events(self, index: int) -> np.ndarray:
        """Same as :meth:`load_events` (the emulated events are cached per process already)."""
        return self.load_events(index)

    def recording_of(self, index: int) -> str:
        """A name for sample ``index`` in messages: ``'digits_dvs image <k>'`` (k indexes ``load_digits()``)."""
        return f"digits_dvs image {int(self.indices[index])}"

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
        state = super().__getstate__()
        state["_frames_payload"] = self._all_frames()
        return state

    def __setstate__(self, state: dict) -> None:
        payload = state.pop("_frames_payload", None)
        self.__dict__.update(state)
        if payload is not None:
            _DIGITS_FRAMES.setdefault((self._emu_key, self.T, self.dt_us, self.ds), payload)

    def frames(self, index: int, *, epoch: int = 0) -> np.ndarray:
        """The emulated frames of sample ``index``: ``(T, H, W, 2)`` (train) or ``(n, T, H, W, 2)`` (test) float32."""
        index = self._check_index(index)
        fr = self._all_frames()[int(self.indices[index])]
        if self.split == "train":
            return fr.copy()
        return np.broadcast_to(fr, (self.n_test_windows, *fr.shape)).copy()


# ============================================================================================
# DVS128 Gesture


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
        layout = {"dvs_gesture": f"{IBM_GESTURE_LAYOUT}; or {TONIC_GESTURE_LAYOUT}", "dvs_gait": GAIT_LAYOUT,
                  "cifar10_dvs": CIFAR10DVS_LAYOUT}.get(name)
        raise DatasetNotFoundError(f"{name}: root folder {root} (config.data.root) does not exist"
                                   + (f"; expected {layout}" if layout else ""))
    return root

