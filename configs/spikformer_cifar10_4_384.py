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

from masnn_jax.config import spikformer_cifar_config


def get_config():
    return spikformer_cifar_config(10, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
