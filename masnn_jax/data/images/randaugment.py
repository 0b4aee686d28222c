"""RandAugment and RandomErasing with timm's semantics (timm 1.0.31), on PIL / NumPy, per sample.

The Spikformer recipes (spec ``shared/specs/spikformer.md`` §4) train with timm's ``rand_augment_transform``
(``imagenet.yml``: ``aa: rand-m9-mstd0.5-inc1``; ``cifar10.yml``: ``rand-m9-n1-mstd0.4-inc1`` with the op list of
``cifar10/aa_snn.py`` cut to Equalize, Rotate, ShearX, TranslateXRel, TranslateYRel) and timm's
``RandomErasing`` on the normalised tensor (``reprob 0.25``, ``remode const`` in both yml files).

RandAugment (timm ``auto_augment.py``: ``rand_augment_transform``, ``RandAugment.__call__``,
``AugmentOp.__call__``, the ``*_level_to_arg`` functions):

* ``n`` ops are drawn uniformly *with replacement* from the op list;
* each runs when its uniform draw ``u <= p`` (timm skips when ``random() > p``; default ``p = 0.5``);
* its magnitude is ``m`` (``mstd`` 0), ``N(m, mstd)`` (``mstd`` > 0) or ``U(0, m)`` (``mstd`` > 100 = inf),
  clipped to ``[0, mmax or 10]``;
* the level -> argument maps divide by ``_LEVEL_DENOM = 10``; signed ops (Rotate, Shear, Translate, the
  ``*Increasing`` enhancements) are negated when their sign draw ``> 0.5``;
* geometric ops fill with ``img_mean`` (``round(255 * mean)`` per channel, as ``transforms_factory`` passes) and
  resample with the configured filter, or a uniform choice of bilinear / bicubic when it is 'random';
* relative translations move by ``translate_pct`` (0.45) x image side.

All the random decisions of one call are a :class:`RandAugmentDecision` drawn by :func:`sample_rand_augment`
from a ``numpy.random.Generator``; :func:`apply_rand_augment` applies one without randomness. RandomErasing is
:func:`sample_random_erasing` (boxes and fill values) + :func:`apply_random_erasing`, on ``(H, W, C)`` float32.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageEnhance

from masnn_jax.data.images.autoaugment import apply_op as _aa_apply_op

__all__ = ["RAND_INCREASING_OPS", "RAND_OPS", "SPIKFORMER_CIFAR_OPS", "LEVEL_DENOM", "RandAugmentSpec",
           "RandOpDecision", "RandAugmentDecision", "check_rand_augment_ops", "parse_rand_augment", "img_mean_fill",
           "level_to_arg",
           "apply_rand_op", "sample_rand_augment", "apply_rand_augment", "RANDOM_ERASE_MODES", "EraseBox",
           "RandomErasingDecision", "sample_random_erasing", "apply_random_erasing"]

LEVEL_DENOM = 10.0
#: timm ``_RAND_INCREASING_TRANSFORMS`` (``inc1``): severity grows with the magnitude for every op.
RAND_INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                       "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                       "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
#: timm ``_RAND_TRANSFORMS`` (``inc0``, the default of ``rand_augment_transform``).
RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
#: The op list of the official Spikformer CIFAR recipe (``cifar10/aa_snn.py``, spec §4).
SPIKFORMER_CIFAR_OPS = ("Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel")
_ALL_OPS = frozenset(RAND_OPS) | frozenset(RAND_INCREASING_OPS)
#: Ops whose argument is negated by a sign draw (timm ``_randomly_negate``).
_SIGNED = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "ColorIncreasing",
                     "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"})
#: Ops that resample (timm ``_check_args_tf``: fill colour and interpolation apply).
_GEOMETRIC = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"})
_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
_KEY = "config.data.rand_augment"


class RandAugmentSpec(NamedTuple):
    """A parsed RandAugment config string (timm ``rand_augment_transform``).

    Fields: ``magnitude`` (level, 0-10 scale), ``num_layers`` (ops per image), ``prob`` (per-op apply
    probability), ``magnitude_std`` (0: fixed; ``inf``: uniform in [0, m]), ``magnitude_max`` (clip bound, None =
    10), ``increasing`` (``inc1``), ``ops`` (the op names drawn from)."""
    magnitude: float
    num_layers: int
    prob: float
    magnitude_std: float
    magnitude_max: float | None
    increasing: bool
    ops: tuple[str, ...]


def check_rand_augment_ops(ops) -> tuple[str, ...]:
    """``ops`` (``config.data.rand_augment_ops``) as a tuple of op names, checked against timm's op names
    (:data:`RAND_OPS` and :data:`RAND_INCREASING_OPS`).

    Raises:
      ValueError: not a non-empty tuple / list of strings, or unknown op names; the message names
        ``config.data.rand_augment_ops``, each unknown name and the known ones.
    """
    key = "config.data.rand_augment_ops"
    if isinstance(ops, str) or not isinstance(ops, (tuple, list)) or not all(isinstance(o, str) for o in ops):
        raise ValueError(f"{key} must be None or a non-empty tuple of op names, got {ops!r}; known ops: "
                         f"{sorted(_ALL_OPS)}")
    if not ops:
        raise ValueError(f"{key} is empty; give at least one op name (known ops: {sorted(_ALL_OPS)}) or None for "
                         "timm's list")
    bad = [o for o in ops if o not in _ALL_OPS]
    if bad:
        raise ValueError(f"{key}: unknown RandAugment op name(s) {', '.join(repr(o) for o in bad)} in {tuple(ops)!r}; "
                         f"known ops (timm's names, case-sensitive): {sorted(_ALL_OPS)}")
    return tuple(ops)


def parse_rand_augment(config_str: str, ops: Sequence[str] | None = None) -> RandAugmentSpec:
    """Parses a timm RandAugment string such as ``'rand-m9-mstd0.5-inc1'`` or ``'rand-m9-n1-mstd0.4-inc1'``.

    Sections after ``rand`` (any order): ``m<int>`` magnitude (default 10), ``n<int>`` ops per image (default 2),
    ``p<float>`` per-op probability (0.5), ``mstd<float>`` magnitude std (0; > 100 means uniform), ``mmax<int>``
    clip bound (10), ``inc<0|1>`` increasing-severity op list (0). Weighted / named op sets (``t...``) are not
    supported.

    Args:
      config_str: the string (``config.data.rand_augment``).
      ops: op names to draw from (``config.data.rand_augment_ops``); None = timm's list for ``inc``
        (:data:`RAND_INCREASING_OPS` or :data:`RAND_OPS`).
    Returns:
      a :class:`RandAugmentSpec`.
    Raises:
      ValueError: not a string starting with ``rand``, an unknown / malformed section, a value out of range, or an
        unknown op name / empty op list (naming ``config.data.rand_augment`` / ``config.data.rand_augment_ops`` and,
        for ops, each unknown name; :func:`check_rand_augment_ops`).
    """
    if not isinstance(config_str, str) or not config_str.split("-")[0] == "rand":
        raise ValueError(f"{_KEY} must be a timm RandAugment string like 'rand-m9-mstd0.5-inc1' (or '' for off), "
                         f"got {config_str!r}")
    magnitude, num_layers, prob, mstd, mmax, increasing = 10.0, 2, 0.5, 0.0, None, False
    for section in config_str.split("-")[1:]:
        m = re.fullmatch(r"(mstd|mmax|inc|m|n|p)(\d[0-9.eE+-]*|inf)", section)
        if m is None:
            raise ValueError(f"{_KEY}: unknown or malformed section {section!r} in {config_str!r} (known: m<int>, "
                             f"n<int>, p<float>, mstd<float>, mmax<int>, inc<0|1>)")
        key, val = m.groups()
        try:
            if key == "mstd":
                mstd = float(val)
                mstd = math.inf if mstd > 100 else mstd
            elif key == "mmax":
                mmax = float(int(val))
            elif key == "inc":
                if val not in ("0", "1"):
                    raise ValueError
                increasing = val == "1"
            elif key == "m":
                magnitude = float(int(val))
            elif key == "n":
                num_layers = int(val)
            else:
                prob = float(val)
        except ValueError:
            raise ValueError(f"{_KEY}: bad value in section {section!r} of {config_str!r}") from None
    if num_layers < 1 or not 0.0 <= prob <= 1.0 or mstd < 0:
        raise ValueError(f"{_KEY}: need n >= 1, 0 <= p <= 1, mstd >= 0; got {config_str!r}")
    if ops is None:
        ops = RAND_INCREASING_OPS if increasing else RAND_OPS
    return RandAugmentSpec(magnitude, num_layers, prob, mstd, mmax, increasing, check_rand_augment_ops(ops))


def img_mean_fill(mean: Sequence[float]) -> tuple[int, ...]:
    """The fill colour of geometric ops: ``min(255, round(255 * m))`` per channel of ``mean`` ([0, 1] scale), as
    timm's ``transforms_factory.create_transform`` builds ``aa_params['img_mean']``."""
    return tuple(min(255, round(255 * float(x))) for x in mean)


