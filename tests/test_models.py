"""MA-SNN event networks: parameter counts (from the official code), shapes, dtypes, modes, gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax import models
from masnn_jax.config import base_config

SCHEMES = ("no", "TA", "CA", "SA", "TCA", "TSA", "CSA", "TCSA")

# Counted by hand from MA_SNN/DVSGestures/CNN/Networks/Att_SNN.py with T=60, c_ratio=8, t_ratio=5:
# conv 2->64: 2*64*9+64 + BN 2*64; conv 64->128: 64*128*9+128 + 256; conv 128->128: 128*128*9+128 + 256;
# FC 8192->256: 8192*256+256 + 512; FC 256->11: 256*11+11 + 22.
GESTURE_BASE = (1216 + 128) + (73856 + 256) + (147584 + 256) + (2097408 + 512) + (2827 + 22)
TA_PER_LAYER = 2 * 60 * (60 // 5)  # shared MLP T -> T/5 -> T, no bias; 3 conv + 2 FC layers get one each
CA_TOTAL = 2 * 64 * (64 // 8) + 2 * 2 * 128 * (128 // 8)  # conv layers only
SA_TOTAL = 3 * 2 * 3 * 3  # conv 2->1, 3x3, no bias, conv layers only


def _count(model):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_gesture_parameter_counts_match_official(scheme):
    config = base_config(arch="dvs_gesture", T=60, attention=scheme)
    model = nnx.eval_shape(lambda: models.build(config.model, rngs=nnx.Rngs(0)))
    expected = GESTURE_BASE
    expected += 5 * TA_PER_LAYER if "T" in scheme else 0
    expected += CA_TOTAL if "C" in scheme else 0
    expected += SA_TOTAL if "S" in scheme else 0
    assert GESTURE_BASE == 2_324_065
    assert _count(model) == expected
    if scheme == "TCSA":
        assert expected == 2_340_535


def test_gait_parameter_counts_match_official():
    config = base_config(arch="dvs_gait", T=8, attention="no", t_ratio=2)
    assert _count(nnx.eval_shape(lambda: models.build(config.model, rngs=nnx.Rngs(0)))) == 2_100_767
    config.model.attention = "TCSA"
    assert _count(nnx.eval_shape(lambda: models.build(config.model, rngs=nnx.Rngs(0)))) == 2_100_767 + 87_834


def tiny_config(**overrides):
    config = base_config(arch=None, T=4, attention="TCSA", c_ratio=2, t_ratio=2)
    m = config.model
    m.input_shape = (8, 8, 2)
    m.num_classes = 3
    m.channels = (4, 8)
    m.pools = (1, 2)
    m.fc = (16,)
    for key, value in overrides.items():
        setattr(m, key, value)
    return config


def frames(key, shape=(2, 4, 8, 8, 2), dtype=jnp.float32):
    return (jax.random.poisson(key, 1.0, shape)).astype(dtype)


@pytest.mark.parametrize("placement", ["input", "membrane"])
def test_forward_shape_and_rates(placement):
    model = models.build(tiny_config(placement=placement).model, rngs=nnx.Rngs(0))
    y = model(frames(jax.random.key(1)))
    chex.assert_shape(y, (2, 3))
    # the output is the mean over T=4 of 0/1 spikes: multiples of 1/4 in [0, 1]
    np.testing.assert_array_equal(np.asarray(y) * 4, np.round(np.asarray(y) * 4))
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_placements_differ_and_identity_scheme_agrees():
    x = frames(jax.random.key(2))
    a = models.build(tiny_config(placement="input").model, rngs=nnx.Rngs(0))
    b = models.build(tiny_config(placement="membrane").model, rngs=nnx.Rngs(0))
    la = a.convs[0].attention(a.convs[0].preactivation(x))
    lb = b.convs[0].attention.input_transform(b.convs[0].preactivation(x))
    assert not np.allclose(la, lb)  # input placement applies CA/SA and ReLU on the whole sequence
    # With no attention both placements are the same network.
    na = models.build(tiny_config(attention="no").model, rngs=nnx.Rngs(0))
    nb = models.build(tiny_config(attention="no", placement="membrane").model, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(na(x), nb(x))


def test_liaf_outputs_are_analogue():
    config = tiny_config()
    config.model.neuron.mode_select = "mem"
    y = models.build(config.model, rngs=nnx.Rngs(0))(frames(jax.random.key(3)) * 3)
    assert not np.allclose(np.asarray(y) * 4, np.round(np.asarray(y) * 4))


def test_batchnorm_train_and_eval_modes():
    model = models.build(tiny_config().model, rngs=nnx.Rngs(0))
    x = frames(jax.random.key(4)) * 2
    mean0 = np.array(model.convs[0].bn.mean[...])
    model.train()
    model(x)
    mean1 = np.array(model.convs[0].bn.mean[...])
    assert not np.allclose(mean0, mean1)
    # running mean moves by (1 - 0.9) of the batch mean of the conv output (PyTorch momentum 0.1)
    conv_out = model.convs[0].conv(x.reshape(8, 8, 8, 2))
    np.testing.assert_allclose(mean1, 0.1 * np.asarray(conv_out.mean((0, 1, 2))), rtol=1e-4, atol=1e-6)
    model.eval()
    model(x)
    np.testing.assert_array_equal(mean1, np.array(model.convs[0].bn.mean[...]))


def test_gradients_reach_every_parameter():
    config = tiny_config()
    config.model.surrogate = dict(name="atan", alpha=2.0)  # nowhere-zero surrogate: every path carries gradient
    model = models.build(config.model, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = frames(jax.random.key(5), (4, 4, 8, 8, 2)) * 2
    target = jax.nn.one_hot(jnp.array([0, 1, 2, 0]), 3)

    @jax.jit
    def grad_fn(params, rest):  # rest (BatchNorm statistics) is updated in train mode: pass it in, never close over it
        return jax.grad(lambda p: jnp.mean((nnx.merge(graphdef, p, rest, copy=True)(x) - target) ** 2))(params)

    grads = grad_fn(params, rest)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert float(jnp.abs(g).sum()) > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"


def test_jit_vmap_grad_compose():
    config = tiny_config()
    config.model.neuron.v_th = 0.05  # in eval mode with initial BN statistics v_th 0.3 lets nothing past conv0
    model = models.build(config.model, rngs=nnx.Rngs(0))
    model.eval()
    graphdef, state = nnx.split(model)
    xs = frames(jax.random.key(6), (3, 2, 4, 8, 8, 2)) * 2

    def f(x):
        return nnx.merge(graphdef, state)(x)

    eager = jnp.stack([f(x) for x in xs])
    chex.assert_trees_all_close(jax.jit(jax.vmap(f))(xs), eager)
    g = jax.jit(jax.grad(lambda x: f(x).sum()))(xs[0])
    chex.assert_shape(g, xs[0].shape)
    assert bool(jnp.all(jnp.isfinite(g)))
    assert float(jnp.abs(eager).max()) > 0 and float(jnp.abs(g).max()) > 0  # spikes reach the output; grads flow


def test_float64_end_to_end():
    with jax.enable_x64(True):
        config = tiny_config(param_dtype="float64")
        model = models.build(config.model, rngs=nnx.Rngs(0))
        for leaf in jax.tree_util.tree_leaves(nnx.state(model)):
            assert leaf.dtype == jnp.float64
        x = frames(jax.random.key(7), dtype=jnp.float64)
        y, intermediates = _with_layer_outputs(model, x)
        assert y.dtype == jnp.float64
        assert all(o.dtype == jnp.float64 for o in intermediates)


def _with_layer_outputs(model, x):
    outs = []
    h = x
    for layer in model.convs:
        h = layer(h)
        outs.append(h)
    h = h.reshape(h.shape[0], h.shape[1], -1)
    for layer in model.fcs:
        h = layer(h)
        outs.append(h)
    return h.mean(1), outs


def test_bfloat16_compute_with_float32_params():
    model = models.build(tiny_config(dtype="bfloat16").model, rngs=nnx.Rngs(0))
    for leaf in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)):
        assert leaf.dtype == jnp.float32
    y, outs = _with_layer_outputs(model, frames(jax.random.key(8)).astype(jnp.bfloat16))
    assert all(o.dtype == jnp.bfloat16 for o in outs)
    for o in outs:
        assert set(np.unique(np.asarray(o, np.float32))) <= {0.0, 1.0}


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("attention", "XYZ", "scheme"),
        ("placement", "somewhere", "placement"),
        ("pools", (3, 3), "divisible"),
        ("dtype", "int8", "config.model.dtype"),
        ("pools", (2,), r"config.model.pools has 1 entries but config.model.channels has 2"),
        # what --config.model.<key>=abc / =0 / =1.5 give: the key is named, not int()'s "invalid literal"
        ("channels", ("abc",), r"config.model.channels must be a tuple of integers >= 1.*'abc'"),
        ("channels", (8, 0), r"config.model.channels must be a tuple of integers >= 1.*\(8, 0\)"),
        ("fc", (1.5,), r"config.model.fc must be a tuple of integers"),
        ("input_shape", "abc", r"config.model.input_shape must be a tuple of integers"),
        ("T", 0, r"config.model.T must be a positive integer, got 0"),
        ("num_classes", "ten", r"config.model.num_classes must be a positive integer"),
        ("c_ratio", True, r"config.model.c_ratio must be a positive integer"),
    ],
)
def test_bad_config_errors(key, value, match):
    with pytest.raises(ValueError, match=match):  # a dict: a ConfigDict would refuse some of these types itself
        models.build(dict(tiny_config().model) | {key: value}, rngs=nnx.Rngs(0))


def test_unknown_key_and_neuron_kind():
    config = tiny_config()
    with pytest.raises(ValueError, match="unknown config.model keys"):
        models.build(dict(config.model) | {"chanels": (1,)}, rngs=nnx.Rngs(0))
    config.model.neuron.kind = "hodgkin_huxley"
    with pytest.raises(ValueError, match="config.model.neuron.kind"):
        models.build(config.model, rngs=nnx.Rngs(0))


def test_wrong_input_shape_is_named():
    model = models.build(tiny_config().model, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="channels-last"):
        model(jnp.zeros((2, 4, 2, 8, 8)))


def test_plif_neuron_is_learnable():
    config = tiny_config()
    # low threshold and a nowhere-zero surrogate so that every layer is active and carries gradient
    config.model.neuron = dict(kind="plif", init_tau=2.0, v_threshold=0.05)
    config.model.surrogate = dict(name="atan", alpha=2.0)
    model = models.build(config.model, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = frames(jax.random.key(9)) * 2
    grads = jax.jit(lambda p, r: jax.grad(lambda q: nnx.merge(graphdef, q, r, copy=True)(x).sum())(p))(params, rest)
    w_grads = [g for path, g in jax.tree_util.tree_leaves_with_path(grads) if "plif" in jax.tree_util.keystr(path)]
    assert len(w_grads) == 4 and all(float(jnp.abs(g)) > 0 for g in w_grads)
