"""Att-Res-SNN-34 (CSA, T=1) on ImageNet-1K with the official recipe (``Att_Res_SNN/train_amp.py``; spec
``shared/specs/att_res_snn.md`` §1-4): SGD momentum 0.9, coupled weight decay 1e-5 on every parameter, lr 0.6 at
global batch 600, CosineAnnealingLR stepped per epoch (``torch_cosine``), label smoothing 0.1, 150 epochs (inferred
from the released checkpoint names), 224×224×3 input, 1000 classes.

    python train.py --config=configs/imagenet_att_res_snn34.py --workdir=...
"""

from masnn_jax.config import att_res_snn_imagenet_config


def get_config():
    return att_res_snn_imagenet_config(34)
