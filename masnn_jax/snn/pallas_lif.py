"""A fused LIF neuron: the whole time loop of :func:`masnn_jax.snn.neurons.lif` in one Pallas kernel, forward and
backward (surrogate gradient included), for GPUs.

Why: the neuron's ``lax.scan`` runs T small elementwise steps; on a GPU each is a kernel launch (or a few) that
reads and writes the whole membrane state through HBM, and its backward pass stores every step's intermediates. Here
one kernel keeps the membrane potential in registers and loops over T inside, reading ``x_t`` and writing ``s_t``
once per step; the backward kernel loops over T in reverse with the gradient carried in registers.

The recurrence (identical to :func:`~masnn_jax.snn.neurons.lif_step`, evaluated op for op in the input's dtype, with
the constants of :class:`~masnn_jax.snn.neurons.LIFParams` cast to it as the scan casts them), for t = 1..T::

    u_t = h_{t-1} + input_scale · x_t            h_0 = v_init
    s_t = Θ(u_t − v_th)                           Θ(0) = 1 if fire_at_threshold (u >= v_th), else 0 (u > v_th)
    r_t = s_t·v_reset + (1 − s_t)·u_t             reset 'hard'
        = u_t − s_t·v_th                          reset 'soft'
        = u_t                                     reset 'none'
    h_t = decay · r_t + bias

Backward (reverse over t, ``ḡ`` cotangents, ``ḡh_T = 0``, ``σ'`` the surrogate derivative evaluated in float32 or
wider and cast back, non-finite values set to 0, as :mod:`masnn_jax.snn.surrogate` does)::

    ḡr = decay · ḡh_t
    hard:  ḡu = (1 − s_t)·ḡr,  ḡs_reset = v_reset·ḡr − u_t·ḡr
    soft:  ḡu = ḡr,            ḡs_reset = −v_th·ḡr
    none:  ḡu = ḡr,            ḡs_reset = 0
    ḡs = ḡout_t + (0 if detach_reset else ḡs_reset)
    ḡu = ḡu + σ'(u_t − v_th)·ḡs
    ḡx_t = input_scale · ḡu;   ḡh_{t-1} = ḡu

What the backward keeps: the membrane potential ``u`` (T × neurons, the input's dtype) — the spikes are recomputed
from it exactly (the same comparison), so nothing else is stored; a scan keeps ``u``, ``s`` and the reset
intermediates per step.

Layout: ``x`` of shape ``(..., T, ...)`` (time on ``time_axis``) is viewed, without a copy, as ``(P, T, Q)``; the
kernel's grid runs over ``P × ceil(Q / block)`` programs, each owning ``block`` contiguous neurons (a power of two;
the last block of each row is masked) and looping over T inside.

Supported (:func:`supports` says why not otherwise, and :func:`masnn_jax.snn.neurons.lif` then runs the scan):
``output='spike'``; resets 'hard', 'soft', 'none'; ``detach_reset``; ``fire_at_threshold`` either way; every
numeric field a concrete scalar (Python number, NumPy or non-traced JAX scalar: not PLIF's learned, traced
parameters, not per-channel arrays); a built-in surrogate of :mod:`masnn_jax.snn.surrogate` with a concrete
hyper-parameter; no ``transform`` hook, no ``h0``, no ``return_v``; a floating ``x`` with T >= 1. Forward-mode AD
(``jax.jvp``) is not supported (``jax.custom_vjp``): use ``impl='scan'`` for it. ``checkpoint`` and ``unroll`` are
scan options and do not apply.

Backends: on GPU the kernel is lowered through Pallas' Triton backend; anywhere else ``impl='pallas'`` runs it in
Pallas' interpret mode (slow; for tests). ``'auto'`` (:func:`resolve_neuron_impl`) is 'pallas' on GPU and 'scan'
elsewhere.

Source: the recurrence of the official ``MA_SNN/module/LIF.py`` (``ConvIFCell``) and SpikingJelly 2.x's multi-step
``LIFNode`` in the general form of :mod:`masnn_jax.snn.neurons`; the fused-kernel idea is SpikingJelly's
``cupy``/``triton`` multi-step neuron backends.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from masnn_jax.snn import surrogate as surrogate_lib

__all__ = ["NEURON_IMPLS", "resolve_neuron_impl", "supports", "lif_pallas", "block_size"]

#: Accepted values of ``neuron_impl`` (``config.model.neuron_impl``, ``SpikingNeuron(impl=)``, ``lif(impl=)``).
NEURON_IMPLS = ("auto", "scan", "pallas")

#: Backends where ``'auto'`` picks the fused kernel.
AUTO_PALLAS_PLATFORMS = ("gpu", "cuda")

_MAX_BLOCK = 1024


def resolve_neuron_impl(impl: str | None, platform: str | None = None) -> str:
    """'scan' or 'pallas' for ``impl`` in :data:`NEURON_IMPLS` ('auto'/None: 'pallas' on GPU, else 'scan').

    Args:
      impl: 'auto' | 'scan' | 'pallas' (or None for 'auto').
      platform: backend name (default: ``jax.default_backend()``).
    Raises:
      ValueError: unknown ``impl`` (names ``config.model.neuron_impl``).
    """
    impl = "auto" if impl is None else impl
    if impl not in NEURON_IMPLS:
        raise ValueError(f"config.model.neuron_impl must be one of {NEURON_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    platform = platform or jax.default_backend()
    return "pallas" if platform in AUTO_PALLAS_PLATFORMS else "scan"


# --------------------------------------------------------------------------------------------- what is supported


def _concrete_scalar(v: Any) -> float | None:
    """``v`` as a Python float if it is a concrete scalar (not traced, size 1), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, jax.core.Tracer):
        return None
    if isinstance(v, (np.ndarray, np.generic, jax.Array)) and np.ndim(v) == 0:
        try:
            return float(v)
        except Exception:  # noqa: BLE001 - anything that will not become a number is unsupported
            return None
    return None


