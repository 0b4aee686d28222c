"""Per-block gradient norms of MS-Res-SNN-104 vs Att-Res-SNN-104 at initialisation (the paper's gradient-norm
equality / block-dynamical-isometry argument for the attention residual block, Yao et al., TPAMI 2023).

Builds both nets (``config.model.name='att_res_snn'``, ``attention='no'`` = MS-Res-SNN, ``attention='CSA'`` =
Att-Res-SNN; everything else identical: same blocks, widths, stem, ``last_bn_init``, seed) at reduced width, and
measures with :func:`masnn_jax.analysis.gradient_norms` (the analysis' own gradient function: the model's forward
pass, BatchNorm in train mode, the surrogate gradient) the L2 norm of ``∂L/∂x_l`` for every residual block ``l``
(``x_l`` its output; stacked blocks one each), averaged over a few batches of random images with random labels.
Also ``block_ratio_l = ‖∂L/∂x_{l-1}‖ / ‖∂L/∂x_l‖`` (gradient norm equality ⇔ ≈ 1 for every block).

Writes ``<out>/resnet_gradient_norms.json`` and ``.png`` (norm vs block index, log scale; ratio vs block index),
prints a summary JSON line.

Usage::

    python benchmarks/resnet_gradient_norms.py [--blocks 3,8,32,8] [--widths 16,32,64,128] [--size 32]
        [--batch 8] [--batches 2] [--T 1] [--seed 0] [--last-bn-init 0.1] [--out benchmarks/results]
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _jaxbench as jb  # noqa: E402  (the standard library only: flags are checked before jax is imported)


def _ints(text: str) -> tuple[int, ...]:
    """``--blocks`` / ``--widths``: a comma list of integers >= 1, as a tuple."""
    return tuple(jb.positive_ints(text))


def model_config(attention: str, args) -> dict:
    """``config.model`` of the measured net (MS-Res-SNN for ``attention='no'``)."""
    return dict(name="att_res_snn", blocks=args.blocks, widths=args.widths, T=args.T, num_classes=args.classes,
                input_shape=(args.size, args.size, 3), attention=attention, c_ratio=args.c_ratio,
                last_bn_init=args.last_bn_init, dropout=0.0)


def measure(attention: str, args) -> dict:
    import jax
    from flax import nnx

    from masnn_jax import analysis, models

    cfg = model_config(attention, args)
    t0 = time.perf_counter()
    with jax.default_prng_impl("rbg"):  # same initialisers; threefry compiles seconds per parameter shape on CPU
        model = models.build(cfg, rngs=nnx.Rngs(args.seed))
    rng = np.random.default_rng(args.seed + 1)
    batches = [{"image": rng.normal(size=(args.batch, args.size, args.size, 3)).astype(np.float32),
                "label": rng.integers(0, args.classes, size=(args.batch,))} for _ in range(args.batches)]
    g = analysis.gradient_norms(model, batches, loss="cross_entropy", num_batches=args.batches, train_mode=True)
    seconds = time.perf_counter() - t0
    out = np.array([l["output"] for l in g["layers"]], np.float64)
    ratio = np.array([l["block_ratio"] for l in g["layers"]], np.float64)
    log_r = np.log(ratio[1:])  # block 1 (stride 2 after the stem) measured against the stem's output gradient
    names = [l["name"] for l in g["layers"]]
    stacked = np.log(np.array([q for n, q in zip(names, ratio) if not n.endswith(".block1")]))  # identity shortcut
    return {
        "attention": attention,
        "blocks": [l["name"] for l in g["layers"]],
        "output_grad_norm": out.tolist(),
        "block_ratio": ratio.tolist(),
        "param_grad_norm": [l["param"] for l in g["layers"]],
        "input_grad_norm": g["input_grad_norm"],
        "loss": g["loss"],
        "summary": {
            "first_over_last_output_norm": float(out[0] / out[-1]),
            "max_over_min_output_norm": float(out.max() / out.min()),
            "std_log10_output_norm": float(np.std(np.log10(out))),
            "mean_abs_log_block_ratio": float(np.mean(np.abs(log_r))),
            "max_abs_log_block_ratio": float(np.max(np.abs(log_r))),
            "geo_mean_block_ratio": float(np.exp(np.mean(log_r))),
            "identity_blocks_mean_abs_log_ratio": float(np.mean(np.abs(stacked))),
            "identity_blocks_max_abs_log_ratio": float(np.max(np.abs(stacked))),
            "transition_block_ratios": {n: float(q) for n, q in zip(names, ratio) if n.endswith(".block1")},
            "per_stage_first_over_last_output_norm": {
                s: float(out[idx[0]] / out[idx[-1]]) for s in sorted({n.split(".")[0] for n in names})
                for idx in [[i for i, n in enumerate(names) if n.startswith(s + ".")]]},
        },
        "seconds": round(seconds, 1),
    }


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    labels = {"no": "MS-Res-SNN (no attention)", "CSA": "Att-Res-SNN (CSA)"}
    for r in results:
        idx = np.arange(1, len(r["output_grad_norm"]) + 1)
        a.semilogy(idx, r["output_grad_norm"], marker=".", label=labels.get(r["attention"], r["attention"]))
        b.plot(idx[1:], r["block_ratio"][1:], marker=".", label=labels.get(r["attention"], r["attention"]))
    names = results[0]["blocks"]
    starts = [i + 1 for i, n in enumerate(names) if n.endswith(".block1")]
    for ax in (a, b):
        for s in starts:
            ax.axvline(s, color="0.85", lw=0.8, zorder=0)
        ax.set_xlabel("residual block (forward order; grey: first block of a stage)")
        ax.legend()
    a.set_ylabel(r"$\|\partial L/\partial x_l\|_2$ (block output)")
    a.set_title("gradient norm per block at initialisation")
    b.axhline(1.0, color="k", lw=0.8, ls="--")
    b.set_ylabel(r"$\|\partial L/\partial x_{l-1}\| / \|\partial L/\partial x_l\|$")
    b.set_title("per-block gradient ratio (1 = norm equality)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    p = jb.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=_ints, default=(3, 8, 32, 8), help="blocks per stage (integers >= 1)")
    p.add_argument("--widths", type=_ints, default=(16, 32, 64, 128), help="channels per stage (one per stage)")
    p.add_argument("--size", type=int, default=32, help="image side (divisible by 2^(stages + 1))")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=2, help="random batches averaged over (>= 1)")
    p.add_argument("--T", type=int, default=1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--c-ratio", dest="c_ratio", type=int, default=8)
    p.add_argument("--last-bn-init", dest="last_bn_init", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attentions", default="no,CSA", help="comma list of config.model.attention values")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    jb.check_at_least(args, size=1, batch=1, batches=1, T=1, classes=1, c_ratio=1)
    attentions = [a.strip() for a in args.attentions.split(",") if a.strip()]
    if not attentions:
        jb.fail(f"--attentions is empty: give at least one config.model.attention value, got {args.attentions!r}")
    if not args.blocks:
        jb.fail("--blocks is empty: give the blocks of every stage")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        jb.fail(f"--out {args.out!r} is a file, not a folder")
    for attention in attentions:  # a bad --size, --widths, --attentions ... is one line, before any model runs
        jb.check_model_config(model_config(attention, args))
    os.makedirs(args.out, exist_ok=True)
    results = [measure(a, args) for a in attentions]
    report = {
        "description": "L2 norm of dL/dx_l (x_l: output of residual block l) at initialisation, BN batch "
                       "statistics, cross-entropy on random N(0,1) images with random labels, averaged over batches",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items() if k != "out"},
        "depth": 2 * sum(args.blocks) + 2,
        "platform": platform.machine(),
        "results": results,
    }
    stem = os.path.join(args.out, "resnet_gradient_norms")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    plot(results, stem + ".png")
    print(json.dumps({"json": stem + ".json", "png": stem + ".png",
                      **{r["attention"]: {**r["summary"], "seconds": r["seconds"]} for r in results}}))


if __name__ == "__main__":
    main()
