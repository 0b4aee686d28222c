"""Batching with grain: a deterministic, resumable order per (seed, epoch).

``make_loader`` builds ``grain.MapDataset.source(view of the dataset at this epoch)`` ->
``.shuffle(seed derived from (seed, epoch))`` -> ``.batch`` -> ``[start_batch:]`` ->
``.to_iter_dataset`` (threads / prefetch) -> optional ``.mp_prefetch`` (worker processes).
The batch order of an epoch is a pure function of ``(seed, epoch)``, and the items themselves
of ``(dataset seed, epoch, index)``, so a run resumed at batch k of epoch e sees the same
batches as an uninterrupted one.

Several processes (``process_count`` P > 1): ``batch_size`` is the *global* batch B and process p
reads only rows ``[p*B/P, (p+1)*B/P)`` of every global batch of that same order, so each example
is read once per epoch by one process, and the processes' local batches stacked in process order
are exactly the one-process batches (``jax.make_array_from_process_local_data`` assembles them).
``pad_remainder`` pads the last global batch to B rows with zero items and adds ``'mask'``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Loader", "make_loader", "num_batches", "epoch_seed"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of an epoch: a 31-bit integer derived from ``SeedSequence([seed, epoch])``."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0] & 0x7FFFFFFF)


def num_batches(dataset, batch_size: int, drop_remainder: bool) -> int:
    """Batches per epoch: ``len // batch_size`` if ``drop_remainder`` else the ceiling.

    Raises:
      ValueError: ``batch_size`` not a positive integer.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(dataset)
    return n // batch_size if drop_remainder else math.ceil(n / batch_size)


class _EpochView:
    """Random-access view ``i -> dataset.get(i, epoch=epoch)`` (picklable for grain workers)."""

    def __init__(self, dataset, epoch: int):
        self.dataset = dataset
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if hasattr(self.dataset, "get"):
            return self.dataset.get(int(index), epoch=self.epoch)
        return self.dataset[int(index)]


class _ProcessRows:
    """Random-access view: local row j of process p -> global position ``b*B + p*Bl + r`` (``b, r = divmod(j,
    Bl)``) of the (shuffled) epoch order; positions past the end give a zero item with mask 0 (padding)."""

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


def _ensure_absl_flags_parsed() -> None:
    # grain's worker processes read absl flags; outside absl.app.run they are unparsed and
    # grain raises UnparsedFlagAccessError (it reads absl flags). Parse an empty command line then.
    try:
        from absl import flags

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
    except ImportError:  # pragma: no cover - absl comes with grain
        pass


class Loader:
    """Iterable of batches ``{'frames' | 'image': (B/P, *item_shape) float32, 'label': (B/P,) int32[, 'mask']}``.

    ``iter(loader)`` starts a fresh pass over the same (seed, epoch) order from ``start_batch``;
    ``len(loader)`` is the number of batches that pass yields (the same on every process).
    """

    def __init__(self, dataset, *, batch_size: int, shuffle: bool, seed: int, epoch: int,
                 drop_remainder: bool, start_batch: int, num_workers: int, prefetch: int,
                 num_threads: int, process_index: int = 0, process_count: int = 1,
                 pad_remainder: bool = False):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.drop_remainder = bool(drop_remainder)
        self.start_batch = int(start_batch)
        self.num_workers = int(num_workers)
        self.prefetch = int(prefetch)
        self.num_threads = int(num_threads)
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.pad_remainder = bool(pad_remainder)
        self.local_batch_size = self.batch_size // self.process_count
        self._total = num_batches(dataset, batch_size, drop_remainder)

    def __len__(self) -> int:
        return max(0, self._total - self.start_batch)

    def _grain_dataset(self):
        import grain

        ds = grain.MapDataset.source(_EpochView(self.dataset, self.epoch))
        if self.shuffle:
            ds = ds.shuffle(seed=epoch_seed(self.seed, self.epoch))
        if self.process_count > 1 or self.pad_remainder:
            n_rows = self._total * self.local_batch_size
            rows = _ProcessRows(ds, len(self.dataset), self.batch_size, self.process_index,
                                self.process_count, n_rows, with_mask=self.pad_remainder)
            ds = grain.MapDataset.source(rows).batch(self.local_batch_size, drop_remainder=False)
        else:
            ds = ds.batch(self.batch_size, drop_remainder=self.drop_remainder)
        if self.start_batch:
            ds = ds[self.start_batch:]
        it = ds.to_iter_dataset(
            grain.ReadOptions(num_threads=self.num_threads, prefetch_buffer_size=self.prefetch)
        )
        if self.num_workers > 0:
            _ensure_absl_flags_parsed()
            it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers,
                                                             per_worker_buffer_size=max(1, self.prefetch)))
        return it

    def __iter__(self):
        if len(self) == 0:
            return iter(())
        return iter(self._grain_dataset())


