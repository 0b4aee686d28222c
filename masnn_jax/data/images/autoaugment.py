"""AutoAugment with torchvision's ImageNet policy (``transforms.AutoAugment(AutoAugmentPolicy.IMAGENET)``), on PIL.

The official MA-SNN ImageNet recipe (``utils.py:47-56``) applies ``torchvision.transforms.AutoAugment()`` with its
defaults: the IMAGENET policy, NEAREST interpolation, fill ``None`` (black). This module reproduces its semantics
for PIL images (the path the official code takes, since AutoAugment runs before ``ToTensor``):

* one of the 25 sub-policies is drawn uniformly; each of its two ops runs when its uniform draw ``u <= p``
  (compared in float32, as torchvision compares a float32 tensor with the Python float);
* a magnitude *bin* (0-9) indexes torchvision's ``_augmentation_space(10, ...)`` tables, built here in float32
  with torch's symmetric ``linspace`` rule; signed ops are negated when their sign draw is 0;
* the ops are the PIL calls torchvision's ``functional_pil`` makes (``ImageOps``, ``ImageEnhance``,
  ``Image.rotate``, ``Image.transform(AFFINE)``), ShearX with torchvision's coefficient
  ``tan(radians(degrees(atan(m))))`` about the origin (``center=[0, 0]``).

timm's ``'original'`` policy has the same ops and probabilities but other magnitude conventions (e.g. its Rotate
level 9 is 27 degrees, torchvision's bin 9 is 30; its PosterizeOriginal keeps *more* bits as the level grows,
torchvision keeps fewer); this module follows torchvision.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

__all__ = ["IMAGENET_POLICY", "NUM_BINS", "MAGNITUDE_BINS", "SIGNED_OPS", "AutoAugmentDecision",
           "magnitude", "apply_op", "sample_decision", "auto_augment"]

#: torchvision's ``AutoAugmentPolicy.IMAGENET``: 25 sub-policies of two ``(op, probability, magnitude bin)``.
IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)

NUM_BINS = 10


def _linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` in float32: ``start + i*step`` for the first half, ``end - (steps-1-i)*step``
    for the rest (torch's CPU kernel), so the bins equal torchvision's bit for bit."""
    start32, end32 = np.float32(start), np.float32(end)
    step = (end32 - start32) / np.float32(steps - 1)
    half = steps // 2
    out = np.empty(steps, np.float32)
    for i in range(steps):
        out[i] = start32 + step * np.float32(i) if i < half else end32 - step * np.float32(steps - 1 - i)
    return out


def _posterize_bits(num_bins: int) -> np.ndarray:
    # torchvision: 8 - (arange(num_bins) / ((num_bins - 1) / 4)).round().int()  (float32, round half to even)
    q = np.arange(num_bins, dtype=np.float32) / np.float32((num_bins - 1) / 4)
    return (8 - np.round(q).astype(np.int32)).astype(np.int32)


#: Magnitude per bin of the ops the ImageNet policy uses (torchvision ``_augmentation_space(10, ...)``).
MAGNITUDE_BINS = {
    "ShearX": _linspace_f32(0.0, 0.3, NUM_BINS),
    "Rotate": _linspace_f32(0.0, 30.0, NUM_BINS),
    "Color": _linspace_f32(0.0, 0.9, NUM_BINS),
    "Contrast": _linspace_f32(0.0, 0.9, NUM_BINS),
    "Sharpness": _linspace_f32(0.0, 0.9, NUM_BINS),
    "Posterize": _posterize_bits(NUM_BINS),
    "Solarize": _linspace_f32(255.0, 0.0, NUM_BINS),
}
#: Ops whose magnitude is negated when the sign draw is 0.
SIGNED_OPS = frozenset({"ShearX", "Rotate", "Color", "Contrast", "Sharpness"})


