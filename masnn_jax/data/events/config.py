"""Config-driven construction of datasets: :func:`build` and :func:`default_data_config`.

``config.data`` keys (an ``ml_collections.ConfigDict`` or a plain dict):

======================== ========== =============================================================
key                      default    meaning
======================== ========== =============================================================
name                     digits_dvs 'digits_dvs' | 'dvs_gesture' | 'dvs_gait' | 'cifar10_dvs'
root                     None       local dataset folder; required for every name but digits_dvs
T                        per name   time bins per window (digits 8, gesture 60, gait 8, cifar 20)
dt_ms                    per name   bin length, ms (digits 25, gesture 25, gait 500, cifar 10)
ds                       per name   spatial downsampling (digits 2, gesture 4, gait 1, cifar 1)
n_test_windows           per name   windows per test sample (digits 1, gesture 10, gait 1,
                                    cifar 10)
seed                     0          split (digits), random training windows, emulator noise
train_random_window      per name   random training window (gesture/cifar True, gait False;
                                    digits: always one fixed window)
cache_events             False      keep every recording's events in memory after first use
                                    (unbounded; overrides cache_mb)
cache_mb                 1024       LRU cache of parsed recordings, MiB per process (each grain
                                    worker has its own); 0 = off. A Gesture recording of 1 M
                                    events takes 13 MB
window_rule              'official' 'official': window placement and bins exactly as the
                                    official MA-SNN loaders (bins from the first event in a
                                    window; test windows drop the last timestamp) | 'masnn':
                                    bins from the window start (see frames.py)
bad_windows              'skip'     DVS Gesture label rows outside their recording or without
                                    events: 'skip' (one warning per file with the count) |
                                    'error' (refuse the dataset, listing every bad row)
signed_polarity          'off_on'   files with polarity -1/+1 (Gait, CIFAR10-DVS mat): 'off_on'
                                    (-1 -> OFF channel 0) | 'official' (every event in channel 1,
                                    as the official indexing chunks[i, p] does)
verify                   'auto'     read and validate every file of both splits before training
                                    (masnn_jax.data.events.maybe_verify): True | False | 'auto'
                                    (on when the files total at most verify_auto_mb, and for
                                    the embedded digits)
verify_auto_mb           64         size limit (MiB, both splits) for verify='auto'
verify_workers           0          threads for verify (0 = min(8, CPUs))
frame_mode               'time'     'time': T bins of dt_ms in windows (MA-SNN loaders) |
                                    'number': SpikingJelly split_by='number', T frames of equal
                                    event counts over the whole recording (Spikformer
                                    CIFAR10-DVS; needs n_test_windows=1 and
                                    train_random_window=False; not for digits_dvs)
augment                  'none'     'none' | 'snn_augment_wide': training clips get hflip p 0.5
                                    then SNNAugmentWide (official Spikformer CIFAR10-DVS; see
                                    masnn_jax.data.events.recipe); not for digits_dvs
gesture_layout           'auto'     'tonic' | 'ibm' | 'auto' (see DVSGestureDataset)
gait_lighting            'day'      'day' | 'night'
cifar_layout             'auto'     'mat' | 'aedat' | 'auto'
cifar_train_fraction     0.9        per-class fraction of CIFAR10-DVS files used for training
cifar_split_order        'numeric'  'numeric': files by k, first floor(fraction*n) train (MA-SNN) |
                                    'spikingjelly': k sorted as strings, first ceil(fraction*n)
                                    train (Spikformer's split of SpikingJelly's CIFAR10DVS)
cifar_orientation        'as_stored' 'as_stored' | 'spikingjelly' (.aedat only): x = 127 - y,
                                    y = 127 - x, p = 1 - p as SpikingJelly's CIFAR10DVS reader
digits_test_fraction     0.2        stratified test fraction of the 1,797 digits
digits_sensor_size       32         sensor side (int) or (H, W)
digits_scale             3.0        sensor pixels per digit pixel (8x8 -> 24x24)
digits_saccade_amplitude 1.0        saccade triangle size (px, see DigitsDVS)
digits_time_step_us      2000       emulator sampling step (µs)
digits_contrast_threshold 0.2       DVS contrast threshold (log units)
digits_refractory_us     0          refractory period (µs)
digits_log_eps           0.1        intensity offset inside the log
digits_threshold_sigma   0.0        per-pixel threshold mismatch (std, log units)
digits_noise_rate_hz     0.0        background noise events per pixel per second
======================== ========== =============================================================

``None`` (or a missing key) means the default for the chosen name. The enumerated keys
(:data:`ENUM_VALUES`: ``window_rule``, ``bad_windows``, ``signed_polarity``, ``verify``, ``frame_mode``,
``augment``, ``gesture_layout``, ``gait_lighting``, ``cifar_layout``, ``cifar_split_order``,
``cifar_orientation``) are checked whatever the dataset name, also those the chosen dataset does not read: a
value outside the list stops with an error naming ``config.data.<key>`` and the allowed values.
"""

