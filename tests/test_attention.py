"""Tests for masnn_jax.nn.attention.

Reference values come from SpikingJelly 2.0.0 (`layer.attention.MultiDimensionalAttention`,
`TemporalWiseAttention`) run in torch float64, and from NumPy re-derivations of the paper
formulas (MA-SNN TPAMI 2023, ECA-Net CVPR 2020, SimAM ICML 2021).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax.nn.attention import (
    ECA,
    SCHEMES,
    ChannelAttention,
    MultiDimensionalAttention,
    SimAM,
    SpatialAttention,
    TemporalAttention,
    eca_kernel_size,
)

PARITY_SCHEMES = ("TA", "CA", "SA", "TCA", "TSA", "CSA", "TCSA")


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def x64():
    """Run the test with jax_enable_x64 on; restored afterwards."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def sj_attention():
    pytest.importorskip("torch")
    return pytest.importorskip("spikingjelly.activation_based.layer.attention")


def n_params(module) -> int:
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(module, nnx.Param)))


def abstract(cls, *args, **kwargs):
    """Build a module abstractly (shapes only, nothing computed): fast parameter counting."""
    return nnx.eval_shape(lambda: cls(*args, rngs=nnx.Rngs(0), **kwargs))


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_mlp(v, w1, w2):
    return np.maximum(v @ w1, 0.0) @ w2


def np_temporal(x, w1, w2):
    axes = tuple(range(2, x.ndim))
    g = np_sigmoid(np_mlp(x.mean(axis=axes), w1, w2) + np_mlp(x.max(axis=axes), w1, w2))
    return g.reshape(g.shape + (1,) * (x.ndim - 2))


def np_channel_step(u, w1, w2):
    """CBAM channel weights of one step u (B, H, W, C) -> (B, 1, 1, C)."""
    g = np_sigmoid(np_mlp(u.mean(axis=(1, 2)), w1, w2) + np_mlp(u.max(axis=(1, 2)), w1, w2))
    return g[:, None, None, :]


def np_correlate2d_same(maps, kernel):
    """maps (B, H, W, Cin), kernel (k, k, Cin, 1) -> (B, H, W), zero padding k // 2."""
    B, H, W, _ = maps.shape
    k = kernel.shape[0]
    p = k // 2
    padded = np.pad(maps, ((0, 0), (p, p), (p, p), (0, 0)))
    out = np.zeros((B, H, W))
    for i in range(H):
        for j in range(W):
            patch = padded[:, i : i + k, j : j + k, :]  # (B, k, k, Cin)
            out[:, i, j] = np.einsum("bxyc,xyc->b", patch, kernel[..., 0])
    return out


def np_spatial_step(u, kernel):
    """CBAM spatial weights of one step u (B, H, W, C) -> (B, H, W, 1)."""
    maps = np.stack([u.mean(axis=-1), u.max(axis=-1)], axis=-1)
    return np_sigmoid(np_correlate2d_same(maps, kernel))[..., None]


def np_eca(x, kernel_1d):
    """ECA-Net: sigmoid(conv1d_k(GAP(x))) over the channel axis, zero padding (k-1)/2."""
    y = x.mean(axis=tuple(range(1, x.ndim - 1)))  # (B, C)
    k = kernel_1d.shape[0]
    p = (k - 1) // 2
    yp = np.pad(y, ((0, 0), (p, p)))
    C = y.shape[1]
    z = np.stack([(yp[:, c : c + k] * kernel_1d).sum(axis=1) for c in range(C)], axis=1)
    g = np_sigmoid(z)
    return g.reshape((g.shape[0],) + (1,) * (x.ndim - 2) + (C,))


def np_simam_map(m, lam):
    """SimAM on maps m (..., H, W): weight = sigmoid(1 / e*), e* from the paper's Eq. (5)."""
    H, W = m.shape[-2:]
    M = H * W - 1
    mu = m.mean(axis=(-2, -1), keepdims=True)
    sigma2 = ((m - mu) ** 2).sum(axis=(-2, -1), keepdims=True) / M
    e_star = 4 * (sigma2 + lam) / ((m - mu) ** 2 + 2 * sigma2 + 2 * lam)
    return np_sigmoid(1.0 / e_star)


