"""The analysis (activity, operation counts and energy, per-block gradient norms) on the Att-Res-SNN family: the
model hooks ``layer_names`` / ``operation_counts`` / ``gradient_blocks`` of :class:`masnn_jax.models.resnet.AttResSNN`
against hand computations, stacked (scanned) blocks included."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax import analysis, models
from masnn_jax.models import resnet
from masnn_jax.train import loss_fn

T, B, CLASSES = 2, 4, 4
BLOCK_NAMES = ["stage1.block1", "stage1.block2", "stage2.block1", "stage2.block2"]
NEURONS = [f"{b}.neuron{i}" for b in BLOCK_NAMES for i in (1, 2)] + ["head"]


@pytest.fixture(scope="module")
def tiny():
    """Att-Res-SNN (CSA, official placement), widths (8, 16), blocks (2, 2): one stacked block per stage; 32×32,
    T = 2, no dropout (the gradient norms are compared with an independent jax.grad)."""
    with jax.default_prng_impl("rbg"):  # threefry initialisers cost seconds of compilation per shape (test_resnet)
        model = models.build(dict(name="att_res_snn", blocks=(2, 2), widths=(8, 16), T=T, num_classes=CLASSES,
                                  input_shape=(32, 32, 3), attention="CSA", c_ratio=4, dropout=0.0),
                             rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(B, 32, 32, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    return model, x, y


@pytest.fixture(scope="module")
def stats(tiny):
    model, x, y = tiny
    m = nnx.clone(model)
    m.train()  # batch statistics: a random initialisation fires
    return analysis.collect_activity(m, [{"image": x, "label": y}])


def test_layer_names_and_blocks(tiny):
    model, _, _ = tiny
    assert analysis.layer_names(model) == NEURONS
    names = model.layer_names()
    assert names["stages.0.rest.neuron1[0]"] == "stage1.block2.neuron1" and names["head_neuron"] == "head"
    assert model.gradient_blocks() == ["stages.0.first", "stages.0.rest", "stages.1.first", "stages.1.rest"]
    blocks = analysis.gradients.gradient_blocks(model)
    assert [b.name for b in blocks] == BLOCK_NAMES
    assert [b.index for b in blocks] == [(), (0,), (), (0,)]


def test_operation_counts_by_hand(tiny):
    model, _, _ = tiny
    ops = {op.name: op for op in model.operation_counts()}
    # stem 7×7 s2: 32 -> 16; stage 1 (8 ch) at 8×8, stage 2 (16 ch) at 4×4 (every first block has stride 2)
    hand = {
        "stem": 7 * 7 * 16 * 16 * 3 * 8,
        "stage1.block1.conv1": 9 * 8 * 8 * 8 * 8, "stage1.block1.conv2": 9 * 8 * 8 * 8 * 8,
        "stage1.block1.shortcut": 8 * 8 * 8 * 8,
        "stage1.block2.conv1": 9 * 8 * 8 * 8 * 8, "stage1.block2.conv2": 9 * 8 * 8 * 8 * 8,
        "stage2.block1.conv1": 9 * 4 * 4 * 8 * 16, "stage2.block1.conv2": 9 * 4 * 4 * 16 * 16,
        "stage2.block1.shortcut": 4 * 4 * 8 * 16,
        "stage2.block2.conv1": 9 * 4 * 4 * 16 * 16, "stage2.block2.conv2": 9 * 4 * 4 * 16 * 16,
        "fc": 16 * CLASSES,
    }
    assert {k: v.macs_per_step for k, v in ops.items()} == hand
    assert list(ops) == list(hand)  # forward order
    assert ops["stem"].input == "input" and ops["stem"].time_steps == 1
    assert ops["stage1.block1.shortcut"].input == "membrane"
    assert ops["stage1.block2.conv1"].input == "stage1.block2.neuron1"
    assert ops["stage1.block2.conv2"].input == "stage1.block2.neuron2"
    assert ops["stage1.block2.conv2"].attention == "stages.0.rest.attention"
    assert ops["fc"].input == "head"
    # the same counts on an abstract model
    abstract = nnx.eval_shape(lambda: models.build(
        dict(name="att_res_snn", blocks=(2, 2), widths=(8, 16), T=T, num_classes=CLASSES, input_shape=(32, 32, 3),
             attention="CSA", c_ratio=4), rngs=nnx.Rngs(0)))
    assert [op.macs_per_step for op in abstract.operation_counts()] == list(hand.values())


def test_energy_report_by_hand(tiny, stats):
    model, _, _ = tiny
    assert stats.names == NEURONS
    rate = dict(zip(stats.names, stats.firing_rate))
    assert all(0.02 < r < 0.9 for r in rate.values()), rate  # the tiny net fires in train mode
    rows, totals = analysis.energy_report(analysis.count_operations(model), stats, input_kind="image")
    by = {r["name"]: r for r in rows}
    macs = {r["name"]: r["macs"] for r in rows}
    mac_ops = macs["stem"] + T * (macs["stage1.block1.shortcut"] + macs["stage2.block1.shortcut"])
    sops = 0.0
    for name, m in macs.items():
        if name == "fc":
            sops += T * m * rate["head"]
        elif name.endswith(".conv1") or name.endswith(".conv2"):
            block, conv = name.rsplit(".", 1)
            sops += T * m * rate[f"{block}.neuron{conv[-1]}"]
    # CSA (official placement, once on the (T, H, W, C) sequence): CA MLP 2·(C·C/4 + C/4·C), SA 3×3 conv 2->1
    # per pixel; gate multiplies T·n each, pooling adds 2·T·n each (n = H·W·C of one step)
    att_e = 0.0
    for (hw, c), names in (((64, 8), ("stage1.block1", "stage1.block2")), ((16, 16), ("stage2.block1",
                                                                                      "stage2.block2"))):
        n = hw * c
        a_macs, mults, adds = 2 * (c * (c // 4) * 2) + 9 * 2 * hw, 2 * T * n, 4 * T * n
        for b in names:
            assert by[f"{b}.conv2"]["attention_macs"] == a_macs
            assert by[f"{b}.conv2"]["attention_mults"] == mults and by[f"{b}.conv2"]["attention_adds"] == adds
        att_e += 2 * (4.6 * (a_macs + mults) + 0.9 * adds)
    assert totals["mac_ops"] == pytest.approx(mac_ops)
    assert totals["ac_ops"] == pytest.approx(sops, rel=1e-9)
    assert totals["attention_energy_pj"] == pytest.approx(att_e)
    assert totals["energy_pj"] == pytest.approx(4.6 * mac_ops + 0.9 * sops + att_e, rel=1e-9)
    assert totals["ann_energy_pj"] == pytest.approx(4.6 * sum(macs.values()))
    assert by["stage1.block2.conv1"]["firing_rate"] == pytest.approx(rate["stage1.block2.neuron2"])


def test_attention_bypass_reaches_the_blocks(tiny, stats):
    model, x, y = tiny
    m = nnx.clone(model)
    m.train()
    bypassed = analysis.collect_activity(m, [{"image": x, "label": y}], attention=False)
    # block 1's neuron1 reads the stem only; every later layer sees the (bypassed) attention
    assert bypassed.firing_rate[0] == pytest.approx(stats.firing_rate[0])
    assert not np.allclose(bypassed.firing_rate[2:], stats.firing_rate[2:])


def test_gradient_norms_per_block(tiny):
    model, x, y = tiny
    g = analysis.gradient_norms(model, [{"image": x, "label": y}], loss="cross_entropy", num_batches=1)
    assert [l["name"] for l in g["layers"]] == BLOCK_NAMES
    for l in g["layers"]:
        assert l["output"] is not None and l["output"] > 0 and l["param"] > 0 and l["attention_param"] > 0
    for prev, nxt in zip(g["layers"], g["layers"][1:]):
        assert nxt["input"] == pytest.approx(prev["output"])

    # independently: ∂L/∂(output of the stacked block stage1.block2) = ∂L/∂(output of stage 1), and the gradient
    # of that block's parameters (slice 0 of the stacked stage-1 'rest'), from plain jax.grad
    clone = nnx.clone(model)
    clone.train()
    graphdef, params, rest = nnx.split(clone, nnx.Param, ...)
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def loss(params, delta):
        m = nnx.merge(graphdef, params, rest, copy=True)
        z = jnp.broadcast_to(xj[:, None], (B, T) + xj.shape[1:]).reshape((B * T,) + xj.shape[1:])
        h = m.stages[0](resnet._split_bt(m.stem(z), B)) + delta
        h = m.stages[1](h)
        out = m.fc(m.head_neuron(h).mean(axis=(2, 3)).mean(axis=1))
        return loss_fn("cross_entropy", out, yj, CLASSES).mean()

    delta = jnp.zeros((B, T, 8, 8, 8), jnp.float32)
    value, (gp, gd) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, delta)
    assert g["loss"] == pytest.approx(float(value), rel=1e-5)
    assert g["layers"][1]["output"] == pytest.approx(float(jnp.linalg.norm(gd)), rel=1e-4)
    block = jax.tree_util.tree_leaves(gp["stages"][0]["rest"])
    norm = float(np.sqrt(sum(np.sum(np.square(np.asarray(v)[0])) for v in block)))
    assert g["layers"][1]["param"] == pytest.approx(norm, rel=1e-4)
