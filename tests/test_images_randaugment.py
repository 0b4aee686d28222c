"""RandAugment / RandomErasing (masnn_jax.data.images.randaugment) against timm 1.0.31's own code.

timm's ``auto_augment.py`` (PIL + numpy) and ``random_erasing.py`` (torch) are loaded standalone from the venv
(``import timm`` needs torchvision). The sampler draws in timm's order, so a stand-in "generator" mapping
``integers``/``random``/``normal``/``uniform``/``choice`` onto timm's ``np.random`` / ``random`` calls reproduces
timm's stream: whole RandAugment / RandomErasing calls are then compared pixel for pixel.
"""

import importlib.util
import math
import os
import random

import numpy as np
import pytest
from PIL import Image

from masnn_jax.data.images import randaugment as ra
from masnn_jax.data.images.transforms import TrainTransform


def _load_timm(name):
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("timm not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", name + ".py")
    s = importlib.util.spec_from_file_location("timm_" + name + "_standalone", path)
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def taa():
    return _load_timm("auto_augment")


class PyStream:
    """Maps the sampler's Generator calls onto the global ``np.random`` / ``random`` calls timm makes."""

    def integers(self, lo, hi, size=None):
        if size is not None:
            return np.random.randint(lo, hi, size=size)  # np.random.choice(ops, n) with replacement
        return random.randint(lo, hi - 1)

    def random(self):
        return random.random()

    def normal(self, m, s):
        return random.gauss(m, s)

    def uniform(self, a, b):
        return random.uniform(a, b)

    def choice(self, seq):
        return random.choice(seq)

    def standard_normal(self, shape):
        return np.random.standard_normal(shape)


def _img(h=32, w=40, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(30, 200, (h, w, 3), dtype=np.uint8), "RGB")


_PIL = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
FILL = ra.img_mean_fill((0.485, 0.456, 0.406))


def test_fill_and_op_lists(taa):
    assert FILL == (124, 116, 104)  # round(255 * ImageNet mean)
    assert ra.RAND_INCREASING_OPS == tuple(taa._RAND_INCREASING_TRANSFORMS)
    assert ra.RAND_OPS == tuple(taa._RAND_TRANSFORMS)


@pytest.mark.parametrize("op", sorted(set(ra.RAND_OPS) | set(ra.RAND_INCREASING_OPS)))
def test_each_op_pixel_identical_to_timm(taa, op, monkeypatch):
    img = _img()
    hp = dict(translate_const=14, img_mean=FILL)
    changed = False
    for level in (0.0, 2.5, 7.3, 9.0, 10.0):
        for negate in (False, True):
            monkeypatch.setattr(taa, "_randomly_negate", (lambda v: -v) if negate else (lambda v: v))
            level_fn = taa.LEVEL_TO_ARG[op]
            args = level_fn(level, hp) if level_fn is not None else ()
            mine_arg = ra.level_to_arg(op, level, negate)
            assert (args[0] if args else None) == mine_arg, (op, level, negate)
            for resample in ("bilinear", "bicubic"):
                out = ra.apply_rand_op(img, op, mine_arg, FILL, resample)
                if op.startswith("Posterize") and mine_arg == 0:
                    # Pillow >= 10 refuses bits=0 (timm raises); the old Pillow lut i & ~255 gives black
                    assert not np.asarray(out).any()
                    continue
                ref = taa.NAME_TO_OP[op](img, *args, fillcolor=FILL, resample=_PIL[resample])
                np.testing.assert_array_equal(np.asarray(out), np.asarray(ref), err_msg=f"{op} {level} {negate}")
                changed |= not np.array_equal(np.asarray(out), np.asarray(img))
    assert changed, f"{op} never changed the image"


