"""Parity of the image transforms with their references.

* AutoAugment ops: every op of torchvision's ImageNet policy against timm's ``auto_augment.py`` op functions (loaded
  standalone: ``import timm`` needs torchvision, which does not import here), called with torchvision's resolved
  magnitudes, NEAREST resampling and black fill — timm and torchvision's PIL path make the same PIL calls, only
  their magnitude conventions differ. Solarize, Posterize and Invert are also checked against hand-written NumPy.
* Magnitude tables: against ``torch.linspace`` / torchvision's posterize formula (torch CPU is installed) and hand
  values; the policy table against timm's 'original' policy (same ops and probabilities).
* RandomResizedCrop parameters, Resize + CentreCrop and ToTensor + Normalize: hand-computed (and torch for the
  float32 normalisation).
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest
from PIL import Image

from masnn_jax.data.images import autoaugment as aa
from masnn_jax.data.images import transforms as T


def _timm_aa():
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("timm not installed (pip install --no-deps timm): the AutoAugment reference")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "auto_augment.py")
    s = importlib.util.spec_from_file_location("_timm_auto_augment", path)
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def timm_aa():
    return _timm_aa()


@pytest.fixture(scope="module")
def photo():
    """A real photograph (scikit-learn's china.jpg, 427x640), cropped to 96x120 to keep the tests fast."""
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image("china.jpg")[150:246, 200:320])


_TIMM_NAME = {"ShearX": "shear_x", "Rotate": "rotate", "Color": "color", "Contrast": "contrast",
              "Sharpness": "sharpness", "Posterize": "posterize", "Solarize": "solarize",
              "AutoContrast": "auto_contrast", "Equalize": "equalize", "Invert": "invert"}


def _timm_apply(timm_aa, img, op, mag):
    fn = getattr(timm_aa, _TIMM_NAME[op])
    kw = dict(resample=Image.NEAREST, fillcolor=(0, 0, 0))
    if op == "ShearX":
        return fn(img, math.tan(math.radians(math.degrees(math.atan(mag)))), **kw)
    if op == "Rotate":
        return fn(img, mag, **kw)
    if op in ("Color", "Contrast", "Sharpness"):
        return fn(img, 1.0 + mag)
    if op == "Posterize":
        return fn(img, int(mag))
    if op == "Solarize":
        return fn(img, mag)
    return fn(img)


def test_magnitude_tables_equal_torchvision():
    torch = pytest.importorskip("torch")
    for op, (lo, hi) in {"ShearX": (0.0, 0.3), "Rotate": (0.0, 30.0), "Color": (0.0, 0.9), "Contrast": (0.0, 0.9),
                         "Sharpness": (0.0, 0.9), "Solarize": (255.0, 0.0)}.items():
        np.testing.assert_array_equal(aa.MAGNITUDE_BINS[op], torch.linspace(lo, hi, 10).numpy(), err_msg=op)
    ref = (8 - (torch.arange(10) / ((10 - 1) / 4)).round().int()).numpy()
    np.testing.assert_array_equal(aa.MAGNITUDE_BINS["Posterize"], ref)
    # hand values: Rotate bin 9 = 30 degrees (timm's level 9 would be 27), Posterize bin 8 keeps 4 bits
    assert aa.magnitude("Rotate", 9, 1) == 30.0 and aa.magnitude("Rotate", 9, 0) == -30.0
    assert aa.magnitude("Posterize", 8, 0) == 4.0 and aa.magnitude("Solarize", 5, 0) == pytest.approx(255 - 5 * 255 / 9)
    assert aa.magnitude("Equalize", None, 0) == 0.0


def test_policy_table_matches_timm_original(timm_aa):
    """Same 25 sub-policies (ops, probabilities, magnitude indices) as timm's 'original' ImageNet policy; timm
    gives every op a level, torchvision None for the magnitude-free ops."""
    ref = timm_aa.auto_augment_policy_original({})
    assert len(ref) == len(aa.IMAGENET_POLICY) == 25
    for ours, theirs in zip(aa.IMAGENET_POLICY, ref):
        for (op, p, m), t in zip(ours, theirs):
            assert t.name.replace("PosterizeOriginal", "Posterize") == op
            assert t.prob == p
            if m is not None:
                assert t.magnitude == m


