"""Where the Gesture train step's compile time goes, and what JAX's persistent compilation cache saves.

The same step (``benchmarks/_jaxbench.py``: the library's ``train_step``, Adam + plateau, MSE, on the official DVS128
Gesture net with the library's defaults) is built, traced/lowered and compiled in two fresh child processes that
share one cache folder (:func:`masnn_jax.train.compile.enable_compilation_cache`, what ``train.py`` turns on by
default). The first child compiles and writes the cache; the second should load the executable from it. Each child
reports its phases in seconds:

* ``import_s``: ``import jax`` + ``masnn_jax``;
* ``build_s``: building the model, optimizer state and synthetic batch (``make_train_step``);
* ``lower_s``: tracing the step and lowering it to StableHLO (``jax.jit(...).lower``: Python, runs every time);
* ``compile_s``: ``lowered.compile()`` — XLA's compilation in the first child, a cache read in the second;
* ``first_step_s``: the first call of the compiled step (includes buffer allocation).

Usage::

    python benchmarks/compile_time.py                       # T 16, batch 16, a fresh temporary cache folder
    python benchmarks/compile_time.py --T 60 --batch 64 --cache-dir /tmp/xla_cache --jax-set neuron_impl=scan

Prints one JSON line per child (``run`` 1 and 2) and a summary line with ``first_s`` and ``second_s`` (the compile
phase of each run), ``first_total_s`` / ``second_total_s`` (lower + compile: what a user waits for before the first
step), ``speedup`` and ``cache_files``. A failed child prints an ``error`` line and the script exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _jaxbench as jb  # noqa: E402  (the standard library only: import_s below still times jax + masnn_jax)


def run_child(args) -> dict:
    t0 = time.perf_counter()
    jb.set_threads(args.threads)
    import jax

    from masnn_jax.train import enable_compilation_cache

    import_s = time.perf_counter() - t0
    cache = enable_compilation_cache(args.cache_dir)
    dtype = None if args.dtype == "float32" else args.dtype
    cfg = jb.gesture_model_config(args.T, attention=args.attention, dtype=dtype, **jb.parse_set(args.jax_set))
    t0 = time.perf_counter()
    step, state, frames, labels = jb.make_train_step(cfg, batch=args.batch)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lowered = step.lower(state, frames, labels)
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = compiled(state, {"frames": frames, "label": labels})
    jax.block_until_ready(out)
    first_step_s = time.perf_counter() - t0
    return dict(
        run=args.child_run, T=args.T, batch=args.batch, dtype=args.dtype, attention=args.attention,
        devices=jb.devices_str(), jax_version=jax.__version__, execution=jb.execution_options(cfg),
        execution_resolved=jb.resolved_execution(cfg, args.batch), options=jb.parse_set(args.jax_set), cache_dir=cache,
        import_s=import_s, build_s=build_s, lower_s=lower_s, compile_s=compile_s, first_step_s=first_step_s,
        memory_analysis_mb=jb.memory_analysis_mb(compiled),
    )


def _cache_files(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path)) if os.path.isdir(path) else 0


def main(argv=None):
    p = jb.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--attention", default="TCSA")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=2, help="XLA CPU threads (0: all cores)")
    p.add_argument("--cache-dir", default="", help="cache folder (default: a fresh temporary one, removed after)")
    p.add_argument("--jax-set", action="append", default=[], metavar="KEY=VALUE", help="config.model override")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per child")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test defaults: T 4, batch 2 (flags given explicitly keep their values)")
    p.add_argument("--child-run", type=int, default=0, help=argparse.SUPPRESS)
    args = jb.parse_args(p, argv, quick=dict(T=4, batch=2))
    jb.check_at_least(args, T=1, batch=1)  # the user's values, --quick or not
    if args.timeout <= 0:
        jb.fail(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.child_run:
        print(json.dumps(run_child(args)), flush=True)
        return
    jb.check_threads(args.threads)
    if args.cache_dir and os.path.exists(args.cache_dir) and not os.path.isdir(args.cache_dir):
        jb.fail(f"--cache-dir {args.cache_dir!r} is a file, not a folder")
    # a bad --jax-set (or --attention, --dtype) is one line here, not a traceback from the first child
    dtype = None if args.dtype == "float32" else args.dtype
    jb.check_model_config(jb.gesture_model_config(args.T, attention=args.attention, dtype=dtype,
                                                  **jb.parse_set(args.jax_set)))
    tmp = None
    cache = args.cache_dir
    if not cache:
        tmp = cache = tempfile.mkdtemp(prefix="masnn_xla_cache_")
    rows, failed = [], 0
    try:
        for run in (1, 2):
            cmd = [sys.executable, os.path.abspath(__file__), "--T", str(args.T), "--batch", str(args.batch),
                   "--attention", args.attention, "--dtype", args.dtype, "--threads", str(args.threads),
                   "--cache-dir", cache, "--child-run", str(run)]
            for item in args.jax_set:
                cmd += ["--jax-set", item]
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(json.dumps({"run": run, "error": f"timed out after {args.timeout} s"}), flush=True)
                failed += 1
                break
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                print(json.dumps({"run": run, "error": proc.stderr[-3000:], "returncode": proc.returncode}),
                      flush=True)
                failed += 1
                break
            row = json.loads(lines[-1]) | {"process_s": time.perf_counter() - t0, "cache_files": _cache_files(cache)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        if len(rows) == 2:
            first, second = rows
            print(json.dumps({
                "summary": True, "T": args.T, "batch": args.batch, "dtype": args.dtype, "devices": first["devices"],
                "first_s": first["compile_s"], "second_s": second["compile_s"],
                "first_total_s": first["lower_s"] + first["compile_s"],
                "second_total_s": second["lower_s"] + second["compile_s"],
                "speedup": first["compile_s"] / max(second["compile_s"], 1e-9),
                "second_compile_within_2s": second["compile_s"] <= 2.0, "cache_files": _cache_files(cache),
            }), flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        raise SystemExit("error: a child run failed (see its 'error' line)")


if __name__ == "__main__":
    main()
