"""Attention gates of MA-SNN: temporal, channel and spatial units (CBAM form), ECA and SimAM.

Reimplements the temporal, channel and spatial attention units of
Yao et al., "Attention Spiking Neural Networks", IEEE TPAMI 2023 (arXiv 2209.13929),
in JAX / Flax NNX, following the official PyTorch code (``BICLab/Attention-SNN``,
file ``MA_SNN/module/Attention.py``) wherever the code and the paper differ.

Every unit has the CBAM form ``x_att = g(x) * x``: each class here returns the
weights ``g(x)`` (already passed through a sigmoid, with singleton axes so that they
broadcast against ``x``); :class:`MultiDimensionalAttention` multiplies them in.

Layout conventions (batch-major, channels-last):

* a conv sequence is ``(B, T, H, W, C)``, one of its time steps ``(B, H, W, C)``;
* a fully connected sequence is ``(B, T, N)``.

Dtypes: ``dtype=None`` computes in the input's dtype (bf16 in -> bf16 out); the
parameters are stored in ``param_dtype`` and cast to the compute dtype on use.
Integer inputs are computed in ``param_dtype``.

Default parameter initialisation is PyTorch's default for ``nn.Conv*`` / ``nn.Linear``
(``kaiming_uniform(a=sqrt(5))``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``), which is
what the official code uses for its attention layers.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "SCHEMES",
    "PLACEMENTS",
    "CHANNEL_KINDS",
    "SPATIAL_KINDS",
    "torch_default_init",
    "TemporalAttention",
    "ChannelAttention",
    "SpatialAttention",
    "ECA",
    "SimAM",
    "eca_kernel_size",
]

#: Attention schemes of MA-SNN: any subset of temporal (T), channel (C) and spatial (S),
#: in the order the official code applies them; ``'no'`` turns attention off.
SCHEMES: tuple[str, ...] = ("no", "TA", "CA", "SA", "TCA", "TSA", "CSA", "TCSA")
#: Where :class:`MultiDimensionalAttention` acts: ``'input'`` (official code) or
#: ``'membrane'`` (the paper's equations).
PLACEMENTS: tuple[str, ...] = ("input", "membrane")
#: Channel attention kinds: CBAM-style MLP (``'cbam'``, MA-SNN) or ECA-Net (``'eca'``).
CHANNEL_KINDS: tuple[str, ...] = ("cbam", "eca")
#: Spatial attention kinds: CBAM-style conv (``'cbam'``, MA-SNN) or SimAM (``'simam'``).
SPATIAL_KINDS: tuple[str, ...] = ("cbam", "simam")

Initializer = Callable[..., jax.Array]

#: PyTorch's default weight init for conv / linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_init: Initializer = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


# --------------------------------------------------------------------------- helpers


def _compute_dtype(x: jax.Array, dtype: Any, param_dtype: Any) -> jnp.dtype:
    """The dtype to compute in: ``dtype`` if given, else the input's (floats only)."""
    if dtype is not None:
        return jnp.dtype(dtype)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.dtype(x.dtype)
    return jnp.dtype(param_dtype)


