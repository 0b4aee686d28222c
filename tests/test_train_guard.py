"""Nothing silent in training: non-finite steps are skipped, counted and stop the run; a failing evaluation never
costs the trained epoch; optimisers and schedules equal their definitions."""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax import models
from masnn_jax import train as training
from masnn_jax.config import base_config, train_defaults
from masnn_jax.train import loop, optim


def _tiny_config(**train):
    config = base_config(dataset="digits_dvs", arch=None, T=4, attention="TCSA", c_ratio=2, t_ratio=2)
    m = config.model
    m.input_shape, m.num_classes, m.channels, m.pools, m.fc = (16, 16, 2), 10, (8,), (2,), (16,)
    m.neuron.v_th = 0.1  # fires readily at initialisation
    config.train.update({**dict(num_epochs=1, batch_size=64, eval_batch_size=120, learning_rate=5e-3), **train})
    return config


def _state_step(config):
    model = models.build(config.model, rngs=nnx.Rngs(0))
    tx = optim.make_optimizer(config.train, 10)
    graphdef, state = training.init_state(model, tx)
    task = training.task_from_config(config.train, model.input_kind, model.num_classes)
    return state, jax.jit(functools.partial(training.train_step, graphdef=graphdef, tx=tx, task=task))


def test_nonfinite_batch_skips_the_update_on_device():
    state, step = _state_step(_tiny_config())
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, (4, 4, 16, 16, 2)).astype(np.float32)
    y = jnp.asarray([0, 1, 2, 3], jnp.int32)
    new, metrics = step(state, {"frames": jnp.asarray(x), "label": y})
    assert bool(metrics["finite"]) and 0 < float(metrics["firing_rate"]) < 1
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new["params"]), jax.tree.leaves(state["params"]))]
    assert any(changed)
    x[1, 2, 3, 4, 0] = np.nan  # one NaN event count: the loss stays finite (spikes hide it), gradients do not
    bad, metrics = step(new, {"frames": jnp.asarray(x), "label": y})
    assert not bool(metrics["finite"])
    for a, b in zip(jax.tree.leaves(bad["params"]), jax.tree.leaves(new["params"])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(bad["rest"]), jax.tree.leaves(new["rest"])):
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(bad["params"]))


def _nan_batches(original, bad_steps):
    def batches(self, epoch, start):
        for i, batch in enumerate(original(self, epoch, start)):
            if i + start in bad_steps:
                batch = dict(batch)
                frames = np.array(batch["frames"], np.float32)
                frames[0, 0, 0, 0, 0] = np.nan
                batch["frames"] = frames
            yield batch
    return batches


def test_nan_batches_are_counted_and_params_stay_finite(tmp_path, monkeypatch):
    monkeypatch.setattr(loop.Trainer, "train_batches", _nan_batches(loop.Trainer.train_batches, {0, 3}))
    result = training.train_and_evaluate(_tiny_config(), str(tmp_path), progress_bar=False)
    assert result["accuracy"] > 0.1
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["nonfinite_steps"] for r in train_rows] == [2]
    model, _ = training.load_model(_tiny_config(), str(tmp_path))
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(nnx.state(model)))


def test_consecutive_nonfinite_steps_stop_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(loop.Trainer, "train_batches", _nan_batches(loop.Trainer.train_batches, set(range(100))))
    with pytest.raises(loop.NonFiniteError, match=r"3 consecutive training steps .*config.train.max_nonfinite_steps"):
        training.train_and_evaluate(_tiny_config(max_nonfinite_steps=3), str(tmp_path), progress_bar=False)


def test_failed_evaluation_keeps_the_trained_epoch_and_rows_are_written_once(tmp_path, monkeypatch):
    config = _tiny_config(num_epochs=2)
    calls = {"n": 0}
    original = loop.Trainer.evaluate

    def failing(self, split="test"):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("corrupt test file (simulated)")
        return original(self, split)

    monkeypatch.setattr(loop.Trainer, "evaluate", failing)
    with pytest.raises(ValueError, match="simulated"):
        training.train_and_evaluate(config, str(tmp_path), progress_bar=False)
    steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
    assert steps, "the trained epoch must be saved before it is evaluated"
    training.train_and_evaluate(config, str(tmp_path), progress_bar=False)  # resumes; evaluates epoch 1 first
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    keys = [(r["split"], r["epoch"]) for r in rows]
    assert sorted(keys) == [("test", 1), ("test", 2), ("train", 1), ("train", 2)], keys