def level_to_arg(op: str, level: float, negate: bool = False, translate_pct: float = 0.45):
    """The argument timm's ``LEVEL_TO_ARG[op]`` gives for magnitude ``level`` (already clipped), with the sign
    draw's outcome ``negate`` (ignored by unsigned ops).

    Returns: None (AutoContrast, Equalize, Invert), degrees (Rotate), shear factor (ShearX/Y), fraction of the
    side (TranslateX/YRel), enhancement factor (Color/Contrast/Brightness/Sharpness[Increasing]), bits kept
    (Posterize*), threshold 0-256 (Solarize*), added value (SolarizeAdd).
    Raises: ValueError for an unknown op.
    """
    x = level / LEVEL_DENOM
    sign = -1.0 if (negate and op in _SIGNED) else 1.0
    if op in ("AutoContrast", "Equalize", "Invert"):
        return None
    if op == "Rotate":
        return sign * (x * 30.0)
    if op in ("ShearX", "ShearY"):
        return sign * (x * 0.3)
    if op in ("TranslateXRel", "TranslateYRel"):
        return sign * (x * translate_pct)
    if op in ("Color", "Contrast", "Brightness", "Sharpness"):
        return x * 1.8 + 0.1
    if op in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"):
        return max(0.1, 1.0 + sign * (x * 0.9))
    if op == "Posterize":
        return int(x * 4)
    if op == "PosterizeIncreasing":
        return 4 - int(x * 4)
    if op == "Solarize":
        return min(256, int(x * 256))
    if op == "SolarizeIncreasing":
        return 256 - min(256, int(x * 256))
    if op == "SolarizeAdd":
        return min(128, int(x * 110))
    raise ValueError(f"unknown RandAugment op {op!r}")