def kernels_of(att: MultiDimensionalAttention) -> dict:
    out = {}
    if att.ta is not None:
        out["ta"] = (np.asarray(att.ta.fc1.kernel[...]), np.asarray(att.ta.fc2.kernel[...]))
    if att.ca is not None:
        out["ca"] = (np.asarray(att.ca.fc1.kernel[...]), np.asarray(att.ca.fc2.kernel[...]))
    if att.sa is not None:
        out["sa"] = np.asarray(att.sa.conv.kernel[...])
    return out


def randomize_params(module, seed, scale=0.7):
    """Replace every parameter with N(0, scale^2) so the sigmoids are far from 0.5."""
    rng = np.random.default_rng(seed)
    for _, var in nnx.iter_graph(module):
        if isinstance(var, nnx.Param):
            var.set_value(jnp.asarray(rng.normal(0.0, scale, var.shape), dtype=var.dtype))
    return module


def make(cls, *args, seed=0, scale=0.7, **kwargs):
    """Build a module abstractly, then fill its parameters with N(0, scale^2) from NumPy.

    Skips the random initialisers (whose per-shape compilation dominates the run time of
    such small tests); the default initialisation is tested separately.
    """
    return randomize_params(abstract(cls, *args, **kwargs), seed, scale)


# One compiled program per test instead of one per primitive (much faster on small CPUs).
jit_call = nnx.jit(lambda m, v: m(v))
jit_input = nnx.jit(lambda m, v: m.input_transform(v))
jit_membrane = nnx.jit(lambda m, v: m.membrane_transform(v))


# ------------------------------------------------------------------ SpikingJelly parity


def _load(var, value):
    assert tuple(var.shape) == value.shape, (var.shape, value.shape)
    var.set_value(jnp.asarray(value, dtype=var.dtype))


def _copy_sj_weights(sj, att):
    """Copy SpikingJelly MultiDimensionalAttention weights into ours (torch -> NNX layouts)."""
    if sj.ta is not None:
        w1 = sj.ta.sharedMLP[0].weight.detach().numpy()  # Conv3d (T//r, T, 1, 1, 1)
        w2 = sj.ta.sharedMLP[2].weight.detach().numpy()  # Conv3d (T, T//r, 1, 1, 1)
        _load(att.ta.fc1.kernel, w1.reshape(w1.shape[:2]).T)  # Linear kernel (in, out)
        _load(att.ta.fc2.kernel, w2.reshape(w2.shape[:2]).T)
    if sj.ca is not None:
        w1 = sj.ca.sharedMLP[0].weight.detach().numpy()
        w2 = sj.ca.sharedMLP[2].weight.detach().numpy()
        _load(att.ca.fc1.kernel, w1.reshape(w1.shape[:2]).T)
        _load(att.ca.fc2.kernel, w2.reshape(w2.shape[:2]).T)
    if sj.sa is not None:
        w = sj.sa.conv.weight.detach().numpy()  # Conv2d (out=1, in=2, kh, kw)
        _load(att.sa.conv.kernel, w.transpose(2, 3, 1, 0))  # (kh, kw, in, out)