@pytest.mark.parametrize("config_str,ops,interp", [
    ("rand-m9-mstd0.5-inc1", None, "random"),
    ("rand-m9-mstd0.5-inc1", None, "bicubic"),
    ("rand-m9-n1-mstd0.4-inc1", ra.SPIKFORMER_CIFAR_OPS, "random"),
    ("rand-m7-n3-mstd101-p0.7", None, "bilinear"),
    ("rand-m12-mmax15-mstd2-inc1", None, "bicubic"),
])
def test_whole_call_matches_timm(taa, config_str, ops, interp, monkeypatch):
    orig = taa.posterize

    def posterize_old_pillow(img, bits, **kw):  # Pillow >= 10 refuses 0 bits; older Pillow gave black
        return Image.new(img.mode, img.size, 0) if bits <= 0 else orig(img, bits, **kw)

    for name in ("Posterize", "PosterizeIncreasing"):
        monkeypatch.setitem(taa.NAME_TO_OP, name, posterize_old_pillow)
    hp = dict(translate_const=14, img_mean=FILL)
    if interp != "random":
        hp["interpolation"] = _PIL[interp]
    timm_t = taa.rand_augment_transform(config_str, dict(hp), transforms=list(ops) if ops else None)
    spec = ra.parse_rand_augment(config_str, ops)
    assert [o.name for o in timm_t.ops] == list(spec.ops) and timm_t.num_layers == spec.num_layers
    img = _img()
    n_changed = 0
    for seed in range(25):
        random.seed(seed)
        np.random.seed(seed)
        ref = np.asarray(timm_t(img))
        random.seed(seed)
        np.random.seed(seed)
        dec = ra.sample_rand_augment(spec, PyStream(), interp)
        out = np.asarray(ra.apply_rand_augment(img, dec, FILL))
        np.testing.assert_array_equal(out, ref, err_msg=f"{config_str} seed {seed}: {dec}")
        n_changed += not np.array_equal(out, np.asarray(img))
    assert n_changed >= 5


def test_sampler_statistics():
    spec = ra.parse_rand_augment("rand-m9-mstd0.5-inc1")
    assert spec == ra.RandAugmentSpec(9.0, 2, 0.5, 0.5, None, True, ra.RAND_INCREASING_OPS)
    rng = np.random.default_rng(0)
    decs = [d for _ in range(12000) for d in ra.sample_rand_augment(spec, rng, "random")]
    applied = [d for d in decs if d.apply]
    assert abs(len(applied) / len(decs) - 0.5) < 0.013
    mags = np.array([d.magnitude for d in applied])
    # N(9, 0.5) clipped to [0, 10] = 9 + 0.5 min(Z, 2): moments of a standard normal capped at a = 2
    a = 2.0
    pdf, cdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(a / math.sqrt(2)))
    m1, m2 = -pdf + a * (1 - cdf), (cdf - a * pdf) + a * a * (1 - cdf)
    mean, std = 9 + 0.5 * m1, 0.5 * math.sqrt(m2 - m1 * m1)  # 8.99575, 0.48995
    se = std / math.sqrt(len(mags))
    assert abs(mags.mean() - mean) < 4 * se and abs(mags.std() - std) < 4 * se * 0.75 and mags.max() <= 10.0
    assert abs((mags == 10.0).mean() - 0.0228) < 0.006  # P(N(9, .5) > 10)
    counts = np.array([sum(d.op == o for d in decs) for o in spec.ops])
    assert np.all(np.abs(counts / len(decs) - 1 / 15) < 0.01)
    signed = [d for d in applied if d.op in ("Rotate", "ShearX", "TranslateYRel")]
    assert abs(np.mean([d.negate for d in signed]) - 0.5) < 0.05
    geo = [d.resample for d in applied if d.op in ("Rotate", "ShearX", "ShearY")]
    assert abs(np.mean([r == "bicubic" for r in geo]) - 0.5) < 0.05
    # uniform magnitudes (mstd > 100) in [0, m]
    spec_u = ra.parse_rand_augment("rand-m9-mstd101-p1.0")
    mu = np.array([d.magnitude for _ in range(3000) for d in ra.sample_rand_augment(spec_u, rng)])
    assert mu.min() >= 0 and mu.max() <= 9 and abs(mu.mean() - 4.5) < 0.1


