"""Research analysis (masnn_jax.analysis, python -m masnn_jax.analyze): activity, operation and energy counts
checked by hand on a toy network, gradient norms checked against plain jax.grad, figures, the command end to end."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax import analysis, models
from masnn_jax import train as training
from masnn_jax.analysis import plots
from masnn_jax.config import base_config
from masnn_jax.models.registry import OpCount
from masnn_jax.nn import layers as layers_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- the toy network


def toy_config(attention="no", **model):
    """Input 4x4x2, T=2, one conv layer 2->3 (3x3 pad 1, avg-pool 2), one FC layer 12->2 (the classifier)."""
    config = base_config(arch=None, T=2, attention=attention, c_ratio=1, t_ratio=2)
    m = config.model
    m.input_shape = (4, 4, 2)
    m.num_classes = 2
    m.channels = (3,)
    m.pools = (2,)
    m.fc = ()
    for key, value in model.items():
        setattr(m, key, value)
    return config


def toy_model():
    """The toy with hand-set weights; BatchNorm in eval mode is the identity up to 1/sqrt(1 + 1e-5).

    conv: only the centre tap input-channel 0 -> output channel 2 (weight 1); biases (1, -1, 0): channel 0 always
    fires, channel 1 never, channel 2 fires where the pooled input (plus the leaked state) reaches 0.3.
    fc: neuron 0 has bias 1 (always fires); neuron 1 sees 0.4 x [block (0,0), channel 2] (flat index 2 of the
    (H', W', C) = (2, 2, 3) flattened conv output).
    """
    model = models.build(toy_config().model, rngs=nnx.Rngs(0))
    conv, fc = model.convs[0], model.fcs[0]
    k = np.zeros((3, 3, 2, 3), np.float32)
    k[1, 1, 0, 2] = 1.0
    conv.conv.kernel[...] = jnp.asarray(k)
    conv.conv.bias[...] = jnp.asarray([1.0, -1.0, 0.0])
    w = np.zeros((12, 2), np.float32)
    w[2, 1] = 0.4
    fc.linear.kernel[...] = jnp.asarray(w)
    fc.linear.bias[...] = jnp.asarray([1.0, 0.0])
    model.eval()
    return model


def toy_frames():
    """Sample A: one event at (0,0) at t=0, two events (count 2) at (0,0) and (3,3) at t=1 (polarity 0).
    Sample B: empty."""
    x = np.zeros((2, 2, 4, 4, 2), np.float32)
    x[0, 0, 0, 0, 0] = 1.0
    x[0, 1, 0, 0, 0] = 2.0
    x[0, 1, 3, 3, 0] = 2.0
    return x


# Spikes worked out by hand (official neuron: u = h + x, fire at u >= 0.3, h = (s*0.3 + (1-s)*u)*0.3):
#  conv, channel 0 (bias 1): u = 1 -> spike at t=0 in all 4 pooled blocks; h = 0.3*0.3 = 0.09; t=1: u = 1.09 -> 4.
#  conv, channel 1 (bias -1): never.
#  conv, channel 2, sample A: block (0,0) pools 1/4 = 0.25 at t=0 (< 0.3, h = 0.075), 2/4 + 0.075 = 0.575 at t=1
#    -> spike; block (1,1) pools 0 then 2/4 = 0.5 -> spike at t=1. Sample B: nothing.
#  => conv spikes per step: A (4, 6), B (4, 4); over the batch (8, 10) of 2 samples x 12 neurons per step.
#  fc neuron 0 (bias 1): spikes at both steps in both samples. fc neuron 1: 0.4 x conv[A, t=1, block (0,0), ch 2]
#    = 0.4 >= 0.3 -> one spike (A, t=1). => fc spikes per step (2, 3) over the batch, 2 neurons per step.
CONV_SPIKES_T = np.array([8.0, 10.0])
FC_SPIKES_T = np.array([2.0, 3.0])


def tcsa_config(attention="TCSA"):
    """The toy with conv 2->8 and TCSA (c_ratio 2), a low threshold and a wide surrogate window, so that a random
    initialisation spikes and every block gets a non-zero gradient."""
    config = toy_config(attention, channels=(8,), c_ratio=2)
    config.model.surrogate.width = 4.0
    config.model.neuron.v_th = 0.05
    return config


@pytest.fixture(scope="module")
def tcsa_model():
    model = models.build(tcsa_config().model, rngs=nnx.Rngs(1))
    model.eval()
    return model


def test_toy_activity_and_energy_by_hand():
    model = toy_model()
    frames = toy_frames()
    stats = analysis.collect_activity(model, [{"frames": frames, "label": np.array([0, 1])}])

    assert stats.names == ["conv1", "fc1"]
    assert stats.neurons == [2 * 2 * 3, 2] and stats.samples == 2 and stats.T == 2
    np.testing.assert_allclose(stats.spikes_t[0], CONV_SPIKES_T)
    np.testing.assert_allclose(stats.spikes_t[1], FC_SPIKES_T)
    np.testing.assert_allclose(stats.sample_spikes, [[10, 3], [8, 2]])
    # rates: spikes / (samples * T * neurons)
    np.testing.assert_allclose(stats.firing_rate, [18 / (2 * 2 * 12), 5 / (2 * 2 * 2)])
    np.testing.assert_allclose(stats.firing_rate_t, [[8 / 24, 10 / 24], [2 / 4, 3 / 4]])
    assert stats.network_firing_rate == pytest.approx((18 + 5) / (48 + 8))
    # input: 3 non-zero elements of 2 samples x 2 steps x (4*4*2) elements
    assert stats.input_rate == pytest.approx(3 / 128)
    np.testing.assert_allclose(stats.input_rate_t, [1 / 64, 2 / 64])
    # outputs (mean over T of fc spikes): A (1, 0.5) -> class 0, B (1, 0) -> class 0; labels (0, 1)
    assert stats.accuracy == pytest.approx(0.5)
    fmap = stats.firing_map(0)  # per block: mean over 3 channels, 2 steps, 2 samples
    np.testing.assert_allclose(fmap, [[(4 + 1) / 12, 4 / 12], [4 / 12, (4 + 1) / 12]])

    # The layers' own record mechanism (nnx.Intermediate 'activity') gives the same per-sample counts.
    for layer in model.spiking_layers:
        layer.record = True
    model(jnp.asarray(frames))
    inter = nnx.pop(model, nnx.Intermediate)
    for layer in model.spiking_layers:
        layer.record = False
    sown = [np.asarray(v).reshape(2, 2) for v in jax.tree_util.tree_leaves(inter)]  # (B, [count, T*neurons])
    np.testing.assert_allclose(np.stack([s[:, 0] for s in sown], 1), stats.sample_spikes)
    assert float(training.network_firing_rate(inter)) == pytest.approx(stats.network_firing_rate)

    ops = analysis.count_operations(model)
    conv_macs = 3 * 3 * 4 * 4 * 2 * 3  # k^2 * h_out * w_out * c_in * c_out at the conv's (pre-pool) size = 864
    fc_macs = 12 * 2
    assert [o.macs for o in ops] == [conv_macs, fc_macs]
    assert ops[0].conv_output == (4, 4, 3) and ops[0].output_shape == (2, 2, 3)
    assert all(o.attention["macs"] == o.attention["mults"] == o.attention["adds"] == 0 for o in ops)

    layers, totals = analysis.energy_report(ops, stats, "45nm_fp32")
    sop_conv = 2 * conv_macs * (3 / 128)  # T * MACs * input rate = 40.5, charged as MACs (first layer)
    sop_fc = 2 * fc_macs * (18 / 48)  # T * MACs * conv firing rate = 18 ACs
    assert sop_conv == 40.5 and sop_fc == 18.0
    assert layers[0]["sops"] == pytest.approx(sop_conv) and layers[0]["op_kind"] == "MAC"
    assert layers[1]["sops"] == pytest.approx(sop_fc) and layers[1]["op_kind"] == "AC"
    assert layers[0]["energy_pj"] == pytest.approx(4.6 * 40.5)  # 186.3
    assert layers[1]["energy_pj"] == pytest.approx(0.9 * 18)  # 16.2
    assert totals["macs"] == 888
    assert totals["sops"] == pytest.approx(58.5)
    assert totals["energy_pj"] == pytest.approx(202.5)
    assert totals["ann_energy_pj"] == pytest.approx(4.6 * 888)  # 4084.8
    assert totals["energy_ratio"] == pytest.approx(4084.8 / 202.5)
    assert totals["network_firing_rate"] == pytest.approx(23 / 56)
    assert [l["neurons"] for l in layers] == [12, 2]
    assert layers[0]["firing_rate"] == pytest.approx(0.375) and layers[1]["firing_rate"] == pytest.approx(0.625)

    # other preset: fp16 45 nm (Horowitz 2014: mult 1.1 + add 0.4 pJ)
    _, t16 = analysis.energy_report(ops, stats, "45nm_fp16")
    assert t16["energy_pj"] == pytest.approx(1.5 * 40.5 + 0.4 * 18)
    with pytest.raises(ValueError, match="45nm_fp32"):
        analysis.get_energy_model("7nm")


def _summary_report(figures=()):
    """A hand-made report with two layers, for :func:`analysis.summary`."""
    layer = dict(name="conv0", neurons=10, firing_rate=0.1, spikes_per_sample=2.0, macs=1000, sops=2000.0,
                 op_kind="MAC", attention_macs=None, attention_mults=None, energy_pj=9200.0)
    layer2 = dict(layer, name="fc1", macs=500, sops=100.0, op_kind="AC", energy_pj=90.0)
    totals = dict(T=2, energy_ratio=0.5, accuracy=None, network_firing_rate=0.1, spikes_per_sample=4.0, macs=1500,
                  sops=2100.0, mac_ops=2000.0, ac_ops=100.0, energy_pj=9290.0, attention_energy_pj=0.0,
                  ann_energy_pj=6900.0)
    report = dict(
        source=dict(init="random", checkpoint_step=None, model=dict(attention="no"), batch_norm="batch statistics"),
        dataset=dict(name="toy", samples=4), energy_model=dict(name="45nm_fp32", e_mac_pj=4.6, e_ac_pj=0.9),
        input=dict(firing_rate=0.5), layers=[layer, layer2], totals=totals, bypass_attention=None, gradients=None,
        notes=[], paper_count=dict(differs=True, totals=dict(mac_ops=1000.0, ac_ops=1100.0, energy_pj=5590.0)),
        figures=list(figures))
    return report


def test_summary_labels_say_what_is_counted():
    """The printed table and totals name the counts precisely: 'dense MACs' (one ANN evaluation, the ``macs``
    field) vs 'ops run' (``sops``) split into 'MACs on non-binary inputs' (``mac_ops``, the honest count) and 'ACs
    on spikes' (``ac_ops``), the same words in the paper's-count line; no bare 'MACs' / 'MAC ops' label."""
    text = analysis.summary(_summary_report())
    lines = text.splitlines()
    header = lines[1]
    assert "dense MACs" in header and "ops run" in header
    assert " MACs " not in header.replace("dense MACs", "").replace("att. MACs", "")  # no bare 'MACs' column
    legend = next(line for line in lines if line.startswith("(dense MACs:"))
    assert "T = 1" in legend and "MACs on non-binary inputs" in legend and "marked *" in legend
    assert "2,000.0*" in lines[2] and "100.0*" not in lines[3]  # the op on non-binary inputs is starred
    total = next(line for line in lines if line.startswith("dense MACs 1,500.0"))
    assert "ops run 2,100.0 = MACs on non-binary inputs 2,000.0 + ACs on spikes 100.0" in total
    paper = next(line for line in lines if line.startswith("paper's count"))
    assert "MACs on non-binary inputs 1,000.0 | ACs on spikes 1,100.0" in paper
    assert "honest count (above): MACs on non-binary inputs 2,000.0 | ACs on spikes 100.0" in paper
    assert "MAC ops" not in text and "AC ops" not in text and "SOPs 2" not in text


def test_summary_last_line_names_the_files_written(tmp_path):
    """With ``out_dir`` the summary ends with the report and the figures; without figures (``--figures=false``) no
    dangling 'and 0 figures: '."""
    report_path = os.path.join(str(tmp_path), "report.json")
    last = analysis.summary(_summary_report(), str(tmp_path)).splitlines()[-1]
    assert last == f"wrote {report_path} (no figures)"
    last = analysis.summary(_summary_report(["activity.png"]), str(tmp_path)).splitlines()[-1]
    assert last == f"wrote {report_path} and 1 figure: activity.png"
    last = analysis.summary(_summary_report(["activity.png", "energy.png"]), str(tmp_path)).splitlines()[-1]
    assert last == f"wrote {report_path} and 2 figures: activity.png, energy.png"
    assert "wrote" not in analysis.summary(_summary_report())  # no out_dir: no such line


@pytest.mark.parametrize("key", ["probe_samples", "raster_neurons"])
def test_analyze_refuses_fewer_than_one_probe_sample_or_neuron(tmp_path, key):
    """The Python API checks them first: a ValueError naming the argument, before any model is built or loaded."""
    with pytest.raises(ValueError, match=f"{key} must be >= 1, got 0"):
        analysis.analyze(toy_config(), str(tmp_path / "run"), init="random", **{key: 0})
    assert not os.path.exists(tmp_path / "run")  # nothing written


def test_toy_activity_is_batching_independent():
    """Split batches, and a smaller last batch (zero-padded and masked), give the same sums."""
    model = toy_model()
    x = toy_frames()
    whole = analysis.collect_activity(model, [x])
    split = analysis.collect_activity(model, [x[:1], x[1:]])
    np.testing.assert_allclose(split.spikes_t[0], whole.spikes_t[0])
    np.testing.assert_allclose(split.input_nonzero_t, whole.input_nonzero_t)
    padded = analysis.collect_activity(model, [x, x[:1]])  # A, B, then A again in a padded batch
    assert padded.samples == 3
    np.testing.assert_allclose(padded.spikes_t[0], CONV_SPIKES_T + [4, 6])
    np.testing.assert_allclose(padded.spikes_t[1], FC_SPIKES_T + [1, 2])
    assert padded.accuracy is None  # no labels
    windows = analysis.collect_activity(model, [{"frames": x[:, None], "label": np.array([0, 1])}], num_batches=1)
    np.testing.assert_allclose(windows.spikes_t[1], FC_SPIKES_T)  # (B, n=1, T, ...) test items


def test_attention_operation_counts_by_hand():
    """TCSA on the toy (conv 2->4, pool 2 -> one step (2, 2, 4); T=2, t_ratio=2 -> T_h=1; c_ratio=1 -> C_h=4)."""
    config = toy_config("TCSA", channels=(4,), c_ratio=1)
    model = nnx.eval_shape(lambda: models.build(config.model, rngs=nnx.Rngs(0)))
    conv, fc = analysis.count_operations(model)
    n = 2 * 2 * 4  # elements of one step of the pooled pre-activation
    ta = {"macs": 2 * (2 * 1 + 1 * 2), "mults": 2 * n, "adds": 2 * 2 * n}  # 2 paths x (T*T_h + T_h*T); gate; pools
    ca = {"macs": 2 * (4 * 4 + 4 * 4), "mults": 2 * n, "adds": 2 * 2 * n}
    sa = {"macs": 3 * 3 * 2 * 1 * (2 * 2), "mults": 2 * n, "adds": 2 * 2 * n}  # conv 2->1 3x3 over H'xW'
    assert conv.attention["units"] == {"TA": ta, "CA": ca, "SA": sa}
    assert conv.attention["macs"] == 8 + 64 + 72 and conv.attention["mults"] == 3 * 32
    assert fc.attention["units"] == {"TA": {"macs": 8, "mults": 2 * 2, "adds": 2 * 2 * 2}}  # FC: TA only, N = 2
    assert conv.macs == 3 * 3 * 4 * 4 * 2 * 4 and fc.macs == (2 * 2 * 4) * 2
    # The paper's placement runs CA and SA once per step.
    config.model.placement = "membrane"
    model = nnx.eval_shape(lambda: models.build(config.model, rngs=nnx.Rngs(0)))
    conv_m, _ = analysis.count_operations(model)
    assert conv_m.attention["units"]["CA"]["macs"] == 2 * ca["macs"]
    assert conv_m.attention["units"]["SA"]["macs"] == 2 * sa["macs"]
    assert conv_m.attention["units"]["TA"] == ta


def test_run_layers_matches_model_and_bypass(tcsa_model):
    """run_layers is the model's own forward pass under nnx.capture: same output as model(x), every layer's spikes;
    bypassing attention = the same conv / BN / linear weights in a network built without attention."""
    model = tcsa_model
    x = jnp.asarray(np.random.default_rng(0).poisson(0.5, (3, 2, 4, 4, 2)).astype(np.float32))
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, x, attention=True):
        return analysis.run_layers(nnx.merge(graphdef, state, copy=True), x, attention=attention)

    res = run(state, x)
    np.testing.assert_allclose(res["output"], nnx.jit(lambda m, x: m(x))(model, x), atol=1e-6)
    assert [s.shape for s in res["spikes"]] == [(3, 2, 2, 2, 8), (3, 2, 2)]
    assert analysis.layer_names(model) == ["conv1", "fc1"]
    # the caller's model is untouched: recording off, attention on
    assert all(layer.record == "off" and not layer.attention.bypass for layer in model.spiking_layers)
    plain = models.build(tcsa_config("no").model, rngs=nnx.Rngs(1))
    plain.eval()
    for a, b in zip(plain.spiking_layers, model.spiking_layers):
        for name in ("conv", "linear", "bn"):
            if hasattr(a, name):
                nnx.update(getattr(a, name), nnx.state(getattr(b, name)))
    bypassed = jax.jit(lambda s, x: analysis.run_layers(nnx.merge(graphdef, s, copy=True), x, attention=False))
    np.testing.assert_allclose(bypassed(state, x)["output"], nnx.jit(lambda m, x: m(x))(plain, x), atol=1e-6)
    stats = analysis.collect_activity(model, [x], attention=False)
    ref = analysis.collect_activity(plain, [x])
    np.testing.assert_allclose(stats.spikes_t[0], ref.spikes_t[0])
    assert not any(layer.attention.bypass for layer in model.spiking_layers)
    with pytest.raises(ValueError, match="expects"):
        analysis.run_layers(nnx.clone(model), x[:, :1])


def test_gradient_norms_agree_with_jax_grad(tcsa_model):
    model = tcsa_model
    rng = np.random.default_rng(1)
    x = rng.poisson(1.0, (4, 2, 4, 4, 2)).astype(np.float32)
    y = np.array([0, 1, 1, 0], np.int32)
    g = analysis.gradient_norms(model, [{"frames": x, "label": y}], num_batches=1)
    assert [l["name"] for l in g["layers"]] == ["conv1", "fc1"] and g["batches"] == 1 and g["train_mode"]

    # independent: plain jax.grad of the training loss of the train-mode model
    clone = nnx.clone(model)
    clone.train()
    graphdef, params, rest = nnx.split(clone, nnx.Param, ...)

    def loss(params, frames):
        m = nnx.merge(graphdef, params, rest, copy=True)
        return training.loss_fn("mse", m(frames), jnp.asarray(y), 2).mean()

    gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, jnp.asarray(x))
    total = float(np.sqrt(sum(np.sum(np.square(v)) for v in jax.tree_util.tree_leaves(gp))))
    blocks = np.sqrt(sum(l["param"] ** 2 for l in g["layers"]))
    assert blocks == pytest.approx(total, rel=1e-4)
    assert g["input_grad_norm"] == pytest.approx(float(jnp.linalg.norm(gx)), rel=1e-4)
    conv_kernel = float(jnp.linalg.norm(gp["convs"][0]["conv"]["kernel"][...]))
    assert g["layers"][0]["weight"] == pytest.approx(conv_kernel, rel=1e-4)
    # one block's input is the previous block's output; ratios follow from the norms
    assert g["layers"][1]["input"] == pytest.approx(g["layers"][0]["output"])
    assert g["layers"][0]["input"] == pytest.approx(g["input_grad_norm"])
    for l in g["layers"]:
        assert l["block_ratio"] == pytest.approx(l["input"] / l["output"])
        assert l["attention_param"] is not None and l["attention_param"] <= l["param"]
    assert g["layers"][0]["param_ratio_next"] == pytest.approx(g["layers"][0]["param"] / g["layers"][1]["param"])
    assert g["layers"][1]["param_ratio_next"] is None
    assert model.convs[0].bn.use_running_average  # the caller's model stays in eval mode


# --------------------------------------------------------------------------- another family: a scanned stack


class _Block(nnx.Module):
    """Linear 4->4 -> a spike (straight-through gradient), recording like every spiking layer."""

    def __init__(self, rngs):
        self.lin = nnx.Linear(4, 4, rngs=rngs)
        self.record = "off"

    def __call__(self, x):
        h = jnp.tanh(self.lin(x))
        s = h + jax.lax.stop_gradient((h > 0).astype(h.dtype) - h)
        layers_lib.record_activity(self, s)
        return s


class ScanNet(nnx.Module):
    """A model of no registered family: three blocks stacked with a leading block axis and run by nnx.scan, then
    an unrecorded linear head. Frames (B, T=2, 4)."""

    input_kind, input_shape, T, num_classes, dtype = "frames", (4,), 2, 2, None

    def __init__(self, rngs):
        @nnx.split_rngs(splits=3)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make(rngs):
            return _Block(rngs)

        self.blocks = make(rngs)
        self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
        def step(block, x):
            return block(x)

        return self.head(step(self.blocks, x)).mean(axis=1)

    def operation_counts(self):
        ops = [OpCount(f"blocks[{i}]", 16, "input" if i == 0 else f"blocks[{i - 1}]", kind="fc", output_shape=(4,))
               for i in range(3)]
        return ops + [OpCount("head", 8, "blocks[2]", layer="", kind="fc", output_shape=(2,))]


def _scan_reference(net, x):
    """Each block's spikes computed by hand from the stacked kernels."""
    k, b = np.asarray(net.blocks.lin.kernel[...]), np.asarray(net.blocks.lin.bias[...])
    out = []
    for i in range(3):
        x = (np.tanh(x @ k[i] + b[i]) > 0).astype(np.float32)
        out.append(x)
    return out


