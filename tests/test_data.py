"""Tests of masnn_jax.data: emulator, event frames, digits dataset, config entry point, loader."""

import numpy as np
import pytest

from masnn_jax.data import events as D
from masnn_jax.data.events import (
    EVENT_DTYPE,
    build,
    default_data_config,
    emulate_dvs,
    emulate_dvs_batch,
    events_to_frames,
    make_events,
    make_loader,
    num_batches,
    spread_window_starts,
    train_window_start,
    vote_correct,
)

# --------------------------------------------------------------------------------------------
# emulator: one bright pixel moving one pixel to the right.
#
# Image 3x3, centre 1, rest 0, scale 1, sensor 5x5: the bright pixel sits on sensor (y=2, x=2).
# Path (dy, dx): (0, 0) -> (0, 1) over D = 100 ms, linear: after a fraction f of the time,
# pixel (2, 2) has intensity 1 - f and pixel (2, 3) intensity f; every other pixel stays 0.
# With eps = 1 / (e^2 - 1) the log-intensity change of each of the two pixels is
# log((1 + eps) / eps) = 2 exactly, so theta = 0.45 gives floor(2 / 0.45) = 4 events each:
# ON at (2, 3), OFF at (2, 2). The j-th ON event happens when log(f + eps) = log(eps) + j*theta,
# i.e. f = eps (e^{j theta} - 1); the j-th OFF when 1 - f + eps = (1 + eps) e^{-j theta}.

EPS = 1.0 / (np.e**2 - 1.0)
THETA = 0.45
DUR = 100_000


def _one_pixel(**kw):
    img = np.zeros((3, 3))
    img[1, 1] = 1.0
    args = dict(sensor_size=(5, 5), saccades=[(0.0, 0.0), (0.0, 1.0)], closed_path=False,
                duration_us=DUR, time_step_us=1000, contrast_threshold=THETA, log_eps=EPS)
    args.update(kw)
    return emulate_dvs(img, **args)


def _expected_on_times():
    return np.array([DUR * EPS * (np.exp(j * THETA) - 1) for j in range(1, 5)])


def _expected_off_times():
    return np.array([DUR * (1 + EPS) * (1 - np.exp(-j * THETA)) for j in range(1, 5)])


def test_emulator_single_pixel_by_hand():
    ev = _one_pixel()
    assert ev.dtype == EVENT_DTYPE
    assert np.all(np.diff(ev["t"]) >= 0)
    on = ev[ev["p"]]
    off = ev[~ev["p"]]
    assert len(on) == 4 and len(off) == 4
    assert set(zip(on["y"].tolist(), on["x"].tolist())) == {(2, 3)}
    assert set(zip(off["y"].tolist(), off["x"].tolist())) == {(2, 2)}
    # timestamps interpolated inside the 1 ms steps: close to the analytic crossing times
    np.testing.assert_allclose(on["t"], _expected_on_times(), atol=50)
    np.testing.assert_allclose(off["t"], _expected_off_times(), atol=50)


def test_emulator_without_interpolation_uses_step_ends():
    ev = _one_pixel(interpolate_timestamps=False)
    assert len(ev) == 8
    assert np.all(ev["t"] % 1000 == 0)
    on = ev[ev["p"]]
    # the step that first sees the crossing: ceil(t / step) * step
    np.testing.assert_array_equal(on["t"], np.ceil(_expected_on_times() / 1000) * 1000)


def test_emulator_refractory_suppression():
    # a refractory period longer than the recording: one event per pixel
    ev = _one_pixel(refractory_us=10**9)
    assert len(ev) == 2
    assert ev["p"].tolist() == [True, False]
    assert abs(ev["t"][0] - _expected_on_times()[0]) <= 50
    assert abs(ev["t"][1] - _expected_off_times()[0]) <= 50
    # 30 ms: ON at ~8.9 ms, then the pixel waits, reports the change accumulated meanwhile one
    # threshold at a time when it recovers (38.9, 68.9, 98.9 ms); OFF at ~41.9 ms and 71.9 ms,
    # then still refractory when the recording ends (101.9 ms > 100 ms).
    ev = _one_pixel(refractory_us=30_000)
    on, off = ev[ev["p"]]["t"], ev[~ev["p"]]["t"]
    t_on1, t_off1 = _expected_on_times()[0], _expected_off_times()[0]
    np.testing.assert_allclose(on, t_on1 + np.array([0, 30_000, 60_000, 90_000]), atol=50)
    np.testing.assert_allclose(off, t_off1 + np.array([0, 30_000]), atol=50)
    assert np.all(np.diff(on) >= 30_000 - 1)