def apply_rand_op(img: Image.Image, op: str, arg, fill: Sequence[int] = (128, 128, 128),
                  resample: str = "bicubic") -> Image.Image:
    """Applies one RandAugment op to an RGB PIL image as timm's ``NAME_TO_OP[op]`` does.

    Args:
      img: PIL image, mode 'RGB'. op: an op name. arg: from :func:`level_to_arg`.
      fill: RGB fill of the uncovered area of geometric ops (0-255 ints). resample: 'bilinear' | 'bicubic' |
        'nearest' (geometric ops only).
    Returns: a new PIL image, same size and mode.
    Raises: ValueError for an unknown op.
    """
    if op in ("AutoContrast", "Equalize", "Invert"):
        return _aa_apply_op(img, op, 0.0)
    if op in ("Posterize", "PosterizeIncreasing"):
        if arg <= 0:
            # 0 bits kept: black (the Pillow < 10 result timm was written against; Pillow >= 10 refuses bits=0,
            # so timm 1.0.31 raises here, e.g. PosterizeIncreasing at the clipped magnitude 10)
            return Image.new(img.mode, img.size, 0)
        return img if arg >= 8 else _aa_apply_op(img, "Posterize", arg)
    if op in ("Solarize", "SolarizeIncreasing"):
        return _aa_apply_op(img, "Solarize", arg)
    if op == "SolarizeAdd":
        # values below 128 get ``arg`` added (saturating at 255), the rest are kept
        lut = [min(255, i + arg) if i < 128 else i for i in range(256)]
        return img.point(lut * len(img.getbands()))
    enhance = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
               "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}
    base = op[:-len("Increasing")] if op.endswith("Increasing") else op
    if base in enhance:
        return enhance[base](img).enhance(arg)
    kw = dict(resample=_RESAMPLE[resample], fillcolor=tuple(fill))
    if op == "Rotate":
        return img.rotate(arg, **kw)
    w, h = img.size
    coeffs = {"ShearX": (1, arg, 0, 0, 1, 0), "ShearY": (1, 0, 0, arg, 1, 0),
              "TranslateXRel": (1, 0, arg * w, 0, 1, 0), "TranslateYRel": (1, 0, 0, 0, 1, arg * h)}
    if op in coeffs:
        return img.transform(img.size, Image.AFFINE, coeffs[op], **kw)
    raise ValueError(f"unknown RandAugment op {op!r}")