def test_scanned_stack_of_another_family():
    net = ScanNet(nnx.Rngs(3))
    x = np.random.default_rng(4).normal(size=(5, 2, 4)).astype(np.float32)
    x[0, 0, :2] = 0.0  # two zero input elements
    y = np.array([0, 1, 0, 1, 1])
    names = ["blocks[0]", "blocks[1]", "blocks[2]"]
    assert analysis.layer_names(net) == names
    stats = analysis.collect_activity(net, [{"frames": x, "label": y}])
    ref = _scan_reference(net, x)
    assert stats.names == names and stats.neurons == [4, 4, 4] and stats.samples == 5
    for i in range(3):
        np.testing.assert_allclose(stats.spikes_t[i], ref[i].sum((0, 2)))
        np.testing.assert_allclose(stats.sample_spikes[:, i], ref[i].sum((1, 2)))
    assert stats.input_rate == pytest.approx(1 - 2 / x.size)
    # the training firing rate reads the same 'activity' records (leading block axis)
    layers_lib.set_recording(net, "activity")
    _, inter = nnx.capture(net, nnx.Intermediate)(jnp.asarray(x))
    layers_lib.set_recording(net, "off")
    assert float(training.network_firing_rate(inter)) == pytest.approx(stats.network_firing_rate)

    # energy from the model's own operation counts: first block on the input (MAC), the others on spikes (AC)
    ops = analysis.count_operations(net)
    rows, totals = analysis.energy_report(ops, stats)
    rates = stats.firing_rate
    assert rows[0]["op_kind"] == "MAC" and rows[0]["sops"] == pytest.approx(2 * 16 * stats.input_rate)
    assert rows[1]["op_kind"] == "AC" and rows[1]["sops"] == pytest.approx(2 * 16 * rates[0])
    assert rows[3]["sops"] == pytest.approx(2 * 8 * rates[2]) and rows[3]["firing_rate"] is None
    assert totals["energy_pj"] == pytest.approx(4.6 * rows[0]["sops"] + 0.9 * sum(r["sops"] for r in rows[1:]))

    # gradient norms per block of the stack; the head is a parameter group of its own
    g = analysis.gradient_norms(net, [{"frames": x, "label": y}], loss="cross_entropy", num_batches=1)
    assert [l["name"] for l in g["layers"]] == names and set(g["other_params"]) == {"head"}
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)

    def loss(params, x):
        m = nnx.merge(graphdef, params, rest, copy=True)
        return training.loss_fn("cross_entropy", m(x), jnp.asarray(y), 2).mean()

    gp, gx = jax.grad(loss, argnums=(0, 1))(params, jnp.asarray(x))
    total = float(np.sqrt(sum(np.sum(np.square(v)) for v in jax.tree_util.tree_leaves(gp))))
    blocks = sum(l["param"] ** 2 for l in g["layers"]) + g["other_params"]["head"] ** 2
    assert np.sqrt(blocks) == pytest.approx(total, rel=1e-4)
    kernels = np.asarray(gp["blocks"]["lin"]["kernel"][...])
    for i, l in enumerate(g["layers"]):
        assert l["weight"] == pytest.approx(float(np.linalg.norm(kernels[i])), rel=1e-4)
        assert l["attention_param"] is None and l["output"] is not None
    assert g["input_grad_norm"] == pytest.approx(float(jnp.linalg.norm(gx)), rel=1e-4)
    assert g["layers"][1]["input"] == pytest.approx(g["layers"][0]["output"])

    # probes: rasters from the recorded spikes; no membrane or attention internals for these layers
    probed = analysis.probe_responses(net, x, k=3)
    assert probed["names"] == names and probed["layers"][2]["raster"].shape == (2, 3)
    np.testing.assert_allclose(probed["layers"][2]["raster"].sum(), ref[2][0].reshape(2, -1)[
        :, probed["layers"][2]["neurons"]].sum())
    assert probed["layers"][0]["membrane"] is None and probed["layers"][0]["v_th"] is None


