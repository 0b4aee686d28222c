"""The main job: an MA-SNN (TCSA attention) on scikit-learn's handwritten digits turned into DVS event streams.

The 1,797 8x8 digits are upscaled onto a 32x32 virtual sensor and moved in three saccades (as N-MNIST was
recorded); the DVS emulator (:func:`masnn_jax.data.events.emulate_dvs`) turns log-intensity changes into ON/OFF events,
which are binned into T = 8 frames of 25 ms at 16x16 (ds 2). A small MA-SNN (two conv layers, one hidden FC layer)
with the official neuron, rectangle surrogate and TCSA attention trains with the official recipe (Adam, plateau
schedule, MSE on firing rates) at a larger learning rate. Ships with the install: nothing to download.
"""

from masnn_jax.config import base_config


def get_config():
    config = base_config(dataset="digits_dvs", arch=None, T=8, attention="TCSA", c_ratio=8, t_ratio=2, a=0.5)
    m = config.model
    m.input_shape = (16, 16, 2)
    m.num_classes = 10
    m.channels = (32, 64)
    m.pools = (2, 2)
    m.fc = (128,)
    d = config.data
    d.dt_ms = 25
    d.ds = 2
    d.n_test_windows = 1
    d.seed = 0
    t = config.train
    t.num_epochs = 15
    t.batch_size = 32
    t.eval_batch_size = 120
    t.learning_rate = 2e-3
    return config
