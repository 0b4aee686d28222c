"""DVS128 Gesture, the official MA-SNN recipe (``MA_SNN/DVSGestures/CNN/Config.py``).

dt 25 ms, T 60, 128x128 sensor downsampled by 4 to 32x32, TCSA with c_ratio 8 / t_ratio 5, rectangle surrogate
a = 0.5, Adam lr 1e-4, plateau schedule, MSE, batch 128, 300 epochs, 10 test windows per recording.
Point ``--config.data.root`` at the folder that holds the data (see README, "Real datasets").
"""

from masnn_jax.config import base_config


def get_config():
    config = base_config(dataset="dvs_gesture", arch="dvs_gesture", T=60, attention="TCSA", c_ratio=8, t_ratio=5, a=0.5)
    d = config.data
    d.dt_ms = 25
    d.ds = 4
    d.n_test_windows = 10
    d.seed = 0
    d.gesture_layout = "auto"  # 'ibm': DvsGesture.tar.gz contents (official 1176/288 split); 'tonic': tonic's npy
    config.train.learning_rate = 1e-4
    config.train.num_epochs = 300
    return config