class RandOpDecision(NamedTuple):
    """One drawn layer: ``op`` name, ``apply`` (its ``u <= p`` draw), ``magnitude`` (clipped level, 0-10 scale),
    ``negate`` (sign draw > 0.5), ``resample`` ('bilinear' | 'bicubic' | 'nearest')."""
    op: str
    apply: bool
    magnitude: float
    negate: bool
    resample: str


RandAugmentDecision = tuple  #: a tuple of :class:`RandOpDecision`, one per layer, in application order


def sample_rand_augment(spec: RandAugmentSpec, rng, interpolation: str = "random") -> RandAugmentDecision:
    """Draws the random decisions of one timm ``RandAugment`` call from ``rng``.

    The draws come in timm's order (ops with ``rng.integers(0, len(ops), size=n)``; then per op: apply
    ``rng.random()``, magnitude ``rng.normal`` / ``rng.uniform``, sign ``rng.random()``, filter ``rng.choice``),
    each made only where timm makes it, so an object mapping these methods to ``np.random`` / ``random``
    reproduces timm's stream exactly (tests).

    Args:
      spec: from :func:`parse_rand_augment`. rng: a ``numpy.random.Generator``.
      interpolation: geometric ops' filter, or 'random' (uniform bilinear / bicubic, timm's default).
    Returns: a tuple of ``spec.num_layers`` :class:`RandOpDecision`.
    """
    idx = rng.integers(0, len(spec.ops), size=spec.num_layers)
    upper = spec.magnitude_max or LEVEL_DENOM
    out = []
    for i in np.asarray(idx).reshape(-1):
        op = spec.ops[int(i)]
        if spec.prob < 1.0 and rng.random() > spec.prob:
            out.append(RandOpDecision(op, False, 0.0, False, "bilinear"))
            continue
        mag = spec.magnitude
        if spec.magnitude_std == math.inf:
            mag = float(rng.uniform(0, mag))
        elif spec.magnitude_std > 0:
            mag = float(rng.normal(mag, spec.magnitude_std))
        mag = max(0.0, min(mag, upper))
        negate = bool(rng.random() > 0.5) if op in _SIGNED else False
        if op in _GEOMETRIC and interpolation == "random":
            resample = str(rng.choice(("bilinear", "bicubic")))
        else:
            resample = interpolation if interpolation != "random" else "bilinear"
        out.append(RandOpDecision(op, True, float(mag), negate, resample))
    return tuple(out)


