"""Batch chunking: run the memory-bound part of a layer (BN normalisation, pooling, attention, the neuron loop) over
``n`` checkpointed chunks of the batch, so that the backward pass holds one chunk's intermediates at a time.

One helper for every block (:func:`map_batch_chunks`), one place that resolves ``config.model.batch_chunks``
(:func:`resolve_batch_chunks`: ``'auto'`` picks per backend) and one rule for a value that does not divide the
per-device batch (:func:`effective_batch_chunks`).

Measured (``BENCHMARKS.md``): on a 2-core CPU, 8 chunks made the Gesture train step faster (T = 16: 1.89 -> 1.63 s)
and cut its compiled temp memory 2.5× (T = 60: 6.98 -> 2.75 GB); on an H200 the same 8 chunks made it 2× slower
(T = 60, batch 64: 107.5 ms vs 54.6 ms with 1), so ``'auto'`` is 8 on CPU and 1 on GPU/TPU.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["AUTO_BATCH_CHUNKS", "resolve_batch_chunks", "effective_batch_chunks", "map_batch_chunks",
           "set_data_shards"]

#: What ``batch_chunks='auto'`` means on each backend (see the module docstring for the measurements).
AUTO_BATCH_CHUNKS = {"cpu": 8, "gpu": 1, "cuda": 1, "rocm": 1, "tpu": 1}


def resolve_batch_chunks(value: Any, platform: str | None = None) -> int:
    """``config.model.batch_chunks`` as an integer >= 1; ``'auto'`` (or None) gives :data:`AUTO_BATCH_CHUNKS` of
    ``platform`` (default: ``jax.default_backend()``).

    Raises:
      ValueError: anything but 'auto' or an integer >= 1 (names ``config.model.batch_chunks``).
    """
    if value is None or value == "auto":
        return AUTO_BATCH_CHUNKS.get(platform or jax.default_backend(), 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config.model.batch_chunks must be 'auto' or an integer >= 1, got {value!r}")
    return value


def effective_batch_chunks(batch_chunks: int, per_device_batch: int) -> int:
    """The number of chunks really run for ``batch_chunks`` on a per-device batch of ``per_device_batch`` samples:
    ``gcd(batch_chunks, per_device_batch)`` (chunks must split every device's share evenly)."""
    return math.gcd(int(batch_chunks), int(per_device_batch))


def map_batch_chunks(fn: Callable[[jax.Array], Any], z: jax.Array, *, batch: int, chunks: int,
                     data_shards: int = 1) -> Any:
    """``fn`` applied to ``z`` in ``chunks`` pieces along the leading axis, each piece ``jax.checkpoint``-ed, as a
    ``jax.lax.map``; returns what ``fn(z)`` would (a pytree of arrays whose leading axis is the batch).

    Args:
      fn: maps rows of ``b`` samples of ``z`` (leading axis ``b·k``) to a pytree whose leaves have leading axis ``b``.
        It must not update module state (it runs inside ``lax.map`` and ``jax.checkpoint``).
      z: ``(batch·k, ...)``, sample-major (``k`` rows per sample, e.g. k = T for a merged ``(B·T, ...)`` batch).
      batch: samples in ``z`` (B).
      chunks: requested chunks; reduced to :func:`effective_batch_chunks` of the per-shard batch. 1 calls ``fn(z)``.
      data_shards: devices the batch axis is sharded over; every chunk then takes ``B/(n·data_shards)`` samples of
        each device's share, so each device works on its own rows in every chunk.
    Same values and gradients as ``fn(z)`` up to float rounding; the backward pass recomputes one chunk at a time.
    """
    d = math.gcd(int(data_shards), batch)
    per_shard = batch // d
    n = effective_batch_chunks(chunks, per_shard)
    if n == 1:
        return fn(z)
    rows = z.shape[1:]
    # (d, n, rows of one chunk of one shard, ...) -> chunk-major (n, d, ...); a plain reshape when d == 1 (XLA
    # copies on a swap even with a size-1 axis).
    zs = z.reshape((n, -1) + rows) if d == 1 else jnp.swapaxes(z.reshape((d, n, -1) + rows), 0, 1)
    outs = jax.lax.map(jax.checkpoint(lambda zc: fn(zc.reshape((-1,) + rows))), zs)

    def unchunk(o):  # (n, d·B/(n·d), ...) -> (B, ...), samples back in batch order
        if d == 1:
            return o.reshape((batch,) + o.shape[2:])
        o = o.reshape((n, d, per_shard // n) + o.shape[2:])
        return jnp.swapaxes(o, 0, 1).reshape((batch,) + o.shape[3:])

    return jax.tree.map(unchunk, outs)


def set_data_shards(model: nnx.Module, shards: int) -> None:
    """Tells every module of ``model`` that chunks its batch (an attribute ``data_shards``) over how many devices
    the batch axis is sharded (see :func:`map_batch_chunks`). Changes no result, only which rows a chunk takes."""
    for _, module in nnx.iter_graph(model):
        if isinstance(module, nnx.Module) and hasattr(module, "data_shards"):
            module.data_shards = int(shards)
