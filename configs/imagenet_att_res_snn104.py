"""Att-Res-SNN-104 (CSA, T=1) on ImageNet-1K with the official recipe (``Att_Res_SNN/train_amp.py``; spec
``shared/specs/att_res_snn.md`` §1-4): SGD momentum 0.9, coupled weight decay 1e-5 on every parameter, lr 0.6 at
global batch 600, CosineAnnealingLR stepped per epoch (``torch_cosine``), label smoothing 0.1, 150 epochs (inferred
from the released checkpoint names), 224×224×3 input, 1000 classes.

    python train.py --config=configs/imagenet_att_res_snn104.py --workdir=...
"""

from __future__ import annotations

import ml_collections

from masnn_jax.config import train_defaults
from masnn_jax.data import default_data_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 445  # train_amp.py:151-154

    config.model = ml_collections.ConfigDict(dict(
        name="att_res_snn", depth=104, T=1, num_classes=1000, input_shape=(224, 224, 3), attention="CSA",
        residual="att_res_1", placement="official", stem="7x7", last_bn_init=0.1, c_ratio=8, t_ratio=1,
        sa_kernel=3, dropout=0.2, param_dtype="float32", conv_impl="auto", batch_chunks=1, scan_blocks=True,
        unroll=1,
    ))
    config.model.dtype = ml_collections.FieldReference(None, field_type=str)  # 'bfloat16' for mixed precision

    config.data = default_data_config("imagenet2012")  # set --config.data.root (README: ImageNet and other images)

    config.train = train_defaults(
        optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=1e-5, weight_decay_mask="all",
        learning_rate=0.6, lr_base_batch=600, batch_size=600, eval_batch_size=600, schedule="torch_cosine", min_lr=0.0,
        num_epochs=150, loss="cross_entropy", label_smoothing=0.1,
    )
    return config