def _check_png(path):
    assert os.path.getsize(path) > 1000
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50 and np.ptp(img) > 0


def test_figures_are_valid_pngs(tmp_path, tcsa_model):
    model = nnx.clone(tcsa_model)
    model.train()
    x = np.random.default_rng(2).poisson(1.0, (4, 2, 4, 4, 2)).astype(np.float32)
    batches = [{"frames": x, "label": np.array([0, 1, 0, 1])}]
    stats = analysis.collect_activity(model, batches)
    bypass = analysis.collect_activity(model, batches, attention=False)
    probed = analysis.probe_responses(model, x, k=5)
    assert probed["layers"][0]["raster"].shape == (2, 5) and probed["layers"][1]["raster"].shape == (2, 2)
    assert probed["layers"][0]["ta"].shape == (4, 2) and probed["layers"][0]["ca"].shape == (4, 8)
    assert probed["layers"][0]["sa"].shape == (4, 2, 2) and probed["layers"][1]["ca"] is None
    assert probed["layers"][0]["membrane"].shape == (2, 5) and probed["layers"][1]["membrane"].shape == (2, 2)
    assert probed["names"] == ["conv1", "fc1"] and probed["layers"][0]["v_th"] == pytest.approx(0.05)
    grads = analysis.gradient_norms(model, batches)
    layers, _ = analysis.energy_report(analysis.count_operations(model), stats)
    paths = [
        plots.plot_activity(stats, str(tmp_path / "activity.png"), bypass=bypass),
        plots.plot_firing_maps(stats, str(tmp_path / "firing_maps.png")),
        plots.plot_attention_weights(probed, str(tmp_path / "attention_weights.png")),
        plots.plot_raster(probed, str(tmp_path / "spike_raster.png")),
        plots.plot_membrane(probed, str(tmp_path / "membrane.png")),
        plots.plot_attention_effect(stats, bypass, probed, str(tmp_path / "attention_effect.png")),
        plots.plot_gradient_norms(grads, str(tmp_path / "gradient_norms.png")),
        plots.plot_energy(layers, str(tmp_path / "energy.png")),
    ]
    for path in paths:
        _check_png(path)


