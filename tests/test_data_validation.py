"""Issue 11, data half ("Nothing silent"): every bad input is built here and every error names its file or key.

Also: the official MA-SNN window rules restated independently (bisect loops as in the official
``MA_SNN/*/*_data_process`` files) and compared bit for bit; the LRU event cache; verify / maybe_verify / the CLI;
check_model_data.
"""

import bisect
import logging
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from masnn_jax.data.events import (
    DataFormatError,
    DatasetNotFoundError,
    EventCache,
    build,
    check_model_data,
    make_events,
    maybe_verify,
    read_aedat31,
    read_cifar10dvs_mat,
    read_gait_txt,
    read_gesture_labels,
    read_tonic_gesture_npy,
    train_window_start,
    verify,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --------------------------------------------------------------------------------------------
# writers (independent of the readers)


def _write_aedat31(path, packets):
    """packets: list of (overflow, [(x, y, p, ts), ...]) polarity packets."""
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT3.1\r\n#!END-HEADER\r\n")
        for overflow, evs in packets:
            n = len(evs)
            f.write(struct.pack("<HHIIIIII", 1, 1, 8, 4, overflow, n, n, n))
            for x, y, p, ts in evs:
                f.write(struct.pack("<II", (x << 17) | (y << 2) | (p << 1) | 1, ts))


def _ibm(root, recordings, train=("rec_a",), test=("rec_b",)):
    """recordings: {name: (timestamps, label rows)}; events at (1, 2, ON)."""
    os.makedirs(root, exist_ok=True)
    for name, (ts, rows) in recordings.items():
        _write_aedat31(os.path.join(root, name + ".aedat"), [(0, [(1, 2, 1, int(t)) for t in ts])])
        with open(os.path.join(root, name + "_labels.csv"), "w") as f:
            f.write("class,startTime_usec,endTime_usec\n" + "".join(f"{c},{s},{e}\n" for c, s, e in rows))
    for split, names in (("train", train), ("test", test)):
        with open(os.path.join(root, f"trials_to_{split}.txt"), "w") as f:
            f.write("".join(n + ".aedat\n" for n in names))


def _write_gait(path, rows):
    with open(path, "w") as f:
        f.write("".join(" ".join(str(v) for v in r) + "\n" for r in rows))


def _gait_root(root, files):
    """files: {(split, subject, name): rows 't x y p'}."""
    for (split, subject, name), rows in files.items():
        d = os.path.join(root, split, str(subject))
        os.makedirs(d, exist_ok=True)
        _write_gait(os.path.join(d, name), rows)
    return root


def _ok_rows(n=50, t0=0, step=1000, seed=0):
    rng = np.random.default_rng(seed)
    return [(t0 + i * step, int(rng.integers(0, 128)), int(rng.integers(0, 128)), int(rng.integers(0, 2)))
            for i in range(n)]


# --------------------------------------------------------------------------------------------
# label windows (DVS Gesture IBM layout)


def test_label_window_after_the_recording_and_empty_window_skip_or_error(tmp_path, caplog):
    root = str(tmp_path / "DvsGesture")
    ts = np.arange(0, 3_000_000, 1000)  # a 3 s recording
    gap = ts[(ts < 1_000_000) | (ts >= 1_500_000)]  # no events in [1.0, 1.5) s
    _ibm(root, {"rec_a": (gap, [(1, 0, 1_000_000), (2, 1_000_000, 1_500_000), (3, 5_000_000, 6_000_000),
                                (4, 1_500_000, 2_999_001)]),
                "rec_b": (ts, [(5, 0, 2_000_000)])})
    cfg = {"name": "dvs_gesture", "root": root, "T": 4, "dt_ms": 10}
    with caplog.at_level(logging.WARNING, logger="masnn_jax.data"):
        tr = build(cfg, "train")
    assert len(tr) == 2 and tr.labels.tolist() == [0, 3]  # rows 2 (empty) and 3 (5-6 s) dropped
    warnings = [r.getMessage() for r in caplog.records if "rec_a_labels.csv" in r.getMessage()]
    assert len(warnings) == 1 and "skipping 2 of 4" in warnings[0]
    assert "row 2" in warnings[0] and "holds no events" in warnings[0]
    assert "row 3" in warnings[0] and "not inside the recording" in warnings[0]
    with pytest.raises(DataFormatError) as err:
        build({**cfg, "bad_windows": "error"}, "train")
    msg = str(err.value)
    assert "rec_a_labels.csv row 2" in msg and "rec_a_labels.csv row 3" in msg and "rec_a.aedat" in msg
    assert "bad_windows" in msg
    with pytest.raises(ValueError, match="config.data.bad_windows"):
        build({**cfg, "bad_windows": "ignore"}, "train")
    report = verify(cfg)  # the skipped windows are listed, not counted as problems
    assert report["ok"] and len(report["skipped"]) == 2 and "2 bad label window(s) skipped" in str(report)


def test_label_window_straddled_by_one_packet_is_checked_exactly(tmp_path):
    # one packet with events at 0 and 10 ms: a label window [2, 8) ms lies inside the packet's range but is empty
    root = str(tmp_path / "DvsGesture")
    _ibm(root, {"rec_a": ([0, 10_000], [(1, 2_000, 8_000), (2, 0, 10_001)]), "rec_b": ([0, 5], [(1, 0, 6)])})
    with pytest.raises(DataFormatError, match=r"rec_a_labels\.csv row 1 .*holds no events"):
        build({"name": "dvs_gesture", "root": root, "bad_windows": "error"}, "train")


def test_label_rows_non_integer_or_empty(tmp_path):
    p = tmp_path / "x_labels.csv"
    p.write_text("class,startTime_usec,endTime_usec\n1,nan,5\n")
    with pytest.raises(DataFormatError, match=r"x_labels\.csv: label row 1 must be three integers"):
        read_gesture_labels(str(p))
    p.write_text("class,startTime_usec,endTime_usec\n1,0,5\n2,7,7\n")
    with pytest.raises(DataFormatError, match=r"x_labels\.csv: label row 2 has endTime <= startTime"):
        read_gesture_labels(str(p))


# --------------------------------------------------------------------------------------------
# readers: every rule, every format


def test_aedat31_coordinate_outside_sensor_and_decreasing_time_name_the_byte(tmp_path):
    p = str(tmp_path / "r.aedat")
    _write_aedat31(p, [(0, [(1, 1, 0, 10), (200, 5, 1, 20)])])
    with pytest.raises(DataFormatError) as err:
        read_aedat31(p)
    msg = str(err.value)
    header = len(b"#!AER-DAT3.1\r\n#!END-HEADER\r\n")
    assert p in msg and "inside the 128x128 sensor" in msg and f"byte {header + 28 + 8}" in msg and "x=200" in msg
    _write_aedat31(p, [(0, [(1, 1, 0, 10), (2, 2, 1, 30)]), (0, [(3, 3, 0, 20)])])
    with pytest.raises(DataFormatError, match=r"r\.aedat: timestamps must not decrease.*byte .*t=20 us after t=30"):
        read_aedat31(p)
    assert read_aedat31(p, require_sorted=False).shape == (3,)


def test_tonic_npy_rules_name_file_and_row(tmp_path):
    p = str(tmp_path / "3.npy")
    good = np.array([[1, 2, 0, 5], [3, 4, 1, 6], [5, 6, 1, 7]], np.int64)
    cases = [
        (lambda a: a.__setitem__((1, 0), 128), r"3\.npy: coordinates must lie inside .*row 1 \(x=128"),
        (lambda a: a.__setitem__((2, 1), -1), r"3\.npy: field 'y' must lie in \[0, 32767\].*row 2"),
        (lambda a: a.__setitem__((2, 2), 2), r"3\.npy: field 'p'.*two values.*row 2"),
    ]
    for edit, pattern in cases:
        a = good.copy()
        edit(a)
        np.save(p, a)
        with pytest.raises(DataFormatError, match=pattern):
            read_tonic_gesture_npy(p)
    f = good.astype(np.float64)
    f[1, 3] = np.nan
    np.save(p, f)
    with pytest.raises(DataFormatError, match=r"3\.npy: field 't' must be finite.*row 1"):
        read_tonic_gesture_npy(p)
    f[1, 3] = 5.5
    np.save(p, f)
    with pytest.raises(DataFormatError, match=r"3\.npy: field 't' must be an integer.*row 1"):
        read_tonic_gesture_npy(p)
    f[1, 3], f[0, 0] = 6, np.inf
    np.save(p, f)
    with pytest.raises(DataFormatError, match=r"3\.npy: field 'x' must be finite.*row 0"):
        read_tonic_gesture_npy(p)
    big = good.copy()
    big[0, 3] = 2 ** 62
    np.save(p, big)
    with pytest.raises(DataFormatError, match=r"3\.npy: field 't' \(ms\) too large"):
        read_tonic_gesture_npy(p)


def test_gait_rules_name_file_and_line(tmp_path):
    p = str(tmp_path / "walk.txt")
    _write_gait(p, [(0, 1, 2, 1), (5, 3, 4, 0), (9, 130, 4, 1)])
    with pytest.raises(DataFormatError) as err:
        read_gait_txt(p)
    msg = str(err.value)
    assert p in msg and "line 3" in msg and "'9 130 4 1'" in msg and "inside the 128x128 sensor" in msg
    assert "sample" not in msg
    with open(p, "w") as f:
        f.write("0 1 2 1\n\n5 3 4 2\n")
    with pytest.raises(DataFormatError, match=r"walk\.txt: field 'p'.*two values.*line 3 '5 3 4 2'"):
        read_gait_txt(p)
    with open(p, "w") as f:
        f.write("0 1 2 1\n5 3 4 nan\n")
    with pytest.raises(DataFormatError, match=r"walk\.txt: line 2 is not four numbers"):
        read_gait_txt(p)
    with open(p, "w") as f:
        f.write("0 1 2 1\n99999999999999999999 3 4 1\n")
    with pytest.raises(DataFormatError, match=r"walk\.txt: line 2 .*int64"):
        read_gait_txt(p)
    # through the dataset: the error names the file and line, not 'dvs_gait train sample 1'
    root = _gait_root(str(tmp_path / "g"), {("train", 0, "a.txt"): _ok_rows(),
                                            ("train", 0, "b.txt"): _ok_rows()[:5] + [(10_000_000, 200, 1, 1)],
                                            ("test", 0, "c.txt"): _ok_rows()})
    ds = build({"name": "dvs_gait", "root": root}, "train")
    with pytest.raises(DataFormatError, match=r"b\.txt: coordinates .* line 6 '10000000 200 1 1'"):
        ds[1]


def test_cifar_mat_rules_name_file_and_row(tmp_path):
    from scipy.io import savemat

    p = str(tmp_path / "7.mat")
    out = np.zeros((4, 6))
    out[:, 0] = [0, 10, 20, 30]
    out[:, 3:5] = 5
    out[:, 5] = [0, 1, 0, 1]
    for r, c, v, pattern in [(2, 0, np.inf, r"field 't' must be finite.*row 2 of 'out'"),
                             (1, 3, 128, r"coordinates must lie inside.*row 1 of 'out'"),
                             (3, 5, 0.5, r"field 'p': polarity values must be integers.*row 3 of 'out'"),
                             (0, 4, np.nan, r"field 'y' must be finite.*row 0 of 'out'")]:
        bad = out.copy()
        bad[r, c] = v
        savemat(p, {"out": bad})
        with pytest.raises(DataFormatError, match=r"7\.mat: " + pattern):
            read_cifar10dvs_mat(p)


def test_make_events_refuses_instead_of_casting():
    with pytest.raises(DataFormatError, match=r"src: field 't' must be finite"):
        make_events([0], [0], [1], [np.nan], what="src")
    with pytest.raises(DataFormatError, match=r"src: field 'x' must lie in \[0, 32767\].*x=70000"):
        make_events([70000], [0], [1], [0], what="src")
    with pytest.raises(DataFormatError, match=r"src: field 'y' must be finite"):
        make_events([0], [np.nan], [1], [0], what="src")


def test_signed_polarity_default_and_official(tmp_path):
    p = str(tmp_path / "pm.txt")
    _write_gait(p, [(0, 1, 2, -1), (5, 3, 4, 1)])
    assert read_gait_txt(p)["p"].tolist() == [False, True]
    assert read_gait_txt(p, signed_polarity="official")["p"].tolist() == [True, True]
    with pytest.raises(ValueError, match="config.data.signed_polarity"):
        read_gait_txt(p, signed_polarity="flip")


# --------------------------------------------------------------------------------------------
# the official window rules, restated from the official files (bisect loops, (T, 2, x, y) layout)


def _off_chunk(data, dt, T, ds):
    """my_chunk_evs_pol_dvs: data rows [t, x, y, p] (Gait column order)."""
    t_start = data[0][0] if len(data) else 0
    chunks = np.zeros((T, 2, 128 // ds, 128 // ds), np.int64)
    idx_start = idx_end = 0
    for i, t in enumerate(range(t_start, t_start + T * dt, dt)):
        idx_end += bisect.bisect_left(list(data[idx_end:, 0]), t + dt)
        if idx_end > idx_start:
            ee = data[idx_start:idx_end, 1:]
            np.add.at(chunks, (i, ee[:, 2], ee[:, 0] // ds, ee[:, 1] // ds), 1)
        idx_start = idx_end
    return chunks


def _off_slice(data, start, length):
    times = list(data[:, 0])
    b = bisect.bisect_left(times, start)
    e = bisect.bisect_left(times[b:], start + length) + b
    return data[b:e]


def _off_train(data, start, T, dt, ds):
    tmad = _off_slice(data, start, T * dt).copy()
    if len(tmad):
        tmad[:, 0] -= tmad[0, 0]
    return _off_chunk(tmad, dt, T, ds)


def _off_test(data, T, dt, clip, ds):
    tbegin, tend = data[0, 0], max(0, data[-1, 0])
    tmad = _off_slice(data, tbegin, tend - tbegin).copy()
    tmad[:, 0] -= tmad[0, 0]
    end_time = tmad[-1, 0]
    starts = []
    if clip * T * dt - end_time > 0:
        overlap = int(np.floor((clip * T * dt - end_time) / clip))
        for j in range(clip):
            starts.append(j * (T * dt - overlap))
            if starts[-1] + T * dt > end_time:
                starts[-1] -= starts[-1] + T * dt - end_time
    else:
        overlap = int(np.floor((end_time - clip * T * dt) / clip))
        for j in range(clip):
            starts.append(j * (T * dt + overlap))
            if starts[-1] + T * dt > end_time:
                starts[-1] -= starts[-1] + T * dt - end_time
    return np.stack([_off_chunk(_off_slice(tmad, s, T * dt), dt, T, ds) for s in starts])


def _ours(frames):  # (..., T, H=y, W=x, 2) -> official (..., T, 2, x, y)
    return np.moveaxis(frames, -1, -3).swapaxes(-1, -2).astype(np.int64)


def _recordings():
    rng = np.random.default_rng(5)

    def rec(ts):
        ts = np.asarray(ts, np.int64)
        return np.stack([ts, rng.integers(0, 128, ts.size), rng.integers(0, 128, ts.size),
                         rng.integers(0, 2, ts.size)], axis=1)

    burst = np.sort(np.concatenate([np.full(40, 12_345), rng.integers(0, 90_000, 200), np.full(30, 90_000)]))
    gaps = np.sort(np.concatenate([rng.integers(1_000, 5_000, 60), rng.integers(60_000, 61_000, 60),
                                   np.full(5, 200_000)]))
    short = np.sort(rng.integers(3_000, 9_000, 80))  # shorter than T*dt = 20 ms
    tiny = np.array([7, 7, 8, 20, 20])
    return [rec(burst), rec(gaps), rec(short), rec(tiny), rec(np.sort(rng.integers(0, 400_000, 500)))]


@pytest.mark.parametrize("n_test", [1, 3])
def test_official_window_rule_bit_for_bit(tmp_path, n_test):
    recs = _recordings()
    files = {(split, 0, f"r{k}.txt"): r.tolist() for split in ("train", "test") for k, r in enumerate(recs)}
    root = _gait_root(str(tmp_path / "g"), files)
    T, dt, ds = 4, 5_000, 4
    cfg = {"name": "dvs_gait", "root": root, "T": T, "dt_ms": dt / 1000, "ds": ds, "n_test_windows": n_test,
           "train_random_window": True, "seed": 3}
    tr, te = build(cfg, "train"), build(cfg, "test")
    for i in range(len(tr)):
        data = recs[int(os.path.basename(tr.recording_of(i))[1])]
        for epoch in range(3):
            rng = np.random.default_rng([3, epoch, i])
            start = train_window_start(int(data[0, 0]), int(data[-1, 0]), T=T, dt_us=dt, rng=rng, include_high=True)
            np.testing.assert_array_equal(_ours(tr.get(i, epoch=epoch)["frames"]), _off_train(data, start, T, dt, ds))
        np.testing.assert_array_equal(_ours(te[i]["frames"]), _off_test(data, T, dt, n_test, ds))
    # the 'masnn' rule is still there and differs on these recordings
    te_m = build({**cfg, "window_rule": "masnn"}, "test")
    assert any(not np.array_equal(te_m[i]["frames"], te[i]["frames"]) for i in range(len(te)))
    with pytest.raises(ValueError, match="config.data.window_rule"):
        build({**cfg, "window_rule": "paper"}, "train")


def test_official_polarity_indexing_is_an_option(tmp_path):
    rows = [(t, 3, 5, -1 if t % 2 else 1) for t in range(0, 40_000, 997)]
    root = _gait_root(str(tmp_path / "g"), {("train", 1, "a.txt"): rows, ("test", 1, "a.txt"): rows})
    cfg = {"name": "dvs_gait", "root": root, "T": 4, "dt_ms": 5}
    data = np.asarray(rows, np.int64)
    official = _off_train(data, 0, 4, 5000, 1)  # raw p = -1 indexes channel 1
    assert official[:, 0].sum() == 0
    np.testing.assert_array_equal(_ours(build({**cfg, "signed_polarity": "official"}, "train")[0]["frames"]), official)
    default = build(cfg, "train")[0]["frames"]
    assert default[..., 0].sum() > 0 and default.sum() == official.sum()


def test_single_timestamp_test_sample_is_refused_under_the_official_rule(tmp_path):
    rows = [(100, 1, 1, 1)] * 3
    root = _gait_root(str(tmp_path / "g"), {("train", 0, "a.txt"): rows, ("test", 0, "one_ts.txt"): rows})
    te = build({"name": "dvs_gait", "root": root}, "test")
    with pytest.raises(DataFormatError, match=r"one_ts\.txt: all 3 events share one timestamp"):
        te[0]
    assert build({"name": "dvs_gait", "root": root, "window_rule": "masnn"}, "test")[0]["frames"].sum() == 3


# --------------------------------------------------------------------------------------------
# cache


def test_event_cache_is_an_lru_by_bytes():
    c = EventCache(budget_bytes=300)
    a, b, d = np.zeros(100, np.uint8), np.zeros(150, np.uint8), np.zeros(100, np.uint8)
    c.put("a", a)
    c.put("b", b)
    assert c.get("a") is a  # a is now most recent
    c.put("d", d)  # 350 > 300: evicts b (least recent)
    assert c.get("b") is None and c.get("a") is a and c.get("d") is d
    c.put("huge", np.zeros(400, np.uint8))  # larger than the budget: not kept
    assert c.get("huge") is None
    s = c.stats()
    assert s["bytes"] == 200 and s["items"] == 2 and s["hits"] == 3 and s["misses"] == 2
    assert EventCache(0).get("x") is None
    with pytest.raises(ValueError, match="config.data.cache_mb"):
        build({"name": "dvs_gait", "root": "/", "cache_mb": -1}, "train")


# --------------------------------------------------------------------------------------------
# verify, maybe_verify, the CLI


def _bad_gait_root(tmp_path):
    return _gait_root(str(tmp_path / "g"), {
        ("train", 0, "good.txt"): _ok_rows(),
        ("train", 1, "bad_xy.txt"): _ok_rows()[:3] + [(99_000, 128, 0, 1)],
        ("test", 0, "bad_p.txt"): _ok_rows()[:2] + [(99_000, 1, 1, 5)],
        ("test", 1, "good2.txt"): _ok_rows(seed=1),
    })


def test_verify_reports_every_bad_file_at_once(tmp_path):
    root = _bad_gait_root(tmp_path)
    cfg = {"name": "dvs_gait", "root": root}
    with pytest.raises(ValueError) as err:
        verify(cfg)
    msg = str(err.value)
    assert "bad_xy.txt" in msg and "line 4" in msg and "bad_p.txt" in msg and "line 3" in msg
    assert "good.txt" not in msg and "2 problem(s)" in msg
    report = verify(cfg, raise_on_problems=False, workers=2)
    assert report["files"] == 4 and not report["ok"] and len(report["problems"]) == 2
    # maybe_verify: 'auto' runs on a small dataset; False skips; a tiny verify_auto_mb skips with a message
    with pytest.raises(ValueError, match="bad_xy.txt"):
        maybe_verify(cfg)
    assert "off" in maybe_verify({**cfg, "verify": False})
    assert "verify_auto_mb" in maybe_verify({**cfg, "verify_auto_mb": 0})
    with pytest.raises(ValueError, match="config.data.verify"):
        maybe_verify({**cfg, "verify": "sometimes"})
    os.remove(os.path.join(root, "train", "1", "bad_xy.txt"))
    os.remove(os.path.join(root, "test", "0", "bad_p.txt"))
    assert "no problems" in maybe_verify(cfg)


def test_verify_ibm_gesture_lists_missing_and_corrupt(tmp_path):
    root = str(tmp_path / "DvsGesture")
    ts = np.arange(0, 1_000_000, 1000)
    _ibm(root, {"rec_a": (ts, [(1, 0, 500_000)]), "rec_b": (ts, [(2, 0, 11)])})
    _write_aedat31(os.path.join(root, "rec_b.aedat"), [(0, [(1, 2, 1, 0), (1, 999, 1, 5), (1, 2, 1, 10)])])
    report = verify({"name": "dvs_gesture", "root": root}, raise_on_problems=False)
    assert report["files"] == 2 and len(report["problems"]) == 1
    assert "rec_b.aedat" in report["problems"][0] and "byte" in report["problems"][0]


def test_cli_verify(tmp_path):
    root = _bad_gait_root(tmp_path)
    cmd = [sys.executable, "-m", "masnn_jax.data", "verify", f"--config={REPO}/configs/dvs_gait.py",
           f"--config.data.root={root}"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "bad_xy.txt" in r.stdout and "bad_p.txt" in r.stdout


def test_verify_error_lists_the_first_10_bad_files_and_counts_all(tmp_path):
    files = {("train", 0, "good.txt"): _ok_rows(), ("test", 0, "good2.txt"): _ok_rows(seed=1)}
    files.update({("train", 1 + k % 3, f"bad{k:02d}.txt"): _ok_rows()[:3] + [(99_000, 128, 0, 1)] for k in range(13)})
    cfg = {"name": "dvs_gait", "root": _gait_root(str(tmp_path / "g"), files)}
    with pytest.raises(ValueError) as err:
        verify(cfg)
    msg = str(err.value)
    assert "13 problem(s) in 13 bad file(s)" in msg
    listed = [f"bad{k:02d}.txt" for k in range(13) if f"bad{k:02d}.txt" in msg]
    assert len(listed) == 10 and "... and 3 more bad files" in msg and "python -m masnn_jax.data verify" in msg
    assert len(msg.splitlines()) == 12  # summary, 10 files, "... and 3 more"
    report = verify(cfg, raise_on_problems=False)
    assert len(report["problems"]) == 13 and len(report["problems_by_file"]) == 13
    full = report.summary(max_files=None)  # what `python -m masnn_jax.data verify` prints
    assert all(f"bad{k:02d}.txt" in full for k in range(13)) and "more bad files" not in full


def _config_file(name):
    """``configs/<name>``'s ``get_config()``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(REPO, "configs", name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _cifar_aedat(root, per_class, corrupt=lambda j: False):
    """CIFAR10-DVS original layout, ``per_class`` AEDAT 2.0 files per class; ``corrupt(j)``: file j truncated
    (event data not a multiple of 8 bytes)."""
    from masnn_jax.data.events.datasets import CIFAR10_CLASSES

    for cls in CIFAR10_CLASSES:
        d = os.path.join(root, cls)
        os.makedirs(d, exist_ok=True)
        for j in range(per_class):
            x, y, p = np.arange(30) % 128, (3 * np.arange(30)) % 128, np.arange(30) % 2
            body = np.stack([(y << 8) | (x << 1) | p, 1000 * np.arange(30) + j], axis=1).astype(">u4").tobytes()
            with open(os.path.join(d, f"cifar10_{cls}_{j}.aedat"), "wb") as f:
                f.write(b"#!AER-DAT2.0\r\n" + (body[:-3] if corrupt(j) else body))
    return root


def test_empty_cifar_split_says_why_and_training_reports_it_with_the_bad_files(tmp_path):
    """2 files per class, the second ones corrupt: under Spikformer's split (ceil(0.9 * 2) = 2 train files per class)
    the test split is empty by counting, and the message says so (no file was refused); the trainer verifies
    before it builds the splits, so its error gives the empty split and the corrupt files together."""
    from masnn_jax import train as training

    root = _cifar_aedat(str(tmp_path / "c"), 2, corrupt=lambda j: j == 1)
    cfg = {"name": "cifar10_dvs", "root": root, "cifar_split_order": "spikingjelly"}
    with pytest.raises(DatasetNotFoundError) as err:
        build(cfg, "test")
    msg = str(err.value)
    assert f"the test split of {root} is empty, by counting, not because files were refused as bad" in msg
    assert "config.data.cifar_split_order='spikingjelly'" in msg and "ceil(0.9 * n)" in msg
    assert "airplane 2 of 2" in msg and "truck 2 of 2" in msg and "config.data.cifar_train_fraction" in msg
    with pytest.raises(DatasetNotFoundError, match=r"floor\(0\.4 \* n\).*airplane 0 of 2.*no train file"):
        build({**cfg, "cifar_split_order": "numeric", "cifar_train_fraction": 0.4}, "train")

    config = _config_file("cifar10_dvs.py")
    config.data.root = root
    config.data.cifar_split_order = "spikingjelly"
    with pytest.raises(ValueError) as err:
        training.Trainer(config, str(tmp_path / "run"))
    msg = str(err.value)
    assert "11 problem(s) in 10 bad file(s) and 1 split(s) that could not be built" in msg
    lines = msg.splitlines()
    assert lines[1].startswith("  test split: DatasetNotFoundError: CIFAR10-DVS: the test split") and "ceil" in lines[1]
    assert "cifar10_airplane_1.aedat" in msg and "not a multiple of 8" in msg


def test_gesture_split_with_every_window_refused_says_how_many_and_why(tmp_path):
    root = str(tmp_path / "DvsGesture")
    ts = np.arange(0, 1_000_000, 1000)
    # rec_b's events end at 9 ms (a cut recording) but its label rows span 0.9 s
    _ibm(root, {"rec_a": (ts, [(1, 0, 500_000)]), "rec_b": (ts[:10], [(2, 0, 500_000), (3, 500_000, 900_000)])})
    with pytest.raises(DatasetNotFoundError) as err:
        build({"name": "dvs_gesture", "root": root}, "test")
    msg = str(err.value)
    assert f"the test split of {root} is empty: all 2 label window(s) of its 1 recording(s) were refused as bad" in msg
    assert "rec_b_labels.csv row 1" in msg and "rec_b_labels.csv row 2" in msg and "not inside the recording" in msg
    assert "truncated or corrupt" in msg and "bad_windows" in msg


def test_enumerated_data_keys_are_checked_whatever_the_dataset(tmp_path):
    """A value outside the list of any enumerated key is refused for every dataset name, also when that dataset
    does not read the key (e.g. cifar_orientation on the digits), naming config.data.<key> and the allowed values;
    the trainer refuses it before anything runs."""
    from masnn_jax import data as data_lib
    from masnn_jax import train as training
    from masnn_jax.data.events.config import ENUM_VALUES

    assert {"cifar_orientation", "cifar_split_order", "cifar_layout", "gesture_layout", "gait_lighting",
            "window_rule", "bad_windows", "signed_polarity", "frame_mode", "augment", "verify"} <= set(ENUM_VALUES)
    for name in ("digits_dvs", "dvs_gesture", "dvs_gait", "cifar10_dvs"):
        for key, allowed in ENUM_VALUES.items():
            with pytest.raises(ValueError) as err:
                data_lib.build({"name": name, "root": str(tmp_path), key: "sideways"}, "train")
            assert f"config.data.{key} must be one of {allowed}, got 'sideways'" in str(err.value), (name, key)
    with pytest.raises(ValueError, match=r"config\.data\.verify must be one of \(True, False, 'auto'\), got 1"):
        build({"name": "digits_dvs", "verify": 1}, "train")
    config = _config_file("digits_dvs.py")
    config.data.cifar_orientation = "sideways"
    with pytest.raises(ValueError, match=r"config\.data\.cifar_orientation must be one of \('as_stored', "
                                         r"'spikingjelly'\), got 'sideways'"):
        training.Trainer(config, str(tmp_path / "run"))


# --------------------------------------------------------------------------------------------
# model / data agreement


def test_check_model_data_names_both_keys():
    import ml_collections

    config = ml_collections.ConfigDict({
        "data": {"name": "dvs_gesture", "ds": 3, "T": 60},
        "model": {"name": "masnn", "arch": "dvs_gesture", "T": 60, "input_shape": None},
    })
    from masnn_jax.models.masnn_event import ARCHITECTURES

    gesture_shape = ARCHITECTURES["dvs_gesture"]["input_shape"]
    with pytest.raises(ValueError) as err:
        check_model_data(config, gesture_shape)
    msg = str(err.value)
    assert "config.data.ds=3" in msg and "config.model.input_shape" in msg and "(42, 42, 2)" in msg
    config.data.ds = 4
    check_model_data(config, gesture_shape)
    config.model.T = 16
    with pytest.raises(ValueError, match=r"config.data.T=60 but config.model.T=16"):
        check_model_data(config, gesture_shape)
    digits = {"data": {"name": "digits_dvs"}, "model": {"input_shape": (16, 16, 2), "T": 8}}
    check_model_data(digits)
    with pytest.raises(ValueError, match=r"config.data.ds=1 .*config.model.input_shape is \(16, 16, 2\)"):
        check_model_data({"data": {"name": "digits_dvs", "ds": 1}, "model": {"input_shape": (16, 16, 2)}})
