"""Random-access sources of encoded images: an ImageFolder file list, and tfds ArrayRecord datasets.

A source has ``__len__``, ``num_classes``, ``classes`` and ``record(i) -> (encoded image, label, origin)`` where
``encoded image`` is bytes, a path, or (tfds mock data only) a decoded uint8 array, and ``origin`` names the file or
record for error messages. Sources are picklable and cheap to send to grain worker processes (the tfds reader is
reopened lazily in each process). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
from collections.abc import Sequence

import numpy as np

__all__ = ["IMG_EXTENSIONS", "DatasetNotFoundError", "ImageFolderSource", "TfdsSource", "IMAGEFOLDER_LAYOUT",
           "TFDS_LAYOUT", "IMAGENET_PREPARE", "find_classes", "check_manual_dir", "find_tfds_version_dir",
           "write_tfds_array_record", "MANUAL_TARS"]

#: torchvision's ``IMG_EXTENSIONS`` (matched case-insensitively, as ``has_file_allowed_extension`` does).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MANUAL_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")

IMAGEFOLDER_LAYOUT = (
    "ImageFolder layout: <root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG (any of "
    + ", ".join(IMG_EXTENSIONS) + ", any case); classes are the sub-folder names, sorted"
)
IMAGENET_PREPARE = (
    "prepare it once (needs TensorFlow for this step only, e.g. `pip install tensorflow-cpu` in a separate "
    "environment): put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in a manual dir M and run "
    "`tfds build imagenet2012 --manual_dir=M --data_dir=<root> --file_format=array_record` "
    "(or `python -m masnn_jax.data.images prepare-imagenet --manual_dir M --data_dir <root>`)"
)
TFDS_LAYOUT = (
    "tfds layout: <root>/<name>/<version>/ holding dataset_info.json, features.json and "
    "<name>-<split>.array_record-NNNNN-of-MMMMM shard files"
)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root/split is missing, half-prepared or holds no images; the message names the path and what
    belongs there."""


# ------------------------------------------------------------------------------------------------ ImageFolder


def find_classes(split_dir: str) -> list[str]:
    """Class names of an ImageFolder split: its sub-folders, sorted (torchvision ``find_classes``).

    Raises:
      DatasetNotFoundError: ``split_dir`` missing or without class folders.
    """
    if not os.path.isdir(split_dir):
        raise DatasetNotFoundError(f"{split_dir}: no such folder ({IMAGEFOLDER_LAYOUT})")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    if not classes:
        raise DatasetNotFoundError(f"{split_dir}: no class folders in it ({IMAGEFOLDER_LAYOUT})")
    return classes


class ImageFolderSource:
    """torchvision ``ImageFolder`` file list: ``<split_dir>/<class>/**/<file>`` with an image extension.

    Classes are the sorted sub-folder names (label = position); files are walked in sorted order per class
    (``os.walk`` following links, files sorted), as torchvision's ``make_dataset``. Paths are stored as one UTF-8
    blob + offsets (small to pickle for 1.28 M files).

    Args:
      split_dir: the split's folder (e.g. ``<root>/train``).
      classes: expected class names (e.g. the train split's, for val); None = this folder's.
    Raises:
      DatasetNotFoundError: missing folder, no class folders, a class folder without images (named), or class
        folders that differ from ``classes``.
    """

    def __init__(self, split_dir: str, classes: Sequence[str] | None = None):
        self.root = os.fspath(split_dir)
        found = find_classes(self.root)
        if classes is not None and list(classes) != found:
            missing = sorted(set(classes) - set(found))
            extra = sorted(set(found) - set(classes))
            raise DatasetNotFoundError(
                f"{self.root}: class folders differ from the training split's (missing {missing[:5]}, "
                f"extra {extra[:5]}; {IMAGEFOLDER_LAYOUT})")
        self.classes = found
        rel, labels = [], []
        for label, name in enumerate(found):
            class_dir = os.path.join(self.root, name)
            n0 = len(rel)
            for dirpath, _, fnames in sorted(os.walk(class_dir, followlinks=True)):
                for fname in sorted(fnames):
                    if fname.lower().endswith(IMG_EXTENSIONS):
                        rel.append(os.path.relpath(os.path.join(dirpath, fname), self.root))
                        labels.append(label)
            if len(rel) == n0:
                raise DatasetNotFoundError(
                    f"{class_dir}: class folder holds no image files (extensions {', '.join(IMG_EXTENSIONS)}, "
                    f"any case; {IMAGEFOLDER_LAYOUT})")
        encoded = [r.encode("utf-8") for r in rel]
        self._blob = b"".join(encoded)
        self._offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64)
        self.labels = np.asarray(labels, np.int32)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def path(self, index: int) -> str:
        """Absolute path of file ``index``."""
        rel = self._blob[self._offsets[index]:self._offsets[index + 1]].decode("utf-8")
        return os.path.join(self.root, rel)

    def record(self, index: int):
        """``(path, label, path)``: the file is decoded by the dataset."""
        p = self.path(index)
        return p, int(self.labels[index]), p


