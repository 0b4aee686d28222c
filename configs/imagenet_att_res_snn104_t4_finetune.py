"""Att-Res-SNN-104 (CSA) at T = 4 fine-tuned on ImageNet-1K from a T = 1 run (``Att_Res_SNN/train_finetune.py``;
spec ``shared/specs/att_res_snn.md`` §4): the recipe of ``imagenet_att_res_snn104.py`` (SGD momentum 0.9, coupled
weight decay 1e-5 on every parameter, lr 0.6 at global batch 600, per-epoch CosineAnnealingLR, label smoothing 0.1)
with ``time_window=4`` and ``T_max = EPOCH // 5`` = 150 // 5 = 30 epochs. The run starts from the parameters and
BatchNorm statistics of a T = 1 run of the same model (``config.train.init_from``: its workdir or its checkpoints
directory; read only when this workdir holds no checkpoint yet) with a fresh optimiser. Without CSA's temporal
attention no parameter depends on T, so every T = 1 tensor fits.

    python train.py --config=configs/imagenet_att_res_snn104_t4_finetune.py --workdir=... \\
        --config.train.init_from=<workdir of the T=1 run (configs/imagenet_att_res_snn104.py)>
"""

from __future__ import annotations

import ml_collections

from masnn_jax.config import train_defaults
from masnn_jax.data import default_data_config

EPOCH = 150  # the T = 1 run's EPOCH (inferred from the released checkpoint names)


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 445  # train_finetune.py (as train_amp.py:151-154)

    config.model = ml_collections.ConfigDict(dict(
        name="att_res_snn", depth=104, T=4, num_classes=1000, input_shape=(224, 224, 3), attention="CSA",
        residual="att_res_1", placement="official", stem="7x7", last_bn_init=0.1, c_ratio=8, t_ratio=1,
        sa_kernel=3, dropout=0.2, param_dtype="float32", conv_impl="auto", batch_chunks=1, scan_blocks=True,
        unroll=1,
    ))
    config.model.dtype = ml_collections.FieldReference(None, field_type=str)  # 'bfloat16' for mixed precision

    config.data = default_data_config("imagenet2012")  # set --config.data.root (README: ImageNet and other images)

    config.train = train_defaults(
        optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=1e-5, weight_decay_mask="all",
        learning_rate=0.6, lr_base_batch=600, batch_size=600, eval_batch_size=600, schedule="torch_cosine", min_lr=0.0,
        num_epochs=EPOCH // 5, loss="cross_entropy", label_smoothing=0.1,
        # placeholder: a fine-tune without its T = 1 start fails at once, naming this key
        init_from="<set --config.train.init_from to the T=1 run's workdir>",
    )
    return config
