"""Tests of masnn_jax.snn.neurons against step-by-step references written here.

References: plain NumPy loops in the form each source writes its neuron (official MA-SNN ``ConvIFCell``, Att-Res-SNN
``mem_update``, SpikingJelly 2.0 ``LIFNode``/``IFNode``), a hand-written torch version of the official loop for
gradients, and SpikingJelly itself (float64 torch autograd) for parity.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax.snn import neurons, surrogate

F32 = lambda v: float(np.float32(v))  # noqa: E731  (parameters as the float32 path sees them)


def _np(a):
    return np.asarray(a, np.float64)


# --- step-by-step references (x batch-major (B, T, ...), float64 NumPy unless said) ------------------------------


def ref_official(x, vth=0.3, alpha=0.3, beta=0.0, *, mode="spike", tr="NTR", act=True, transform=None, h0=None):
    """Official MA-SNN ConvIFCell loop: u = h + x; s = u >= vth; h = (s*vth + (1-s)*u)*alpha + beta."""
    h = np.zeros_like(x[:, 0]) if h0 is None else np.asarray(h0, x.dtype)
    spikes, outs, us = [], [], []
    for t in range(x.shape[1]):
        u = h + x[:, t]
        if transform is not None:
            u = transform(u)
        s = (u >= vth).astype(x.dtype)
        h = (s * vth + (1 - s) * u) * alpha + beta
        if mode == "spike":
            o = s
        else:
            a = u - vth if tr == "TR" else u
            o = np.maximum(a, 0) if act else a
        spikes.append(s), outs.append(o), us.append(u)
    return np.stack(spikes, 1), np.stack(outs, 1), np.stack(us, 1)


def ref_att_res(x, decay=0.25, vth=0.5):
    """Att-Res-SNN mem_update: mem = mem_old*decay*(1 - spike) + x (first step mem = x); spike = mem > vth."""
    spikes, mems = [], []
    spike = np.zeros_like(x[:, 0])
    mem_old = np.zeros_like(x[:, 0])
    for t in range(x.shape[1]):
        mem = x[:, t] if t == 0 else mem_old * decay * (1 - spike) + x[:, t]
        spike = (mem > vth).astype(x.dtype)
        mem_old = mem
        spikes.append(spike), mems.append(mem)
    return np.stack(spikes, 1), np.stack(mems, 1)


def ref_sj_lif(x, tau=2.0, decay_input=True, vth=1.0, v_reset=0.0):
    """SpikingJelly LIFNode: charge H, fire H >= vth, hard (v_reset) or soft (None) reset; V_0 = v_reset or 0."""
    vr = 0.0 if v_reset is None else v_reset
    v = np.full_like(x[:, 0], vr)
    spikes, hs = [], []
    for t in range(x.shape[1]):
        if decay_input:
            h = v + (x[:, t] - (v - vr)) / tau
        else:
            h = v - (v - vr) / tau + x[:, t]
        s = (h >= vth).astype(x.dtype)
        v = h - s * vth if v_reset is None else s * v_reset + (1 - s) * h
        spikes.append(s), hs.append(h)
    return np.stack(spikes, 1), np.stack(hs, 1)


def ref_sj_if(x, vth=1.0, v_reset=0.0):
    """SpikingJelly IFNode: H = V + X, fire H >= vth, hard or soft reset."""
    v = np.full_like(x[:, 0], 0.0 if v_reset is None else v_reset)
    spikes, hs = [], []
    for t in range(x.shape[1]):
        h = v + x[:, t]
        s = (h >= vth).astype(x.dtype)
        v = h - s * vth if v_reset is None else s * v_reset + (1 - s) * h
        spikes.append(s), hs.append(h)
    return np.stack(spikes, 1), np.stack(hs, 1)


def _inputs(rng, shape=(3, 8, 5), loc=0.2, scale=0.6, dtype=np.float32):
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


# --- presets vs the references on random inputs ------------------------------------------------------------------


def _check(out, u, ref_s, ref_u, dtype, atol):
    chex.assert_type([out, u], dtype)
    np.testing.assert_array_equal(_np(out), ref_s)
    np.testing.assert_allclose(_np(u), ref_u, rtol=atol, atol=atol)


def test_official_preset_matches_reference(rng):
    x = _inputs(rng)
    s, u = neurons.lif(jnp.asarray(x), neurons.masnn_official(), return_v=True)
    rs, _, ru = ref_official(x.astype(np.float64), F32(0.3), F32(0.3))
    _check(s, u, rs, ru, jnp.float32, 1e-6)
    assert 0 < rs.mean() < 1
    # non-default parameters, beta != 0
    s, u = neurons.lif(jnp.asarray(x), neurons.masnn_official(0.5, 0.6, 0.05, 1.0), return_v=True)
    rs, _, ru = ref_official(x.astype(np.float64), F32(0.5), F32(0.6), F32(0.05))
    _check(s, u, rs, ru, jnp.float32, 1e-6)


def test_att_res_preset_matches_reference(rng):
    x = _inputs(rng, loc=0.4)
    s, u = neurons.lif(jnp.asarray(x), neurons.att_res_snn(), return_v=True)
    rs, ru = ref_att_res(x.astype(np.float64))
    _check(s, u, rs, ru, jnp.float32, 1e-6)
    assert 0 < rs.mean() < 1


LIF_VARIANTS = [  # (tau, decay_input, v_threshold, v_reset)
    (2.0, True, 1.0, 0.0),
    (2.0, False, 1.0, 0.0),
    (3.0, True, 0.5, None),
    (1.5, False, 0.75, None),
    (4.0, True, 0.5, -0.25),
]


@pytest.mark.parametrize("tau,decay_input,vth,v_reset", LIF_VARIANTS)
def test_spikingjelly_lif_preset_matches_reference(rng, tau, decay_input, vth, v_reset):
    x = _inputs(rng, loc=0.5, scale=1.0)
    p = neurons.spikingjelly_lif(tau, decay_input=decay_input, v_threshold=vth, v_reset=v_reset)
    s, u = neurons.lif(jnp.asarray(x), p, return_v=True)
    rs, ru = ref_sj_lif(x.astype(np.float64), tau, decay_input, vth, v_reset)
    _check(s, u, rs, ru, jnp.float32, 1e-6)
    assert 0 < rs.mean() < 1


@pytest.mark.parametrize("vth,v_reset", [(1.0, 0.0), (0.5, None), (0.75, -0.25)])
def test_if_matches_reference(rng, vth, v_reset):
    x = _inputs(rng, loc=0.2, scale=0.5)
    s, u = neurons.if_neuron(jnp.asarray(x), neurons.spikingjelly_if(v_threshold=vth, v_reset=v_reset), return_v=True)
    rs, ru = ref_sj_if(x.astype(np.float64), vth, v_reset)
    _check(s, u, rs, ru, jnp.float32, 1e-6)
    assert 0 < rs.mean() < 1
    if (vth, v_reset) == (1.0, 0.0):  # the default
        chex.assert_trees_all_equal(neurons.if_neuron(jnp.asarray(x)), s)
    # if_neuron keeps the other fields of a given LIFParams but removes the leak
    p = neurons.spikingjelly_lif(3.0, decay_input=False, v_threshold=vth, v_reset=v_reset)
    chex.assert_trees_all_equal(neurons.if_neuron(jnp.asarray(x), p), s)


def test_presets_x64(rng, x64):
    x = _inputs(rng, loc=0.4, dtype=np.float64)
    s, u = neurons.lif(jnp.asarray(x), neurons.masnn_official(), return_v=True)
    rs, _, ru = ref_official(x)
    _check(s, u, rs, ru, jnp.float64, 1e-12)
    s, u = neurons.lif(jnp.asarray(x), neurons.att_res_snn(), return_v=True)
    _check(s, u, *ref_att_res(x), jnp.float64, 1e-12)
    p = neurons.spikingjelly_lif(3.0, decay_input=True, v_threshold=0.5, v_reset=None)
    s, u = neurons.lif(jnp.asarray(x), p, return_v=True)
    _check(s, u, *ref_sj_lif(x, 3.0, True, 0.5, None), jnp.float64, 1e-12)
    s, u = neurons.if_neuron(jnp.asarray(x), return_v=True)
    _check(s, u, *ref_sj_if(x), jnp.float64, 1e-12)


# --- inputs that land exactly on the threshold (all values exact in binary, also in bf16 / f16) ------------------

_EXACT = [
    # (id, params, x (2 sequences of 6 steps), expected spikes, expected membrane potential)
    (
        "official",  # v_th 0.5, alpha 0.5: fires at u == 0.5 (>=)
        lambda: neurons.masnn_official(v_th=0.5, alpha=0.5),
        [[0.5, 0.25, 0.375, 0.25, 0.0, 0.75], [0.25, 0.375, 0.0, 0.4375, 0.125, 0.3125]],
        [[1, 1, 1, 1, 0, 1], [0, 1, 0, 1, 0, 1]],
        [[0.5, 0.5, 0.625, 0.5, 0.25, 0.875], [0.25, 0.5, 0.25, 0.5625, 0.375, 0.5]],
    ),
    (
        "official_strict",  # same inputs, firing at u > 0.5
        lambda: neurons.masnn_official(v_th=0.5, alpha=0.5).replace(fire_at_threshold=False),
        [[0.5, 0.25, 0.375, 0.25, 0.0, 0.75], [0.25, 0.375, 0.0, 0.4375, 0.125, 0.3125]],
        [[0, 0, 1, 0, 0, 1], [0, 0, 0, 1, 0, 0]],
        [[0.5, 0.5, 0.625, 0.5, 0.25, 0.875], [0.25, 0.5, 0.25, 0.5625, 0.375, 0.5]],
    ),
    (
        "att_res",  # decay 0.25, fires at mem > 0.5 (strict)
        lambda: neurons.att_res_snn(),
        [[0.5, 0.375, 0.5, 0.5, 1.0, 0.375], [0.25, 0.4375, 0.5, 0.0, 0.5, 0.5]],
        [[0, 0, 1, 0, 1, 0], [0, 0, 1, 0, 0, 1]],
        [[0.5, 0.5, 0.625, 0.5, 1.125, 0.375], [0.25, 0.5, 0.625, 0.0, 0.5, 0.625]],
    ),
    (
        "sj_lif_hard",  # tau 2, decay_input, v_th 1, v_reset 0: H = V + (X - V)/2
        lambda: neurons.spikingjelly_lif(2.0),
        [[2.0, 1.0, 1.5, 0.5, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0, 0.0, 2.0]],
        [[1, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 1]],
        [[1.0, 0.5, 1.0, 0.25, 1.625, 0.5], [0.5, 0.75, 0.875, 0.9375, 0.46875, 1.234375]],
    ),
    (
        "sj_lif_soft",
        lambda: neurons.spikingjelly_lif(2.0, v_reset=None),
        [[2.0, 1.0, 1.5, 0.5, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0, 0.0, 2.0]],
        [[1, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 1]],
        [[1.0, 0.5, 1.0, 0.25, 1.625, 0.8125], [0.5, 0.75, 0.875, 0.9375, 0.46875, 1.234375]],
    ),
    (
        "sj_lif_no_decay_input",  # H = V - V/2 + X
        lambda: neurons.spikingjelly_lif(2.0, decay_input=False),
        [[1.0, 0.5, 0.75, 0.25, 2.0, 0.5], [0.5, 0.75, 0.0, 0.5, 0.5, 0.0]],
        [[1, 0, 1, 0, 1, 0], [0, 1, 0, 0, 0, 0]],
        [[1.0, 0.5, 1.0, 0.25, 2.125, 0.5], [0.5, 1.0, 0.0, 0.5, 0.75, 0.375]],
    ),
    (
        "if",  # v_th 0.5: 0.25 + 0.25 fires
        lambda: neurons.spikingjelly_if(v_threshold=0.5),
        [[0.25, 0.25, 0.125, 0.375, 0.5, -0.25], [0.125, 0.125, 0.125, 0.125, 0.25, 0.25]],
        [[0, 1, 0, 1, 1, 0], [0, 0, 0, 1, 0, 1]],
        [[0.25, 0.5, 0.125, 0.5, 0.5, -0.25], [0.125, 0.25, 0.375, 0.5, 0.25, 0.5]],
    ),
]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("case", _EXACT, ids=[c[0] for c in _EXACT])
def test_exact_threshold_inputs(case, dtype):
    name, make, x, want_s, want_u = case
    x64 = np.asarray(x, np.float64)
    # the references agree with the hand-computed values
    if name == "official":
        rs, _, ru = ref_official(x64, 0.5, 0.5)
        np.testing.assert_array_equal(rs, want_s), np.testing.assert_array_equal(ru, want_u)
    elif name == "att_res":
        rs, ru = ref_att_res(x64)
        np.testing.assert_array_equal(rs, want_s), np.testing.assert_array_equal(ru, want_u)
    elif name.startswith("sj_lif"):
        rs, ru = ref_sj_lif(x64, 2.0, name != "sj_lif_no_decay_input", 1.0, None if name == "sj_lif_soft" else 0.0)
        np.testing.assert_array_equal(rs, want_s), np.testing.assert_array_equal(ru, want_u)
    elif name == "if":
        rs, ru = ref_sj_if(x64, 0.5)
        np.testing.assert_array_equal(rs, want_s), np.testing.assert_array_equal(ru, want_u)
    s, u = neurons.lif(jnp.asarray(x, dtype)[..., None], make(), return_v=True)
    chex.assert_type([s, u], dtype)
    np.testing.assert_array_equal(_np(s)[..., 0], np.asarray(want_s, np.float64))
    np.testing.assert_array_equal(_np(u)[..., 0], np.asarray(want_u, np.float64))


# --- LIAF --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tr", ["NTR", "TR"])
def test_liaf_output(rng, tr):
    x = _inputs(rng, loc=0.1)
    p = neurons.masnn_official(mode_select="mem", tr_model=tr)
    out, u = neurons.lif(jnp.asarray(x), p, return_v=True)
    rs, ro, ru = ref_official(x.astype(np.float64), F32(0.3), F32(0.3), mode="mem", tr=tr)
    chex.assert_type(out, jnp.float32)
    np.testing.assert_allclose(_np(out), ro, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_np(u), ru, rtol=1e-6, atol=1e-6)
    assert (ro > 0).any() and (ro == 0).any() and 0 < rs.mean() < 1
    # the spikes still drive the reset: the membrane trace is the spiking neuron's
    _, u_spk = neurons.lif(jnp.asarray(x), neurons.masnn_official(), return_v=True)
    chex.assert_trees_all_close(u, u_spk, atol=0, rtol=0)
    # no activation: identity
    out_id = neurons.lif(jnp.asarray(x), p.replace(liaf_activation=None))
    _, ro_id, _ = ref_official(x.astype(np.float64), F32(0.3), F32(0.3), mode="mem", tr=tr, act=False)
    np.testing.assert_allclose(_np(out_id), ro_id, rtol=1e-6, atol=1e-6)
    assert (ro_id < 0).any()


# --- gradients of the official preset vs a hand-written torch version of the official loop -----------------------


def _torch_rect_actfun(torch, lens):
    """The official MA-SNN ActFun: forward input >= 0, backward 1/(2 lens) on |input| < lens."""

    class ActFun(torch.autograd.Function):
        @staticmethod
        def forward(ctx, inp):
            ctx.save_for_backward(inp)
            return inp.ge(0.0).to(inp)

        @staticmethod
        def backward(ctx, grad_output):
            (inp,) = ctx.saved_tensors
            return grad_output * (inp.abs() < lens).to(inp) / (2 * lens)

    return ActFun.apply


def _torch_official(torch, x, alpha, vth, beta, a, mode, tr):
    act = _torch_rect_actfun(torch, a / 2)
    h = torch.zeros_like(x[:, 0])
    outs = []
    for t in range(x.shape[1]):
        u = h + x[:, t]
        x_ = u - vth
        s = act(x_)
        h = (s * vth + (1 - s) * u) * alpha + beta
        outs.append(s if mode == "spike" else torch.relu(x_ if tr == "TR" else u))
    return torch.stack(outs, 1)


@pytest.mark.parametrize("a,mode,tr", [(0.5, "spike", "NTR"), (1.0, "spike", "NTR"), (0.5, "mem", "NTR"), (0.5, "mem", "TR")])
def test_official_gradients_match_torch_loop(rng, sj, x64, a, mode, tr):
    torch = sj.torch
    x = _inputs(rng, shape=(2, 7, 3, 4), loc=0.15, scale=0.5, dtype=np.float64)
    w = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    at = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    out_t = _torch_official(torch, xt, at, 0.3, 0.0, a, mode, tr)
    (out_t * torch.tensor(w)).sum().backward()

    def loss(x, alpha):
        out = neurons.lif(x, neurons.masnn_official(alpha=alpha, a=a, mode_select=mode, tr_model=tr))
        return jnp.sum(out * w), out

    (_, out), (gx, galpha) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(jnp.asarray(x), jnp.float64(0.3))
    np.testing.assert_allclose(np.asarray(out), out_t.detach().numpy(), rtol=0, atol=1e-12)
    dx = float(np.max(np.abs(np.asarray(gx) - xt.grad.numpy())))
    dalpha = abs(float(galpha) - float(at.grad))
    print(f"official a={a} {mode}/{tr}: max |dL/dx diff| = {dx:.3g}, |dL/dalpha diff| = {dalpha:.3g}")
    assert dx <= 1e-10 and dalpha <= 1e-10
    assert np.abs(xt.grad.numpy()).max() > 0


def test_att_res_gradients_match_torch_loop(rng, sj, x64):
    torch = sj.torch
    x = _inputs(rng, shape=(2, 6, 5), loc=0.4, dtype=np.float64)
    w = rng.standard_normal(x.shape)

    class ActFun(torch.autograd.Function):  # Att_Res_SNN/models/resnet_2.py: fires at > 0.5, grad 1 on |mem-0.5|<0.5
        @staticmethod
        def forward(ctx, inp):
            ctx.save_for_backward(inp)
            return inp.gt(0.5).to(inp)

        @staticmethod
        def backward(ctx, grad_output):
            (inp,) = ctx.saved_tensors
            return grad_output * (torch.abs(inp - 0.5) < 0.5).to(inp) / (2 * 0.5)

    xt = torch.tensor(x, requires_grad=True)
    spike, mem_old, outs = torch.zeros_like(xt[:, 0]), 0.0, []
    for t in range(x.shape[1]):
        mem = mem_old * 0.25 * (1 - spike.detach()) + xt[:, t] if t else xt[:, t]
        spike = ActFun.apply(mem)
        mem_old = mem.clone()
        outs.append(spike)
    (torch.stack(outs, 1) * torch.tensor(w)).sum().backward()
    gx = jax.grad(lambda x: jnp.sum(neurons.lif(x, neurons.att_res_snn()) * w))(jnp.asarray(x))
    dx = float(np.max(np.abs(np.asarray(gx) - xt.grad.numpy())))
    print(f"att_res: max |dL/dx diff| = {dx:.3g}")
    assert dx <= 1e-10 and np.abs(xt.grad.numpy()).max() > 0


# --- parity with SpikingJelly 2.0 (float64) ----------------------------------------------------------------------


def _sj_run(sj, node, x_tn, w_tn, params=()):
    torch = sj.torch
    xt = torch.tensor(x_tn, requires_grad=True)
    s = node(xt)
    (s * torch.tensor(w_tn)).sum().backward()
    return s.detach().numpy(), xt.grad.numpy(), [p.grad.numpy() for p in params]


def _ours_run(fn, x_tn, w_tn):
    """fn: x (B, T, ...) -> spikes. Returns spikes and dL/dx in SJ's [T, N, ...] layout."""
    x = jnp.asarray(np.swapaxes(x_tn, 0, 1))
    w = np.swapaxes(w_tn, 0, 1)
    def loss(x):
        s = fn(x)
        return jnp.sum(s * w), s

    (_, s), gx = jax.value_and_grad(loss, has_aux=True)(x)
    return np.swapaxes(np.asarray(s), 0, 1), np.swapaxes(np.asarray(gx), 0, 1)


