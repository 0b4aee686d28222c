"""The Spikformer CIFAR10-DVS data recipe (masnn_jax/data/events/recipe.py and its config keys).

References used here: SpikingJelly's own ``integrate_events_by_fixed_frames_number`` (frames by number), torch's
``affine_grid``-style grid + ``grid_sample`` restating torchvision's tensor ``affine``/``rotate`` (torchvision does not
import here), ``torch.linspace`` for the magnitude bins, and the official split rule of ``cifar10dvs/train.py``.
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest

from masnn_jax.data.events import CIFAR10_CLASSES, EVENT_DTYPE, build
from masnn_jax.data.events.recipe import (
    SNN_AUGMENT_OPS,
    affine_nearest,
    frames_by_number,
    hflip_then_snn_augment_wide,
    number_segments,
    snn_augment_wide,
)

torch = pytest.importorskip("torch")


def _events(x, y, p, t):
    ev = np.empty(len(x), EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = x, y, np.asarray(p).astype(bool), t
    return ev


_SJ = {}


def _sj_integrate():
    """SpikingJelly's own ``integrate_events_by_fixed_frames_number`` (+ the two functions it calls), taken from the
    installed ``spikingjelly/datasets/utils.py`` with ``ast`` (importing that module needs torchvision)."""
    if not _SJ:
        import ast
        import typing

        sj = pytest.importorskip("spikingjelly")
        path = os.path.join(os.path.dirname(sj.__file__), "datasets", "utils.py")
        tree = ast.parse(open(path, encoding="utf-8").read())
        names = {"cal_fixed_frames_number_segment_index", "integrate_events_segment_to_frame",
                 "integrate_events_by_fixed_frames_number"}
        tree.body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
        assert {n.name for n in tree.body} == names
        ns = {"np": np, **{k: getattr(typing, k) for k in ("Callable", "Optional", "Union", "Dict", "Tuple")}}
        exec(compile(tree, path, "exec"), ns)
        _SJ.update(ns)
    return _SJ["integrate_events_by_fixed_frames_number"]


def _sj_load_origin_data(path):
    """SpikingJelly's own CIFAR10DVS AEDAT reader (``_load_origin_data`` and the helpers and masks it uses), taken from
    the installed ``spikingjelly/datasets/cifar10_dvs.py`` with ``ast`` (importing it needs torchvision)."""
    if "_load_origin_data" not in _SJ:
        import ast

        sj = pytest.importorskip("spikingjelly")
        src = os.path.join(os.path.dirname(sj.__file__), "datasets", "cifar10_dvs.py")
        tree = ast.parse(open(src, encoding="utf-8").read())
        keep = []
        for n in tree.body:
            if isinstance(n, ast.FunctionDef) and n.name.startswith("_"):
                keep.append(n)
            elif isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) and t.id.endswith(("_mask", "_shift"))
                                                   or isinstance(t, ast.Name) and t.id.startswith("EVT_")
                                                   for t in n.targets):
                keep.append(n)
        tree.body = keep
        import typing

        ns = {"np": np, "logger": None, "Path": os.PathLike, "Union": typing.Union}
        exec(compile(tree, src, "exec"), ns)
        _SJ["_load_origin_data"] = ns["_load_origin_data"]
    d = _SJ["_load_origin_data"](path)
    return _events(d["x"], d["y"], d["p"], d["t"])


def _sj_frames(ev, T, H, W):
    integrate_events_by_fixed_frames_number = _sj_integrate()
    d = {"t": ev["t"].astype(np.int64), "x": ev["x"].astype(np.int64), "y": ev["y"].astype(np.int64),
         "p": ev["p"].astype(np.int64)}
    return integrate_events_by_fixed_frames_number(d, "number", T, H, W)  # (T, 2, H, W) float64


# ---------------------------------------------------------------------------------------------------------------
# frames by number vs SpikingJelly


@pytest.mark.parametrize("case", ["random", "burst", "few", "divisible", "unsorted"])
def test_frames_by_number_matches_spikingjelly(case):
    rng = np.random.default_rng(0)
    H, W, T = 12, 17, 7  # H != W catches a transpose
    n = {"random": 1003, "burst": 500, "few": 4, "divisible": 700, "unsorted": 301}[case]
    x, y, p = rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)
    t = np.sort(rng.integers(0, 10_000, n))
    if case == "burst":  # 400 events at one time stamp and one pixel, then a sparse tail
        x[:400], y[:400], t[:400] = 3, 5, 77
        t[400:] = np.sort(rng.integers(78, 90_000, n - 400))
    if case == "unsorted":
        t = rng.integers(0, 10_000, n)  # file order is what counts
    ev = _events(x, y, p, t)
    got = frames_by_number(ev, (H, W), T=T)
    ref = _sj_frames(ev, T, H, W).transpose(0, 2, 3, 1)
    assert got.shape == (T, H, W, 2) and got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)
    assert got.sum() == n
    if case == "few":  # fewer events than frames: all in the last frame (SpikingJelly's remainder rule)
        assert got[:-1].sum() == 0 and got[-1].sum() == n
    if case == "random":  # 1003 = 7 * 143 + 2: the last frame takes the remainder
        assert got.sum(axis=(1, 2, 3)).tolist() == [143] * 6 + [145]


def test_number_segments_and_downsampling():
    j_l, j_r = number_segments(10, 3)
    assert j_l.tolist() == [0, 3, 6] and j_r.tolist() == [3, 6, 10]
    rng = np.random.default_rng(1)
    n, H, W = 400, 10, 9
    ev = _events(rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n), np.arange(n))
    ref = _sj_frames(ev, 4, H, W).transpose(0, 2, 3, 1)[:, :10, :8]  # W=9: the 9th column is dropped for ds=2
    ref = ref.reshape(4, 5, 2, 4, 2, 2).sum(axis=(2, 4))
    np.testing.assert_array_equal(frames_by_number(ev, (H, W), T=4, ds=2), ref)
    with pytest.raises(ValueError, match="config.data.T"):
        number_segments(10, 0)
    with pytest.raises(ValueError, match="outside the sensor"):
        frames_by_number(_events([9], [0], [1], [0]), (4, 4), T=2)


# ---------------------------------------------------------------------------------------------------------------
# geometric ops vs torchvision's tensor rule (restated with torch primitives)


def _tv_inverse_matrix(angle, translate, shear):
    # torchvision.transforms.functional._get_inverse_affine_matrix, center (0, 0), scale 1, restated
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cos_r_sy = math.cos(rot - sy)
    a = cos_r_sy / math.cos(sy)
    b = -cos_r_sy * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * -translate[0] + m[1] * -translate[1]
    m[5] += m[3] * -translate[0] + m[4] * -translate[1]
    return m


def _tv_affine(img_tchw, angle=0.0, translate=(0, 0), shear=(0.0, 0.0)):
    """torchvision tensor affine (nearest, fill None -> zeros): base grid of pixel centres, theta / (w/2, h/2),
    grid_sample(nearest, zeros, align_corners=False)."""
    n, c, h, w = img_tchw.shape
    theta = torch.tensor(_tv_inverse_matrix(angle, translate, shear), dtype=torch.float32).reshape(1, 2, 3)
    base = torch.empty(1, h, w, 3)
    base[..., 0].copy_(torch.linspace(-w * 0.5 + 0.5, w * 0.5 + 0.5 - 1, steps=w))
    base[..., 1].copy_(torch.linspace(-h * 0.5 + 0.5, h * 0.5 + 0.5 - 1, steps=h).unsqueeze_(-1))
    base[..., 2].fill_(1)
    grid = base.view(1, h * w, 3).bmm(theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h])).view(1, h, w, 2)
    out = torch.nn.functional.grid_sample(img_tchw, grid.expand(n, h, w, 2), mode="nearest", padding_mode="zeros",
                                          align_corners=False)
    return out


def _ref(frames_thwc, **kw):
    t = torch.from_numpy(np.ascontiguousarray(frames_thwc.transpose(0, 3, 1, 2)))
    return _tv_affine(t, **kw).numpy().transpose(0, 2, 3, 1)


def test_affine_ops_match_torchvision_rule_for_every_magnitude():
    rng = np.random.default_rng(2)
    fr = rng.integers(0, 5, (2, 16, 21, 2)).astype(np.float32)
    bins = {m: torch.linspace(-m, m, 31).tolist() for m in (0.3, 5.0, 30.0)}
    mismatched = 0
    for mag in bins[0.3]:  # ShearX: shear=[degrees(m), 0]
        got = affine_nearest(fr, shear_deg=(math.degrees(mag), 0.0))
        mismatched += int((got != _ref(fr, shear=(math.degrees(mag), 0.0))).any())
    for mag in bins[30.0]:  # Rotate: F.rotate(img, m) = affine angle -m
        got = affine_nearest(fr, angle_deg=-mag)
        mismatched += int((got != _ref(fr, angle=-mag)).any())
    for mag in bins[5.0]:  # TranslateX/Y: int(m) pixels
        for tr in ((int(mag), 0), (0, int(mag))):
            mismatched += int((affine_nearest(fr, translate=tr) != _ref(fr, translate=tr)).any())
    assert mismatched == 0
    # hand-checked meanings: +2 px in x moves content right, zeros enter on the left; 90 degrees = np.rot90
    got = affine_nearest(fr, translate=(2, 0))
    np.testing.assert_array_equal(got[:, :, 2:], fr[:, :, :-2])
    assert not got[:, :, :2].any()
    sq = fr[:, :, :16]
    np.testing.assert_array_equal(affine_nearest(sq, angle_deg=-90.0), np.rot90(sq, k=1, axes=(1, 2)))


def test_magnitude_bins_equal_torch_linspace():
    from masnn_jax.data.events import recipe

    seen = {op: set() for op in SNN_AUGMENT_OPS}
    fr = np.ones((1, 8, 8, 1), np.float32)
    for s in range(600):
        _, (op, mag) = snn_augment_wide(fr, np.random.default_rng(s), return_op=True)
        seen[op].add(abs(mag))
    ref = {"ShearX": 0.3, "TranslateX": 5.0, "TranslateY": 5.0, "Rotate": 30.0}
    for op, m in ref.items():
        assert seen[op] <= {abs(v) for v in torch.linspace(-m, m, 31).tolist()}, op
        assert len(seen[op]) >= 12  # the bins are drawn, not a fixed one
    assert seen["Identity"] == {0.0}
    assert recipe._NUM_BINS == 31
    # the bins are torch.linspace's float32 values exactly (np.linspace differs in the last bit for 0.3 and 5, which
    # changes int(magnitude) of some translations)
    for lo, hi in ((-0.3, 0.3), (-5.0, 5.0), (-30.0, 30.0), (1.0, 30.0)):
        np.testing.assert_array_equal(recipe._linspace_f32(lo, hi, 31), torch.linspace(lo, hi, 31).numpy())
    assert [int(v) for v in recipe._linspace_f32(-5.0, 5.0, 31)] == [int(v) for v in torch.linspace(-5.0, 5.0, 31)]


# ---------------------------------------------------------------------------------------------------------------
# SNNAugmentWide sampling and Cutout


def test_snn_augment_wide_sampling_and_whole_clip():
    rng = np.random.default_rng(3)
    clip = rng.integers(0, 4, (3, 32, 32, 2)).astype(np.float32)  # frames differ from each other
    counts = dict.fromkeys(SNN_AUGMENT_OPS, 0)
    sides = []
    gen = np.random.default_rng(4)
    n = 1800
    for _ in range(n):
        out, (op, mag) = snn_augment_wide(clip, gen, return_op=True)
        counts[op] += 1
        assert out.shape == clip.shape and out.dtype == clip.dtype
        if op == "Cutout":
            # one square, the same for every frame and channel, set to 0; nothing else changes
            changed = np.argwhere((out != clip).any(axis=(0, 3)))
            i0, j0 = changed.min(axis=0)
            h, w = changed.max(axis=0) - changed.min(axis=0) + 1
            assert h == w
            assert not out[:, i0:i0 + h, j0:j0 + w].any()
            mask = np.ones(clip.shape[1:3], bool)
            mask[i0:i0 + h, j0:j0 + w] = False
            np.testing.assert_array_equal(out[:, mask], clip[:, mask])
            sides.append(h)
        elif op == "Rotate":
            # one op for the clip: frame t equals the op applied to frame t alone
            np.testing.assert_array_equal(out[1:2], affine_nearest(clip[1:2], angle_deg=-mag))
        elif op == "Identity":
            np.testing.assert_array_equal(out, clip)
    # uniform over 6 ops: each count ~ Binomial(1800, 1/6), mean 300, sd 15.8 -> 5 sd bounds
    assert all(220 < c < 380 for c in counts.values()), counts
    # Cutout square side = round(32 * sqrt(U(0.001, 0.11))) in [1, 11]; the mean side ~ 32 * E[sqrt(U)] ~ 7.2
    assert max(sides) <= 11 and min(sides) >= 1
    assert 6.0 < np.mean(sides) < 8.5


def test_hflip_then_augment_order_and_rate():
    clip = np.arange(2 * 4 * 6 * 2, dtype=np.float32).reshape(2, 4, 6, 2)
    flips = 0
    for s in range(400):
        g1, g2 = np.random.default_rng(s), np.random.default_rng(s)
        out = hflip_then_snn_augment_wide(clip, g1)
        flip = g2.random() < 0.5
        flips += flip
        np.testing.assert_array_equal(out, snn_augment_wide(clip[:, :, ::-1] if flip else clip, g2))
    assert 160 < flips < 240  # p = 0.5


# ---------------------------------------------------------------------------------------------------------------
# datasets, split and config


def _write_cifar_aedat(root, per_class, rng, n=64):
    files = {}
    for cls in CIFAR10_CLASSES:
        d = os.path.join(root, cls)
        os.makedirs(d, exist_ok=True)
        for k in range(per_class):
            x, y, p = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
            t = rng.integers(0, 50_000, n)  # unsorted on purpose: split_by='number' counts the file order
            body = np.stack([(y << 8) | (x << 1) | p, t], axis=1).astype(">u4").tobytes()
            path = os.path.join(d, f"cifar10_{cls}_{k}.aedat")
            with open(path, "wb") as f:
                f.write(b"#!AER-DAT2.0\r\n" + body)
            files[path] = _events(x, y, p, t)
    return files


def test_cifar10dvs_number_mode_augment_and_spikformer_split(tmp_path):
    files = _write_cifar_aedat(str(tmp_path), 12, np.random.default_rng(5))
    cfg = {"name": "cifar10_dvs", "root": str(tmp_path), "T": 5, "frame_mode": "number", "n_test_windows": 1,
           "train_random_window": False, "cifar_split_order": "spikingjelly"}
    tr, te = build(cfg, "train"), build(cfg, "test")
    # split_to_train_test_set(0.9, ...): names sorted as strings (0, 1, 10, 11, 2, ..., 9), first ceil(0.9 n) train
    order = sorted(range(12), key=str)
    pos = math.ceil(12 * 0.9)
    assert len(tr) == 10 * pos and len(te) == 10 * (12 - pos)
    assert [os.path.basename(f) for f in te._files[:1]] == [f"cifar10_airplane_{order[-1]}.aedat"]
    assert [os.path.basename(f) for f in tr._files[:3]] == [f"cifar10_airplane_{k}.aedat" for k in order[:3]]
    # frames = SpikingJelly's integration of the file (in file order), test items one clip
    ev = files[te._files[3]]
    np.testing.assert_array_equal(te[3]["frames"], _sj_frames(ev, 5, 128, 128).transpose(0, 2, 3, 1)[None])
    np.testing.assert_array_equal(tr.get(0, epoch=4)["frames"],
                                  _sj_frames(files[tr._files[0]], 5, 128, 128).transpose(0, 2, 3, 1))
    # the default split (numeric, floor) differs: k = 10, 11 are the test files
    te_num = build(dict(cfg, cifar_split_order="numeric"), "test")
    assert sorted(os.path.basename(f) for f in te_num._files[:2]) == ["cifar10_airplane_10.aedat",
                                                                      "cifar10_airplane_11.aedat"]
    # augmentation: training items only, deterministic per (seed, epoch, index), the official op on the clip
    aug = build(dict(cfg, augment="snn_augment_wide"), "train")
    plain = tr.get(2)["frames"]
    a1, a2 = aug.get(2, epoch=1)["frames"], aug.get(2, epoch=1)["frames"]
    np.testing.assert_array_equal(a1, a2)
    expect = hflip_then_snn_augment_wide(plain, np.random.default_rng([0, 1, 2, 7]))
    np.testing.assert_array_equal(a1, expect)
    changed = sum(not np.array_equal(aug.get(2, epoch=e)["frames"], plain) for e in range(12))
    assert changed >= 6  # Identity without flip has probability 1/12
    np.testing.assert_array_equal(build(dict(cfg, augment="snn_augment_wide"), "test")[0]["frames"], te[0]["frames"])


def test_recipe_keys_are_validated(tmp_path):
    _write_cifar_aedat(str(tmp_path), 2, np.random.default_rng(6), n=8)
    base = {"name": "cifar10_dvs", "root": str(tmp_path), "cifar_train_fraction": 0.5}
    with pytest.raises(ValueError, match="config.data.frame_mode"):
        build(dict(base, frame_mode="events"), "train")
    with pytest.raises(ValueError, match="config.data.augment"):
        build(dict(base, augment="randaugment"), "train")
    with pytest.raises(ValueError, match="config.data.n_test_windows=1"):
        build(dict(base, frame_mode="number", train_random_window=False), "test")
    with pytest.raises(ValueError, match="config.data.train_random_window=False"):
        build(dict(base, frame_mode="number", n_test_windows=1), "train")
    with pytest.raises(ValueError, match="config.data.cifar_split_order"):
        build(dict(base, cifar_split_order="random"), "train")
    with pytest.raises(ValueError, match="digits_dvs"):
        build({"name": "digits_dvs", "frame_mode": "number"}, "train")
    # time-windowed frames can be augmented too (same op on every bin)
    ds = build(dict(base, augment="snn_augment_wide", T=2, dt_ms=20), "train")
    assert ds.get(0, epoch=3)["frames"].shape == (2, 128, 128, 2)


def test_spikformer_cifar10dvs_config_uses_the_recipe(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "spikformer_cifar10dvs_cfg", os.path.join(os.path.dirname(__file__), "..", "configs",
                                                  "spikformer_cifar10dvs_2_256.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.get_config()
    d = config.data
    assert (d.frame_mode, d.augment, d.cifar_split_order, d.T, d.n_test_windows, d.ds) == (
        "number", "snn_augment_wide", "spikingjelly", 16, 1, 1)
    assert not d.train_random_window
    from masnn_jax.data.events import check_model_data

    check_model_data(config)
    files = _write_cifar_aedat(str(tmp_path), 11, np.random.default_rng(7), n=40)  # ceil(9.9) = 10 train, 1 test
    d.root = str(tmp_path)
    d.verify = False
    te = build(d, "test")
    item = te[0]["frames"]
    assert item.shape == (1, 16, 128, 128, 2) and item.sum() == 40
    # the whole SpikingJelly path: its AEDAT reader (x = 127 - y, y = 127 - x, p = 1 - p) then its integration
    sj_ev = _sj_load_origin_data(te._files[0])
    st = files[te._files[0]]
    assert sj_ev["x"].tolist() == (127 - st["y"]).tolist() and sj_ev["p"].tolist() == (~st["p"]).tolist()
    np.testing.assert_array_equal(item[0], _sj_frames(sj_ev, 16, 128, 128).transpose(0, 2, 3, 1))
    with pytest.raises(ValueError, match="config.data.cifar_orientation"):
        mat_root = tmp_path / "mat"
        for cls in CIFAR10_CLASSES:
            (mat_root / cls).mkdir(parents=True)
            (mat_root / cls / "0.mat").write_bytes(b"x")
        build(dict(d.to_dict(), root=str(mat_root)), "train")
