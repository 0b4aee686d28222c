"""Spikformer-4-384 on CIFAR100 (Zhou et al., ICLR 2023; spec ``shared/specs/spikformer.md``).

Model: ``cifar10/model.py`` (nn.Linear q/k/v/proj/MLP with bias, trunc_normal(0.02) init, ``(q kᵀ)·0.125 @ v``),
32×32×3, T = 4 (``cifar10.yml`` time_step), embed_dim 384, depth 4, 12 heads, 100 classes: 9,359,380 parameters
(the paper's Tab. 3 lists 9.32 M). Recipe (``cifar10.yml`` + ``train.py``, spec §4; the repository has no CIFAR100 yml, so the CIFAR10 recipe is used (UNVERIFIED)): AdamW lr 5e-4, weight
decay 0.06 on parameters with ndim > 1 only, per-epoch cosine with 20 warm-up epochs from 1e-5 down to 1e-5, 310
epochs (300 + 10 cool-down: 'timm_cosine', timm's CosineLRScheduler), batch
128, label smoothing 0.1, Mixup 0.5 (no CutMix, prob 1, off from epoch 200) with timm's soft-target cross-entropy
(``config.train.mixup``). Data: this project has no CIFAR reader, so ``config.data`` reads CIFAR-100 exported as an
ImageFolder (``<root>/train/<class>/*.png`` and ``<root>/val/<class>/*.png``; set ``--config.data.root``) with the
official augmentation (timm 1.0.31 semantics): resize only (RandomResizedCrop scale = ratio = (1, 1)), horizontal
flip 0.5, timm RandAugment ``rand-m9-n1-mstd0.4-inc1`` over the 5 ops of ``aa_snn.py`` (Equalize, Rotate, ShearX,
TranslateXRel, TranslateYRel; ``config.data.rand_augment`` / ``rand_augment_ops``, bicubic resampling), CIFAR
mean/std, then RandomErasing p 0.25 'const' (``config.data.random_erase_*``); evaluation at 32×32 without
augmentation. Not reproduced: AMP.

    python train.py --config=configs/spikformer_cifar100_4_384.py --config.data.root=/path/to/cifar100_imagefolder
"""

from masnn_jax.config import spikformer_cifar_config


def get_config():
    return spikformer_cifar_config(100, mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762))