def _check_size(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _hidden_units(name: str, size: int, ratio_name: str, ratio: int) -> int:
    _check_size(ratio_name, ratio)
    hidden = size // ratio
    if hidden < 1:
        raise ValueError(
            f"{name}={size} // {ratio_name}={ratio} gives 0 hidden units in the shared MLP; "
            f"use {ratio_name} <= {size}"
        )
    return hidden


def _mlp(fc1: nnx.Linear, fc2: nnx.Linear, v: jax.Array, cdt, precision) -> jax.Array:
    """Bias-free shared MLP ``fc2(relu(fc1(v)))`` computed in ``cdt``."""
    w1 = fc1.kernel[...].astype(cdt)
    w2 = fc2.kernel[...].astype(cdt)
    h = jax.nn.relu(jnp.matmul(v, w1, precision=precision))
    return jnp.matmul(h, w2, precision=precision)


def _spatial_axes(x: jax.Array, cls: str) -> tuple[int, ...]:
    """Axes pooled by spatial attention: (T, C) for a sequence, (C,) for one step."""
    if x.ndim == 5:
        return (1, 4)
    if x.ndim == 4:
        return (3,)
    raise ValueError(
        f"{cls} expects a sequence (B, T, H, W, C) or one time step (B, H, W, C); "
        f"got an input of shape {tuple(x.shape)} (rank {x.ndim})"
    )


def _spatial_out(m: jax.Array, x_ndim: int) -> jax.Array:
    """Map ``(B, H, W)`` -> ``(B, 1, H, W, 1)`` (sequence) or ``(B, H, W, 1)`` (step)."""
    m = m[..., None]
    return m[:, None] if x_ndim == 5 else m


def _check_channels(x: jax.Array, C: int, cls: str) -> None:
    if x.ndim < 3:
        raise ValueError(
            f"{cls} expects an input (B, ..., C) of rank >= 3, e.g. (B, T, H, W, C) or "
            f"(B, H, W, C); got shape {tuple(x.shape)}"
        )
    if x.shape[-1] != C:
        raise ValueError(
            f"{cls} was built for C={C} channels (last axis) but got an input of shape "
            f"{tuple(x.shape)}"
        )


# --------------------------------------------------------------------------- units


class _PooledMLPGate(nnx.Module):
    """Shared machinery of TA and CA: a bias-free MLP ``size -> size // ratio -> size`` (``fc1``, ``fc2``) applied to
    the average- and max-pooled descriptors, summed, then a sigmoid (CBAM's gate)."""

    def _init_mlp(self, size: int, ratio: int, size_name: str, ratio_name: str, *, rngs, param_dtype, dtype,
                  kernel_init, precision) -> None:
        _check_size(size_name, size)
        hidden = _hidden_units(size_name, size, ratio_name, ratio)
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.fc1 = nnx.Linear(size, hidden, use_bias=False, param_dtype=param_dtype, kernel_init=kernel_init, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, size, use_bias=False, param_dtype=param_dtype, kernel_init=kernel_init, rngs=rngs)

    def _gate(self, x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
        """``sigmoid(MLP(mean_axes x) + MLP(max_axes x))`` in the compute dtype; the pooled axes are removed."""
        cdt = _compute_dtype(x, self.dtype, self.param_dtype)
        x = x.astype(cdt)
        logits = _mlp(self.fc1, self.fc2, jnp.mean(x, axis=axes), cdt, self.precision) + _mlp(
            self.fc1, self.fc2, jnp.max(x, axis=axes), cdt, self.precision
        )
        return jax.nn.sigmoid(logits)


class TemporalAttention(_PooledMLPGate):
    """Temporal attention ("when"): one weight per time step and sample.

    ``g_t(X) = sigmoid(MLP(AvgPool(X)) + MLP(MaxPool(X)))`` where the pools reduce every
    axis except batch and time, and the shared MLP is ``T -> T // t_ratio -> T`` without
    bias, ReLU in between (paper Eq. for TA; official ``TimeAttention`` in
    ``MA_SNN/module/Attention.py``, which uses 1x1 convolutions for the MLP).

    Args:
      T: number of time steps (size of axis 1 of the input).
      t_ratio: reduction ratio of the MLP (``r_t`` in the paper).
      rngs: random number streams for the initialisation.
      param_dtype: dtype of the parameters.
      dtype: compute dtype; ``None`` computes in the input's dtype.
      kernel_init: initialiser of both MLP kernels (default: PyTorch's default).
      precision: matmul precision passed to ``jnp.matmul``.

    Parameters: ``fc1`` (``nnx.Linear(T, T // t_ratio, use_bias=False)``, kernel
    ``(T, T//t_ratio)``) and ``fc2`` (kernel ``(T//t_ratio, T)``): ``2 * T * (T // t_ratio)``
    in all.

    Raises:
      ValueError: ``T`` or ``t_ratio`` not a positive integer, or ``T // t_ratio == 0``.
    """

    def __init__(
        self,
        T: int,
        t_ratio: int,
        *,
        rngs: nnx.Rngs,
        param_dtype: Any = jnp.float32,
        dtype: Any = None,
        kernel_init: Initializer = torch_default_init,
        precision: Any = None,
    ):
        self.T = T
        self.t_ratio = t_ratio
        self._init_mlp(T, t_ratio, "T", "t_ratio", rngs=rngs, param_dtype=param_dtype, dtype=dtype,
                       kernel_init=kernel_init, precision=precision)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Temporal weights of ``x``.

        Args:
          x: ``(B, T, ...)`` with at least one trailing axis, e.g. ``(B, T, H, W, C)`` or
            ``(B, T, N)``.

        Returns:
          Weights in ``(0, 1)`` of shape ``(B, T, 1, ..., 1)`` (same rank as ``x``), in the
          compute dtype.

        Raises:
          ValueError: rank < 3 or ``x.shape[1] != T``.
        """
        if x.ndim < 3 or x.shape[1] != self.T:
            raise ValueError(
                f"TemporalAttention expects an input (B, T={self.T}, ...) of rank >= 3; "
                f"got shape {tuple(x.shape)}"
            )
        w = self._gate(x, tuple(range(2, x.ndim)))
        return w.reshape(w.shape + (1,) * (x.ndim - 2))


class ChannelAttention(_PooledMLPGate):
    """Channel attention ("what"): one weight per channel and sample.

    ``g_c(X) = sigmoid(MLP(AvgPool(X)) + MLP(MaxPool(X)))`` where the pools reduce every
    axis except batch and channel, and the shared MLP is ``C -> C // c_ratio -> C`` without
    bias, ReLU in between. On a sequence ``(B, T, H, W, C)`` the pools run over T, H and W
    jointly, so one weight per channel is shared by all time steps, as in the official
    ``ChannelAttention`` (``MA_SNN/module/Attention.py``); on one step ``(B, H, W, C)``
    they run over H and W (paper, per-step CA).

    Args:
      C: number of channels (last axis of the input).
      c_ratio: reduction ratio of the MLP (``r_c`` in the paper).
      rngs, param_dtype, dtype, kernel_init, precision: as in :class:`TemporalAttention`.

    Parameters: ``fc1`` (kernel ``(C, C//c_ratio)``) and ``fc2`` (kernel
    ``(C//c_ratio, C)``), both bias-free: ``2 * C * (C // c_ratio)`` in all.

    Raises:
      ValueError: ``C`` or ``c_ratio`` not a positive integer, or ``C // c_ratio == 0``.
    """

    def __init__(
        self,
        C: int,
        c_ratio: int,
        *,
        rngs: nnx.Rngs,
        param_dtype: Any = jnp.float32,
        dtype: Any = None,
        kernel_init: Initializer = torch_default_init,
        precision: Any = None,
    ):
        self.C = C
        self.c_ratio = c_ratio
        self._init_mlp(C, c_ratio, "C", "c_ratio", rngs=rngs, param_dtype=param_dtype, dtype=dtype,
                       kernel_init=kernel_init, precision=precision)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Channel weights of ``x``.

        Args:
          x: ``(B, ..., C)`` of rank >= 3: ``(B, T, H, W, C)`` or ``(B, H, W, C)``.

        Returns:
          Weights in ``(0, 1)`` of shape ``(B, 1, ..., 1, C)`` (same rank as ``x``), in the
          compute dtype.

        Raises:
          ValueError: rank < 3 or last axis != ``C``.
        """
        _check_channels(x, self.C, "ChannelAttention")
        w = self._gate(x, tuple(range(1, x.ndim - 1)))
        return w.reshape((w.shape[0],) + (1,) * (x.ndim - 2) + (self.C,))


class SpatialAttention(nnx.Module):
    """Spatial attention ("where"): one weight per pixel and sample.

    ``g_s(X) = sigmoid(conv_kxk([AvgPool(X); MaxPool(X)]))``, a bias-free 2 -> 1
    convolution with zero "same" padding ``k // 2`` over the two pooled maps (mean first,
    max second). On a sequence ``(B, T, H, W, C)`` the pools reduce T and C jointly, so one
    map is shared by all time steps (official ``SpatialAttention`` in
    ``MA_SNN/module/Attention.py``, which flattens ``(T, C)``); on one step
    ``(B, H, W, C)`` they reduce C (paper, per-step SA). The paper states k = 7; the
    official code always uses k = 3 (the default here).

    Args:
      kernel_size: 3 or 7.
      rngs, param_dtype, dtype, kernel_init, precision: as in :class:`TemporalAttention`.

    Parameters: ``conv`` (``nnx.Conv(2, 1, (k, k), use_bias=False)``, kernel
    ``(k, k, 2, 1)``): ``2 * k * k`` (18 for k = 3).

    Raises:
      ValueError: ``kernel_size`` not 3 or 7.
    """

    def __init__(
        self,
        kernel_size: int = 3,
        *,
        rngs: nnx.Rngs,
        param_dtype: Any = jnp.float32,
        dtype: Any = None,
        kernel_init: Initializer = torch_default_init,
        precision: Any = None,
    ):
        if isinstance(kernel_size, bool) or kernel_size not in (3, 7):
            raise ValueError(f"SpatialAttention kernel_size must be 3 or 7, got {kernel_size!r}")
        self.kernel_size = int(kernel_size)
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        p = self.kernel_size // 2
        self.conv = nnx.Conv(
            2,
            1,
            (self.kernel_size, self.kernel_size),
            padding=((p, p), (p, p)),
            use_bias=False,
            param_dtype=param_dtype,
            kernel_init=kernel_init,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Spatial weights of ``x``.

        Args:
          x: a sequence ``(B, T, H, W, C)`` or one step ``(B, H, W, C)``.

        Returns:
          Weights in ``(0, 1)``: ``(B, 1, H, W, 1)`` for a sequence, ``(B, H, W, 1)`` for a
          step, in the compute dtype.

        Raises:
          ValueError: rank not 4 or 5.
        """
        axes = _spatial_axes(x, "SpatialAttention")
        cdt = _compute_dtype(x, self.dtype, self.param_dtype)
        x = x.astype(cdt)
        maps = jnp.stack([jnp.mean(x, axis=axes), jnp.max(x, axis=axes)], axis=-1)  # (B,H,W,2)
        p = self.kernel_size // 2
        y = jax.lax.conv_general_dilated(
            maps,
            self.conv.kernel[...].astype(cdt),
            window_strides=(1, 1),
            padding=((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision,
        )  # (B, H, W, 1)
        return _spatial_out(jax.nn.sigmoid(y[..., 0]), x.ndim)


def eca_kernel_size(C: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel size ``k = |(log2(C) + b) / gamma|_odd``.

    ``t = int(|(log2(C) + b) / gamma|)``, then ``k = t`` if ``t`` is odd else ``t + 1``
    (Wang et al., "ECA-Net", CVPR 2020, Eq. 12 and its official code).
    E.g. C = 64 -> 3, C = 128 / 256 / 512 -> 5.

    Raises:
      ValueError: ``C`` not a positive integer or ``gamma == 0``.
    """
    _check_size("C", C)
    if gamma == 0:
        raise ValueError("ECA gamma must be non-zero")
    t = int(abs((math.log2(C) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nnx.Module):
    """Efficient channel attention (ECA-Net) as an alternative channel attention.

    ``g_c(X) = sigmoid(conv1d_k(AvgPool(X)))``: the pooled channel descriptor (mean over
    every axis except batch and channel, the same axes as :class:`ChannelAttention`) is
    filtered along the channel axis by a bias-free 1-D convolution of odd size ``k`` with
    zero padding ``(k - 1) // 2`` (Wang et al., "ECA-Net: Efficient Channel Attention for
    Deep Convolutional Neural Networks", CVPR 2020). Named as an alternative by the MA-SNN
    paper; not in the official code.

    Args:
      C: number of channels (last axis of the input).
      k: kernel size (odd, >= 1); ``None`` takes :func:`eca_kernel_size` ``(C, gamma, b)``.
      gamma, b: constants of the adaptive kernel size formula.
      rngs, param_dtype, dtype, kernel_init, precision: as in :class:`TemporalAttention`.

    Parameters: ``conv`` (``nnx.Conv(1, 1, (k,), use_bias=False)``, kernel ``(k, 1, 1)``):
    ``k`` in all.

    Raises:
      ValueError: ``C`` not a positive integer, ``k`` not a positive odd integer,
        ``gamma == 0``.
    """

    def __init__(
        self,
        C: int,
        k: Optional[int] = None,
        gamma: int = 2,
        b: int = 1,
        *,
        rngs: nnx.Rngs,
        param_dtype: Any = jnp.float32,
        dtype: Any = None,
        kernel_init: Initializer = torch_default_init,
        precision: Any = None,
    ):
        _check_size("C", C)
        if k is None:
            k = eca_kernel_size(C, gamma, b)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"ECA kernel size k must be a positive odd integer, got {k!r}")
        self.C = C
        self.k = k
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        p = (k - 1) // 2
        self.conv = nnx.Conv(
            1,
            1,
            (k,),
            padding=((p, p),),
            use_bias=False,
            param_dtype=param_dtype,
            kernel_init=kernel_init,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Channel weights of ``x``.

        Args:
          x: ``(B, ..., C)`` of rank >= 3: ``(B, T, H, W, C)`` or ``(B, H, W, C)``.

        Returns:
          Weights in ``(0, 1)`` of shape ``(B, 1, ..., 1, C)``, in the compute dtype.

        Raises:
          ValueError: rank < 3 or last axis != ``C``.
        """
        _check_channels(x, self.C, "ECA")
        cdt = _compute_dtype(x, self.dtype, self.param_dtype)
        x = x.astype(cdt)
        avg = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))  # (B, C)
        p = (self.k - 1) // 2
        y = jax.lax.conv_general_dilated(
            avg[:, :, None],  # channels become the 1-D "spatial" axis: (B, C, 1)
            self.conv.kernel[...].astype(cdt),
            window_strides=(1,),
            padding=((p, p),),
            dimension_numbers=("NWC", "WIO", "NWC"),
            precision=self.precision,
        )[:, :, 0]
        w = jax.nn.sigmoid(y)
        return w.reshape((w.shape[0],) + (1,) * (x.ndim - 2) + (self.C,))


class SimAM(nnx.Module):
    """SimAM, a parameter-free energy-based attention, as an alternative spatial attention.

    For a map ``m`` with ``n + 1`` pixels, mean ``mu`` and variance
    ``sigma^2 = sum((m - mu)^2) / n``, the minimal energy of pixel ``t`` is
    ``e_t = 4 (sigma^2 + lambda) / ((t - mu)^2 + 2 sigma^2 + 2 lambda)`` and the weight is
    ``sigmoid(1 / e_t)`` (Yang et al., "SimAM: A Simple, Parameter-Free Attention Module
    for Convolutional Neural Networks", ICML 2021, Eqs. 5 and 6). Named as an alternative
    by the MA-SNN paper; not in the official code.

    With the default ``per_neuron=False`` it keeps the call convention of
    :class:`SpatialAttention`: the input is first mean-pooled over the same axes (T and C
    jointly for a sequence, C for one step) into one map per sample, and SimAM's statistics
    are taken over that map's H x W pixels, giving ``(B, 1, H, W, 1)`` / ``(B, H, W, 1)``.
    With ``per_neuron=True`` it is SimAM as published: statistics over H x W for every
    (sample, [time,] channel) and one weight per neuron, of the input's shape.

    A 1 x 1 map has ``n = 0``; ``n`` is then taken as 1 (the weight is ``sigmoid(0.5)``)
    instead of dividing by zero.

    Args:
      lambda_: the regulariser ``lambda`` (paper default 1e-4).
      per_neuron: see above.
      rngs: accepted for a uniform constructor; unused (no parameters).
      param_dtype: compute dtype for integer inputs.
      dtype: compute dtype; ``None`` computes in the input's dtype.

    Raises:
      ValueError: ``lambda_`` negative.
    """

    def __init__(
        self,
        lambda_: float = 1e-4,
        *,
        per_neuron: bool = False,
        rngs: Optional[nnx.Rngs] = None,
        param_dtype: Any = jnp.float32,
        dtype: Any = None,
    ):
        del rngs
        if not lambda_ >= 0:
            raise ValueError(f"SimAM lambda_ must be >= 0, got {lambda_!r}")
        self.lambda_ = float(lambda_)
        self.per_neuron = bool(per_neuron)
        self.dtype = dtype
        self.param_dtype = param_dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        """SimAM weights of ``x``.

        Args:
          x: a sequence ``(B, T, H, W, C)`` or one step ``(B, H, W, C)``.

        Returns:
          Weights in ``(0, 1)``, in the compute dtype: ``(B, 1, H, W, 1)`` / ``(B, H, W, 1)``
          when ``per_neuron=False``; ``x.shape`` when ``per_neuron=True``.

        Raises:
          ValueError: rank not 4 or 5.
        """
        axes = _spatial_axes(x, "SimAM")
        cdt = _compute_dtype(x, self.dtype, self.param_dtype)
        x = x.astype(cdt)
        if self.per_neuron:
            m = x
            hw = (x.ndim - 3, x.ndim - 2)
        else:
            m = jnp.mean(x, axis=axes)  # (B, H, W)
            hw = (1, 2)
        n = max(m.shape[hw[0]] * m.shape[hw[1]] - 1, 1)
        d = jnp.square(m - jnp.mean(m, axis=hw, keepdims=True))
        var = jnp.sum(d, axis=hw, keepdims=True) / n
        inv_energy = d / (4 * (var + self.lambda_)) + 0.5
        w = jax.nn.sigmoid(inv_energy).astype(cdt)
        return w if self.per_neuron else _spatial_out(w, x.ndim)


