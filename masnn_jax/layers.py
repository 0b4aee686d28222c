"""Spiking layers of the MA-SNN event networks: conv/dense -> BatchNorm -> pooling -> attention -> neuron loop.

Layout is batch-major and channels-last: conv layers take and return ``(B, T, H, W, C)``, dense layers ``(B, T, N)``.
Conv, BatchNorm, pooling and input-placed attention run on the merged ``(B·T, ...)`` batch at once; only the neuron
recurrence (and membrane-placed channel/spatial attention) runs inside ``jax.lax.scan``. No module that updates
BatchNorm statistics ever runs inside the scan.

Source: ``MA_SNN/module/LIF_Module.py`` (``ConvAttLIF``, ``AttLIF``) of the official code.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from masnn_jax import attention as attention_lib
from masnn_jax import neurons
from masnn_jax import ops
from masnn_jax import surrogate as surrogate_lib

__all__ = [
    "torch_default_init", "neuron_from_config", "BatchNorm", "batch_moments", "effective_batch_chunks", "SpikingNeuron",
    "ConvAttLIF", "DenseAttLIF",
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
        keyword arguments (see :mod:`masnn_jax.neurons`; e.g. ``v_th``, ``alpha``, ``beta``, ``mode_select``,
        ``tr_model`` for 'masnn_official'; ``tau``, ``decay_input``, ``v_threshold``, ``v_reset``, ``detach_reset``
        for 'lif'; ``init_tau`` ... for 'plif').
      surrogate_cfg: mapping with ``name`` and the surrogate's hyper-parameter (``alpha`` or ``width``), or None for
        the preset's own surrogate.
    Returns:
      :class:`~masnn_jax.neurons.LIFParams`, or for 'plif' the keyword dict for :class:`~masnn_jax.neurons.PLIF`.
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


class BatchNorm(nnx.Module):
    """Batch normalisation over every axis but the last, with PyTorch's ``nn.BatchNorm{1,2}d`` semantics.

    Training mode (``use_running_average=False``): normalises with the batch mean and the *biased* batch variance,
    and updates ``mean <- momentum·mean + (1 − momentum)·batch_mean`` and ``var <- momentum·var + (1 −
    momentum)·batch_var·n/(n − 1)`` with the *unbiased* variance, as PyTorch does (``n`` values per channel);
    ``nnx.BatchNorm`` would use the biased one there. Eval mode normalises with the running statistics.
    ``model.train()`` / ``model.eval()`` switch ``use_running_average``.

    Args:
      features: channels (last axis). momentum: Flax convention (0.9 = PyTorch's momentum 0.1). epsilon: 1e-5.
      dtype: computation dtype (None: the input's, promoted with the parameters'); param_dtype: dtype of ``scale``,
        ``bias`` and of the running statistics ``mean`` and ``var``.
    Call: ``bn(x)``, ``x`` of shape ``(N, ..., features)`` -> same shape.
    Source: ``torch.nn.BatchNorm2d`` as used after every conv / linear layer of ``MA_SNN/module/LIF_Module.py``.
    """

    def __init__(self, features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, dtype=None,
                 param_dtype=jnp.float32, use_running_average: bool = False, rngs: nnx.Rngs | None = None):
        self.scale = nnx.Param(jnp.ones((features,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((features,), param_dtype))
        self.mean = nnx.BatchStat(jnp.zeros((features,), param_dtype))
        self.var = nnx.BatchStat(jnp.ones((features,), param_dtype))
        self.momentum, self.epsilon, self.dtype = momentum, epsilon, dtype
        self.use_running_average = use_running_average

    def statistics(self, x: jax.Array, moments: tuple[jax.Array, jax.Array] | None = None
                   ) -> tuple[jax.Array, jax.Array]:
        """The ``(mean, var)`` (each ``(features,)``, at least float32) that normalise ``x`` of shape
        ``(N, ..., features)``: the running statistics in eval mode; in training mode the batch mean and biased
        variance (``moments`` when given, already computed from ``x``, e.g. by :func:`masnn_jax.ops.conv_moments`),
        after updating the running statistics as described in the class docstring."""
        stat_dtype = self.stat_dtype(x)
        if self.use_running_average:
            return self.mean[...].astype(stat_dtype), self.var[...].astype(stat_dtype)
        mean, var = batch_moments(x, stat_dtype) if moments is None else moments
        n = x.size // x.shape[-1]
        m = self.momentum
        self.mean[...] = (m * self.mean[...] + (1 - m) * jax.lax.stop_gradient(mean)).astype(self.mean.dtype)
        unbiased = jax.lax.stop_gradient(var) * (n / max(n - 1, 1))
        self.var[...] = (m * self.var[...] + (1 - m) * unbiased).astype(self.var.dtype)
        return mean, var

    def normalize(self, x: jax.Array, mean: jax.Array, var: jax.Array) -> jax.Array:
        """``(x − mean) / sqrt(var + eps) · scale + bias`` for any ``x`` of shape ``(..., features)`` (a chunk of
        the batch that :meth:`statistics` saw, for example); returns the compute dtype. Updates nothing."""
        dtype = self._dtype(x)
        y = (x.astype(mean.dtype) - mean) * jax.lax.rsqrt(var + self.epsilon)
        y = y * self.scale[...].astype(mean.dtype) + self.bias[...].astype(mean.dtype)
        return y.astype(dtype)

    def _dtype(self, x: jax.Array):
        return self.dtype or jnp.promote_types(x.dtype, self.scale[...].dtype)

    def stat_dtype(self, x: jax.Array):
        """The dtype of the statistics for input ``x``: the compute dtype, at least float32 (bf16 compute)."""
        return jnp.promote_types(self._dtype(x), jnp.float32)

    def __call__(self, x: jax.Array) -> jax.Array:
        mean, var = self.statistics(x)
        return self.normalize(x, mean, var)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def batch_moments(x: jax.Array, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and biased variance of ``x`` ``(N, ..., C)`` over every axis but the last, computed in
    ``dtype``; returns two ``(C,)`` arrays.

    Same values and gradients as ``mean(x)``, ``mean((x − mean)²)`` written in ``jax.numpy``, but the backward pass
    keeps only ``x`` (in its own dtype) and the mean, not a float32 copy of ``x − mean``: one activation-sized buffer
    less per BatchNorm in training. Gradient: ``dx = dmean/N + 2·dvar·(x − mean)/N``.
    """
    return _batch_moments_fwd(x, dtype)[0]


def _batch_moments_fwd(x, dtype):
    xs = x.astype(dtype)
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(xs, axis=axes)
    var = jnp.mean(jnp.square(xs - mean), axis=axes)
    return (mean, var), (x, mean)


def _batch_moments_bwd(dtype, res, cts):
    x, mean = res
    dmean, dvar = cts
    n = x.size // x.shape[-1]
    dx = (dmean + 2.0 * dvar * (x.astype(dtype) - mean)) / n
    return (dx.astype(x.dtype),)


batch_moments.defvjp(_batch_moments_fwd, _batch_moments_bwd)


def _batch_norm(features: int, momentum: float, dtype, param_dtype, rngs: nnx.Rngs) -> BatchNorm:
    """The layers' BatchNorm (eps 1e-5, PyTorch's running-variance update)."""
    return BatchNorm(features, momentum=momentum, epsilon=1e-5, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def effective_batch_chunks(batch_chunks: int, per_device_batch: int) -> int:
    """The number of chunks a conv layer really runs for ``config.model.batch_chunks`` on a per-device batch of
    ``per_device_batch`` samples: ``gcd(batch_chunks, per_device_batch)`` (chunks must split the batch evenly)."""
    return math.gcd(int(batch_chunks), int(per_device_batch))


def _sow_activity(layer: nnx.Module, out: jax.Array) -> None:
    """Stores ``[[spike count, B-less element count]]`` per sample, shape ``(B, 2)`` float32, as the
    ``nnx.Intermediate`` ``activity`` (read by :func:`masnn_jax.training.network_firing_rate`)."""
    per_sample = out.reshape(out.shape[0], -1).astype(jnp.float32)
    count = jnp.full((out.shape[0],), per_sample.shape[1], jnp.float32)
    layer.sow(nnx.Intermediate, "activity", jnp.stack([per_sample.sum(1), count], axis=1))


class SpikingNeuron(nnx.Module):
    """A neuron population run over time: fixed :class:`~masnn_jax.neurons.LIFParams`, or a learnable PLIF.

    Args:
      params: ``LIFParams`` (static), or a dict of :class:`~masnn_jax.neurons.PLIF` keyword arguments.
      checkpoint, unroll: passed to :func:`~masnn_jax.neurons.lif`.
    Call:
      ``neuron(x, transform=None, return_v=False)``, ``x`` of shape ``(B, T, ...)``; returns spikes (or LIAF
      values) of the same shape and dtype, and the membrane trace when ``return_v``.
    """

    def __init__(self, params, *, checkpoint: bool = False, unroll: int = 1, param_dtype=jnp.float32):
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
            x, self.lif_params(), transform=transform, return_v=return_v, checkpoint=self.checkpoint, unroll=self.unroll
        )


class _SpikingLayer(nnx.Module):
    """What ConvAttLIF and DenseAttLIF share: pre-activation -> attention -> neuron scan -> optional activity sow.

    Subclasses set ``attention`` (:class:`~masnn_jax.attention.MultiDimensionalAttention`), ``neuron``
    (:class:`SpikingNeuron`) and ``record``, and define ``preactivation``. In 'input' placement
    ``attention.input_transform`` is the whole official block (ReLU included); in 'membrane' placement it is TA only
    and CA/SA run on the membrane potential inside the scan.
    """

    def __call__(self, x: jax.Array, *, return_v: bool = False):
        out = self._spikes(x, return_v)
        if self.record:
            _sow_activity(self, out[0] if return_v else out)
        return out

    def _spikes(self, x: jax.Array, return_v: bool):
        return self.fire(self.preactivation(x), return_v=return_v)

    def fire(self, y: jax.Array, *, return_v: bool = False):
        """Attention and the neuron loop on the pre-activation ``y`` ``(B, T, ...)``: spikes (and the membrane trace
        when ``return_v``). Updates no state, so it may run inside ``jax.lax.map``/``jax.checkpoint``."""
        y = self.attention.input_transform(y)
        transform = self.attention.membrane_transform if self.attention.has_membrane_stage else None
        return self.neuron(y, transform=transform, return_v=return_v)


class ConvAttLIF(_SpikingLayer):
    """Conv 3×3 (bias) -> BatchNorm over B·T -> AvgPool(k) -> attention -> LIF, on ``(B, T, H, W, C_in)``.

    Args:
      in_features, out_features: channels.
      T: time steps (the temporal attention's MLP is sized by it).
      neuron: ``LIFParams`` or PLIF kwargs (see :func:`neuron_from_config`).
      kernel_size, padding: convolution geometry (official: 3, 1).
      pool: average-pooling kernel and stride (1 = none).
      attention: scheme in :data:`masnn_jax.attention.SCHEMES`.
      placement: 'input' (official: attention on the whole pre-activation sequence, then ReLU) or 'membrane'
        (paper: TA on the input, CA and SA on the membrane potential of every step before firing).
      c_ratio, t_ratio, sa_kernel, channel_attention, spatial_attention: attention options.
      bn_momentum: running-statistics momentum in Flax's convention (0.9 = PyTorch's default 0.1).
      conv_impl: 'auto' | 'xla' | 'im2col', the convolution's implementation (:func:`masnn_jax.ops.conv`; the
        parameters are an ``nnx.Conv``'s either way). With 'im2col' in training mode the conv and the BN batch
        statistics run as one fused op (:func:`masnn_jax.ops.conv_moments`).
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
        batch_chunks: int = 1,
        binary_input: bool = False,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if not isinstance(batch_chunks, int) or isinstance(batch_chunks, bool) or batch_chunks < 1:
            raise ValueError(f"config.model.batch_chunks must be an integer >= 1, got {batch_chunks!r}")
        self.batch_chunks = batch_chunks
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
        self.record = False

    def _conv_bn_statistics(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Conv on the merged batch and the BN statistics of its output: ``(B, T, H, W, C_in)`` -> ``z`` ``(B·T, H,
        W, C_out)``, mean, var (running statistics updated in training mode). With the im2col conv in training mode
        one fused op (:func:`masnn_jax.ops.conv_moments`) computes both, so the backward pass keeps only ``z``."""
        if x.ndim != 5 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"ConvAttLIF expects (B, T, H, W, {self.in_features}) channels-last input, got shape {x.shape}"
            )
        b, t = x.shape[:2]
        x = x.reshape((b * t,) + x.shape[2:])
        conv = self.conv
        if self.conv_impl == "im2col" and not self.bn.use_running_average:
            x, kernel, bias = nnx.nn.dtypes.promote_dtype((x, conv.kernel[...], conv.bias[...]), dtype=conv.dtype)
            z, mean, var = ops.conv_moments(x, kernel, bias, (1, 1), tuple(map(tuple, conv.padding)),
                                            ops.DEFAULT_CHUNK_ELEMENTS, self.bn.stat_dtype(x), self.binary_input)
            return z, *self.bn.statistics(z, (mean, var))
        z = conv(x)
        return z, *self.bn.statistics(z)

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
        """Everything but the activity sow (see the class docstring). With ``batch_chunks = n > 1`` the part after the convolution (BN with the
        whole batch's statistics, pooling, attention, neuron loop) runs as a ``jax.lax.map`` over n chunks of the
        batch, each ``jax.checkpoint``-ed: the backward pass keeps only the conv output and recomputes one chunk at a
        time. Same values and gradients as n = 1 (the BN statistics and their gradients still cover the whole
        batch). With the batch sharded over ``data_shards`` devices (set by :class:`masnn_jax.training.Trainer`),
        every chunk takes ``B/(n·data_shards)`` samples from each device's share, so each device works on its own
        rows in every chunk. n is reduced to :func:`effective_batch_chunks` of the per-device batch."""
        b = x.shape[0]
        d = math.gcd(self.data_shards, b)
        per_shard = b // d
        n = effective_batch_chunks(self.batch_chunks, per_shard)
        if n == 1:
            return super()._spikes(x, return_v)
        z, mean, var = self._conv_bn_statistics(x)
        # (d, n, rows of one chunk of one shard, ...) -> chunk-major (n, d, ...); a plain reshape when d == 1 (XLA
        # copies on a swap even with a size-1 axis).
        if d == 1:
            zs = z.reshape((n, -1) + z.shape[1:])
        else:
            zs = jnp.swapaxes(z.reshape((d, n, -1) + z.shape[1:]), 0, 1)

        def chunk(zc):
            zc = zc.reshape((-1,) + z.shape[1:])
            return self.fire(self._normalize_pool(zc, mean, var, d * per_shard // n), return_v=return_v)

        outs = jax.lax.map(jax.checkpoint(chunk), zs)

        def unchunk(o):  # (n, d·B/(n·d), T, ...) -> (B, T, ...), samples back in batch order
            if d == 1:
                return o.reshape((b,) + o.shape[2:])
            o = o.reshape((n, d, per_shard // n) + o.shape[2:])
            return jnp.swapaxes(o, 0, 1).reshape((b,) + o.shape[3:])

        return jax.tree.map(unchunk, outs)


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
        self.record = False

    def preactivation(self, x: jax.Array) -> jax.Array:
        """Linear -> BN on the merged batch; ``(B, T, N_in)`` -> ``(B, T, N_out)``."""
        if x.ndim != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"DenseAttLIF expects (B, T, {self.in_features}) input, got shape {x.shape}")
        b, t = x.shape[:2]
        y = self.bn(self.linear(x.reshape(b * t, -1)))
        return y.reshape(b, t, -1)

