"""Config-driven construction of image datasets: :func:`build` and :func:`default_data_config`.

``config.data`` keys (an ``ml_collections.ConfigDict`` or a plain dict):

==================== ================ ===================================================================
key                  default          meaning
==================== ================ ===================================================================
name                 digits_images    'imagenet2012' | 'imagefolder' | 'digits_images'
root                 None             imagenet2012: the tfds data_dir (``<root>/imagenet2012/5.1.0/``), or
                                      with source='folder' an ImageFolder root; imagefolder: the folder
                                      holding ``train/`` and ``val/``; digits_images: the folder written by
                                      ``write-digits`` (None: ``default_digits_root()``, written on first use)
source               per name         'tfds' (ArrayRecord) | 'folder' (ImageFolder); imagenet2012 'tfds',
                                      imagefolder 'folder', digits_images 'folder' ('tfds': its ArrayRecord copy)
tfds_version         None             tfds version folder (None: the highest prepared)
image_size           224 (digits 32)  training crop side (RandomResizedCrop output), pixels
eval_image_size      224 (digits 32)  evaluation centre-crop side; 288 = the paper's enlarged crops
eval_resize          None (digits 32) shorter side before the centre crop; None = int(eval_image_size/0.875)
                                      (256 for 224, 329 for 288)
crop_scale           (0.08, 1.0)      RandomResizedCrop area fraction range (digits (0.35, 1.0))
crop_ratio           (0.75, 1.3333)   RandomResizedCrop aspect-ratio (w/h) range
interpolation        'bilinear'       resize filter: 'bilinear' | 'bicubic' | 'nearest'
auto_augment         True (digits F)  torchvision's ImageNet AutoAugment on training images
random_flip          False            horizontal flip with p = 0.5 (the official recipe has none)
rand_augment         ''               timm RandAugment string ('rand-m9-mstd0.5-inc1'); '' = off; not with
                                      auto_augment (fill round(255*mean), geometric filter = interpolation)
rand_augment_ops     None             op names RandAugment draws from; None = timm's list for the string's inc
random_erase_prob    0.0              timm RandomErasing probability on the normalised image (0 = off)
random_erase_mode    'const'          erased fill: 'const' (0) | 'rand' (normal per channel) | 'pixel'
random_erase_count   1                maximum erased boxes per image (timm max_count)
mean                 ImageNet mean    per-channel normalisation mean of [0, 1] values
std                  ImageNet std     per-channel normalisation std
seed                 0                augmentation seed: items are a function of (seed, epoch, index)
on_corrupt           'skip'           corrupt image met while reading: 'skip' (use the next example, log a
                                      warning naming the file, count it) | 'raise'
digits_image_size    32               digits_images: side of the written JPEGs (root=None only)
digits_val_fraction  0.2              digits_images: stratified val fraction (root=None only)
==================== ================ ===================================================================

``None`` (or a missing key) means the default for the chosen name. Splits: 'train' and 'test' ('test' reads
``val/`` of an ImageFolder and ``validation`` of imagenet2012, ``test`` of the digits' ArrayRecord copy).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from masnn_jax.data.images.dataset import ON_CORRUPT, ImageDataset
from masnn_jax.data.images.randaugment import RANDOM_ERASE_MODES, check_rand_augment_ops
from masnn_jax.data.images.sources import (
    IMAGEFOLDER_LAYOUT,
    IMAGENET_PREPARE,
    DatasetNotFoundError,
    ImageFolderSource,
    TfdsSource,
    find_classes,
)
from masnn_jax.data.images.transforms import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, EvalTransform, TrainTransform

__all__ = ["DATASET_NAMES", "DATASET_DEFAULTS", "COMMON_KEYS", "default_data_config", "build"]

DATASET_NAMES = ("imagenet2012", "imagefolder", "digits_images")

COMMON_KEYS = dict(
    name="digits_images", root=None, source=None, tfds_version=None, image_size=224, eval_image_size=224,
    eval_resize=None, crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), interpolation="bilinear",
    auto_augment=True, random_flip=False, mean=IMAGENET_MEAN, std=IMAGENET_STD, seed=0, on_corrupt="skip",
    digits_image_size=32, digits_val_fraction=0.2, rand_augment="", rand_augment_ops=None, random_erase_prob=0.0,
    random_erase_mode="const", random_erase_count=1,
)
#: Per-name defaults over :data:`COMMON_KEYS`.
DATASET_DEFAULTS = {
    "imagenet2012": dict(source="tfds"),
    "imagefolder": dict(source="folder"),
    "digits_images": dict(source="folder", image_size=32, eval_image_size=32, eval_resize=32,
                          crop_scale=(0.35, 1.0), auto_augment=False),
}
_SOURCES = ("tfds", "folder")
_TFDS_SPLITS = {"imagenet2012": {"train": "train", "test": "validation"},
                "digits_images": {"train": "train", "test": "test"}}


def default_data_config(name: str = "digits_images"):
    """An ``ml_collections.ConfigDict`` with every image ``config.data`` key, at ``name``'s defaults.

    ``root``, ``eval_resize`` and ``tfds_version`` are placeholders (None, accepting a value).
    Raises:
      ValueError: unknown ``name``.
    """
    import ml_collections
    from ml_collections import config_dict

    if name not in DATASET_NAMES:
        raise ValueError(f"config.data.name must be one of {DATASET_NAMES}, got {name!r}")
    d = dict(COMMON_KEYS)
    d.update(DATASET_DEFAULTS[name])
    d["name"] = name
    d["root"] = config_dict.placeholder(str)
    d["tfds_version"] = config_dict.placeholder(str)
    if d["eval_resize"] is None:
        d["eval_resize"] = config_dict.placeholder(int)
    d["rand_augment_ops"] = config_dict.placeholder(tuple)
    return ml_collections.ConfigDict(d)


def _as_dict(cfg) -> dict:
    if isinstance(cfg, Mapping):
        return dict(cfg)
    if hasattr(cfg, "to_dict"):
        return {k: cfg[k] for k in cfg.keys()}
    raise TypeError(f"data_config must be an ml_collections.ConfigDict or a dict, got {type(cfg).__name__}")


def _pos_int(full: dict, key: str) -> int:
    v = full[key]
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())) or v <= 0:
        raise ValueError(f"config.data.{key} must be a positive integer, got {v!r}")
    return int(v)


def _pair(full: dict, key: str, lo: float, hi: float | None) -> tuple[float, float]:
    v = full[key]
    try:
        a, b = (float(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"config.data.{key} must be a pair (min, max), got {v!r}") from None
    if not (lo < a <= b and (hi is None or b <= hi)):
        raise ValueError(f"config.data.{key} must satisfy {lo} < min <= max{' <= ' + str(hi) if hi else ''}, "
                         f"got {v!r}")
    return a, b


def _triple(full: dict, key: str, positive: bool) -> tuple[float, float, float]:
    v = full[key]
    try:
        t = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        t = ()
    if len(t) != 3 or (positive and min(t) <= 0):
        raise ValueError(f"config.data.{key} must be 3 {'positive ' if positive else ''}numbers (R, G, B), "
                         f"got {v!r}")
    return t


def _rand_augment_str(full: dict) -> str:
    v = full["rand_augment"]
    if not isinstance(v, str):
        raise ValueError(f"config.data.rand_augment must be a timm RandAugment string (e.g. 'rand-m9-mstd0.5-inc1') "
                         f"or '' for off, got {v!r}")
    return v


def _rand_augment_ops(full: dict):
    """``config.data.rand_augment_ops`` checked (each op name known to timm; an unknown one is named)."""
    v = full["rand_augment_ops"]
    return None if v is None else check_rand_augment_ops(v)


def build(data_config, split: str) -> ImageDataset:
    """Builds the image dataset described by ``data_config`` (``config.data``) for ``split``.

    Args:
      data_config: ``ml_collections.ConfigDict`` (or dict) with the keys in this module's docstring.
      split: 'train' (training transform) or 'test' (evaluation transform, the val split).
    Returns:
      an :class:`ImageDataset` (``num_classes``, ``item_shape``, ``get(index, epoch=...)``).
    Raises:
      ValueError: unknown name/key, bad value (naming ``config.data.<key>``), missing ``root``.
      DatasetNotFoundError: missing / half-prepared dataset, empty class folder (naming the path and what belongs
        there).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    cfg = _as_dict(data_config)
    unknown = sorted(set(cfg) - set(COMMON_KEYS))
    if unknown:
        raise ValueError(f"config.data has unknown key(s) {unknown}; known keys: {sorted(COMMON_KEYS)}")
    name = cfg.get("name", COMMON_KEYS["name"])
    if name not in DATASET_NAMES:
        raise ValueError(f"config.data.name must be one of {DATASET_NAMES}, got {name!r}")
    full = dict(COMMON_KEYS)
    full.update(DATASET_DEFAULTS[name])
    full.update({k: v for k, v in cfg.items() if v is not None})
    source = full["source"]
    if source not in _SOURCES or (name == "imagefolder" and source != "folder"):
        allowed = ("folder",) if name == "imagefolder" else _SOURCES
        raise ValueError(f"config.data.source must be one of {allowed} for {name}, got {source!r}")
    if full["interpolation"] not in INTERPOLATIONS:
        raise ValueError(f"config.data.interpolation must be one of {tuple(INTERPOLATIONS)}, "
                         f"got {full['interpolation']!r}")
    if full["on_corrupt"] not in ON_CORRUPT:
        raise ValueError(f"config.data.on_corrupt must be one of {ON_CORRUPT}, got {full['on_corrupt']!r}")
    # the training-only augmentation keys are checked for the test split too (an evaluation run meets a typo)
    if full["random_erase_mode"] not in RANDOM_ERASE_MODES:
        raise ValueError(f"config.data.random_erase_mode must be one of {RANDOM_ERASE_MODES}, "
                         f"got {full['random_erase_mode']!r}")
    rand_augment_ops = _rand_augment_ops(full)
    mean, std = _triple(full, "mean", False), _triple(full, "std", True)
    seed = full["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"config.data.seed must be a non-negative integer, got {seed!r}")

    if split == "train":
        transform = TrainTransform(
            _pos_int(full, "image_size"), scale=_pair(full, "crop_scale", 0.0, 1.0),
            ratio=_pair(full, "crop_ratio", 0.0, None), interpolation=full["interpolation"],
            auto_augment=bool(full["auto_augment"]), random_flip=bool(full["random_flip"]), mean=mean, std=std,
            rand_augment=_rand_augment_str(full), rand_augment_ops=rand_augment_ops,
            random_erase_prob=full["random_erase_prob"], random_erase_mode=full["random_erase_mode"],
            random_erase_count=full["random_erase_count"])
    else:
        resize = None if full["eval_resize"] is None else _pos_int(full, "eval_resize")
        transform = EvalTransform(_pos_int(full, "eval_image_size"), resize=resize,
                                  interpolation=full["interpolation"], mean=mean, std=std)

    root = full["root"]
    if name == "digits_images" and root is None:
        from masnn_jax.data.images.digits import default_digits_root, digits_complete, write_digits

        size = _pos_int(full, "digits_image_size")
        root = default_digits_root(size)
        if digits_complete(root) is None:
            write_digits(root, image_size=size, val_fraction=float(full["digits_val_fraction"]))
    if root is None:
        where = ("the tfds data_dir holding imagenet2012/<version>/ (" + IMAGENET_PREPARE + ")"
                 if source == "tfds" else "the folder holding train/ and val/ (" + IMAGEFOLDER_LAYOUT + ")")
        raise ValueError(f"config.data.root must be set for {name}: {where}")
    root = os.path.expanduser(os.fspath(root))
    if name == "digits_images" and not os.path.isdir(root):
        raise DatasetNotFoundError(f"{root}: no digits_images folder; write it with "
                                   f"`python -m masnn_jax.data.images write-digits {root}`")

    if source == "tfds":
        data_dir = os.path.join(root, "tfds") if name == "digits_images" else root
        src = TfdsSource(data_dir, name, _TFDS_SPLITS[name][split], version=full["tfds_version"])
    else:
        train_dir = os.path.join(root, "train")
        if split == "train":
            src = ImageFolderSource(train_dir)
        else:
            val_dir = os.path.join(root, "val")
            if not os.path.isdir(val_dir) and os.path.isdir(os.path.join(root, "validation")):
                val_dir = os.path.join(root, "validation")
            classes = find_classes(train_dir) if os.path.isdir(train_dir) else None
            src = ImageFolderSource(val_dir, classes=classes)
    return ImageDataset(src, transform, name=name, split=split, seed=seed, on_corrupt=full["on_corrupt"])
