""":class:`ImageDataset`: a source of encoded images + a transform, random access by (index, epoch)."""

from __future__ import annotations

import logging

import numpy as np

from masnn_jax.data.images.transforms import ImageDecodeError, decode_image

__all__ = ["ImageDataset", "ON_CORRUPT"]

ON_CORRUPT = ("skip", "raise")
_log = logging.getLogger(__name__)
_MAX_SKIPS = 16


class ImageDataset:
    """Random-access image classification dataset: ``get(index, epoch) -> {'image', 'label'}``.

    The item is a pure function of (source, transform, ``seed``, ``epoch``, ``index``): its random decisions come
    from ``np.random.default_rng([seed, epoch, index])`` (the training transform spawns child streams from it).

    A corrupt image (undecodable, truncated) is, with ``on_corrupt='skip'`` (default), replaced by the next
    readable example (index + 1, + 2, ... with *its* own random decisions), logged as a warning naming the file and
    counted in ``corrupt_count`` (per process: grain workers count their own); with ``'raise'`` it raises
    :class:`ImageDecodeError` naming the file. Never silent. More than 16 corrupt files in a row raise.

    Args:
      source: an :class:`ImageFolderSource` / :class:`TfdsSource` (``record(i) -> (encoded, label, origin)``).
      transform: ``TrainTransform`` / ``EvalTransform`` (``t(pil_image, rng) -> (H, W, 3) float32``).
      name: dataset name. split: 'train' | 'test'. seed: augmentation seed. on_corrupt: 'skip' | 'raise'.

    Attributes:
      num_classes, classes, item_shape ``(H, W, 3)``, image_shape (same), labels (``(N,)`` int32 or None when the
      source does not list them without reading every record), corrupt_count.
    """

    def __init__(self, source, transform, *, name: str, split: str, seed: int = 0, on_corrupt: str = "skip"):
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f"config.data.on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
        self.source = source
        self.transform = transform
        self.name, self.split = name, split
        self.seed = int(seed)
        self.on_corrupt = on_corrupt
        self.corrupt_count = 0
        self.labels = getattr(source, "labels", None)

    @property
    def num_classes(self) -> int:
        """Number of classes (labels are ``0 .. num_classes - 1``)."""
        return self.source.num_classes

    @property
    def classes(self) -> list[str]:
        """Class names by label (ImageFolder: folder names; imagenet2012: WordNet ids)."""
        return list(self.source.classes)

    @property
    def item_shape(self) -> tuple[int, int, int]:
        """``(H, W, 3)``: shape of ``item['image']``."""
        return self.transform.output_shape

    image_shape = item_shape

    def __len__(self) -> int:
        return len(self.source)

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"item_shape={self.item_shape}, num_classes={self.num_classes})")

    def _check_index(self, index) -> int:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.name} {self.split} ({n} samples)")
        return int(index) % n

    def get(self, index: int, *, epoch: int = 0) -> dict:
        """Item ``{'image': (H, W, 3) float32 normalised, 'label': int32}`` of ``(index, epoch)``.

        Raises:
          ImageDecodeError: a corrupt image with ``on_corrupt='raise'`` (or 16 in a row), naming the file.
        """
        index = self._check_index(index)
        n = len(self)
        for k in range(min(n, _MAX_SKIPS + 1)):
            i = (index + k) % n
            data, label, origin = self.source.record(i)
            try:
                img = decode_image(data, origin)
            except ImageDecodeError as e:
                if self.on_corrupt == "raise" or k == _MAX_SKIPS:
                    raise
                self.corrupt_count += 1
                _log.warning("skipping corrupt image (%d so far in this process), using example %d instead: %s",
                             self.corrupt_count, (i + 1) % n, e)
                continue
            rng = np.random.default_rng([self.seed, int(epoch), i])
            return {"image": self.transform(img, rng), "label": np.int32(label)}
        raise ImageDecodeError(f"{self.name} {self.split}: {_MAX_SKIPS + 1} corrupt images in a row from {index}")

    def __getitem__(self, index: int) -> dict:
        """``get(index, epoch=0)``."""
        return self.get(index, epoch=0)
