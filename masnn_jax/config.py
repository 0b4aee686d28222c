"""Shared defaults for the ``configs/*.py`` files (ml_collections).

A config has four parts: ``seed``; ``model`` (read by :func:`masnn_jax.models.build`); ``data`` (read by
:func:`masnn_jax.data.build`); ``train`` (read by :mod:`masnn_jax.training`). ``T`` is one
``ml_collections.FieldReference`` shared by ``model.T`` and ``data.T``: ``--config.model.T=16`` sets both.
"""

from __future__ import annotations

import ml_collections

from masnn_jax.data import default_data_config


def base_config(*, arch: str | None, T: int, dataset: str = "digits_dvs", attention: str = "TCSA",
                c_ratio: int = 8, t_ratio: int = 5, a: float = 0.5) -> ml_collections.ConfigDict:
    """The official MA-SNN event recipe (``MA_SNN/*/CNN/Config.py``): official neuron (Vthres 0.3, alpha 0.3,
    beta 0) with a rectangle surrogate of width ``a``; Adam (betas 0.9/0.999, eps 1e-8, no weight decay) with
    ReduceLROnPlateau(0.1, patience 5) on the training loss; MSE between firing rates and one-hot labels.

    Args:
      arch: the official layer plan ('dvs_gesture', 'dvs_gait', 'cifar10_dvs') or None (give the sizes yourself).
      T: time steps (shared by ``model.T`` and ``data.T``).
      dataset: ``config.data.name``; ``config.data`` gets every key of that dataset with its defaults
        (:func:`masnn_jax.data.default_data_config`), so any of them can be set with ``--config.data.<key>=``.
      attention, c_ratio, t_ratio: attention scheme and reduction ratios.
      a: the rectangle surrogate's width (official ``a``).
    """
    config = ml_collections.ConfigDict()
    config.seed = 0
    t_ref = ml_collections.FieldReference(T)

    config.model = ml_collections.ConfigDict()
    m = config.model
    m.name = "masnn"
    m.arch = arch
    m.T = t_ref
    m.attention = attention
    m.placement = "input"  # 'input' = official code; 'membrane' = the paper's equations
    m.c_ratio = c_ratio
    m.t_ratio = t_ratio
    m.sa_kernel = 3
    m.channel_attention = "cbam"
    m.spatial_attention = "cbam"
    m.neuron = ml_collections.ConfigDict(
        dict(kind="masnn_official", v_th=0.3, alpha=0.3, beta=0.0, mode_select="spike", tr_model="NTR")
    )
    m.surrogate = ml_collections.ConfigDict(dict(name="rectangle", width=a))
    m.checkpoint = False
    m.unroll = 1
    m.conv_impl = "auto"  # 'auto' = im2col on CPU, XLA's (cuDNN's) conv elsewhere; 'xla' | 'im2col'
    m.remat = "none"  # 'layer': recompute each spiking layer in the backward pass (memory for long T)
    m.batch_chunks = 8  # n > 1: BN/pool/attention/neuron of conv layers in n checkpointed batch chunks (memory, speed)
    m.dtype = ml_collections.FieldReference(None, field_type=str)
    m.param_dtype = "float32"

    config.data = default_data_config(dataset)
    config.data.T = t_ref

    config.train = ml_collections.ConfigDict()
    t = config.train
    t.num_epochs = 300
    t.batch_size = 128
    t.eval_batch_size = 128
    t.optimizer = "adam"
    t.learning_rate = 1e-4
    t.b1 = 0.9
    t.b2 = 0.999
    t.eps = 1e-8
    t.momentum = 0.9
    t.weight_decay = 0.0
    t.schedule = "plateau"
    t.plateau_factor = 0.1
    t.plateau_patience = 5
    t.loss = "mse"
    t.eval_every_epochs = 1
    t.checkpoint_every_steps = 0  # 0: checkpoint at the end of every epoch only
    t.max_to_keep = 3
    t.num_workers = 0
    return config