@pytest.mark.parametrize("bad,ops,match", [
    ("rand-m9-x3", None, "config.data.rand_augment"),
    ("augmix-m5", None, "config.data.rand_augment"),
    ("rand-m9-inc2", None, "config.data.rand_augment"),
    ("rand-n0", None, "config.data.rand_augment"),
    ("rand-m9", ("Rotate", "Zoom"), "config.data.rand_augment_ops"),
    ("rand-m9", (), "config.data.rand_augment_ops"),
])
def test_parse_errors(bad, ops, match):
    with pytest.raises(ValueError, match=match):
        ra.parse_rand_augment(bad, ops)


# ------------------------------------------------------------------------------------------------ RandomErasing
@pytest.fixture(scope="module")
def tre():
    pytest.importorskip("torch")
    return _load_timm("random_erasing")


@pytest.mark.parametrize("mode,count", [("const", 1), ("const", 3), ("rand", 1), ("pixel", 2)])
def test_random_erasing_matches_timm(tre, mode, count):
    import torch

    h, w = 32, 40
    timm_re = tre.RandomErasing(0.6, mode=mode, max_count=count, device="cpu")
    erased = 0
    for seed in range(30):
        random.seed(seed)
        ref = timm_re(torch.full((3, h, w), 5.0)).numpy().transpose(1, 2, 0)
        random.seed(seed)
        dec = ra.sample_random_erasing(PyStream(), h, w, 3, 0.6, mode, count)
        out = ra.apply_random_erasing(np.full((h, w, 3), 5.0, np.float32), dec)
        np.testing.assert_array_equal(out != 5.0, ref != 5.0, err_msg=f"{mode} seed {seed}")  # same region
        if mode == "const":
            np.testing.assert_array_equal(out, ref)
        erased += bool(dec)
        for b in dec:
            v = out[b.top:b.top + b.h, b.left:b.left + b.w]
            if mode == "rand" and len(dec) == 1:  # one normal colour per channel
                assert np.all(v == v[0, 0]) and np.all(ref[b.top:b.top + b.h, b.left:b.left + b.w] ==
                                                       ref[b.top, b.left])
    assert 8 <= erased <= 28


def test_random_erasing_statistics():
    rng = np.random.default_rng(1)
    h, w = 32, 40
    decs = [ra.sample_random_erasing(rng, h, w, 3, 0.25, "pixel") for _ in range(4000)]
    hit = [d for d in decs if d]
    assert abs(len(hit) / len(decs) - 0.25) < 0.02
    frac = np.array([d[0].h * d[0].w / (h * w) for d in hit])
    # area U(0.02, 1/3) before rounding / rejection: fractions stay near that range
    assert frac.min() > 0.01 and frac.max() < 0.4 and abs(frac.mean() - 0.17) < 0.02
    vals = np.concatenate([d[0].values.ravel() for d in hit])
    assert abs(vals.mean()) < 0.02 and abs(vals.std() - 1) < 0.02
    with pytest.raises(ValueError, match="config.data.random_erase_mode"):
        ra.sample_random_erasing(rng, h, w, 3, 0.5, "noise")


# ----------------------------------------------------------------------------------------- transform + configs
def test_train_transform_order_and_streams():
    img = _img(48, 56, 3)
    base = TrainTransform(32, scale=(1, 1), ratio=(1, 1), auto_augment=False)
    full = TrainTransform(32, scale=(1, 1), ratio=(1, 1), auto_augment=False, rand_augment="rand-m9-mstd0.5-inc1",
                          random_erase_prob=1.0, random_erase_mode="const")
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    x0, x1 = base(img, rng_a), full(img, rng_b)
    # RandomErasing writes exact zeros in the *normalised* image (after mean/std)
    assert x1.shape == (32, 32, 3) and x1.dtype == np.float32 and (x1 == 0).all(axis=-1).sum() >= 0.02 * 32 * 32 * .9
    assert (x0 == 0).sum() == 0
    # the RandAugment decision is the 4th child stream's; the crop stream is unchanged by enabling it
    streams = np.random.default_rng(7).spawn(5)
    dec = ra.sample_rand_augment(full.rand_augment, streams[3], "bilinear")
    pil = base.augment(img, np.random.default_rng(7))
    expect = ra.apply_rand_augment(pil, dec, ra.img_mean_fill(full.mean))
    boxes = ra.sample_random_erasing(streams[4], 32, 32, 3, 1.0, "const")
    from masnn_jax.data.images.transforms import to_normalized_array
    np.testing.assert_array_equal(x1, ra.apply_random_erasing(to_normalized_array(expect, full.mean, full.std), boxes))