@pytest.mark.parametrize(
    "scheme,kernel_size", [(s, 3) for s in PARITY_SCHEMES] + [("TCSA", 7), ("SA", 7)]
)
def test_parity_with_spikingjelly(sj_attention, x64, scheme, kernel_size):
    import torch

    T, N, C, H, W = 10, 3, 16, 6, 5
    t_ratio, c_ratio = 5, 4
    torch.manual_seed(10 * PARITY_SCHEMES.index(scheme) + kernel_size)
    sj = sj_attention.MultiDimensionalAttention(
        T,
        C,
        reduction_t=t_ratio,
        reduction_c=c_ratio,
        kernel_size=kernel_size,
        use_temporal="T" in scheme,
        use_channel="C" in scheme,
        use_spatial="S" in scheme,
    ).double()
    with torch.no_grad():
        for p in sj.parameters():
            p.normal_(0.0, 0.7)  # larger than the default init: sigmoids far from 0.5

    att = abstract(
        MultiDimensionalAttention,
        scheme,
        T,
        C,
        c_ratio=c_ratio,
        t_ratio=t_ratio,
        kernel_size=kernel_size,
        param_dtype=jnp.float64,
    )
    assert n_params(att) == sum(p.numel() for p in sj.parameters())
    _copy_sj_weights(sj, att)

    # SpikingJelly 2.0.0's MultiDimensionalAttention.forward takes [T, N, C, H, W] (it
    # transposes to [N, T, C, H, W] internally); ours takes (B, T, H, W, C).
    x_t = torch.randn(T, N, C, H, W, dtype=torch.float64)
    with torch.no_grad():
        # SpikingJelly applies the final ReLU itself (as the official TCSA/... classes do),
        # so its output is compared directly, with no extra ReLU.
        ref = sj(x_t).permute(1, 0, 3, 4, 2).numpy()
    x = jnp.asarray(x_t.permute(1, 0, 3, 4, 2).numpy())
    out = att(x)
    assert out.dtype == jnp.float64
    chex.assert_shape(out, (N, T, H, W, C))
    diff = float(np.max(np.abs(np.asarray(out) - ref)))
    print(f"spikingjelly parity {scheme} k={kernel_size}: max |diff| = {diff:.3e}")
    assert diff < 1e-10
    # the attention must actually do something on this input
    assert np.max(np.abs(ref - np.maximum(x_t.permute(1, 0, 3, 4, 2).numpy(), 0))) > 1e-2


def test_parity_fc_temporal_with_spikingjelly(sj_attention, x64):
    """FC block (B, T, N): ReLU(TA) vs SpikingJelly TemporalWiseAttention(dimension=2).

    TemporalWiseAttention returns g_t(x) * x without the ReLU the official ``TA`` class
    applies, so the ReLU is applied to SpikingJelly's output here.
    """
    import torch

    T, B, L, r = 10, 4, 7, 5
    torch.manual_seed(1)
    sj = sj_attention.TemporalWiseAttention(T, reduction=r, dimension=2).double()
    with torch.no_grad():
        for p in sj.parameters():
            p.normal_(0.0, 0.7)
    att = abstract(
        MultiDimensionalAttention, "TCSA", T, 999, t_ratio=r, fc=True, param_dtype=jnp.float64
    )
    assert att.ca is None and att.sa is None
    _load(att.ta.fc1.kernel, sj.sharedMLP[0].weight.detach().numpy().T)  # Linear (out, in)
    _load(att.ta.fc2.kernel, sj.sharedMLP[2].weight.detach().numpy().T)
    x_t = torch.randn(T, B, L, dtype=torch.float64)
    with torch.no_grad():
        ref = torch.relu(sj(x_t)).permute(1, 0, 2).numpy()
    out = jit_call(att, jnp.asarray(x_t.permute(1, 0, 2).numpy()))
    diff = float(np.max(np.abs(np.asarray(out) - ref)))
    print(f"spikingjelly parity fc TA: max |diff| = {diff:.3e}")
    assert diff < 1e-10


# ----------------------------------------------------------------- NumPy references


@pytest.mark.parametrize("scheme", ["TCSA", "CSA", "TA", "SA"])
def test_input_placement_against_numpy(x64, scheme):
    """Official placement: CA pooled over (T, H, W), SA over (T, C), then ReLU."""
    B, T, H, W, C = 2, 6, 5, 4, 8
    att = make(
        MultiDimensionalAttention, scheme, T, C, c_ratio=4, t_ratio=3, param_dtype=jnp.float64, seed=11
    )
    k = kernels_of(att)
    x = np.random.default_rng(0).normal(size=(B, T, H, W, C))
    ref = x
    if "ta" in k:
        ref = np_temporal(ref, *k["ta"]) * ref
    if "ca" in k:
        w1, w2 = k["ca"]
        txy = (1, 2, 3)  # official CA pools T, H, W jointly
        g = np_sigmoid(np_mlp(ref.mean(axis=txy), w1, w2) + np_mlp(ref.max(axis=txy), w1, w2))
        ref = g[:, None, None, None, :] * ref
    if "sa" in k:
        flat = ref.transpose(0, 2, 3, 1, 4).reshape(B, H, W, T * C)
        ref = np_spatial_step(flat, k["sa"])[:, None] * ref
    ref = np.maximum(ref, 0)
    np.testing.assert_allclose(np.asarray(att(jnp.asarray(x))), ref, rtol=0, atol=1e-12)  # eager
    np.testing.assert_allclose(np.asarray(jit_input(att, jnp.asarray(x))), ref, atol=1e-12)
    assert not att.has_membrane_stage
    u = jnp.ones((B, H, W, C))
    assert att.membrane_transform(u) is u