@pytest.mark.parametrize("op", sorted(_TIMM_NAME))
def test_each_op_equals_timm(timm_aa, photo, op):
    bins = [None] if op in ("AutoContrast", "Equalize", "Invert") else [0, 3, 5, 8, 9]
    for b in bins:
        for sign in (0, 1):
            mag = aa.magnitude(op, b, sign)
            ours = np.asarray(aa.apply_op(photo, op, mag))
            ref = np.asarray(_timm_apply(timm_aa, photo, op, mag))
            np.testing.assert_array_equal(ours, ref, err_msg=f"{op} bin {b} sign {sign}")


def test_ops_against_numpy(photo):
    x = np.asarray(photo).astype(np.int32)
    t = aa.magnitude("Solarize", 5)
    np.testing.assert_array_equal(np.asarray(aa.apply_op(photo, "Solarize", t)), np.where(x < t, x, 255 - x))
    np.testing.assert_array_equal(np.asarray(aa.apply_op(photo, "Invert", 0.0)), 255 - x)
    for bits in (4, 5, 6, 7, 8):
        mask = (0xFF << (8 - bits)) & 0xFF
        np.testing.assert_array_equal(np.asarray(aa.apply_op(photo, "Posterize", bits)), x & mask)
    # ShearX about the origin: row y samples x + m*y (nearest), black where it leaves the image
    m = aa.magnitude("ShearX", 9, 1)
    out = np.asarray(aa.apply_op(photo, "ShearX", m))
    assert out[0].tolist() == np.asarray(photo)[0].tolist()  # row 0 (centre y = 0.5) barely moves
    assert (out[-1, -10:] == 0).all()  # bottom-right corner sampled from outside the image


def test_policy_with_fixed_decisions_equals_timm_ops(timm_aa, photo):
    for pid in range(25):
        for probs, signs in (((0.0, 0.0), (1, 1)), ((0.39, 0.59), (0, 1)), ((0.61, 0.19), (1, 0)),
                             ((0.99, 0.99), (0, 0)), ((0.6, 0.6), (0, 0))):
            ours = aa.auto_augment(photo, aa.AutoAugmentDecision(pid, probs, signs))
            ref = photo
            for (op, p, b), u, s in zip(aa.IMAGENET_POLICY[pid], probs, signs):
                if np.float32(u) <= np.float32(p):
                    ref = _timm_apply(timm_aa, ref, op, aa.magnitude(op, b, s))
            np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref), err_msg=f"policy {pid} {probs}")
    # u == p runs the op (torchvision's ``probs[i] <= p``), u > p does not
    d = aa.AutoAugmentDecision(13, (0.6, 0.99), (0, 0))  # Invert 0.6, Equalize 1.0
    np.testing.assert_array_equal(np.asarray(aa.auto_augment(photo, d)),
                                  np.asarray(timm_aa.equalize(timm_aa.invert(photo))))
    d = aa.AutoAugmentDecision(13, (0.61, 0.99), (0, 0))  # Invert skipped
    np.testing.assert_array_equal(np.asarray(aa.auto_augment(photo, d)), np.asarray(timm_aa.equalize(photo)))


def test_sample_decision_distribution():
    rng = np.random.default_rng(0)
    ds = [aa.sample_decision(rng) for _ in range(2000)]
    ids = np.array([d.policy_id for d in ds])
    assert ids.min() == 0 and ids.max() == 24 and abs(np.bincount(ids).mean() - 80) < 1e-9
    assert all(0.0 <= u < 1.0 for d in ds for u in d.probs) and {s for d in ds for s in d.signs} == {0, 1}


class _Scripted:
    """A stand-in Generator returning scripted uniform / integer draws (for hand-computed crop boxes)."""

    def __init__(self, uniforms, integers=()):
        self.u, self.i = list(uniforms), list(integers)

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.u.pop(0)

    def integers(self, lo, hi):
        v = self.i.pop(0)
        assert lo <= v < hi
        return v