def apply_rand_augment(img: Image.Image, decision: RandAugmentDecision, fill: Sequence[int] = (128, 128, 128),
                       translate_pct: float = 0.45) -> Image.Image:
    """Applies a :class:`RandAugmentDecision` to an RGB PIL image (timm ``RandAugment.__call__`` with those
    draws). ``fill``: geometric fill colour (:func:`img_mean_fill`); ``translate_pct``: relative translation
    range. Returns the augmented image (same size)."""
    for d in decision:
        if d.apply:
            img = apply_rand_op(img, d.op, level_to_arg(d.op, d.magnitude, d.negate, translate_pct), fill,
                                d.resample)
    return img


# ----------------------------------------------------------------------------------------------- RandomErasing
RANDOM_ERASE_MODES = ("const", "rand", "pixel")


class EraseBox(NamedTuple):
    """One erased rectangle ``(top, left, h, w)`` in pixels and its fill: ``(h, w, C)`` float32 values
    (zeros for 'const', one normal colour per channel for 'rand', per-pixel normal for 'pixel')."""
    top: int
    left: int
    h: int
    w: int
    values: np.ndarray


RandomErasingDecision = tuple  #: a tuple of :class:`EraseBox` (empty: nothing erased)


def sample_random_erasing(rng, height: int, width: int, channels: int = 3, prob: float = 0.25,
                          mode: str = "const", count: int = 1, min_area: float = 0.02, max_area: float = 1 / 3,
                          min_aspect: float = 0.3) -> RandomErasingDecision:
    """Draws timm ``RandomErasing._erase``'s decisions for one ``(height, width, channels)`` image.

    With probability ``prob`` (skip when ``u > prob``): a box count uniform in ``[1, count]``; per box up to 10
    attempts of area ``U(min_area, max_area) * H * W / count`` and aspect ``exp(U(log min_aspect,
    -log min_aspect))``, ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``; the first with
    ``h < H`` and ``w < W`` gets a uniform position (``top`` in ``[0, H-h]``, ``left`` in ``[0, W-w]``). Draw
    order is timm's (``rng.random``, ``rng.integers``, ``rng.uniform``), so a ``random``-backed stand-in
    reproduces timm's boxes (tests).

    Args:
      rng: ``numpy.random.Generator``. height, width, channels: image shape. prob: erase probability.
      mode: 'const' | 'rand' | 'pixel'. count: maximum number of boxes (timm ``max_count``).
    Returns: a tuple of :class:`EraseBox`.
    Raises: ValueError for an unknown mode (naming ``config.data.random_erase_mode``).
    """
    if mode not in RANDOM_ERASE_MODES:
        raise ValueError(f"config.data.random_erase_mode must be one of {RANDOM_ERASE_MODES}, got {mode!r}")
    if rng.random() > prob:
        return ()
    area = height * width
    n = 1 if count == 1 else int(rng.integers(1, count + 1))
    log_ratio = (math.log(min_aspect), math.log(1 / min_aspect))
    boxes = []
    for _ in range(n):
        for _attempt in range(10):
            target = float(rng.uniform(min_area, max_area)) * area / n
            aspect = math.exp(float(rng.uniform(*log_ratio)))
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if w < width and h < height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                if mode == "pixel":
                    values = rng.standard_normal((h, w, channels)).astype(np.float32)
                elif mode == "rand":
                    values = np.broadcast_to(rng.standard_normal(channels).astype(np.float32), (h, w, channels))
                else:
                    values = np.zeros((h, w, channels), np.float32)
                boxes.append(EraseBox(top, left, h, w, values))
                break
    return tuple(boxes)


def apply_random_erasing(x: np.ndarray, decision: RandomErasingDecision) -> np.ndarray:
    """Writes each box's values into a copy of the normalised ``(H, W, C)`` float32 image ``x`` (later boxes over
    earlier ones, as timm). Returns the erased copy (``x`` itself when ``decision`` is empty)."""
    if not decision:
        return x
    x = np.array(x, copy=True)
    for b in decision:
        x[b.top:b.top + b.h, b.left:b.left + b.w, :] = b.values
    return x
