"""Loader throughput on a synthetic DVS128 Gesture-sized dataset (IBM layout, AEDAT 3.1), before / after caching.

Writes ``--files`` recordings of ``--events`` events each (default 20 x 1 M, like the real recordings) with
``--windows`` label rows each into a temporary folder, builds the training split with the official framing
(T = 60, dt = 25 ms, ds = 4, random windows) and times one or more shuffled epochs through ``make_loader``:

* ``before``: a parsed-recording cache of two files (the earlier ``functools.lru_cache(maxsize=2)``; expressed here
  as ``cache_mb`` = two recordings' bytes);
* ``after``: the default ``cache_mb`` (1024 MiB per process).

Prints one JSON object: per setting the samples/s of each epoch, cache hits / misses, and the build time (which
includes checking every label window against its recording).

Usage: ``python benchmarks/event_loader.py [--files 20 --events 1000000 --windows 12 --epochs 2 --batch 16]``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _jaxbench as jb  # noqa: E402  (the standard library only: the shared flag checks)


def write_dataset(root: str, files: int, events: int, windows: int, seed: int = 0) -> None:
    """IBM layout under ``root``: ``files`` AEDAT 3.1 recordings of ``events`` events over ``windows * 6`` s."""
    rng = np.random.default_rng(seed)
    duration = windows * 6_000_000
    names = []
    for k in range(files):
        name = f"user{k:02d}_led"
        names.append(name)
        t = np.sort(rng.integers(0, duration, events)).astype(np.uint32)
        x, y, p = rng.integers(0, 128, events), rng.integers(0, 128, events), rng.integers(0, 2, events)
        words = np.empty(2 * events, "<u4")
        words[0::2] = (x.astype(np.uint32) << 17) | (y.astype(np.uint32) << 2) | (p.astype(np.uint32) << 1) | 1
        words[1::2] = t
        with open(os.path.join(root, name + ".aedat"), "wb") as f:
            f.write(b"#!AER-DAT3.1\r\n#!END-HEADER\r\n")
            per = 4096
            for s in range(0, events, per):
                n = min(per, events - s)
                f.write(struct.pack("<HHIIIIII", 1, 1, 8, 4, 0, n, n, n))
                f.write(words[2 * s: 2 * (s + n)].tobytes())
        with open(os.path.join(root, name + "_labels.csv"), "w") as f:
            f.write("class,startTime_usec,endTime_usec\n")
            for w in range(windows):
                f.write(f"{w % 11 + 1},{w * 6_000_000 + 100_000},{(w + 1) * 6_000_000 - 100_000}\n")
    with open(os.path.join(root, "trials_to_train.txt"), "w") as f:
        f.write("\n".join(n + ".aedat" for n in names) + "\n")
    with open(os.path.join(root, "trials_to_test.txt"), "w") as f:
        f.write(names[0] + ".aedat\n")


def measure(root: str, cache_mb: float, epochs: int, batch: int) -> dict:
    """Builds the train split with ``cache_mb`` and times ``epochs`` shuffled passes."""
    from masnn_jax.data import make_loader
    from masnn_jax.data.events import build

    t0 = time.perf_counter()
    ds = build({"name": "dvs_gesture", "root": root, "cache_mb": cache_mb}, "train")
    out = {"cache_mb": cache_mb, "build_s": round(time.perf_counter() - t0, 3), "samples": len(ds), "epochs": []}
    for epoch in range(epochs):
        t0 = time.perf_counter()
        n = 0
        for b in make_loader(ds, batch_size=batch, shuffle=True, seed=0, epoch=epoch):
            n += b["label"].shape[0]
        dt = time.perf_counter() - t0
        out["epochs"].append({"samples_per_s": round(n / dt, 1), "seconds": round(dt, 2)})
    out.update({k: v for k, v in ds.cache.stats().items() if k in ("hits", "misses", "bytes")})
    return out


def main(argv=None) -> None:
    """Writes the dataset, measures before / after, prints the JSON."""
    ap = jb.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=20, help="recordings to write (>= 1)")
    ap.add_argument("--events", type=int, default=1_000_000, help="events per recording (>= 1)")
    ap.add_argument("--windows", type=int, default=12, help="label windows (6 s each) per recording (>= 1)")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per setting (>= 1)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dir", default=None, help="where to write the data (default: a temporary folder, removed)")
    args = ap.parse_args(argv)
    jb.check_at_least(args, files=1, events=1, windows=1, epochs=1, batch=1)
    if args.dir is not None and os.path.exists(args.dir) and not os.path.isdir(args.dir):
        jb.fail(f"--dir {args.dir!r} is a file, not a folder")
    root = args.dir or tempfile.mkdtemp(prefix="event_loader_")
    try:
        t0 = time.perf_counter()
        write_dataset(root, args.files, args.events, args.windows)
        write_s = time.perf_counter() - t0
        from masnn_jax.data.events import EVENT_DTYPE

        two_files_mb = 2 * args.events * EVENT_DTYPE.itemsize / 2 ** 20 + 0.01
        result = {
            "dataset": {"files": args.files, "events_per_file": args.events, "windows_per_file": args.windows,
                        "write_s": round(write_s, 2), "T": 60, "dt_ms": 25, "ds": 4, "batch": args.batch},
            "before_cache_2_files": measure(root, two_files_mb, args.epochs, args.batch),
            "after_default_cache": measure(root, 1024.0, args.epochs, args.batch),
        }
        print(json.dumps(result, indent=1))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
