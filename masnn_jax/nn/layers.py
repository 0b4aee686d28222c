"""Spiking layers of the MA-SNN event networks: conv/dense -> BatchNorm -> pooling -> attention -> neuron loop.

Layout is batch-major and channels-last: conv layers take and return ``(B, T, H, W, C)``, dense layers ``(B, T, N)``.
Conv, BatchNorm, pooling and input-placed attention run on the merged ``(B·T, ...)`` batch at once; only the neuron
recurrence (and membrane-placed channel/spatial attention) runs inside ``jax.lax.scan``. No module that updates
BatchNorm statistics ever runs inside the scan.

Source: ``MA_SNN/module/LIF_Module.py`` (``ConvAttLIF``, ``AttLIF``) of the official code.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from masnn_jax.nn import attention as attention_lib
from masnn_jax.snn import chunking, neurons, ops, pallas_lif
from masnn_jax.snn import surrogate as surrogate_lib
from masnn_jax.snn.norm import BatchNorm

__all__ = [
    "torch_default_init", "neuron_from_config", "RECORD_MODES", "record_activity", "set_recording", "SpikingNeuron",
    "conv_bn_statistics", "ConvBN", "ConvAttLIF", "DenseAttLIF",
]


def torch_default_init(fan_in: int):
    """Initializer drawing from U(−1/√fan_in, 1/√fan_in): PyTorch's default for ``nn.Conv2d``/``nn.Linear`` weights
    (kaiming_uniform with a = √5) and biases, used so that training starts where the official code starts."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


_NEURON_KINDS = ("masnn_official", "att_res_snn", "lif", "if", "plif")


def neuron_from_config(neuron_cfg: Any, surrogate_cfg: Any | None = None) -> neurons.LIFParams | dict:
    """Builds neuron parameters from config mappings.

    Args:
      neuron_cfg: mapping with ``kind`` in ('masnn_official', 'att_res_snn', 'lif', 'if', 'plif') and that preset's
        keyword arguments (see :mod:`masnn_jax.snn.neurons`; e.g. ``v_th``, ``alpha``, ``beta``, ``mode_select``,
        ``tr_model`` for 'masnn_official'; ``tau``, ``decay_input``, ``v_threshold``, ``v_reset``, ``detach_reset``
        for 'lif'; ``init_tau`` ... for 'plif').
      surrogate_cfg: mapping with ``name`` and the surrogate's hyper-parameter (``alpha`` or ``width``), or None for
        the preset's own surrogate.
    Returns:
      :class:`~masnn_jax.snn.neurons.LIFParams`, or for 'plif' the keyword dict for :class:`~masnn_jax.snn.neurons.PLIF`.
    Raises:
      ValueError: unknown ``config.model.neuron.kind``, unknown or bad keys (named in the message).
    """
    cfg = dict(neuron_cfg)
    kind = cfg.pop("kind", "masnn_official")
    spike_fn = None
    if surrogate_cfg is not None:
        scfg = dict(surrogate_cfg)
        name = scfg.pop("name", None)
        if name:
            try:
                spike_fn = surrogate_lib.get(name, **scfg)
            except ValueError as e:
                raise ValueError(f"config.model.surrogate: {e}") from None
    try:
        if kind == "masnn_official":
            return neurons.masnn_official(surrogate=spike_fn, **cfg)
        if kind == "att_res_snn":
            return neurons.att_res_snn(surrogate=spike_fn, **cfg)
        if kind == "lif":
            return neurons.spikingjelly_lif(surrogate=spike_fn, **cfg)
        if kind == "if":
            return neurons.spikingjelly_if(surrogate=spike_fn, **cfg)
        if kind == "plif":
            return dict(surrogate=spike_fn, **cfg)
    except TypeError as e:
        raise ValueError(f"config.model.neuron (kind={kind!r}): {e}") from None
    raise ValueError(f"config.model.neuron.kind must be one of {_NEURON_KINDS}, got {kind!r}")


