"""A small Spikformer on the embedded digits DVS data (scikit-learn's 1,797 digits turned into event streams by the
DVS emulator; :mod:`masnn_jax.data.events`): nothing to download, trains on a CPU in a few minutes.

Frames (B, T = 8, 16, 16, 2) of 25 ms (ds 2, as configs/digits_dvs.py) feed the CIFAR10-DVS Spikformer
layout (``cifar10dvs/model.py``: Conv1d q/k/v without bias, ``(q kᵀ v)·0.25``) scaled down: SPS 8 -> 16 -> 32 -> 64
channels with max-pooling after stages 1 and 2 (16×16 -> 4×4 = 16 tokens), embed_dim 64, one block with 4 heads; 10
classes (112,906 parameters). The official neurons (LIF τ = 2, v_th 1 and 0.5 in attention, detached hard reset,
sigmoid surrogate α = 4) and the Spikformer recipe: AdamW (weight decay 0.06 on parameters with ndim > 1),
per-epoch cosine to 1e-5, cross-entropy with label smoothing 0.1; for the short run a larger learning rate (4e-3),
batch 64, no warm-up, 12 epochs: 96.1 % test accuracy (seed 0) in 3 min 51 s wall, start-up included, on the
project's 2-core CPU machine while another job shared it (``time python train.py --config=...``; epochs 13–17 s).

    python train.py --config=configs/spikformer_digits_dvs.py
"""

from __future__ import annotations

import ml_collections

from masnn_jax.config import train_defaults
from masnn_jax.data import default_data_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    t_ref = ml_collections.FieldReference(8)  # shared by model.T and data.T
    config.model = ml_collections.ConfigDict(dict(
        name="spikformer", variant="dvs", input_kind="frames", input_shape=(16, 16, 2), num_classes=10,
        embed_dim=64, depth=1, heads=4, mlp_ratio=4, pool_stages=(False, True, True, False),
        sps_pool_order="conv-bn-lif-pool", attn_order="qk_first", attn_scale=0.25, qkv_bias=False, proj_bias=True,
        mlp_bias=True, fc_init="torch", residual="spike", qk_maxpool1d=0, sps_attention="no", block_attention="no",
        attention_placement="input", param_dtype="float32", conv_impl="auto", unroll=1,
    ))
    config.model.T = t_ref
    config.model.dtype = ml_collections.FieldReference(None, field_type=str)
    config.data = default_data_config("digits_dvs")
    config.data.T = t_ref
    config.data.update(dict(dt_ms=25, ds=2, n_test_windows=1, seed=0))
    config.train = train_defaults(
        optimizer="adamw", learning_rate=4e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.06,
        weight_decay_mask="ndim>1", schedule="cosine_epoch", warmup_epochs=0, warmup_lr=0.0, min_lr=1e-5,
        num_epochs=12, batch_size=64, eval_batch_size=120, loss="cross_entropy", label_smoothing=0.1,
    )
    return config