@pytest.mark.parametrize("kw,match", [
    (dict(auto_augment=True, rand_augment="rand-m9"), "auto_augment and config.data.rand_augment"),
    (dict(random_erase_prob=1.5), "config.data.random_erase_prob"),
    (dict(random_erase_mode="zeros"), "config.data.random_erase_mode"),
    (dict(random_erase_count=0), "config.data.random_erase_count"),
    (dict(rand_augment="rand-q3"), "config.data.rand_augment"),
])
def test_transform_errors(kw, match):
    kw = dict(dict(auto_augment=False), **kw)
    with pytest.raises(ValueError, match=match):
        TrainTransform(32, **kw)


def test_build_rejects_bad_keys(tmp_path):
    from masnn_jax.data.images.config import build, default_data_config

    cfg = default_data_config("imagefolder")
    cfg.root = str(tmp_path)
    cfg.auto_augment = False
    for key, val, match in (("rand_augment", 3, "config.data.rand_augment"),
                            ("rand_augment_ops", "Rotate", "config.data.rand_augment_ops"),
                            ("random_erase_prob", -0.1, "config.data.random_erase_prob")):
        d = cfg.to_dict()
        d[key] = val
        with pytest.raises(ValueError, match=match):
            build(d, "train")


def test_unknown_rand_augment_op_is_named(tmp_path):
    """An op name timm does not know (a typo, a wrong case) is named with the key, by the parser and by build for
    both splits (an evaluation run meets the typo too), even with RandAugment off."""
    from masnn_jax.data.images.config import build, default_data_config

    with pytest.raises(ValueError) as err:
        ra.parse_rand_augment("rand-m9-n1", ("Equalize", "Rotat", "shearx"))
    msg = str(err.value)
    assert "config.data.rand_augment_ops: unknown RandAugment op name(s) 'Rotat', 'shearx' in (" in msg
    assert "ShearX" in msg and "Rotate" in msg  # the known names are listed
    cfg = default_data_config("imagefolder")
    cfg.root = str(tmp_path)
    cfg.auto_augment = False
    for rand_augment in ("rand-m9-n1-mstd0.4-inc1", ""):
        d = dict(cfg.to_dict(), rand_augment=rand_augment, rand_augment_ops=("Equalize", "Zoom"))
        for split in ("train", "test"):
            with pytest.raises(ValueError, match=r"config\.data\.rand_augment_ops: unknown RandAugment op name\(s\) "
                                                 r"'Zoom' in \('Equalize', 'Zoom'\)"):
                build(d, split)
    with pytest.raises(ValueError, match="config.data.random_erase_mode"):
        build(dict(cfg.to_dict(), random_erase_mode="zeros"), "test")


def test_spikformer_recipes_set_the_official_augmentations():
    from masnn_jax.config import spikformer_cifar_config, spikformer_imagenet_config

    c = spikformer_imagenet_config(8, 512, 8).data
    assert (c.rand_augment, c.rand_augment_ops, c.random_erase_prob, c.random_erase_mode) == \
        ("rand-m9-mstd0.5-inc1", None, 0.25, "const")
    assert c.interpolation == "bicubic"
    c = spikformer_cifar_config(10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)).data
    assert c.rand_augment == "rand-m9-n1-mstd0.4-inc1" and c.random_erase_prob == 0.25
    assert c.interpolation == "bicubic" and c.random_erase_mode == "const"  # cifar10.yml train_interpolation, remode
    assert tuple(c.rand_augment_ops) == ("Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel")
    t = TrainTransform(32, scale=(1, 1), ratio=(1, 1), auto_augment=False, rand_augment=c.rand_augment,
                       rand_augment_ops=tuple(c.rand_augment_ops), mean=c.mean, std=c.std)
    assert t.rand_augment.num_layers == 1 and math.isclose(t.rand_augment.magnitude_std, 0.4)
    assert t.fill == (125, 123, 114)
