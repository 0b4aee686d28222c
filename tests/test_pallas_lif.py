"""The fused Pallas LIF kernel (masnn_jax.snn.pallas_lif) against the lax.scan reference (masnn_jax.snn.neurons.lif).

Run in Pallas' interpret mode on CPU: the kernel's own code (masked block loads, the in-kernel time loop, the reverse
loop of the backward pass) executes as XLA ops, so values and gradients must equal the scan's to float rounding:
spikes identical, gradients within 1e-6 of the largest gradient in float32. Every case checks that the neurons fire
(a silent neuron would pass any spike comparison). The Triton lowering itself (what a GPU compiles) is checked by
exporting for CUDA, which needs no GPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax import models
from masnn_jax.nn import layers
from masnn_jax.snn import neurons, pallas_lif, surrogate


def _sj_hard():
    # SpikingJelly LIFNode(tau=1/0.7, decay_input=False, v_threshold=0.3, v_reset=0, detach_reset=True), Sigmoid(3.7)
    return neurons.spikingjelly_lif(1 / 0.7, decay_input=False, v_threshold=0.3, v_reset=0.0, detach_reset=True,
                                    surrogate=surrogate.sigmoid(3.7))


def _sj_soft():
    return neurons.spikingjelly_lif(2.0, v_reset=None, v_threshold=0.5, surrogate=surrogate.atan(2.5))


CASES = [
    # (id, params, shape, time_axis, block)
    ("official_masked_tail", neurons.masnn_official(), (4, 9, 37), 1, 16),   # 3 blocks of 16 over 37 neurons
    ("att_res_T1_conv", neurons.att_res_snn(), (2, 1, 5, 3, 2), 1, None),    # T = 1, strict >, detached reset
    ("sj_hard_sigmoid", _sj_hard(), (3, 12, 4, 4, 3), 1, None),
    ("sj_soft_atan_time_major", _sj_soft(), (10, 3, 21), 0, None),           # (T, B, N) layout
    ("official_reset_none_triangle",
     neurons.masnn_official(v_th=0.6).replace(reset="none", surrogate=surrogate.triangle(0.7)), (2, 6, 33), 1, 32),
]


def _value_and_grads(p, x, w, time_axis, block):
    def loss(f):
        return lambda x: (f(x).astype(jnp.float32) * w).sum()

    f_scan = lambda x: neurons.lif(x, p, time_axis=time_axis, impl="scan")  # noqa: E731
    f_pallas = lambda x: pallas_lif.lif_pallas(x, p, time_axis=time_axis, interpret=True, block=block)  # noqa: E731

    @jax.jit
    def run(x):
        return f_scan(x), f_pallas(x), jax.grad(loss(f_scan))(x), jax.grad(loss(f_pallas))(x)

    return run(x)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_scan_in_value_and_gradient(case):
    _, p, shape, time_axis, block = case
    kx, kw = jax.random.split(jax.random.key(0))
    x = 0.6 * jax.random.normal(kx, shape) + 0.25
    w = jax.random.normal(kw, shape)
    s_ref, s, g_ref, g = _value_and_grads(p, x, w, time_axis, block)
    assert s.shape == x.shape and s.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(s), np.asarray(s_ref))
    assert set(np.unique(np.asarray(s))) <= {0.0, 1.0}
    rate = float(s.mean())
    assert 0.05 < rate < 0.95, f"neurons should fire, firing rate {rate}"
    scale = float(jnp.abs(g_ref).max())
    assert scale > 0
    assert float(jnp.abs(g - g_ref).max()) <= 1e-6 * scale
    assert g.dtype == x.dtype


def test_bfloat16_matches_scan():
    """bf16 in, bf16 spikes and gradient out; the kernel evaluates the recurrence op for op in bf16 like the scan."""
    p = neurons.masnn_official()
    x = (0.6 * jax.random.normal(jax.random.key(3), (2, 8, 40)) + 0.25).astype(jnp.bfloat16)
    w = jax.random.normal(jax.random.key(4), x.shape)
    s_ref, s, g_ref, g = _value_and_grads(p, x, w, 1, 16)
    assert s.dtype == jnp.bfloat16 and g.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(s, np.float32), np.asarray(s_ref, np.float32))
    assert 0.05 < float(s.astype(jnp.float32).mean()) < 0.95
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(g_ref, np.float32), rtol=1e-2, atol=1e-2)


def test_resolve_neuron_impl():
    assert pallas_lif.resolve_neuron_impl("auto", "gpu") == "pallas"
    assert pallas_lif.resolve_neuron_impl("auto", "cpu") == "scan"
    assert pallas_lif.resolve_neuron_impl("auto", "tpu") == "scan"
    assert pallas_lif.resolve_neuron_impl(None, "gpu") == "pallas"
    assert pallas_lif.resolve_neuron_impl("scan", "gpu") == "scan"
    assert pallas_lif.resolve_neuron_impl("pallas", "cpu") == "pallas"
    with pytest.raises(ValueError, match="config.model.neuron_impl must be one of"):
        pallas_lif.resolve_neuron_impl("triton")
    with pytest.raises(ValueError, match="neuron_impl"):
        neurons.lif(jnp.zeros((1, 2, 3)), neurons.masnn_official(), impl="cuda")


def test_unsupported_calls_fall_back_to_the_scan():
    x = 0.6 * jax.random.normal(jax.random.key(5), (2, 4, 6)) + 0.25
    p = neurons.masnn_official()
    plif = neurons.PLIF(v_threshold=0.3)
    cases = {
        "transform": dict(transform=lambda u: 1.5 * u),
        "return_v": dict(return_v=True),
        "h0": dict(h0=jnp.full((2, 6), 0.1)),
    }
    for name, kw in cases.items():
        ok, why = pallas_lif.supports(x, p, **kw)
        assert not ok and why
        a, b = neurons.lif(x, p, impl="pallas", **kw), neurons.lif(x, p, impl="scan", **kw)
        jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), a, b)
    liaf = neurons.masnn_official(mode_select="mem")
    assert not pallas_lif.supports(x, liaf)[0]
    np.testing.assert_array_equal(neurons.lif(x, liaf, impl="pallas"), neurons.lif(x, liaf, impl="scan"))
    custom = p.replace(surrogate=surrogate.SpikeFunction(lambda z, a: a / (1 + z * z), 1.0))
    assert "built-in" in pallas_lif.supports(x, custom)[1]
    per_channel = p.replace(v_th=jnp.full((6,), 0.3))
    assert "concrete scalar" in pallas_lif.supports(x, per_channel)[1]

    @jax.jit
    def traced(w):  # PLIF: decay, input_scale, bias are computed from a traced parameter
        q = plif.params().replace(decay=w)
        assert "concrete scalar" in pallas_lif.supports(x, q)[1]
        return neurons.lif(x, q, impl="pallas")

    np.testing.assert_array_equal(traced(0.5), neurons.lif(x, plif.params().replace(decay=0.5), impl="scan"))
    with pytest.raises(ValueError, match="lif_pallas does not support"):
        pallas_lif.lif_pallas(x, liaf)
    with pytest.raises(ValueError, match="power of two"):
        pallas_lif.lif_pallas(x, p, block=24)


def test_inside_batch_chunks_and_checkpoint():
    """The kernel where ConvAttLIF runs it with batch_chunks > 1: inside jax.lax.map over jax.checkpoint-ed chunks
    of the batch (masnn_jax.snn.chunking), value and gradient equal to the scan's."""
    from masnn_jax.snn import chunking

    p = neurons.masnn_official()
    x = 0.6 * jax.random.normal(jax.random.key(7), (4, 5, 3, 3, 4)) + 0.25
    w = jax.random.normal(jax.random.key(8), x.shape)

    def run(impl):
        def f(x):
            z = x.reshape((-1,) + x.shape[2:])  # (B·T, ...) as ConvAttLIF hands it over
            fire = lambda zc: neurons.lif(zc.reshape((-1, 5) + zc.shape[1:]), p, impl=impl)  # noqa: E731
            return chunking.map_batch_chunks(fire, z, batch=4, chunks=2)

        return jax.jit(jax.value_and_grad(lambda x: (f(x) * w).sum()))(x)

    (v_s, g_s), (v_p, g_p) = run("scan"), run("pallas")
    assert float(v_p) == float(v_s)
    assert float(jnp.abs(g_s).max()) > 0
    assert float(jnp.abs(g_p - g_s).max()) <= 1e-6 * float(jnp.abs(g_s).max())


