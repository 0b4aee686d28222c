"""The machine's measured throughput, so that model results can be read as a fraction of what the hardware does.

Prints one JSON line per measurement: square matmul (fp32, bf16 in / fp32 accumulate) and the Gesture net's
biggest conv (3x3, 64->128, 32x32, NHWC, fwd+bwd) in JAX — XLA's convolution and masnn_jax.snn.ops' im2col — and, if
torch is installed, the same in torch. Median of ``--repeats`` after a warm-up.

Usage::

    python benchmarks/peak.py                  # CPU defaults (matmul 2048, conv batch 256)
    python benchmarks/peak.py --quick          # tiny sizes
    python benchmarks/peak.py --matmul 8192 --conv-batch 1024   # a GPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _jaxbench as jb  # noqa: E402


def _time(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts


def jax_rows(args):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from masnn_jax.snn import ops

    dev = jb.devices_str()
    rng = np.random.default_rng(0)
    n = args.matmul
    for dt in ("float32", "bfloat16"):
        a = jnp.asarray(rng.standard_normal((n, n)), dt)
        b = jnp.asarray(rng.standard_normal((n, n)), dt)
        f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
        med, ts = _time(lambda: f(a, b).block_until_ready(), args.repeats)
        jb.emit(dict(framework="jax", op=f"matmul_{n}", dtype=dt, devices=dev, seconds=med,
                     gflops=2 * n**3 / 1e9, gflops_per_s=2 * n**3 / med / 1e9))
    nb, hw, cin, cout = args.conv_batch, 32, 64, 128
    x = jnp.asarray(rng.random((nb, hw, hw, cin)) < 0.2, jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) * 0.05, jnp.float32)
    g = jnp.asarray(rng.standard_normal((nb, hw, hw, cout)), jnp.float32)
    flops = 2 * nb * hw * hw * 9 * cin * cout
    impls = {
        "xla": lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                         dimension_numbers=("NHWC", "HWIO", "NHWC")),
        "im2col": lambda x, w: ops.im2col_conv(x, w, (1, 1), ((1, 1), (1, 1))),
    }
    for dt in ("float32", "bfloat16"):
        for name, conv in impls.items():
            xd, wd, gd = x.astype(dt), w.astype(dt), g.astype(dt)
            fwd = jax.jit(conv)
            bwd = jax.jit(jax.grad(lambda x, w: jnp.vdot(conv(x, w), gd).astype(jnp.float32), (0, 1)))
            for what, fn, fl in (("fwd", lambda: fwd(xd, wd).block_until_ready(), flops),
                                 ("fwd+bwd", lambda: jax.block_until_ready(bwd(xd, wd)), 3 * flops)):
                med, _ = _time(fn, args.repeats)
                jb.emit(dict(framework="jax", op=f"conv3x3_{cin}to{cout}_{hw}x{hw}_b{nb}_{what}", impl=name,
                             dtype=dt, devices=dev, seconds=med, gflops=fl / 1e9, gflops_per_s=fl / med / 1e9))


def torch_rows(args):
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(args.threads or os.cpu_count())
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    devs = f"1x{dev.type}"
    n = args.matmul
    for dt in (torch.float32, torch.bfloat16):
        a = torch.randn(n, n, device=dev, dtype=dt)
        b = torch.randn(n, n, device=dev, dtype=dt)
        med, _ = _time(lambda: (a @ b, sync()), args.repeats)
        jb.emit(dict(framework="torch", op=f"matmul_{n}", dtype=str(dt).split(".")[-1], devices=devs, seconds=med,
                     gflops=2 * n**3 / 1e9, gflops_per_s=2 * n**3 / med / 1e9))
    nb, hw, cin, cout = args.conv_batch, 32, 64, 128
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1).to(dev)
    x = (torch.rand(nb, cin, hw, hw, device=dev) < 0.2).float().requires_grad_(True)
    g = torch.randn(nb, cout, hw, hw, device=dev)
    flops = 2 * nb * hw * hw * 9 * cin * cout

    def fb():
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).backward(g)
        sync()

    with torch.no_grad():
        med, _ = _time(lambda: (conv(x), sync()), args.repeats)
    jb.emit(dict(framework="torch", op=f"conv3x3_{cin}to{cout}_{hw}x{hw}_b{nb}_fwd", impl="native", dtype="float32",
                 devices=devs, seconds=med, gflops=flops / 1e9, gflops_per_s=flops / med / 1e9))
    med, _ = _time(fb, args.repeats)
    jb.emit(dict(framework="torch", op=f"conv3x3_{cin}to{cout}_{hw}x{hw}_b{nb}_fwd+bwd", impl="native",
                 dtype="float32", devices=devs, seconds=med, gflops=3 * flops / 1e9, gflops_per_s=3 * flops / med / 1e9))


def main(argv=None):
    p = jb.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--matmul", type=int, default=2048, help="square matmul size n (n x n @ n x n)")
    p.add_argument("--conv-batch", type=int, default=256, help="batch of the 3x3 conv")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median reported)")
    p.add_argument("--threads", type=int, default=2, help="XLA CPU / torch threads (0: all cores)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="tiny defaults: matmul 256, conv batch 4, 2 repeats (flags given explicitly keep their values)")
    args = jb.parse_args(p, argv, quick=dict(matmul=256, conv_batch=4, repeats=2))
    jb.check_at_least(args, matmul=1, conv_batch=1, repeats=1)  # the user's values, --quick or not
    jb.set_threads(args.threads)
    jax_rows(args)
    if not args.no_torch:
        torch_rows(args)


if __name__ == "__main__":
    main()