# --------------------------------------------------------------------------- the command


TINY = [
    "--config=configs/digits_dvs.py", "--config.model.T=4", "--config.model.channels=(8,8)",
    "--config.model.fc=(16,)", "--config.data.digits_time_step_us=5000", "--config.data.digits_sensor_size=16",
    "--config.data.ds=1", "--config.data.digits_scale=1.5",  # 16x16 frames straight from a 16x16 sensor: quick
    "--config.model.neuron.v_th=0.05",  # after one epoch v_th 0.3 leaves conv2 and the dense layers silent
]
REQUIRED_LAYER_KEYS = {"name", "neurons", "firing_rate", "macs", "sops", "energy_pj"}
REQUIRED_TOTAL_KEYS = {"macs", "sops", "energy_pj", "ann_energy_pj", "energy_ratio", "network_firing_rate"}


def _run(args, cache_dir):
    # One persistent compilation cache for the train and analyse subprocesses: the eager model-initialisation
    # programs (identical in all of them) compile once.
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def _check_report(out_dir, n_layers=4, figures=True):
    with open(os.path.join(out_dir, "report.json")) as f:
        report = json.load(f)
    assert len(report["layers"]) == n_layers
    for layer in report["layers"]:
        assert REQUIRED_LAYER_KEYS <= set(layer)
    assert REQUIRED_TOTAL_KEYS <= set(report["totals"])
    assert bool(report["figures"]) == figures
    for name in report["figures"]:
        _check_png(os.path.join(out_dir, name))
    return report


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_cache")


