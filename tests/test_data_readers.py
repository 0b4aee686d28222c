"""Tests of the real-dataset readers on small files written here in each on-disk format."""

import os
import struct

import numpy as np
import pytest

from masnn_jax.data.events import (
    CIFAR10_CLASSES,
    DataFormatError,
    DatasetNotFoundError,
    build,
    events_to_frames,
    frames_for_windows,
    read_aedat2_dvs128,
    read_aedat31,
    read_cifar10dvs_mat,
    read_gait_txt,
    read_gesture_labels,
    read_tonic_gesture_npy,
    spread_window_starts,
    train_window_start,
)

# --------------------------------------------------------------------------------------------
# writers (formats as documented in the readers; written independently here)


def _write_aedat31(path, packets, header=b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"):
    """packets: list of (event_type, overflow, payload) where payload is either a list of
    (x, y, p, ts) polarity events (type 1) or raw bytes (other types, event size 8)."""
    with open(path, "wb") as f:
        f.write(header)
        for etype, overflow, payload in packets:
            if etype == 1:
                body = b"".join(
                    struct.pack("<II", (x << 17) | (y << 2) | (p << 1) | 1, ts) for x, y, p, ts in payload
                )
                n = len(payload)
            else:
                body = payload
                n = len(payload) // 8
            f.write(struct.pack("<HHIIIIII", etype, 1, 8, 4, overflow, n, n, n))
            f.write(body)


def _write_labels(path, rows):
    with open(path, "w") as f:
        f.write("class,startTime_usec,endTime_usec\n")
        for r in rows:
            f.write(",".join(str(v) for v in r) + "\n")


# --------------------------------------------------------------------------------------------
# AEDAT 3.1 + IBM Gesture layout


def test_read_aedat31_packets_overflow_and_skipped_types(tmp_path):
    p = str(tmp_path / "user01_led.aedat")
    _write_aedat31(p, [
        (1, 0, [(0, 0, 1, 10), (127, 5, 0, 20), (3, 127, 1, 30)]),
        (2, 0, b"\xff" * 16),  # a special-event packet: skipped
        (1, 1, [(4, 7, 0, 5)]),  # overflow 1: t = 5 | 1 << 31
    ])
    ev = read_aedat31(p)
    assert ev["x"].tolist() == [0, 127, 3, 4]
    assert ev["y"].tolist() == [0, 5, 127, 7]  # not flipped
    assert ev["p"].tolist() == [True, False, True, False]
    assert ev["t"].tolist() == [10, 20, 30, 5 + (1 << 31)]


def test_read_aedat31_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "missing.aedat")
    with pytest.raises(FileNotFoundError, match="missing.aedat"):
        read_aedat31(missing)
    bad_header = tmp_path / "bad.aedat"
    bad_header.write_bytes(b"#!AER-DAT2.0\r\n" + b"\0" * 16)
    with pytest.raises(DataFormatError, match="bad.aedat"):
        read_aedat31(str(bad_header))
    trunc = str(tmp_path / "trunc.aedat")
    _write_aedat31(trunc, [(1, 0, [(1, 1, 1, 1), (2, 2, 0, 2)])])
    with open(trunc, "rb+") as f:
        f.truncate(os.path.getsize(trunc) - 3)
    with pytest.raises(DataFormatError, match=r"trunc\.aedat.*truncated"):
        read_aedat31(trunc)
    empty = str(tmp_path / "empty.aedat")
    _write_aedat31(empty, [])
    with pytest.raises(DataFormatError, match=r"empty\.aedat.*no polarity"):
        read_aedat31(empty)


