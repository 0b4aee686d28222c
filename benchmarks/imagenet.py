"""Att-Res-SNN-18/34/104 ImageNet training and evaluation throughput: masnn-jax vs the official torch model.

For every framework × depth × T × dtype asked for, prints one JSON line: training images/s (the library's
``masnn_jax.train.steps.train_step`` with the official recipe: SGD momentum 0.9, coupled weight decay 1e-5,
per-epoch cosine from lr 0.6, label smoothing 0.1), evaluation images/s (``steps.eval_step``), the seconds to lower
and compile each, and ``compiled.memory_analysis()`` (MB) of the train step. Input is synthetic and already on the
device (a fixed normal image batch and random labels), so no data pipeline is timed.

The torch rows run a model written after the official ``Att_Res_SNN/models/resnet_2.py`` (``Snn_Conv2d`` looping over
time into an fp32 buffer, ``BatchNorm3d`` over (N, C, T, H, W), ``mem_update``, CSA after the last BN of every block,
dropout 0.2), with ``time_window`` a parameter, trained as ``train_amp.py`` does: on CUDA under
``torch.cuda.amp.autocast`` (fp16) with a ``GradScaler`` when ``--dtypes`` asks for a reduced precision, else fp32;
on CPU always fp32. ``dtype`` in a torch row says what ran.

Usage::

    python benchmarks/imagenet.py [--depths 18,34,104] [--T 1,4] [--batch 32] [--size 224]
        [--dtypes float32,bfloat16] [--frameworks jax,torch] [--steps 10] [--eval-batch N] [--no-eval]

Imports only jax, flax, optax, numpy (and torch for its rows) besides ``masnn_jax.models`` and the pure training
modules ``steps`` / ``optim`` / ``tasks``: it runs where ml_collections, absl, grain, tfds or tensorboardX are not
installed.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import _jaxbench as jb  # noqa: E402  (the standard library only: flags are checked before jax is imported)

DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 104: (3, 8, 32, 8)}
WIDTHS = (64, 128, 256, 512)
DTYPES = ("float32", "bfloat16", "float16")  # config.model.dtype values; torch runs AMP (fp16) for the reduced ones
FRAMEWORKS = ("jax", "torch")

# config.train of configs/imagenet_att_res_snn*.py (the official recipe), as a plain mapping
RECIPE = dict(
    num_epochs=150, batch_size=600, eval_batch_size=600, optimizer="sgd", learning_rate=0.6, b1=0.9, b2=0.999,
    eps=1e-8, momentum=0.9, nesterov=False, weight_decay=1e-5, weight_decay_mask="all", schedule="torch_cosine",
    plateau_factor=0.1, plateau_patience=5, min_lr=0.0, warmup_epochs=0, warmup_lr=0.0, step_epochs=30,
    step_gamma=0.1, lr_base_batch=600, max_nonfinite_steps=10, loss="cross_entropy", label_smoothing=0.1,
)


class _Cfg(dict):
    """A read-only ``config.train`` stand-in (attribute and ``.get`` access), so ml_collections is not needed."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def _train_modules():
    """``masnn_jax.train.{optim, steps, tasks}`` — without running ``masnn_jax/train/__init__.py`` (which imports
    the checkpoint and loop modules, hence ml_collections / absl / orbax) when that fails."""
    try:
        from masnn_jax.train import optim, steps, tasks
    except ImportError:
        import masnn_jax

        pkg = types.ModuleType("masnn_jax.train")
        pkg.__path__ = [os.path.join(os.path.dirname(masnn_jax.__file__), "train")]
        sys.modules["masnn_jax.train"] = pkg
        from masnn_jax.train import optim, steps, tasks
    return optim, steps, tasks


def _summary(times):
    return {"median": statistics.median(times), "min": min(times), "max": max(times)} if times else None


def _memory_mb(compiled):
    try:
        ma = compiled.memory_analysis()
        if isinstance(ma, (list, tuple)):
            ma = ma[0]
        mb = {k: round(getattr(ma, f"{k}_size_in_bytes") / 2**20, 1) for k in ("temp", "argument", "output", "alias")}
    except Exception:  # noqa: BLE001 - optional per backend
        return None
    mb["total"] = round(mb["temp"] + mb["argument"] + mb["output"], 1)
    return mb


# --------------------------------------------------------------------------------------------------------- jax


