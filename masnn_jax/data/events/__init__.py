"""Data layer of masnn-jax: event emulation, event frames, DVS datasets and grain loaders.

Entry points used by training:

* :func:`build` ``(config.data, split) -> EventFrameDataset``
* :func:`make_loader` ``(dataset, batch_size=..., shuffle=..., seed=..., epoch=...)`` and
  :func:`num_batches`.

Layout conventions: one window of frames is ``(T, H, W, 2)`` float32 event counts (channel
0 = OFF, 1 = ON; H indexes y, W indexes x); batches are ``(B, T, H, W, 2)`` for training and
``(B, n, T, H, W, 2)`` for testing (n windows per sample, vote over them). Events are NumPy
structured arrays with fields x, y (int16), p (bool), t (int64, µs).
"""

from masnn_jax.data.events.config import (
    DATASET_DEFAULTS,
    DATASET_NAMES,
    build,
    check_model_data,
    default_data_config,
)
from masnn_jax.data.events.datasets import (
    CIFAR10_CLASSES,
    GESTURE_CLASSES,
    BAD_WINDOW_MODES,
    DatasetNotFoundError,
    EventCache,
    DigitsDVS,
    EventFrameDataset,
)
from masnn_jax.data.events.recorded import CIFAR10DVSDataset, DVSGaitDataset, DVSGestureDataset
from masnn_jax.data.events.emulator import (
    DEFAULT_SACCADES,
    emulate_dvs,
    emulate_dvs_batch,
    render_frames,
    saccade_path,
)
from masnn_jax.data.events.core import (
    EVENT_DTYPE,
    SIGNED_POLARITY_MODES,
    make_events,
    polarity_to_index,
    sort_events,
    validate_events,
)
from masnn_jax.data.events.frames import (
    WINDOW_RULES,
    events_to_frames,
    frames_for_windows,
    frames_test_windows,
    frames_train_window,
    official_window_starts,
    spread_window_starts,
    train_window_start,
    vote_correct,
)
from masnn_jax.data.loader import Loader, epoch_seed, make_loader, num_batches
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
from masnn_jax.data.events.verify import VerifyReport, maybe_verify, verify
from masnn_jax.data.events.recipe import (
    AUGMENT_MODES,
    FRAME_MODES,
    frames_by_number,
    hflip_then_snn_augment_wide,
    snn_augment_wide,
)

__all__ = [
    "build", "default_data_config", "DATASET_NAMES", "DATASET_DEFAULTS", "check_model_data",
    "verify", "maybe_verify", "VerifyReport", "EventCache", "BAD_WINDOW_MODES", "WINDOW_RULES",
    "SIGNED_POLARITY_MODES", "validate_events", "official_window_starts", "frames_train_window",
    "frames_test_windows",
    "EventFrameDataset", "DigitsDVS", "DVSGestureDataset", "DVSGaitDataset", "CIFAR10DVSDataset",
    "DatasetNotFoundError", "DataFormatError", "GESTURE_CLASSES", "CIFAR10_CLASSES",
    "emulate_dvs", "emulate_dvs_batch", "render_frames", "saccade_path", "DEFAULT_SACCADES",
    "EVENT_DTYPE", "make_events", "polarity_to_index", "sort_events",
    "events_to_frames", "frames_for_windows", "spread_window_starts", "train_window_start",
    "vote_correct",
    "FRAME_MODES", "AUGMENT_MODES", "frames_by_number", "snn_augment_wide", "hflip_then_snn_augment_wide",
    "make_loader", "num_batches", "Loader", "epoch_seed",
    "read_aedat31", "read_gesture_labels", "read_trial_list", "read_tonic_gesture_npy",
    "read_gait_txt", "read_cifar10dvs_mat", "read_aedat2_dvs128",
]
