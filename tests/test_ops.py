"""Tests of masnn_jax.snn.ops: the im2col convolution equals XLA's, forward and gradient; config wiring."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax import models
from masnn_jax.snn import ops

CASES = [
    # (N, H, W, cin, cout, k, stride, padding)
    (3, 8, 8, 2, 4, 3, 1, ((1, 1), (1, 1))),  # the event nets' 3x3 pad 1
    (2, 9, 7, 3, 5, 3, 2, ((1, 1), (1, 1))),  # stride 2, odd sizes
    (2, 8, 8, 4, 6, 7, 2, ((3, 3), (3, 3))),  # Att-Res-SNN stem geometry
    (2, 6, 6, 3, 2, 1, 1, ((0, 0), (0, 0))),  # 1x1 shortcut
    (2, 6, 5, 2, 3, 3, 1, "SAME"),
    (2, 6, 5, 2, 3, 3, 1, "VALID"),
]


def _ref(x, k, stride, padding):
    return jax.lax.conv_general_dilated(x, k, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)


def _data(case, dtype, seed=0):
    n, h, w, cin, cout, k, _, _ = case
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, h, w, cin)), dtype)
    kern = jnp.asarray(rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin), dtype)
    g = jnp.asarray(rng.standard_normal((n,) + _ref(x, kern, case[6], case[7]).shape[1:]), dtype)
    return x, kern, g


@pytest.mark.parametrize("chunk", [None, 64])
@pytest.mark.parametrize("case", CASES)
def test_im2col_matches_xla_f32(case, chunk):
    stride, padding = case[6], case[7]
    x, k, g = _data(case, jnp.float32)
    f_ref = lambda x, k: jnp.vdot(_ref(x, k, stride, padding), g)  # noqa: E731
    f_new = lambda x, k: jnp.vdot(  # noqa: E731
        ops.im2col_conv(x, k, (stride, stride), padding, precision=jax.lax.Precision.HIGHEST, chunk_elements=chunk), g)
    np.testing.assert_allclose(
        ops.im2col_conv(x, k, (stride, stride), padding, chunk_elements=chunk), _ref(x, k, stride, padding),
        rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.grad(f_new, (0, 1))(x, k), jax.grad(f_ref, (0, 1))(x, k)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES[:3])
def test_im2col_matches_xla_f64(case, x64):
    stride, padding = case[6], case[7]
    x, k, g = _data(case, jnp.float64)
    f_ref = lambda x, k: jnp.vdot(_ref(x, k, stride, padding), g)  # noqa: E731
    f_new = lambda x, k: jnp.vdot(ops.im2col_conv(x, k, (stride, stride), padding, chunk_elements=64), g)  # noqa: E731
    np.testing.assert_allclose(ops.im2col_conv(x, k, (stride, stride), padding), _ref(x, k, stride, padding),
                               rtol=1e-12, atol=1e-12)
    for a, b in zip(jax.grad(f_new, (0, 1))(x, k), jax.grad(f_ref, (0, 1))(x, k)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_chunk_count_divides_batch():
    assert ops._chunk_count(12, 100, 9, None) == 1
    assert ops._chunk_count(12, 100, 9, 10**9) == 1
    d = ops._chunk_count(12, 100, 9, 2000)
    assert 12 % d == 0 and (12 // d) * 900 <= 2000
    assert ops._chunk_count(7, 100, 9, 1) == 7


def test_conv_module_same_parameters_and_output():
    kw = dict(padding=((1, 1), (1, 1)), use_bias=True)
    a = ops.conv(3, 5, (3, 3), impl="xla", rngs=nnx.Rngs(0), **kw)
    b = ops.conv(3, 5, (3, 3), impl="im2col", rngs=nnx.Rngs(0), **kw)
    assert type(a) is nnx.Conv and type(b) is nnx.Conv
    sa, sb = nnx.state(a), nnx.state(b)
    assert jax.tree_util.tree_structure(sa) == jax.tree_util.tree_structure(sb)
    assert b.kernel[...].shape == (3, 3, 3, 5) and b.bias[...].shape == (5,)
    x = jax.random.normal(jax.random.key(1), (2, 4, 6, 6, 3))  # two batch dims, as nnx.Conv allows
    np.testing.assert_allclose(a(x), b(x), rtol=1e-5, atol=1e-5)


def test_conv_general_dilated_fallback():
    # NCHW (dimension_numbers=None) and dilation are handed to lax.
    x = jax.random.normal(jax.random.key(0), (2, 3, 8, 8))
    k = jax.random.normal(jax.random.key(1), (4, 3, 3, 3))
    np.testing.assert_allclose(
        ops.conv_general_dilated_im2col(x, k, (1, 1), "SAME"), jax.lax.conv_general_dilated(x, k, (1, 1), "SAME"),
        rtol=1e-5, atol=1e-5)
    xh = jnp.moveaxis(x, 1, -1)
    kh = jnp.transpose(k, (2, 3, 1, 0))
    dn = ("NHWC", "HWIO", "NHWC")
    np.testing.assert_allclose(
        ops.conv_general_dilated_im2col(xh, kh, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=dn),
        jax.lax.conv_general_dilated(xh, kh, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=dn),
        rtol=1e-5, atol=1e-5)


def test_resolve_conv_impl():
    assert ops.resolve_conv_impl("auto", "cpu") == "im2col"
    assert ops.resolve_conv_impl("auto", "gpu") == "xla"
    assert ops.resolve_conv_impl(None, "tpu") == "xla"
    assert ops.resolve_conv_impl("xla", "cpu") == "xla"
    with pytest.raises(ValueError, match="conv_impl"):
        ops.resolve_conv_impl("cudnn")


def _tiny(**kw):
    # v_th 0.05: the tiny net fires in every layer, so outputs and gradients are not trivially zero
    cfg = dict(arch="custom", input_shape=(8, 8, 2), T=4, num_classes=3, channels=(4, 4), pools=(1, 2), fc=(8,),
               attention="TCSA", t_ratio=2, c_ratio=2, neuron={"kind": "masnn_official", "v_th": 0.05})
    cfg.update(kw)
    return cfg


def _loss_and_grads(cfg, x):
    model = models.build(cfg, rngs=nnx.Rngs(0))
    model.train()
    gd, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        m = nnx.merge(gd, p, rest, copy=True)
        out = m(x)
        return jnp.mean(jnp.square(out - 0.5)), nnx.state(m, nnx.BatchStat)

    (val, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return val, grads, stats


# (im2col + batch_chunks 2 alone is covered by the membrane and PLIF cases, which add to it)
@pytest.mark.parametrize("overrides", [{"conv_impl": "im2col"}, {"remat": "layer"},
                                       {"conv_impl": "im2col", "remat": "layer"}, {"batch_chunks": 2},
                                       {"batch_chunks": 3},
                                       {"conv_impl": "im2col", "batch_chunks": 2, "placement": "membrane"},
                                       {"conv_impl": "im2col", "batch_chunks": 2, "neuron": {"kind": "plif", "v_threshold": 0.05}}])
def test_model_options_keep_results(overrides):
    x = jnp.asarray(np.random.default_rng(0).poisson(0.5, (2, 4, 8, 8, 2)), jnp.float32)
    same_network = {k: v for k, v in overrides.items() if k in ("placement", "neuron")}
    ref = _loss_and_grads(_tiny(conv_impl="xla", **same_network), x)
    new = _loss_and_grads(_tiny(**({"conv_impl": "xla"} | overrides)), x)
    assert 0.0 < float(ref[0]) < 0.25  # 0.25 = every output 0 (no spike reached the classifier)
    kernels = [g for path, g in jax.tree_util.tree_flatten_with_path(ref[1])[0]
               if any(name in jax.tree_util.keystr(path) for name in ("['conv']['kernel']", "['linear']['kernel']"))]
    assert len(kernels) == 6  # 2 conv layers, their 2 spatial-attention convs, 2 dense layers
    assert all(float(jnp.abs(g).max()) > 0 for g in kernels)
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(new)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_model_option_validation():
    with pytest.raises(ValueError, match="remat"):
        models.build(_tiny(remat="all"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="conv_impl"):
        models.build(_tiny(conv_impl="fast"), rngs=nnx.Rngs(0))
    for bad in (0, -2, 1.5, "4", True):
        with pytest.raises(ValueError, match="config.model.batch_chunks"):
            models.build(_tiny(batch_chunks=bad), rngs=nnx.Rngs(0))


def _moments_ref(x, k, b, stride, padding):
    z = _ref(x, k, stride, padding) + b
    mean = jnp.mean(z, axis=(0, 1, 2))
    return z, mean, jnp.mean(jnp.square(z - mean), axis=(0, 1, 2))


@pytest.mark.parametrize("chunk", [None, 64])
@pytest.mark.parametrize("case", CASES[:3] + CASES[4:5])
def test_conv_moments_matches_unfused_f64(case, chunk, x64):
    """conv + bias and its batch mean / biased variance, values and gradients (arbitrary cotangents on all three
    outputs), equal to lax.conv_general_dilated followed by jnp.mean / jnp.var in float64."""
    stride, padding = case[6], case[7]
    x, k, g = _data(case, jnp.float64)
    rng = np.random.default_rng(1)
    b = jnp.asarray(rng.standard_normal(k.shape[-1]), jnp.float64)
    gm, gv = (jnp.asarray(rng.standard_normal(k.shape[-1]), jnp.float64) for _ in range(2))
    pads = padding if isinstance(padding, str) else tuple(map(tuple, padding))
    new = lambda x, k, b: ops.conv_moments(x, k, b, (stride, stride), pads, chunk, jnp.float64)  # noqa: E731
    ref = lambda x, k, b: _moments_ref(x, k, b, stride, padding)  # noqa: E731
    for a, r in zip(new(x, k, b), ref(x, k, b)):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)

    def scalar(f):
        return lambda x, k, b: (lambda z, m, v: jnp.vdot(z, g) + jnp.vdot(m, gm) + jnp.vdot(v, gv))(*f(x, k, b))

    for a, r in zip(jax.grad(scalar(new), (0, 1, 2))(x, k, b), jax.grad(scalar(ref), (0, 1, 2))(x, k, b)):
        np.testing.assert_allclose(a, r, rtol=1e-11, atol=1e-11)


def test_conv_moments_chunked_statistics_f32():
    """The chunk-wise (Chan) merge of the moments is as accurate as the two-pass formula in float32, also for data
    with a large mean (where E[z^2] - E[z]^2 would lose digits)."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((16, 8, 8, 3)) + 50.0, jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 3, 4)) / 5, jnp.float32)
    b = jnp.asarray([100.0, -3.0, 0.5, 0.0], jnp.float32)
    z, mean, var = ops.conv_moments(x, k, b, (1, 1), ((1, 1), (1, 1)), 256)
    z64 = np.asarray(z, np.float64)
    np.testing.assert_allclose(mean, z64.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(var, z64.var(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(z, _ref(x, k, 1, ((1, 1), (1, 1))) + b, rtol=1e-5, atol=1e-4)


def test_batch_chunks_lower_compiled_memory():
    """batch_chunks = 4 must shrink the compiled temp memory of a conv layer's fwd + bwd (the whole point of the
    option): the backward then holds one chunk's BN/attention/neuron intermediates instead of the whole batch's."""
    from masnn_jax.nn import layers
    from masnn_jax.snn import neurons

    def temp_bytes(chunks):
        layer = layers.ConvAttLIF(8, 32, T=24, neuron=neurons.masnn_official(), pool=2, attention="TCSA",
                                  conv_impl="im2col", batch_chunks=chunks, t_ratio=4, rngs=nnx.Rngs(0))
        gd, st = nnx.split(layer)
        x = jnp.zeros((8, 24, 32, 32, 8), jnp.float32)
        loss = lambda st, x: jnp.sum(nnx.merge(gd, st, copy=True)(x))  # noqa: E731
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(st, x).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    one, four = temp_bytes(1), temp_bytes(4)
    assert four < 0.7 * one, (one, four)


def test_batch_chunks_with_data_shards_keep_results():
    """With the batch split over 2 data shards (the layout the Trainer declares on 2 devices), every chunk takes
    rows of both shards and the samples come back in batch order: same loss, gradients and BN statistics."""
    x = jnp.asarray(np.random.default_rng(0).poisson(0.5, (4, 4, 8, 8, 2)), jnp.float32)
    ref = _loss_and_grads(_tiny(conv_impl="xla"), x)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(ref[1]))  # every gradient non-zero

    model = models.build(_tiny(conv_impl="im2col", batch_chunks=2), rngs=nnx.Rngs(0))
    from masnn_jax.snn import chunking

    chunking.set_data_shards(model, 2)
    model.train()
    gd, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        m = nnx.merge(gd, p, rest, copy=True)
        return jnp.mean(jnp.square(m(x) - 0.5)), nnx.state(m, nnx.BatchStat)

    new = jax.value_and_grad(loss, has_aux=True)(params)
    new = (new[0][0], new[1], new[0][1])
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(new)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
