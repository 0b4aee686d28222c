"""Where the CPU train step's time goes: one profiled step of the Gesture net, wall time per XLA operation.

Builds the library's train step (``configs/dvs_gesture.py``'s model at ``--T``/``--batch``, the same step as
``vs_spikingjelly.py``), runs ``--warmup`` steps, records one more with ``jax.profiler.trace`` (a Perfetto trace,
written to ``--trace-dir``) and prints one JSON line:

* ``step_seconds``: the profiled step's wall time (the profiler adds ~1 %);
* ``busy_threads_ms``: how long 0, 1, 2, … XLA worker threads were inside an annotated operation;
* ``groups_ms``: wall time (union over the worker threads, so an operation that runs on two threads at once counts
  once) of coarse groups: ``matmul`` (XLA dot / YNNPACK / XNNPACK / oneDNN fusions, convolutions), ``concat_pad_slice``
  (im2col patches and col2im: concatenate, pad/slice fusions), ``loop_output_writes`` (dynamic-update-slice fusions:
  a ``lax.map``/``scan`` writing its stacked outputs), ``loop_input_reads`` (dynamic-slice fusions), ``buffer_fills``
  (broadcasts: zero-initialised loop outputs and accumulators), ``loops`` (while / conditional bookkeeping), ``other``
  (elementwise and reduction fusions: BatchNorm, pooling, attention, the neuron recurrence, the optimizer);
* ``top_ops``: the ``--top`` operations by wall time, with call count, output shape and the JAX source path XLA
  recorded (``op_name`` metadata of the compiled HLO).

Grouping is by HLO operation name, so it is a heuristic: a fusion is named after its root, e.g. a col2im fused into
the loop's output write counts as ``loop_output_writes``. Only the CPU backend is aggregated (XLA's CPU runtime
annotates each operation on the thread that runs it; a matmul that also uses the other thread shows as one busy
thread). On a GPU the trace is still written; open it in Perfetto (ui.perfetto.dev) or XProf.

Usage::

    python benchmarks/profile_step.py                 # T 16, batch 16, TCSA, library defaults
    python benchmarks/profile_step.py --T 60 --top 30
    python benchmarks/profile_step.py --jax-set batch_chunks=1
    python benchmarks/profile_step.py --quick         # T 3, batch 2, 1 warm-up step (smoke test)

Like the other benchmarks it sets ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (re-executing itself once, since glibc
reads it at start-up) unless ``--no-hugetlb``: without it fresh buffers cost page faults that dominate the
memory-bound operations (see ``BENCHMARKS.md``).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _jaxbench as jb  # noqa: E402

HUGETLB = "glibc.malloc.hugetlb=1"

#: Coarse groups of HLO operation names (the name without its ``.N`` suffix), first match wins.
GROUPS = (
    ("matmul", re.compile(r"^(ynn_fusion|xnn_fusion|onednn|dot|dot_general|convolution|.*_dot_fusion|.*convolution)")),
    ("loop_output_writes", re.compile(r".*dynamic-update-slice")),
    ("loop_input_reads", re.compile(r".*dynamic-slice")),
    ("concat_pad_slice", re.compile(r"^(concatenate|pad|slice|pad_slice_fusion|.*concatenate.*|.*pad.*|.*slice.*)$")),
    ("buffer_fills", re.compile(r"^(wrapped_)?broadcast$")),
    ("loops", re.compile(r"^(while|conditional|call)$")),
)
#: Trace events that wrap operations rather than being one (their time is their children's).
WRAPPERS = ("ThunkExecutor::Execute", "SlinkyThreadPool::Await")


def group_of(kind: str) -> str:
    """The :data:`GROUPS` name of an HLO operation kind (name without ``.N``), else ``'other'``."""
    for name, pattern in GROUPS:
        if pattern.match(kind):
            return name
    return "other"


def _union_ms(intervals) -> float:
    """Total length (ms) of the union of ``(start_us, end_us)`` intervals."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total / 1e3


def worker_intervals(trace_file: str) -> dict[str, list[tuple[float, float, str]]]:
    """``{thread name: [(start_us, end_us, op name), ...]}`` for XLA's CPU worker threads in a Perfetto trace
    (``*.trace.json.gz`` from ``jax.profiler.trace(..., create_perfetto_trace=True)``), wrappers left out.

    Raises:
      RuntimeError: the trace holds no XLA worker-thread operations (names the file).
    """
    with gzip.open(trace_file, "rt") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
    out: dict[str, list] = collections.defaultdict(list)
    for e in events:
        thread = names.get((e.get("pid"), e.get("tid")), "")
        if e.get("ph") == "X" and "XLAEigen" in thread and e["name"] not in WRAPPERS:
            out[thread].append((e["ts"], e["ts"] + e.get("dur", 0), e["name"]))
    if not out:
        raise RuntimeError(f"{trace_file}: no operations on XLA CPU worker threads ('tf_XLAEigen*') in this trace")
    return out


