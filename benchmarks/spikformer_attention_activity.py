"""What MA-SNN multi-dimensional attention inside Spikformer does to firing rates and synaptic operations at
initialisation (issue 16, item 7).

Builds the digits-DVS Spikformer (``configs/spikformer_digits_dvs.py``: 16×16×2 event frames, T = 8, SPS 8/16/32/64,
one block, 16 tokens) once without attention and once per scheme (``--schemes``, default no / TA / CA / SA / TCSA)
with the scheme at ``--where`` (``sps``: ``config.model.sps_attention`` on every SPS stage's and the RPE's neuron;
``block``: ``config.model.block_attention`` on the block's branch-output neurons; ``both``), placement
``--placement`` (``config.model.attention_placement``). Every model gets the **same backbone weights** (the
attention-free model's parameters are copied in; only the attention modules' own parameters differ), BatchNorm in
train mode (batch statistics, as a network at the start of training), and one batch of the config's real test data
(the embedded digits turned into events). Firing rates come from the model's own recorded forward pass
(:func:`masnn_jax.analysis.collect_activity`), operation counts and energy from
:meth:`~masnn_jax.models.spikformer.Spikformer.operation_counts` and
:func:`masnn_jax.analysis.energy.energy_report`, both the honest count (the SEW residual stream's maps as MACs)
and the paper's (as SOPs at the rate of the stream's last writer), plus a sparse variant of the honest count
(those maps pay MACs only on the stream's non-zero entries, measured here by running ``Block.__call__`` unrolled);
45 nm fp32 energies (4.6 / 0.9 pJ).

Writes ``<out>/spikformer_attention_activity_<where>_<placement>.json``; prints one JSON line per model and a summary table.

Usage::

    python benchmarks/spikformer_attention_activity.py [--schemes no,TA,CA,SA,TCSA] [--where both]
        [--placement input] [--batch 120] [--seed 0] [--out benchmarks/results]
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import _jaxbench as jb  # noqa: E402  (the standard library only: flags are checked before jax is imported)


def scheme_config(scheme: str, args):
    """The digits-DVS Spikformer config with ``scheme`` at ``--where`` ('no': the attention-free model)."""
    cfg = _config(args)
    if scheme != "no":
        if args.where in ("sps", "both"):
            cfg.model.sps_attention = scheme
        if args.where in ("block", "both"):
            cfg.model.block_attention = scheme
    return cfg


def measure(scheme: str, base_state, batch: dict, args) -> dict:
    import jax
    from flax import nnx

    from masnn_jax import analysis, models
    from masnn_jax.analysis import energy as energy_lib

    cfg = scheme_config(scheme, args)
    t0 = time.perf_counter()
    with jax.default_prng_impl("rbg"):
        model = models.build(cfg.model, rngs=nnx.Rngs(args.seed))
    if base_state is not None:  # the attention-free model's backbone weights and BN statistics
        nnx.update(model, base_state)
        mine = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
        for path, v in nnx.to_flat_state(base_state.filter(nnx.Param)):
            if not bool(jax.numpy.array_equal(mine[path][...], v[...])):
                raise RuntimeError(f"backbone parameter {path} was not copied")
    model.train()  # batch statistics: a network at initialisation
    stats = analysis.collect_activity(model, [batch])
    ops = energy_lib.count_operations(model)
    honest = energy_lib.energy_report(ops, stats, "45nm_fp32", input_kind=model.input_kind)[1]
    paper = energy_lib.energy_report(ops, stats, "45nm_fp32", input_kind=model.input_kind, convention="paper")[1]
    keys = ("sops", "mac_ops", "ac_ops", "attention_energy_pj", "energy_pj")
    density = stream_density(model, batch["frames"])
    # sparse variant of the honest count: the stream-fed maps pay MACs only on the stream's non-zero entries
    saved = sum(model.T * op.macs * (1.0 - density[op.name]) for op in ops if op.name in density)
    sparse = {"mac_ops": float(honest["mac_ops"] - saved), "ac_ops": float(honest["ac_ops"]),
              "energy_pj": float(honest["energy_pj"] - energy_lib.get_energy_model("45nm_fp32").e_mac * saved)}
    return {
        "scheme": scheme,
        "where": args.where,
        "placement": args.placement,
        "firing_rate": {n: float(r) for n, r in zip(stats.names, stats.firing_rate)},
        "network_firing_rate": float(stats.network_firing_rate),
        "spikes_per_sample": float(stats.spikes_per_sample.sum()),
        "silent_layers": [n for n, r in zip(stats.names, stats.firing_rate) if r == 0],
        "honest": {k: float(honest[k]) for k in keys},
        "paper": {k: float(paper[k]) for k in keys},
        "stream_density": density,
        "honest_sparse_stream": sparse,
        "dense_macs_per_step": int(honest["macs"]),
        "samples": int(stats.samples),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def stream_density(model, frames) -> dict[str, float]:
    """Non-zero fraction of the SEW residual stream where each stream-fed map reads it (op name -> fraction):
    the SPS output for block 0's q/k/v, ``x + SSA(x)`` for its fc1, and so on (``Block.__call__`` unrolled)."""
    import jax.numpy as jnp
    from flax import nnx

    @nnx.jit
    def run(m, x):
        s = m.sps(m._sequence(x))
        b, t, gh, gw, d = s.shape
        s = s.reshape(b, t, gh * gw, d)
        out = []
        for blk in m.blocks:
            out.append(jnp.mean(s != 0))
            s = s + blk.attn(s)
            out.append(jnp.mean(s != 0))
            s = s + blk.mlp(s)
        return out

    frames = jnp.asarray(frames)
    if frames.ndim == 6:  # the loader's (B, windows, T, H, W, C): every window is one sample
        frames = frames.reshape((-1,) + frames.shape[2:])
    fr = [float(v) for v in run(model, frames)]
    dens = {}
    for j in range(len(model.blocks)):
        for name in ("q", "k", "v"):
            dens[f"block{j}.attn.{name}"] = fr[2 * j]
        dens[f"block{j}.mlp.fc1"] = fr[2 * j + 1]
    return dens


