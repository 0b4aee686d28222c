"""Tests of masnn_jax.ops: the im2col convolution equals XLA's, forward and gradient; config wiring."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax import models, ops

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
    cfg = dict(arch="custom", input_shape=(8, 8, 2), T=4, num_classes=3, channels=(4, 4), pools=(1, 2), fc=(8,),
               attention="TCSA", t_ratio=2, c_ratio=2)
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


@pytest.mark.parametrize("overrides", [{"conv_impl": "im2col"}, {"remat": "layer"},
                                       {"conv_impl": "im2col", "remat": "layer"}])
def test_model_options_keep_results(overrides):
    x = jnp.asarray(np.random.default_rng(0).poisson(0.5, (2, 4, 8, 8, 2)), jnp.float32)
    ref = _loss_and_grads(_tiny(conv_impl="xla"), x)
    new = _loss_and_grads(_tiny(**({"conv_impl": "xla"} | overrides)), x)
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(new)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_model_option_validation():
    with pytest.raises(ValueError, match="remat"):
        models.build(_tiny(remat="all"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="conv_impl"):
        models.build(_tiny(conv_impl="fast"), rngs=nnx.Rngs(0))
