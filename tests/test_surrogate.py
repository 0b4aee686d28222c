"""Tests of masnn_jax.snn.surrogate: Heaviside forward, surrogate backward.

Expected derivatives come from the formulas written below (the literature's and SpikingJelly 2.0's definitions),
evaluated in float64 NumPy, and from SpikingJelly's own autograd (float64 torch) where it has the same function.
"""

from __future__ import annotations

import math
import uuid

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from masnn_jax.snn import surrogate

# --- independent reference formulas (float64 NumPy) --------------------------------------------------------------
# name -> (hyper-parameter keyword, default, g(x, h)). x is u - v_th.


def _g_rectangle(x, w):  # box of width w and height 1/w (official ActFun with a = w, lens = a/2)
    return np.where(np.abs(x) < w / 2, 1.0 / w, 0.0)


def _g_sigmoid(x, a):  # d/dx sigmoid(a x), written in a form that does not overflow
    e = np.exp(-np.abs(a * x))
    return a * e / (1.0 + e) ** 2


def _g_atan(x, a):  # d/dx [arctan(pi/2 a x)/pi + 1/2]
    return a / (2.0 * (1.0 + (math.pi / 2.0 * a * x) ** 2))


def _g_triangle(x, w):  # Esser et al. 2016: max(0, 1 - |x|/w), normalised to unit area
    return np.maximum(0.0, 1.0 - np.abs(x) / w) / w


def _g_superspike(x, a):  # Zenke & Ganguli 2018: derivative of the fast sigmoid x / (1 + a|x|) is (1 + a|x|)^-2
    return 1.0 / (1.0 + a * np.abs(x)) ** 2


def _g_erf(x, a):  # d/dx [erfc(-a x)/2]
    return a / math.sqrt(math.pi) * np.exp(-((a * x) ** 2))


def _g_piecewise_quadratic(x, a):  # 0 for |x| > 1/a, else a - a^2 |x|
    return np.where(np.abs(x) > 1.0 / a, 0.0, a - a * a * np.abs(x))


def _g_piecewise_exp(x, a):
    return a / 2.0 * np.exp(-a * np.abs(x))


def _g_soft_sign(x, a):  # d/dx [(a x / (1 + |a x|) + 1)/2]
    return a / (2.0 * (1.0 + a * np.abs(x)) ** 2)


def _g_piecewise_leaky_relu(x, w, c=0.01):  # slope 1/(2w) on |x| < w (rises 0 -> 1 across [-w, w]), else c
    return np.where(np.abs(x) < w, 1.0 / (2.0 * w), c)


FORMULAS = {
    "rectangle": ("width", 1.0, _g_rectangle),
    "sigmoid": ("alpha", 4.0, _g_sigmoid),
    "atan": ("alpha", 2.0, _g_atan),
    "triangle": ("width", 1.0, _g_triangle),
    "superspike": ("alpha", 1.0, _g_superspike),
    "erf": ("alpha", 2.0, _g_erf),
    "piecewise_quadratic": ("alpha", 1.0, _g_piecewise_quadratic),
    "piecewise_exp": ("alpha", 1.0, _g_piecewise_exp),
    "soft_sign": ("alpha", 2.0, _g_soft_sign),
    "piecewise_leaky_relu": ("width", 1.0, _g_piecewise_leaky_relu),
}
BUILTIN = tuple(FORMULAS)
NON_DEFAULT = {  # a second hyper-parameter value per surrogate, exactly representable in binary
    "rectangle": 0.5,
    "sigmoid": 2.5,
    "atan": 3.0,
    "triangle": 0.75,
    "superspike": 4.0,
    "erf": 0.75,
    "piecewise_quadratic": 2.0,
    "piecewise_exp": 3.0,
    "soft_sign": 0.5,
    "piecewise_leaky_relu": 0.5,
}

# x grid: multiples of 1/32 on [-3, 3] (every box edge ±w/2, ±w, ±1/a above is on it exactly), plus some others.
GRID = np.concatenate([np.arange(-96, 97) / 32.0, [-1e-3, 1e-3, 0.3, -0.7, 1.1, -2.9, 7.5, -12.0, 40.0]])


def _grad_sum(spike, x):
    return jax.grad(lambda y: spike(y).sum())(x)


