"""How masnn-jax's training step scales: step time and peak memory against T and batch, compile time against depth.

Every point runs in its own child process (its peak RSS — or, on a GPU, the device's peak allocation — is its own)
and prints one JSON line (``sweep`` = 'T' | 'batch' | 'depth'). Model: the DVS128 Gesture net (TCSA, fp32) through
the real train step; the depth sweep uses a custom plan of ``d`` conv layers of 64 channels on 32x32 input
(pools 2 on the first ``min(d, 3)`` layers... then 1) and reports compile time only (its rows have
``step_seconds`` null).

Usage::

    python benchmarks/scaling.py                        # CPU default, < 10 min on 2 cores
    python benchmarks/scaling.py --T 8,16,30,60,120 --batch 4,8,16,32 --depth 1,2,4,8 --steps 3   # bigger
    python benchmarks/scaling.py --quick                 # reduced sweep (GPU: < 5 min)
    python benchmarks/scaling.py --jax-set remat=layer   # any config.model override
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _jaxbench as jb  # noqa: E402
_parse_set = jb.parse_set


def child(point: dict, args) -> dict:
    jb.set_threads(args.threads)
    import statistics

    dtype = None if args.dtype == "float32" else args.dtype
    overrides = _parse_set(args.jax_set)
    if point["sweep"] == "depth":
        d = point["depth"]
        pools = tuple(2 if i < 3 else 1 for i in range(d))
        overrides = dict(arch="custom", input_shape=(32, 32, 2), num_classes=11, channels=(64,) * d, pools=pools,
                         fc=(256,)) | overrides
    t = point["T"]
    cfg = jb.gesture_model_config(t, attention=args.attention, dtype=dtype, **overrides)
    step, state, frames, labels = jb.make_train_step(cfg, batch=point["batch"])
    steps = 0 if point["sweep"] == "depth" else args.steps
    gflops, compile_s = jb.cost_gflops(step, state, frames, labels, reference=jb.flops_reference(cfg, point["batch"]))
    state, times, first, _ = jb.time_steps(step, state, frames, labels, steps)
    mem, kind = jb.peak_memory_mb()
    med = statistics.median(times) if times else None
    return dict(point) | dict(
        framework="masnn-jax", model="dvs_gesture" if point["sweep"] != "depth" else f"custom_{point['depth']}conv",
        attention=args.attention, T=t, batch=point["batch"], dtype=args.dtype, devices=jb.devices_str(),
        options=_parse_set(args.jax_set), execution=jb.execution_options(cfg),
        step_seconds=jb.summary(times), compile_seconds=compile_s, first_step_seconds=first, peak_rss_mb=mem,
        memory_kind=kind, gflops=gflops, gflops_per_s=(gflops / med if gflops and med else None),
    )


def main(argv=None):
    p = jb.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=jb.positive_ints, default="8,16,30",
                   help="T values (batch --base-batch); comma list of integers >= 1, '' skips this sweep")
    p.add_argument("--batch", type=jb.positive_ints, default="4,8,16",
                   help="batch values (T --base-T); comma list of integers >= 1, '' skips this sweep")
    p.add_argument("--depth", type=jb.positive_ints, default="1,2,3,4,6",
                   help="conv-layer counts for the compile-time sweep; comma list of integers >= 1, '' skips it")
    p.add_argument("--base-T", type=int, default=16)
    p.add_argument("--base-batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=2, help="timed steps per point (after the compiling one)")
    p.add_argument("--attention", default="TCSA")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=2, help="XLA CPU threads (0: all cores)")
    p.add_argument("--jax-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-hugetlb", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="reduced-sweep defaults: T 8,16; batch 4,16; depth 1,3; 1 step (flags given explicitly "
                        "keep their values)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = jb.parse_args(p, argv, quick=dict(T="8,16", batch="4,16", depth="1,3", steps=1))
    jb.check_at_least(args, base_T=1, base_batch=1, steps=1)  # the user's values, --quick or not
    if args.child:
        jb.emit(child(json.loads(args.child), args))
        return
    if not (args.T or args.batch or args.depth):
        jb.fail("--T, --batch and --depth are all empty: no point to run")
    jb.check_threads(args.threads)
    points = [dict(sweep="T", T=t, batch=args.base_batch) for t in args.T]
    points += [dict(sweep="batch", T=args.base_T, batch=b) for b in args.batch]
    points += [dict(sweep="depth", T=8, batch=4, depth=d) for d in args.depth]
    # a bad --jax-set is one line here, not a traceback from every child
    jb.check_model_config(jb.gesture_model_config(args.base_T, attention=args.attention, **_parse_set(args.jax_set)))
    env = dict(os.environ)
    if not args.no_hugetlb:
        env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
    failed = 0
    base = [sys.executable, os.path.abspath(__file__), "--steps", str(args.steps), "--attention", args.attention,
            "--dtype", args.dtype, "--threads", str(args.threads)]
    for item in args.jax_set:
        base += ["--jax-set", item]
    for point in points:
        proc = subprocess.run(base + ["--child", json.dumps(point)], env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not lines:
            print(json.dumps(point | {"error": proc.stderr[-3000:], "returncode": proc.returncode}), flush=True)
            failed += 1
            continue
        print(json.dumps(json.loads(lines[-1]) | {"glibc_tunables": env.get("GLIBC_TUNABLES", "")}), flush=True)
    if failed:
        raise SystemExit(f"error: {failed} point(s) failed (their stderr is in the 'error' lines above)")


if __name__ == "__main__":
    main()