def _make_ibm(root):
    """Three recordings: two train (2 + 3 labels), one test (2 labels); events every 10 us."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    specs = {
        "user01_fluorescent": [(1, 1000, 3000), (11, 3000, 6000)],
        "user02_led": [(2, 500, 2500), (3, 2500, 5000), (3, 6000, 9000)],
        "user24_lab": [(10, 100, 4000), (5, 4000, 8000)],
    }
    for name, rows in specs.items():
        ts = np.arange(0, 10_000, 10)
        events = [(int(rng.integers(0, 128)), int(rng.integers(0, 128)), int(rng.integers(0, 2)), int(t))
                  for t in ts]
        # two packets to exercise packet boundaries
        _write_aedat31(os.path.join(root, name + ".aedat"), [(1, 0, events[:400]), (1, 0, events[400:])])
        _write_labels(os.path.join(root, name + "_labels.csv"), rows)
    with open(os.path.join(root, "trials_to_train.txt"), "w") as f:
        f.write("user01_fluorescent.aedat\nuser02_led.aedat\n\n")
    with open(os.path.join(root, "trials_to_test.txt"), "w") as f:
        f.write("user24_lab.aedat\n")
    return specs


def test_gesture_ibm_layout_one_sample_per_label_row(tmp_path):
    root = str(tmp_path / "DvsGesture")
    _make_ibm(root)
    cfg = {"name": "dvs_gesture", "root": str(tmp_path), "gesture_layout": "ibm", "T": 4, "dt_ms": 0.5,
           "ds": 4, "n_test_windows": 3, "seed": 1}
    tr, te = build(cfg, "train"), build(cfg, "test")
    assert (len(tr), len(te)) == (5, 2)
    assert tr.labels.tolist() == [0, 10, 1, 2, 2] and te.labels.tolist() == [9, 4]
    assert tr.num_classes == 11
    # sample = events with start <= t < end
    ev = tr.events(1)
    assert ev["t"].min() == 3000 and ev["t"].max() == 5990 and len(ev) == 300
    item = tr.get(1, epoch=0)
    assert item["frames"].shape == (4, 32, 32, 2) and item["label"] == 10
    assert item["frames"].sum() == 200  # 4 bins x 500 us, one event per 10 us
    # random windows: a function of (seed, epoch, index)
    np.testing.assert_array_equal(tr.get(1, epoch=3)["frames"], tr.get(1, epoch=3)["frames"])
    assert any(not np.array_equal(tr.get(1, epoch=0)["frames"], tr.get(1, epoch=e)["frames"])
               for e in range(1, 6))
    t_item = te[0]
    assert t_item["frames"].shape == (3, 4, 32, 32, 2)
    # auto layout finds the IBM files too
    assert build({**cfg, "gesture_layout": "auto"}, "train").layout == "ibm"


def test_gesture_ibm_layout_errors(tmp_path):
    root = str(tmp_path / "DvsGesture")
    _make_ibm(root)
    cfg = {"name": "dvs_gesture", "root": root, "gesture_layout": "ibm"}
    os.remove(os.path.join(root, "user02_led.aedat"))
    with pytest.raises(FileNotFoundError, match="user02_led.aedat"):
        build(cfg, "train")
    open(os.path.join(root, "user24_lab_labels.csv"), "w").close()
    with pytest.raises(DataFormatError, match="user24_lab_labels.csv"):
        build(cfg, "test")
    with pytest.raises(DataFormatError, match="1-11"):
        _write_labels(str(tmp_path / "x_labels.csv"), [(12, 0, 10)])
        read_gesture_labels(str(tmp_path / "x_labels.csv"))
    empty_root = tmp_path / "empty"
    empty_root.mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"trials_to_train\.txt.*empty"):
        build({**cfg, "root": str(empty_root)}, "train")


# --------------------------------------------------------------------------------------------
# tonic Gesture layout


def _make_tonic_gesture(root):
    rng = np.random.default_rng(1)
    files = {
        ("ibmGestureTrain", "user01_fluorescent"): [0, 3, 10],
        ("ibmGestureTrain", "user02_led"): [1],
        ("ibmGestureTest", "user24_lab"): [2, 4],
    }
    for (split, user), labels in files.items():
        d = os.path.join(root, "DVSGesture", split, user)
        os.makedirs(d, exist_ok=True)
        for lab in labels:
            n = 200
            a = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                          np.sort(rng.integers(0, 2000, n))], axis=1).astype(np.int64)  # t in ms
            np.save(os.path.join(d, f"{lab}.npy"), a)
    return files


def test_gesture_tonic_layout(tmp_path):
    _make_tonic_gesture(str(tmp_path))
    cfg = {"name": "dvs_gesture", "root": str(tmp_path), "T": 10, "dt_ms": 100, "ds": 4,
           "n_test_windows": 2}
    tr, te = build(cfg, "train"), build(cfg, "test")
    assert tr.layout == "tonic"
    assert (len(tr), len(te)) == (4, 2)
    assert tr.labels.tolist() == [0, 3, 10, 1]  # sorted by folder, then numeric label
    raw = np.load(os.path.join(str(tmp_path), "DVSGesture", "ibmGestureTrain", "user01_fluorescent", "3.npy"))
    ev = read_tonic_gesture_npy(os.path.join(str(tmp_path), "DVSGesture", "ibmGestureTrain",
                                             "user01_fluorescent", "3.npy"))
    assert ev["t"].tolist() == (raw[:, 3] * 1000).tolist()  # ms -> us
    item = tr.get(1, epoch=2)
    assert item["frames"].shape == (10, 32, 32, 2) and item["label"] == 3
    assert te[1]["frames"].shape == (2, 10, 32, 32, 2)
    # train: the window drawn by default_rng([seed, epoch, index]); test: the spread windows
    ev = tr.events(2)
    t0, t1 = int(ev["t"][0]), int(ev["t"][-1])
    start = train_window_start(t0, t1, T=10, dt_us=100_000, rng=np.random.default_rng([0, 4, 2]))
    assert start > t0  # recordings of ~2 s, windows of 1 s: a random start
    # default window_rule='official': the bins start at the first event inside the window
    win = ev[(ev["t"] >= start) & (ev["t"] < start + 1_000_000)]
    np.testing.assert_array_equal(
        tr.get(2, epoch=4)["frames"],
        events_to_frames(win, (128, 128), T=10, dt_us=100_000, ds=4, t_start_us=int(win["t"][0])))
    # window_rule='masnn': bins from the window start
    np.testing.assert_array_equal(
        build({**cfg, "window_rule": "masnn"}, "train").get(2, epoch=4)["frames"],
        events_to_frames(ev, (128, 128), T=10, dt_us=100_000, ds=4, t_start_us=start))
    ev = te.events(1)
    starts = spread_window_starts(int(ev["t"][0]), int(ev["t"][-1]), T=10, dt_us=100_000, n=2)
    np.testing.assert_array_equal(
        build({**cfg, "window_rule": "masnn"}, "test")[1]["frames"],
        frames_for_windows(ev, (128, 128), starts, T=10, dt_us=100_000, ds=4))
    # the LRU cache keeps the parsed recordings (cache_mb, default on); cache_events = unbounded
    assert tr.events(0) is tr.events(0)
    cached = build({**cfg, "cache_events": True}, "train")
    assert cached.events(0) is cached.events(0)
    off = build({**cfg, "cache_mb": 0}, "train")
    assert off.events(0) is not off.events(0)


def test_gesture_tonic_layout_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"ibmGestureTrain.*tonic layout"):
        build({"name": "dvs_gesture", "root": str(tmp_path), "gesture_layout": "tonic"}, "train")
    d = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led"
    d.mkdir(parents=True)
    (d / "0.npy").write_bytes(b"not a numpy file")
    ds = build({"name": "dvs_gesture", "root": str(tmp_path)}, "train")
    with pytest.raises(DataFormatError, match=r"0\.npy"):
        ds[0]
    np.save(d / "0.npy", np.zeros((5, 3), np.int64))
    with pytest.raises(DataFormatError, match=r"0\.npy.*\(N, 4\)"):
        ds[0]


# --------------------------------------------------------------------------------------------
# DVS128 Gait


def _write_gait(path, events):
    with open(path, "w") as f:
        for t, x, y, p in events:
            f.write(f"{t} {x} {y} {p}\n")


def _make_gait(root):
    rng = np.random.default_rng(2)
    for split, subjects in (("train", [0, 1, 20]), ("test", [0, 20])):
        for s in subjects:
            d = os.path.join(root, split, str(s))
            os.makedirs(d, exist_ok=True)
            for k in range(2):
                n = 300
                ev = zip(np.sort(rng.integers(0, 5_000_000, n)), rng.integers(0, 128, n),
                         rng.integers(0, 128, n), rng.integers(0, 2, n))
                _write_gait(os.path.join(d, f"rec{k}.txt"), ev)


def test_gait_layout_and_frames(tmp_path):
    root = str(tmp_path / "DVS128-Gait-Night")
    _make_gait(root)
    cfg = {"name": "dvs_gait", "root": str(tmp_path), "gait_lighting": "night"}
    tr, te = build(cfg, "train"), build(cfg, "test")
    assert (len(tr), len(te)) == (6, 4)
    assert tr.num_classes == 21
    assert tr.labels.tolist() == [0, 0, 1, 1, 20, 20]
    assert tr.item_shape == (8, 128, 128, 2) and te.item_shape == (1, 8, 128, 128, 2)
    # official defaults: first window (no random start), t in us, dt = 500 ms
    ev = tr.events(2)
    want = events_to_frames(ev, (128, 128), T=8, dt_us=500_000, t_start_us=int(ev["t"][0]))
    np.testing.assert_array_equal(tr.get(2, epoch=0)["frames"], want)
    np.testing.assert_array_equal(tr.get(2, epoch=5)["frames"], want)
    # the lighting sub-folder is chosen by gait_lighting; root pointing at it directly works too
    with pytest.raises(DatasetNotFoundError, match="Gait"):
        build({**cfg, "gait_lighting": "day"}, "train")
    assert len(build({"name": "dvs_gait", "root": root}, "test")) == 4


def test_gait_reader_and_errors(tmp_path):
    p = tmp_path / "a.txt"
    _write_gait(p, [(5, 1, 2, 1), (7, 3, 4, 0)])
    ev = read_gait_txt(str(p))
    assert ev["t"].tolist() == [5, 7] and ev["x"].tolist() == [1, 3] and ev["y"].tolist() == [2, 4]
    assert ev["p"].tolist() == [True, False]
    p.write_text("5 1 2 1\n7 3 4\n")
    with pytest.raises(DataFormatError, match=r"a\.txt.*multiple of 4"):
        read_gait_txt(str(p))
    p.write_text("5 1 2 x\n")
    with pytest.raises(DataFormatError, match=r"a\.txt"):
        read_gait_txt(str(p))
    p.write_text("")
    with pytest.raises(DataFormatError, match=r"a\.txt.*empty"):
        read_gait_txt(str(p))
    (tmp_path / "g" / "train" / "subjectA").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="subjectA"):
        build({"name": "dvs_gait", "root": str(tmp_path / "g")}, "train")
    (tmp_path / "h" / "train" / "3").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"no \.txt recordings under .*h.*train"):
        build({"name": "dvs_gait", "root": str(tmp_path / "h")}, "train")
    with pytest.raises(ValueError, match="gait_lighting"):
        build({"name": "dvs_gait", "root": str(tmp_path / "h"), "gait_lighting": "dusk"}, "train")


# --------------------------------------------------------------------------------------------
# CIFAR10-DVS


def _make_cifar_mat(root, per_class=3):
    from scipy.io import savemat

    rng = np.random.default_rng(3)
    for cls in CIFAR10_CLASSES:
        d = os.path.join(root, cls)
        os.makedirs(d, exist_ok=True)
        for k in range(per_class):
            n = 100
            out = np.zeros((n, 6))
            out[:, 0] = np.sort(rng.integers(0, 1_000_000, n))
            out[:, 1] = 99  # ignored columns
            out[:, 2] = -7
            out[:, 3] = rng.integers(0, 128, n)
            out[:, 4] = rng.integers(0, 128, n)
            out[:, 5] = rng.integers(0, 2, n)
            savemat(os.path.join(d, f"{k}.mat"), {"out": out})


def test_cifar10dvs_mat_layout(tmp_path):
    root = str(tmp_path)
    _make_cifar_mat(root, per_class=10)
    cfg = {"name": "cifar10_dvs", "root": root, "T": 5, "dt_ms": 10}
    tr, te = build(cfg, "train"), build(cfg, "test")
    assert tr.layout == "mat"
    assert (len(tr), len(te)) == (90, 10)  # 9 / 1 per class (files 0-8 train, 9 test)
    assert tr.labels.tolist() == [c for c in range(10) for _ in range(9)]
    assert te.labels.tolist() == list(range(10))
    assert te._files[0].endswith(os.path.join("airplane", "9.mat"))
    ev = read_cifar10dvs_mat(os.path.join(root, "bird", "4.mat"))
    from scipy.io import loadmat

    out = loadmat(os.path.join(root, "bird", "4.mat"))["out"]
    assert ev["t"].tolist() == out[:, 0].astype(int).tolist()
    assert ev["x"].tolist() == out[:, 3].astype(int).tolist()
    assert ev["y"].tolist() == out[:, 4].astype(int).tolist()
    assert ev["p"].tolist() == (out[:, 5] > 0).tolist()
    assert tr.get(0, epoch=1)["frames"].shape == (5, 128, 128, 2)
    assert te[0]["frames"].shape == (10, 5, 128, 128, 2)


def test_cifar10dvs_aedat2_layout(tmp_path):
    for k, cls in enumerate(CIFAR10_CLASSES):
        d = tmp_path / cls
        d.mkdir()
        for j in range(2):
            x, y, p = np.array([1, 127, 5]), np.array([2, 0, 127]), np.array([1, 0, 1])
            addr = (y << 8) | (x << 1) | p
            ts = np.array([10, 20, 30]) + 100 * j
            body = np.stack([addr, ts], axis=1).astype(">u4").tobytes()
            (d / f"cifar10_{cls}_{j}.aedat").write_bytes(b"#!AER-DAT2.0\r\n# comment\r\n" + body)
    ev = read_aedat2_dvs128(str(tmp_path / "cat" / "cifar10_cat_1.aedat"))
    assert ev["x"].tolist() == [1, 127, 5] and ev["y"].tolist() == [2, 0, 127]
    assert ev["p"].tolist() == [True, False, True] and ev["t"].tolist() == [110, 120, 130]
    ds = build({"name": "cifar10_dvs", "root": str(tmp_path), "cifar_train_fraction": 0.5}, "train")
    assert ds.layout == "aedat" and len(ds) == 10


def test_cifar10dvs_errors(tmp_path):
    (tmp_path / "airplane").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"automobile.*missing"):
        build({"name": "cifar10_dvs", "root": str(tmp_path)}, "train")
    _make_cifar_mat(str(tmp_path), per_class=2)
    bad = tmp_path / "dog" / "1.mat"
    bad.write_bytes(b"garbage")
    ds = build({"name": "cifar10_dvs", "root": str(tmp_path), "cifar_train_fraction": 0.5}, "train")
    assert len(ds) == 10
    with pytest.raises(DataFormatError, match=r"dog.*1\.mat"):
        read_cifar10dvs_mat(str(bad))
    from scipy.io import savemat

    savemat(str(tmp_path / "cat" / "0.mat"), {"events": np.zeros((3, 4))})
    with pytest.raises(DataFormatError, match=r"0\.mat.*'out'"):
        read_cifar10dvs_mat(str(tmp_path / "cat" / "0.mat"))
    for f in (tmp_path / "ship").iterdir():
        f.unlink()
    with pytest.raises(DatasetNotFoundError, match=r"ship"):
        build({"name": "cifar10_dvs", "root": str(tmp_path)}, "train")


# --------------------------------------------------------------------------------------------
# error messages: both Gesture layouts, bad Gait lines, up-front file checks


def test_gesture_auto_layout_on_an_empty_root_describes_both_layouts(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        build({"name": "dvs_gesture", "root": str(tmp_path), "gesture_layout": "auto"}, "train")
    msg = str(err.value)
    assert str(tmp_path) in msg and "gesture_layout='auto'" in msg
    for part in ("IBM layout", "userXX_<lighting>.aedat", "userXX_<lighting>_labels.csv", "trials_to_train.txt",
                 "trials_to_test.txt", "tonic layout", "ibmGestureTrain", "{label}.npy"):
        assert part in msg, part
    with pytest.raises(ValueError, match=r"config\.data\.gesture_layout must be one of \('auto', 'ibm', 'tonic'\), "
                                         r"got 'npy'"):
        build({"name": "dvs_gesture", "root": str(tmp_path), "gesture_layout": "npy"}, "train")


def test_gait_non_numeric_line_is_named_with_its_number_and_text(tmp_path):
    p = tmp_path / "rec.txt"
    p.write_text("5 1 2 1\ngarbage line here\n9 3 4 0\n")
    with pytest.raises(DataFormatError) as err:
        read_gait_txt(str(p))
    msg = str(err.value)
    assert str(p) in msg and "line 2 is not four numbers 't x y p'" in msg and "'garbage line here'" in msg
    p.write_text("5 1 2 1\n\n7 3 4 1.5\n")
    with pytest.raises(DataFormatError, match=r"rec\.txt: line 3 is not four numbers .*'7 3 4 1\.5'.*non-integer"):
        read_gait_txt(str(p))


def test_empty_recordings_are_found_when_the_dataset_is_built(tmp_path):
    # Gait: an empty .txt among good ones
    root = tmp_path / "gait"
    _make_gait(str(root))
    empty = root / "train" / "1" / "rec1.txt"
    empty.write_text("")
    with pytest.raises(DataFormatError) as err:
        build({"name": "dvs_gait", "root": str(root)}, "train")
    assert str(empty) in str(err.value) and "1 of 6 recording file(s) are empty (0 bytes)" in str(err.value)
    assert len(build({"name": "dvs_gait", "root": str(root)}, "test")) == 4  # only the split's files are checked
    # a broken link is reported as missing
    empty.unlink()
    os.symlink(str(root / "nowhere.txt"), str(empty))
    with pytest.raises(FileNotFoundError, match=r"recording .*rec1\.txt cannot be read"):
        build({"name": "dvs_gait", "root": str(root)}, "train")
    # tonic Gesture
    _make_tonic_gesture(str(tmp_path / "tg"))
    npy = tmp_path / "tg" / "DVSGesture" / "ibmGestureTest" / "user24_lab" / "4.npy"
    npy.write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"tonic layout.*empty \(0 bytes\): .*4\.npy"):
        build({"name": "dvs_gesture", "root": str(tmp_path / "tg")}, "test")
    # IBM Gesture
    ibm = tmp_path / "DvsGesture"
    _make_ibm(str(ibm))
    (ibm / "user24_lab.aedat").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"IBM layout.*empty \(0 bytes\): .*user24_lab\.aedat"):
        build({"name": "dvs_gesture", "root": str(ibm)}, "test")
    # CIFAR10-DVS
    cifar = tmp_path / "cifar"
    _make_cifar_mat(str(cifar), per_class=2)
    for k in range(2):
        (cifar / "frog" / f"{k}.mat").write_bytes(b"")
    with pytest.raises(DataFormatError) as err:
        build({"name": "cifar10_dvs", "root": str(cifar), "cifar_train_fraction": 0.5}, "train")
    assert "CIFAR10-DVS (mat layout): 1 of 10 recording file(s) are empty" in str(err.value)
    assert str(cifar / "frog" / "0.mat") in str(err.value)
