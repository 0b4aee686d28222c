"""CIFAR10-DVS, the official MA-SNN recipe (``MA_SNN/CIFAR10DVS/CNN/Config.py``).

dt 10 ms, T 20, 128x128 at full resolution, five conv layers, TCSA with c_ratio 8 / t_ratio 2, rectangle surrogate
a = 1, Adam lr 1e-3, plateau schedule, MSE, batch 128, 300 epochs. Point ``--config.data.root`` at the data folder
(see README, "Real datasets").
"""

from masnn_jax.config import base_config


def get_config():
    config = base_config(dataset="cifar10_dvs", arch="cifar10_dvs", T=20, attention="TCSA", c_ratio=8, t_ratio=2, a=1.0)
    d = config.data
    d.dt_ms = 10
    d.ds = 1
    d.n_test_windows = 10
    d.seed = 0
    config.train.learning_rate = 1e-3
    config.train.num_epochs = 300
    return config
