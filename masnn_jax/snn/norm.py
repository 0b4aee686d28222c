"""Batch normalisation with PyTorch's semantics, and batch moments with a lean backward pass.

Source: ``torch.nn.BatchNorm{1,2,3}d`` as the official code uses them (after every conv / linear layer of
``MA_SNN/module/LIF_Module.py``; tdBN ``BatchNorm3d`` over N·T·H·W in ``Att_Res_SNN/models/resnet_2.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import errors as flax_errors
from flax import nnx

__all__ = ["BatchNorm", "batch_moments"]


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
        variance (``moments`` when given, already computed from ``x``, e.g. by :func:`masnn_jax.snn.ops.conv_moments`),
        after updating the running statistics as described in the class docstring."""
        stat_dtype = self.stat_dtype(x)
        if self.use_running_average:
            return self.mean[...].astype(stat_dtype), self.var[...].astype(stat_dtype)
        mean, var = batch_moments(x, stat_dtype) if moments is None else moments
        n = x.size // x.shape[-1]
        m = self.momentum
        new_mean = (m * self.mean[...] + (1 - m) * jax.lax.stop_gradient(mean)).astype(self.mean.dtype)
        unbiased = jax.lax.stop_gradient(var) * (n / max(n - 1, 1))
        new_var = (m * self.var[...] + (1 - m) * unbiased).astype(self.var.dtype)
        try:
            self.mean[...] = new_mean
            self.var[...] = new_var
        except flax_errors.TraceContextError:
            # The statistics were created at an outer trace level: a user's functional step that calls
            # ``nnx.merge(graphdef, params, rest)`` (no ``copy=True``) inside ``jax.grad`` inside ``jax.jit``. Bind
            # fresh BatchStats at this level instead of mutating the outer ones; ``nnx.state(model)`` then returns
            # them, as it returns updated statistics in every other pattern.
            self.mean = nnx.BatchStat(new_mean)
            self.var = nnx.BatchStat(new_var)
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