def test_emulator_static_image_is_silent_and_moves_are_balanced():
    img = np.random.default_rng(0).random((8, 8))
    assert len(emulate_dvs(img, sensor_size=(12, 12), saccades=[(0.0, 0.0)])) == 0
    # a closed path returns the image to its start: ON and OFF totals are close
    ev = emulate_dvs(img, sensor_size=(12, 12), duration_us=60_000)
    assert len(ev) > 0
    assert abs(int(ev["p"].sum()) - int((~ev["p"]).sum())) <= 0.1 * len(ev)
    assert ev["x"].max() < 12 and ev["y"].max() < 12 and ev["t"].max() <= 60_000


def test_emulator_deterministic_for_a_seed():
    imgs = np.random.default_rng(1).random((3, 8, 8))
    kw = dict(sensor_size=(16, 16), scale=1.5, duration_us=30_000, threshold_sigma=0.03,
              noise_rate_hz=20.0)
    a = emulate_dvs_batch(imgs, seed=7, **kw)
    b = emulate_dvs_batch(imgs, seed=7, **kw)
    c = emulate_dvs_batch(imgs, seed=8, **kw)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(len(x) != len(y) or not np.array_equal(x, y) for x, y in zip(a, c))
    # batch processing in other chunks changes at most a few threshold-crossing events (float rounding of NumPy's
    # vectorised loops depends on the array length on some CPUs; see emulate_dvs_batch's docstring)
    d = emulate_dvs_batch(imgs, seed=7, chunk_size=2, **kw)
    for x, y in zip(a, d):
        assert abs(len(x) - len(y)) <= max(2, len(x) // 200)
        assert np.array_equal(x, y) or len(np.intersect1d(x["t"], y["t"])) > 0.9 * len(np.unique(x["t"]))
    # the single-image call equals the first image of a batch
    np.testing.assert_array_equal(emulate_dvs(imgs[0], seed=7, **kw), a[0])


@pytest.mark.parametrize("kw, key", [
    (dict(contrast_threshold=0.0), "contrast_threshold"),
    (dict(refractory_us=-1), "refractory_us"),
    (dict(sensor_size=(5,)), "sensor_size"),
    (dict(time_step_us=0), "time_step_us"),
    (dict(saccades=[1.0, 2.0, 3.0]), "saccades"),
])
def test_emulator_rejects_bad_parameters(kw, key):
    with pytest.raises(ValueError, match=key):
        emulate_dvs(np.ones((4, 4)), **kw)
    with pytest.raises(ValueError, match="image"):
        emulate_dvs(np.ones((2, 4, 4)))


# --------------------------------------------------------------------------------------------
# events_to_frames

def _ev(rows):
    """rows of (x, y, p, t)."""
    a = np.asarray(rows)
    return make_events(a[:, 0], a[:, 1], a[:, 2], a[:, 3])


def test_events_to_frames_by_hand():
    # sensor H=4, W=6, ds=2 -> 2 x 3 frames; T=3 bins of 10 us from t=100
    ev = _ev([
        (0, 0, 1, 100),   # bin 0, (y0, x0), ON
        (1, 1, 1, 105),   # bin 0, (0, 0), ON  -> count 2
        (5, 3, 0, 109),   # bin 0, (1, 2), OFF
        (2, 0, 0, 110),   # bin 1, (0, 1), OFF (bin edges are [start, end))
        (4, 2, 1, 129),   # bin 2, (1, 2), ON
        (4, 2, 1, 130),   # after the last bin: ignored
        (4, 2, 1, 99),    # before the first bin: ignored
    ])
    fr = events_to_frames(ev, (4, 6), T=3, dt_us=10, ds=2, t_start_us=100)
    assert fr.shape == (3, 2, 3, 2) and fr.dtype == np.float32
    want = np.zeros((3, 2, 3, 2), np.float32)
    want[0, 0, 0, 1] = 2
    want[0, 1, 2, 0] = 1
    want[1, 0, 1, 0] = 1
    want[2, 1, 2, 1] = 1
    np.testing.assert_array_equal(fr, want)
    # default start = the earliest event (t = 99): bins [99, 109), [109, 119), [119, 129):
    # t = 99, 100, 105 in bin 0, t = 109, 110 in bin 1, t = 129 and 130 after the end
    fr2 = events_to_frames(ev, (4, 6), T=3, dt_us=10, ds=2)
    assert fr2.sum(axis=(1, 2, 3)).tolist() == [3, 2, 0]
    assert fr2[0, 1, 2, 1] == 1 and fr2[1, 1, 2, 0] == 1


def test_events_to_frames_short_recording_and_empty_bins():
    ev = _ev([(0, 0, 1, 0), (1, 0, 0, 25)])  # 26 us recording, bins of 10 us
    fr = events_to_frames(ev, (2, 2), T=6, dt_us=10, t_start_us=0)
    assert fr.shape == (6, 2, 2, 2)
    assert fr[0].sum() == 1 and fr[2].sum() == 1
    assert fr[1].sum() == 0  # empty bin inside the recording
    assert fr[3:].sum() == 0  # padding after the end of the recording
    empty = np.zeros(0, EVENT_DTYPE)
    np.testing.assert_array_equal(events_to_frames(empty, (2, 2), T=3, dt_us=5),
                                  np.zeros((3, 2, 2, 2), np.float32))


def test_events_to_frames_unsorted_and_polarity_encodings():
    rng = np.random.default_rng(0)
    n = 500
    x, y = rng.integers(0, 16, n), rng.integers(0, 8, n)
    t = np.sort(rng.integers(0, 1000, n))
    p01 = rng.integers(0, 2, n)
    ref = events_to_frames(make_events(x, y, p01, t), (8, 16), T=5, dt_us=200, ds=2, t_start_us=0)
    perm = rng.permutation(n)
    shuffled = make_events(x[perm], y[perm], p01[perm], t[perm])
    np.testing.assert_array_equal(events_to_frames(shuffled, (8, 16), T=5, dt_us=200, ds=2, t_start_us=0), ref)
    # structured arrays with other polarity encodings (built directly, not via make_events)
    for p in (p01.astype(bool), 2 * p01 - 1, (2 * p01 - 1).astype(np.int8)):
        ev = np.zeros(n, dtype=[("x", np.int64), ("y", np.int64), ("p", p.dtype), ("t", np.int64)])
        ev["x"], ev["y"], ev["p"], ev["t"] = x, y, p, t
        np.testing.assert_array_equal(events_to_frames(ev, (8, 16), T=5, dt_us=200, ds=2, t_start_us=0), ref)
    assert ref.sum() == n
    np.testing.assert_array_equal(ref[..., 1].sum(), p01.sum())


def test_events_to_frames_errors():
    ev = _ev([(0, 0, 1, 0), (7, 1, 0, 5)])
    with pytest.raises(ValueError, match=r"outside the sensor.*x=7"):
        events_to_frames(ev, (4, 6), T=2, dt_us=10, what="rec.npy")
    with pytest.raises(ValueError, match="rec.npy"):
        events_to_frames(ev, (4, 6), T=2, dt_us=10, what="rec.npy")
    bad = np.zeros(2, dtype=[("x", np.int16), ("y", np.int16), ("t", np.int64)])
    with pytest.raises(ValueError, match=r"missing field.*'p'"):
        events_to_frames(bad, (4, 6), T=2, dt_us=10)
    mixed = np.zeros(3, dtype=[("x", int), ("y", int), ("p", int), ("t", int)])
    mixed["p"] = [-1, 0, 1]
    with pytest.raises(ValueError, match="polarity"):
        events_to_frames(mixed, (4, 6), T=2, dt_us=10)
    with pytest.raises(ValueError, match="sensor_size"):
        events_to_frames(_ev([(0, 0, 1, 0)]), (128, 128, 2), T=2, dt_us=10)
    with pytest.raises(ValueError, match="dt_us"):
        events_to_frames(_ev([(0, 0, 1, 0)]), (4, 4), T=2, dt_us=0)
    with pytest.raises(TypeError):
        events_to_frames(np.zeros((3, 4)), (4, 4), T=2, dt_us=1)


def test_window_starts_follow_official_rule():
    # no overlap: L = 100, window 30, n = 3: gap floor((100 - 90) / 3) = 3 -> step 33
    np.testing.assert_array_equal(spread_window_starts(1000, 1100, T=3, dt_us=10, n=3), [1000, 1033, 1066])
    # overlap: L = 50: overlap floor((90 - 50) / 3) = 13 -> step 17; the last (34) moves to 50 - 30
    np.testing.assert_array_equal(spread_window_starts(0, 50, T=3, dt_us=10, n=3), [0, 17, 20])
    # recording shorter than one window: every window starts at the first event
    np.testing.assert_array_equal(spread_window_starts(5, 15, T=3, dt_us=10, n=2), [5, 5])
    assert train_window_start(5, 500, T=3, dt_us=10, rng=None) == 5
    assert train_window_start(5, 20, T=3, dt_us=10, rng=np.random.default_rng(0)) == 5
    starts = [train_window_start(5, 500, T=3, dt_us=10, rng=np.random.default_rng(i)) for i in range(50)]
    assert min(starts) >= 5 and max(starts) < 470 and len(set(starts)) > 10


def test_vote_correct_needs_a_strict_majority():
    pred = np.array([[1, 1, 2, 2], [1, 1, 1, 2], [0, 0, 0, 0]])
    np.testing.assert_array_equal(vote_correct(pred, np.array([1, 1, 0])), [False, True, True])
    with pytest.raises(ValueError, match="vote_correct"):
        vote_correct(pred, np.array([1, 1]))


# --------------------------------------------------------------------------------------------
# digits dataset and config


@pytest.fixture(scope="module")
def digits():
    cfg = default_data_config("digits_dvs")
    return build(cfg, "train"), build(cfg, "test")


def test_digits_split_sizes_labels_and_frames(digits):
    tr, te = digits
    assert (len(tr), len(te)) == (1437, 360)
    assert tr.num_classes == te.num_classes == 10
    assert tr.frame_shape == (8, 16, 16, 2) and tr.item_shape == (8, 16, 16, 2)
    assert te.item_shape == (1, 8, 16, 16, 2)
    assert set(tr.indices.tolist()).isdisjoint(te.indices.tolist())
    np.testing.assert_array_equal(np.bincount(te.labels, minlength=10) >= 35, True)  # stratified
    item = tr[0]
    assert item["frames"].shape == (8, 16, 16, 2) and item["frames"].dtype == np.float32
    assert item["label"].dtype == np.int32
    assert te[3]["frames"].shape == (1, 8, 16, 16, 2)
    for i in range(0, len(tr), 97):
        fr = tr[i]["frames"]
        assert fr.sum() > 100 and np.all(fr.sum(axis=(1, 2, 3)) > 0)  # every bin holds events
        ev = tr.events(i)
        assert 1000 < len(ev) < 10000
    # tonic's ToFrame and events_to_frames agree
    for i in (0, 11):
        np.testing.assert_array_equal(
            tr[i]["frames"],
            events_to_frames(tr.events(i), tr.sensor_size, T=tr.T, dt_us=tr.dt_us, ds=tr.ds, t_start_us=0),
        )


def test_digits_deterministic_and_seeded_split(digits):
    tr, _ = digits
    cfg = default_data_config("digits_dvs")
    again = build(cfg, "train")
    np.testing.assert_array_equal(again.indices, tr.indices)
    np.testing.assert_array_equal(again[5]["frames"], tr[5]["frames"])
    other = D.DigitsDVS("train", seed=1)
    assert not np.array_equal(other.indices, tr.indices)


def test_build_config_errors(tmp_path):
    cfg = default_data_config("digits_dvs")
    cfg.unknown_key = 3
    with pytest.raises(ValueError, match="unknown_key"):
        build(cfg, "train")
    with pytest.raises(ValueError, match="config.data.name"):
        build({"name": "mnist"}, "train")
    with pytest.raises(ValueError, match="split"):
        build({"name": "digits_dvs"}, "val")
    for name in ("dvs_gesture", "dvs_gait", "cifar10_dvs"):
        with pytest.raises(ValueError, match=r"config\.data\.root"):
            build(default_data_config(name), "train")
        missing = str(tmp_path / "nowhere")
        with pytest.raises(FileNotFoundError, match="nowhere"):
            build({"name": name, "root": missing}, "train")
    with pytest.raises(ValueError, match="config.data.T"):
        build({"name": "digits_dvs", "T": 0}, "train")
    with pytest.raises(ValueError, match="dt_ms"):
        build({"name": "digits_dvs", "dt_ms": -1}, "train")


def test_default_configs_hold_official_framing():
    g = default_data_config("dvs_gesture")
    assert (g.T, g.dt_ms, g.ds, g.n_test_windows, g.train_random_window) == (60, 25.0, 4, 10, True)
    a = default_data_config("dvs_gait")
    assert (a.T, a.dt_ms, a.ds, a.n_test_windows, a.train_random_window) == (8, 500.0, 1, 1, False)
    c = default_data_config("cifar10_dvs")
    assert (c.T, c.dt_ms, c.ds, c.n_test_windows) == (20, 10.0, 1, 10)
    g.root = "/some/where"  # the placeholder accepts a string
    with pytest.raises(ValueError, match="config.data.name"):
        default_data_config("nmnist")
    # issue 11 keys: official frames, bounded cache, skip bad label windows, verify when small
    assert (g.window_rule, g.cache_mb, g.bad_windows, g.signed_polarity, g.verify) == (
        "official", 1024.0, "skip", "off_on", "auto")
    g.verify = True  # True | False | 'auto'
    g.verify = False
    g.cache_mb = 256.5


# --------------------------------------------------------------------------------------------
# loader


class _Toy:
    """Tiny dataset whose item records (index, epoch)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def get(self, index, *, epoch=0):
        return {"frames": np.full((2, 3, 3, 2), index + 1000 * epoch, np.float32),
                "label": np.int32(index % 7)}


def _collect(loader):
    return [(b["frames"][:, 0, 0, 0, 0].astype(int).tolist(), b["label"].tolist()) for b in loader]


def test_loader_order_is_a_function_of_seed_and_epoch():
    ds = _Toy(23)
    a = _collect(make_loader(ds, batch_size=5, shuffle=True, seed=3, epoch=2))
    b = _collect(make_loader(ds, batch_size=5, shuffle=True, seed=3, epoch=2))
    assert a == b
    assert [len(x[0]) for x in a] == [5, 5, 5, 5, 3]
    ids = sorted(i - 2000 for batch, _ in a for i in batch)
    assert ids == list(range(23))  # each sample once, items built for epoch 2
    c = _collect(make_loader(ds, batch_size=5, shuffle=True, seed=3, epoch=3))
    assert [sorted(i - 3000 for i in x[0]) for x in c] != [sorted(i - 2000 for i in x[0]) for x in a]
    d = _collect(make_loader(ds, batch_size=5, shuffle=True, seed=4, epoch=2))
    assert d != a
    plain = _collect(make_loader(ds, batch_size=5, shuffle=False, epoch=0))
    assert [i for batch, _ in plain for i in batch] == list(range(23))


def test_loader_resume_and_num_batches():
    ds = _Toy(23)
    full = _collect(make_loader(ds, batch_size=4, shuffle=True, seed=0, epoch=1))
    for k in (0, 1, 3, 6):
        loader = make_loader(ds, batch_size=4, shuffle=True, seed=0, epoch=1, start_batch=k)
        assert len(loader) == 6 - k
        assert _collect(loader) == full[k:]
    assert num_batches(ds, 4, drop_remainder=False) == 6
    assert num_batches(ds, 4, drop_remainder=True) == 5
    dropped = _collect(make_loader(ds, batch_size=4, seed=0, epoch=1, drop_remainder=True))
    assert dropped == full[:5]
    with pytest.raises(ValueError, match="start_batch"):
        make_loader(ds, batch_size=4, start_batch=7)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ds, batch_size=0)
    # iterating twice gives the same pass
    loader = make_loader(ds, batch_size=4, seed=0, epoch=1)
    assert _collect(loader) == _collect(loader) == full


def test_loader_on_digits_batches(digits):
    tr, te = digits
    batches = list(make_loader(tr, batch_size=64, shuffle=True, seed=0, epoch=0, start_batch=20))
    assert len(batches) == num_batches(tr, 64, False) - 20 == 3
    b = batches[0]
    assert b["frames"].shape == (64, 8, 16, 16, 2) and b["frames"].dtype == np.float32
    assert b["label"].shape == (64,) and b["label"].dtype == np.int32
    tb = next(iter(make_loader(te, batch_size=32, shuffle=False)))
    assert tb["frames"].shape == (32, 1, 8, 16, 16, 2)
    np.testing.assert_array_equal(tb["label"], te.labels[:32])


def test_loader_with_workers_matches_in_process(digits):
    ds = _Toy(17)
    a = _collect(make_loader(ds, batch_size=4, seed=5, epoch=1))
    b = _collect(make_loader(ds, batch_size=4, seed=5, epoch=1, num_workers=2))
    assert a == b
    # the digits dataset travels to the workers with its frames
    tr, _ = digits
    x = next(iter(make_loader(tr, batch_size=8, seed=1, epoch=0, start_batch=3)))
    y = next(iter(make_loader(tr, batch_size=8, seed=1, epoch=0, start_batch=3, num_workers=2)))
    np.testing.assert_array_equal(x["frames"], y["frames"])
    np.testing.assert_array_equal(x["label"], y["label"])