from __future__ import annotations

from collections.abc import Mapping

from masnn_jax.data.events.core import SIGNED_POLARITY_MODES
from masnn_jax.data.events.datasets import BAD_WINDOW_MODES, DigitsDVS, EventFrameDataset
from masnn_jax.data.events.frames import WINDOW_RULES
from masnn_jax.data.events.recipe import AUGMENT_MODES, FRAME_MODES
from masnn_jax.data.events.recorded import CIFAR10DVSDataset, DVSGaitDataset, DVSGestureDataset

__all__ = ["DATASET_NAMES", "DATASET_DEFAULTS", "COMMON_KEYS", "SPECIFIC_KEYS", "ENUM_VALUES",
           "default_data_config", "build", "check_model_data"]

DATASET_NAMES = ("digits_dvs", "dvs_gesture", "dvs_gait", "cifar10_dvs")

#: Per-dataset framing defaults (official MA-SNN configs for the real datasets).
DATASET_DEFAULTS = {
    "digits_dvs": dict(T=8, dt_ms=25.0, ds=2, n_test_windows=1, train_random_window=False),
    "dvs_gesture": dict(T=60, dt_ms=25.0, ds=4, n_test_windows=10, train_random_window=True),
    "dvs_gait": dict(T=8, dt_ms=500.0, ds=1, n_test_windows=1, train_random_window=False),
    "cifar10_dvs": dict(T=20, dt_ms=10.0, ds=1, n_test_windows=10, train_random_window=True),
}

COMMON_KEYS = dict(name="digits_dvs", root=None, T=None, dt_ms=None, ds=None,
                   n_test_windows=None, seed=0, train_random_window=None, cache_events=False,
                   cache_mb=1024.0, window_rule="official", bad_windows="skip", signed_polarity="off_on",
                   verify="auto", verify_auto_mb=64, verify_workers=0, frame_mode="time", augment="none")

SPECIFIC_KEYS = dict(
    gesture_layout="auto",
    gait_lighting="day",
    cifar_layout="auto",
    cifar_train_fraction=0.9,
    cifar_split_order="numeric",
    cifar_orientation="as_stored",
    digits_test_fraction=0.2,
    digits_sensor_size=32,
    digits_scale=3.0,
    digits_saccade_amplitude=1.0,
    digits_time_step_us=2000,
    digits_contrast_threshold=0.2,
    digits_refractory_us=0,
    digits_log_eps=0.1,
    digits_threshold_sigma=0.0,
    digits_noise_rate_hz=0.0,
)


#: The allowed values of every enumerated ``config.data`` key; :func:`resolve` checks them whatever the dataset name
#: (a key the chosen dataset does not read is checked too, so a typo never passes silently).
ENUM_VALUES = {
    "window_rule": WINDOW_RULES,
    "bad_windows": BAD_WINDOW_MODES,
    "signed_polarity": SIGNED_POLARITY_MODES,
    "verify": (True, False, "auto"),
    "frame_mode": FRAME_MODES,
    "augment": AUGMENT_MODES,
    "gesture_layout": ("auto", "ibm", "tonic"),
    "gait_lighting": ("day", "night"),
    "cifar_layout": ("auto", "mat", "aedat"),
    "cifar_split_order": ("numeric", "spikingjelly"),
    "cifar_orientation": ("as_stored", "spikingjelly"),
}


def _check_enum(key: str, value) -> None:
    allowed = ENUM_VALUES[key]
    # bool is a subclass of int: compare by type too, so 1 / 0 / 'True' are not taken for True / False
    if not any(value is a if isinstance(a, bool) else (isinstance(value, str) and value == a) for a in allowed):
        raise ValueError(f"config.data.{key} must be one of {allowed}, got {value!r}")


