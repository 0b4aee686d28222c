"""Image transforms of the official MA-SNN ImageNet recipe, in NumPy/PIL (they run in grain worker processes).

Training (official ``utils.py:47-56``): decode -> ``RandomResizedCrop(224)`` (scale (0.08, 1), ratio (3/4, 4/3),
bilinear) -> ``AutoAugment()`` (ImageNet policy, :mod:`.autoaugment`) -> ``ToTensor`` -> ``Normalize(ImageNet mean,
std)``; optional horizontal flip (off by default: the official code has none). Evaluation (``utils.py:89-90``):
``Resize(256)`` (shorter side) -> ``CenterCrop(224)``; the paper's enlarged 288 crops are ``eval_image_size=288`` with
the same 0.875 ratio (resize 329). Every random decision comes from a ``numpy.random.Generator`` seeded with
``(seed, epoch, index)``: the crop, the flip and AutoAugment each draw from their own spawned child stream, so
enabling one does not move the others.

Spikformer recipes (timm's ``create_transform`` order): RandomResizedCrop -> flip -> RandAugment
(``rand_augment='rand-m9-mstd0.5-inc1'`` etc., :mod:`.randaugment`: timm 1.0.31 semantics, fill colour
``round(255 * mean)``, geometric ops resampled with ``interpolation`` as timm passes its train interpolation) ->
``ToTensor`` / normalise -> RandomErasing (``random_erase_prob``, ``random_erase_mode`` 'const' | 'rand' | 'pixel',
``random_erase_count``) on the normalised float image. RandAugment and RandomErasing draw from their own spawned
child streams (the 4th and 5th), so enabling them leaves the crop / flip / AutoAugment draws unchanged.
AutoAugment and RandAugment together are refused.

Images here are ``PIL.Image`` in mode 'RGB'; outputs are ``(H, W, 3)`` float32 (channels last).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from masnn_jax.data.images.autoaugment import auto_augment, sample_decision
from masnn_jax.data.images.randaugment import (
    RANDOM_ERASE_MODES,
    apply_rand_augment,
    apply_random_erasing,
    img_mean_fill,
    parse_rand_augment,
    sample_rand_augment,
    sample_random_erasing,
)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "ImageDecodeError", "decode_image",
           "random_resized_crop_params", "resized_crop", "resize_shorter", "center_crop", "to_normalized_array",
           "default_eval_resize", "TrainTransform", "EvalTransform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Interpolation names -> PIL filters (torchvision's ``InterpolationMode`` on PIL images).
INTERPOLATIONS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


class ImageDecodeError(ValueError):
    """An image file or record that PIL cannot decode (corrupt, truncated, not an image); names its origin."""


def decode_image(data, origin: str = "") -> Image.Image:
    """Decodes an image to an RGB PIL image, as torchvision's ``default_loader`` (``Image.open(f).convert('RGB')``).

    Args:
      data: encoded bytes (JPEG, PNG, ...), a path (str / os.PathLike), or an already decoded ``(H, W[, 3])``
        uint8 array (tfds mock data).
      origin: what to name in errors (a path, a record).
    Returns:
      a loaded PIL image in mode 'RGB'.
    Raises:
      ImageDecodeError: corrupt, truncated or non-image data (the message names ``origin``).
    """
    if isinstance(data, np.ndarray):
        arr = np.asarray(data, np.uint8)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        return Image.fromarray(arr).convert("RGB")
    try:
        if isinstance(data, (str, os.PathLike)):
            with open(data, "rb") as f:
                img = Image.open(f)
                return img.convert("RGB")
        img = Image.open(io.BytesIO(bytes(data)))
        return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ImageDecodeError(f"{origin or 'image'}: not a readable image ({type(e).__name__}: {e})") from e


def random_resized_crop_params(rng: np.random.Generator, height: int, width: int,
                               scale: Sequence[float] = (0.08, 1.0),
                               ratio: Sequence[float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params``: the crop box ``(top, left, h, w)`` in pixels.

    Up to 10 attempts draw an area fraction ``U(scale)`` and a log-uniform aspect ratio ``w/h`` in ``ratio``; the
    first box that fits (``0 < w <= width``, ``0 < h <= height``, sides ``int(round(sqrt(area*r)))`` /
    ``int(round(sqrt(area/r)))``) gets a uniform integer position. Otherwise the fallback is a central crop of the
    whole image clamped to the ratio range.

    Args:
      rng: the random stream. height, width: image size in pixels.
      scale: (min, max) fraction of the image area. ratio: (min, max) aspect ratio w/h.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * float(rng.uniform(scale[0], scale[1]))
        aspect = math.exp(float(rng.uniform(log_ratio[0], log_ratio[1])))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(img: Image.Image, top: int, left: int, h: int, w: int, size: tuple[int, int],
                 interpolation: str = "bilinear") -> Image.Image:
    """torchvision ``F.resized_crop`` on PIL: ``img.crop((left, top, left+w, top+h)).resize((size_w, size_h))``.

    ``size`` is (height, width) in pixels; ``interpolation`` a key of :data:`INTERPOLATIONS` (PIL's resize
    antialiases when it shrinks, as torchvision's PIL path does)."""
    return img.crop((left, top, left + w, top + h)).resize((size[1], size[0]), INTERPOLATIONS[interpolation])


def resize_shorter(img: Image.Image, size: int, interpolation: str = "bilinear") -> Image.Image:
    """torchvision ``Resize(size)`` with an int size on PIL: the shorter side becomes ``size``, the longer
    ``int(size * long / short)`` (truncated); an image already that size is returned as is."""
    w, h = img.size
    if (w <= h and w == size) or (h <= w and h == size):
        return img
    if w < h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    return img.resize((new_w, new_h), INTERPOLATIONS[interpolation])


def center_crop(img: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    """torchvision ``CenterCrop(size)`` on PIL: offsets ``int(round((H - h) / 2))`` / ``int(round((W - w) / 2))``
    (Python's round: half to even); an image smaller than the crop is first zero-padded as torchvision does."""
    ch, cw = (size, size) if isinstance(size, int) else size
    w, h = img.size
    if cw > w or ch > h:
        pad_l, pad_t = (cw - w) // 2 if cw > w else 0, (ch - h) // 2 if ch > h else 0
        pad_r, pad_b = (cw - w + 1) // 2 if cw > w else 0, (ch - h + 1) // 2 if ch > h else 0
        canvas = Image.new(img.mode, (w + pad_l + pad_r, h + pad_t + pad_b), 0)
        canvas.paste(img, (pad_l, pad_t))
        img = canvas
        w, h = img.size
        if (w, h) == (cw, ch):
            return img
    top = int(round((h - ch) / 2.0))
    left = int(round((w - cw) / 2.0))
    return img.crop((left, top, left + cw, top + ch))


def to_normalized_array(img: Image.Image, mean: Sequence[float] = IMAGENET_MEAN,
                        std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """``ToTensor`` + ``Normalize`` in float32, channels last: ``(uint8 / 255 - mean) / std`` -> ``(H, W, 3)``
    float32 (the same float32 operations as torchvision, so equal to its output transposed to CHW)."""
    x = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def default_eval_resize(eval_image_size: int) -> int:
    """Shorter side before the evaluation centre crop: ``int(eval_image_size / 0.875)`` (224 -> 256, 288 -> 329)."""
    return int(eval_image_size / 0.875)


class TrainTransform:
    """Training transform: RandomResizedCrop -> [horizontal flip] -> [AutoAugment | RandAugment] -> float32,
    normalised -> [RandomErasing].

    Args:
      image_size: output side (pixels). scale, ratio: RandomResizedCrop ranges. interpolation: resize filter
        (also RandAugment's geometric filter, as timm's ``create_transform`` passes it).
      auto_augment: apply torchvision's ImageNet AutoAugment. random_flip: flip left-right with probability 0.5.
      mean, std: per-channel normalisation (of [0, 1] values); ``mean`` also gives RandAugment's fill colour.
      rand_augment: timm RandAugment string (``'rand-m9-mstd0.5-inc1'``), '' = off.
      rand_augment_ops: op names RandAugment draws from (None: timm's list for the string's ``inc``).
      random_erase_prob: RandomErasing probability (0 = off). random_erase_mode: 'const' | 'rand' | 'pixel'.
      random_erase_count: maximum erased boxes per image (timm ``max_count``).
    Calling ``t(img, rng)`` with an RGB PIL image returns ``(image_size, image_size, 3)`` float32.
    Raises:
      ValueError: AutoAugment and RandAugment both on, a bad RandAugment string / op list, or bad RandomErasing
        settings (naming the ``config.data`` key).
    """

    def __init__(self, image_size: int = 224, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 interpolation: str = "bilinear", auto_augment: bool = True, random_flip: bool = False,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, rand_augment: str = "", rand_augment_ops=None,
                 random_erase_prob: float = 0.0, random_erase_mode: str = "const", random_erase_count: int = 1):
        self.image_size = int(image_size)
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.interpolation = interpolation
        self.auto_augment, self.random_flip = bool(auto_augment), bool(random_flip)
        self.mean, self.std = tuple(mean), tuple(std)
        self.rand_augment = parse_rand_augment(rand_augment, rand_augment_ops) if rand_augment else None
        if self.rand_augment is not None and self.auto_augment:
            raise ValueError("config.data.auto_augment and config.data.rand_augment are both on; choose one "
                             "(set auto_augment=False or rand_augment='')")
        self.fill = img_mean_fill(self.mean)
        p = random_erase_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"config.data.random_erase_prob must be a number in [0, 1], got {p!r}")
        if random_erase_mode not in RANDOM_ERASE_MODES:
            raise ValueError(f"config.data.random_erase_mode must be one of {RANDOM_ERASE_MODES}, "
                             f"got {random_erase_mode!r}")
        c = random_erase_count
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"config.data.random_erase_count must be an integer >= 1, got {c!r}")
        self.random_erase_prob, self.random_erase_mode, self.random_erase_count = float(p), random_erase_mode, c

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(image_size, image_size, 3)``: shape of the float32 output."""
        return (self.image_size, self.image_size, 3)

    def augment(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        """The PIL part (crop, flip, AutoAugment / RandAugment) with child streams spawned from ``rng``."""
        return self._augment(img, rng.spawn(5))

    def _augment(self, img: Image.Image, streams) -> Image.Image:
        crop_rng, flip_rng, aa_rng, ra_rng = streams[:4]
        top, left, h, w = random_resized_crop_params(crop_rng, img.height, img.width, self.scale, self.ratio)
        img = resized_crop(img, top, left, h, w, (self.image_size, self.image_size), self.interpolation)
        if self.random_flip and flip_rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if self.auto_augment:
            img = auto_augment(img, sample_decision(aa_rng))
        if self.rand_augment is not None:
            img = apply_rand_augment(img, sample_rand_augment(self.rand_augment, ra_rng, self.interpolation),
                                     self.fill)
        return img

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> np.ndarray:
        """Transforms an RGB PIL image with the random stream ``rng`` -> ``(image_size, image_size, 3)`` float32.

        The PIL part (:meth:`augment`) uses ``rng``'s first four spawned children, RandomErasing the fifth."""
        streams = rng.spawn(5)
        x = to_normalized_array(self._augment(img, streams), self.mean, self.std)
        if self.random_erase_prob > 0:
            x = apply_random_erasing(x, sample_random_erasing(
                streams[4], x.shape[0], x.shape[1], x.shape[2], self.random_erase_prob, self.random_erase_mode,
                self.random_erase_count))
        return x


class EvalTransform:
    """Evaluation transform: resize the shorter side to ``resize`` -> centre crop ``image_size`` -> float32,
    normalised. ``resize=None`` uses :func:`default_eval_resize`. ``t(img, rng=None)`` returns
    ``(image_size, image_size, 3)`` float32 (``rng`` is ignored: no randomness)."""

    def __init__(self, image_size: int = 224, *, resize: int | None = None, interpolation: str = "bilinear",
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.image_size = int(image_size)
        self.resize = default_eval_resize(self.image_size) if resize is None else int(resize)
        self.interpolation = interpolation
        self.mean, self.std = tuple(mean), tuple(std)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(image_size, image_size, 3)``: shape of the float32 output."""
        return (self.image_size, self.image_size, 3)

    def __call__(self, img: Image.Image, rng=None) -> np.ndarray:
        """Transforms an RGB PIL image -> ``(image_size, image_size, 3)`` float32."""
        img = center_crop(resize_shorter(img, self.resize, self.interpolation), self.image_size)
        return to_normalized_array(img, self.mean, self.std)
