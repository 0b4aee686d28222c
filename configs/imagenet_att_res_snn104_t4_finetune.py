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

from masnn_jax.config import att_res_snn_imagenet_config


def get_config():
    config = att_res_snn_imagenet_config(104, T=4)
    config.train.num_epochs = 150 // 5  # train_finetune.py: T_max = EPOCH // 5
    config.train.init_from = "<set --config.train.init_from to the T=1 run's workdir>"
    return config