def default_data_config(name: str = "digits_dvs"):
    """An ``ml_collections.ConfigDict`` with every key of ``config.data`` set for ``name``.

    ``root`` is ``None`` (a placeholder accepting a str); the framing keys hold the dataset's
    defaults (:data:`DATASET_DEFAULTS`).

    Raises:
      ValueError: unknown ``name``.
    """
    import ml_collections
    from ml_collections import config_dict

    if name not in DATASET_NAMES:
        raise ValueError(f"config.data.name must be one of {DATASET_NAMES}, got {name!r}")
    d = dict(COMMON_KEYS)
    d.update(SPECIFIC_KEYS)
    d.update(DATASET_DEFAULTS[name])
    d["name"] = name
    d["root"] = config_dict.placeholder(str)
    d["verify"] = ml_collections.FieldReference(d["verify"], field_type=object)  # True | False | 'auto'
    d["cache_mb"] = float(d["cache_mb"])
    return ml_collections.ConfigDict(d)


def _as_dict(cfg) -> dict:
    if isinstance(cfg, Mapping):
        return dict(cfg)
    if hasattr(cfg, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
        return {k: cfg[k] for k in cfg.keys()}
    raise TypeError(f"data_config must be an ml_collections.ConfigDict or a dict, got {type(cfg).__name__}")


def _int(cfg: dict, key: str, *, positive: bool = True, allow_zero: bool = False) -> int:
    v = cfg[key]
    ok = not isinstance(v, bool) and (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))
    if ok:
        v = int(v)
        ok = v > 0 or (allow_zero and v == 0) or not positive
    if not ok:
        raise ValueError(f"config.data.{key} must be a positive integer, got {cfg[key]!r}")
    return v


def resolve(data_config) -> dict:
    """``config.data`` with every key filled in (defaults of the chosen name for missing / None keys).

    Raises:
      ValueError: unknown ``name`` or key, or a value of an enumerated key (:data:`ENUM_VALUES`, checked whatever
        the dataset name) outside its list; the message names ``config.data.<key>`` and the allowed values.
    """
    cfg = _as_dict(data_config)
    unknown = sorted(set(cfg) - set(COMMON_KEYS) - set(SPECIFIC_KEYS))
    if unknown:
        raise ValueError(
            f"config.data has unknown key(s) {unknown}; known keys: "
            f"{sorted(set(COMMON_KEYS) | set(SPECIFIC_KEYS))}"
        )
    name = cfg.get("name", COMMON_KEYS["name"])
    if name not in DATASET_NAMES:
        raise ValueError(f"config.data.name must be one of {DATASET_NAMES}, got {name!r}")
    full = dict(COMMON_KEYS)
    full.update(SPECIFIC_KEYS)
    full.update(DATASET_DEFAULTS[name])
    full.update({k: v for k, v in cfg.items() if v is not None})
    full["name"] = name
    for key in ENUM_VALUES:
        _check_enum(key, full[key])
    return full


def data_sensor_size(data_config) -> tuple[int, int]:
    """``(H, W)`` of the events of the dataset ``config.data`` names (128x128, or ``digits_sensor_size``)."""
    full = resolve(data_config)
    if full["name"] != "digits_dvs":
        return (128, 128)
    side = full["digits_sensor_size"]
    return (int(side), int(side)) if isinstance(side, (int, float)) else tuple(int(s) for s in side)


