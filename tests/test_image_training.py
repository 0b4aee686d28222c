"""Training an image model end to end through the image pipeline: a reduced-width Att-Res-SNN on the offline JPEG
digits (the ImageNet path: grain, the official transforms, SGD + coupled weight decay, label smoothing, per-epoch
cosine), on 1 and on 8 CPU devices, with evaluation that counts every image exactly once."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
    spec = importlib.util.spec_from_file_location("c", os.path.join(ROOT, "configs", "digits_images_att_res_snn.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.model.widths = (8, 16, 16, 16)
    config.train.num_epochs = 2
    config.train.batch_size = 64
    config.train.eval_batch_size = 48  # 359 validation images: divisible neither by 48 nor by 8 devices
    return config


def test_tiny_att_res_snn_trains_on_jpeg_digits(tmp_path):
    from masnn_jax import train as training

    from masnn_jax.data.images.digits import write_digits

    config = _config()
    config.data.root = write_digits(str(tmp_path / "digits"))  # real JPEG files, and their ArrayRecord copy
    result = training.train_and_evaluate(config, str(tmp_path / "run"), progress_bar=False)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    assert len(train) == 2 and len(test) == 2
    assert train[1]["loss"] < train[0]["loss"], train  # the loss falls
    assert 0 < train[0]["firing_rate"] < 1 and 0 < result["firing_rate"] < 1  # the network fires
    assert result["count"] == 359  # every validation image exactly once (padding masked)
    assert 0 <= result["accuracy"] <= result["top5"] <= 1
    assert round(result["accuracy"] * 359, 6) == round(result["accuracy"] * 359)  # whole images counted


def test_image_size_the_model_cannot_take_names_both_keys(tmp_path):
    """``config.data.image_size`` / ``eval_image_size`` other than the model's input side: the error names the data
    key and ``config.model.input_shape`` before anything runs."""
    import pytest

    from masnn_jax import train as training

    for key, need_train in (("image_size", True), ("eval_image_size", False)):
        config = _config()  # root unset: the digits JPEGs under ~/.cache/masnn_jax (written once)
        config.data[key] = 30
        with pytest.raises(ValueError) as err:
            training.Trainer(config, str(tmp_path / "run"), need_train_data=need_train)
        msg = str(err.value)
        assert f"config.data.{key}=30 gives images (H, W, C) = (30, 30, 3)" in msg, msg
        assert "config.model.input_shape is (32, 32, 3)" in msg and f"set config.data.{key}=32" in msg


DATA_PARALLEL = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {tests!r})
    from test_image_training import _config
    from masnn_jax import train as training
    assert jax.device_count() == 8, jax.devices()
    config = _config()
    config.data.root = {data!r}
    config.model.dropout = 0.0  # dropout masks are drawn per device layout; parity is about the rest
    config.train.batch_size = 16; config.train.eval_batch_size = 48
    config.train.momentum = 0.0; config.train.learning_rate = 0.2
    out = {{}}
    for n in (1, 8):
        trainer = training.Trainer(config, "/tmp/unused", devices=jax.devices()[:n])
        batch = trainer.device_batch(next(trainer.train_batches(0, 0)))
        assert len(batch["image"].sharding.device_set) == n
        state, m1 = trainer.train_step(trainer.state, batch)
        state, m2 = trainer.train_step(state, batch)
        out[n] = dict(loss=float(m1["loss"]), loss2=float(m2["loss"]), rate=float(m1["firing_rate"]),
                      leaves=[np.asarray(x, np.float64).ravel()[:64].tolist() for x in jax.tree.leaves(state["params"])])
    print(json.dumps(out))
    """
)


def test_image_step_on_8_cpu_devices_matches_1(tmp_path):
    from masnn_jax.data.images.digits import write_digits

    data = str(tmp_path / "digits")
    write_digits(data)
    script = tmp_path / "dp.py"
    script.write_text(DATA_PARALLEL.format(root=ROOT, tests=os.path.join(ROOT, "tests"), data=data))
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env.pop("JAX_NUM_CPU_DEVICES", None)
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    one, eight = out["1"], out["8"]
    assert 0 < one["rate"] < 1
    np.testing.assert_allclose(eight["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(eight["loss2"], one["loss2"], rtol=1e-5)
    assert one["loss2"] != one["loss"]  # the first step changed the parameters
    for a, b in zip(eight["leaves"], one["leaves"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