def make_loader(dataset, *, batch_size: int, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                drop_remainder: bool = False, start_batch: int = 0, num_workers: int = 0,
                prefetch: int = 2, num_threads: int = 0, process_index: int = 0, process_count: int = 1,
                pad_remainder: bool = False) -> Loader:
    """Builds the batch iterable for one epoch of ``dataset`` (an :class:`EventFrameDataset`).

    Args:
      dataset: random-access dataset with ``__len__`` and ``get(index, epoch=...)`` (or
        ``__getitem__``) returning ``{'frames': ndarray, 'label': int32}``.
      batch_size: samples per batch (B).
      shuffle: permute the samples with the seed ``epoch_seed(seed, epoch)`` (else index order).
      seed: shuffle seed (the dataset's own ``seed`` drives its random windows).
      epoch: epoch number: selects the permutation and the random training windows.
      drop_remainder: drop the last incomplete batch.
      start_batch: skip the first k batches of this epoch's order (resume); 0 <= k <= number of
        batches (k = number of batches gives an empty iterable).
      num_workers: grain worker processes (0 = in-process). Batches are identical either way.
      prefetch: batches buffered per process (``ReadOptions.prefetch_buffer_size``) and per worker.
      num_threads: grain reader threads per process (0 suits in-memory data such as the digits;
        a few threads help file-backed datasets).
      process_index, process_count: this process and the number of processes
        (``jax.process_index()``, ``jax.process_count()``); ``batch_size`` is then the global batch
        and each process yields its ``batch_size // process_count`` rows of every global batch.
      pad_remainder: pad the last global batch to ``batch_size`` rows with zero items and add
        ``'mask'`` (1.0 real, 0.0 padding) to every batch; required with ``drop_remainder=False``
        over several processes.

    Returns:
      a :class:`Loader`: iterating it yields ``{'frames': (B, ...) float32, 'label': (B,) int32}``
      NumPy batches; ``len()`` gives the number of batches.

    Raises:
      ValueError: a non-positive batch size, negative workers/prefetch/threads, or ``start_batch``
        outside ``[0, num_batches]`` (naming the argument); a bad process index/count, a batch
        not divisible by ``process_count``, or an unpadded remainder over several processes.
    """
    total = num_batches(dataset, batch_size, drop_remainder)
    for key, v in (("num_workers", num_workers), ("prefetch", prefetch), ("num_threads", num_threads),
                   ("start_batch", start_batch), ("epoch", epoch)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {v!r}")
    if start_batch > total:
        raise ValueError(f"start_batch={start_batch} is past the end of the epoch ({total} batches)")
    if isinstance(process_count, bool) or not isinstance(process_count, (int, np.integer)) or process_count < 1:
        raise ValueError(f"process_count must be a positive integer, got {process_count!r}")
    if (isinstance(process_index, bool) or not isinstance(process_index, (int, np.integer))
            or not 0 <= process_index < process_count):
        raise ValueError(f"process_index must be an integer in [0, {process_count}), got {process_index!r}")
    if batch_size % process_count:
        raise ValueError(f"batch_size={batch_size} (global) does not split over {process_count} processes")
    if process_count > 1 and not drop_remainder and not pad_remainder:
        raise ValueError("drop_remainder=False over several processes needs pad_remainder=True (the last "
                         "global batch would split unevenly)")
    return Loader(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                  drop_remainder=drop_remainder, start_batch=start_batch, num_workers=num_workers,
                  prefetch=prefetch, num_threads=num_threads, process_index=process_index,
                  process_count=process_count, pad_remainder=pad_remainder)
