"""Surrogate-gradient spike functions.

A spike function maps a centred membrane potential ``x = u - v_th`` to spikes: the forward pass is the Heaviside
step ``s = Θ(x)`` (exactly 0 or 1, in the dtype of ``x``), the backward pass replaces Θ'(x) = δ(x) by a smooth or
box-shaped *surrogate* derivative ``g(x; hparam)`` (Neftci, Mostafa & Zenke, 2019).

Every spike function here is built on one ``jax.custom_jvp`` primitive, so it works under ``jax.grad``, ``jax.jvp``
(forward mode), ``jax.vmap``, ``jax.jit`` and ``jax.checkpoint``. Its hyper-parameter (``alpha`` or ``width``) is an
ordinary argument, not a static one: it may be a traced array, so it can be learned, or swept with ``vmap`` under
``jit``. Gradients have the dtype of ``x`` and are finite for every finite input, in float32 and bfloat16 (the
derivatives are evaluated in at least float32 and cast back).

Entry point::

    from masnn_jax.snn import surrogate
    spike = surrogate.get("atan", alpha=2.0)      # a SpikeFunction
    s = spike(u - v_th)                           # Θ(u - v_th) forward, ATan surrogate backward

Names and defaults (``x`` is ``u - v_th``; defaults are SpikingJelly 2.x's where it has the function):

================== ======== ============================================================ ====================
name               hparam   surrogate derivative g(x)                                    source
================== ======== ============================================================ ====================
``rectangle``      width=1  ``1/width`` if ``|x| < width/2`` else 0                      official MA-SNN
                                                                                          ``ActFun`` (width =
                                                                                          config ``a``);
                                                                                          SJ ``Rect(1/width)``
``sigmoid``        alpha=4  ``alpha·σ(alpha·x)·σ(−alpha·x)`` (= ``alpha·σ·(1 − σ)``)      SJ ``Sigmoid``
``atan``           alpha=2  ``(alpha/2) / (1 + (π/2·alpha·x)²)``                          SJ ``ATan``
``triangle``       width=1  ``max(0, 1 − |x|/width) / width``                             Esser et al. 2016
``superspike``     alpha=1  ``1 / (1 + alpha·|x|)²``                                      Zenke & Ganguli 2018
                                                                                          (= SJ ``SuperSpike``
                                                                                          at alpha = 1)
``erf``            alpha=2  ``alpha/√π · exp(−(alpha·x)²)``                               SJ ``Erf``
``piecewise_quadratic`` alpha=1 ``max(0, alpha − alpha²·|x|)``                            SJ
                                                                                          ``PiecewiseQuadratic``
``piecewise_exp``  alpha=1  ``alpha/2 · exp(−alpha·|x|)``                                 SJ ``PiecewiseExp``
``soft_sign``      alpha=2  ``alpha / (2·(1 + alpha·|x|)²)``                              SJ ``SoftSign``
``piecewise_leaky_relu`` width=1 ``1/(2·width)`` if ``|x| < width`` else 0.01             SJ
                                                                                          ``PiecewiseLeakyReLU``
                                                                                          (w=1, c=0.01)
================== ======== ============================================================ ====================

Sigmoid(4) and ATan(2) both peak at g(0) = 1.

Writing your own surrogate takes one function of ``(x, hparam)``::

    import jax.numpy as jnp
    from masnn_jax.snn import surrogate

    def gaussian_grad(x, sigma):
        return jnp.exp(-0.5 * (x / sigma) ** 2) / (sigma * jnp.sqrt(2 * jnp.pi))

    surrogate.register("gaussian", gaussian_grad, hparam="sigma", default=0.5)
    spike = surrogate.get("gaussian", sigma=0.3)

or, without registering, ``spike = surrogate.SpikeFunction(gaussian_grad, 0.3, name="gaussian")``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Callable

import jax
import jax.numpy as jnp

__all__ = [
    "SpikeFunction",
    "heaviside",
    "get",
    "register",
    "names",
    "rectangle",
    "sigmoid",
    "atan",
    "triangle",
    "superspike",
    "erf",
    "piecewise_quadratic",
    "piecewise_exp",
    "soft_sign",
    "piecewise_leaky_relu",
]

GradFn = Callable[[jax.Array, jax.Array], jax.Array]


def heaviside(x: jax.Array, strict: bool = False) -> jax.Array:
    """Heaviside step in the dtype of ``x``: 1 where ``x >= 0`` (``x > 0`` if ``strict``), else 0.

    Args:
      x: any shape, floating dtype.
      strict: whether ``x == 0`` gives 0 (strict) or 1 (default, as SpikingJelly and the official MA-SNN code).
    Returns:
      array of the shape and dtype of ``x`` holding exactly 0 or 1.
    """
    return (x > 0).astype(x.dtype) if strict else (x >= 0).astype(x.dtype)


def _compute_dtype(dtype) -> jnp.dtype:
    # Evaluate surrogate derivatives in at least float32 (bf16 has too few mantissa bits for exp/arctan shapes).
    return jnp.promote_types(dtype, jnp.float32)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 3))
def _spike(grad_fn: GradFn, x: jax.Array, hparam: jax.Array, strict: bool) -> jax.Array:
    return heaviside(x, strict)


@_spike.defjvp
def _spike_jvp(grad_fn: GradFn, strict: bool, primals, tangents):
    x, hparam = primals
    x_dot, _ = tangents  # Θ does not depend on the hyper-parameter: its tangent contributes nothing.
    ct = _compute_dtype(x.dtype)
    g = grad_fn(x.astype(ct), jnp.asarray(hparam).astype(ct))
    g = jnp.where(jnp.isfinite(g), g, 0).astype(x.dtype)
    return heaviside(x, strict), g * x_dot


@dataclasses.dataclass(frozen=True)
class SpikeFunction:
    """A Heaviside spike function with a surrogate derivative.

    ``SpikeFunction(grad_fn, hparam)(x)`` returns ``Θ(x)`` (shape and dtype of ``x``, values exactly 0/1) and
    differentiates as ``grad_fn(x, hparam)``. It is a JAX pytree whose only leaf is ``hparam``, so it can be passed
    through ``jax.jit``/``vmap`` and its hyper-parameter may be a traced array.

    Attributes:
      grad_fn: ``(x, hparam) -> g``, the surrogate derivative, elementwise, evaluated in float32 or wider.
      hparam: scalar or array broadcastable to ``x`` (``alpha`` or ``width``).
      name: display name.
      strict: fire at ``x > 0`` instead of ``x >= 0``. Neurons pass their own choice at call time instead.

    Raises:
      TypeError: on call with a non-floating ``x``.
    """

    grad_fn: GradFn
    hparam: jax.Array | float
    name: str = "custom"
    strict: bool = False

    def __call__(self, x: jax.Array, strict: bool | None = None) -> jax.Array:
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"spike function {self.name!r} needs a floating input, got dtype {x.dtype}")
        return _spike(self.grad_fn, x, self.hparam, self.strict if strict is None else bool(strict))

    def derivative(self, x: jax.Array) -> jax.Array:
        """The surrogate derivative ``g(x)`` itself (dtype of ``x``), for plots and tests."""
        x = jnp.asarray(x)
        return jax.grad(lambda y: self(y).sum())(x)


jax.tree_util.register_pytree_node(
    SpikeFunction,
    lambda f: ((f.hparam,), (f.grad_fn, f.name, f.strict)),
    lambda aux, children: SpikeFunction(aux[0], children[0], aux[1], aux[2]),
)


# --- surrogate derivatives -------------------------------------------------------------------------------------


def _rectangle(x, width):
    return jnp.where(jnp.abs(x) < width / 2, 1.0 / width, 0.0).astype(x.dtype)


def _sigmoid(x, alpha):
    # σ(z)·σ(−z) rather than σ(z)·(1 − σ(z)): the latter cancels for z ≫ 0 (1 % error at g ≈ 1e-4 in float32, and
    # g(x) ≠ g(−x)); the former is accurate on both sides and exactly even.
    z = alpha * x
    return alpha * (jax.nn.sigmoid(z) * jax.nn.sigmoid(-z))


def _atan(x, alpha):
    ax = (math.pi / 2) * alpha * x
    return (alpha / 2) / (1 + ax * ax)


def _triangle(x, width):
    return jnp.maximum(0.0, 1.0 - jnp.abs(x) / width) / width


def _superspike(x, alpha):
    d = 1 + alpha * jnp.abs(x)
    return 1 / (d * d)


def _erf(x, alpha):
    return alpha / math.sqrt(math.pi) * jnp.exp(-jnp.square(alpha * x))


def _piecewise_quadratic(x, alpha):
    return jnp.maximum(0.0, alpha - alpha * alpha * jnp.abs(x))


def _piecewise_exp(x, alpha):
    return alpha / 2 * jnp.exp(-alpha * jnp.abs(x))


def _soft_sign(x, alpha):
    d = 1 + alpha * jnp.abs(x)
    return alpha / (2 * d * d)


def _piecewise_leaky_relu(x, width):
    # SpikingJelly's PiecewiseLeakyReLU(w, c=0.01): slope 1/(2w) on |x| < w, so that its primitive rises 0 -> 1 across
    # [-w, w]; c outside.
    return jnp.where(jnp.abs(x) < width, 0.5 / width, 0.01).astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class _Entry:
    grad_fn: GradFn
    hparam: str
    default: float


_REGISTRY: dict[str, _Entry] = {
    "rectangle": _Entry(_rectangle, "width", 1.0),
    "sigmoid": _Entry(_sigmoid, "alpha", 4.0),
    "atan": _Entry(_atan, "alpha", 2.0),
    "triangle": _Entry(_triangle, "width", 1.0),
    "superspike": _Entry(_superspike, "alpha", 1.0),
    "erf": _Entry(_erf, "alpha", 2.0),
    "piecewise_quadratic": _Entry(_piecewise_quadratic, "alpha", 1.0),
    "piecewise_exp": _Entry(_piecewise_exp, "alpha", 1.0),
    "soft_sign": _Entry(_soft_sign, "alpha", 2.0),
    "piecewise_leaky_relu": _Entry(_piecewise_leaky_relu, "width", 1.0),
}


def _key(name: str) -> str:
    # The registry's spelling of a name: lower case, '_' for '-'.
    return str(name).lower().replace("-", "_")


def names() -> tuple[str, ...]:
    """Names accepted by :func:`get`, registered ones included."""
    return tuple(_REGISTRY)


def register(name: str, grad_fn: GradFn, *, hparam: str = "alpha", default: float = 1.0) -> None:
    """Adds a surrogate under ``name`` so that ``get(name, **{hparam: value})`` builds it.

    Args:
      name: new name (lower case by convention).
      grad_fn: ``(x, hparam) -> g(x)``, elementwise, written with ``jax.numpy``; ``x`` is ``u - v_th``.
      hparam: the keyword its hyper-parameter goes by.
      default: the hyper-parameter's default.
    Raises:
      ValueError: if ``name`` is already taken (names are compared as :func:`get` looks them up: case-insensitive,
        '-' and '_' equivalent).
    """
    key = _key(name)
    if key in _REGISTRY:
        raise ValueError(f"surrogate {name!r} is already registered")
    _REGISTRY[key] = _Entry(grad_fn, hparam, float(default))


def get(name: str, **hparams) -> SpikeFunction:
    """Returns the spike function called ``name`` (see the module docstring for names and defaults).

    Args:
      name: one of :func:`names` (case-insensitive; '-' and '_' are equivalent).
      **hparams: at most one keyword, the surrogate's hyper-parameter (``alpha`` or ``width``); a Python float or
        a (possibly traced) JAX array.
    Returns:
      a :class:`SpikeFunction`.
    Raises:
      ValueError: unknown name or unknown hyper-parameter keyword (the message lists the valid ones), or a concrete
        hyper-parameter that is not a finite number > 0 (nan, inf, 0, negative; the message names it).
    """
    key = _key(name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown surrogate {name!r}; known: {', '.join(_REGISTRY)}")
    entry = _REGISTRY[key]
    extra = set(hparams) - {entry.hparam}
    if extra:
        raise ValueError(
            f"surrogate {key!r} takes the hyper-parameter {entry.hparam!r}, got unexpected {sorted(extra)}"
        )
    value = hparams.get(entry.hparam, entry.default)
    if isinstance(value, numbers.Real) and not (math.isfinite(float(value)) and value > 0):
        raise ValueError(f"surrogate {key!r}: {entry.hparam} must be a finite number > 0, got {value}")
    return SpikeFunction(entry.grad_fn, value, key)


def _factory(key: str):
    entry = _REGISTRY[key]

    def make(value: float | jax.Array = entry.default) -> SpikeFunction:
        return get(key, **{entry.hparam: value})

    make.__name__ = key
    make.__doc__ = (
        f"The ``{key}`` spike function (surrogate hyper-parameter ``{entry.hparam}``, default {entry.default}); "
        f"see the module docstring for its formula and source. Same as ``get({key!r}, {entry.hparam}=...)``."
    )
    return make


rectangle = _factory("rectangle")
sigmoid = _factory("sigmoid")
atan = _factory("atan")
triangle = _factory("triangle")
superspike = _factory("superspike")
erf = _factory("erf")
piecewise_quadratic = _factory("piecewise_quadratic")
piecewise_exp = _factory("piecewise_exp")
soft_sign = _factory("soft_sign")
piecewise_leaky_relu = _factory("piecewise_leaky_relu")
