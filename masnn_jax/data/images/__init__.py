"""Image data for masnn-jax: ImageNet (tfds ArrayRecord or ImageFolder), any ImageFolder, and an offline digits set.

Items are ``{'image': (H, W, 3) float32 normalised, 'label': int32}``; see :mod:`.config` for the ``config.data``
keys, :mod:`.transforms` / :mod:`.autoaugment` for the official recipe's transforms (RandomResizedCrop +
torchvision's ImageNet AutoAugment for training; Resize 256 + CentreCrop 224, or 329 + 288, for evaluation) and
:mod:`.loader` for per-process sharded batching. Reading never imports TensorFlow.

Datasets (``config.data.name``):

* ``imagenet2012`` — tfds ``imagenet2012`` prepared as ArrayRecord, read with ``tfds.data_source`` + grain
  (``config.data.root`` = the tfds data_dir). With ``source='folder'`` it reads an ImageFolder instead
  (``<root>/train/<wnid>/*.JPEG``, ``<root>/val/<wnid>/*.JPEG``), as the official code does.
* ``imagefolder`` — any ImageFolder root with ``train/`` and ``val/`` (classes: sorted folder names).
* ``digits_images`` — scikit-learn's 1,797 digits as 32x32 RGB JPEGs (:mod:`.digits`), as an ImageFolder or
  (``source='tfds'``) its ArrayRecord copy; ``root=None`` writes it once under ``~/.cache/masnn_jax``.

Preparing ImageNet (once; TensorFlow is needed for this step only, reading needs none):

1. Download ``ILSVRC2012_img_train.tar`` (138 GB) and ``ILSVRC2012_img_val.tar`` (6.3 GB) from
   https://image-net.org/download-images into a manual dir ``M`` (nothing here downloads them).
2. In an environment with TensorFlow (e.g. ``pip install tensorflow-cpu tensorflow-datasets array_record``), run::

       tfds build imagenet2012 --manual_dir=M --data_dir=D --file_format=array_record

   or ``python -m masnn_jax.data.images prepare-imagenet --manual_dir M --data_dir D`` (checks the tars first).
   It writes ``D/imagenet2012/5.1.0/`` (dataset_info.json, features.json,
   ``imagenet2012-{train,validation}.array_record-NNNNN-of-01024`` ...), about 150 GB; it takes hours.
3. Train with ``--config.data.name=imagenet2012 --config.data.root=D``.

A missing, interrupted (``5.1.0.incomplete*``) or TFRecord-only preparation, a manual dir given as root, or a
missing tar gives one error naming the path and what belongs there. The ImageFolder alternative needs the tars
extracted into ``train/<wnid>/`` and ``val/<wnid>/`` (the val images sorted into class folders).
"""

from __future__ import annotations

from masnn_jax.data.images.autoaugment import IMAGENET_POLICY, AutoAugmentDecision, apply_op, auto_augment
from masnn_jax.data.images.config import DATASET_DEFAULTS, DATASET_NAMES, build, default_data_config
from masnn_jax.data.images.dataset import ImageDataset
from masnn_jax.data.images.digits import default_digits_root, write_digits
from masnn_jax.data.images.loader import ShardedLoader, make_sharded_loader
from masnn_jax.data.images.sources import (
    DatasetNotFoundError,
    ImageFolderSource,
    TfdsSource,
    check_manual_dir,
    write_tfds_array_record,
)
from masnn_jax.data.images.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    ImageDecodeError,
    TrainTransform,
    decode_image,
)

__all__ = [
    "DATASET_NAMES", "DATASET_DEFAULTS", "default_data_config", "build", "ImageDataset", "ImageFolderSource",
    "TfdsSource", "DatasetNotFoundError", "ImageDecodeError", "TrainTransform", "EvalTransform", "decode_image",
    "IMAGENET_MEAN", "IMAGENET_STD", "IMAGENET_POLICY", "AutoAugmentDecision", "apply_op", "auto_augment",
    "write_digits", "default_digits_root", "write_tfds_array_record", "check_manual_dir", "ShardedLoader",
    "make_sharded_loader",
]