def summarize(intervals: dict[str, list], hlo_text: str = "", top: int = 20) -> dict:
    """Busy-thread histogram, per-group and per-operation wall time (ms) of :func:`worker_intervals`' output;
    ``hlo_text`` (the compiled step's ``as_text()``) adds each top operation's output shape and JAX source path."""
    edges = []
    for i, thread in enumerate(sorted(intervals)):
        for s, e, _ in intervals[thread]:
            edges += [(s, 1, i), (e, -1, i)]
    edges.sort(key=lambda x: (x[0], x[1]))
    depth: dict[int, int] = collections.Counter()
    busy: dict[int, float] = collections.Counter()
    last = edges[0][0]
    for t, step, i in edges:
        busy[sum(1 for d in depth.values() if d > 0)] += (t - last) / 1e3
        depth[i] += step
        last = t
    per_op: dict[str, list] = collections.defaultdict(list)
    for evs in intervals.values():
        for s, e, name in evs:
            per_op[name].append((s, e))
    per_group: dict[str, list] = collections.defaultdict(list)
    for name, ivs in per_op.items():
        per_group[group_of(re.sub(r"\.\d+$", "", name))] += ivs
    ops = sorted(((name, _union_ms(ivs), len(ivs)) for name, ivs in per_op.items()), key=lambda r: -r[1])
    rows = []
    for name, ms, calls in ops[:top]:
        row = dict(op=name, ms=round(ms, 1), calls=calls, group=group_of(re.sub(r"\.\d+$", "", name)))
        m = re.search(rf"%{re.escape(name)} = (\S+) .*?op_name=\"([^\"]*)\"", hlo_text)
        if m:
            row.update(shape=m.group(1), source=m.group(2))
        rows.append(row)
    return dict(
        span_ms=round((edges[-1][0] - edges[0][0]) / 1e3, 1),
        busy_threads_ms={str(k): round(v, 1) for k, v in sorted(busy.items())},
        groups_ms={g: round(_union_ms(ivs), 1) for g, ivs in sorted(per_group.items(), key=lambda kv: -_union_ms(kv[1]))},
        top_ops=rows,
    )


def main(argv=None):
    p = jb.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--attention", default="TCSA")
    p.add_argument("--warmup", type=int, default=2, help="steps run before the profiled one (the first compiles)")
    p.add_argument("--top", type=int, default=20, help="operations listed in top_ops")
    p.add_argument("--threads", type=int, default=2, help="XLA CPU threads (0: all cores)")
    p.add_argument("--trace-dir", default="", help="where the trace goes (default: a new temporary folder)")
    p.add_argument("--jax-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config.model key (e.g. batch_chunks=1); repeatable")
    p.add_argument("--no-hugetlb", action="store_true", help="do not set GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test defaults: T 3, batch 2, one warm-up step (flags given explicitly keep their "
                        "values)")
    args = jb.parse_args(p, argv, quick=dict(T=3, batch=2, warmup=1))
    jb.check_at_least(args, T=1, batch=1, warmup=1, top=1)  # the user's values, --quick or not
    jb.check_threads(args.threads)
    if args.trace_dir and os.path.exists(args.trace_dir) and not os.path.isdir(args.trace_dir):
        jb.fail(f"--trace-dir {args.trace_dir!r} is a file, not a folder")
    if args.trace_dir:
        try:  # checked before minutes of compiling and warm-up
            os.makedirs(args.trace_dir, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=args.trace_dir, prefix=".masnn_write_test_")
            probe.close()
        except OSError as e:
            jb.fail(f"--trace-dir {args.trace_dir!r} is not a writable folder: {e.strerror or e}")
    if not args.no_hugetlb and HUGETLB not in os.environ.get("GLIBC_TUNABLES", ""):
        env = dict(os.environ, GLIBC_TUNABLES=":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), HUGETLB])))
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *(argv or sys.argv[1:])], env)
    overrides = jb.parse_set(args.jax_set)
    jb.set_threads(args.threads)
    import jax

    cfg = jb.gesture_model_config(args.T, attention=args.attention, **overrides)
    jb.check_model_config(cfg)
    step, state, frames, labels = jb.make_train_step(cfg, batch=args.batch)
    compiled, compile_s = step.prime(state, frames, labels)
    for _ in range(args.warmup):
        state, metrics = step(state, frames, labels)
        jax.block_until_ready(metrics)
    trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="masnn_profile_")
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        t0 = time.perf_counter()
        state, metrics = step(state, frames, labels)
        jax.block_until_ready(metrics)
        seconds = time.perf_counter() - t0
    files = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True), key=os.path.getmtime)
    row = dict(benchmark="profile_step", model="dvs_gesture", attention=args.attention, T=args.T, batch=args.batch,
               devices=jb.devices_str(), options=overrides, execution_resolved=jb.resolved_execution(cfg, args.batch),
               glibc_tunables=os.environ.get("GLIBC_TUNABLES"), compile_seconds=compile_s, step_seconds=seconds,
               trace=files[-1] if files else trace_dir)
    if jax.default_backend() != "cpu" or not files:
        row["note"] = "per-operation aggregation is for the CPU backend; open the trace in Perfetto or XProf"
    else:
        row.update(summarize(worker_intervals(files[-1]), compiled.as_text(), top=args.top))
    jb.emit(row)


if __name__ == "__main__":
    main()
