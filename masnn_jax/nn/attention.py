"""The MA-SNN multi-dimensional attention block: TA / CA / SA gates (:mod:`masnn_jax.nn.gates`) combined, placed
on a layer's input (official code) or on the membrane potential (the paper's equations).

Source: Yao et al., "Attention Spiking Neural Networks", IEEE TPAMI 2023, Eqs. 10-14; official code
``MA_SNN/module/Attention.py`` and ``MA_SNN/module/LIF_Module.py``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


from masnn_jax.nn.gates import (
    CHANNEL_KINDS, PLACEMENTS, SCHEMES, SPATIAL_KINDS, ECA, ChannelAttention, SimAM, SpatialAttention,
    Initializer, TemporalAttention, _check_size, _compute_dtype, eca_kernel_size, torch_default_init,
)

__all__ = ["MultiDimensionalAttention", "SCHEMES", "PLACEMENTS", "CHANNEL_KINDS", "SPATIAL_KINDS",
           # the gates (:mod:`masnn_jax.nn.gates`), re-exported so that this module is the whole attention API
           "TemporalAttention", "ChannelAttention", "SpatialAttention", "ECA", "SimAM", "eca_kernel_size",
           "torch_default_init"]


# --------------------------------------------------------------------------- block


class MultiDimensionalAttention(nnx.Module):
    """MA-SNN multi-dimensional attention block (TA / CA / SA and their combinations).

    Two placements:

    * ``placement='input'`` (default; the official code, ``MA_SNN/module/Attention.py``
      classes ``TCSA``, ``TCA``, ``CSA``, ``TSA``, ``TA``, ``CA``, ``SA``, applied in
      ``MA_SNN/module/LIF_Module.py`` to the conv -> BN -> pool output before the neuron
      loop): on the whole sequence,
      ``out = ta(x) * x; out = ca(out) * out; out = sa(out) * out; out = relu(out)``
      (each stage only when the scheme has it; the ReLU only when the scheme is not
      ``'no'``; ``'no'`` returns ``x`` unchanged). CA pools over T, H, W jointly and SA over
      T, C jointly, so their weights are shared by all time steps.
      ``membrane_transform`` is the identity.
    * ``placement='membrane'`` (the paper's equations, TPAMI Sec. 4): ``input_transform``
      applies TA to the layer input over all T (``X_TA = g_t(X) * X``, no ReLU);
      ``membrane_transform`` applies CA then SA to one time step's membrane potential,
      ``U_CA = g_c(U) * U; U' = g_s(U_CA) * U_CA`` with U = H^{t-1} + X_TA^t (no ReLU),
      pooled per step. ``membrane_transform`` is meant to be called inside the neuron's
      time scan; it holds no BatchNorm or other mutable state, so it is safe inside
      ``jax.lax.scan`` (a closure over this module only reads parameters).
      ``__call__`` raises in this placement.

    Fully connected layers (``fc=True``, input ``(B, T, N)``): only TA is used, and only
    when the scheme contains ``'T'``; otherwise the block is the identity (no ReLU). This is
    what the official networks do (``AttLIF`` gets ``attention='TA'`` when the scheme is not
    one of ``no/CA/SA/CSA``, else ``'no'``, e.g. ``MA_SNN/DVSGestures/CNN/Networks/Att_SNN.py``).
    ``C`` is then unused.

    Args:
      scheme: one of :data:`SCHEMES`.
      T: number of time steps.
      C: number of channels of the conv feature map (ignored when ``fc``).
      c_ratio: channel MLP reduction (official config: 8). Ignored for ``channel='eca'``.
      t_ratio: temporal MLP reduction (official config: 5 for Gesture, 2 for Gait).
      kernel_size: SA kernel, 3 (official) or 7 (paper); checked only when a CBAM spatial
        attention is built.
      placement: one of :data:`PLACEMENTS`.
      channel: ``'cbam'`` (:class:`ChannelAttention`) or ``'eca'`` (:class:`ECA`, adaptive k).
      spatial: ``'cbam'`` (:class:`SpatialAttention`) or ``'simam'`` (:class:`SimAM`).
      fc: the block sits after a fully connected layer (see above).
      rngs, param_dtype, dtype, kernel_init, precision: as in :class:`TemporalAttention`.

    Attribute ``bypass`` (default False; a static attribute, so toggling it retraces): when True the block is the
    identity in every placement — ``__call__`` / ``input_transform`` return ``x``, ``membrane_transform`` returns
    ``u`` and :attr:`has_membrane_stage` is False — so the layer feeds its pre-activation straight to the neuron (no
    gates, no official ReLU). :mod:`masnn_jax.analysis` sets it on every block of a model to compare the network
    with and without attention (same weights).

    Submodules ``ta``, ``ca``, ``sa`` are ``None`` when not used. Parameter counts (T = 60,
    t_ratio = 5, c_ratio = 8): TA 1440; CA 2 C (C // 8), e.g. 1024 for C = 64, 4096 for
    C = 128; SA 18 (k = 3).

    Raises:
      ValueError: unknown ``scheme`` / ``placement`` / ``channel`` / ``spatial`` (the message
        lists the valid names); a ratio giving 0 hidden units, non-positive sizes or ratios,
        ``kernel_size`` not 3 or 7 (for the ``'cbam'`` spatial attention).
    """

    def __init__(
        self,
        scheme: str,
        T: int,
        C: int,
        *,
        c_ratio: int = 8,
        t_ratio: int = 5,
        kernel_size: int = 3,
        placement: str = "input",
        channel: str = "cbam",
        spatial: str = "cbam",
        fc: bool = False,
        rngs: nnx.Rngs,
        param_dtype: Any = jnp.float32,
        dtype: Any = None,
        kernel_init: Initializer = torch_default_init,
        precision: Any = None,
    ):
        if scheme not in SCHEMES:
            raise ValueError(f"unknown attention scheme {scheme!r}; valid schemes: {', '.join(SCHEMES)}")
        if placement not in PLACEMENTS:
            raise ValueError(
                f"unknown attention placement {placement!r}; valid placements: {', '.join(PLACEMENTS)}"
            )
        if channel not in CHANNEL_KINDS:
            raise ValueError(
                f"unknown channel attention {channel!r}; valid kinds: {', '.join(CHANNEL_KINDS)}"
            )
        if spatial not in SPATIAL_KINDS:
            raise ValueError(
                f"unknown spatial attention {spatial!r}; valid kinds: {', '.join(SPATIAL_KINDS)}"
            )
        _check_size("T", T)
        self.scheme = scheme
        self.T = T
        self.C = C
        self.placement = placement
        self.channel = channel
        self.spatial = spatial
        self.fc = bool(fc)
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.bypass = False

        letters = "" if scheme == "no" else scheme[:-1]  # 'TCSA' -> 'TCS'
        use_t = "T" in letters
        use_c = "C" in letters and not self.fc
        use_s = "S" in letters and not self.fc
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        pkw = dict(kw, kernel_init=kernel_init, precision=precision)

        self.ta = TemporalAttention(T, t_ratio, **pkw) if use_t else None
        if not use_c:
            self.ca = None
        elif channel == "cbam":
            self.ca = ChannelAttention(C, c_ratio, **pkw)
        else:
            self.ca = ECA(C, **pkw)
        if not use_s:
            self.sa = None
        elif spatial == "cbam":
            self.sa = SpatialAttention(kernel_size, **pkw)
        else:
            self.sa = SimAM(**kw)

    # -- properties ---------------------------------------------------------------------

    @property
    def is_identity(self) -> bool:
        """True when no attention unit is active (scheme ``'no'``, or an FC block without T)."""
        return self.ta is None and self.ca is None and self.sa is None

    @property
    def has_membrane_stage(self) -> bool:
        """True when :meth:`membrane_transform` does anything (membrane placement with CA or SA, not bypassed)."""
        return not self.bypass and self.placement == "membrane" and (self.ca is not None or self.sa is not None)

    # -- checks -------------------------------------------------------------------------

    def _check_sequence(self, x: jax.Array) -> None:
        want = "(B, T, N)" if self.fc else "(B, T, H, W, C)"
        rank = 3 if self.fc else 5
        if x.ndim != rank:
            raise ValueError(
                f"MultiDimensionalAttention(fc={self.fc}) expects a sequence {want}; got shape "
                f"{tuple(x.shape)} (rank {x.ndim})"
            )
        if self.ta is not None and x.shape[1] != self.T:
            raise ValueError(
                f"MultiDimensionalAttention was built for T={self.T} but got {x.shape[1]} time "
                f"steps (input shape {tuple(x.shape)})"
            )
        if self.ca is not None and x.shape[-1] != self.C:
            raise ValueError(
                f"MultiDimensionalAttention was built for C={self.C} channels but got input shape "
                f"{tuple(x.shape)}"
            )

    def _cast(self, x: jax.Array) -> jax.Array:
        return x.astype(_compute_dtype(x, self.dtype, self.param_dtype))

    def _apply_ta(self, x: jax.Array) -> jax.Array:
        out = self._cast(x)
        if self.ta is not None:
            out = self.ta(out) * out
        return out

    def _apply_cs(self, out: jax.Array) -> jax.Array:
        if self.ca is not None:
            out = self.ca(out) * out
        if self.sa is not None:
            out = self.sa(out) * out
        return out

    # -- API ----------------------------------------------------------------------------

    def __call__(self, x: jax.Array) -> jax.Array:
        """Input-placement attention on a whole sequence (official code).

        Args:
          x: ``(B, T, H, W, C)``, or ``(B, T, N)`` when ``fc``.

        Returns:
          Same shape; ``relu(sa * (ca * (ta * x)))`` with the scheme's stages, in the compute
          dtype (the input's dtype by default); ``x`` itself when no stage is active.

        Raises:
          ValueError: called in ``placement='membrane'`` (use :meth:`input_transform` and
            :meth:`membrane_transform`); wrong rank, T or C.
        """
        if self.placement != "input":
            raise ValueError(
                "MultiDimensionalAttention(placement='membrane') has no single-call form: apply "
                "input_transform(x) to the sequence and membrane_transform(u) to each time "
                "step's membrane potential inside the neuron loop"
            )
        self._check_sequence(x)
        if self.is_identity:
            return x
        return jax.nn.relu(self._apply_cs(self._apply_ta(x)))

    def input_transform(self, x: jax.Array) -> jax.Array:
        """The part applied to the whole input sequence before the neuron loop.

        ``placement='input'``: the full block, same as ``__call__``. ``placement='membrane'``:
        TA only, ``g_t(x) * x`` without ReLU (``x`` unchanged when the scheme has no T).

        Args:
          x: ``(B, T, H, W, C)``, or ``(B, T, N)`` when ``fc``.

        Returns:
          Same shape, in the compute dtype (``x`` itself when nothing applies).

        Raises:
          ValueError: wrong rank, T or C.
        """
        if self.bypass:
            return x
        if self.placement == "input":
            return self(x)
        self._check_sequence(x)
        if self.ta is None:
            return x
        return self._apply_ta(x)

    def membrane_transform(self, u: jax.Array) -> jax.Array:
        """The part applied to one time step's membrane potential inside the neuron scan.

        ``placement='membrane'``: ``u_ca = g_c(u) * u; g_s(u_ca) * u_ca`` (no ReLU), with
        CA pooled over H, W and SA over C of this step only (paper Sec. 4). Identity in
        ``placement='input'``, for FC blocks and for schemes without C or S (see
        :attr:`has_membrane_stage`). Holds no BatchNorm / mutable state: safe to call from
        the body of ``jax.lax.scan``.

        Args:
          u: one step ``(B, H, W, C)``, or ``(B, N)`` when ``fc``.

        Returns:
          Same shape, in the compute dtype (``u`` itself when nothing applies).

        Raises:
          ValueError: wrong rank or channel count when a stage applies.
        """
        if not self.has_membrane_stage:
            return u
        if u.ndim != 4:
            raise ValueError(
                "membrane_transform expects one time step's membrane potential (B, H, W, C); "
                f"got shape {tuple(u.shape)} (rank {u.ndim})"
            )
        if self.ca is not None and u.shape[-1] != self.C:
            raise ValueError(
                f"MultiDimensionalAttention was built for C={self.C} channels but got membrane "
                f"potential of shape {tuple(u.shape)}"
            )
        return self._apply_cs(self._cast(u))
