"""Spikformer-4-384 on CIFAR10 (Zhou et al., ICLR 2023; spec ``shared/specs/spikformer.md``).

Model: ``cifar10/model.py`` (nn.Linear q/k/v/proj/MLP with bias, trunc_normal(0.02) init, ``(q kᵀ)·0.125 @ v``),
32×32×3, T = 4 (``cifar10.yml`` time_step), embed_dim 384, depth 4, 12 heads, 10 classes: 9,324,730 parameters
(the paper's Tab. 3 lists 9.32 M). Recipe (``cifar10.yml`` + ``train.py``, spec §4): AdamW lr 5e-4, weight
decay 0.06 on parameters with ndim > 1 only, per-epoch cosine with 20 warm-up epochs from 1e-5 down to 1e-5, 310
epochs (300 + 10 cool-down: 'timm_cosine', timm's CosineLRScheduler), batch
128, label smoothing 0.1. Data: this project has no CIFAR reader, so ``config.data`` reads CIFAR-10 exported as an
ImageFolder (``<root>/train/<class>/*.png`` and ``<root>/val/<class>/*.png``; set ``--config.data.root``) with the
official augmentation that the pipeline has: resize only (RandomResizedCrop scale = ratio = (1, 1)), horizontal flip
0.5, CIFAR mean/std. Not reproduced: ``rand-m9-n1-mstd0.4-inc1`` with the 5-op list of ``aa_snn.py``,
RandomErasing 0.25, Mixup 0.5 (off after epoch 200), AMP.

    python train.py --config=configs/spikformer_cifar10_4_384.py --config.data.root=/path/to/cifar10_imagefolder
"""

from __future__ import annotations

import ml_collections

from masnn_jax.config import train_defaults


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 42
    config.model = ml_collections.ConfigDict(dict(
        name="spikformer", variant="cifar", input_kind="image", input_shape=(32, 32, 3), T=4, num_classes=10,
        embed_dim=384, depth=4, heads=12, mlp_ratio=4, pool_stages=(False, False, True, True),
        sps_pool_order="conv-bn-lif-pool", attn_order="qk_first", attn_scale=0.125, qkv_bias=True, proj_bias=True,
        mlp_bias=True, fc_init="trunc_normal", residual="spike", qk_maxpool1d=0, sps_attention="no",
        block_attention="no", attention_placement="input", param_dtype="float32", conv_impl="auto", unroll=1,
    ))
    config.model.dtype = ml_collections.FieldReference(None, field_type=str)
    from masnn_jax.data import default_data_config

    config.data = default_data_config("imagefolder")  # CIFAR-10 as an ImageFolder: set config.data.root
    config.data.update(dict(image_size=32, eval_image_size=32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                            random_flip=True, auto_augment=False, interpolation="bilinear",
                            mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)))
    config.data.eval_resize = 32
    config.train = train_defaults(
        optimizer="adamw", learning_rate=5e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.06,
        weight_decay_mask="ndim>1", schedule="timm_cosine", cooldown_epochs=10, warmup_epochs=20, warmup_lr=1e-5, min_lr=1e-5,
        num_epochs=310, batch_size=128, eval_batch_size=128, loss="cross_entropy", label_smoothing=0.1,
    )
    return config