def _batch_norm(features: int, momentum: float, dtype, param_dtype, rngs: nnx.Rngs) -> BatchNorm:
    """The layers' BatchNorm (eps 1e-5, PyTorch's running-variance update)."""
    return BatchNorm(features, momentum=momentum, epsilon=1e-5, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


#: Values of a spiking layer's ``record`` attribute: nothing; per-sample spike counts (``activity``, what training
#: logs as the firing rate); or also the whole output (``spikes``, what :mod:`masnn_jax.analysis` reads).
RECORD_MODES = ("off", "activity", "spikes")


def record_activity(layer: nnx.Module, out: jax.Array) -> None:
    """The recording protocol every spiking layer of every model family follows (read by
    :func:`masnn_jax.train.steps.network_firing_rate` and :mod:`masnn_jax.analysis`).

    With ``layer.record`` in ('activity', 'spikes') (True counts as 'activity') sows, as ``nnx.Intermediate``,
    ``activity``: ``[[spike count, element count]]`` per sample, shape ``(B, 2)`` float32 (elements = T × neurons);
    with 'spikes' also ``spikes``: the output itself, ``(B, T, ...)``. Does nothing when ``record`` is off.

    Args:
      layer: the spiking layer (an ``nnx.Module`` with a ``record`` attribute).
      out: its output, ``(B, T, ...)`` (spikes, or LIAF values).
    """
    mode = getattr(layer, "record", "off")
    if mode is True:
        mode = "activity"
    if not mode or mode == "off":
        return
    per_sample = out.reshape(out.shape[0], -1).astype(jnp.float32)
    count = jnp.full((out.shape[0],), per_sample.shape[1], jnp.float32)
    layer.sow(nnx.Intermediate, "activity", jnp.stack([per_sample.sum(1), count], axis=1))
    if mode == "spikes":
        layer.sow(nnx.Intermediate, "spikes", out)


def set_recording(model: nnx.Module, mode: str | bool) -> None:
    """Sets ``record`` on every module of ``model`` that has one (see :func:`record_activity`).

    Raises:
      ValueError: ``mode`` not in :data:`RECORD_MODES` (or a bool).
    """
    if isinstance(mode, bool):
        mode = "activity" if mode else "off"
    if mode not in RECORD_MODES:
        raise ValueError(f"record mode must be one of {RECORD_MODES}, got {mode!r}")
    for _, module in nnx.iter_graph(model):
        if isinstance(module, nnx.Module) and hasattr(module, "record"):
            module.record = mode


class SpikingNeuron(nnx.Module):
    """A neuron population run over time: fixed :class:`~masnn_jax.snn.neurons.LIFParams`, or a learnable PLIF.

    Args:
      params: ``LIFParams`` (static), or a dict of :class:`~masnn_jax.snn.neurons.PLIF` keyword arguments.
      checkpoint, unroll: passed to :func:`~masnn_jax.snn.neurons.lif`.
      impl: 'auto' | 'scan' | 'pallas' (``config.model.neuron_impl``), resolved here once
        (:func:`masnn_jax.snn.pallas_lif.resolve_neuron_impl`: 'auto' = the fused Pallas kernel on GPU, the scan
        elsewhere) and stored as ``self.impl``; calls the kernel cannot run (PLIF, a membrane ``transform``,
        ``return_v``, LIAF) use the scan.
    Call:
      ``neuron(x, transform=None, return_v=False)``, ``x`` of shape ``(B, T, ...)``; returns spikes (or LIAF
      values) of the same shape and dtype, and the membrane trace when ``return_v``.
    """

    def __init__(self, params, *, checkpoint: bool = False, unroll: int = 1, param_dtype=jnp.float32,
                 impl: str = "auto"):
        self.impl = pallas_lif.resolve_neuron_impl(impl)
        if isinstance(params, dict):
            self.plif = neurons.PLIF(param_dtype=param_dtype, **params)
            self.params = None
        else:
            self.plif = None
            self.params = params.validate()
        self.checkpoint = checkpoint
        self.unroll = unroll

    def lif_params(self) -> neurons.LIFParams:
        """The parameters in force (PLIF's computed from its current ``w``)."""
        return self.plif.params() if self.plif is not None else self.params

    def __call__(self, x, *, transform=None, return_v: bool = False):
        return neurons.lif(
            x, self.lif_params(), transform=transform, return_v=return_v, checkpoint=self.checkpoint, unroll=self.unroll,
            impl=self.impl,
        )


class _SpikingLayer(nnx.Module):
    """What ConvAttLIF and DenseAttLIF share: pre-activation -> attention -> neuron scan -> optional activity sow.

    Subclasses set ``attention`` (:class:`~masnn_jax.nn.attention.MultiDimensionalAttention`), ``neuron``
    (:class:`SpikingNeuron`) and ``record``, and define ``preactivation``. In 'input' placement
    ``attention.input_transform`` is the whole official block (ReLU included); in 'membrane' placement it is TA only
    and CA/SA run on the membrane potential inside the scan.
    """

    def __call__(self, x: jax.Array, *, return_v: bool = False):
        out = self._spikes(x, return_v)
        record_activity(self, out[0] if return_v else out)
        return out

    def _spikes(self, x: jax.Array, return_v: bool):
        return self.fire(self.preactivation(x), return_v=return_v)

    def fire(self, y: jax.Array, *, return_v: bool = False):
        """Attention and the neuron loop on the pre-activation ``y`` ``(B, T, ...)``: spikes (and the membrane trace
        when ``return_v``). Updates no state, so it may run inside ``jax.lax.map``/``jax.checkpoint``."""
        y = self.attention.input_transform(y)
        transform = self.attention.membrane_transform if self.attention.has_membrane_stage else None
        return self.neuron(y, transform=transform, return_v=return_v)


def conv_bn_statistics(conv: nnx.Conv, bn: BatchNorm, x: jax.Array, *, conv_impl: str, binary_input: bool = False
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A convolution and the BatchNorm statistics of its output, on a merged batch ``(N, H, W, C_in)``.

    Returns ``z`` ``(N, H', W', C_out)`` and the ``(mean, var)`` that normalise it (batch statistics in training
    mode, after updating ``bn``'s running statistics; the running ones in eval mode). With the im2col conv
    (``conv_impl='im2col'``) in training mode one fused op (:func:`masnn_jax.snn.ops.conv_moments`) computes the conv
    and the moments, so the backward pass keeps only ``z`` (and ``x`` as int8 when ``binary_input``: 0/1 spikes).
    Strides and padding are ``conv``'s own.
    """
    if conv_impl == "im2col" and not bn.use_running_average:
        bias = conv.bias[...] if conv.bias is not None else None
        x, kernel, bias = nnx.nn.dtypes.promote_dtype((x, conv.kernel[...], bias), dtype=conv.dtype)
        if bias is None:
            bias = jnp.zeros((kernel.shape[-1],), kernel.dtype)
        strides = tuple(conv.strides) if isinstance(conv.strides, (tuple, list)) else (conv.strides,) * 2
        z, mean, var = ops.conv_moments(x, kernel, bias, strides, tuple(map(tuple, conv.padding)),
                                        ops.DEFAULT_CHUNK_ELEMENTS, bn.stat_dtype(x), binary_input)
        return z, *bn.statistics(z, (mean, var))
    z = conv(x)
    return z, *bn.statistics(z)


class ConvBN(nnx.Module):
    """Conv (any kernel, stride, padding; bias optional) -> BatchNorm over every axis but the channels, on a merged
    batch ``(N, H, W, C_in)`` (N = B·T: the tdBN statistics over N·T·H·W of Att-Res-SNN).

    Args:
      in_features, out_features: channels. kernel_size, stride, padding: conv geometry (explicit symmetric
        padding, as PyTorch). use_bias: conv bias. bn_scale_init: BatchNorm γ at initialisation (0.5 / 0.1 in
        ``Att_Res_SNN/models/resnet_2.py``). conv_impl: 'auto' | 'xla' | 'im2col'. binary_input: the input holds only
        0/1 spikes (kept as int8 for the backward pass of the fused op). dtype / param_dtype; rngs.
    Call: ``convbn(x)`` ``(N, H, W, C_in)`` -> ``(N, H', W', C_out)``; :meth:`statistics` and ``bn.normalize`` split
      it for chunked use (:func:`masnn_jax.snn.chunking.map_batch_chunks`).
    Parameters: ``conv.kernel`` ``(k, k, C_in, C_out)`` (PyTorch's default init), ``conv.bias``; ``bn.scale``,
      ``bn.bias``, ``bn.mean``, ``bn.var``.
    """

    def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, use_bias: bool = False, bn_scale_init: float = 1.0, bn_momentum: float = 0.9,
                 conv_impl: str = "auto", binary_input: bool = False, dtype=None, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        fan_in = in_features * kernel_size * kernel_size
        self.conv_impl = ops.resolve_conv_impl(conv_impl)
        self.binary_input = bool(binary_input)
        self.conv = ops.conv(
            in_features, out_features, (kernel_size, kernel_size), impl=conv_impl, strides=(stride, stride),
            padding=((padding, padding), (padding, padding)), use_bias=use_bias,
            kernel_init=torch_default_init(fan_in), bias_init=torch_default_init(fan_in), dtype=dtype,
            param_dtype=param_dtype, rngs=rngs,
        )
        self.bn = _batch_norm(out_features, bn_momentum, dtype, param_dtype, rngs)
        if bn_scale_init != 1.0:
            self.bn.scale[...] = jnp.full((out_features,), bn_scale_init, param_dtype)

    def statistics(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(z, mean, var)``: see :func:`conv_bn_statistics`."""
        return conv_bn_statistics(self.conv, self.bn, x, conv_impl=self.conv_impl, binary_input=self.binary_input)

    def __call__(self, x: jax.Array) -> jax.Array:
        z, mean, var = self.statistics(x)
        return self.bn.normalize(z, mean, var)


class ConvAttLIF(_SpikingLayer):
    """Conv 3×3 (bias) -> BatchNorm over B·T -> AvgPool(k) -> attention -> LIF, on ``(B, T, H, W, C_in)``.

    Args:
      in_features, out_features: channels.
      T: time steps (the temporal attention's MLP is sized by it).
      neuron: ``LIFParams`` or PLIF kwargs (see :func:`neuron_from_config`).
      kernel_size, padding: convolution geometry (official: 3, 1).
      pool: average-pooling kernel and stride (1 = none).
      attention: scheme in :data:`masnn_jax.nn.attention.SCHEMES`.
      placement: 'input' (official: attention on the whole pre-activation sequence, then ReLU) or 'membrane'
        (paper: TA on the input, CA and SA on the membrane potential of every step before firing).
      c_ratio, t_ratio, sa_kernel, channel_attention, spatial_attention: attention options.
      bn_momentum: running-statistics momentum in Flax's convention (0.9 = PyTorch's default 0.1).
      conv_impl: 'auto' | 'xla' | 'im2col', the convolution's implementation (:func:`masnn_jax.snn.ops.conv`; the
        parameters are an ``nnx.Conv``'s either way). With 'im2col' in training mode the conv and the BN batch
        statistics run as one fused op (:func:`masnn_jax.snn.ops.conv_moments`).
      batch_chunks: n >= 1; n > 1 runs BN, pooling, attention and the neuron loop over n ``jax.checkpoint``-ed
        chunks of the batch (see :meth:`_spikes`): same results up to float rounding, less memory (and faster on
        CPU).
      binary_input: the caller guarantees the input holds only 0/1 spikes (MASNN sets it for conv layers after the
        first when the neuron emits spikes); the fused conv then keeps it as int8 for the backward pass (exact).
      dtype: computation dtype (None: from inputs and parameters); param_dtype: parameter dtype.
    Call:
      ``layer(x)`` with x ``(B, T, H, W, C_in)`` -> spikes ``(B, T, H//pool, W//pool, C_out)``. With
      ``return_v=True`` also the membrane trace. When the layer's ``record`` attribute is True it sows per-sample spike
      counts as the ``nnx.Intermediate`` ``activity`` (see :func:`_sow_activity`).
    Raises:
      ValueError: x not rank 5, or with a channel count other than ``in_features``; ``batch_chunks`` not an
        integer >= 1 (named ``config.model.batch_chunks``).
    Source: ``MA_SNN/module/LIF_Module.py`` ``ConvAttLIF``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        T: int,
        neuron,
        kernel_size: int = 3,
        padding: int = 1,
        pool: int = 1,
        attention: str = "no",
        placement: str = "input",
        c_ratio: int = 8,
        t_ratio: int = 5,
        sa_kernel: int = 3,
        channel_attention: str = "cbam",
        spatial_attention: str = "cbam",
        bn_momentum: float = 0.9,
        checkpoint: bool = False,
        unroll: int = 1,
        conv_impl: str = "auto",
        batch_chunks: int | str = 1,
        binary_input: bool = False,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.batch_chunks = chunking.resolve_batch_chunks(batch_chunks)
        self.data_shards = 1  # devices the batch is sharded over (set by the Trainer; see _spikes)
        self.binary_input = bool(binary_input)
        self.conv_impl = ops.resolve_conv_impl(conv_impl)
        fan_in = in_features * kernel_size * kernel_size
        self.in_features, self.out_features, self.pool = in_features, out_features, pool
        self.conv = ops.conv(
            in_features,
            out_features,
            (kernel_size, kernel_size),
            impl=conv_impl,
            padding=((padding, padding), (padding, padding)),
            use_bias=True,
            kernel_init=torch_default_init(fan_in),
            bias_init=torch_default_init(fan_in),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.bn = _batch_norm(out_features, bn_momentum, dtype, param_dtype, rngs)
        self.attention = attention_lib.MultiDimensionalAttention(
            attention,
            T,
            out_features,
            c_ratio=c_ratio,
            t_ratio=t_ratio,
            kernel_size=sa_kernel,
            placement=placement,
            channel=channel_attention,
            spatial=spatial_attention,
            rngs=rngs,
            param_dtype=param_dtype,
        )
        self.neuron = SpikingNeuron(neuron, checkpoint=checkpoint, unroll=unroll, param_dtype=param_dtype)
        self.record = "off"

    def _conv_bn_statistics(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Conv on the merged batch and the BN statistics of its output: ``(B, T, H, W, C_in)`` -> ``z`` ``(B·T, H,
        W, C_out)``, mean, var (:func:`conv_bn_statistics`)."""
        if x.ndim != 5 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"ConvAttLIF expects (B, T, H, W, {self.in_features}) channels-last input, got shape {x.shape}"
            )
        b, t = x.shape[:2]
        return conv_bn_statistics(self.conv, self.bn, x.reshape((b * t,) + x.shape[2:]), conv_impl=self.conv_impl,
                                  binary_input=self.binary_input)

    def _normalize_pool(self, z: jax.Array, mean: jax.Array, var: jax.Array, b: int) -> jax.Array:
        """BN with given statistics, then pooling: ``(b·T, H, W, C)`` -> ``(b, T, H', W', C)``."""
        y = self.bn.normalize(z, mean, var)
        if self.pool > 1:
            y = nnx.avg_pool(y, (self.pool, self.pool), strides=(self.pool, self.pool))
        return y.reshape((b, z.shape[0] // b) + y.shape[1:])

    def preactivation(self, x: jax.Array) -> jax.Array:
        """Conv -> BN -> pool on the merged batch; ``(B, T, H, W, C_in)`` -> ``(B, T, H', W', C_out)``."""
        return self._normalize_pool(*self._conv_bn_statistics(x), x.shape[0])

    def _spikes(self, x: jax.Array, return_v: bool):
        """Everything but the activity record (see the class docstring). With ``batch_chunks = n > 1`` the part after
        the convolution (BN with the whole batch's statistics, pooling, attention, neuron loop) runs over n
        checkpointed chunks of the batch (:func:`masnn_jax.snn.chunking.map_batch_chunks`): same values and
        gradients as n = 1 (the BN statistics and their gradients still cover the whole batch)."""
        if self.batch_chunks == 1:
            return super()._spikes(x, return_v)
        z, mean, var = self._conv_bn_statistics(x)

        def chunk(zc):
            return self.fire(self._normalize_pool(zc, mean, var, zc.shape[0] // x.shape[1]), return_v=return_v)

        return chunking.map_batch_chunks(chunk, z, batch=x.shape[0], chunks=self.batch_chunks,
                                         data_shards=self.data_shards)


class DenseAttLIF(_SpikingLayer):
    """Linear (bias) -> BatchNorm1d over B·T -> TA (if the scheme has T) -> LIF, on ``(B, T, N_in)``.

    Args: as :class:`ConvAttLIF` (``placement`` decides only whether TA is followed by the official ReLU); only the temporal part of ``attention`` is used (the official code gives fully
    connected layers TA only, and only when the scheme contains 'T').
    Call:
      ``layer(x)`` with x ``(B, T, N_in)`` -> ``(B, T, N_out)``.
    Raises:
      ValueError: x not rank 3 or with ``N_in != in_features``.
    Source: ``MA_SNN/module/LIF_Module.py`` ``AttLIF``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        T: int,
        neuron,
        attention: str = "no",
        placement: str = "input",
        t_ratio: int = 5,
        bn_momentum: float = 0.9,
        checkpoint: bool = False,
        unroll: int = 1,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.in_features, self.out_features = in_features, out_features
        self.linear = nnx.Linear(
            in_features,
            out_features,
            use_bias=True,
            kernel_init=torch_default_init(in_features),
            bias_init=torch_default_init(in_features),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.bn = _batch_norm(out_features, bn_momentum, dtype, param_dtype, rngs)
        scheme = "TA" if "T" in attention else "no"
        self.attention = attention_lib.MultiDimensionalAttention(
            scheme, T, out_features, t_ratio=t_ratio, placement=placement, fc=True, rngs=rngs,
            param_dtype=param_dtype,
        )
        self.neuron = SpikingNeuron(neuron, checkpoint=checkpoint, unroll=unroll, param_dtype=param_dtype)
        self.record = "off"

    def preactivation(self, x: jax.Array) -> jax.Array:
        """Linear -> BN on the merged batch; ``(B, T, N_in)`` -> ``(B, T, N_out)``."""
        if x.ndim != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"DenseAttLIF expects (B, T, {self.in_features}) input, got shape {x.shape}")
        b, t = x.shape[:2]
        y = self.bn(self.linear(x.reshape(b * t, -1)))
        return y.reshape(b, t, -1)

