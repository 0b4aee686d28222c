"""The ImageNet recipe's run mechanics on the offline JPEG digits with a tiny Att-Res-SNN: a T = 4 fine-tune that
starts from a T = 1 run (``config.train.init_from``), a checkpoint written on 8 CPU devices restored and continued on
1, and SIGKILL mid-epoch then resume through ``train.py`` ending with the parameters of an uninterrupted run."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "digits_images_att_res_snn.py")
WIDTHS = (4, 8, 8, 8)
BATCH = 256  # 1,437 training digits: 5 steps per epoch (divisible by 8 devices)


def _config(root, T=1):
    spec = importlib.util.spec_from_file_location("digits_images_att_res_snn", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.model.widths, config.model.T = WIDTHS, T
    config.data.root = root
    config.train.num_epochs = 1
    config.train.batch_size, config.train.eval_batch_size = BATCH, 360
    return config


def _env(devices: int = 1) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return env


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from masnn_jax.data.images.digits import write_digits

    return write_digits(str(tmp_path_factory.mktemp("digits")))


EIGHT_DEVICES = textwrap.dedent(
    """
    import sys
    import jax, numpy as np
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    from test_imagenet_recipe import _config
    from masnn_jax import train as training
    from masnn_jax.train import checkpoint as ckpt
    assert jax.device_count() == 8, jax.devices()
    config = _config({data!r})
    training.train_and_evaluate(config, {workdir!r}, progress_bar=False)
    trainer = training.Trainer(config, {workdir!r})
    manager = ckpt.checkpoint_manager({workdir!r}, 3, create=False)
    assert ckpt.restore(manager, trainer)
    assert len(trainer.state["params"]["fc"]["kernel"].value.sharding.device_set) == 8
    from test_imagenet_recipe import _named
    np.savez({out!r}, **_named({{"params": trainer.state["params"], "rest": trainer.state["rest"]}}))
    print("saved step", trainer.progress.step)
    """
)


@pytest.fixture(scope="module")
def t1_run_on_8_devices(digits, tmp_path_factory):
    """One T = 1 epoch trained on 8 CPU devices (a subprocess); returns its workdir and its final parameters and
    BatchNorm statistics (npz, in tree order)."""
    base = tmp_path_factory.mktemp("t1")
    workdir, out = str(base / "run"), str(base / "final.npz")
    script = base / "eight.py"
    script.write_text(EIGHT_DEVICES.format(root=ROOT, tests=os.path.dirname(__file__), data=digits, workdir=workdir,
                                           out=out))
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=_env(8), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "saved step 5" in proc.stdout
    saved = np.load(out)
    return workdir, {name: saved[name] for name in saved.files}


def _named(tree) -> dict:
    """``{path: array}`` of a state pytree's leaves, typed PRNG keys left out."""
    import jax

    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
            if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)}


def _no_keys(tree):
    return list(_named(tree).values())


def test_checkpoint_from_8_devices_restores_and_continues_on_1(t1_run_on_8_devices, digits, tmp_path):
    import jax

    from masnn_jax import train as training
    from masnn_jax.train import checkpoint as ckpt

    source, saved = t1_run_on_8_devices
    workdir = str(tmp_path / "run")
    shutil.copytree(source, workdir)
    config = _config(digits)
    trainer = training.Trainer(config, workdir, devices=jax.devices()[:1])
    manager = ckpt.checkpoint_manager(workdir, 3, create=False)
    try:
        assert ckpt.restore(manager, trainer)
    finally:
        manager.close()
    assert trainer.progress.step == 5 and trainer.progress.epoch == 1
    assert len(trainer.state["params"]["fc"]["kernel"].value.sharding.device_set) == 1
    restored = _named({"params": trainer.state["params"], "rest": trainer.state["rest"]})
    assert restored.keys() == saved.keys()
    for name, value in saved.items():  # parameters, BatchNorm statistics and the dropout RNG's count
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    config.train.num_epochs = 2  # continues: one more epoch on 1 device
    result = training.train_and_evaluate(config, workdir, devices=jax.devices()[:1], progress_bar=False)
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [(r["epoch"], r["split"], r["step"]) for r in rows] == [(1, "train", 5), (1, "test", 5), (2, "train", 10),
                                                                   (2, "test", 10)]
    assert result["count"] == 359 and np.isfinite(rows[-2]["loss"])


