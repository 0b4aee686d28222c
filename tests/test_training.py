"""train.py end to end on a tiny digits config: determinism, SIGKILL/SIGTERM resume, eval mode, 8-device parity."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny model on the embedded digits: 16x16x2 frames, T=4, one conv layer and one hidden FC layer.
TINY = [
    "--config.model.T=4",
    "--config.model.t_ratio=2",
    "--config.model.c_ratio=2",
    "--config.model.channels=(8,)",
    "--config.model.pools=(2,)",
    "--config.model.fc=(16,)",
    "--config.train.batch_size=64",
    "--config.train.eval_batch_size=120",
    "--config.train.learning_rate=0.005",
]


def _env(devices: int = 1) -> dict:
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return env


def _train_cmd(workdir, *extra):
    return [sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}", "--noprogress", *TINY, *extra]


def _run(cmd, **kw):
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        row.pop("seconds")
    return rows


def _final_params(workdir):
    sys.path.insert(0, ROOT)
    import jax
    from flax import nnx
    from masnn_jax import train as training

    config = _load_config(workdir)
    model, meta = training.load_model(config, workdir)
    return meta["step"], [np.asarray(x) for x in jax.tree_util.tree_leaves(nnx.state(model))]


def _load_config(workdir):
    """The digits config with the TINY overrides applied, as train.py builds it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("digits_dvs", os.path.join(ROOT, "configs", "digits_dvs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.model.T, config.model.t_ratio, config.model.c_ratio = 4, 2, 2
    config.model.channels, config.model.pools, config.model.fc = (8,), (2,), (16,)
    config.train.batch_size, config.train.eval_batch_size, config.train.learning_rate = 64, 120, 0.005
    return config


def _tb_files(workdir):
    d = os.path.join(workdir, "tensorboard")
    return sorted(os.listdir(d), key=lambda n: os.path.getmtime(os.path.join(d, n))) if os.path.isdir(d) else []


def _tb_view(workdir):
    """What TensorBoard shows of ``<workdir>/tensorboard``: the scalar points ``{tag: [(step, value), ...]}`` of every
    event file in write order, where a ``SessionLog.START`` at step p (tensorboardX's ``purge_step``) first drops the
    points at steps >= p written before it. Read from the TFRecord framing by hand (u64 length, u32 crc, payload,
    u32 crc) with tensorboardX's Event proto; also returns the purge steps seen."""
    import struct

    from tensorboardX.proto import event_pb2

    view, purges = {}, []
    for name in _tb_files(workdir):
        with open(os.path.join(workdir, "tensorboard", name), "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
                purges.append(event.step)
                view = {tag: [(st, v) for st, v in pts if st < event.step] for tag, pts in view.items()}
            for value in event.summary.value:
                view.setdefault(value.tag, []).append((event.step, value.simple_value))
    return view, purges


def _latest(workdir):
    steps = [d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()]
    return str(max(int(s) for s in steps))


# The reference run's flags: two epochs of 22 steps, a checkpoint every 11 steps (so each epoch's end is also a
# multiple of the checkpoint period: it used to crash there).
REFERENCE = ("--config.train.num_epochs=2", "--config.train.checkpoint_every_steps=11")


@pytest.fixture(scope="module")
def reference_run(run_once):
    """Two uninterrupted epochs, checkpointing every 11 steps; run once per session (shared by the xdist workers).
    Tests that write to its workdir copy it first."""

    def make(folder):
        workdir = str(folder / "reference")
        return [workdir, _run(_train_cmd(workdir, *REFERENCE)).stdout]

    return tuple(run_once("test_training-reference_run", make))


def test_main_job_writes_metrics_and_checkpoints(reference_run):
    workdir, stdout = reference_run
    rows = _metrics(workdir)
    assert [(r["epoch"], r["split"]) for r in rows] == [(1, "train"), (1, "test"), (2, "train"), (2, "test")]
    for row in rows:
        assert set(row) >= {"step", "epoch", "split", "loss", "accuracy", "firing_rate", "lr"}
        assert 0 < row["firing_rate"] < 1 and 0 <= row["accuracy"] <= 1
    # 1,437 training digits in batches of 64 (remainder dropped): 22 steps per epoch.
    assert rows[-1]["step"] == 44
    assert rows[-1]["accuracy"] > 0.3  # 10 classes: well above chance after two epochs (44 % measured)
    assert rows[2]["loss"] < rows[0]["loss"]
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    final = json.loads(stdout.strip().splitlines()[-1])
    assert final["accuracy"] == rows[-1]["accuracy"]


def test_same_config_and_seed_give_the_same_metrics(reference_run, tmp_path):
    workdir, _ = reference_run
    _run(_train_cmd(str(tmp_path), *REFERENCE))
    assert _metrics(str(tmp_path)) == _metrics(workdir)


def test_sigkill_then_resume_ends_with_the_same_parameters(reference_run, tmp_path):
    """Killed after a checkpoint at step >= 10 (every 5 steps here, every 11 in the reference run: neither the
    checkpoint period nor the interruption changes the result), resumed: the reference run's parameters and
    metrics."""
    workdir, _ = reference_run
    killed = str(tmp_path)
    proc = subprocess.Popen(
        _train_cmd(killed, "--config.train.num_epochs=2", "--config.train.checkpoint_every_steps=5"),
        cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    ckpt = os.path.join(killed, "checkpoints")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(ckpt) and any(d.isdigit() and int(d) >= 10 for d in os.listdir(ckpt)):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = int(_latest(killed))
    assert 10 <= killed_at < 44
    proc = _run(_train_cmd(killed, "--config.train.num_epochs=2", "--config.train.checkpoint_every_steps=5"))
    assert f"Resuming from" in proc.stdout
    step_a, params_a = _final_params(workdir)
    step_b, params_b = _final_params(killed)
    assert step_a == step_b == 44
    for a, b in zip(params_a, params_b):
        np.testing.assert_array_equal(a, b)
    assert _metrics(killed) == _metrics(workdir)
    # TensorBoard shows each step once: the resumed run's event file purges the killed run's points past the
    # checkpoint, so the curves equal metrics.jsonl (the killed run may have logged epoch 1 past its checkpoint)
    view, purges = _tb_view(killed)
    assert purges == [killed_at + 1]
    for split in ("train", "test"):
        rows = [r for r in _metrics(killed) if r["split"] == split]
        assert [st for st, _ in view[f"{split}/accuracy"]] == [r["step"] for r in rows]
        np.testing.assert_allclose([v for _, v in view[f"{split}/accuracy"]], [r["accuracy"] for r in rows],
                                   rtol=1e-6)


def _start_training(workdir: str, epochs: int, *, stderr) -> subprocess.Popen:
    """train.py started on the tiny config, returned once it trains (the first epoch's metrics line appears after
    its checkpoint)."""
    proc = subprocess.Popen(_train_cmd(workdir, f"--config.train.num_epochs={epochs}"), cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=stderr, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
            break
        time.sleep(0.02)
    return proc


def test_sigterm_saves_a_checkpoint_and_resume_finishes(tmp_path):
    workdir = str(tmp_path)
    proc = _start_training(workdir, 2, stderr=subprocess.STDOUT)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, out  # stopped early: not the 0 of a finished run
    assert "Stop requested (SIGTERM/SIGINT): saved checkpoint at step" in out
    assert json.loads(out.strip().splitlines()[-1])["stopped"] is True
    saved = int(_latest(workdir))
    assert 22 <= saved < 44
    proc = _run(_train_cmd(workdir, "--config.train.num_epochs=2"))
    assert f"Resuming from {os.path.join(workdir, 'checkpoints', str(saved))}" in proc.stdout
    assert _metrics(workdir)[-1]["step"] == 44


def test_ctrl_c_twice_stops_at_once_with_one_line(tmp_path):
    """Ctrl-C twice: exit 130 with one line saying nothing was saved since the latest checkpoint (no traceback)."""
    workdir = str(tmp_path)
    proc = _start_training(workdir, 3, stderr=subprocess.PIPE)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert "stopped at once (Ctrl-C twice)" in err or "Stop requested" in out, out + err


def test_signal_before_the_training_loop_is_one_line(tmp_path):
    """SIGTERM while train.py is still importing / building: one line, exit 143, no traceback, nothing written."""
    workdir = str(tmp_path / "run")
    proc = subprocess.Popen(_train_cmd(workdir), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, out + err  # was killed by the signal, without a word
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("stopped by SIGTERM outside the training loop"), err[-2000:]
    assert not os.path.exists(os.path.join(workdir, "checkpoints"))


def test_step_flag_in_train_mode_is_refused(tmp_path):
    proc = subprocess.run(_train_cmd(str(tmp_path / "run"), "--step=5"), cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --step selects the checkpoint of --mode=eval")
    assert not os.path.exists(tmp_path / "run")


def test_eval_mode_reproduces_the_last_test_metrics(reference_run):
    workdir, _ = reference_run
    proc = _run([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}", "--mode=eval", *TINY])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    last = _metrics(workdir)[-1]
    assert result["step"] == 44
    assert result["accuracy"] == pytest.approx(last["accuracy"], abs=1e-12)
    assert result["loss"] == pytest.approx(last["loss"], rel=1e-6)


def test_eval_without_checkpoint_names_the_path(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={tmp_path}", "--mode=eval", *TINY],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert os.path.join(str(tmp_path), "checkpoints") in proc.stderr


def test_resume_with_a_different_model_is_refused_and_keeps_the_checkpoint(reference_run, tmp_path):
    import shutil

    workdir = str(tmp_path / "copy")
    shutil.copytree(reference_run[0], workdir)
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    proc = subprocess.run(
        _train_cmd(workdir, "--config.train.num_epochs=3", "--config.model.fc=(32,)"),
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "was written by a run with another model configuration" in proc.stderr
    assert "config.model.fc: checkpoint [16], this run" in proc.stderr
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


DATA_PARALLEL = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, {root!r})
    from masnn_jax import train as training
    import importlib.util
    spec = importlib.util.spec_from_file_location("cfg", {root!r} + "/configs/digits_dvs.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    config = mod.get_config()
    config.model.T = 4; config.model.t_ratio = 2; config.model.c_ratio = 2; config.model.channels = (8,); config.model.pools = (2,)
    config.model.fc = (16,); config.train.batch_size = 16; config.train.eval_batch_size = 16
    # plain SGD: parameter changes are proportional to the gradients (Adam's first steps are ~lr*sign(g), which turns
    # float-rounding differences of near-zero gradients into lr-sized ones)
    config.train.optimizer = "sgd"; config.train.momentum = 0.0; config.train.learning_rate = 0.5
    assert jax.device_count() == 8, jax.devices()
    out = {{}}
    for n, chunks in ((1, 1), (8, 1), (8, 2), (1, 4)):
        config.model.batch_chunks = chunks  # 2 on 8 devices: each chunk takes 1 of every device's 2 samples
        trainer = training.Trainer(config, "/tmp/unused", devices=jax.devices()[:n])
        out["initial"] = dict(checksum=[float(np.abs(np.asarray(l, np.float64)).sum())
                                        for l in jax.tree_util.tree_leaves(trainer.state["params"])])
        batch = trainer.device_batch(next(trainer.train_batches(0, 0)))
        assert len(batch["frames"].sharding.device_set) == n
        state, metrics = trainer.train_step(trainer.state, batch)
        state, metrics2 = trainer.train_step(state, batch)
        leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(state["params"])]
        out[f"{{n}}x{{chunks}}"] = dict(loss=float(metrics["loss"]), loss2=float(metrics2["loss"]),
                      checksum=[float(np.abs(l).sum()) for l in leaves])
    print(json.dumps(out))
    """
)


def test_data_parallel_step_on_8_cpu_devices_matches_1(tmp_path):
    script = tmp_path / "dp.py"
    script.write_text(DATA_PARALLEL.format(root=ROOT))
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=_env(8), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    one = out["1x1"]
    for key in ("8x1", "8x2", "1x4"):  # 8 devices; 8 devices with batch_chunks=2; 1 device with batch_chunks=4
        other = out[key]
        assert other["loss"] == pytest.approx(one["loss"], rel=1e-5), key
        assert other["loss2"] == pytest.approx(one["loss2"], rel=1e-4), key
        np.testing.assert_allclose(other["checksum"], one["checksum"], rtol=1e-5, err_msg=key)
    assert one["checksum"] != out["initial"]["checksum"]  # the step changed the parameters


def test_batch_not_divisible_by_devices_is_named(tmp_path):
    """The Trainer refuses the batch on 8 devices before it builds data or compiles anything (only the 8-device
    Trainer is built: on 1 device the batch of 12 would train)."""
    script = tmp_path / "bad.py"
    loop = "for n, chunks in ((1, 1), (8, 1), (8, 2), (1, 4)):"
    assert loop in DATA_PARALLEL
    script.write_text(DATA_PARALLEL.format(root=ROOT).replace("config.train.batch_size = 16", "config.train.batch_size = 12")
                      .replace(loop, "for n, chunks in ((8, 1),):"))
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=_env(8), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode != 0
    assert "config.train.batch_size=12 must be divisible by the device count 8" in proc.stderr


def test_checkpoint_every_steps_dividing_the_epoch_and_rerunning_a_finished_run(reference_run, tmp_path):
    """22 steps per epoch, a checkpoint every 11 (the reference run): each epoch's end is also a multiple (it used to
    crash there); the last 3 are kept. Rerunning the finished run (on a copy) trains nothing and appends nothing."""
    import shutil

    workdir = str(tmp_path / "copy")
    shutil.copytree(reference_run[0], workdir)
    assert sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()) == [22, 33, 44]
    rows = _metrics(workdir)
    events = _tb_files(workdir)
    assert len(events) == 1
    proc = _run(_train_cmd(workdir, *REFERENCE))
    assert "already holds 2 epochs" in proc.stdout
    assert _tb_files(workdir) == events  # no empty event file for a run that wrote nothing
    assert json.loads(proc.stdout.strip().splitlines()[-1])["accuracy"] == rows[-1]["accuracy"]
    assert _metrics(workdir) == rows  # nothing appended, nothing lost


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(reference_run, tmp_path):
    import shutil

    workdir = str(tmp_path / "copy")
    shutil.copytree(reference_run[0], workdir)
    latest = os.path.join(workdir, "checkpoints", _latest(workdir))
    previous = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())[-2]
    for dirpath, _, files in os.walk(os.path.join(latest, "state")):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.getsize(path) > 64 and "ocdbt" in dirpath:
                with open(path, "r+b") as f:
                    f.truncate(16)
    proc = _run([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}", "--mode=eval", *TINY])
    assert "trying an older checkpoint" in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == previous
    assert os.path.isdir(latest)  # nothing deleted
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: checkpoint")]
    assert ours and not any("See full" in ln or "bound method" in ln for ln in ours), ours  # a readable reason
    # TensorStore's reads still in flight used to print one "Event loop is closed" traceback per array
    assert "Event loop is closed" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[:2000]

    # training again redoes the lost steps and saves them: the unreadable checkpoint is set aside, not deleted
    latest_step = int(os.path.basename(latest))
    proc = _run(_train_cmd(workdir, *REFERENCE))
    assert f"moved unreadable checkpoint step {latest_step}" in proc.stderr
    assert os.path.isdir(os.path.join(workdir, "checkpoints_unreadable", str(latest_step)))
    proc = _run([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}", "--mode=eval", *TINY])
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == latest_step
    assert "trying an older checkpoint" not in proc.stderr


@pytest.mark.parametrize("override, key", [
    ("--config.train.eval_batch_size=0", "config.train.eval_batch_size"),
    ("--config.train.loss=hinge", "config.train.loss"),
    ("--config.train.num_epochs=0", "config.train.num_epochs"),
    ("--config.train.learning_rate=-1.0", "config.train.learning_rate"),
    ("--config.train.max_to_keep=0", "config.train.max_to_keep"),  # orbax deleted every checkpoint it wrote
    ("--config.seed=-1", "config.seed"),  # numpy's 'expected non-negative integer' after the workdir was made
])
def test_bad_train_config_is_named_before_anything_is_written(tmp_path, override, key):
    workdir = str(tmp_path / "run")
    proc = subprocess.run(_train_cmd(workdir, override), cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {key}")
    assert not os.path.exists(workdir)


def test_batch_chunks_not_dividing_the_batch_is_logged(caplog):
    import logging as std_logging

    import ml_collections

    from masnn_jax import train as training

    config = ml_collections.ConfigDict({"model": {"batch_chunks": 7}, "train": {"batch_size": 32}})
    with caplog.at_level(std_logging.WARNING):
        training.loop.note_batch_chunks(config, 1)
    assert "config.model.batch_chunks=7 does not divide the per-device batch 32" in caplog.text
    assert "training runs 1 chunk(s)" in caplog.text
    caplog.clear()
    config.model.batch_chunks = 4
    with caplog.at_level(std_logging.WARNING):
        training.loop.note_batch_chunks(config, 2)  # 16 per device: 4 divides it
    assert "batch_chunks" not in caplog.text
    # 'auto' (8 on CPU) on 8 devices with 4 samples each runs 4 chunks without a warning: the user asked for none
    config = ml_collections.ConfigDict({"model": {"batch_chunks": "auto"}, "train": {"batch_size": 32}})
    with caplog.at_level(std_logging.WARNING):
        training.loop.note_batch_chunks(config, 8)
    assert "batch_chunks" not in caplog.text


def test_train_config_counts_are_checked():
    import ml_collections

    from masnn_jax import train as training
    from masnn_jax.config import train_defaults

    for key, value in (("eval_every_epochs", 0), ("max_nonfinite_steps", 0), ("num_workers", -1),
                       ("max_to_keep", 0)):
        tc = train_defaults()
        tc[key] = value
        with pytest.raises(ValueError, match=rf"config\.train\.{key} must be"):
            training.validate_train_config(tc)
    training.validate_train_config(train_defaults(eval_every_epochs=1, max_nonfinite_steps=1, num_workers=0))
    for seed in (-1, 2**32, 1.5, "0", True):
        with pytest.raises(ValueError, match=r"config\.seed must be an integer in \[0, 2\*\*32\)"):
            training.validate_seed(ml_collections.ConfigDict({"seed": seed}))
    training.validate_seed(ml_collections.ConfigDict({"seed": 2**32 - 1}))


def test_empty_workdir_flag_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--workdir="], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --workdir is empty"), proc.stderr[-2000:]


def test_workdir_lock_refuses_a_second_run(tmp_path):
    """A second training run on a workdir another live run is using is refused with one line naming the holder, and
    writes nothing; the lock is released when its holder ends (also when it is killed)."""
    from masnn_jax import train as training

    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    with training.workdir_lock(workdir):  # in-process: a second open file description conflicts
        with pytest.raises(training.WorkdirInUseError, match=r"is in use by another training run \(pid \d+ on "):
            with training.workdir_lock(workdir):
                pass
    with training.workdir_lock(workdir):  # released
        pass

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); from masnn_jax import train as training\n"
         "with training.workdir_lock(sys.argv[2]):\n    print('locked', flush=True); time.sleep(300)", ROOT, workdir],
        env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = subprocess.run(_train_cmd(workdir), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and f"pid {holder.pid}" in errors[0], proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert not os.path.exists(os.path.join(workdir, "checkpoints"))
    finally:
        holder.kill()
        holder.wait()
    with training.workdir_lock(workdir):  # a killed holder leaves no stale lock
        pass


@pytest.mark.parametrize("flag, text", [
    ("--config.model.nonexistent=1", "--config.model.nonexistent: unknown config key 'nonexistent'"),
    ("--config.foo.bar=1", "--config.foo.bar: unknown config key 'foo'"),
    ("--config=configs/no_such_config.py", "--config=configs/no_such_config.py: no such file"),
    ("--config=README.md", "SyntaxError"),
    ("--config=", "--config is empty"),  # was ml_collections' OSError traceback
])
def test_bad_config_flag_is_one_line(tmp_path, flag, text):
    workdir = str(tmp_path / "run")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}", flag], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    fatal = [ln for ln in proc.stderr.splitlines() if ln.startswith("FATAL Flags parsing error")]
    assert len(fatal) == 1 and text in fatal[0], proc.stderr[-2000:]
    assert not os.path.exists(workdir)