def _spike(name, h=None):
    key, default, _ = FORMULAS[name]
    return surrogate.get(name, **{key: default if h is None else h})


# --- registry ---------------------------------------------------------------------------------------------------


def test_builtin_names_factories_and_defaults():
    assert set(BUILTIN) <= set(surrogate.names())
    for name, (key, default, _) in FORMULAS.items():
        f = getattr(surrogate, name)()
        assert isinstance(f, surrogate.SpikeFunction)
        assert f.hparam == default, name
        assert f.name == name
        assert getattr(surrogate, name)(0.5).hparam == 0.5
        assert surrogate.get(name).hparam == default
        assert surrogate.get(name, **{key: 0.25}).hparam == 0.25


def test_get_is_case_and_dash_insensitive():
    f = surrogate.get("Piecewise-Exp", alpha=3.0)
    assert f.name == "piecewise_exp" and f.hparam == 3.0


def test_get_unknown_name():
    with pytest.raises(ValueError, match="no_such_surrogate"):
        surrogate.get("no_such_surrogate")


@pytest.mark.parametrize("name", ["sigmoid", "rectangle"])
def test_get_wrong_keyword(name):
    wrong = "width" if FORMULAS[name][0] == "alpha" else "alpha"
    with pytest.raises(ValueError, match=name) as info:
        surrogate.get(name, **{wrong: 1.0})
    assert wrong in str(info.value)
    with pytest.raises(ValueError, match=name):
        surrogate.get(name, beta=1.0)


@pytest.mark.parametrize("value", [0, 0.0, -1.0, -2])
@pytest.mark.parametrize("name", ["atan", "piecewise_leaky_relu"])
def test_get_non_positive_hparam(name, value):
    key = FORMULAS[name][0]
    with pytest.raises(ValueError, match=name) as info:
        surrogate.get(name, **{key: value})
    assert key in str(info.value)
    with pytest.raises(ValueError, match=name):
        getattr(surrogate, name)(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), np.float32("nan")])
@pytest.mark.parametrize("name", ["atan", "rectangle"])
def test_get_non_finite_hparam(name, value):
    key = FORMULAS[name][0] if name in FORMULAS else surrogate._REGISTRY[surrogate._key(name)].hparam
    with pytest.raises(ValueError, match=name) as info:
        surrogate.get(name, **{key: value})
    assert key in str(info.value) and "finite" in str(info.value)


def _gaussian_grad(x, sigma):
    return jnp.exp(-0.5 * (x / sigma) ** 2) / (sigma * jnp.sqrt(2 * jnp.pi))


def test_register_new_surrogate_and_duplicate():
    name = f"gaussian_{uuid.uuid4().hex[:8]}"
    try:
        surrogate.register(name, _gaussian_grad, hparam="sigma", default=0.5)
        assert name in surrogate.names()
        f = surrogate.get(name, sigma=0.25)
        assert f.hparam == 0.25 and surrogate.get(name).hparam == 0.5
        x = jnp.asarray(GRID, jnp.float32)
        chex.assert_trees_all_equal(f(x), jnp.asarray(GRID >= 0, jnp.float32))
        expected = np.exp(-0.5 * (GRID / 0.25) ** 2) / (0.25 * math.sqrt(2 * math.pi))
        np.testing.assert_allclose(_grad_sum(f, x), expected, rtol=1e-5, atol=1e-7)
        with pytest.raises(ValueError, match=name):
            surrogate.get(name, alpha=1.0)
        with pytest.raises(ValueError, match=name):
            surrogate.register(name, _gaussian_grad, hparam="sigma", default=0.5)
    finally:
        surrogate._REGISTRY.pop(name, None)
    with pytest.raises(ValueError, match="sigmoid"):
        surrogate.register("sigmoid", _gaussian_grad)
    assert surrogate.get("sigmoid").grad_fn is not _gaussian_grad


def test_register_name_is_normalised_like_get():
    # get() folds case and '-' -> '_'; a name registered with capitals or dashes must still be reachable.
    tag = uuid.uuid4().hex[:8]
    name = f"My-Gauss-{tag}"
    key = f"my_gauss_{tag}"
    try:
        surrogate.register(name, _gaussian_grad, hparam="sigma", default=0.5)
        assert surrogate.get(name).hparam == 0.5
        assert surrogate.get(key, sigma=0.3).hparam == 0.3
        with pytest.raises(ValueError, match="already"):
            surrogate.register(key, _gaussian_grad, hparam="sigma")
    finally:
        surrogate._REGISTRY.pop(key, None)
        surrogate._REGISTRY.pop(name, None)


