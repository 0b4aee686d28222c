"""DVS128 Gait (day), the official MA-SNN recipe (``MA_SNN/DVSGait/CNN/Config.py``).

dt 500 ms, T 8, 128x128 at full resolution, five conv layers, TCSA with c_ratio 8 / t_ratio 2, rectangle surrogate
a = 0.5, Adam lr 1e-3, plateau schedule, MSE, batch 128, 100 epochs. ``--config.data.gait_lighting=night`` for the
night set. Point ``--config.data.root`` at the data folder (see README, "Real datasets").
"""

from masnn_jax.config import base_config


def get_config():
    config = base_config(dataset="dvs_gait", arch="dvs_gait", T=8, attention="TCSA", c_ratio=8, t_ratio=2, a=0.5)
    d = config.data
    d.dt_ms = 500
    d.ds = 1
    d.seed = 0
    d.gait_lighting = "day"
    config.train.learning_rate = 1e-3
    config.train.num_epochs = 100
    return config