def test_masnn_threads_neuron_impl():
    """config.model.neuron_impl reaches every layer's SpikingNeuron; a PLIF model keeps working (it falls back)."""
    cfg = dict(name="masnn", arch=None, input_shape=(8, 8, 2), T=4, num_classes=3, channels=(4, 4), pools=(2, 2),
               fc=(6,), attention="TCSA", c_ratio=2, t_ratio=2,
               neuron={"kind": "masnn_official"}, surrogate={"name": "rectangle", "width": 0.5})
    for impl, want in (("pallas", "pallas"), ("scan", "scan"), ("auto", pallas_lif.resolve_neuron_impl("auto"))):
        model = nnx.eval_shape(lambda: models.build(dict(cfg, neuron_impl=impl), rngs=nnx.Rngs(0)))
        assert [layer.neuron.impl for layer in model.spiking_layers] == [want] * 4
    with pytest.raises(ValueError, match="config.model.neuron_impl"):
        models.build(dict(cfg, neuron_impl="cuda"), rngs=nnx.Rngs(0))
    plif = layers.SpikingNeuron({"v_threshold": 0.3}, impl="pallas")
    x = 0.6 * jax.random.normal(jax.random.key(9), (2, 3, 5)) + 0.25
    np.testing.assert_array_equal(plif(x), neurons.lif(x, plif.lif_params(), impl="scan"))


def test_defaults_resolve_per_backend():
    from masnn_jax.config import base_config

    assert base_config(arch="dvs_gesture", T=4).model.neuron_impl == "auto"
    neuron = layers.SpikingNeuron(neurons.masnn_official())
    assert neuron.impl == pallas_lif.resolve_neuron_impl("auto")
    assert "neuron_impl" in models.execution_keys("masnn")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_triton_lowering_for_cuda(dtype):
    """The forward and backward kernels lower to Triton IR (what jax does before a GPU compiles them), checked by
    exporting the gradient for CUDA on this CPU machine. Catches unsupported ops and non-power-of-two tensors."""
    from jax import export

    p = neurons.masnn_official(surrogate=surrogate.sigmoid(4.0))

    def grad(x):
        return jax.grad(lambda x: pallas_lif.lif_pallas(x, p, interpret=False).astype(jnp.float32).sum())(x)

    exported = export.export(
        jax.jit(grad), platforms=("cuda",),
        disabled_checks=[export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")],
    )(jax.ShapeDtypeStruct((3, 60, 1000), dtype))
    text = exported.mlir_module()
    assert text.count("__gpu$xla.gpu.triton") == 2  # one forward kernel (saving u), one backward kernel