def test_spike_function_without_registering():
    f = surrogate.SpikeFunction(_gaussian_grad, 0.3, name="g")
    x = jnp.asarray([-1.0, 0.0, 0.2], jnp.float32)
    chex.assert_trees_all_equal(f(x), jnp.asarray([0.0, 1.0, 1.0], jnp.float32))
    expected = np.exp(-0.5 * (np.asarray([-1.0, 0.0, 0.2]) / 0.3) ** 2) / (0.3 * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(f.derivative(x), expected, rtol=1e-6)


def test_integer_input_raises_type_error():
    with pytest.raises(TypeError, match="floating"):
        surrogate.sigmoid()(jnp.arange(3))


def test_spike_function_is_a_pytree_with_hparam_leaf():
    f = surrogate.atan(3.0)
    assert jax.tree_util.tree_leaves(f) == [3.0]
    x = jnp.asarray(GRID, jnp.float32)
    out, g = jax.jit(lambda f, x: (f(x), jax.grad(lambda y: f(y).sum())(x)))(f, x)
    chex.assert_trees_all_equal(out, jnp.asarray(GRID >= 0, jnp.float32))
    np.testing.assert_allclose(g, _g_atan(GRID, 3.0), rtol=1e-6, atol=1e-7)


# --- forward: Heaviside ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", BUILTIN)
def test_forward_is_heaviside(name, dtype):
    values = np.concatenate([GRID, [0.0, -0.0, 1e-30, -1e-30]])
    x = jnp.asarray(values, dtype)
    xs = np.asarray(x, np.float64)  # the values after rounding to dtype
    f = _spike(name)
    s = f(x)
    chex.assert_type(s, dtype)
    chex.assert_shape(s, x.shape)
    np.testing.assert_array_equal(np.asarray(s, np.float64), (xs >= 0).astype(np.float64))
    assert float(f(jnp.zeros((), dtype))) == 1.0
    # strict: x == 0 -> 0, given at call time or on the function
    np.testing.assert_array_equal(np.asarray(f(x, strict=True), np.float64), (xs > 0).astype(np.float64))
    fs = surrogate.SpikeFunction(f.grad_fn, f.hparam, name, strict=True)
    np.testing.assert_array_equal(np.asarray(fs(x), np.float64), (xs > 0).astype(np.float64))
    np.testing.assert_array_equal(np.asarray(fs(x, strict=False), np.float64), (xs >= 0).astype(np.float64))
    assert float(fs(jnp.zeros((), dtype))) == 0.0
    assert surrogate.heaviside(jnp.zeros((), dtype)) == 1 and surrogate.heaviside(jnp.zeros((), dtype), True) == 0


# --- backward: the surrogate derivative ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN)
def test_gradient_matches_formula_f32(name):
    key, default, g = FORMULAS[name]
    x = jnp.asarray(GRID, jnp.float32)
    xs = np.asarray(x, np.float64)
    for h in (default, NON_DEFAULT[name]):
        f = _spike(name, h)
        got = _grad_sum(f, x)
        chex.assert_type(got, jnp.float32)
        np.testing.assert_allclose(got, g(xs, h), rtol=2e-6, atol=1e-7, err_msg=f"{name} {key}={h}")
        np.testing.assert_allclose(f.derivative(x), g(xs, h), rtol=2e-6, atol=1e-7)
        # strict firing changes only the forward pass
        got_strict = jax.grad(lambda y: f(y, strict=True).sum())(x)
        chex.assert_trees_all_equal(got_strict, got)


@pytest.mark.parametrize("name", BUILTIN)
def test_gradient_matches_formula_x64(name, x64):
    key, default, g = FORMULAS[name]
    x = jnp.asarray(GRID, jnp.float64)
    for h in (default, NON_DEFAULT[name]):
        got = _grad_sum(_spike(name, h), x)
        chex.assert_type(got, jnp.float64)
        np.testing.assert_allclose(got, g(GRID, h), rtol=1e-13, atol=1e-15, err_msg=f"{name} {key}={h}")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gradient_is_even(dtype):
    # every built-in g is an even function of x; the computed one should be too, bit for bit
    x = jnp.asarray(np.abs(GRID), dtype)
    for name in BUILTIN:
        f = _spike(name, NON_DEFAULT[name])
        chex.assert_trees_all_equal(_grad_sum(f, x), _grad_sum(f, -x), custom_message=name)


def test_named_values():
    # Sigmoid(4) and ATan(2) both peak at g(0) = 1; the official rectangle (a = 0.5) is 2 on |x| < 0.25.
    z = jnp.zeros((1,), jnp.float32)
    assert float(surrogate.sigmoid().derivative(z)[0]) == 1.0
    assert float(surrogate.atan().derivative(z)[0]) == 1.0
    r = surrogate.rectangle(0.5).derivative(jnp.asarray([-0.25, -0.2499, 0.0, 0.2499, 0.25], jnp.float32))
    np.testing.assert_array_equal(r, [0.0, 2.0, 2.0, 2.0, 0.0])


# SpikingJelly classes with the same function: (our name, our hparam) -> factory of the SJ module.
SJ_CASES = [
    ("rectangle", 1.0, lambda s: s.Rect(alpha=1.0)),
    ("rectangle", 0.5, lambda s: s.Rect(alpha=2.0)),
    ("sigmoid", 4.0, lambda s: s.Sigmoid(alpha=4.0)),
    ("sigmoid", 2.5, lambda s: s.Sigmoid(alpha=2.5)),
    ("atan", 2.0, lambda s: s.ATan(alpha=2.0)),
    ("atan", 3.0, lambda s: s.ATan(alpha=3.0)),
    ("superspike", 1.0, lambda s: s.SuperSpike(alpha=1.0)),  # SJ scales the numerator instead: equal at alpha = 1
    ("erf", 2.0, lambda s: s.Erf(alpha=2.0)),
    ("erf", 0.75, lambda s: s.Erf(alpha=0.75)),
    ("piecewise_quadratic", 1.0, lambda s: s.PiecewiseQuadratic(alpha=1.0)),
    ("piecewise_quadratic", 2.0, lambda s: s.PiecewiseQuadratic(alpha=2.0)),
    ("piecewise_exp", 1.0, lambda s: s.PiecewiseExp(alpha=1.0)),
    ("piecewise_exp", 3.0, lambda s: s.PiecewiseExp(alpha=3.0)),
    ("soft_sign", 2.0, lambda s: s.SoftSign(alpha=2.0)),
    ("soft_sign", 0.5, lambda s: s.SoftSign(alpha=0.5)),
    ("piecewise_leaky_relu", 1.0, lambda s: s.PiecewiseLeakyReLU(w=1.0, c=0.01)),
    ("piecewise_leaky_relu", 0.5, lambda s: s.PiecewiseLeakyReLU(w=0.5, c=0.01)),
]


@pytest.mark.parametrize("name,h,make", SJ_CASES, ids=[f"{n}-{h}" for n, h, _ in SJ_CASES])
def test_matches_spikingjelly_float64(name, h, make, sj, x64):
    torch = sj.torch
    xt = torch.tensor(GRID, dtype=torch.float64, requires_grad=True)
    st = make(sj.surrogate)(xt)
    st.sum().backward()
    sj_s, sj_g = st.detach().numpy(), xt.grad.numpy()

    x = jnp.asarray(GRID, jnp.float64)
    f = _spike(name, h)
    s, g = f(x), _grad_sum(f, x)
    np.testing.assert_array_equal(np.asarray(s), sj_s)
    diff = float(np.max(np.abs(np.asarray(g) - sj_g)))
    print(f"SJ parity {name}({h}): max |grad diff| = {diff:.3g}")
    assert diff <= 1e-12, (name, h, diff)
    np.testing.assert_allclose(sj_g, FORMULAS[name][2](GRID, h), rtol=1e-13, atol=1e-15)  # our formulas = SJ's


# --- finiteness and dtypes ----------------------------------------------------------------------------------------

_BF16_MAX = float(jnp.finfo(jnp.bfloat16).max)
_HUGE = [1e4, 1e30, 3e38, _BF16_MAX]
_EDGES = [0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 1e-30]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", BUILTIN)
def test_gradient_finite_and_in_input_dtype(name, dtype):
    key, default, g = FORMULAS[name]
    mags = _EDGES + (_HUGE if dtype != jnp.float16 else [1e4, float(jnp.finfo(jnp.float16).max)])
    x = jnp.asarray(np.concatenate([mags, -np.asarray(mags)]), dtype)
    xs = np.asarray(x, np.float64)
    assert np.all(np.isfinite(xs))
    for h in (default, NON_DEFAULT[name]):
        got = _grad_sum(_spike(name, h), x)
        chex.assert_type(got, dtype)
        got64 = np.asarray(got, np.float64)
        assert np.all(np.isfinite(got64)), (name, dtype, got64)
        tol = {jnp.float32: 2e-6, jnp.bfloat16: 1e-2, jnp.float16: 2e-3}[dtype]
        np.testing.assert_allclose(got64, g(xs, h), rtol=tol, atol=1e-6 if dtype == jnp.float16 else 1e-30)


# --- traced hyper-parameter, jit, vmap, jvp -----------------------------------------------------------------------

ALPHAS = np.asarray([0.5, 1.0, 2.0, 4.0])


@pytest.mark.parametrize("name", BUILTIN)
def test_traced_hparam_jit_vmap(name):
    key, _, g = FORMULAS[name]
    x = jnp.asarray(GRID, jnp.float32)
    xs = np.asarray(x, np.float64)

    @jax.jit
    def per_alpha(alphas):
        return jax.vmap(lambda a: _grad_sum(surrogate.get(name, **{key: a}), x))(alphas)

    got = per_alpha(jnp.asarray(ALPHAS, jnp.float32))
    chex.assert_shape(got, (len(ALPHAS), x.size))
    for i, a in enumerate(ALPHAS):
        np.testing.assert_allclose(got[i], g(xs, a), rtol=2e-6, atol=1e-7, err_msg=f"{name} {key}={a}")


def test_elementwise_hparam_array():
    x = jnp.asarray([0.1, 0.1, -0.3, 2.0], jnp.float32)
    a = jnp.asarray([1.0, 4.0, 2.0, 0.5], jnp.float32)
    got = _grad_sum(surrogate.sigmoid(a), x)
    np.testing.assert_allclose(got, _g_sigmoid(np.asarray(x, np.float64), np.asarray(a, np.float64)), rtol=2e-6)


@pytest.mark.parametrize("name", BUILTIN)
def test_forward_mode_jvp(name):
    key, default, g = FORMULAS[name]
    x = jnp.asarray(GRID, jnp.float32)
    xs = np.asarray(x, np.float64)
    t = jnp.asarray(np.linspace(-2.0, 2.0, x.size), jnp.float32)
    f = _spike(name, NON_DEFAULT[name])
    primal, tangent = jax.jvp(f, (x,), (t,))
    chex.assert_trees_all_equal(primal, jnp.asarray(xs >= 0, jnp.float32))
    np.testing.assert_allclose(tangent, g(xs, NON_DEFAULT[name]) * np.asarray(t, np.float64), rtol=2e-6, atol=1e-7)
    # jvp w.r.t. the hyper-parameter: Θ does not depend on it
    _, t_h = jax.jvp(lambda a: surrogate.get(name, **{key: a})(x), (jnp.float32(default),), (jnp.float32(1.0),))
    chex.assert_trees_all_equal(t_h, jnp.zeros_like(x))


@pytest.mark.parametrize("name", BUILTIN)
def test_grad_wrt_hparam_is_zero(name):
    key, default, _ = FORMULAS[name]
    x = jnp.asarray(GRID, jnp.float32)
    w = jnp.asarray(np.cos(GRID), jnp.float32)

    def loss(a, x):
        return jnp.sum(surrogate.get(name, **{key: a})(x * 1.5) * w)

    ga, gx = jax.grad(loss, argnums=(0, 1))(jnp.float32(default), x)
    assert float(ga) == 0.0
    assert bool(jnp.any(gx != 0))
    # also through jit with the hyper-parameter as a traced argument
    assert float(jax.jit(jax.grad(loss))(jnp.float32(NON_DEFAULT[name]), x)) == 0.0
