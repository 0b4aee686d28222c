"""Compile time and compiled memory of one Att-Res-SNN train step (``masnn_jax.train.steps.train_step``).

Prints one JSON object: for each depth (18/34/104 by default) the seconds to lower and compile the jitted train
step (SGD with momentum from :func:`masnn_jax.train.optim.make_optimizer`, :class:`masnn_jax.train.tasks.ImageTask`)
at 224×224×3, batch 2, T=1, and for every (depth, T) asked for the ``compiled.memory_analysis()`` temp / argument /
output bytes. Nothing is executed: the step is only lowered and compiled.

Usage::

    python benchmarks/resnet_compile.py [--depths 18,34,104] [--T 1,4] [--batch 2] [--size 224] [--no-scan]
        [--conv-impl auto|xla|im2col] [--unroll 1]
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _jaxbench as jb  # noqa: E402  (the standard library only: flags are checked before jax is imported)


def model_config(depth: int, T: int, size: int, scan_blocks: bool, conv_impl: str = "auto", unroll: int = 1) -> dict:
    """``config.model`` of the Att-Res-SNN whose train step is compiled."""
    return dict(name="att_res_snn", depth=depth, T=T, input_shape=(size, size, 3), num_classes=1000,
                attention="CSA", scan_blocks=scan_blocks, conv_impl=conv_impl, unroll=unroll)


def compile_step(depth: int, T: int, batch: int, size: int, scan_blocks: bool, conv_impl: str = "auto",
                 unroll: int = 1) -> dict:
    """Lowers and compiles one train step; returns seconds (build, lower, compile) and memory_analysis bytes."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from masnn_jax import models
    from masnn_jax.config import train_defaults
    from masnn_jax.train import optim, steps, tasks

    t0 = time.perf_counter()
    cfg = model_config(depth, T, size, scan_blocks, conv_impl, unroll)
    model = nnx.eval_shape(lambda: models.build(cfg, rngs=nnx.Rngs(0)))
    tc = train_defaults(optimizer="sgd", learning_rate=0.6, momentum=0.9, weight_decay=1e-5,
                        schedule="torch_cosine", num_epochs=150, loss="cross_entropy", label_smoothing=0.1)
    tx = optim.make_optimizer(tc, steps_per_epoch=100)
    task = tasks.ImageTask(num_classes=1000, label_smoothing=0.1)
    graphdef, state = _abstract_state(model, tx)  # as steps.init_state, without allocating anything
    step = jax.jit(functools.partial(steps.train_step, graphdef=graphdef, tx=tx, task=task), donate_argnums=0)
    batch_spec = {"image": jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32),
                  "label": jax.ShapeDtypeStruct((batch,), jnp.int32)}
    t1 = time.perf_counter()
    lowered = step.lower(state, batch_spec)
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    mem = compiled.memory_analysis()
    out = {"depth": depth, "T": T, "batch": batch, "size": size, "scan_blocks": scan_blocks, "conv_impl": conv_impl,
           "build_s": round(t1 - t0, 2), "lower_s": round(t2 - t1, 2), "compile_s": round(t3 - t2, 2),
           "lower_plus_compile_s": round(t3 - t1, 2)}
    if mem is not None:
        for key in ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes"):
            out[key] = int(getattr(mem, key))
    return out


def _abstract_state(model, tx):
    """``steps.init_state`` on an abstract model: ``(graphdef, {'params', 'rest', 'opt_state'})`` of shapes."""
    import jax
    from flax import nnx

    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = jax.eval_shape(tx.init, params)
    return graphdef, {"params": params, "rest": rest, "opt_state": opt_state}


def main(argv=None) -> None:
    p = jb.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", type=jb.positive_ints, default="18,34,104", help="comma list of 18, 34, 104")
    p.add_argument("--T", type=jb.positive_ints, default="1,4",
                   help="time steps for the memory analysis of the deepest depth (comma list of integers >= 1)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=224, help="image side (a multiple of 32)")
    p.add_argument("--no-scan", action="store_true", help="run stacked blocks in a Python loop")
    p.add_argument("--conv-impl", default="auto", choices=("auto", "xla", "im2col"))
    p.add_argument("--unroll", type=int, default=1, help="neuron time-loop unroll (>= 1)")
    a = p.parse_args(argv)
    jb.check_at_least(a, batch=1, size=1, unroll=1)
    if not a.depths:
        jb.fail("--depths is empty: give at least one of 18, 34, 104")
    depths, ts = a.depths, a.T
    # every model the run compiles, built abstractly first: a bad depth or size is one line, not a traceback
    # after minutes of compiling the earlier ones
    for depth, t in [(d, 1) for d in depths] + [(depths[-1], t) for t in ts if t != 1]:
        jb.check_model_config(model_config(depth, t, a.size, not a.no_scan, a.conv_impl, a.unroll))
    import jax

    runs = []
    for depth in depths:
        runs.append(compile_step(depth, 1, a.batch, a.size, not a.no_scan, a.conv_impl, a.unroll))
    for t in ts:
        if t != 1:
            runs.append(compile_step(depths[-1], t, a.batch, a.size, not a.no_scan, a.conv_impl, a.unroll))
    print(json.dumps({"backend": jax.default_backend(), "jax": jax.__version__, "machine": platform.machine(),
                      "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
