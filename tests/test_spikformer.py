"""The Spikformer family (:mod:`masnn_jax.models.spikformer`): parameter counts of the official configurations,
the configs, the options, the recording protocol and the errors on bad configs.

Float64 parity with a PyTorch reference of the official files is in ``tests/test_spikformer_parity.py``.
"""

from __future__ import annotations

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax.models import build, spikformer
from masnn_jax.models.registry import get_family
from masnn_jax.nn.layers import set_recording
from masnn_jax.train.steps import network_firing_rate

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _expected_params(D, L, C_in, classes, *, qkv_bias, mlp_ratio=4):
    """Parameters the official model computes with, counted from its layer list (spec §3), not from the model."""
    sps_convs = 9 * (C_in * D // 8 + D // 8 * D // 4 + D // 4 * D // 2 + D // 2 * D + D * D)
    sps_bn = 2 * (D // 8 + D // 4 + D // 2 + D + D)
    hidden = mlp_ratio * D
    block = (3 * D * D + (3 * D if qkv_bias else 0) + 3 * 2 * D  # q, k, v + BN
             + D * D + D + 2 * D  # proj (bias) + BN
             + D * hidden + hidden + 2 * hidden + hidden * D + D + 2 * D)  # MLP with bias + BN
    return sps_convs + sps_bn + L * block + D * classes + classes


@pytest.mark.parametrize("overrides, official", [
    (dict(variant="imagenet", embed_dim=768, depth=8, heads=12), 66_338_632),
    (dict(variant="imagenet", embed_dim=512, depth=8, heads=8), 29_689_384),
    (dict(variant="imagenet", embed_dim=384, depth=8, heads=8), 16_816_024),
    (dict(variant="imagenet", embed_dim=512, depth=6, heads=8), 23_373_352),
    (dict(variant="imagenet", embed_dim=512, depth=10, heads=8), 36_005_416),
    (dict(variant="cifar"), 9_324_730),
    (dict(variant="cifar", num_classes=100), 9_359_380),
    (dict(variant="dvs"), 2_566_666),
])
def test_parameter_counts_match_the_official_code(overrides, official):
    got = spikformer.spikformer_param_count(overrides)
    c = dict(spikformer.VARIANTS[overrides["variant"]], **overrides)
    assert got == official == _expected_params(c["embed_dim"], c["depth"], c["input_shape"][2], c["num_classes"],
                                               qkv_bias=c["qkv_bias"])


def _load_config(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIGS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("name, params", [
    ("spikformer_imagenet_8_768", 66_338_632), ("spikformer_imagenet_8_512", 29_689_384),
    ("spikformer_imagenet_8_384", 16_816_024), ("spikformer_imagenet_6_512", 23_373_352),
    ("spikformer_imagenet_10_512", 36_005_416), ("spikformer_cifar10_4_384", 9_324_730),
    ("spikformer_cifar100_4_384", 9_359_380), ("spikformer_cifar10dvs_2_256", 2_566_666),
    ("spikformer_dvs_gesture_2_256", 2_566_923), ("spikformer_digits_dvs", None),
])
def test_configs_build_with_the_counted_parameters(name, params):
    config = _load_config(name)
    m = config.model.to_dict()
    assert m["name"] == "spikformer"
    assert set(m) <= set(get_family("spikformer").keys)
    abstract = nnx.eval_shape(lambda: build(m, rngs=nnx.Rngs(0)))
    assert abstract.input_kind == ("frames" if "dvs" in name else "image")
    if params is not None:
        assert spikformer.spikformer_param_count(m) == params
    t = config.train
    assert (t.optimizer, t.weight_decay_mask, t.label_smoothing) == ("adamw", "ndim>1", 0.1)
    timm = "imagenet" in name or "cifar10_" in name or "cifar100_" in name
    assert t.schedule == ("timm_cosine" if timm else "cosine_epoch")
    if abstract.input_kind == "frames":  # data and model agree on T and the frame shape
        from masnn_jax.data.events.config import check_model_data

        assert config.data.T == config.model.T
        check_model_data(config)


# ------------------------------------------------------------------------------------------------ a tiny model
TINY = dict(name="spikformer", variant="cifar", input_shape=(8, 8, 2), T=3, embed_dim=16, heads=2, depth=1,
            num_classes=5, conv_impl="xla")


def _forward(model, x):
    set_recording(model, "spikes")
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, x):
        m = nnx.merge(graphdef, state, copy=True)
        return nnx.capture(m, nnx.Intermediate)(x)

    return run(state, x)


_features = nnx.jit(lambda m, x: m.features(x))
_call = nnx.jit(lambda m, x: m(x))


def tiny_model(overrides=None, seed=0, qkv_bn_bias=1.0):
    """The model with PyTorch-default-style values drawn in NumPy (U(±1/√fan_in) kernels and biases, BN γ = 1,
    β = 0 except ``qkv_bn_bias`` on the q/k/v BNs so that the attention neuron fires on 4 tokens, learnable scales at
    their init), built from ``nnx.eval_shape``: eager initialisers would compile once per shape, which dominates
    these tests' time on a loaded CPU."""
    cfg = dict(TINY, **(overrides or {}))
    abstract = nnx.eval_shape(lambda: build(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)
    leaves = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        keys = [str(p.key) for p in path if hasattr(p, "key")]  # dict keys only (not the Variable's own node)
        name = keys[-1]
        shape, dtype = leaf.shape, leaf.dtype
        if name in ("var", "scale") and shape:  # BN γ and running variance
            value = np.ones(shape, dtype)
        elif name == "bias" and keys[-2] in ("q_bn", "k_bn", "v_bn"):
            value = np.full(shape, qkv_bn_bias, dtype)
        elif name == "mean" or (name == "bias" and keys[-2].endswith("bn")):
            value = np.zeros(shape, dtype)
        elif not shape:  # learnable attention scale
            value = np.asarray(cfg.get("attn_scale_init", 0.25), dtype)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else shape[0]
            value = rng.uniform(-1, 1, shape).astype(dtype) / np.sqrt(fan_in)
        leaves.append(jnp.asarray(value))
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(state), leaves)
    return nnx.merge(graphdef, state)


def _no_recording(model):
    set_recording(model, "off")
    return model


@pytest.fixture(scope="module")
def tiny_batch():
    return jax.random.normal(jax.random.key(1), (4, 8, 8, 2)) * 1.5


def test_tiny_model_fires_records_and_orders_match(tiny_batch):
    """Both matmul orders give the same logits (exact: sums of spike products, scale 2^-3); every neuron records
    (B, 2) activity, the trainer's firing rate is the count-weighted mean, and the residual stream is integer."""
    a = tiny_model(dict(attn_order="qk_first"))
    b = tiny_model(dict(attn_order="kv_first"))
    la, inter = _forward(a, tiny_batch)
    lb, _ = _forward(b, tiny_batch)
    np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    assert la.shape == (4, 5) and np.all(np.isfinite(np.asarray(la)))
    layers = a.spiking_layers()
    assert len(layers) == 5 + 7 and list(a.layer_names()) == [p for p, _ in layers]
    spikes, counts = 0.0, 0.0
    for path, _ in layers:
        node = inter
        for p in path.split("."):
            node = node[int(p) if p.isdigit() else p]
        s = np.asarray(node["spikes"][0])
        act = np.asarray(node["activity"][0])
        assert s.shape[:2] == (4, 3) and set(np.unique(s)) <= {0.0, 1.0}
        assert 0.0 < s.mean() < 1.0, f"{path} does not fire in a useful range (rate {s.mean()})"
        np.testing.assert_allclose(act[:, 0], s.reshape(4, -1).sum(1))
        np.testing.assert_allclose(act[:, 1], s[0].size)
        spikes, counts = spikes + act[:, 0].sum(), counts + act[:, 1].sum()
    rate = float(network_firing_rate(inter))
    assert 0.0 < rate < 1.0
    np.testing.assert_allclose(rate, spikes / counts, rtol=1e-6)
    stream = np.asarray(_features(_no_recording(a), tiny_batch))
    np.testing.assert_array_equal(stream, np.round(stream))
    assert stream.max() >= 1 and stream.min() >= 0


def test_attend_matches_numpy_in_both_orders():
    rng = np.random.default_rng(0)
    b, t, n, c, h = 2, 3, 5, 8, 2
    q, k, v = (rng.integers(0, 2, (b, t, n, c)).astype(np.float32) for _ in range(3))
    want = np.zeros((b, t, n, c), np.float32)
    d = c // h
    for head in range(h):  # channel = head·d + j
        sl = slice(head * d, (head + 1) * d)
        want[..., sl] = np.einsum("btnd,btmd,btme->btne", q[..., sl], k[..., sl], v[..., sl]) * 0.125
    for order in spikformer.ATTN_ORDERS:
        ssa = spikformer.SSA(c, h, attn_order=order, attn_scale=0.125, attn_scale_init=0.25, qkv_bias=False,
                             proj_bias=True, fc_init="torch", residual="spike", qk_maxpool1d=0,
                             make_lif=lambda attention_neuron=False: spikformer.SpikformerLIF(),
                             out_attention_lif=spikformer.SpikformerLIF, rngs=nnx.Rngs(0))
        np.testing.assert_array_equal(np.asarray(ssa.attend(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v))), want)


def test_token_maxpool_is_a_same_padded_1d_max():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 2, (2, 2, 7, 3)).astype(np.float32)
    got = np.asarray(spikformer._token_maxpool(jnp.asarray(s), 3))
    pad = np.pad(s, ((0, 0), (0, 0), (1, 1), (0, 0)), constant_values=-np.inf)
    want = np.max(np.stack([pad[:, :, i:i + 7] for i in range(3)]), axis=0)
    np.testing.assert_array_equal(got, want)