DIGITS_TRAIN, DIGITS_TEST = 1437, 360  # the digits data's fixed stratified split (README, "The main job")
TRAIN_BATCH = 128
DIGITS_EVAL_BATCH = 120  # configs/digits_dvs.py: config.train.eval_batch_size


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, cache_dir):
    workdir = str(tmp_path_factory.mktemp("run"))
    proc = _run(["train.py", *TINY, f"--workdir={workdir}", "--config.train.num_epochs=1",
                 f"--config.train.batch_size={TRAIN_BATCH}", "--progress=false"], cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def test_command_on_checkpoint_matches_training_firing_rate(trained_run, cache_dir):
    proc = _run(["-m", "masnn_jax.analyze", *TINY, f"--workdir={trained_run}", "--grad_batches=1",
                 "--energy=45nm_int8"], cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "network firing rate" in proc.stdout and "ANN/SNN" in proc.stdout
    report = _check_report(os.path.join(trained_run, "analysis"))
    assert len(report["figures"]) == 8
    assert report["source"]["init"] == "checkpoint"
    assert report["source"]["checkpoint_step"] == DIGITS_TRAIN // TRAIN_BATCH  # one epoch
    assert report["source"]["batch_norm"] == "running averages"
    assert report["energy_model"]["e_mac_pj"] == 0.23
    assert report["bypass_attention"] is not None and report["gradients"]["batches"] == 1
    # train.py logs the network firing rate of every evaluation; the analysis of the same checkpoint on the
    # whole test split (running BN statistics, as evaluate) must give the same number.
    with open(os.path.join(trained_run, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    test_rows = [r for r in rows if r["split"] == "test"]
    assert test_rows and all("firing_rate" in r for r in test_rows)
    assert report["dataset"]["samples"] == DIGITS_TEST
    assert report["totals"]["network_firing_rate"] == pytest.approx(test_rows[-1]["firing_rate"], rel=1e-5)
    assert report["totals"]["accuracy"] == pytest.approx(test_rows[-1]["accuracy"], abs=1e-9)
    assert all(layer["firing_rate"] > 0 for layer in report["layers"]), report["layers"]  # nothing compared 0 == 0


def test_command_random_init_and_missing_checkpoint(tmp_path, trained_run, cache_dir):
    del trained_run  # only for the warm compilation cache
    workdir = str(tmp_path / "fresh")
    proc = _run(["-m", "masnn_jax.analyze", *TINY, f"--workdir={workdir}"], cache_dir)
    assert proc.returncode == 1
    assert os.path.join(workdir, "checkpoints") in proc.stderr and "--init=random" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = _run(["-m", "masnn_jax.analyze", *TINY, f"--workdir={workdir}", "--init=random", "--num_batches=1",
                 "--grad_batches=0", "--figures=false", "--bypass=false"], cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "network firing rate" in proc.stdout
    report = _check_report(os.path.join(workdir, "analysis"), figures=False)
    assert report["source"]["init"] == "random" and report["source"]["batch_norm"] == "batch statistics"
    assert report["source"]["checkpoint_step"] is None
    assert report["dataset"]["samples"] == DIGITS_EVAL_BATCH and report["totals"]["network_firing_rate"] > 0
    assert report["gradients"] is None and report["bypass_attention"] is None
    last = proc.stdout.rstrip().splitlines()[-1]  # --figures=false: no dangling 'and 0 figures: '
    assert last == f"wrote {os.path.join(workdir, 'analysis', 'report.json')} (no figures)", last


def _assert_one_line_error(proc, *fragments):
    """A refused command: exit 1, no traceback, one message (absl's flag errors add their 'Pass --helpshort' hint)
    holding every fragment."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("Pass --help")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.mark.parametrize("flag, value, bound", [
    ("probe_samples", 0, "positive"), ("raster_neurons", 0, "positive"),
    ("num_batches", -1, "non-negative"), ("grad_batches", -1, "non-negative"),
])
def test_command_refuses_out_of_range_counts(tmp_path, cache_dir, flag, value, bound):
    """--probe_samples / --raster_neurons < 1 (ZeroDivisionError deep in JAX before) and --num_batches /
    --grad_batches < 0 (accepted silently before) are refused while the flags are parsed: one line naming the
    flag, nothing built or written."""
    workdir = tmp_path / "run"
    proc = _run(["-m", "masnn_jax.analyze", *TINY, f"--workdir={workdir}", "--init=random", "--num_batches=1",
                 "--grad_batches=0", "--bypass=false", f"--{flag}={value}"], cache_dir)
    _assert_one_line_error(proc, f"--{flag}={value}", f"{bound} integer")
    assert not workdir.exists()


def test_command_out_must_be_a_writable_folder(tmp_path, cache_dir):
    """--out that is a file, lies under a file, or is not writable: one 'error:' line naming --out and the path,
    before any model is built (nothing written, not even <workdir>)."""
    workdir = tmp_path / "run"
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    args = ["-m", "masnn_jax.analyze", *TINY, f"--workdir={workdir}", "--init=random", "--num_batches=1",
            "--grad_batches=0", "--bypass=false"]
    proc = _run([*args, f"--out={a_file}"], cache_dir)
    _assert_one_line_error(proc, "error: ", f"--out {a_file}", "is a file, not a folder")
    proc = _run([*args, f"--out={a_file / 'sub'}"], cache_dir)
    _assert_one_line_error(proc, "error: ", f"--out {a_file / 'sub'}", f"cannot be created, {a_file} is a file")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            proc = _run([*args, f"--out={locked}"], cache_dir)
            _assert_one_line_error(proc, "error: ", f"--out {locked}", "not writable")
        finally:
            locked.chmod(0o700)
    assert not workdir.exists() and a_file.read_text() == "not a folder"


def test_command_missing_step_lists_the_available_ones(trained_run, cache_dir):
    """--step that the workdir does not hold: one line naming the step and listing the steps there, worded as
    train.py --mode=eval --step words it (masnn_jax.train.checkpoint.restore_state), not 'no checkpoint ... Train
    first'."""
    ckpt_dir = os.path.join(trained_run, "checkpoints")
    steps = sorted(int(name) for name in os.listdir(ckpt_dir) if name.isdigit())
    assert steps
    proc = _run(["-m", "masnn_jax.analyze", *TINY, f"--workdir={trained_run}", "--step=999"], cache_dir)
    _assert_one_line_error(proc, f"error: no checkpoint for step 999 in {ckpt_dir}; available steps: {steps}")
    assert "Train first" not in proc.stderr