_SJ_LIF_CASES = [  # (tau, decay_input, v_reset, detach_reset)
    (tau, di, vr, det)
    for vr in (0.0, None, -0.25)
    for det in (False, True)
    for di, tau in ((True, 2.0), (False, 3.0))
]


@pytest.mark.parametrize("tau,decay_input,v_reset,detach", _SJ_LIF_CASES)
def test_lif_parity_with_spikingjelly(rng, sj, x64, tau, decay_input, v_reset, detach):
    x = _inputs(rng, shape=(8, 3, 4), loc=0.6, scale=1.0, dtype=np.float64)  # [T, N, F]
    w = rng.standard_normal(x.shape)
    node = sj.neuron.LIFNode(
        tau=tau, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset, detach_reset=detach,
        surrogate_function=sj.surrogate.Sigmoid(alpha=4.0), step_mode="m",
    )
    s_sj, g_sj, _ = _sj_run(sj, node, x, w)
    p = neurons.spikingjelly_lif(tau, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset, detach_reset=detach)
    s, g = _ours_run(lambda x: neurons.lif(x, p), x, w)
    np.testing.assert_array_equal(s, s_sj)
    diff = float(np.max(np.abs(g - g_sj)))
    print(f"LIF parity tau={tau} di={decay_input} vr={v_reset} detach={detach}: max |grad diff| = {diff:.3g}")
    assert diff <= 1e-10
    assert 0 < s.mean() < 1 and np.abs(g_sj).max() > 0


