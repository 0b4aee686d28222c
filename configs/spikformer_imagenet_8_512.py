"""Spikformer-8-512 on ImageNet-1K (Zhou et al., ICLR 2023; spec ``shared/specs/spikformer.md``).

Model: ``imagenet/model.py`` with embed_dim 512, depth 8, 8 heads (the file's hard-coded ``spikformer()``);
224×224×3, T = 4, 1000 classes; 29,689,384 parameters (the paper's Tab. 2 lists 29.68 M). Recipe (``imagenet/imagenet.yml`` + ``train.py``, spec §4):
AdamW (betas 0.9/0.999, eps 1e-8), lr 5e-4, weight decay 0.05 on parameters with ndim > 1 only, per-epoch cosine
with 20 warm-up epochs from 1e-6 down to 1e-5, 310 epochs, label smoothing 0.1, batch 192 (24 per GPU × 8, README
launch); schedule 'timm_cosine' = timm's CosineLRScheduler (cosine over epochs 0-299 counted from epoch 0,
warm-up included, then 1e-5 for 10 cool-down epochs). Data: imagenet2012 with RandomResizedCrop scale (1, 1) ratio (3/4, 4/3), bicubic,
horizontal flip, eval crop_pct 1.0 (resize 224). Not reproduced here: timm ``rand-m9-mstd0.5-inc1``, RandomErasing
0.25, Mixup 0.8 / CutMix 1.0 (not wired into this project's image pipeline), AMP.

    python train.py --config=configs/spikformer_imagenet_8_512.py --workdir=...
"""

from __future__ import annotations

import ml_collections

from masnn_jax.config import train_defaults


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 42
    config.model = ml_collections.ConfigDict(dict(
        name="spikformer", variant="imagenet", input_kind="image", input_shape=(224, 224, 3), T=4,
        num_classes=1000, embed_dim=512, depth=8, heads=8, mlp_ratio=4, pool_stages=(True, True, True, True),
        sps_pool_order="conv-bn-lif-pool", attn_order="kv_first", attn_scale=0.125, qkv_bias=False, proj_bias=True,
        mlp_bias=True, fc_init="torch", residual="spike", qk_maxpool1d=0, sps_attention="no", block_attention="no",
        attention_placement="input", param_dtype="float32", conv_impl="auto", unroll=1,
    ))
    config.model.dtype = ml_collections.FieldReference(None, field_type=str)  # 'bfloat16' for mixed precision
    try:
        from masnn_jax.data import default_data_config

        config.data = default_data_config("imagenet2012")
        config.data.update(dict(crop_scale=(1.0, 1.0), crop_ratio=(3 / 4, 4 / 3), interpolation="bicubic",
                                random_flip=True, auto_augment=False, eval_image_size=224))
        config.data.eval_resize = 224  # crop_pct 1.0
    except Exception:  # noqa: BLE001 - the image pipeline is optional; leave a placeholder naming the dataset
        config.data = ml_collections.ConfigDict(dict(name="imagenet2012", root="/path/to/imagenet2012"))
    config.train = train_defaults(
        optimizer="adamw", learning_rate=5e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.05,
        weight_decay_mask="ndim>1", schedule="timm_cosine", cooldown_epochs=10, warmup_epochs=20, warmup_lr=1e-6, min_lr=1e-5,
        num_epochs=310, batch_size=192, eval_batch_size=192, loss="cross_entropy", label_smoothing=0.1,
    )
    return config