def test_t4_finetune_starts_from_the_t1_run(t1_run_on_8_devices, digits, tmp_path, capsys):
    import jax

    from masnn_jax import train as training
    from masnn_jax.train import checkpoint as ckpt

    source, saved = t1_run_on_8_devices
    config = _config(digits, T=4)
    config.train.init_from = source
    trainer = training.Trainer(config, str(tmp_path / "direct"))
    fresh = _no_keys(trainer.state["opt_state"])
    line = ckpt.init_from_checkpoint(trainer)
    assert source in line and "fresh optimiser" in line
    loaded = _named({"params": trainer.state["params"], "rest": trainer.state["rest"]})
    assert loaded.keys() == saved.keys()
    compared = [name for name in saved if "rngs" not in name]  # the dropout RNG stays this run's own
    assert any("'mean'" in name for name in compared) and any("'kernel'" in name for name in compared)
    for name in compared:  # parameters and BatchNorm statistics of the T = 1 run's last step
        np.testing.assert_array_equal(loaded[name], saved[name], err_msg=name)
    for a, b in zip(_no_keys(trainer.state["opt_state"]), fresh):  # the optimiser starts afresh
        np.testing.assert_array_equal(a, b)
    assert trainer.progress.step == 0

    # through the training loop: a fresh workdir loads it, then trains one T = 4 epoch
    workdir = str(tmp_path / "t4")
    result = training.train_and_evaluate(config, workdir, devices=jax.devices()[:1], progress_bar=False)
    assert "Initialised" in capsys.readouterr().out
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [(r["epoch"], r["split"], r["step"]) for r in rows] == [(1, "train", 5), (1, "test", 5)]
    assert np.isfinite(rows[0]["loss"]) and 0 < result["firing_rate"] < 1

    # a missing directory and a model that does not fit: one line naming the key (and the first bad path)
    with pytest.raises(FileNotFoundError, match=r"config.train.init_from='/nonexistent/run': no such directory"):
        ckpt.init_from_checkpoint(trainer, "/nonexistent/run")
    with pytest.raises(FileNotFoundError, match=r"config.train.init_from=.*: no checkpoint in"):
        ckpt.init_from_checkpoint(trainer, str(tmp_path))
    config.model.widths = (4, 8, 8, 16)
    wide = training.Trainer(config, str(tmp_path / "wide"))
    with pytest.raises(ValueError, match=r"config.train.init_from=.*: params\.fc\.kernel has shape \(8, 10\) in .* "
                                         r"but \(16, 10\) in this model") as info:
        ckpt.init_from_checkpoint(wide)
    assert "\n" not in str(info.value)


def _train_cmd(workdir, digits, *extra):
    return [sys.executable, os.path.join(ROOT, "train.py"), f"--config={CONFIG}", f"--workdir={workdir}",
            "--noprogress", f"--config.data.root={digits}", f"--config.model.widths={WIDTHS}",
            "--config.train.batch_size=128", "--config.train.eval_batch_size=360", "--config.train.num_epochs=1",
            "--config.train.checkpoint_every_steps=2", *extra]


def _final(workdir, digits):
    from masnn_jax import train as training

    config = _config(digits)
    config.train.batch_size = 128
    model, meta = training.load_model(config, workdir)
    from flax import nnx

    return meta["step"], _no_keys(nnx.state(model))


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(digits, tmp_path):
    # 1,437 digits in batches of 128: 11 steps, a checkpoint every 2; the reference runs alongside the killed run
    reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
    ref = subprocess.Popen(_train_cmd(reference, digits), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    proc = subprocess.Popen(_train_cmd(killed, digits), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt_dir = os.path.join(killed, "checkpoints")
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(ckpt_dir) and any(d.isdigit() and int(d) >= 4 for d in os.listdir(ckpt_dir)):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = max(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
    assert 4 <= killed_at < 11
    out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, out[-3000:]
    resumed = subprocess.run(_train_cmd(killed, digits), cwd=ROOT, env=_env(), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout
    step_a, params_a = _final(reference, digits)
    step_b, params_b = _final(killed, digits)
    assert step_a == step_b == 11
    for a, b in zip(params_a, params_b):
        np.testing.assert_array_equal(a, b)
    rows = [[{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in open(os.path.join(w, "metrics.jsonl"))]
            for w in (reference, killed)]
    assert rows[0] == rows[1]
