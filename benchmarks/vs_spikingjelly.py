"""masnn-jax vs SpikingJelly: one training step of the official DVS128 Gesture net (the speed and memory targets of BENCHMARKS.md).

The same network — conv 2->64 (pool 1), 64->128 (pool 2), 128->128 (pool 2), FC 8192->256->11, each layer
conv/linear (bias) -> BatchNorm over T·B -> AvgPool -> attention -> official LIF neuron (u = h + x; s = u >= 0.3,
rectangle surrogate a = 0.5; h = (s·0.3 + (1 − s)·u)·0.3), output = mean over T of the last spikes, MSE to one-hot,
Adam lr 1e-4 — is trained for a few steps

* in masnn-jax, through ``masnn_jax.train.Trainer``'s real jitted train step (``benchmarks/_jaxbench.py``);
* in SpikingJelly 2.x (torch), built here from ``layer.Conv2d/BatchNorm2d/AvgPool2d/Linear/BatchNorm1d`` in
  multi-step mode, ``layer.attention.MultiDimensionalAttention`` for the conv layers, and a few lines of torch for
  the official neuron and the FC layers' temporal attention (``torch``: the official-style Python time loop);
* and, as a second torch anchor (``sjlif``), the same SpikingJelly net with SpikingJelly's own fused multi-step
  ``neuron.LIFNode`` (its CUDA/Triton kernels on a GPU) in the settings closest to the official neuron
  (:data:`SJ_LIF_KWARGS`; how it differs is written there: reset leaves 0 instead of 0.09, and a triangle
  surrogate of the rectangle's peak and area).

Each masnn-jax row also records ``execution`` (the config values), ``execution_resolved`` (what 'auto' means on
this backend: batch_chunks, conv_impl, neuron_impl) and ``memory_analysis_mb`` (the compiled train step's
``memory_analysis()``: temp, argument, output, alias and total = temp + argument + output, in MB); torch rows record
their ``execution`` (neuron, device, autocast, and for ``sjlif`` the LIF settings and which implementation ran).

Each framework runs in its own child process (so each peak RSS is its own: ``ru_maxrss`` of the child, or the
device's peak allocation on a GPU), and the children alternate A B A B ... in one run so that the ratio is fair on
a shared machine. Every measurement is printed as one JSON line; the last line is a summary with the ratios.

Usage::

    python benchmarks/vs_spikingjelly.py --T 16 --batch 16 --steps 3 --reps 2
    python benchmarks/vs_spikingjelly.py --T 60 --jax-set remat=layer
    python benchmarks/vs_spikingjelly.py --T 60 --batch 64 --frameworks jax,torch,sjlif --jax-set neuron_impl=scan
    python benchmarks/vs_spikingjelly.py --quick          # small smoke run (T 5, batch 2, 1 step, 1 rep)

``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` is set for both children unless ``--no-hugetlb`` (it removes most
of the page-fault time both frameworks spend on fresh buffers; see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _jaxbench as jb  # noqa: E402

GESTURE = dict(channels=(64, 128, 128), pools=(1, 2, 2), fc=(256,), input_hw=32, in_ch=2, num_classes=11)


_parse_set = jb.parse_set


# --------------------------------------------------------------------------------------------------- JAX child


def run_jax(args) -> dict:
    jb.set_threads(args.threads)
    import jax

    dtype = None if args.dtype == "float32" else args.dtype
    cfg = jb.gesture_model_config(args.T, attention=args.attention, dtype=dtype, **_parse_set(args.jax_set))
    cache = None
    if args.compilation_cache:
        from masnn_jax.train import enable_compilation_cache

        cache = enable_compilation_cache(args.compilation_cache)
    step, state, frames, labels = jb.make_train_step(cfg, batch=args.batch)
    compiled, compile_s = step.prime(state, frames, labels)  # one compile: timing, FLOPs and memory plan
    gflops = jb.compiled_gflops(compiled, state, frames, labels, reference=jb.flops_reference(cfg, args.batch))
    memory_analysis = jb.memory_analysis_mb(compiled)
    state, times, first, metrics = jb.time_steps(step, state, frames, labels, args.steps)
    mem, mem_kind = jb.peak_memory_mb()
    med = statistics.median(times)
    return dict(
        framework="masnn-jax", jax_version=jax.__version__, model="dvs_gesture", attention=args.attention, T=args.T,
        batch=args.batch, dtype=args.dtype, devices=jb.devices_str(), options=_parse_set(args.jax_set),
        execution=jb.execution_options(cfg), execution_resolved=jb.resolved_execution(cfg, args.batch),
        compilation_cache=cache,
        step_seconds=jb.summary(times), compile_seconds=compile_s, first_step_seconds=first, peak_rss_mb=mem,
        memory_kind=mem_kind, memory_analysis_mb=memory_analysis, gflops=gflops,
        gflops_per_s=(gflops / med if gflops else None), loss=float(metrics["loss"]),
    )


# --------------------------------------------------------------------------------------------------- torch child


#: The SpikingJelly fused multi-step LIF closest to the official MA-SNN neuron (the ``sjlif`` anchor). Official
#: (``MA_SNN/module/LIF.py``): ``u = h + x``; ``s = u >= 0.3``; ``h = (s·0.3 + (1 − s)·u)·0.3``; rectangle
#: surrogate ``2`` on ``|u − 0.3| < 0.25``. SpikingJelly ``LIFNode(decay_input=False)``: ``H = V − (V − V_reset)/τ
#: + X``; ``S = H >= V_th``; hard reset ``V = S·V_reset + (1 − S)·H``. Matching: 1 − 1/τ = 0.3 (τ = 1/0.7),
#: ``v_threshold`` = 0.3, reset not detached. Differences (SpikingJelly ties the reset target and the leak's
#: resting potential to one ``v_reset``): with ``v_reset = 0`` a spike leaves ``h = 0`` where the official neuron
#: leaves ``0.3·0.3 = 0.09`` (``v_reset = 0.3`` would instead add a bias 0.21 every step; the soft reset leaves
#: ``0.3·(u − 0.3)``); and the fused kernels have no rectangle surrogate (Sigmoid, ATan, PiecewiseQuadratic,
#: PiecewiseExp, SoftSign, SuperSpike, Erf), so ``PiecewiseQuadratic(alpha=2)``: a triangle of the same peak (2) and
#: area (1), on ``|x| < 0.5`` instead of ``|x| < 0.25``. Same arithmetic per step and the same memory traffic: the
#: timing compares like with like.
SJ_LIF_KWARGS = dict(tau=1 / 0.7, decay_input=False, v_threshold=0.3, v_reset=0.0, detach_reset=False)
SJ_LIF_SURROGATE = ("PiecewiseQuadratic", 2.0)


def build_spikingjelly(T: int, attention: str, dtype, neuron_kind: str = "official"):
    """The Gesture net in SpikingJelly (multi-step, ``[T, B, ...]``); ``neuron_kind`` 'official' (the official
    neuron as a Python time loop of torch ops, autograd through every step) or 'sjlif' (SpikingJelly's fused
    multi-step ``LIFNode`` with :data:`SJ_LIF_KWARGS`: its CUDA/Triton kernels on a GPU, its torch code on CPU)."""
    import torch
    from spikingjelly.activation_based import layer

    v_th, alpha, a = 0.3, 0.3, 0.5

    def make_neuron():
        if neuron_kind == "official":
            return OfficialLIF()
        from spikingjelly.activation_based import neuron, surrogate

        sg_name, sg_alpha = SJ_LIF_SURROGATE
        return neuron.LIFNode(surrogate_function=getattr(surrogate, sg_name)(alpha=sg_alpha), step_mode="m",
                              **SJ_LIF_KWARGS)

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return (u >= v_th).to(u.dtype)

        @staticmethod
        def backward(ctx, g):
            (u,) = ctx.saved_tensors
            return g * ((u - v_th).abs() < a / 2).to(g.dtype) / a

    class OfficialLIF(torch.nn.Module):
        """MA_SNN/module/LIF.py over a [T, B, ...] sequence."""

        def forward(self, x):
            h = torch.zeros_like(x[0])
            out = []
            for t in range(x.shape[0]):
                u = h + x[t]
                s = Spike.apply(u)
                h = (s * v_th + (1 - s) * u) * alpha
                out.append(s)
            return torch.stack(out)

    class FCTimeAttention(torch.nn.Module):
        """Official TimeAttention on [T, B, N] (1x1-conv MLP T -> T//t_ratio -> T, no bias), then ReLU."""

        def __init__(self, T, t_ratio=5):
            super().__init__()
            self.fc1 = torch.nn.Linear(T, T // t_ratio, bias=False)
            self.fc2 = torch.nn.Linear(T // t_ratio, T, bias=False)

        def forward(self, x):
            xb = x.transpose(0, 1)  # [B, T, N]
            mlp = lambda v: self.fc2(torch.relu(self.fc1(v)))  # noqa: E731
            w = torch.sigmoid(mlp(xb.mean(2)) + mlp(xb.amax(2)))[..., None]
            return torch.relu(w * xb).transpose(0, 1)

    use_t, use_c, use_s = ("T" in attention), ("C" in attention), ("S" in attention)
    if attention == "no":
        use_t = use_c = use_s = False
    mods = []
    c_in = GESTURE["in_ch"]
    hw = GESTURE["input_hw"]
    for c_out, pool in zip(GESTURE["channels"], GESTURE["pools"]):
        mods += [layer.Conv2d(c_in, c_out, 3, padding=1, bias=True, step_mode="m"),
                 layer.BatchNorm2d(c_out, step_mode="m")]
        if pool > 1:
            mods.append(layer.AvgPool2d(pool, step_mode="m"))
        if use_t or use_c or use_s:
            mods.append(layer.attention.MultiDimensionalAttention(
                T, c_out, reduction_t=jb.gesture_t_ratio(T), reduction_c=8, kernel_size=3,
                use_temporal=use_t, use_channel=use_c, use_spatial=use_s))
        mods.append(make_neuron())
        c_in, hw = c_out, hw // pool
    mods.append(layer.Flatten(step_mode="m"))
    sizes = [c_in * hw * hw, *GESTURE["fc"], GESTURE["num_classes"]]
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        mods += [layer.Linear(n_in, n_out, bias=True, step_mode="m"), layer.BatchNorm1d(n_out, step_mode="m")]
        if use_t:
            mods.append(FCTimeAttention(T, jb.gesture_t_ratio(T)))
        mods.append(make_neuron())
    return torch.nn.Sequential(*mods).to(dtype)


def run_torch(args) -> dict:
    import resource

    import numpy as np
    import torch

    torch.set_num_threads(args.threads or os.cpu_count())
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    from spikingjelly.activation_based import functional as sj_functional

    torch.manual_seed(0)
    neuron_kind = "sjlif" if args.child == "sjlif" else "official"
    net = build_spikingjelly(args.T, args.attention, torch.float32, neuron_kind).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    rng = np.random.default_rng(0)
    hw, c = GESTURE["input_hw"], GESTURE["in_ch"]
    frames = torch.as_tensor(rng.poisson(0.3, size=(args.T, args.batch, c, hw, hw)).astype(np.float32), device=dev)
    labels = torch.as_tensor(rng.integers(0, GESTURE["num_classes"], size=(args.batch,)), device=dev)
    onehot = torch.nn.functional.one_hot(labels, GESTURE["num_classes"]).float()

    def step():
        opt.zero_grad(set_to_none=True)
        sj_functional.reset_net(net)  # LIFNode keeps its last membrane state: every step starts from v = v_reset
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=(dtype == torch.bfloat16)):
            out = net(frames).mean(0)
        loss = torch.nn.functional.mse_loss(out.float(), onehot)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return float(loss)

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        mem, kind = torch.cuda.max_memory_allocated() / 2**20, "torch_cuda_max_memory_allocated"
    else:
        mem, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss"
    import spikingjelly

    execution = {"neuron": neuron_kind, "device": dev.type, "autocast": args.dtype if dtype != torch.float32 else None,
                 "threads": torch.get_num_threads()}
    if neuron_kind == "sjlif":
        execution["lif"] = dict(SJ_LIF_KWARGS, surrogate=f"{SJ_LIF_SURROGATE[0]}(alpha={SJ_LIF_SURROGATE[1]})")
        execution["lif_implementation"] = _sj_lif_implementation(dev)
    return dict(
        framework="spikingjelly" if neuron_kind == "official" else "spikingjelly-lif", execution=execution,
        torch_version=torch.__version__,
        spikingjelly_version=_sj_version(spikingjelly), model="dvs_gesture",
        attention=args.attention, T=args.T, batch=args.batch, dtype=args.dtype,
        devices=f"1x{dev.type}" + (f":{torch.cuda.get_device_name()}" if dev.type == "cuda" else ""),
        step_seconds=jb.summary(times), compile_seconds=0.0, first_step_seconds=first, peak_rss_mb=mem,
        memory_kind=kind, gflops=None, gflops_per_s=None, loss=loss,
        parameters=sum(p.numel() for p in net.parameters()),
    )


def _sj_version(module) -> str:
    try:
        from importlib.metadata import version

        return version("spikingjelly")
    except Exception:  # noqa: BLE001
        return getattr(module, "__version__", "2.x")


def _sj_lif_implementation(dev) -> str:
    """Which implementation SpikingJelly's multi-step LIF ran: 'cpu' (its torch code), or on CUDA the one its
    selector picked ('cuda' native, 'triton' or 'torch'; ``SJ_LIF_CUDA_IMPLEMENTATION`` forces one)."""
    if dev.type != "cuda":
        return "cpu"
    try:
        from spikingjelly._ops.lif import _selection

        chosen = {getattr(v, "name", str(v)) for v in getattr(_selection, "_selections", {}).values()}
        return ",".join(sorted(chosen)) or "unknown (none selected: torch reference path?)"
    except Exception as e:  # noqa: BLE001 - private API; report rather than fail the run
        return f"unknown ({type(e).__name__}: {e})"


# --------------------------------------------------------------------------------------------------- parent


def main(argv=None):
    p = jb.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="timed steps per child (after one warm-up/compile step)")
    p.add_argument("--reps", type=int, default=2, help="child runs per framework, alternated A B A B")
    p.add_argument("--attention", default="TCSA")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=2, help="torch threads and XLA CPU threads (0: all cores)")
    p.add_argument("--frameworks", default="jax,torch",
                   help="comma list of jax, torch (SpikingJelly with the official neuron as a Python loop), sjlif "
                        "(SpikingJelly with its fused multi-step LIFNode, the closest settings: see SJ_LIF_KWARGS)")
    p.add_argument("--compilation-cache", default="", metavar="DIR",
                   help="masnn-jax: JAX's persistent compilation cache in DIR (default off: compile times uncached)")
    p.add_argument("--jax-set", action="append", default=[], metavar="KEY=VALUE",
                   help="config.model override for masnn-jax, e.g. conv_impl=xla, remat=layer")
    p.add_argument("--no-hugetlb", action="store_true", help="do not set GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test defaults: T 5, batch 2, 1 step, 1 rep (flags given explicitly keep their values)")
    p.add_argument("--child", choices=["jax", "torch", "sjlif"], help=argparse.SUPPRESS)
    args = jb.parse_args(p, argv, quick=dict(T=5, batch=2, steps=1, reps=1))
    jb.check_at_least(args, T=1, batch=1, steps=1, reps=1)  # the user's values, --quick or not
    if args.child == "jax":
        jb.emit(run_jax(args))
        return
    if args.child in ("torch", "sjlif"):
        jb.emit(run_torch(args))
        return

    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    bad = sorted(set(frameworks) - {"jax", "torch", "sjlif"})
    if bad or not frameworks:
        jb.fail(f"--frameworks takes a comma list of jax,torch,sjlif; got {args.frameworks!r}")
    jb.check_threads(args.threads)
    missing = [m for m in ("torch", "spikingjelly") if importlib.util.find_spec(m) is None]
    if missing and {"torch", "sjlif"} & set(frameworks):
        jb.fail(f"--frameworks {args.frameworks} needs {' and '.join(missing)}, not installed here: install the "
                "parity extra (pip install -e '.[parity]', see the README) or pass --frameworks jax")
    if "jax" in frameworks:  # a bad --jax-set is one line here, not a traceback from every child
        jb.check_model_config(jb.gesture_model_config(args.T, attention=args.attention, **_parse_set(args.jax_set)))
    env = dict(os.environ)
    if not args.no_hugetlb:
        env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
    hugetlb = env.get("GLIBC_TUNABLES", "")
    base = [sys.executable, os.path.abspath(__file__), "--T", str(args.T), "--batch", str(args.batch),
            "--steps", str(args.steps), "--attention", args.attention, "--dtype", args.dtype,
            "--threads", str(args.threads)]
    if args.compilation_cache:
        base += ["--compilation-cache", args.compilation_cache]
    for item in args.jax_set:
        base += ["--jax-set", item]
    failed = 0
    results = {f: [] for f in frameworks}
    for rep in range(args.reps):
        order = frameworks if rep % 2 == 0 else frameworks[::-1]
        for fw in order:
            proc = subprocess.run(base + ["--child", fw], env=env, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                print(json.dumps({"framework": fw, "error": proc.stderr[-3000:], "returncode": proc.returncode}),
                      flush=True)
                failed += 1
                continue
            row = json.loads(lines[-1]) | {"rep": rep, "glibc_tunables": hugetlb}
            results[fw].append(row)
            print(json.dumps(row), flush=True)

    def agg(rows, key):
        vals = [r[key]["median"] if isinstance(r[key], dict) else r[key] for r in rows if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    summary = {"summary": True, "T": args.T, "batch": args.batch, "dtype": args.dtype, "attention": args.attention,
               "glibc_tunables": hugetlb, "jax_options": _parse_set(args.jax_set)}
    for fw, rows in results.items():
        summary[fw] = {"step_seconds_median": agg(rows, "step_seconds"), "peak_rss_mb": agg(rows, "peak_rss_mb"),
                       "runs": len(rows)}
    if all(results.get(f) for f in ("jax", "torch")):
        j, t = summary["jax"], summary["torch"]
        summary["speedup_jax_over_sj"] = t["step_seconds_median"] / j["step_seconds_median"]
        summary["memory_ratio_jax_to_sj"] = j["peak_rss_mb"] / t["peak_rss_mb"]
        # A B alternation: the ratio within each (jax, torch) pair, so drift in machine load cancels out.
        pairs = [tr["step_seconds"]["median"] / jr["step_seconds"]["median"]
                 for jr, tr in zip(results["jax"], results["torch"])]
        summary["speedup_per_pair"] = pairs
    if all(results.get(f) for f in ("jax", "sjlif")):
        j, t = summary["jax"], summary["sjlif"]
        summary["speedup_jax_over_sjlif"] = t["step_seconds_median"] / j["step_seconds_median"]
        summary["memory_ratio_jax_to_sjlif"] = j["peak_rss_mb"] / t["peak_rss_mb"]
    print(json.dumps(summary), flush=True)
    if failed:
        raise SystemExit(f"error: {failed} child run(s) failed (their stderr is in the 'error' lines above)")


if __name__ == "__main__":
    main()
