"""Spikformer-2-256 on CIFAR10-DVS (Zhou et al., ICLR 2023; spec ``shared/specs/spikformer.md``).

Model: ``cifar10dvs/model.py`` (Conv1d q/k/v without bias, ``(q kᵀ v)·0.25``, four max-pooling SPS stages), event
frames (B, T, 128, 128, 2), T = 16, embed_dim 256, depth 2, 16 heads, 10 classes: 2,566,666 parameters (the paper's 2.59 M also counts the unused ``pos_embed`` and final LayerNorm).
Recipe (``cifar10dvs/train.py``, spec §4): AdamW lr 1e-3, weight decay 0.06 on parameters with ndim > 1
only, per-epoch cosine with 10 warm-up epochs from 1e-5 down to 1e-5, 106 epochs, batch 16, label smoothing
0.1. Data as ``cifar10dvs/train.py`` makes it: SpikingJelly ``CIFAR10DVS(frames_number=16, split_by='number')``
(``config.data.frame_mode='number'``: 16 frames with equal event counts over the whole recording, bit-identical to
SpikingJelly's integration), the first 90 % of each class in SpikingJelly's file order for training
(``cifar_split_order='spikingjelly'``: k sorted as strings, ``ceil``), one clip per test sample, and per training
sample a horizontal flip (p 0.5) then ``SNNAugmentWide`` on the whole clip (``config.data.augment``; see
``masnn_jax.data.events.recipe``; NumPy random stream instead of torch's), and the events oriented as SpikingJelly's
reader orients the original ``.aedat`` files (``cifar_orientation='spikingjelly'``: ``x = 127 - y``,
``y = 127 - x``, ``p = 1 - p``; with the MA-SNN ``.mat`` files set ``--config.data.cifar_orientation=as_stored``,
whose orientation relative to SpikingJelly's is UNVERIFIED). Not reproduced: AMP.
Mixup 0.5 (p 0.5, off from epoch 75) on the event frames is reproduced (``config.train.mixup``).

    python train.py --config=configs/spikformer_cifar10dvs_2_256.py --config.data.root=/path/to/cifar10_dvs
"""

from __future__ import annotations

import ml_collections

from masnn_jax.config import train_defaults
from masnn_jax.data import default_data_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 42
    t_ref = ml_collections.FieldReference(16)  # shared by model.T and data.T
    config.model = ml_collections.ConfigDict(dict(
        name="spikformer", variant="dvs", input_kind="frames", input_shape=(128, 128, 2), num_classes=10,
        embed_dim=256, depth=2, heads=16, mlp_ratio=4, pool_stages=(True, True, True, True),
        sps_pool_order="conv-bn-lif-pool", attn_order="qk_first", attn_scale=0.25, qkv_bias=False, proj_bias=True,
        mlp_bias=True, fc_init="torch", residual="spike", qk_maxpool1d=0, sps_attention="no",
        block_attention="no", attention_placement="input", param_dtype="float32", conv_impl="auto", unroll=1,
    ))
    config.model.T = t_ref
    config.model.dtype = ml_collections.FieldReference(None, field_type=str)
    config.data = default_data_config("cifar10_dvs")
    config.data.T = t_ref
    config.data.update(dict(frame_mode="number", augment="snn_augment_wide", cifar_split_order="spikingjelly",
                            cifar_orientation="spikingjelly", ds=1, n_test_windows=1, train_random_window=False))
    config.train = train_defaults(
        optimizer="adamw", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.06,
        weight_decay_mask="ndim>1", schedule="cosine_epoch", warmup_epochs=10, warmup_lr=1e-5, min_lr=1e-5,
        num_epochs=106, batch_size=16, eval_batch_size=16, loss="cross_entropy", label_smoothing=0.1,
    )
    config.train.mixup.update(dict(mixup_alpha=0.5, cutmix_alpha=0.0, prob=0.5, switch_prob=0.5, mode="batch",
                                   off_epoch=75))  # cifar10dvs/train.py: Mixup on the frames, off at epoch >= 75
    return config