def _np_membrane_run(x, k, vth=0.3, alpha=0.3):
    """Paper Sec. 4: X_TA = g_t(X) X; per step U = g_s(g_c(H + X_TA^t) ...), fire, reset."""
    x_ta = np_temporal(x, *k["ta"]) * x if "ta" in k else x
    B, T = x.shape[:2]
    h = np.zeros_like(x[:, 0])
    us, ss = [], []
    for t in range(T):
        u = h + x_ta[:, t]
        if "ca" in k:
            u = np_channel_step(u, *k["ca"]) * u
        if "sa" in k:
            u = np_spatial_step(u, k["sa"]) * u
        s = (u >= vth).astype(u.dtype)
        h = alpha * (1 - s) * u
        us.append(u)
        ss.append(s)
    return np.stack(us, 1), np.stack(ss, 1)


def _jax_membrane_run(att, x, vth=0.3, alpha=0.3):
    x_ta = att.input_transform(x)

    def step(h, xt):
        u = att.membrane_transform(h + xt)
        s = (u >= vth).astype(u.dtype)
        return alpha * (1 - s) * u, (u, s)

    _, (us, ss) = jax.lax.scan(step, jnp.zeros_like(x_ta[:, 0]), jnp.swapaxes(x_ta, 0, 1))
    return jnp.swapaxes(us, 0, 1), jnp.swapaxes(ss, 0, 1)


@pytest.mark.parametrize("scheme", ["TCSA", "CSA", "TCA", "SA"])
def test_membrane_placement_against_numpy(x64, scheme):
    B, T, H, W, C = 2, 5, 4, 5, 8
    att = make(
        MultiDimensionalAttention, scheme, T, C, c_ratio=2, t_ratio=2, kernel_size=3,
        placement="membrane", param_dtype=jnp.float64, seed=7,
    )
    k = kernels_of(att)
    x = np.random.default_rng(1).normal(0.8, 0.6, size=(B, T, H, W, C))
    u_ref, s_ref = _np_membrane_run(x, k)
    run = nnx.jit(_jax_membrane_run)
    u, s = run(att, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(u), u_ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(s), s_ref)
    assert 0.01 < s_ref.mean() < 0.99  # some, not all, neurons fire
    # the TA stage alone, without ReLU
    x_ta = np.asarray(jit_input(att, jnp.asarray(x)))
    ref_ta = np_temporal(x, *k["ta"]) * x if "ta" in k else x
    np.testing.assert_allclose(x_ta, ref_ta, atol=1e-12)
    assert (x_ta < 0).any()  # no ReLU in the membrane placement
    assert att.has_membrane_stage


def test_membrane_placement_flags_and_errors():
    rngs = nnx.Rngs(0)
    ta_only = abstract(MultiDimensionalAttention, "TA", 10, 8, placement="membrane")
    assert not ta_only.has_membrane_stage
    u = jnp.ones((2, 4, 4, 8))
    assert ta_only.membrane_transform(u) is u
    fc = abstract(MultiDimensionalAttention, "TCSA", 10, 8, placement="membrane", fc=True)
    assert not fc.has_membrane_stage and fc.ca is None and fc.sa is None
    full = abstract(MultiDimensionalAttention, "TCSA", 10, 8, placement="membrane", c_ratio=2)
    assert full.has_membrane_stage
    with pytest.raises(ValueError, match="input_transform"):
        full(jnp.ones((2, 10, 4, 4, 8)))
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        full.membrane_transform(jnp.ones((2, 10, 4, 4, 8)))
    with pytest.raises(ValueError, match="C=8"):
        full.membrane_transform(jnp.ones((2, 4, 4, 6)))


