"""A real, offline image dataset: scikit-learn's 1,797 handwritten digits written as an ImageFolder of JPEG files
(and the same JPEG bytes as a tfds ArrayRecord copy).

Layout written by :func:`write_digits` under ``root``::

    root/train/<0..9>/digit_<k>.jpg     root/val/<0..9>/digit_<k>.jpg     (k: index in load_digits())
    root/tfds/digits_images/1.0.0/      dataset_info.json, features.json,
                                        digits_images-{train,test}.array_record-00000-of-00001
    root/DIGITS_IMAGES.json             the parameters (written last: marks a complete folder)

Each 8x8 digit (values 0-16) is scaled to ``image_size`` with bicubic resampling and drawn in RGB with a
per-image foreground and background colour (deterministic from ``seed``), so the colour augmentations act on real
colour. The val split is stratified (``val_fraction`` of each class, at least one). The ArrayRecord copy holds the
*same JPEG bytes* in the ImageFolder's (sorted) order, so both versions give identical examples.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile

import numpy as np

__all__ = ["write_digits", "default_digits_root", "digits_complete", "DIGITS_CLASSES", "DIGITS_VERSION"]

DIGITS_CLASSES = tuple(str(d) for d in range(10))
DIGITS_VERSION = "1.0.0"
_MARKER = "DIGITS_IMAGES.json"


def default_digits_root(image_size: int = 32) -> str:
    """``$MASNN_JAX_DATA/digits_images_<size>`` (default ``~/.cache/masnn_jax``): where ``config.data.root=None``
    reads (and first writes) the digits."""
    base = os.environ.get("MASNN_JAX_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "masnn_jax")
    return os.path.join(base, f"digits_images_{int(image_size)}")


def digits_complete(root: str) -> dict | None:
    """The parameters of a completely written digits folder at ``root`` (its marker file), else None."""
    try:
        with open(os.path.join(root, _MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _render(digits: np.ndarray, image_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for d in digits:
        gray = Image.fromarray(np.round(d * (255.0 / 16.0)).astype(np.uint8))
        a = np.asarray(gray.resize((image_size, image_size), Image.BICUBIC), np.float32)[..., None] / 255.0
        fg = rng.uniform(0.55, 1.0, 3) * 255.0
        bg = rng.uniform(0.0, 0.35, 3) * 255.0
        out.append(np.clip(np.round(bg + a * (fg - bg)), 0, 255).astype(np.uint8))
    return out


def write_digits(root: str, *, image_size: int = 32, val_fraction: float = 0.2, per_class: int | None = None,
                 seed: int = 0, jpeg_quality: int = 95, array_record: bool = True, overwrite: bool = False) -> str:
    """Writes the digits ImageFolder (+ ArrayRecord copy) at ``root``; deterministic for equal arguments.

    Args:
      root: target folder; written in a temporary sibling and renamed, so a folder is either complete or absent.
      image_size: side of the JPEG images (pixels). val_fraction: stratified fraction in ``val/`` (at least one
        per class). per_class: keep only the first N digits of each class (None: all 1,797).
      seed: colours and the split. jpeg_quality: PIL JPEG quality. array_record: also write the tfds copy.
      overwrite: replace an existing complete folder (else it is kept and returned).
    Returns:
      ``root``.
    Raises:
      ValueError: bad arguments. FileExistsError: ``root`` exists but is not a complete digits folder.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if int(image_size) < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size!r}")
    params = dict(image_size=int(image_size), val_fraction=float(val_fraction), per_class=per_class,
                  seed=int(seed), jpeg_quality=int(jpeg_quality), array_record=bool(array_record),
                  version=DIGITS_VERSION)
    root = os.path.abspath(os.fspath(root))
    if os.path.exists(root):
        if digits_complete(root) is not None and not overwrite:
            return root
        if digits_complete(root) is None and os.listdir(root):
            raise FileExistsError(f"{root}: exists and is not a complete digits_images folder (no {_MARKER}); "
                                  "remove it or choose another folder")
    data = load_digits()
    x, y = data.images, data.target.astype(np.int64)
    keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)]) if per_class else np.arange(len(y))
    keep.sort()
    rng = np.random.default_rng([int(seed), 1797])
    is_val = np.zeros(len(y), bool)
    for c in range(10):
        idx = keep[y[keep] == c]
        n_val = max(1, int(round(val_fraction * len(idx))))
        is_val[rng.permutation(idx)[:n_val]] = True
    pixels = _render(x, int(image_size), np.random.default_rng([int(seed), 7]))

    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(root) + ".tmp-", dir=parent)
    try:
        splits = {"train": [], "test": []}
        for split_dir, tfds_split, in_split in (("train", "train", ~is_val), ("val", "test", is_val)):
            for c in DIGITS_CLASSES:
                os.makedirs(os.path.join(tmp, split_dir, c))
            # ImageFolder order: classes sorted, files sorted by name within a class (zero-padded k).
            for c in range(10):
                for k in keep[(y[keep] == c) & in_split[keep]]:
                    buf = io.BytesIO()
                    Image.fromarray(pixels[k]).save(buf, "JPEG", quality=int(jpeg_quality))
                    fname = f"digit_{k:04d}.jpg"
                    with open(os.path.join(tmp, split_dir, str(c), fname), "wb") as f:
                        f.write(buf.getvalue())
                    splits[tfds_split].append((buf.getvalue(), c, f"{c}/{fname}"))
        if array_record:
            from masnn_jax.data.images.sources import write_tfds_array_record

            write_tfds_array_record(os.path.join(tmp, "tfds", "digits_images", DIGITS_VERSION), "digits_images",
                                    splits, DIGITS_CLASSES,
                                    description="scikit-learn load_digits() as RGB JPEGs (masnn_jax)")
        with open(os.path.join(tmp, _MARKER), "w") as f:
            json.dump(dict(params, n_train=len(splits["train"]), n_val=len(splits["test"])), f, indent=1)
        if os.path.exists(root):  # complete and overwrite=True, or an empty folder
            shutil.rmtree(root)
        try:
            os.rename(tmp, root)
        except OSError:
            if digits_complete(root) is None:  # lost a race against nothing: re-raise
                raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return root