# ------------------------------------------------------------------------------------------------ tfds


_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
#: Datasets tfds has a builder for (opened with ``tfds.data_source``); others via ``builder_from_directory``.
_TFDS_REGISTERED = ("imagenet2012",)


def check_manual_dir(manual_dir: str) -> list[str]:
    """Paths of the ImageNet manual-download tars in ``manual_dir``.

    Raises:
      DatasetNotFoundError: folder missing, or a tar missing (names which and where they belong).
    """
    if not os.path.isdir(manual_dir):
        raise DatasetNotFoundError(f"{manual_dir}: no such manual dir (it must hold {' and '.join(MANUAL_TARS)})")
    missing = [t for t in MANUAL_TARS if not os.path.isfile(os.path.join(manual_dir, t))]
    if missing:
        raise DatasetNotFoundError(
            f"{manual_dir}: missing {', '.join(missing)} (the manual dir must hold {' and '.join(MANUAL_TARS)}, "
            "downloaded from https://image-net.org/download-images; nothing here can download them)")
    return [os.path.join(manual_dir, t) for t in MANUAL_TARS]


def find_tfds_version_dir(data_dir: str, name: str, split: str, version: str | None = None) -> str:
    """The prepared ``<data_dir>/<name>/<version>`` folder holding ArrayRecord shards of ``split``.

    Picks ``version`` or else the highest complete version. Checks, in order, for the mistakes one meets: no
    ``data_dir``; a manual dir given instead; nothing prepared; an interrupted preparation (only
    ``<version>.incomplete*`` folders); no ``dataset_info.json``; TFRecord instead of ArrayRecord; no shard files
    of the split.

    Raises:
      DatasetNotFoundError: with the path and what belongs there (and how to prepare ImageNet).
    """
    how = IMAGENET_PREPARE if name == "imagenet2012" else (
        "write it with `python -m masnn_jax.data.images write-digits <root>`" if name == "digits_images" else
        "prepare it with tfds (`--file_format=array_record`)")
    if not data_dir or not os.path.isdir(data_dir):
        raise DatasetNotFoundError(f"{data_dir}: no such tfds data_dir ({TFDS_LAYOUT}); {how}")
    if any(os.path.isfile(os.path.join(data_dir, t)) for t in MANUAL_TARS):
        raise DatasetNotFoundError(
            f"{data_dir} holds the ImageNet manual-download tars, not a prepared dataset: config.data.root must be "
            f"the tfds data_dir ({TFDS_LAYOUT}); {how}")
    ds_dir = os.path.join(data_dir, name)
    if not os.path.isdir(ds_dir):
        raise DatasetNotFoundError(f"{ds_dir}: no prepared {name} dataset ({TFDS_LAYOUT}); {how}")
    entries = sorted(os.listdir(ds_dir))
    versions = [e for e in entries if _VERSION_RE.match(e) and os.path.isfile(os.path.join(ds_dir, e,
                                                                                              "dataset_info.json"))]
    if version is not None:
        versions = [v for v in versions if v == version]
    if not versions:
        incomplete = [e for e in entries if "incomplete" in e]
        if incomplete:
            raise DatasetNotFoundError(
                f"{ds_dir}: preparation was interrupted (only {incomplete[:3]}); delete them and prepare again; {how}")
        raise DatasetNotFoundError(
            f"{ds_dir}: no complete version folder with dataset_info.json"
            f"{' for version ' + version if version else ''} (found {entries[:5]}); {how}")
    version_dir = os.path.join(ds_dir, max(versions, key=lambda v: tuple(int(x) for x in v.split("."))))
    shards = glob.glob(os.path.join(version_dir, f"{name}-{split}.array_record-*"))
    if not shards:
        if glob.glob(os.path.join(version_dir, f"{name}-{split}.tfrecord-*")):
            raise DatasetNotFoundError(
                f"{version_dir}: split {split!r} was prepared as TFRecord; reading without TensorFlow needs "
                f"ArrayRecord: prepare again with --file_format=array_record ({TFDS_LAYOUT})")
        raise DatasetNotFoundError(
            f"{version_dir}: no ArrayRecord shards {name}-{split}.array_record-* (half-prepared, or the split "
            f"was never prepared; {TFDS_LAYOUT}); {how}")
    try:
        with open(os.path.join(version_dir, "dataset_info.json")) as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetNotFoundError(f"{version_dir}/dataset_info.json: unreadable ({e}); {how}") from e
    declared = {s.get("name"): s for s in info.get("splits", [])}
    if split in declared:
        n_shards = len(declared[split].get("shardLengths", [])) or None
        if n_shards is not None and len(shards) < n_shards:
            raise DatasetNotFoundError(
                f"{version_dir}: split {split!r} has {len(shards)} of its {n_shards} ArrayRecord shards "
                f"(half-prepared or partly copied); {how}")
    return version_dir