def test_units_single_step_and_trailing_dims(x64):
    """Unit weights on one step / arbitrary trailing dims, against NumPy."""
    rng = np.random.default_rng(4)
    ta = make(TemporalAttention, 6, 2, param_dtype=jnp.float64, seed=1)
    ca = make(ChannelAttention, 8, 2, param_dtype=jnp.float64, seed=2)
    sa = make(SpatialAttention, 7, param_dtype=jnp.float64, seed=3)
    x3 = rng.normal(size=(3, 6, 5))
    x6 = rng.normal(size=(2, 6, 2, 3, 2, 4))
    for x in (x3, x6):
        g = ta(jnp.asarray(x))
        chex.assert_shape(g, (x.shape[0], 6) + (1,) * (x.ndim - 2))
        np.testing.assert_allclose(
            np.asarray(g),
            np_temporal(x, np.asarray(ta.fc1.kernel[...]), np.asarray(ta.fc2.kernel[...])),
            atol=1e-13,
        )
    u = rng.normal(size=(2, 9, 7, 8))
    gc = ca(jnp.asarray(u))
    chex.assert_shape(gc, (2, 1, 1, 8))
    np.testing.assert_allclose(
        np.asarray(gc),
        np_channel_step(u, np.asarray(ca.fc1.kernel[...]), np.asarray(ca.fc2.kernel[...])),
        atol=1e-13,
    )
    gs = sa(jnp.asarray(u))
    chex.assert_shape(gs, (2, 9, 7, 1))
    ref = np_spatial_step(u, np.asarray(sa.conv.kernel[...]))
    np.testing.assert_allclose(np.asarray(gs), ref, atol=1e-13)
    gs5 = sa(jnp.asarray(rng.normal(size=(2, 3, 9, 7, 8))))
    chex.assert_shape(gs5, (2, 1, 9, 7, 1))


# -------------------------------------------------------------------- ECA and SimAM


def test_eca_kernel_size_formula():
    # |(log2 C + 1) / 2|_odd
    assert [eca_kernel_size(c) for c in (2, 16, 64, 128, 256, 512, 1024)] == [1, 3, 3, 5, 5, 5, 5]
    assert eca_kernel_size(64, gamma=1, b=1) == 7


@pytest.mark.parametrize("shape", [(2, 4, 5, 6, 16), (3, 5, 6, 64)])
def test_eca_against_numpy(x64, shape):
    C = shape[-1]
    eca = make(ECA, C, param_dtype=jnp.float64, seed=1, scale=1.5)
    assert eca.k == eca_kernel_size(C) and n_params(eca) == eca.k
    x = np.random.default_rng(2).normal(size=shape)
    g = jit_call(eca, jnp.asarray(x))
    chex.assert_shape(g, (shape[0],) + (1,) * (len(shape) - 2) + (C,))
    ref = np_eca(x, np.asarray(eca.conv.kernel[...])[:, 0, 0])
    np.testing.assert_allclose(np.asarray(g), ref, rtol=0, atol=1e-13)
    assert np.ptp(ref) > 0.05


def test_simam_against_numpy(x64):
    rng = np.random.default_rng(3)
    lam = 1e-2
    seq = rng.normal(size=(2, 3, 5, 4, 6))
    step = rng.normal(size=(2, 5, 4, 6))
    pooled = SimAM(lam)
    full = SimAM(lam, per_neuron=True)
    assert n_params(pooled) == 0
    # pooled: mean over (T, C) / C, then SimAM over the H x W map
    g = pooled(jnp.asarray(seq))
    chex.assert_shape(g, (2, 1, 5, 4, 1))
    ref = np_simam_map(seq.mean(axis=(1, 4)), lam)[:, None, :, :, None]
    np.testing.assert_allclose(np.asarray(g), ref, atol=1e-13)
    g = pooled(jnp.asarray(step))
    chex.assert_shape(g, (2, 5, 4, 1))
    np.testing.assert_allclose(np.asarray(g), np_simam_map(step.mean(-1), lam)[..., None], atol=1e-13)
    # per neuron: statistics over H x W of each (b, [t,] c) map
    g = full(jnp.asarray(seq))
    chex.assert_shape(g, seq.shape)
    ref = np.moveaxis(np_simam_map(np.moveaxis(seq, -1, 2), lam), 2, -1)
    np.testing.assert_allclose(np.asarray(g), ref, atol=1e-13)
    g = full(jnp.asarray(step))
    ref = np.moveaxis(np_simam_map(np.moveaxis(step, -1, 1), lam), 1, -1)
    np.testing.assert_allclose(np.asarray(g), ref, atol=1e-13)
    # weights are >= sigmoid(1/2): SimAM never suppresses below that
    assert float(g.min()) >= np_sigmoid(0.5) - 1e-12


