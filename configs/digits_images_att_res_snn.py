"""A small Att-Res-SNN (CSA, T = 1) on real JPEG images that install offline: scikit-learn's 1,797 digits written as
32×32 RGB JPEG files (``python -m masnn_jax.data.images write-digits``; done automatically under
``~/.cache/masnn_jax`` when ``config.data.root`` is unset) and read through the ImageNet pipeline (grain, the
official transforms at 32 px). The official Att-Res-SNN block and recipe (SGD momentum 0.9, coupled weight decay,
label smoothing 0.1, per-epoch cosine) at reduced widths (16/32/64/64, one block per stage).

    python train.py --config=configs/digits_images_att_res_snn.py
"""

from __future__ import annotations

import ml_collections

from masnn_jax.config import train_defaults
from masnn_jax.data import default_data_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.model = ml_collections.ConfigDict(dict(
        name="att_res_snn", blocks=(1, 1, 1, 1), widths=(16, 32, 64, 64), T=1, num_classes=10,
        input_shape=(32, 32, 3), attention="CSA", residual="att_res_1", placement="official", c_ratio=4,
        dropout=0.2, conv_impl="auto", scan_blocks=True,
    ))
    config.model.dtype = ml_collections.FieldReference(None, field_type=str)
    config.data = default_data_config("digits_images")
    config.train = train_defaults(
        optimizer="sgd", momentum=0.9, weight_decay=1e-5, learning_rate=0.1, batch_size=64, eval_batch_size=120,
        schedule="torch_cosine", num_epochs=8, loss="cross_entropy", label_smoothing=0.1,
    )
    return config