class TfdsSource:
    """A split of a tfds dataset stored as ArrayRecord, read with ``tfds.data_source`` (no TensorFlow).

    Registered builders (``imagenet2012``) are opened with ``tfds.data_source(name:version, split=...,
    data_dir=..., builder_kwargs={'file_format': 'array_record'}, download=False)``; others (the digits copy) with
    ``tfds.builder_from_directory(version_dir).as_data_source(split)``. The image feature is not decoded by tfds
    (``SkipDecoding``): records give JPEG bytes that the dataset decodes itself.

    Args:
      data_dir: tfds data_dir (holding ``<name>/<version>/``). name: dataset name. split: tfds split name.
      version: version folder; None = highest prepared. skip_decoding: pass ``SkipDecoding`` for the image
        (False only for ``tfds.testing.mock_data``, whose random images arrive as uint8 arrays).
      check_files: check the on-disk layout first (False under ``mock_data``).
    Raises:
      DatasetNotFoundError: missing / half-prepared / TFRecord-only dataset (see :func:`find_tfds_version_dir`).
    """

    def __init__(self, data_dir: str | None, name: str, split: str, *, version: str | None = None,
                 skip_decoding: bool = True, check_files: bool = True):
        self.data_dir, self.name, self.split = data_dir, name, split
        self.skip_decoding = bool(skip_decoding)
        self.version_dir = find_tfds_version_dir(data_dir, name, split, version) if check_files else None
        self.version = os.path.basename(self.version_dir) if self.version_dir else version
        self._ds = None
        ds = self._source()
        self._len = len(ds)
        label = ds.dataset_info.features["label"]
        self.classes = list(label.names)
        if self._len == 0:
            raise DatasetNotFoundError(f"{self.version_dir or data_dir}: split {split!r} of {name} is empty")

    def _source(self):
        if self._ds is None:
            import tensorflow_datasets as tfds

            decoders = {"image": tfds.decode.SkipDecoding()} if self.skip_decoding else None
            try:
                if self.name in _TFDS_REGISTERED or self.version_dir is None:
                    full = f"{self.name}:{self.version}" if self.version else self.name
                    self._ds = tfds.data_source(full, split=self.split, data_dir=self.data_dir, download=False,
                                                decoders=decoders, builder_kwargs={"file_format": "array_record"})
                else:
                    builder = tfds.builder_from_directory(self.version_dir)
                    self._ds = builder.as_data_source(split=self.split, decoders=decoders)
            except (KeyError, ValueError, OSError, AssertionError) as e:
                raise DatasetNotFoundError(
                    f"{self.version_dir or self.data_dir}: tfds cannot open split {self.split!r} of {self.name} "
                    f"({type(e).__name__}: {e}); {TFDS_LAYOUT}") from e
        return self._ds

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_ds"] = None  # reopened lazily in each (worker) process
        return state

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def __len__(self) -> int:
        return self._len

    def record(self, index: int):
        """``(JPEG bytes or uint8 array, label, origin)`` of record ``index``; origin names the file and record."""
        ex = self._source()[int(index)]
        file_name = ex.get("file_name", b"")
        if isinstance(file_name, bytes):
            file_name = file_name.decode("utf-8", "replace")
        where = self.version_dir or self.data_dir
        origin = f"{where} {self.name}/{self.split} record {index}" + (f" ({file_name})" if file_name else "")
        return ex["image"], int(ex["label"]), origin


def write_tfds_array_record(version_dir: str, name: str, splits: dict, class_names: Sequence[str],
                            *, description: str = "") -> None:
    """Writes a tfds-readable ArrayRecord dataset without TensorFlow (the ``imagenet2012`` feature layout).

    Records are ``tf.train.Example`` protos built by tfds's own ``FeaturesDict.serialize_example`` (tfds ships the
    proto classes): ``image`` (JPEG bytes, ``Image(encoding_format='jpeg')``), ``label`` (``ClassLabel``) and
    ``file_name`` (``Text``); one shard per split named ``<name>-<split>.array_record-00000-of-00001``; the metadata
    (dataset_info.json, features.json, label names) by ``tfds.folder_dataset.write_metadata``.

    Args:
      version_dir: ``<data_dir>/<name>/<version>`` (created).
      name: dataset name. splits: ``{split: [(jpeg bytes, label, file name), ...]}`` in record order.
      class_names: label names.
    """
    import tensorflow_datasets as tfds
    from array_record.python import array_record_module

    os.makedirs(version_dir, exist_ok=True)
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(names=list(class_names)),
        "file_name": tfds.features.Text(),
    })
    infos = []
    for split, records in splits.items():
        path = os.path.join(version_dir, f"{name}-{split}.array_record-00000-of-00001")
        writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
        n_bytes = 0
        for jpeg, label, file_name in records:
            data = features.serialize_example({"image": io.BytesIO(jpeg), "label": int(label),
                                               "file_name": file_name})
            n_bytes += len(data)
            writer.write(data)
        writer.close()
        infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[len(records)], num_bytes=n_bytes))
    tfds.folder_dataset.write_metadata(data_dir=version_dir, features=features, split_infos=infos,
                                       check_data=False, description=description)