def test_options_run_fire_and_make_a_real_valued_stream(tiny_batch):
    """Pool before the LIF, learnable scale, 1-D max-pool on Q and K and the membrane residual together: the network
    fires, ``in_lif`` replaces ``proj_lif`` / ``fc2_lif`` and BN outputs reach the stream."""
    model = tiny_model(dict(sps_pool_order="conv-bn-pool-lif", attn_scale="learnable", qk_maxpool1d=3,
                            residual="membrane"))
    assert float(model.blocks[0].attn.scale[...]) == 0.25
    logits, inter = _forward(model, tiny_batch)
    assert logits.shape == (4, 5) and np.all(np.isfinite(np.asarray(logits)))
    assert 0.0 < float(network_firing_rate(inter)) < 1.0
    paths = [p for p, _ in model.spiking_layers()]
    assert len(paths) == 12 and "blocks.0.attn.in_lif" in paths and "blocks.0.mlp.fc2_lif" not in paths
    stream = np.asarray(_features(_no_recording(model), tiny_batch))
    assert np.any(stream != np.round(stream))


@pytest.mark.parametrize("placement", ["input", "membrane"])
def test_multi_dimensional_attention_adds_the_expected_parameters_and_runs(tiny_batch, placement):
    """TCSA on every SPS stage and on the block neurons: the added parameters are the attention blocks' (counted
    from their layer sizes), and the network runs. (At initialisation the three sigmoid gates scale the
    pre-activation by about 1/8, which keeps Spikformer's v_th = 1 neurons almost silent: firing is not asserted.)"""
    extra = dict(sps_attention="TCSA", block_attention="TCSA", attention_placement=placement, c_ratio=2, t_ratio=1)
    base = spikformer.spikformer_param_count(TINY)
    T, D = TINY["T"], TINY["embed_dim"]

    def mda(C):  # TA: T -> T/t_ratio -> T (no bias); CA: C -> C/c_ratio -> C (no bias); SA: conv 3×3, 2 -> 1
        return 2 * T * T + 2 * C * (C // 2) + 2 * 9

    added = sum(mda(C) for C in (D // 8, D // 4, D // 2, D, D)) + 2 * mda(D)
    assert spikformer.spikformer_param_count(dict(TINY, **extra)) == base + added
    assert spikformer.spikformer_param_count(dict(TINY, **extra), skip_attention=True) == base
    model = tiny_model(extra)
    assert model.sps.stages[0].lif.attention.placement == placement
    if placement == "input":  # the forward pass of one placement is enough (compile time on a loaded CPU)
        return
    logits, inter = _forward(model, tiny_batch)
    assert logits.shape == (4, 5) and np.all(np.isfinite(np.asarray(logits)))
    rate = float(network_firing_rate(inter))
    assert 0.0 <= rate < 1.0


def test_image_input_is_repeated_over_time(tiny_batch):
    """An 'image' model equals the 'frames' model (same weights) fed the image repeated T times."""
    img, frames = _no_recording(tiny_model()), _no_recording(tiny_model(dict(input_kind="frames")))
    img.eval(), frames.eval()
    x_seq = jnp.broadcast_to(tiny_batch[:, None], (4, 3) + tiny_batch.shape[1:])
    np.testing.assert_array_equal(np.asarray(_call(img, tiny_batch)), np.asarray(_call(frames, x_seq)))
    with pytest.raises(ValueError, match="config.model.input_shape"):
        _call(img, x_seq)
    with pytest.raises(ValueError, match=r"config.model.input_shape=\(8, 8, 2\), config.model.T=3"):
        _call(frames, x_seq[:, :2])


@pytest.mark.parametrize("overrides, key", [
    (dict(variant="vit"), "config.model.variant"),
    (dict(embed_dim=384, heads=7), "config.model.heads"),
    (dict(embed_dim=100), "config.model.embed_dim"),
    (dict(input_shape=(34, 34, 3)), "config.model.input_shape"),
    (dict(variant="imagenet", input_shape=(200, 200, 3)), "config.model.input_shape"),
    (dict(residual="add"), "config.model.residual"),
    (dict(attn_order="softmax"), "config.model.attn_order"),
    (dict(attn_scale="auto"), "config.model.attn_scale"),
    (dict(sps_pool_order="pool-first"), "config.model.sps_pool_order"),
    (dict(pool_stages=(True, True)), "config.model.pool_stages"),
    (dict(block_attention="XYZ"), "config.model.block_attention"),
    (dict(sps_attention="TA", T=1), "config.model.sps_attention"),
    (dict(fc_init="xavier"), "config.model.fc_init"),
    (dict(tau=1.0), "config.model.tau"),
    (dict(input_kind="video"), "config.model.input_kind"),
    (dict(depth=0), "config.model.depth"),
    (dict(dtype="int8"), "config.model.dtype"),
])
def test_bad_configs_raise_one_value_error_naming_the_key(overrides, key):
    cfg = dict(name="spikformer", variant="cifar")
    cfg.update(overrides)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build(cfg, rngs=nnx.Rngs(0))


def test_unknown_key_is_refused():
    with pytest.raises(ValueError, match="unknown config.model keys.*'embed_dims'"):
        build(dict(name="spikformer", embed_dims=384), rngs=nnx.Rngs(0))
