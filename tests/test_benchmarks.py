"""Smoke tests: each benchmark script runs with tiny flags and prints valid JSON lines with the required keys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
REQUIRED = {"framework", "model", "attention", "T", "batch", "dtype", "devices", "step_seconds", "compile_seconds",
            "peak_rss_mb", "gflops", "gflops_per_s"}


def _run(script, *flags, timeout=600):
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), *flags], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert rows, proc.stderr[-3000:]
    return rows


def _frameworks():
    try:
        import spikingjelly.activation_based.layer  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return "jax"
    return "jax,torch"


def test_vs_spikingjelly_quick_at_short_T():
    """One ``--quick`` run at T=3 is both the smoke test of the script and the short-T check: T below the official
    t_ratio (5) would leave the temporal MLP without hidden units, so both frameworks use 1. (Each child compiles or
    runs the Gesture-sized net; two separate runs cost ~40 s more and prove nothing extra. One test function, not a
    shared fixture: pytest-xdist would run a module fixture once per worker.)"""
    frameworks = _frameworks()
    rows = _run("vs_spikingjelly.py", "--quick", "--T", "3", "--frameworks", frameworks)
    *points, summary = rows
    assert summary["summary"] is True
    assert all("error" not in r for r in points), points
    for r in points:
        assert REQUIRED <= set(r), REQUIRED - set(r)
        assert {"median", "min", "max"} <= set(r["step_seconds"])
        assert r["peak_rss_mb"] > 0
        assert r["T"] == 3 and r["batch"] == 2, r  # --quick keeps T=min(T, 5) = 3; batch 2
    jax_row = next(r for r in points if r["framework"] == "masnn-jax")
    assert jax_row["gflops"] and jax_row["gflops"] > 0
    # 'auto' is 8 on CPU; with batch 2 only 2 chunks can run (a divisor of the batch), and that is what is reported
    assert jax_row["execution_resolved"]["batch_chunks"] == 2, jax_row
    if frameworks == "jax,torch":
        assert len(points) == 2, points
        assert summary["speedup_jax_over_sj"] > 0 and summary["memory_ratio_jax_to_sj"] > 0


def test_scaling_tiny():
    rows = _run("scaling.py", "--T", "5", "--batch", "", "--depth", "1", "--base-batch", "2", "--steps", "1")
    assert [r["sweep"] for r in rows] == ["T", "depth"]
    for r in rows:
        assert "error" not in r, r
        assert REQUIRED <= set(r)
    assert rows[0]["step_seconds"]["median"] > 0 and rows[1]["compile_seconds"] > 0


def test_peak_quick():
    rows = _run("peak.py", "--quick", "--no-torch")
    ops = {(r["op"].split("_")[0], r.get("impl"), r["dtype"]) for r in rows}
    assert ("matmul", None, "float32") in ops and ("conv3x3", "im2col", "float32") in ops
    assert all(r["gflops_per_s"] > 0 for r in rows)


@pytest.mark.parametrize("script", ["vs_spikingjelly.py", "scaling.py", "peak.py", "profile_step.py"])
def test_help(script):
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "--quick" in proc.stdout


@pytest.mark.parametrize("script", ["vs_spikingjelly.py", "scaling.py", "profile_step.py"])
@pytest.mark.parametrize("item, message", [
    ("batch_chunks=0", "config.model.batch_chunks must be 'auto' or an integer >= 1, got 0"),
    ("nonsense=1", "unknown config.model keys ['nonsense']"),
    ("batch_chunks", "--jax-set expects KEY=VALUE"),
])
def test_bad_jax_set_is_one_line_before_any_child(script, item, message):
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), "--quick", "--jax-set", item],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode != 0
    assert proc.stdout == ""  # no child ran, no JSON row
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("script, args, message", [
    ("profile_step.py", ["--trace-dir", "{file}"], "--trace-dir"),
    ("profile_step.py", ["--T", "0", "--top", "0"], "--T 0, --top 0"),
    ("profile_step.py", ["--threads", "-3"], "--threads"),
    ("vs_spikingjelly.py", ["--threads", "999"], "--threads"),
])
def test_bad_flags_are_one_line_before_any_work(tmp_path, script, args, message):
    """Bad flags stop the script with one line naming the flag, before compiling anything; a file given as the
    trace folder is left as it was."""
    afile = tmp_path / "a_file"
    afile.write_text("keep me")
    args = [a.replace("{file}", str(afile)) for a in args]
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), "--quick", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode != 0 and proc.stdout == ""
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert afile.read_text() == "keep me"


def _profile_step_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("profile_step", os.path.join(BENCH, "profile_step.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_step_summary_by_hand():
    """Two worker threads (µs): A runs ynn_fusion.1 [0, 10000] then concatenate.2 [10000, 15000]; B runs
    ynn_fusion.1 [2000, 8000] (the same matmul on both threads counts once) and wrapped_broadcast.3 [20000, 30000].
    By hand: span 30 ms; busy 0 threads 15..20 = 5 ms, 1 thread 0..2 + 8..15 + 20..30 = 19 ms, 2 threads 2..8 = 6 ms;
    matmul 10 ms, buffer fills 10 ms, concat/pad/slice 5 ms."""
    ps = _profile_step_module()
    intervals = {"tf_XLAEigen/1": [(0, 10000, "ynn_fusion.1"), (10000, 15000, "concatenate.2")],
                 "tf_XLAEigen/2": [(2000, 8000, "ynn_fusion.1"), (20000, 30000, "wrapped_broadcast.3")]}
    hlo = '  %ynn_fusion.1 = f32[4096,128]{1,0} fusion(%a, %b), metadata={op_name="jit(step)/dot_general" x=1}\n'
    s = ps.summarize(intervals, hlo, top=2)
    assert s["span_ms"] == 30.0
    assert s["busy_threads_ms"] == {"0": 5.0, "1": 19.0, "2": 6.0}
    assert s["groups_ms"] == {"matmul": 10.0, "buffer_fills": 10.0, "concat_pad_slice": 5.0}
    assert [r["op"] for r in s["top_ops"]] == ["ynn_fusion.1", "wrapped_broadcast.3"]
    assert s["top_ops"][0] == dict(op="ynn_fusion.1", ms=10.0, calls=2, group="matmul", shape="f32[4096,128]{1,0}",
                                   source="jit(step)/dot_general")
    assert [ps.group_of(k) for k in ("bitcast_dynamic-update-slice_fusion", "dynamic-slice_bitcast_fusion",
                                     "pad_slice_fusion", "while", "broadcast_multiply_fusion", "dot_general")] == [
        "loop_output_writes", "loop_input_reads", "concat_pad_slice", "loops", "other", "matmul"]


def test_profile_step_quick(tmp_path):
    """The real profiled step (T=3, batch 2): every group is part of the step, the matmuls take time, and the
    trace file was written where asked."""
    (row,) = _run("profile_step.py", "--quick", "--trace-dir", str(tmp_path))
    assert row["T"] == 3 and row["batch"] == 2 and row["step_seconds"] > 0
    assert row["trace"].startswith(str(tmp_path)) and os.path.isfile(row["trace"])
    assert row["groups_ms"]["matmul"] > 0
    # each figure is rounded to 0.1 ms, so the sum may exceed the span by 0.05 ms per term
    slack = 0.05 * (len(row["busy_threads_ms"]) + 1)
    assert 0 < sum(row["busy_threads_ms"].values()) <= row["span_ms"] + slack
    assert all(0 <= ms <= row["span_ms"] + 0.1 for ms in row["groups_ms"].values())
    assert any(r["group"] == "matmul" and "dot_general" in r.get("source", "") for r in row["top_ops"]), row["top_ops"]


# Every bad flag below used to start work (a child run, a compile, a real benchmark) or end in a traceback; each script
# now refuses it up front with one ``error:`` line naming the flag, exit status 2 (``_jaxbench.fail``). ``--quick``
# no longer replaces a value the user gave, so it no longer hides a bad one.
BAD_FLAGS = [
    ("compile_time.py", ["--T", "0"], "--T"),
    ("compile_time.py", ["--timeout", "0"], "--timeout"),
    ("compile_time.py", ["--quick", "--T", "-1"], "--T"),
    ("scaling.py", ["--T", "0", "--batch", "", "--depth", ""], "--T"),
    ("scaling.py", ["--T", "abc"], "--T"),
    ("scaling.py", ["--T", "8,0", "--quick"], "--T"),
    ("scaling.py", ["--T", "", "--batch", "", "--depth", ""], "--depth"),  # nothing left to run
    ("vs_spikingjelly.py", ["--steps", "0", "--quick"], "--steps"),
    ("resnet_compile.py", ["--unroll", "0"], "--unroll"),
    ("resnet_compile.py", ["--depths", "18,x"], "--depths"),
    ("peak.py", ["--repeats", "0", "--no-torch"], "--repeats"),
    ("peak.py", ["--matmul", "0", "--quick", "--no-torch"], "--matmul"),
    ("profile_step.py", ["--batch", "0", "--quick"], "--batch"),
    ("input_pipeline.py", ["--images", "0", "--quick"], "--images"),
    ("event_loader.py", ["--files", "1", "--events", "1000", "--epochs", "0"], "--epochs"),
    ("event_loader.py", ["--files", "0"], "--files"),
    ("imagenet.py", ["--T", "0", "--depths", "18", "--frameworks", "jax", "--dtypes", "float32"], "--T"),
    ("imagenet.py", ["--depths", ""], "--depths"),
    ("kill_resume.py", ["--epochs", "0"], "--epochs"),
    ("resnet_gradient_norms.py", ["--T", "0", "--out", "{tmp}"], "--T"),
    ("spikformer_attention_activity.py", ["--batch", "0", "--out", "{tmp}"], "--batch"),
]

# Runs a script as ``python script.py FLAGS`` would, except that jax and flax cannot be imported: a script that gets
# past its flag checks into real work fails loudly (an ImportError traceback) instead of computing.
_NO_JAX = ("import runpy, sys; sys.modules.update(jax=None, flax=None); "
           "sys.argv = sys.argv[1:]; sys.path.insert(0, __import__('os').path.dirname(sys.argv[0])); "
           "runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.mark.parametrize("script, flags, flag", BAD_FLAGS, ids=[f"{s}:{' '.join(f)}" for s, f, _ in BAD_FLAGS])
def test_bad_flag_is_one_line_before_any_work(tmp_path, script, flags, flag):
    """A zero, negative or malformed numeric flag (or a list flag with such an item) stops the script within a
    second or two, before jax is imported or any child process starts: exit status 2, nothing on stdout (no child
    row), one ``error:`` line on stderr that names the flag, no traceback, nothing written."""
    flags = [f.replace("{tmp}", str(tmp_path / "out")) for f in flags]
    cmd = [sys.executable, "-c", _NO_JAX, os.path.join(BENCH, script), *flags]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # it started real work: stop it and its children
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{script} {' '.join(flags)} still running after 60 s: the flag was not refused")
    seconds = time.perf_counter() - t0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, out[-1000:], err[-2000:])
    assert out == "" and "Traceback" not in err, (out[-1000:], err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error:") and flag in lines[0], err[-2000:]
    assert seconds < 10, seconds
    assert not (tmp_path / "out").exists()  # nothing written either