def magnitude(op: str, bin_index: int | None, sign: int = 1) -> float:
    """The magnitude torchvision passes to ``_apply_op`` for ``op`` at ``bin_index`` (None: 0.0); negated for a
    signed op when ``sign == 0``. Units: degrees (Rotate), shear factor (ShearX), enhancement offset (factor
    ``1 + m``: Color, Contrast, Sharpness), bits kept (Posterize), threshold 0-255 (Solarize)."""
    if bin_index is None:
        return 0.0
    m = float(MAGNITUDE_BINS[op][bin_index])
    if op in SIGNED_OPS and int(sign) == 0:
        m = -m
    return m


def apply_op(img: Image.Image, op: str, mag: float) -> Image.Image:
    """Applies one AutoAugment op to an RGB PIL image as torchvision's PIL path does (NEAREST, black fill).

    Args:
      img: PIL image, mode 'RGB' (or 'L').
      op: one of the ImageNet policy's ops (ShearX, Rotate, Color, Contrast, Sharpness, Posterize, Solarize,
        AutoContrast, Equalize, Invert).
      mag: the op's magnitude (see :func:`magnitude`).
    Returns:
      a new PIL image of the same size and mode.
    Raises:
      ValueError: unknown op.
    """
    fill = (0,) * len(img.getbands()) if len(img.getbands()) > 1 else 0
    if op == "ShearX":
        # F.affine(shear=[degrees(atan(m)), 0], center=[0, 0]) -> inverse matrix (1, tan(sx), 0, 0, 1, 0)
        coef = math.tan(math.radians(math.degrees(math.atan(mag))))
        return img.transform(img.size, Image.AFFINE, (1.0, coef, 0.0, 0.0, 1.0, 0.0), Image.NEAREST,
                             fillcolor=fill)
    if op == "Rotate":
        return img.rotate(mag, Image.NEAREST, expand=False, center=None, fillcolor=fill)
    if op == "Color":
        return ImageEnhance.Color(img).enhance(1.0 + mag)
    if op == "Contrast":
        return ImageEnhance.Contrast(img).enhance(1.0 + mag)
    if op == "Sharpness":
        return ImageEnhance.Sharpness(img).enhance(1.0 + mag)
    if op == "Posterize":
        return ImageOps.posterize(img, int(mag))
    if op == "Solarize":
        return ImageOps.solarize(img, mag)
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Invert":
        return ImageOps.invert(img)
    raise ValueError(f"unknown AutoAugment op {op!r}")


class AutoAugmentDecision(NamedTuple):
    """The random decisions of one AutoAugment call (torchvision ``AutoAugment.get_params``): the sub-policy index
    (0-24), two uniform draws in [0, 1) (op i runs when ``probs[i] <= p_i``) and two signs in {0, 1}."""
    policy_id: int
    probs: tuple[float, float]
    signs: tuple[int, int]


def sample_decision(rng: np.random.Generator) -> AutoAugmentDecision:
    """Draws an :class:`AutoAugmentDecision` from ``rng`` (same distribution as torchvision's ``get_params``)."""
    policy_id = int(rng.integers(len(IMAGENET_POLICY)))
    probs = rng.random(2, dtype=np.float32)
    signs = rng.integers(2, size=2)
    return AutoAugmentDecision(policy_id, (float(probs[0]), float(probs[1])), (int(signs[0]), int(signs[1])))


def auto_augment(img: Image.Image, decision: AutoAugmentDecision) -> Image.Image:
    """torchvision ``AutoAugment(IMAGENET)`` forward pass on a PIL image with the given random decisions.

    Args:
      img: RGB PIL image (any size).
      decision: from :func:`sample_decision` (or fixed, for tests).
    Returns:
      the augmented PIL image (same size).
    """
    for (op, p, bin_index), u, sign in zip(IMAGENET_POLICY[decision.policy_id], decision.probs, decision.signs):
        if np.float32(u) <= np.float32(p):
            img = apply_op(img, op, magnitude(op, bin_index, sign))
    return img