def test_random_resized_crop_params_hand_computed():
    # first attempt fits: area 375*500, fraction 0.08 + 0.92*0.5, log-ratio midway (ratio 1)
    frac = 0.08 + 0.92 * 0.5
    side = int(round(math.sqrt(375 * 500 * frac)))
    rng = _Scripted([0.5, 0.5], [7, 11])
    assert T.random_resized_crop_params(rng, 375, 500) == (7, 11, side, side)
    # all 10 attempts too big -> centre crop clamped to the ratio range: wide 100x400 -> h=100, w=round(133.3)
    assert T.random_resized_crop_params(_Scripted([1.0, 0.5] * 10), 100, 400, scale=(2.0, 2.0)) == \
        (0, (400 - 133) // 2, 100, 133)
    assert T.random_resized_crop_params(_Scripted([1.0, 0.5] * 10), 400, 100, scale=(2.0, 2.0)) == \
        ((400 - 133) // 2, 0, 133, 100)
    assert T.random_resized_crop_params(_Scripted([1.0, 0.5] * 10), 90, 100, scale=(2.0, 2.0)) == (0, 0, 90, 100)
    rng = np.random.default_rng(1)
    for _ in range(500):
        top, left, h, w = T.random_resized_crop_params(rng, 375, 500)
        assert 0 < h <= 375 and 0 < w <= 500 and top + h <= 375 and left + w <= 500


def test_eval_transform_hand_computed(photo):
    from sklearn.datasets import load_sample_image

    img = Image.fromarray(load_sample_image("china.jpg")).resize((500, 375), Image.BILINEAR)
    for crop, resize, new_w in ((224, 256, int(256 * 500 / 375)), (288, 329, int(329 * 500 / 375))):
        t = T.EvalTransform(crop)
        assert t.resize == resize
        r = img.resize((new_w, resize), Image.BILINEAR)
        top, left = int(round((resize - crop) / 2)), int(round((new_w - crop) / 2))
        ref = np.asarray(r)[top:top + crop, left:left + crop].astype(np.float64) / 255.0
        ref = (ref - np.array(T.IMAGENET_MEAN)) / np.array(T.IMAGENET_STD)
        out = t(img)
        assert out.shape == (crop, crop, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, ref, atol=2e-6)
    # left offset of 224 in 341 is round(58.5) = 58 (half to even), as torchvision's CenterCrop
    assert T.center_crop(Image.new("RGB", (341, 256)), 224).size == (224, 224)
    small = T.center_crop(Image.new("RGB", (20, 10), (255, 255, 255)), 16)  # zero-padded like torchvision
    a = np.asarray(small)
    assert a.shape == (16, 16, 3) and (a[:3] == 0).all() and (a[3:13] == 255).all() and (a[13:] == 0).all()


def test_normalisation_equals_torch(photo):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1).float().div(255)
    ref = (x - torch.tensor(T.IMAGENET_MEAN)[:, None, None]) / torch.tensor(T.IMAGENET_STD)[:, None, None]
    np.testing.assert_array_equal(T.to_normalized_array(photo), ref.permute(1, 2, 0).numpy())


def test_train_transform_reproduces_its_steps(photo):
    t = T.TrainTransform(64, auto_augment=True)
    out = t(photo, np.random.default_rng([0, 3, 5]))
    assert out.shape == (64, 64, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, t(photo, np.random.default_rng([0, 3, 5])))
    crop_rng, _, aa_rng = np.random.default_rng([0, 3, 5]).spawn(3)
    top, left, h, w = T.random_resized_crop_params(crop_rng, photo.height, photo.width)
    ref = photo.crop((left, top, left + w, top + h)).resize((64, 64), Image.BILINEAR)
    ref = aa.auto_augment(ref, aa.sample_decision(aa_rng))
    np.testing.assert_array_equal(out, T.to_normalized_array(ref))
    # the flip draws from its own stream: enabling it leaves the crop unchanged
    flipped = T.TrainTransform(64, auto_augment=False, random_flip=True)
    plain = T.TrainTransform(64, auto_augment=False)
    outs = [(flipped(photo, np.random.default_rng([0, 0, i])), plain(photo, np.random.default_rng([0, 0, i])))
            for i in range(8)]
    assert all(np.array_equal(a, b) or np.array_equal(a, b[:, ::-1]) for a, b in outs)
    assert any(not np.array_equal(a, b) for a, b in outs)