@pytest.mark.parametrize("vth,v_reset,detach", [(1.0, 0.0, False), (1.0, None, True), (0.5, -0.25, True), (0.75, None, False)])
def test_if_parity_with_spikingjelly(rng, sj, x64, vth, v_reset, detach):
    x = _inputs(rng, shape=(8, 3, 4), loc=0.2, scale=0.6, dtype=np.float64)
    w = rng.standard_normal(x.shape)
    node = sj.neuron.IFNode(
        v_threshold=vth, v_reset=v_reset, detach_reset=detach,
        surrogate_function=sj.surrogate.Sigmoid(alpha=4.0), step_mode="m",
    )
    s_sj, g_sj, _ = _sj_run(sj, node, x, w)
    p = neurons.spikingjelly_if(v_threshold=vth, v_reset=v_reset, detach_reset=detach)
    s, g = _ours_run(lambda x: neurons.if_neuron(x, p), x, w)
    np.testing.assert_array_equal(s, s_sj)
    diff = float(np.max(np.abs(g - g_sj)))
    print(f"IF parity vth={vth} vr={v_reset} detach={detach}: max |grad diff| = {diff:.3g}")
    assert diff <= 1e-10
    assert 0 < s.mean() < 1


@pytest.mark.parametrize(
    "init_tau,decay_input,v_reset,detach", [(2.0, True, 0.0, False), (3.0, False, None, True), (3.0, True, None, False), (1.5, False, -0.25, True)]
)
def test_plif_parity_with_spikingjelly(rng, sj, x64, init_tau, decay_input, v_reset, detach):
    x = _inputs(rng, shape=(8, 3, 4), loc=0.6, scale=1.0, dtype=np.float64)
    w = rng.standard_normal(x.shape)
    node = sj.neuron.ParametricLIFNode(
        init_tau=init_tau, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset, detach_reset=detach,
        surrogate_function=sj.surrogate.Sigmoid(alpha=4.0), step_mode="m",
    ).double()
    plif = neurons.PLIF(
        init_tau, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset, detach_reset=detach,
        param_dtype=jnp.float64,
    )
    w0 = -np.log(init_tau - 1.0)  # 1/tau = sigmoid(w)
    np.testing.assert_allclose(float(plif.w[...]), w0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(float(plif.tau), init_tau, rtol=1e-14)
    # SJ creates w in float32 before .double(): give both the same float64 value
    np.testing.assert_allclose(float(node.w.detach()), w0, rtol=1e-7)
    with sj.torch.no_grad():
        node.w.copy_(sj.torch.tensor(w0, dtype=sj.torch.float64))
    s_sj, g_sj, (gw_sj,) = _sj_run(sj, node, x, w, params=(node.w,))
    graphdef, state = nnx.split(plif)
    xb, wb = jnp.asarray(np.swapaxes(x, 0, 1)), np.swapaxes(w, 0, 1)

    def loss(state, x):
        s = nnx.merge(graphdef, state)(x)
        return jnp.sum(s * wb), s

    (_, s), (gstate, gx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(state, xb)
    np.testing.assert_array_equal(np.swapaxes(np.asarray(s), 0, 1), s_sj)
    dx = float(np.max(np.abs(np.swapaxes(np.asarray(gx), 0, 1) - g_sj)))
    dw = abs(float(gstate["w"][...]) - float(gw_sj))
    print(f"PLIF parity tau0={init_tau} di={decay_input} vr={v_reset} detach={detach}: "
          f"max |dL/dx diff| = {dx:.3g}, |dL/dw diff| = {dw:.3g} (dL/dw = {float(gw_sj):.4g})")
    assert dx <= 1e-10 and dw <= 1e-10
    assert 0 < s_sj.mean() < 1 and abs(float(gw_sj)) > 0


def test_plif_per_channel_and_training_step(rng):
    x = _inputs(rng, shape=(2, 6, 3), loc=0.6, scale=1.0)
    plif = neurons.PLIF(2.0, shape=(3,))
    plif.w[...] = jnp.asarray([-0.5, 0.0, 1.0], jnp.float32)
    tau = 1.0 + np.exp(-np.asarray([-0.5, 0.0, 1.0], np.float32).astype(np.float64))
    np.testing.assert_allclose(_np(plif.tau), tau, rtol=1e-6)
    s, u = plif(jnp.asarray(x), return_v=True)
    rs, ru = ref_sj_lif(x.astype(np.float64), tau, True, 1.0, 0.0)
    _check(s, u, rs, ru, jnp.float32, 1e-6)

    @nnx.jit
    def step(m, x):
        grads = nnx.grad(lambda m: jnp.sum(m(x) * jnp.arange(x.shape[-1])))(m)
        m.w[...] = m.w[...] - 0.1 * grads["w"][...]
        return grads

    w_before = np.asarray(plif.w[...])
    grads = step(plif, jnp.asarray(x))
    assert np.all(np.isfinite(np.asarray(grads["w"][...]))) and np.any(np.asarray(plif.w[...]) != w_before)
    with pytest.raises(ValueError, match="init_tau"):
        neurons.PLIF(1.0)


def test_plif_with_array_hparam_surrogate(rng):
    # SpikeFunction hyper-parameters may be arrays; PLIF must accept such a surrogate (Flax NNX pytree rules).
    x = jnp.asarray(_inputs(rng, shape=(2, 5, 3), loc=0.6, scale=1.0))
    ref = neurons.PLIF(2.0, surrogate=surrogate.sigmoid(2.0))
    plif = neurons.PLIF(2.0, surrogate=surrogate.sigmoid(jnp.float32(2.0)))
    chex.assert_trees_all_equal(plif(x), ref(x))
    chex.assert_trees_all_equal(nnx.jit(lambda m, x: m(x))(plif, x), ref(x))
    g = nnx.grad(lambda m: jnp.sum(m(x) * jnp.arange(3.0)))(plif)
    g_ref = nnx.grad(lambda m: jnp.sum(m(x) * jnp.arange(3.0)))(ref)
    chex.assert_trees_all_close(g["w"][...], g_ref["w"][...], rtol=1e-6)
    assert float(g["w"][...]) != 0


# --- dtypes ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_dtypes(rng, dtype):
    x = jnp.asarray(_inputs(rng, loc=0.3), dtype)
    for p in (neurons.masnn_official(), neurons.spikingjelly_lif(2.0, v_reset=None), neurons.att_res_snn()):
        s, u = neurons.lif(x, p, return_v=True)
        chex.assert_type([s, u], dtype)
        sv = _np(s)
        assert set(np.unique(sv)) == {0.0, 1.0}
        g = jax.grad(lambda x: jnp.sum(neurons.lif(x, p).astype(jnp.float32) * jnp.arange(x.shape[-1])))(x)
        chex.assert_type(g, dtype)
        assert np.all(np.isfinite(_np(g))) and np.any(_np(g) != 0)
    out = neurons.lif(x, neurons.masnn_official(mode_select="mem"))
    chex.assert_type(out, dtype)


def test_x64_in_f64_out(rng, x64):
    x = jnp.asarray(_inputs(rng, dtype=np.float64))
    # float32 parameter arrays are cast to the input's dtype
    p = neurons.masnn_official().replace(v_th=jnp.float32(0.3), decay=jnp.asarray([0.3] * 5, jnp.float32))
    s, u = neurons.lif(x, p, return_v=True)
    chex.assert_type([s, u], jnp.float64)
    g = jax.grad(lambda x: jnp.sum(neurons.lif(x, p)))(x)
    chex.assert_type(g, jnp.float64)


# --- transformations and options ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def opt_case():
    rng = np.random.default_rng(7)
    x = jnp.asarray(_inputs(rng, shape=(2, 7, 3), loc=0.15, scale=0.5))
    w = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    p = neurons.masnn_official()
    out, u = neurons.lif(x, p, return_v=True)
    g = jax.grad(lambda x: jnp.sum(neurons.lif(x, p) * w))(x)
    return x, w, p, out, u, g


@pytest.mark.parametrize("kwargs", [dict(checkpoint=True), dict(unroll=2), dict(unroll=True)], ids=str)
def test_options_give_identical_results(opt_case, kwargs):
    x, w, p, out, u, g = opt_case
    out2, u2 = neurons.lif(x, p, return_v=True, **kwargs)
    g2 = jax.grad(lambda x: jnp.sum(neurons.lif(x, p, **kwargs) * w))(x)
    # spikes identical; unrolled code may contract to FMAs differently, so potentials agree to float32 rounding
    chex.assert_trees_all_equal(out2, out)
    chex.assert_trees_all_close((u2, g2), (u, g), rtol=1e-6, atol=1e-7)


def test_jit_and_params_as_argument(opt_case):
    x, w, p, out, u, g = opt_case
    f = jax.jit(functools.partial(neurons.lif, return_v=True))
    chex.assert_trees_all_close(f(x, p), (out, u), rtol=1e-6, atol=1e-7)
    g2 = jax.jit(jax.grad(lambda x, p: jnp.sum(neurons.lif(x, p) * w)))(x, p)
    chex.assert_trees_all_close(g2, g, rtol=1e-6, atol=1e-7)
    # return_v=False returns the same output alone
    chex.assert_trees_all_equal(neurons.lif(x, p), out)


def test_reference_trace_and_h0(opt_case):
    x, w, p, out, u, g = opt_case
    xs = _np(x)
    rs, _, ru = ref_official(xs, F32(0.3), F32(0.3))
    np.testing.assert_array_equal(_np(out), rs)
    np.testing.assert_allclose(_np(u), ru, rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_equal(neurons.lif(x, p, h0=jnp.zeros((2, 3))), out)
    h0 = np.asarray([[0.1, -0.2, 0.25], [0.3, 0.0, -0.05]], np.float32)
    s, u0 = neurons.lif(x, p, h0=jnp.asarray(h0), return_v=True)
    rs, _, ru = ref_official(xs, F32(0.3), F32(0.3), h0=h0.astype(np.float64))
    np.testing.assert_array_equal(_np(s), rs)
    np.testing.assert_allclose(_np(u0), ru, rtol=1e-6, atol=1e-6)
    assert not np.array_equal(_np(u0), _np(u))


def test_time_axis(opt_case):
    x, w, p, out, u, g = opt_case
    o0, u0 = neurons.lif(jnp.swapaxes(x, 0, 1), p, return_v=True, time_axis=0)
    chex.assert_trees_all_equal((o0, u0), (jnp.swapaxes(out, 0, 1), jnp.swapaxes(u, 0, 1)))
    o2 = neurons.lif(jnp.moveaxis(x, 1, -1), p, time_axis=-1)
    chex.assert_trees_all_equal(o2, jnp.moveaxis(out, 1, -1))


def test_vmap_over_sequences(opt_case):
    x, w, p, out, u, g = opt_case
    xs = jnp.stack([x, 2.0 * x, x[::-1]])  # (K, B, T, F)
    got = jax.vmap(lambda xi: neurons.lif(xi, p))(xs)
    for k in range(3):
        rs, _, _ = ref_official(_np(xs[k]), F32(0.3), F32(0.3))
        np.testing.assert_array_equal(_np(got[k]), rs)
    chex.assert_trees_all_equal(got[0], out)


def test_vmap_over_traced_params(opt_case):
    x, w, p, out, u, g = opt_case
    xs = _np(x)
    vths = np.asarray([0.125, 0.3, 0.5], np.float32)
    decays = np.asarray([0.0, 0.3, 0.9], np.float32)

    @jax.jit
    def sweep(vths, decays):
        by_vth = jax.vmap(lambda v: neurons.lif(x, neurons.masnn_official(v_th=v)))(vths)
        by_decay = jax.vmap(lambda d: neurons.lif(x, p.replace(decay=d), return_v=True))(decays)
        grads = jax.vmap(jax.grad(lambda v: jnp.sum(neurons.lif(x, neurons.masnn_official(v_th=v), return_v=True)[1])))(vths)
        return by_vth, by_decay, grads

    by_vth, (s_d, u_d), grads = sweep(jnp.asarray(vths), jnp.asarray(decays))
    for i, v in enumerate(vths):
        np.testing.assert_array_equal(_np(by_vth[i]), ref_official(xs, float(v), F32(0.3))[0])
    for i, d in enumerate(decays):
        rs, _, ru = ref_official(xs, F32(0.3), float(d))
        np.testing.assert_array_equal(_np(s_d[i]), rs)
        np.testing.assert_allclose(_np(u_d[i]), ru, rtol=1e-6, atol=1e-6)
    assert np.all(np.isfinite(np.asarray(grads)))


def test_transform_applied_before_firing(opt_case):
    x, w, p, out, u, g = opt_case
    s, u2 = neurons.lif(x, p, return_v=True, transform=lambda u: 2.0 * u)
    rs, _, ru = ref_official(_np(x), F32(0.3), F32(0.3), transform=lambda u: 2.0 * u)
    np.testing.assert_array_equal(_np(s), rs)
    np.testing.assert_allclose(_np(u2), ru, rtol=1e-6, atol=1e-6)
    assert not np.array_equal(rs, _np(out))
    # the hook is differentiated through: d/dx of sum(u) changes with the factor
    gu = jax.grad(lambda x: jnp.sum(neurons.lif(x, p, return_v=True, transform=lambda u: 2.0 * u)[1]))(x)
    assert np.all(np.isfinite(np.asarray(gu)))


def test_lif_step_single_step(opt_case):
    x, w, p, out, u, g = opt_case
    h1, (o1, u1) = neurons.lif_step(jnp.zeros((2, 3)), x[:, 0], p)
    chex.assert_trees_all_equal((o1, u1), (out[:, 0], u[:, 0]))
    _, (o2, u2) = neurons.lif_step(h1, x[:, 1], p)
    chex.assert_trees_all_close((o2, u2), (out[:, 1], u[:, 1]), rtol=1e-6, atol=1e-7)


# --- bad input ---------------------------------------------------------------------------------------------------


def test_bad_inputs():
    p = neurons.masnn_official()
    with pytest.raises(ValueError, match=r"\bx\b"):
        neurons.lif(jnp.ones((5,)), p)
    with pytest.raises(ValueError, match=r"\bx\b.*int|int.*\bx\b"):
        neurons.lif(jnp.ones((2, 5), jnp.int32), p)
    with pytest.raises(ValueError, match="reset"):
        neurons.lif(jnp.ones((2, 5)), p.replace(reset="sometimes"))
    with pytest.raises(ValueError, match="output"):
        neurons.lif(jnp.ones((2, 5)), p.replace(output="voltage"))
    with pytest.raises(ValueError, match="mode_select"):
        neurons.masnn_official(mode_select="volt")
    with pytest.raises(ValueError, match="TR_model|tr_model"):
        neurons.masnn_official(tr_model="XTR")
    with pytest.raises(ValueError, match="tau"):
        neurons.spikingjelly_lif(0.0)
    with pytest.raises(ValueError, match="surrogate"):
        neurons.lif(jnp.ones((2, 5)), p.replace(surrogate=0.5))