def _config(args):
    sys.path.insert(0, os.path.join(ROOT, "configs"))
    import importlib

    cfg = importlib.import_module("spikformer_digits_dvs").get_config()
    cfg.model.attention_placement = args.placement
    return cfg


def _batch(args) -> dict:
    import numpy as np

    from masnn_jax import data as data_lib

    cfg = _config(args)
    dataset = data_lib.build(cfg.data, "test")
    loader = data_lib.make_loader(dataset, batch_size=args.batch, shuffle=False, seed=0, epoch=0,
                                  drop_remainder=True)
    batch = next(iter(loader))
    return {k: np.asarray(v) for k, v in batch.items()}


def table(results: list[dict]) -> str:
    layers = list(results[0]["firing_rate"])
    head = "| layer | " + " | ".join(r["scheme"] for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    for name in layers:
        lines.append(f"| {name} | " + " | ".join(f"{r['firing_rate'][name]:.4f}" for r in results) + " |")
    lines.append("| network firing rate | " + " | ".join(f"{r['network_firing_rate']:.4f}" for r in results) + " |")
    for conv in ("honest", "paper"):
        lines.append(f"| {conv}: AC ops (M) | " + " | ".join(f"{r[conv]['ac_ops'] / 1e6:.3f}" for r in results)
                     + " |")
        lines.append(f"| {conv}: MAC ops (M) | " + " | ".join(f"{r[conv]['mac_ops'] / 1e6:.3f}" for r in results)
                     + " |")
        lines.append(f"| {conv}: energy (µJ) | " + " | ".join(f"{r[conv]['energy_pj'] / 1e6:.3f}" for r in results)
                     + " |")
        if conv == "honest":
            lines.append("| stream non-zero fraction (q/k/v; fc1) | " + " | ".join(
                f"{r['stream_density']['block0.attn.q']:.3f}; {r['stream_density']['block0.mlp.fc1']:.3f}"
                for r in results) + " |")
            lines.append("| honest, MACs on the stream's non-zeros: energy (µJ) | " + " | ".join(
                f"{r['honest_sparse_stream']['energy_pj'] / 1e6:.3f}" for r in results) + " |")
    lines.append("| attention modules' energy (µJ) | "
                 + " | ".join(f"{r['honest']['attention_energy_pj'] / 1e6:.3f}" for r in results) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = jb.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schemes", default="no,TA,CA,SA,TCSA", help="comma list: 'no' and MA-SNN attention schemes")
    p.add_argument("--where", choices=("sps", "block", "both"), default="both")
    p.add_argument("--placement", choices=("input", "membrane"), default="input")
    p.add_argument("--batch", type=int, default=120, help="test samples in the one batch (>= 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args(argv)
    jb.check_at_least(args, batch=1)
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    if not schemes:
        jb.fail(f"--schemes is empty: give at least one scheme (e.g. no,TCSA), got {args.schemes!r}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        jb.fail(f"--out {args.out!r} is a file, not a folder")
    for s in schemes:  # a bad scheme is one line here, before the data is loaded and any model runs
        jb.check_model_config(scheme_config(s, args).model)
    from flax import nnx

    batch = _batch(args)
    import jax

    from masnn_jax import models

    with jax.default_prng_impl("rbg"):
        base = models.build(_config(args).model, rngs=nnx.Rngs(args.seed))
    base_state = nnx.state(base)
    results = []
    for s in schemes:
        r = measure(s, base_state, batch, args)
        print(json.dumps({k: r[k] for k in ("scheme", "network_firing_rate", "silent_layers", "honest", "paper",
                                             "seconds")}), flush=True)
        results.append(r)
    report = {
        "description": "digits-DVS Spikformer at initialisation (same backbone weights for every scheme, BN batch "
                       "statistics), one batch of real test data; firing rate per recorded layer; operations per "
                       "sample; energy 45 nm fp32 (4.6 pJ MAC, 0.9 pJ AC); honest = SEW residual stream's maps as "
                       "MACs, paper = as SOPs at the rate of the stream's last writer",
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "platform": platform.machine(),
        "results": results,
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"spikformer_attention_activity_{args.where}_{args.placement}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(table(results))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