def check_model_data(config, input_shape=None) -> None:
    """Checks that the frames ``config.data`` makes fit the network ``config.model`` expects.

    Compares ``(H // ds, W // ds, 2)`` (sensor of ``config.data.name``, ``config.data.ds``) with
    ``config.model.input_shape`` (or the input shape of ``config.model.arch``'s official plan) and
    ``config.data.T`` with ``config.model.T``. Skips (returns) when ``config.model`` has no input shape or T to
    compare (an image model, a custom model without them) or the data are not event data.

    Args:
      config: the run config with ``data`` and ``model``.
      input_shape: the ``(H, W, C)`` the built model expects, when ``config.model`` leaves it to its ``arch``
        (the caller knows the model family; the data layer does not import models).

    Raises:
      ValueError: a mismatch; the message names both keys and values, e.g. ``config.data.ds=3 gives frames
        (42, 42, 2) but config.model.input_shape is (32, 32, 2)``.
    """
    data = _as_dict(config["data"] if isinstance(config, Mapping) else config.data)
    if data.get("name", "digits_dvs") not in DATASET_NAMES:
        return
    model = config["model"] if isinstance(config, Mapping) else config.get("model", None)
    if model is None:
        return
    model = _as_dict(model)
    full = resolve(data)
    shape = model.get("input_shape")
    shape_key = "config.model.input_shape"
    arch = model.get("arch")
    if shape is None and input_shape is not None:
        shape = input_shape
        if arch not in (None, "custom"):
            shape_key = f"config.model.input_shape (from config.model.arch={arch!r})"
    H, W = data_sensor_size(full)
    ds = _int(full, "ds")
    frame = (H // ds, W // ds, 2)
    if shape is not None and tuple(int(v) for v in shape) != frame:
        raise ValueError(
            f"config.data.ds={ds} on the {H}x{W} sensor of config.data.name={full['name']!r} gives frames "
            f"(H, W, C) = {frame} but {shape_key} is {tuple(int(v) for v in shape)}; set config.data.ds="
            f"{H // int(shape[0]) if int(shape[0]) and H % int(shape[0]) == 0 else '?'} or change "
            "config.model.input_shape")
    T_model = model.get("T")
    if T_model is not None and int(T_model) != _int(full, "T"):
        raise ValueError(f"config.data.T={_int(full, 'T')} but config.model.T={int(T_model)}: the model expects "
                         f"{int(T_model)} time bins per window")


def build(data_config, split: str) -> EventFrameDataset:
    """Builds the dataset described by ``data_config`` (``config.data``) for ``split``.

    Args:
      data_config: ``ml_collections.ConfigDict`` (or dict) with the keys in this module's
        docstring; missing keys take their defaults.
      split: 'train' or 'test'.

    Returns:
      an :class:`EventFrameDataset` (``num_classes``, ``frame_shape``, ``item_shape``, ``split``).

    Raises:
      ValueError: unknown ``name`` or key, bad value (naming ``config.data.<key>``), missing
        ``root`` for a real dataset (naming ``config.data.root``), bad split.
      DatasetNotFoundError / FileNotFoundError / DataFormatError: missing or corrupt data
        (naming the path and the expected layout).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    full = resolve(data_config)
    name = full["name"]
    try:
        dt_ms = float(full["dt_ms"])
    except (TypeError, ValueError):
        raise ValueError(f"config.data.dt_ms must be a positive number, got {full['dt_ms']!r}") from None
    if not dt_ms > 0:
        raise ValueError(f"config.data.dt_ms must be a positive number, got {full['dt_ms']!r}")
    common = dict(T=_int(full, "T"), dt_ms=dt_ms, ds=_int(full, "ds"),
                  n_test_windows=_int(full, "n_test_windows"),
                  seed=_int(full, "seed", positive=False))
    random_window = bool(full["train_random_window"])
    cache_events = bool(full["cache_events"])
    from masnn_jax.data.events.datasets import _cache_mb

    files = dict(cache_events=cache_events, cache_mb=_cache_mb(full["cache_mb"]),
                 window_rule=str(full["window_rule"]))  # enumerated keys: checked by resolve()
    recipe = dict(frame_mode=str(full["frame_mode"]), augment=str(full["augment"]))
    if name == "digits_dvs" and recipe != dict(frame_mode="time", augment="none"):
        raise ValueError(f"config.data.frame_mode={recipe['frame_mode']!r} / config.data.augment="
                         f"{recipe['augment']!r}: digits_dvs frames are emulated in fixed windows; only "
                         "frame_mode='time' and augment='none' are available for it")
    if name == "digits_dvs":
        side = full["digits_sensor_size"]
        sensor = (int(side), int(side)) if isinstance(side, (int, float)) else tuple(int(s) for s in side)
        return DigitsDVS(
            split, test_fraction=float(full["digits_test_fraction"]), sensor_size=sensor,
            scale=float(full["digits_scale"]),
            saccade_amplitude=float(full["digits_saccade_amplitude"]),
            time_step_us=_int(full, "digits_time_step_us"),
            contrast_threshold=float(full["digits_contrast_threshold"]),
            refractory_us=_int(full, "digits_refractory_us", allow_zero=True),
            log_eps=float(full["digits_log_eps"]),
            threshold_sigma=float(full["digits_threshold_sigma"]),
            noise_rate_hz=float(full["digits_noise_rate_hz"]),
            **common,
        )
    root = full["root"]
    if name == "dvs_gesture":
        return DVSGestureDataset(root, split, layout=str(full["gesture_layout"]), random_window=random_window,
                                 bad_windows=str(full["bad_windows"]), **files, **common).set_recipe(**recipe)
    if name == "dvs_gait":
        return DVSGaitDataset(root, split, lighting=str(full["gait_lighting"]), random_window=random_window,
                              signed_polarity=str(full["signed_polarity"]), **files, **common).set_recipe(**recipe)
    ds = CIFAR10DVSDataset(root, split, layout=str(full["cifar_layout"]),
                           train_fraction=float(full["cifar_train_fraction"]), random_window=random_window,
                           signed_polarity=str(full["signed_polarity"]),
                           split_order=str(full["cifar_split_order"]),
                           orientation=str(full["cifar_orientation"]), **files, **common)
    return ds.set_recipe(**recipe)