def bench_jax(depth: int, T: int, batch: int, size: int, dtype: str, steps_n: int, eval_batch: int | None) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from masnn_jax import models

    optim, steps, tasks = _train_modules()
    cfg = dict(name="att_res_snn", depth=depth, T=T, num_classes=1000, input_shape=(size, size, 3), attention="CSA",
               residual="att_res_1", placement="official", stem="7x7", last_bn_init=0.1, c_ratio=8, t_ratio=1,
               sa_kernel=3, dropout=0.2, param_dtype="float32", conv_impl="auto", batch_chunks=1, scan_blocks=True,
               unroll=1, dtype=None if dtype == "float32" else dtype)
    t0 = time.perf_counter()
    model = models.build(cfg, rngs=nnx.Rngs(445))
    tc = _Cfg(RECIPE, batch_size=batch)
    tx = optim.make_optimizer(tc, steps_per_epoch=1000)
    task = tasks.ImageTask(num_classes=1000, label_smoothing=0.1)
    graphdef, state = steps.init_state(model, tx)
    model.eval()
    graphdef_eval = nnx.graphdef(model)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.standard_normal((batch, size, size, 3), np.float32))
    labels = jnp.asarray(rng.integers(0, 1000, batch).astype(np.int32))
    train_batch = {"image": images, "label": labels}
    jax.block_until_ready((state, train_batch))
    build_s = time.perf_counter() - t0

    step = jax.jit(functools.partial(steps.train_step, graphdef=graphdef, tx=tx, task=task), donate_argnums=(0,))
    t0 = time.perf_counter()
    compiled = step.lower(state, train_batch).compile()
    compile_s = time.perf_counter() - t0
    memory = _memory_mb(compiled)
    t0 = time.perf_counter()
    state, metrics = compiled(state, train_batch)
    jax.block_until_ready((state, metrics))
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(steps_n):
        t0 = time.perf_counter()
        state, metrics = compiled(state, train_batch)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    out = {"framework": "jax", "depth": depth, "T": T, "dtype": dtype, "batch": batch, "size": size,
           "build_s": round(build_s, 2), "compile_s": round(compile_s, 2), "first_step_s": round(first_s, 3),
           "train_step_s": _summary(times), "train_images_per_s": round(batch / statistics.median(times), 2),
           "loss": float(metrics["loss"]), "memory_mb": memory}
    del compiled
    if eval_batch:
        eb = eval_batch
        eval_in = {"image": jnp.asarray(rng.standard_normal((eb, size, size, 3), np.float32)),
                   "label": jnp.asarray(rng.integers(0, 1000, eb).astype(np.int32)),
                   "mask": jnp.ones((eb,), jnp.float32)}
        ev = jax.jit(functools.partial(steps.eval_step, graphdef=graphdef_eval, task=task))
        t0 = time.perf_counter()
        ev_c = ev.lower(state, eval_in).compile()
        out["eval_compile_s"] = round(time.perf_counter() - t0, 2)
        out["eval_memory_mb"] = _memory_mb(ev_c)
        jax.block_until_ready(ev_c(state, eval_in))
        etimes = []
        for _ in range(steps_n):
            t0 = time.perf_counter()
            jax.block_until_ready(ev_c(state, eval_in))
            etimes.append(time.perf_counter() - t0)
        out.update(eval_batch=eb, eval_step_s=_summary(etimes), eval_images_per_s=round(eb / statistics.median(etimes), 2))
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            out["device_peak_mb"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
    out["device"] = f"{jax.device_count()}x{dev.platform}:{dev.device_kind}"
    return out


# ------------------------------------------------------------------------------------------------------- torch


def official_torch_net(torch, *, T: int, blocks, widths=WIDTHS, num_classes: int = 1000, c_ratio: int = 8):
    """Att-Res-SNN (CSA, membrane shortcuts) after ``Att_Res_SNN/models/resnet_2.py`` with ``time_window = T``."""
    nn, F = torch.nn, torch.nn.functional
    thresh, lens, decay = 0.5, 0.5, 0.25

    class ActFun(torch.autograd.Function):  # resnet_2.py:14-26
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return u.gt(thresh).float()

        @staticmethod
        def backward(ctx, g):
            (u,) = ctx.saved_tensors
            return g.clone() * ((u - thresh).abs() < lens).float() / (2 * lens)

    class MemUpdate(nn.Module):  # mem_update, resnet_2.py:33-51; x: (T, N, C, H, W)
        def forward(self, x):
            mem = torch.zeros_like(x[0])
            spike = torch.zeros_like(x[0])
            output = torch.zeros_like(x)
            mem_old = 0
            for i in range(T):
                mem = mem_old * decay * (1 - spike.detach()) + x[i] if i >= 1 else x[i]
                spike = ActFun.apply(mem)
                mem_old = mem.clone()
                output[i] = spike
            return output

    class TdBN(nn.BatchNorm3d):  # batch_norm_2d / batch_norm_2d1, resnet_2.py:54-97
        def __init__(self, c, gamma):
            super().__init__(c)
            nn.init.constant_(self.weight, gamma)
            nn.init.zeros_(self.bias)

        def forward(self, x):
            return super().forward(x.transpose(0, 2).contiguous().transpose(0, 1).contiguous()) \
                .contiguous().transpose(0, 1).contiguous().transpose(0, 2)

    class SnnConv2d(nn.Conv2d):  # resnet_2.py:100-148: per-step conv written into an fp32 buffer
        def forward(self, x):
            h = (x.size(3) - self.kernel_size[0] + 2 * self.padding[0]) // self.stride[0] + 1
            w = (x.size(4) - self.kernel_size[0] + 2 * self.padding[0]) // self.stride[0] + 1
            out = torch.zeros(T, x.size(1), self.out_channels, h, w, device=x.device)
            for i in range(T):
                out[i] = F.conv2d(x[i], self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
            return out

    class CA(nn.Module):  # LIF_Module.py:27-46
        def __init__(self, c):
            super().__init__()
            self.avg_pool, self.max_pool = nn.AdaptiveAvgPool3d(1), nn.AdaptiveMaxPool3d(1)
            self.sharedMLP = nn.Sequential(nn.Conv3d(c, c // c_ratio, 1, bias=False), nn.ReLU(),
                                           nn.Conv3d(c // c_ratio, c, 1, bias=False))

        def forward(self, x):  # (N, T, C, H, W)
            y = x.permute(0, 2, 1, 3, 4)
            a = self.sharedMLP(self.avg_pool(y)) + self.sharedMLP(self.max_pool(y))
            return torch.sigmoid(a).permute(0, 2, 1, 3, 4)

    class SA(nn.Module):  # LIF_Module.py:49-67
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)

        def forward(self, x):
            n, t, c, h, w = x.shape
            y = x.reshape(n, t * c, h, w)
            m = torch.cat([y.mean(1, keepdim=True), y.max(1, keepdim=True)[0]], 1)
            return torch.sigmoid(self.conv(m)).unsqueeze(1)

    class CSA(nn.Module):  # PruningCell('CSA') -> CSA: (T, N, ...) -> (N, T, ...) -> back, then ReLU
        def __init__(self, c):
            super().__init__()
            self.ca, self.sa = CA(c), SA()

        def forward(self, x):
            y = x.permute(1, 0, 2, 3, 4)
            y = self.ca(y) * y
            y = self.sa(y) * y
            return torch.relu(y).permute(1, 0, 2, 3, 4)

    class BasicBlock(nn.Module):  # resnet_2.py:152-206
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.residual_function = nn.Sequential(
                MemUpdate(), SnnConv2d(cin, cout, 3, stride, 1, bias=False), TdBN(cout, 0.5),
                MemUpdate(), SnnConv2d(cout, cout, 3, 1, 1, bias=False), TdBN(cout, 0.1), CSA(cout))
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.AvgPool3d((1, 2, 2), (1, 2, 2)),
                                              SnnConv2d(cin, cout, 1, 1, bias=False), TdBN(cout, 0.5))

        def forward(self, x):
            return self.residual_function(x) + self.shortcut(x)

    class ResNet(nn.Module):  # resnet_2.py:209-278
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Sequential(SnnConv2d(3, widths[0], 7, 2, 3, bias=False), TdBN(widths[0], 0.5))
            cin, stages = widths[0], []
            for w, n in zip(widths, blocks):
                layers = []
                for stride in [2] + [1] * (n - 1):
                    layers.append(BasicBlock(cin, w, stride))
                    cin = w
                stages.append(nn.Sequential(*layers))
            self.stages = nn.Sequential(*stages)
            self.mem_update = MemUpdate()
            self.dropout = nn.Dropout(0.2)
            self.fc = nn.Linear(cin, num_classes)

        def forward(self, x):  # (N, 3, H, W): the image at every time step
            inp = torch.zeros(T, *x.shape, device=x.device)
            for i in range(T):
                inp[i] = x
            h = self.mem_update(self.stages(self.conv1(inp)))
            h = F.adaptive_avg_pool3d(h, (None, 1, 1))
            h = h.view(h.size(0), h.size(1), -1).sum(0) / h.size(0)
            return self.fc(self.dropout(h))

    return ResNet()


def _smoothed_ce(torch, logits, labels, eps=0.1):  # train_amp.py:118-130
    logp = torch.log_softmax(logits, -1)
    onehot = torch.nn.functional.one_hot(labels, logits.shape[-1]).to(logp.dtype)
    return (-((1 - eps) * onehot + eps / logits.shape[-1]) * logp).mean(0).sum()


def bench_torch(depth: int, T: int, batch: int, size: int, dtype: str, steps_n: int, eval_batch: int | None) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    amp = cuda and dtype != "float32"
    torch.manual_seed(445)
    net = official_torch_net(torch, T=T, blocks=DEPTHS[depth]).to(dev)
    # lr 0.6 at batch 600, scaled linearly to this batch (as the jax rows' lr_base_batch does)
    opt = torch.optim.SGD(net.parameters(), lr=0.6 * batch / 600, momentum=0.9, weight_decay=1e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    images = torch.randn(batch, 3, size, size, device=dev)
    labels = torch.randint(0, 1000, (batch,), device=dev)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            loss = _smoothed_ce(torch, net(images), labels)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    net.train()
    t0 = time.perf_counter()
    loss = step()
    sync()
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(steps_n):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    out = {"framework": "torch", "depth": depth, "T": T, "dtype": "amp_float16" if amp else "float32",
           "batch": batch, "size": size, "first_step_s": round(first_s, 3), "train_step_s": _summary(times),
           "train_images_per_s": round(batch / statistics.median(times), 2), "loss": float(loss.detach())}
    if cuda:
        out["device_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if eval_batch:
        net.eval()
        ev_images = torch.randn(eval_batch, 3, size, size, device=dev)
        etimes = []
        with torch.no_grad():  # train_amp.py evaluates in fp32
            for i in range(steps_n + 1):
                t0 = time.perf_counter()
                net(ev_images).argmax(-1)
                sync()
                if i:
                    etimes.append(time.perf_counter() - t0)
        out.update(eval_batch=eval_batch, eval_step_s=_summary(etimes),
                   eval_images_per_s=round(eval_batch / statistics.median(etimes), 2))
    out["device"] = torch.cuda.get_device_name() if cuda else f"cpu:{platform.processor() or platform.machine()}"
    out["torch"] = torch.__version__
    return out


def main(argv=None) -> None:
    p = jb.ArgumentParser(description=__doc__.split("\n")[0])
    strs = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    p.add_argument("--depths", type=jb.positive_ints, default=[18, 34, 104], help="comma list of 18, 34, 104")
    p.add_argument("--T", type=jb.positive_ints, default=[1, 4], help="comma list of integers >= 1")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--eval-batch", type=int, default=None, help="evaluation batch (default: --batch)")
    p.add_argument("--no-eval", action="store_true", help="time training only")
    p.add_argument("--size", type=int, default=224, help="image side (a multiple of 32)")
    p.add_argument("--dtypes", type=strs, default=["float32", "bfloat16"], help="comma list of " + ", ".join(DTYPES))
    p.add_argument("--frameworks", type=strs, default=["jax", "torch"])
    p.add_argument("--steps", type=int, default=10, help="timed steps after the first (>= 1)")
    args = p.parse_args(argv)
    jb.check_at_least(args, batch=1, eval_batch=1, size=32, steps=1)
    if args.size % 32:
        jb.fail(f"--size must be a multiple of 32 (the net halves it 5 times), got {args.size}")
    for flag, values, allowed in (("--depths", args.depths, sorted(DEPTHS)), ("--T", args.T, None),
                                  ("--dtypes", args.dtypes, DTYPES), ("--frameworks", args.frameworks, FRAMEWORKS)):
        if not values:
            jb.fail(f"{flag} is empty: nothing to run")
        for v in values:
            if allowed is not None and v not in allowed:
                jb.fail(f"{flag}: {v!r} is not one of {', '.join(map(str, allowed))}")
    eval_batch = None if args.no_eval else (args.eval_batch or args.batch)
    for depth in args.depths:
        for T in args.T:
            for fw in args.frameworks:
                done_torch = set()
                for dtype in args.dtypes:
                    try:
                        if fw == "jax":
                            row = bench_jax(depth, T, args.batch, args.size, dtype, args.steps, eval_batch)
                        else:
                            import torch

                            ran = "amp" if torch.cuda.is_available() and dtype != "float32" else "float32"
                            if ran in done_torch:  # e.g. bfloat16 on CPU: the fp32 row already ran
                                continue
                            done_torch.add(ran)
                            row = bench_torch(depth, T, args.batch, args.size, dtype, args.steps, eval_batch)
                    except Exception as e:  # noqa: BLE001 - one failing row (e.g. out of memory) does not end the run
                        row = {"framework": fw, "depth": depth, "T": T, "dtype": dtype, "batch": args.batch,
                               "size": args.size, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
                    emit(row)


if __name__ == "__main__":
    main()
