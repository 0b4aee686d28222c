"""Per-process sharded batching for images: the shared grain loader (:func:`masnn_jax.data.loader.make_loader`) with
``process_index`` / ``process_count`` / ``pad_remainder`` does it for every data kind.

With ``P`` processes and a *global* batch ``B`` (``B % P == 0``), process ``p`` reads only rows
``[p*B/P, (p+1)*B/P)`` of every global batch of the single-process order, so each example is read by exactly one
process once per epoch, the global batches do not depend on the process count, and ``start_batch`` (global
batches) resumes the exact order on any process count. ``pad_remainder=True`` pads the last global batch and adds
``'mask'``.
"""

from __future__ import annotations

from masnn_jax.data.loader import Loader, _ProcessRows, make_loader

__all__ = ["make_sharded_loader", "ShardedLoader"]

#: The loader class :func:`make_sharded_loader` returns (the shared one).
ShardedLoader = Loader
_ = _ProcessRows  # the row mapping, re-exported for tests of this module


def make_sharded_loader(dataset, **kwargs) -> Loader:
    """:func:`masnn_jax.data.loader.make_loader` (same arguments, same errors): this process's local batches of every
    global batch (see the module docstring)."""
    return make_loader(dataset, **kwargs)