def test_block_with_eca_and_simam_against_numpy(x64):
    B, T, H, W, C = 2, 4, 5, 5, 16
    att = make(
        MultiDimensionalAttention, "CSA", T, C, channel="eca", spatial="simam",
        param_dtype=jnp.float64, seed=5, scale=1.5,
    )
    assert isinstance(att.ca, ECA) and isinstance(att.sa, SimAM)
    x = np.random.default_rng(6).normal(size=(B, T, H, W, C))
    out = np_eca(x, np.asarray(att.ca.conv.kernel[...])[:, 0, 0]) * x
    out = np_simam_map(out.mean(axis=(1, 4)), 1e-4)[:, None, :, :, None] * out
    np.testing.assert_allclose(np.asarray(jit_call(att, jnp.asarray(x))), np.maximum(out, 0), atol=1e-12)


# --------------------------------------------------------------------- parameter counts


def test_parameter_counts():
    A = abstract
    assert n_params(A(TemporalAttention, 60, 5)) == 1440
    assert n_params(A(ChannelAttention, 64, 8)) == 1024
    assert n_params(A(SpatialAttention)) == 18
    assert n_params(A(SpatialAttention, 7)) == 98
    MDA = MultiDimensionalAttention
    assert n_params(A(MDA, "TCSA", 60, 128, c_ratio=8, t_ratio=5)) == 1440 + 4096 + 18
    assert n_params(A(MDA, "no", 60, 128)) == 0
    expected = {"TA": 1440, "CA": 1024, "SA": 18, "TCA": 2464, "TSA": 1458, "CSA": 1042, "TCSA": 2482}
    for scheme, n in expected.items():
        assert n_params(A(MDA, scheme, 60, 64)) == n, scheme
    # FC blocks: TA only, and only when the scheme contains T
    assert n_params(A(MDA, "TCSA", 60, 256, fc=True)) == 1440
    assert n_params(A(MDA, "CSA", 60, 256, fc=True)) == 0
    # DVS128 Gesture net with TCSA: convs 64/128/128 + two FC layers = +16,470 (REFERENCE §2)
    gesture = sum(n_params(A(MDA, "TCSA", 60, c)) for c in (64, 128, 128)) + 2 * n_params(
        A(MDA, "TCSA", 60, 256, fc=True)
    )
    assert gesture == 16470
    assert SCHEMES == ("no", "TA", "CA", "SA", "TCA", "TSA", "CSA", "TCSA")


