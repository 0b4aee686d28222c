"""Operation counts and energy of the Spikformer family (:meth:`masnn_jax.models.spikformer.Spikformer.operation_counts`,
``energy_report(convention='honest'|'paper')``) against hand computations from the layer shapes and the firing
rates captured from the model's own forward pass.

Paper (Zhou et al., ICLR 2023, arXiv 2209.15425v2 App. C.2; ``shared/specs/spikformer.md`` §5):
``E = 4.6 pJ · FLOPs(first conv) + 0.9 pJ · Σ SOPs``, ``SOP = fr · T · FLOPs``. The honest count charges the maps
that read the integer-valued SEW residual stream (q/k/v, fc1, the head) as dense MACs instead.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from masnn_jax import analysis, models
from masnn_jax.analysis import energy as energy_lib

T, B, K = 2, 8, 5
H, W, C = 16, 16, 3
D, HEADS, HIDDEN, DEPTH = 32, 2, 64, 2
E_MAC, E_AC = 4.6, 0.9

TINY = dict(name="spikformer", variant="imagenet", input_kind="image", input_shape=(H, W, C), T=T, num_classes=K,
            embed_dim=D, depth=DEPTH, heads=HEADS, mlp_ratio=HIDDEN // D, pool_stages=(False, True, True, False),
            attn_order="kv_first", attn_scale=1.0)


def _hand_macs(n_tokens: int, order: str) -> dict[str, int]:
    """Dense MACs per sample and step from the layer shapes of TINY: SPS 3×3 convs at 16×16 (stage 0, 3 -> 4 ch),
    16×16 (4 -> 8; stage 1 max-pools after its neuron), 8×8 (8 -> 16; pools), 4×4 (16 -> 32), RPE 4×4 (32 -> 32);
    per block 4 maps N×D×D (q, k, v, proj), fc1 N×D×hidden, fc2 N×hidden×D, the two SSA products; head D×K."""
    n, d = n_tokens, D // HEADS
    hand = {"sps0.conv": 9 * 16 * 16 * 3 * 4, "sps1.conv": 9 * 16 * 16 * 4 * 8, "sps2.conv": 9 * 8 * 8 * 8 * 16,
            "sps3.conv": 9 * 4 * 4 * 16 * 32, "rpe.conv": 9 * 4 * 4 * 32 * 32}
    for j in range(DEPTH):
        hand.update({f"block{j}.attn.q": n * D * D, f"block{j}.attn.k": n * D * D, f"block{j}.attn.v": n * D * D})
        if order == "kv_first":  # Kᵀ V per head (d×N)(N×d), then Q (KᵀV): (N×d)(d×d), h heads
            hand.update({f"block{j}.attn.kv": HEADS * d * n * d, f"block{j}.attn.qkv": HEADS * n * d * d})
        else:  # Q Kᵀ (N×d)(d×N), then (N×N)(N×d), h heads
            hand.update({f"block{j}.attn.qk": HEADS * n * d * n, f"block{j}.attn.av": HEADS * n * n * d})
        hand.update({f"block{j}.attn.proj": n * D * D, f"block{j}.mlp.fc1": n * D * HIDDEN,
                     f"block{j}.mlp.fc2": n * HIDDEN * D})
    hand["head"] = D * K
    return hand


@pytest.fixture(scope="module")
def tiny():
    with jax.default_prng_impl("rbg"):
        model = models.build(TINY, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).uniform(0.0, 1.0, size=(B, H, W, C)).astype(np.float32)
    m = nnx.clone(model)
    m.train()  # batch statistics: a random initialisation fires
    stats = analysis.collect_activity(m, [{"image": x, "label": np.arange(B) % K}])
    return model, stats


def test_operation_counts_match_the_layer_shapes(tiny):
    model, _ = tiny
    ops = {op.name: op for op in model.operation_counts()}
    hand = _hand_macs(16, "kv_first")
    assert list(ops) == list(hand)  # forward order
    assert {k: op.macs_per_step for k, op in ops.items()} == hand
    # what feeds each op, honestly and in the paper's count
    assert ops["sps0.conv"].input == "input" and ops["sps0.conv"].time_steps == 1  # the image, once
    assert ops["sps2.conv"].input == "sps.stages.1.lif" and ops["rpe.conv"].input == "sps.stages.3.lif"
    writers = ["sps.rpe_lif", "blocks.0.attn.proj_lif", "blocks.0.mlp.fc2_lif", "blocks.1.attn.proj_lif",
               "blocks.1.mlp.fc2_lif"]
    for j in range(DEPTH):
        for name in ("q", "k", "v"):
            assert ops[f"block{j}.attn.{name}"].input == "real"
            assert ops[f"block{j}.attn.{name}"].paper_input == writers[2 * j]
        assert ops[f"block{j}.mlp.fc1"].input == "real" and ops[f"block{j}.mlp.fc1"].paper_input == writers[2 * j + 1]
        assert ops[f"block{j}.attn.kv"].input == f"blocks.{j}.attn.k_lif"
        assert ops[f"block{j}.attn.qkv"].input == f"blocks.{j}.attn.q_lif"
        assert ops[f"block{j}.attn.qkv"].layer == f"blocks.{j}.attn.attn_lif"
        assert ops[f"block{j}.attn.proj"].input == f"blocks.{j}.attn.attn_lif"
        assert ops[f"block{j}.mlp.fc2"].input == f"blocks.{j}.mlp.fc1_lif"
    assert ops["head"].input == "real" and ops["head"].time_steps == 1
    assert ops["head"].paper_input == writers[-1] and ops["head"].paper_time_steps == T
    # the 'qk_first' order (CIFAR / DVS files) and the same counts on an abstract model
    abstract = nnx.eval_shape(lambda: models.build(dict(TINY, attn_order="qk_first"), rngs=nnx.Rngs(0)))
    ops2 = {op.name: op.macs_per_step for op in abstract.operation_counts()}
    assert ops2 == _hand_macs(16, "qk_first")


def test_energy_honest_and_paper_by_hand(tiny):
    model, stats = tiny
    rate = dict(zip(stats.paths, (float(r) for r in stats.firing_rate)))
    assert len(rate) == 5 + 7 * DEPTH  # 4 SPS stages + RPE; q, k, v, attn, proj, fc1, fc2
    assert all(r > 0 for r in rate.values()), rate  # every layer fires
    macs = _hand_macs(16, "kv_first")
    n_first = macs["sps0.conv"]
    # the paper: E = 4.6 · FLOPs(first conv) + 0.9 · Σ fr · T · FLOPs over every other op
    src = {"sps1.conv": "sps.stages.0.lif", "sps2.conv": "sps.stages.1.lif", "sps3.conv": "sps.stages.2.lif",
           "rpe.conv": "sps.stages.3.lif"}
    writer = "sps.rpe_lif"
    stream_ops = []  # (name, writer rate): ops on the residual stream
    for j in range(DEPTH):
        p = f"blocks.{j}"
        for name in ("q", "k", "v"):
            stream_ops.append((f"block{j}.attn.{name}", writer))
        src.update({f"block{j}.attn.kv": f"{p}.attn.k_lif", f"block{j}.attn.qkv": f"{p}.attn.q_lif",
                    f"block{j}.attn.proj": f"{p}.attn.attn_lif", f"block{j}.mlp.fc2": f"{p}.mlp.fc1_lif"})
        writer = f"{p}.attn.proj_lif"
        stream_ops.append((f"block{j}.mlp.fc1", writer))
        writer = f"{p}.mlp.fc2_lif"
    spike_sops = sum(T * macs[k] * rate[s] for k, s in src.items())
    paper_sops = spike_sops + sum(T * macs[k] * rate[w] for k, w in stream_ops) + T * macs["head"] * rate[writer]
    paper_e = E_MAC * n_first + E_AC * paper_sops
    # honest: the stream-fed maps are dense MACs every step, the head one MAC evaluation on the mean
    honest_macs = n_first + sum(T * macs[k] for k, _ in stream_ops) + macs["head"]
    honest_e = E_MAC * honest_macs + E_AC * spike_sops

    ops = energy_lib.count_operations(model)
    layers, tot = energy_lib.energy_report(ops, stats, "45nm_fp32", input_kind="image")
    p_layers, p_tot = energy_lib.energy_report(ops, stats, "45nm_fp32", input_kind="image", convention="paper")
    np.testing.assert_allclose([tot["mac_ops"], tot["ac_ops"], tot["energy_pj"]],
                               [honest_macs, spike_sops, honest_e], rtol=1e-6)
    np.testing.assert_allclose([p_tot["mac_ops"], p_tot["ac_ops"], p_tot["energy_pj"]],
                               [n_first, paper_sops, paper_e], rtol=1e-6)
    assert tot["energy_pj"] > p_tot["energy_pj"] and tot["mac_ops"] > p_tot["mac_ops"]
    row = {l["name"]: l for l in p_layers}
    assert row["block1.attn.q"]["source"] == "blocks.0.mlp.fc2_lif" and row["block1.attn.q"]["op_kind"] == "AC"
    assert {l["name"]: l["op_kind"] for l in layers}["block1.attn.q"] == "MAC"
    with pytest.raises(ValueError, match="convention"):
        energy_lib.energy_report(ops, stats, "45nm_fp32", input_kind="image", convention="spikingformer")


def test_membrane_residual_has_no_stream_ops():
    """Spikingformer-style residual: every map reads spikes (the branch input neurons), so both counts agree."""
    abstract = nnx.eval_shape(lambda: models.build(dict(TINY, residual="membrane", block_attention="CA",
                                                        c_ratio=4), rngs=nnx.Rngs(0)))
    ops = {op.name: op for op in abstract.operation_counts()}
    assert ops["block0.attn.q"].input == "blocks.0.attn.in_lif" and ops["block0.attn.q"].paper_input is None
    assert ops["block0.attn.q"].attention == "blocks.0.attn.in_lif.attention"
    assert ops["block1.mlp.fc1"].input == "blocks.1.mlp.in_lif"
    assert ops["block0.attn.proj"].layer == "" and ops["head"].paper_input is None
    assert all(op.paper_input is None for op in ops.values() if op.name != "head")


def test_imagenet_8_512_flops_order_of_magnitude():
    """Spikformer-8-512 on 224² at T = 4 (abstract model): the dense per-step MACs equal the hand count, the ANN
    energy of one pass, 4.6 pJ · Σ MACs, is within 1 % of the paper's ANN Transformer-8-512 figure (38.34 mJ, [Pv2]
    Tab. 2),
    and T · Σ MACs over the spiking ops (11.09 G SOPs in the paper at its trained rates) implies a mean input rate
    between 5 % and 100 %."""
    abstract = nnx.eval_shape(lambda: models.build(dict(name="spikformer", variant="imagenet"), rngs=nnx.Rngs(0)))
    ops = abstract.operation_counts()
    d, n, dd = 512, 14 * 14, 512 // 8
    sps = 9 * (224 * 224 * 3 * 64 + 112 * 112 * 64 * 128 + 56 * 56 * 128 * 256 + 28 * 28 * 256 * 512
               + 14 * 14 * 512 * 512)
    block = 4 * n * d * d + 2 * n * d * 4 * d + 2 * n * d * dd
    hand = sps + 8 * block + 512 * 1000
    assert sum(op.macs_per_step for op in ops) == hand
    ann_mj = E_MAC * hand * 1e-9
    assert ann_mj == pytest.approx(38.34, rel=0.01)  # 38.45 mJ: 8.359 G MACs vs the paper's 8.335 G
    spiking = 4 * (hand - 9 * 224 * 224 * 3 * 64)
    assert 11.09e9 < spiking < 11.09e9 / 0.05


def test_analysis_report_on_the_spikformer_digits_config(tmp_path):
    """``analyze`` (behind ``python -m masnn_jax.analyze``) on configs/spikformer_digits_dvs.py, scaled down (16×16
    frames straight from a 16×16 sensor, T = 4, D = 16): report.json holds the honest count and the paper's,
    and the paper's total equals its definition from the report's own rows."""
    import importlib.util
    import json
    import os

    from masnn_jax.analysis import report as report_lib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("sf_digits", os.path.join(root, "configs",
                                                                            "spikformer_digits_dvs.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.get_config()
    config.model.T = 4
    config.model.embed_dim = 16
    config.data.update(dict(digits_time_step_us=5000, digits_sensor_size=16, ds=1, digits_scale=1.5))
    config.train.eval_batch_size = 32
    with jax.default_prng_impl("rbg"):  # threefry initialisers compile seconds per parameter shape on CPU
        report = report_lib.analyze(config, str(tmp_path), init="random", num_batches=1, grad_batches=0,
                                    figures=False, bypass=False)
    with open(tmp_path / "analysis" / "report.json") as f:
        assert json.load(f)["paper_count"]["totals"] == report["paper_count"]["totals"]
    honest, paper = report["totals"], report["paper_count"]["totals"]
    assert report["paper_count"]["differs"] and honest["network_firing_rate"] > 0
    assert honest["energy_pj"] > paper["energy_pj"] > 0
    rows = report["paper_count"]["layers"]
    assert [r["op_kind"] for r in rows].count("MAC") == 1 and rows[0]["name"] == "sps0.conv"  # only the first conv
    # E = 4.6 · (first conv's MACs, T steps weighted by the input's non-zero fraction) + 0.9 · Σ T · FLOPs · fr
    e = E_MAC * 4 * rows[0]["macs"] * report["input"]["firing_rate"]
    rate = {r["layer"]: r["firing_rate"] for r in report["layers"] if r["layer"]}  # display name -> rate

    def display(path: str) -> str:  # 'sps.stages.1.lif' -> 'sps1', 'blocks.0.attn.q_lif' -> 'block0.attn.q'
        parts = path.split(".")
        if parts[0] == "sps":
            return "rpe" if parts[1] == "rpe_lif" else f"sps{parts[2]}"
        return f"block{parts[1]}.{parts[2]}.{parts[3][:-4]}"

    for r in rows[1:]:
        assert r["op_kind"] == "AC"
        e += E_AC * 4 * r["macs"] * rate[display(r["source"])]
    assert rows[-1]["name"] == "head" and rows[-1]["source"] == "blocks.0.mlp.fc2_lif"
    assert paper["energy_pj"] == pytest.approx(e, rel=1e-6)