def _cfg(**kw):
    return train_defaults(**kw)


def test_torch_cosine_equals_cosine_annealing_with_last_epoch_zero():
    # torch.optim.lr_scheduler.CosineAnnealingLR(T_max=E, eta_min=0, last_epoch=0) stepped once per epoch: the
    # recursive form, computed independently of the closed form the library uses.
    E, lr0, spe = 7, 0.6, 3
    lrs, lr = [], lr0
    for epoch in range(1, E + 1):  # scheduler.step() at the end of each epoch, as the official loop; epoch 1 decayed
        lr = (1 + math.cos(math.pi * epoch / E)) / (1 + math.cos(math.pi * (epoch - 1) / E)) * lr if epoch > 1 else \
            0.5 * lr0 * (1 + math.cos(math.pi / E))
        lrs.append(lr)
    sched = optim.make_schedule(_cfg(schedule="torch_cosine", learning_rate=lr0, num_epochs=E), spe)
    got = [float(sched(e * spe + k)) for e in range(E) for k in range(spe)]
    np.testing.assert_allclose(got, np.repeat(lrs, spe), rtol=1e-6, atol=1e-7)
    assert got[-1] == pytest.approx(0.0, abs=1e-7)


def test_cosine_epoch_warmup_and_step_schedules():
    cfg = _cfg(schedule="cosine_epoch", learning_rate=1.0, num_epochs=6, warmup_epochs=2, warmup_lr=0.1, min_lr=0.01)
    sched = optim.make_schedule(cfg, 2)
    expected = [0.1, 0.55] + [0.01 + 0.99 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    np.testing.assert_allclose([float(sched(2 * e)) for e in range(6)], expected, rtol=1e-6)
    step = optim.make_schedule(_cfg(schedule="step", learning_rate=1.0, step_epochs=2, step_gamma=0.5), 1)
    np.testing.assert_allclose([float(step(e)) for e in range(5)], [1, 1, 0.5, 0.5, 0.25])


def test_timm_cosine_equals_timm_cosine_lr_scheduler_rule():
    # timm CosineLRScheduler(t_initial=E-C, lr_min, warmup_t=W, warmup_lr_init, t_in_epochs=True), restated:
    # t < W: warmup_lr_init + t·(base − warmup_lr_init)/W; t < t_initial: lr_min + ½(base − lr_min)(1 + cos(π t/t_i));
    # afterwards lr_min (cycle_limit 1).
    E, C, W, base, lo, w0 = 12, 2, 3, 5e-4, 1e-5, 1e-6
    expected = []
    for t in range(E):
        if t < W:
            expected.append(w0 + t * (base - w0) / W)
        elif t < E - C:
            expected.append(lo + 0.5 * (base - lo) * (1 + math.cos(math.pi * t / (E - C))))
        else:
            expected.append(lo)
    cfg = _cfg(schedule="timm_cosine", learning_rate=base, num_epochs=E, cooldown_epochs=C, warmup_epochs=W,
               min_lr=lo, warmup_lr=w0)
    sched = optim.make_schedule(cfg, 4)
    np.testing.assert_allclose([float(sched(4 * t + 1)) for t in range(E)], expected, rtol=1e-5)


def test_sgd_coupled_weight_decay_equals_torch_rule():
    # torch SGD(momentum=m, weight_decay=wd): g' = g + wd·p; buf = m·buf + g'; p -= lr·buf
    tx = optim.make_optimizer(_cfg(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.01,
                                   schedule="constant"), 1)
    p = {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray([0.5])}
    g = {"w": jnp.asarray([0.3, 0.1]), "b": jnp.asarray([-0.2])}
    state = tx.init(p)
    ref_p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    buf = {k: np.zeros_like(v) for k, v in ref_p.items()}
    for _ in range(3):
        updates, state = tx.update(g, state, p)
        p = jax.tree.map(lambda a, u: a + u, p, updates)
        for k in ref_p:
            gk = np.asarray(g[k], np.float64) + 0.01 * ref_p[k]
            buf[k] = 0.9 * buf[k] + gk
            ref_p[k] = ref_p[k] - 0.1 * buf[k]
    for k in ref_p:
        np.testing.assert_allclose(np.asarray(p[k]), ref_p[k], rtol=1e-6)


def test_adamw_mask_exempts_one_dimensional_parameters():
    tx = optim.make_optimizer(_cfg(optimizer="adamw", learning_rate=0.1, weight_decay=0.5,
                                   weight_decay_mask="ndim>1", schedule="constant"), 1)
    p = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
    zero = jax.tree.map(jnp.zeros_like, p)
    updates, _ = tx.update(zero, tx.init(p), p)  # zero gradient: only the decay moves parameters
    np.testing.assert_allclose(np.asarray(updates["kernel"]), -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(updates["bias"]), np.zeros(2))


@pytest.mark.parametrize("key,value,match", [
    ("optimizer", "lamb", "config.train.optimizer"),
    ("schedule", "linear", "config.train.schedule"),
    ("learning_rate", float("nan"), "config.train.learning_rate"),
    ("weight_decay", -1.0, "config.train.weight_decay"),
    ("weight_decay_mask", "odd", "config.train.weight_decay_mask"),
])
def test_bad_optimizer_keys_are_named(key, value, match):
    with pytest.raises(ValueError, match=match):
        optim.make_optimizer(_cfg(**{key: value}), 1)


@pytest.mark.parametrize("where, match", [
    ("a_file", "is a file, not a folder"),
    ("a_file/run", "is a file"),
])
def test_unusable_workdir_is_named_before_any_work(tmp_path, monkeypatch, where, match):
    """A workdir that is a file (or lies below one) stops the run with one ValueError naming it, before the data
    are built (the Trainer is never constructed) and without touching the file."""
    afile = tmp_path / "a_file"
    afile.write_text("keep me")
    monkeypatch.setattr(loop, "Trainer", lambda *a, **k: pytest.fail("built the Trainer for an unusable workdir"))
    with pytest.raises(ValueError, match=match) as info:
        training.train_and_evaluate(_tiny_config(), str(tmp_path / where), progress_bar=False)
    assert "--workdir" in str(info.value) and str(tmp_path / where) in str(info.value)
    assert afile.read_text() == "keep me"


def test_make_workdir_reports_os_errors_as_value_errors(tmp_path, monkeypatch):
    """A read-only file system (simulated: makedirs raises EROFS) becomes a ValueError naming the workdir."""
    import errno

    from masnn_jax.train import workdir as wd

    def refuse(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(wd.os, "makedirs", refuse)
    with pytest.raises(ValueError, match="--workdir .*run: cannot be written \\(Read-only file system\\)"):
        wd.make_workdir(str(tmp_path / "run"))


def test_restore_filter_drops_only_orbax_late_errors():
    """The unraisable-exception filter installed before a restore drops RuntimeError('Event loop is closed') raised
    in asyncio's call_soon_threadsafe (TensorStore's late callbacks after orbax gave up on an unreadable
    checkpoint) and errors raised in orbax's own code, and passes everything else, including the same message
    raised elsewhere, to the previous hook."""
    import asyncio
    import sys
    import types

    from masnn_jax.train import checkpoint

    seen = []
    saved = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_value)
    try:
        checkpoint._quiet_orbax_late_errors()
        checkpoint._quiet_orbax_late_errors()  # installed once: not wrapped twice
        hook = sys.unraisablehook
        assert getattr(hook, "_masnn_quiet", False)

        def raised(fn, obj=None):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                return types.SimpleNamespace(exc_type=type(e), exc_value=e, exc_traceback=e.__traceback__,
                                             err_msg=None, object=obj)
            raise AssertionError("no exception")

        loop = asyncio.new_event_loop()
        loop.close()
        late = raised(lambda: loop.call_soon_threadsafe(print))
        assert str(late.exc_value) == "Event loop is closed"
        hook(late)
        # an orbax coroutine finalised with an error (the object orbax leaves behind), and a frame in orbax's code
        # (code compiled under orbax's package directory stands for orbax's read coroutine and helpers)
        ns = {}
        exec(compile("async def read():\n    pass\ndef fail():\n    raise ValueError('unreadable')\n",
                     os.path.join(checkpoint._ORBAX_DIR, "_src", "fake.py"), "exec"), ns)
        coro = ns["read"]()
        hook(raised(lambda: int("x"), obj=coro))
        coro.close()
        hook(raised(ns["fail"]))
        assert seen == []

        def elsewhere():
            raise RuntimeError("Event loop is closed")

        other = raised(elsewhere)
        hook(other)
        value = raised(lambda: int("x"))
        hook(value)
        assert seen == [other.exc_value, value.exc_value]
    finally:
        sys.unraisablehook = saved
