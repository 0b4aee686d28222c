"""Per-process sharded batching over the shared grain loader's order (:mod:`masnn_jax.data.loader`).

With ``P`` processes and a *global* batch ``B`` (``B % P == 0``), process ``p`` reads only rows
``[p*B/P, (p+1)*B/P)`` of every global batch of the single-process order (``shuffle(epoch_seed(seed, epoch))``).
So:

* each example is read by exactly one process once per epoch (``drop_remainder=True`` drops the same tail on
  every process count);
* stacking the processes' local batches in process order gives exactly the batch ``make_loader`` yields on one
  process: training on N processes sees the same global batches as on one (no ``ShardByJaxProcess``, whose
  per-process shuffles would change the global batches with the process count);
* ``start_batch`` counts global batches, so a resumed run continues the exact order on any process count.

``pad_remainder=True`` (evaluation, ``drop_remainder=False``) pads the last global batch to ``B`` rows with zero
items and adds ``'mask'`` (1.0 real, 0.0 padding) to every batch, so every process yields the same number of
equally shaped local batches. The local batches go to ``jax.make_array_from_process_local_data`` (see the report /
``masnn_jax.train.mesh``) to form the global ``jax.Array``.
"""

from __future__ import annotations

import numpy as np

from masnn_jax.data.loader import Loader, _EpochView, _ensure_absl_flags_parsed, epoch_seed, make_loader

__all__ = ["ShardedLoader", "make_sharded_loader"]


class _ProcessRows:
    """Random-access view: local row j of process p -> global position ``b*B + p*Bl + r`` (``b, r = divmod(j, Bl)``)
    of the (shuffled) epoch order; positions past the end give a zero item with mask 0 (padding)."""

    def __init__(self, ordered, n: int, batch_size: int, process_index: int, process_count: int, n_rows: int,
                 with_mask: bool):
        self.ordered = ordered
        self.n, self.batch_size = int(n), int(batch_size)
        self.local = self.batch_size // int(process_count)
        self.p = int(process_index)
        self.n_rows = int(n_rows)
        self.with_mask = bool(with_mask)
        self._pad = None

    def __len__(self) -> int:
        return self.n_rows

    def global_position(self, j: int) -> int:
        b, r = divmod(int(j), self.local)
        return b * self.batch_size + self.p * self.local + r

    def __getitem__(self, j: int) -> dict:
        pos = self.global_position(j)
        if pos < self.n:
            item = dict(self.ordered[pos])
            if self.with_mask:
                item["mask"] = np.float32(1.0)
            return item
        if self._pad is None:
            self._pad = {k: np.zeros_like(np.asarray(v)) for k, v in self.ordered[0].items()}
            self._pad["mask"] = np.float32(0.0)
        return dict(self._pad)


class ShardedLoader(Loader):
    """:class:`masnn_jax.data.loader.Loader` reading only this process's rows of each global batch.

    Iterating yields local batches ``{'image' | 'frames': (B/P, ...) float32, 'label': (B/P,) int32[, 'mask']}``;
    ``len()`` is the number of (global = local) batches left from ``start_batch``.
    """

    def __init__(self, dataset, *, process_index: int, process_count: int, pad_remainder: bool, **kwargs):
        super().__init__(dataset, **kwargs)
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.pad_remainder = bool(pad_remainder)
        self.local_batch_size = self.batch_size // self.process_count

    def _grain_dataset(self):
        import grain

        ordered = grain.MapDataset.source(_EpochView(self.dataset, self.epoch))
        if self.shuffle:
            ordered = ordered.shuffle(seed=epoch_seed(self.seed, self.epoch))
        n = len(self.dataset)
        if self.drop_remainder or self.pad_remainder:
            n_rows = self._total * self.local_batch_size
        else:  # one process, last batch short: the plain loader's batches
            n_rows = n
        rows = _ProcessRows(ordered, n, self.batch_size, self.process_index, self.process_count, n_rows,
                            with_mask=self.pad_remainder)
        ds = grain.MapDataset.source(rows).batch(self.local_batch_size, drop_remainder=False)
        if self.start_batch:
            ds = ds[self.start_batch:]
        it = ds.to_iter_dataset(grain.ReadOptions(num_threads=self.num_threads,
                                                  prefetch_buffer_size=self.prefetch))
        if self.num_workers > 0:
            _ensure_absl_flags_parsed()
            it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers,
                                                             per_worker_buffer_size=max(1, self.prefetch)))
        return it


def make_sharded_loader(dataset, *, batch_size: int, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                        drop_remainder: bool = False, start_batch: int = 0, num_workers: int = 0,
                        prefetch: int = 2, num_threads: int = 0, process_index: int = 0, process_count: int = 1,
                        pad_remainder: bool = False) -> ShardedLoader:
    """:func:`masnn_jax.data.make_loader` for process ``process_index`` of ``process_count`` (see module doc).

    Args:
      batch_size: the *global* batch B (divisible by ``process_count``); each process yields ``B / P`` rows.
      process_index, process_count: this process and the number of processes (``jax.process_index()``,
        ``jax.process_count()``).
      pad_remainder: pad the last batch to B rows and add ``'mask'`` (needed with ``drop_remainder=False`` on
        more than one process).
      the rest: as :func:`masnn_jax.data.make_loader`.
    Raises:
      ValueError: as ``make_loader``; bad process index/count, B not divisible by P, or an unpadded remainder
        over several processes.
    """
    for key, v in (("process_count", process_count), ("process_index", process_index)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (1 if key == "process_count" else 0):
            raise ValueError(f"{key} must be a {'positive' if key == 'process_count' else 'non-negative'} "
                             f"integer, got {v!r}")
    if process_index >= process_count:
        raise ValueError(f"process_index={process_index} must be < process_count={process_count}")
    plain = make_loader(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                        drop_remainder=drop_remainder, start_batch=start_batch, num_workers=num_workers,
                        prefetch=prefetch, num_threads=num_threads)  # validates the shared arguments
    if batch_size % process_count:
        raise ValueError(f"batch_size={batch_size} (global) does not split over {process_count} processes")
    if process_count > 1 and not drop_remainder and not pad_remainder:
        raise ValueError("drop_remainder=False over several processes needs pad_remainder=True (the last global "
                         "batch would split unevenly)")
    return ShardedLoader(dataset, process_index=process_index, process_count=process_count,
                         pad_remainder=pad_remainder, batch_size=plain.batch_size, shuffle=plain.shuffle,
                         seed=plain.seed, epoch=plain.epoch, drop_remainder=plain.drop_remainder,
                         start_batch=plain.start_batch, num_workers=plain.num_workers, prefetch=plain.prefetch,
                         num_threads=plain.num_threads)