def test_concrete_init_matches_torch_default():
    """Concrete construction: counts as abstract; kernels ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    att = MultiDimensionalAttention("TCSA", 60, 64, rngs=nnx.Rngs(0))
    assert n_params(att) == 1440 + 1024 + 18
    fan_in = {"ta/fc1": 60, "ta/fc2": 12, "ca/fc1": 64, "ca/fc2": 8, "sa/conv": 18}
    for path, var in nnx.to_flat_state(nnx.state(att, nnx.Param)):
        name = "/".join(map(str, path[:2]))
        w = np.asarray(var[...])
        assert w.dtype == np.float32
        bound = 1 / math.sqrt(fan_in[name])
        assert np.abs(w).max() <= bound, name
        if w.size >= 96:
            assert np.abs(w).max() > 0.9 * bound and abs(w.mean()) < 0.2 * bound, name


# ------------------------------------------------------------- dtypes and transforms


def test_bf16_in_bf16_out():
    B, T, H, W, C = 2, 5, 4, 4, 8
    x = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, H, W, C)), jnp.bfloat16)
    MDA = MultiDimensionalAttention
    configs = (("TCSA", "cbam", "cbam"), ("CSA", "eca", "simam"), ("no", "cbam", "cbam"))
    for scheme, channel, spatial in configs:
        att = make(MDA, scheme, T, C, c_ratio=2, t_ratio=2, channel=channel, spatial=spatial)
        out = jit_call(att, x)
        assert out.dtype == jnp.bfloat16, (scheme, channel, spatial)
        assert bool(jnp.all(jnp.isfinite(out.astype(jnp.float32))))
    mem = make(MDA, "TCSA", T, C, c_ratio=2, t_ratio=2, placement="membrane")
    assert jit_input(mem, x).dtype == jnp.bfloat16
    assert jit_membrane(mem, x[:, 0]).dtype == jnp.bfloat16
    fc = make(MDA, "TA", T, C, t_ratio=2, fc=True)
    assert jit_call(fc, jnp.ones((B, T, 7), jnp.bfloat16)).dtype == jnp.bfloat16
    # the weights themselves come out in the compute dtype too
    assert jit_call(mem.ca, x).dtype == jnp.bfloat16 and jit_call(mem.sa, x).dtype == jnp.bfloat16
    # an explicit compute dtype wins
    att32 = make(MDA, "TCSA", T, C, c_ratio=2, t_ratio=2, dtype=jnp.float32, seed=3)
    assert jit_call(att32, x).dtype == jnp.float32
    # the bf16 result is close to the float32 one (same parameters)
    att16 = make(MDA, "TCSA", T, C, c_ratio=2, t_ratio=2, seed=3)
    ref = jit_call(att32, x.astype(jnp.float32))
    out16 = np.asarray(jit_call(att16, x), np.float32)
    np.testing.assert_allclose(out16, np.asarray(ref), atol=0.05, rtol=0.05)


def test_jit_vmap_grad_compose():
    B, T, H, W, C = 2, 5, 4, 4, 8
    att = make(MultiDimensionalAttention, "TCSA", T, C, c_ratio=2, t_ratio=2)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, B, T, H, W, C)), jnp.float32)

    # (eager == jit is checked in test_input_placement_against_numpy)
    vm = jax.jit(jax.vmap(att))(x)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(vm[i]), np.asarray(jit_call(att, x[i])), atol=1e-6)

    def loss(m, v):
        return jnp.sum(m(v) ** 2)

    grads = nnx.jit(nnx.grad(loss))(att, x[0])
    names = []
    for path, g in nnx.to_flat_state(grads):
        names.append("/".join(map(str, path)))
        g = np.asarray(g[...])
        assert np.abs(g).sum() > 0 and np.isfinite(g).all(), path
    assert sorted(names) == [
        "ca/fc1/kernel", "ca/fc2/kernel", "sa/conv/kernel", "ta/fc1/kernel", "ta/fc2/kernel"
    ]
    gx = jax.jit(jax.grad(lambda v: loss(att, v)))(x[0])
    gx = np.asarray(gx)
    assert np.isfinite(gx).all() and np.abs(gx).sum() > 0


def test_membrane_grad_through_scan_reaches_every_parameter():
    """input_transform + membrane_transform in a jax.lax.scan: jit + grad reach every parameter."""
    B, T, H, W, C = 2, 4, 4, 4, 8
    att = make(MultiDimensionalAttention, "TCSA", T, C, c_ratio=2, t_ratio=2,
               placement="membrane", channel="eca", seed=1)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, H, W, C)), jnp.float32)

    def loss(m, v):
        x_ta = m.input_transform(v)

        def step(h, xt):
            u = m.membrane_transform(h + xt)
            return 0.5 * u, u

        _, us = jax.lax.scan(step, jnp.zeros_like(x_ta[:, 0]), jnp.swapaxes(x_ta, 0, 1))
        return jnp.sum(us ** 2)

    grads = nnx.jit(nnx.grad(loss))(att, x)
    flat = nnx.to_flat_state(grads)
    assert sorted("/".join(map(str, p)) for p, _ in flat) == [
        "ca/conv/kernel", "sa/conv/kernel", "ta/fc1/kernel", "ta/fc2/kernel"
    ]
    for path, g in flat:
        assert np.abs(np.asarray(g[...])).sum() > 0, path


# ------------------------------------------------------------------------- bad inputs


def test_bad_configuration_raises():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="valid schemes: no, TA, CA, SA, TCA, TSA, CSA, TCSA"):
        MultiDimensionalAttention("TCS", 10, 8, rngs=rngs)
    with pytest.raises(ValueError, match="placement.*input, membrane"):
        MultiDimensionalAttention("TA", 10, 8, placement="neuron", rngs=rngs)
    with pytest.raises(ValueError, match="cbam, eca"):
        MultiDimensionalAttention("CA", 10, 8, channel="se", rngs=rngs)
    with pytest.raises(ValueError, match="cbam, simam"):
        MultiDimensionalAttention("SA", 10, 8, spatial="bam", rngs=rngs)
    with pytest.raises(ValueError, match="0 hidden units"):
        MultiDimensionalAttention("TA", 4, 8, t_ratio=5, rngs=rngs)
    with pytest.raises(ValueError, match="0 hidden units"):
        MultiDimensionalAttention("TCA", 10, 4, c_ratio=8, rngs=rngs)
    with pytest.raises(ValueError, match="0 hidden units"):
        TemporalAttention(4, 5, rngs=rngs)
    with pytest.raises(ValueError, match="0 hidden units"):
        ChannelAttention(4, 8, rngs=rngs)
    with pytest.raises(ValueError, match="positive integer"):
        ChannelAttention(8, 0, rngs=rngs)
    with pytest.raises(ValueError, match="3 or 7"):
        SpatialAttention(5, rngs=rngs)
    with pytest.raises(ValueError, match="3 or 7"):
        MultiDimensionalAttention("SA", 10, 8, kernel_size=5, rngs=rngs)
    with pytest.raises(ValueError, match="odd"):
        ECA(16, k=4, rngs=rngs)
    with pytest.raises(ValueError, match="lambda_"):
        SimAM(-1.0)
    # unused units are not validated: T // t_ratio == 0 is fine without TA
    assert abstract(MultiDimensionalAttention, "CSA", 4, 8, t_ratio=5).ta is None


def test_bad_inputs_raise():
    att = abstract(MultiDimensionalAttention, "TCSA", 6, 8, c_ratio=2, t_ratio=2)
    with pytest.raises(ValueError, match=r"\(B, T, H, W, C\)"):
        att(jnp.ones((2, 6, 4, 8)))
    with pytest.raises(ValueError, match="T=6"):
        att(jnp.ones((2, 5, 4, 4, 8)))
    with pytest.raises(ValueError, match="C=8"):
        att(jnp.ones((2, 6, 4, 4, 3)))
    fc = abstract(MultiDimensionalAttention, "TA", 6, 8, t_ratio=2, fc=True)
    with pytest.raises(ValueError, match=r"\(B, T, N\)"):
        fc(jnp.ones((2, 6, 4, 4, 8)))
    with pytest.raises(ValueError, match="T=6"):
        abstract(TemporalAttention, 6, 2)(jnp.ones((2, 7, 3)))
    with pytest.raises(ValueError, match="rank >= 3"):
        abstract(TemporalAttention, 6, 2)(jnp.ones((2, 6)))
    with pytest.raises(ValueError, match="C=8"):
        abstract(ChannelAttention, 8, 2)(jnp.ones((2, 4, 4, 5)))
    with pytest.raises(ValueError, match="C=8"):
        abstract(ECA, 8)(jnp.ones((2, 4, 4, 5)))
    with pytest.raises(ValueError, match="rank 3"):
        abstract(SpatialAttention)(jnp.ones((2, 4, 4)))
    with pytest.raises(ValueError, match="rank 6"):
        SimAM()(jnp.ones((2, 1, 2, 4, 4, 3)))


def test_no_scheme_is_identity():
    x = jnp.linspace(-1, 1, 2 * 3 * 4 * 4 * 5).reshape(2, 3, 4, 4, 5)
    att = abstract(MultiDimensionalAttention, "no", 3, 5)
    assert att.ta is None and att.ca is None and att.sa is None
    assert att(x) is x  # unchanged, in particular no ReLU
    fc = abstract(MultiDimensionalAttention, "CSA", 3, 5, fc=True)
    xf = x.reshape(2, 3, -1)
    assert fc(xf) is xf