def _builtin_surrogate(fn: Any) -> str | None:
    """The registry name of a built-in spike function (its derivative is one of surrogate.py's own), else None."""
    if not isinstance(fn, surrogate_lib.SpikeFunction):
        return None
    for name in ("rectangle", "sigmoid", "atan", "triangle", "superspike", "erf", "piecewise_quadratic",
                 "piecewise_exp", "soft_sign", "piecewise_leaky_relu"):
        if fn.grad_fn is surrogate_lib._REGISTRY[name].grad_fn:  # noqa: SLF001 - the module's own registry
            return name
    return None


def supports(x: Any, p: Any, *, transform=None, h0=None, return_v: bool = False) -> tuple[bool, str]:
    """Whether the fused kernel can run ``lif(x, p, ...)``; ``(True, '')`` or ``(False, reason)``.

    Args: as :func:`masnn_jax.snn.neurons.lif` (``x`` an array or ``jax.ShapeDtypeStruct``).
    """
    if transform is not None:
        return False, "a transform hook runs inside the time loop"
    if h0 is not None:
        return False, "an explicit h0"
    if return_v:
        return False, "return_v"
    if p.output != "spike":
        return False, f"output={p.output!r} (LIAF)"
    if p.reset not in ("hard", "soft", "none"):
        return False, f"reset={p.reset!r}"
    for name in ("v_th", "decay", "input_scale", "bias", "v_init", "v_reset"):
        if _concrete_scalar(getattr(p, name)) is None:
            return False, f"LIFParams.{name} is not a concrete scalar (traced, e.g. PLIF, or per-channel)"
    if _builtin_surrogate(p.surrogate) is None:
        return False, "surrogate is not one of masnn_jax.snn.surrogate's built-in functions"
    if _concrete_scalar(p.surrogate.hparam) is None:
        return False, "the surrogate's hyper-parameter is not a concrete scalar"
    shape, dtype = tuple(x.shape), x.dtype
    if len(shape) < 2 or not jnp.issubdtype(dtype, jnp.floating):
        return False, f"x of shape {shape} and dtype {dtype}"
    if math.prod(shape) == 0:
        return False, "an empty x"
    return True, ""


