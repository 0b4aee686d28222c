"""Data parallelism: one ``('data',)`` mesh over every device of every process; batches sharded over B.

Parameters and optimiser state are replicated. The mesh axis is ``AxisType.Auto``, so the compiler propagates the
batch sharding through the models' ``(B, T) -> (B·T)`` reshapes and computes BatchNorm statistics over the *global*
batch (the official SyncBN): a step on N devices equals a step on one.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["make_mesh", "batch_sharding", "replicated", "shard_batch", "shard_local_batch"]


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D ``('data',)`` mesh over ``devices`` (default: all devices of all processes), axis type Auto."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.sharding.Mesh(np.asarray(devices), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Arrays sharded over their leading (batch) axis along ``'data'``."""
    return NamedSharding(mesh, P("data"))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Arrays replicated on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def shard_batch(mesh: jax.sharding.Mesh, array) -> jax.Array:
    """A *global* batch (every process holds the same one: the order is a function of seed and epoch) -> a
    ``jax.Array`` sharded over ``'data'``; each process contributes its own contiguous slice of rows.

    Raises:
      ValueError: a batch not divisible by the process count.
    """
    array = np.asarray(array)
    n_proc = jax.process_count()
    if n_proc > 1:
        if array.shape[0] % n_proc:
            raise ValueError(f"batch of {array.shape[0]} does not split over {n_proc} processes")
        per = array.shape[0] // n_proc
        array = array[jax.process_index() * per:(jax.process_index() + 1) * per]
    return jax.make_array_from_process_local_data(batch_sharding(mesh), array)


def shard_local_batch(mesh: jax.sharding.Mesh, local) -> jax.Array:
    """This process's rows of a global batch -> the global ``jax.Array`` sharded over ``'data'``.

    ``local`` is what ``make_loader(..., process_index=jax.process_index(), process_count=jax.process_count())``
    yields: rows ``[p*Bl, (p+1)*Bl)`` of the global batch of ``Bl * process_count`` rows (a process's devices sit at
    consecutive positions of the ``('data',)`` mesh, as in ``jax.devices()`` order). On one process this equals
    :func:`shard_batch`.

    Raises:
      ValueError: a local batch whose rows do not split over this process's devices (from JAX).
    """
    local = np.asarray(local)
    global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
    return jax.make_array_from_process_local_data(batch_sharding(mesh), local, global_shape)
