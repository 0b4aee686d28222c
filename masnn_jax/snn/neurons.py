"""Spiking neurons as pure functions scanned over time.

One general leaky integrate-and-fire (LIF) recurrence expresses every neuron the project needs. With the carried
state ``h`` (the membrane potential after reset and leak, before the next input) it reads, for t = 1..T::

    u_t = h_{t-1} + input_scale · x_t                 charge           (h_0 = v_init)
    u_t = transform(u_t)                              optional hook    (membrane-placed attention, paper Eq. 13-14)
    s_t = Θ(u_t − v_th)                               fire             (Θ(0) = 1 unless fire_at_threshold=False)
    r_t = s_t·v_reset + (1 − s_t)·u_t                 reset 'hard'
        = u_t − s_t·v_th                              reset 'soft'
        = u_t                                         reset 'none'
    h_t = decay · r_t + bias                          leak

with ``s_t`` replaced by ``stop_gradient(s_t)`` inside the reset when ``detach_reset``. The output is ``s_t`` or,
for LIAF neurons, an analogue value (``relu(u_t)`` or ``relu(u_t − v_th)``) while the reset still uses ``s_t``.

Presets (each a :class:`LIFParams`):

* :func:`masnn_official` — the event-net neuron of the official code (``MA_SNN/module/LIF.py``, ``ConvIFCell``):
  ``u = h + x``, fire at ``u >= Vthres``, ``h = (s·Vthres + (1 − s)·u)·alpha + beta`` (reset not detached, i.e. hard
  reset *to v_th*, then decay alpha), rectangle surrogate of width ``a``. Defaults Vthres 0.3, alpha 0.3, beta 0,
  a 0.5.
* :func:`att_res_snn` — the Att-Res-SNN neuron (``Att_Res_SNN/models/resnet_2.py``):
  ``mem = mem·decay·(1 − s) + x`` with the reset spike detached, fire at ``mem > 0.5`` (strict), rectangle
  surrogate of width 1.
* :func:`spikingjelly_lif` / :func:`spikingjelly_if` — SpikingJelly 2.x ``LIFNode`` / ``IFNode``:
  ``H = V + (X − (V − V_reset))/τ`` (``decay_input``) or ``H = V − (V − V_reset)/τ + X``, fire at ``H >= V_th``,
  hard reset to ``v_reset`` or soft reset (``v_reset=None``), optional ``detach_reset``; in the form above
  ``decay = 1 − 1/τ``, ``bias = V_reset/τ``, ``input_scale = 1/τ`` (or 1), ``v_init = V_reset``.
* :class:`PLIF` — parametric LIF (Fang et al., ICCV 2021; SpikingJelly ``ParametricLIFNode``): the same with a
  learnable ``w``, ``1/τ = sigmoid(w)``, held by a Flax NNX module.

Shapes: the sequence functions take ``x`` batch-major, ``(B, T, ...)`` (e.g. ``(B, T, H, W, C)`` for conv layers,
``(B, T, N)`` for dense layers) and return arrays of the same shape and dtype. Spikes are exactly 0 or 1 in that dtype
(bf16 in -> bf16 out). Units are the network's own (dimensionless potentials).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx, struct

from masnn_jax.snn import surrogate as surrogate_lib

__all__ = [
    "LIFParams",
    "lif_step",
    "lif",
    "if_neuron",
    "masnn_official",
    "att_res_snn",
    "spikingjelly_lif",
    "spikingjelly_if",
    "PLIF",
    "RESETS",
    "OUTPUTS",
]

RESETS = ("hard", "soft", "none")
OUTPUTS = ("spike", "liaf")

Transform = Callable[[jax.Array], jax.Array]


@struct.dataclass
class LIFParams:
    """Parameters of the general LIF recurrence (see the module docstring for the equations).

    Numeric fields are pytree leaves: Python floats or arrays broadcastable to one time step's shape (e.g. per
    channel ``(C,)``), and may be traced (learned, swept with ``vmap``). They are cast to the input's dtype.

    Attributes:
      v_th: firing threshold.
      decay: multiplicative leak applied to the reset potential each step (official ``alpha``; ``1 − 1/τ``).
      input_scale: factor on the input current (``1/τ`` for SpikingJelly's ``decay_input=True``).
      bias: constant added after the leak (official ``beta``; ``V_reset/τ`` in SpikingJelly's LIF).
      v_init: initial carried state ``h_0`` (potential before the first input arrives).
      v_reset: hard-reset target (the official event neuron resets to ``v_th``).
      surrogate: the spike function; its surrogate derivative is used in the backward pass.
      reset: 'hard', 'soft' (subtract ``v_th``) or 'none'.
      detach_reset: stop the gradient through the spike in the reset.
      fire_at_threshold: ``True`` fires at ``u >= v_th`` (official MA-SNN, SpikingJelly), ``False`` at ``u > v_th``
        (Att-Res-SNN).
      output: 'spike' or 'liaf' (analogue output, spike-driven reset; official ``mode_select='mem'``).
      liaf_subtract_threshold: LIAF outputs ``act(u − v_th)`` (official ``TR_model='TR'``) instead of ``act(u)``.
      liaf_activation: LIAF activation (official ``mem_act``, ReLU); ``None`` for the identity.

    Raises (from :meth:`validate`, called by :func:`lif`):
      ValueError: unknown ``reset`` or ``output``.
    """

    v_th: jax.Array | float = 1.0
    decay: jax.Array | float = 0.5
    input_scale: jax.Array | float = 1.0
    bias: jax.Array | float = 0.0
    v_init: jax.Array | float = 0.0
    v_reset: jax.Array | float = 0.0
    surrogate: surrogate_lib.SpikeFunction = struct.field(default_factory=lambda: surrogate_lib.rectangle(1.0))
    reset: str = struct.field(pytree_node=False, default="hard")
    detach_reset: bool = struct.field(pytree_node=False, default=False)
    fire_at_threshold: bool = struct.field(pytree_node=False, default=True)
    output: str = struct.field(pytree_node=False, default="spike")
    liaf_subtract_threshold: bool = struct.field(pytree_node=False, default=False)
    liaf_activation: Callable[[jax.Array], jax.Array] | None = struct.field(
        pytree_node=False, default=jax.nn.relu
    )

    def validate(self) -> "LIFParams":
        """Checks the static choices; returns ``self``. Raises ValueError naming the bad field."""
        if self.reset not in RESETS:
            raise ValueError(f"LIFParams.reset must be one of {RESETS}, got {self.reset!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"LIFParams.output must be one of {OUTPUTS}, got {self.output!r}")
        if not callable(self.surrogate):
            raise ValueError(f"LIFParams.surrogate must be a spike function, got {self.surrogate!r}")
        return self


def _cast(p: LIFParams, dtype) -> tuple[jax.Array, ...]:
    return tuple(
        jnp.asarray(v).astype(dtype) for v in (p.v_th, p.decay, p.input_scale, p.bias, p.v_init, p.v_reset)
    )


def lif_step(
    h: jax.Array, x: jax.Array, p: LIFParams, transform: Transform | None = None
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """One step of the general LIF recurrence.

    Args:
      h: carried state ``h_{t-1}``, shape of one step (e.g. ``(B, H, W, C)``), floating.
      x: input current ``x_t``, same shape and dtype as ``h``.
      p: neuron parameters.
      transform: optional ``u -> u'`` applied after charging and before firing (membrane-placed attention).
    Returns:
      ``(h_t, (out_t, u_t))``: next state, the output (spikes 0/1, or the LIAF value) and the membrane potential
      ``u_t`` the neuron fired on (after ``transform``), all of ``x``'s shape and dtype.
    """
    v_th, decay, input_scale, bias, _, v_reset = _cast(p, x.dtype)
    u = h + input_scale * x
    if transform is not None:
        u = transform(u)
    s = p.surrogate(u - v_th, strict=not p.fire_at_threshold)
    s_reset = jax.lax.stop_gradient(s) if p.detach_reset else s
    if p.reset == "hard":
        r = s_reset * v_reset + (1 - s_reset) * u
    elif p.reset == "soft":
        r = u - s_reset * v_th
    else:
        r = u
    h_next = decay * r + bias
    if p.output == "spike":
        out = s
    else:
        a = u - v_th if p.liaf_subtract_threshold else u
        out = a if p.liaf_activation is None else p.liaf_activation(a)
    return h_next.astype(x.dtype), (out.astype(x.dtype), u.astype(x.dtype))


def lif(
    x: jax.Array,
    p: LIFParams,
    *,
    return_v: bool = False,
    h0: jax.Array | None = None,
    transform: Transform | None = None,
    checkpoint: bool = False,
    unroll: int | bool = 1,
    time_axis: int = 1,
    impl: str = "auto",
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Runs the general LIF neuron over a sequence with ``jax.lax.scan`` (or the fused kernel of
    :mod:`masnn_jax.snn.pallas_lif`, see ``impl``).

    Args:
      x: input currents, ``(B, T, ...)`` batch-major (time on ``time_axis``, default 1), floating (f16/bf16/f32/f64).
      p: neuron parameters (see :class:`LIFParams` and the presets).
      return_v: also return the membrane trace ``u`` (the potential each step fired on, before reset).
      h0: initial carried state of one step's shape; defaults to ``p.v_init`` everywhere.
      transform: optional per-step hook ``u -> u'`` before firing (membrane-placed attention). It runs inside the
        scan, so it must not update BatchNorm statistics or other mutable state.
      checkpoint: wrap the step in ``jax.checkpoint`` (recompute the step in the backward pass; less memory).
      unroll: ``jax.lax.scan`` unroll factor.
      time_axis: axis of ``x`` that holds time.
      impl: 'scan' (``jax.lax.scan``, the reference), 'pallas' (one fused Pallas kernel for the time loop and one for
        its backward pass; interpret mode off GPU) or 'auto' (pallas on GPU, scan elsewhere). Where the kernel does
        not support the call (a ``transform``, ``h0``, ``return_v``, LIAF output, traced or per-channel parameters
        such as PLIF's, a custom surrogate: :func:`masnn_jax.snn.pallas_lif.supports`) the scan runs. The kernel
        differentiates in reverse mode only (``jax.custom_vjp``); ``checkpoint`` and ``unroll`` are scan options.
    Returns:
      spikes (or LIAF outputs) of ``x``'s shape and dtype; with ``return_v`` a pair ``(out, u)``.
    Raises:
      ValueError: ``x`` of rank < 2, non-floating dtype, bad ``p`` (see :meth:`LIFParams.validate`), unknown ``impl``.

    Source: the general form of the official ``ConvIFCell``/``IFCell`` loop (``MA_SNN/module/LIF.py``) and of
    SpikingJelly's multi-step ``LIFNode``.
    """
    x = jnp.asarray(x)
    p.validate()
    if x.ndim < 2:
        raise ValueError(f"lif expects x of shape (B, T, ...), got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"lif expects a floating x, got dtype {x.dtype}")
    if impl != "scan":
        from masnn_jax.snn import pallas_lif  # imports jax.experimental.pallas only when asked for

        if pallas_lif.resolve_neuron_impl(impl) == "pallas" and pallas_lif.supports(
                x, p, transform=transform, h0=h0, return_v=return_v)[0]:
            return pallas_lif.lif_pallas(x, p, time_axis=time_axis)
    xs = jnp.moveaxis(x, time_axis, 0)
    if h0 is None:
        h0 = jnp.broadcast_to(jnp.asarray(p.v_init, x.dtype), xs.shape[1:])
    h0 = jnp.asarray(h0, x.dtype)

    def step(h, x_t):
        h, (out, u) = lif_step(h, x_t, p, transform)
        return h, ((out, u) if return_v else out)

    if checkpoint:
        step = jax.checkpoint(step)
    _, ys = jax.lax.scan(step, h0, xs, unroll=unroll)
    if return_v:
        out, u = ys
        return jnp.moveaxis(out, 0, time_axis), jnp.moveaxis(u, 0, time_axis)
    return jnp.moveaxis(ys, 0, time_axis)


def if_neuron(x: jax.Array, p: LIFParams | None = None, **kwargs) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Integrate-and-fire: :func:`lif` with ``decay = 1`` and ``bias = 0`` (no leak). ``kwargs`` go to :func:`lif`.

    Args:
      x: ``(B, T, ...)`` floating input.
      p: parameters whose other fields are kept (defaults to ``spikingjelly_if()``).
    """
    p = spikingjelly_if() if p is None else p.replace(decay=1.0, bias=0.0)
    return lif(x, p, **kwargs)


# --- presets ---------------------------------------------------------------------------------------------------


def masnn_official(
    v_th: float = 0.3,
    alpha: float = 0.3,
    beta: float = 0.0,
    a: float = 0.5,
    *,
    mode_select: str = "spike",
    tr_model: str = "NTR",
    surrogate: surrogate_lib.SpikeFunction | None = None,
) -> LIFParams:
    """The official MA-SNN event-net neuron (``MA_SNN/module/LIF.py``, ``ConvIFCell``/``IFCell``).

    ``u = h + x``; ``s = Θ(u − Vthres)`` (fires at ``u >= Vthres``); ``h = (s·Vthres + (1 − s)·u)·alpha + beta``;
    reset not detached; rectangle surrogate ``1/a`` on ``|u − Vthres| < a/2`` (the config's ``lens = a/2``).

    Args:
      v_th: official ``Vthres`` (0.3).
      alpha: official ``alpha`` (0.3), the decay applied after reset.
      beta: official ``beta`` (0).
      a: official ``a``, the rectangle's width (0.5 for Gesture and Gait, 1 for CIFAR10-DVS).
      mode_select: 'spike', or 'mem' for LIAF (official ``mode_select``).
      tr_model: 'NTR' (LIAF outputs ``relu(u)``) or 'TR' (``relu(u − Vthres)``).
      surrogate: replaces the rectangle.
    Raises:
      ValueError: unknown ``mode_select`` or ``tr_model``.
    """
    if mode_select not in ("spike", "mem"):
        raise ValueError(f"mode_select must be 'spike' or 'mem', got {mode_select!r}")
    if tr_model not in ("NTR", "TR"):
        raise ValueError(f"TR_model must be 'NTR' or 'TR', got {tr_model!r}")
    # Note: the official code applies beta on every step but starts from h = 0, hence v_init = 0 and bias = beta.
    return LIFParams(
        v_th=v_th,
        decay=alpha,
        input_scale=1.0,
        bias=beta,
        v_init=0.0,
        v_reset=v_th,
        surrogate=surrogate if surrogate is not None else surrogate_lib.rectangle(a),
        reset="hard",
        detach_reset=False,
        fire_at_threshold=True,
        output="spike" if mode_select == "spike" else "liaf",
        liaf_subtract_threshold=(tr_model == "TR"),
    )


def att_res_snn(
    decay: float = 0.25, v_th: float = 0.5, *, surrogate: surrogate_lib.SpikeFunction | None = None
) -> LIFParams:
    """The Att-Res-SNN neuron (``Att_Res_SNN/models/resnet_2.py``, ``mem_update``).

    ``mem_t = mem_{t-1}·decay·(1 − stop_gradient(s_{t-1})) + x_t``, ``s_t = Θ(mem_t − 0.5)`` with Θ(0) = 0 (strict
    ``>``); rectangle surrogate of width 1 (gradient 1 on ``|mem − 0.5| < 0.5``).
    """
    return LIFParams(
        v_th=v_th,
        decay=decay,
        input_scale=1.0,
        bias=0.0,
        v_init=0.0,
        v_reset=0.0,
        surrogate=surrogate if surrogate is not None else surrogate_lib.rectangle(1.0),
        reset="hard",
        detach_reset=True,
        fire_at_threshold=False,
    )


def spikingjelly_lif(
    tau: float = 2.0,
    *,
    decay_input: bool = True,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    detach_reset: bool = False,
    surrogate: surrogate_lib.SpikeFunction | None = None,
) -> LIFParams:
    """SpikingJelly 2.x ``neuron.LIFNode`` (multi-step) as :class:`LIFParams`.

    Args:
      tau: membrane time constant in steps (> 1 for a leak; SpikingJelly default 2).
      decay_input: ``H = V + (X − (V − V_reset))/τ`` if True, else ``H = V − (V − V_reset)/τ + X``.
      v_threshold: threshold.
      v_reset: hard-reset target; ``None`` selects the soft reset ``V = H − S·V_th`` (and leak towards 0).
      detach_reset: detach the spike in the reset.
      surrogate: defaults to SpikingJelly's default ``Sigmoid(alpha=4)``.
    Raises:
      ValueError: ``tau <= 0`` (for Python numbers).
    """
    if isinstance(tau, (int, float)) and tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    vr = 0.0 if v_reset is None else v_reset
    inv_tau = 1.0 / tau
    return LIFParams(
        v_th=v_threshold,
        decay=1.0 - inv_tau,
        input_scale=inv_tau if decay_input else 1.0,
        bias=vr * inv_tau,
        v_init=vr,
        v_reset=vr,
        surrogate=surrogate if surrogate is not None else surrogate_lib.sigmoid(4.0),
        reset="soft" if v_reset is None else "hard",
        detach_reset=detach_reset,
        fire_at_threshold=True,
    )


def spikingjelly_if(
    *,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    detach_reset: bool = False,
    surrogate: surrogate_lib.SpikeFunction | None = None,
) -> LIFParams:
    """SpikingJelly 2.x ``neuron.IFNode``: ``H = V + X``, fire at ``H >= V_th``, hard (or soft) reset."""
    vr = 0.0 if v_reset is None else v_reset
    return LIFParams(
        v_th=v_threshold,
        decay=1.0,
        input_scale=1.0,
        bias=0.0,
        v_init=vr,
        v_reset=vr,
        surrogate=surrogate if surrogate is not None else surrogate_lib.sigmoid(4.0),
        reset="soft" if v_reset is None else "hard",
        detach_reset=detach_reset,
        fire_at_threshold=True,
    )


class PLIF(nnx.Module):
    """Parametric LIF neuron (Fang et al., ICCV 2021; SpikingJelly ``ParametricLIFNode``) with a learnable time constant.

    ``1/τ = sigmoid(w)``, ``w`` an ``nnx.Param`` initialised to ``−log(init_tau − 1)``; then the SpikingJelly LIF
    recurrence with ``decay = 1 − 1/τ`` and ``input_scale = 1/τ`` (``decay_input=True``) or 1.

    Args:
      init_tau: initial τ (> 1; SpikingJelly default 2).
      shape: shape of ``w`` (``()`` for one shared τ, ``(C,)`` for one per channel, broadcast over the last axis).
      decay_input, v_threshold, v_reset, detach_reset, surrogate: as :func:`spikingjelly_lif`.
      param_dtype: dtype of ``w``.
    Call:
      ``plif(x, return_v=False, **lif_kwargs)`` with ``x`` ``(B, T, ...)``; returns spikes of ``x``'s shape and dtype.
    Raises:
      ValueError: ``init_tau <= 1``.
    """

    def __init__(
        self,
        init_tau: float = 2.0,
        *,
        shape: tuple[int, ...] = (),
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        detach_reset: bool = False,
        surrogate: surrogate_lib.SpikeFunction | None = None,
        param_dtype=jnp.float32,
    ):
        if init_tau <= 1:
            raise ValueError(f"PLIF init_tau must be > 1, got {init_tau}")
        w0 = -jnp.log(jnp.asarray(init_tau - 1.0, param_dtype))
        self.w = nnx.Param(jnp.full(shape, w0, param_dtype))
        # nnx.data: the template may hold arrays (a surrogate with an array hyper-parameter), which Flax >= 0.12
        # refuses in a static attribute. Older Flax has no nnx.data and no such check.
        self.template = getattr(nnx, "data", lambda v: v)(spikingjelly_lif(
            2.0,
            decay_input=decay_input,
            v_threshold=v_threshold,
            v_reset=v_reset,
            detach_reset=detach_reset,
            surrogate=surrogate,
        ))
        self.decay_input = decay_input

    def params(self) -> LIFParams:
        """The current :class:`LIFParams` (``decay``, ``input_scale``, ``bias`` computed from ``w``)."""
        inv_tau = jax.nn.sigmoid(self.w[...])
        vr = self.template.v_reset
        return self.template.replace(
            decay=1.0 - inv_tau,
            input_scale=inv_tau if self.decay_input else 1.0,
            bias=vr * inv_tau,
        )

    @property
    def tau(self) -> jax.Array:
        """The current time constant τ = 1 + exp(−w)."""
        return 1.0 / jax.nn.sigmoid(self.w[...])

    def __call__(self, x: jax.Array, **kwargs) -> jax.Array | tuple[jax.Array, jax.Array]:
        return lif(x, self.params(), **kwargs)