# ------------------------------------------------------------------------------------------------------ kernels


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static description of one neuron: constants already rounded to the compute dtype (as the scan casts them)."""

    dtype: str
    v_th: float
    decay: float
    input_scale: float
    bias: float
    v_init: float
    v_reset: float
    reset: str
    detach_reset: bool
    strict: bool
    surrogate: str
    hparam: float  # rounded to the surrogate's compute dtype (float32 or wider)


def _spec(p, dtype) -> _Spec:
    dtype = jnp.dtype(dtype)
    ct = surrogate_lib._compute_dtype(dtype)  # noqa: SLF001 - the same rule as the spike function

    def cast(v, dt):  # the scan's jnp.asarray(v).astype(dt), evaluated on the host (float64 -> float32 unless x64)
        a = np.asarray(_concrete_scalar(v), dtype=jax.dtypes.canonicalize_dtype(np.float64))
        return float(a.astype(jnp.dtype(dt)))

    return _Spec(
        dtype=dtype.name, v_th=cast(p.v_th, dtype), decay=cast(p.decay, dtype),
        input_scale=cast(p.input_scale, dtype), bias=cast(p.bias, dtype), v_init=cast(p.v_init, dtype),
        v_reset=cast(p.v_reset, dtype), reset=p.reset, detach_reset=bool(p.detach_reset),
        strict=not p.fire_at_threshold, surrogate=_builtin_surrogate(p.surrogate),
        hparam=cast(p.surrogate.hparam, ct),
    )


def _const(v: float, dtype) -> np.ndarray:
    """A strongly typed NumPy scalar (a literal inside the kernel, of the scan's dtype)."""
    return np.asarray(v, dtype=jnp.dtype(dtype))[()]


def _fire(u, spec: _Spec):
    z = u - _const(spec.v_th, u.dtype)
    return (z > 0).astype(u.dtype) if spec.strict else (z >= 0).astype(u.dtype), z


def _surrogate_grad(z, spec: _Spec):
    """σ'(z) as ``SpikeFunction``'s JVP computes it: in float32 or wider, non-finite -> 0, cast to z's dtype."""
    ct = surrogate_lib._compute_dtype(z.dtype)  # noqa: SLF001
    grad_fn = surrogate_lib._REGISTRY[spec.surrogate].grad_fn  # noqa: SLF001
    g = grad_fn(z.astype(ct), _const(spec.hparam, ct))
    return jnp.where(jnp.isfinite(g), g, 0).astype(z.dtype)


def _triton():
    from jax.experimental.pallas import triton as plgpu

    return plgpu


def _fwd_kernel(x_ref, s_ref, *u_ref, spec: _Spec, T: int, Q: int, block: int, nb: int):
    """Forward: refs are one program's ``(T, block)`` blocks of x, the spikes and (when saving for the backward
    pass) the membrane potential u."""
    from jax.experimental import pallas as pl

    plgpu = _triton()
    dtype = jnp.dtype(spec.dtype)
    j = pl.program_id(0) % nb
    mask = j * block + jnp.arange(block) < Q
    c = functools.partial(_const, dtype=dtype)

    def body(t, h):
        x = plgpu.load(x_ref.at[t, :], mask=mask, other=0)
        u = h + c(spec.input_scale) * x
        s, _ = _fire(u, spec)
        if spec.reset == "hard":
            r = s * c(spec.v_reset) + (1 - s) * u
        elif spec.reset == "soft":
            r = u - s * c(spec.v_th)
        else:
            r = u
        plgpu.store(s_ref.at[t, :], s, mask=mask)
        if u_ref:
            plgpu.store(u_ref[0].at[t, :], u, mask=mask)
        return (c(spec.decay) * r + c(spec.bias)).astype(dtype)

    jax.lax.fori_loop(0, T, body, jnp.full((block,), c(spec.v_init), dtype))


def _bwd_kernel(u_ref, g_ref, gx_ref, *, spec: _Spec, T: int, Q: int, block: int, nb: int):
    """Backward: ``(T, block)`` blocks of the saved u, the spikes' cotangent and the input's gradient; t runs
    T-1 ... 0 with the carried gradient ḡh in registers."""
    from jax.experimental import pallas as pl

    plgpu = _triton()
    dtype = jnp.dtype(spec.dtype)
    j = pl.program_id(0) % nb
    mask = j * block + jnp.arange(block) < Q
    c = functools.partial(_const, dtype=dtype)

    def body(k, gh):
        t = T - 1 - k
        u = plgpu.load(u_ref.at[t, :], mask=mask, other=0)
        g_out = plgpu.load(g_ref.at[t, :], mask=mask, other=0)
        s, z = _fire(u, spec)
        gr = c(spec.decay) * gh
        if spec.reset == "hard":
            gu = (1 - s) * gr
            gs_reset = c(spec.v_reset) * gr - u * gr
        elif spec.reset == "soft":
            gu = gr
            gs_reset = -c(spec.v_th) * gr
        else:
            gu, gs_reset = gr, None
        gs = g_out if (spec.detach_reset or gs_reset is None) else g_out + gs_reset
        gu = (gu + _surrogate_grad(z, spec) * gs).astype(dtype)
        plgpu.store(gx_ref.at[t, :], (c(spec.input_scale) * gu).astype(dtype), mask=mask)
        return gu

    jax.lax.fori_loop(0, T, body, jnp.zeros((block,), dtype))


def block_size(P: int, Q: int) -> int:
    """Neurons per program for a ``(P, T, Q)`` view: the next power of two of Q up to 1024 (at least 16), halved
    while the grid would have fewer than 2048 programs and the block is above 128 (keeps a GPU's SMs busy on small
    layers)."""
    block = min(_MAX_BLOCK, max(16, 1 << max(0, (Q - 1).bit_length())))
    while block > 128 and P * (-(-Q // block)) < 2048:
        block //= 2
    return block


def _call(kernel, args, outs, spec: _Spec, P: int, T: int, Q: int, block: int | None, interpret: bool):
    from jax.experimental import pallas as pl

    block = block or block_size(P, Q)
    nb = -(-Q // block)
    bspec = pl.BlockSpec((None, T, block), lambda i: (i // nb, 0, i % nb))
    num_warps = max(1, min(4, block // 256))
    kw: dict = {}
    if not interpret:
        kw["compiler_params"] = _triton().CompilerParams(num_warps=num_warps, num_stages=1)
    return pl.pallas_call(
        functools.partial(kernel, spec=spec, T=T, Q=Q, block=block, nb=nb),
        out_shape=outs, grid=(P * nb,), in_specs=[bspec] * len(args), out_specs=[bspec] * len(outs),
        interpret=interpret, name="masnn_lif_fwd" if kernel is _fwd_kernel else "masnn_lif_bwd", **kw,
    )(*args)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _lif3(x3, spec: _Spec, block: int | None, interpret: bool):
    P, T, Q = x3.shape
    out = jax.ShapeDtypeStruct(x3.shape, x3.dtype)
    (s,) = _call(_fwd_kernel, (x3,), [out], spec, P, T, Q, block, interpret)
    return s


def _lif3_fwd(x3, spec, block, interpret):
    P, T, Q = x3.shape
    out = jax.ShapeDtypeStruct(x3.shape, x3.dtype)
    s, u = _call(_fwd_kernel, (x3,), [out, out], spec, P, T, Q, block, interpret)
    return s, u


def _lif3_bwd(spec, block, interpret, u, g):
    P, T, Q = u.shape
    (gx,) = _call(_bwd_kernel, (u, g.astype(u.dtype)), [jax.ShapeDtypeStruct(u.shape, u.dtype)], spec, P, T, Q,
                  block, interpret)
    return (gx,)


_lif3.defvjp(_lif3_fwd, _lif3_bwd)


def lif_pallas(x: jax.Array, p, *, time_axis: int = 1, interpret: bool | None = None,
               block: int | None = None) -> jax.Array:
    """The LIF recurrence over time as one fused Pallas kernel (forward) and one for its VJP.

    Args:
      x: input currents, floating (f16/bf16/f32; f64 in interpret mode), time on ``time_axis`` (e.g. ``(B, T, H,
        W, C)`` or ``(B, T, N)``), T >= 1.
      p: :class:`~masnn_jax.snn.neurons.LIFParams` that :func:`supports` accepts.
      time_axis: axis of ``x`` holding time (any; the kernel views ``x`` as ``(P, T, Q)`` without copying).
      interpret: run in Pallas' interpret mode; None: on every backend but GPU.
      block: neurons per program (a power of two); None: :func:`block_size`.
    Returns:
      spikes of ``x``'s shape and dtype, exactly 0 or 1; differentiable by reverse mode (``jax.grad``/``vjp``).
    Raises:
      ValueError: parameters or input the kernel does not support (the message says which), or a ``block`` that is
        not a power of two.
    """
    x = jnp.asarray(x)
    ok, why = supports(x, p)
    if not ok:
        raise ValueError(f"lif_pallas does not support {why}; use neurons.lif(..., impl='scan')")
    p.validate()
    if block is not None and (block < 1 or block & (block - 1)):
        raise ValueError(f"lif_pallas block must be a power of two, got {block}")
    axis = time_axis % x.ndim
    P, T, Q = math.prod(x.shape[:axis]), x.shape[axis], math.prod(x.shape[axis + 1:])
    if interpret is None:
        interpret = jax.default_backend() not in AUTO_PALLAS_PLATFORMS
    s = _lif3(x.reshape(P, T, Q), _spec(p, x.dtype), block, bool(interpret))
    return s.reshape(x.shape)
