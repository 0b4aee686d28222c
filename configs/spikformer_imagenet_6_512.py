"""Spikformer-6-512 on ImageNet-1K (Zhou et al., ICLR 2023; spec ``shared/specs/spikformer.md``).

Model: ``imagenet/model.py`` with embed_dim 512, depth 6, 8 heads (8 heads: UNVERIFIED, from Spikingformer's ssa_info);
224×224×3, T = 4, 1000 classes; 23,373,352 parameters (the paper's Tab. 2 lists 23.37 M). Recipe (``imagenet/imagenet.yml`` + ``train.py``, spec §4):
AdamW (betas 0.9/0.999, eps 1e-8), lr 5e-4, weight decay 0.05 on parameters with ndim > 1 only, per-epoch cosine
with 20 warm-up epochs from 1e-6 down to 1e-5, 310 epochs, label smoothing 0.1, batch 192 (24 per GPU × 8, README
launch); schedule 'timm_cosine' = timm's CosineLRScheduler (cosine over epochs 0-299 counted from epoch 0,
warm-up included, then 1e-5 for 10 cool-down epochs); Mixup 0.8 / CutMix 1.0 (prob 1, switch 0.5, every epoch) with
timm's soft-target cross-entropy (``config.train.mixup``). Data: imagenet2012 with RandomResizedCrop 224 scale (1, 1)
ratio (3/4, 4/3), bicubic, horizontal flip, timm RandAugment ``rand-m9-mstd0.5-inc1`` (``config.data.rand_augment``,
timm's op list), RandomErasing p 0.25 'const' (``config.data.random_erase_*``); eval crop_pct 1.0 (resize 224).
Not reproduced: AMP.

    python train.py --config=configs/spikformer_imagenet_6_512.py --workdir=...
"""

from masnn_jax.config import spikformer_imagenet_config


def get_config():
    return spikformer_imagenet_config(6, 512, 8)
