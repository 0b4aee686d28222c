"""A user's own functional training step in the usual Flax NNX pattern works on every default config.

``graphdef, params, rest = nnx.split(model, nnx.Param, ...)`` once, then inside ``jax.jit``:
(a) ``nnx.merge(graphdef, params, rest)`` inside the function ``jax.grad`` differentiates (no ``copy=True``), or
(b) ``nnx.merge`` outside it and ``nnx.value_and_grad`` over the module. Both must give the library's own
``masnn_jax.train.train_step`` loss, gradients (through the update) and BatchNorm statistics.
"""

import functools
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from masnn_jax import models
from masnn_jax import train as training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _mse(out, y):
    return jnp.mean(jnp.square(out - jax.nn.one_hot(y, out.shape[-1])))


def _plain_step_inside_grad(graphdef, tx):
    @jax.jit
    def step(params, rest, opt_state, x, y):
        def loss_fn(p):
            model = nnx.merge(graphdef, p, rest)  # no copy=True
            return _mse(model(x), y), nnx.state(model, nnx.Not(nnx.Param))

        (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_rest, opt_state, loss

    return step


def _plain_step_nnx_grad(graphdef, tx):
    @jax.jit
    def step(params, rest, opt_state, x, y):
        model = nnx.merge(graphdef, params, rest)
        loss, grads = nnx.value_and_grad(lambda m: _mse(m(x), y))(model)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), nnx.state(model, nnx.Not(nnx.Param)), opt_state, loss

    return step


def _bn_means(rest):
    return [np.asarray(v) for path, v in jax.tree_util.tree_leaves_with_path(rest)
            if any(getattr(p, "key", None) == "mean" for p in path)]


@pytest.mark.parametrize("name,T,patterns", [
    ("digits_dvs", None, ("inside_grad", "nnx_grad")),
    ("dvs_gesture", None, ("inside_grad",)),  # the default Gesture config: T = 60, batch_chunks 'auto'
])
def test_plain_flax_step_on_default_config(name, T, patterns):
    config = _config(name)
    model = models.build(config.model, rngs=nnx.Rngs(0))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)
    h, w, c = model.input_shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.poisson(1.0, (2, model.T, h, w, c)).astype(np.float32))
    y = jnp.asarray([1, 0], jnp.int32)

    # The library's step (merges with copy=True) is the reference.
    lib_tx = optax.adam(1e-3)
    task = training.EventTask(num_classes=model.num_classes, loss="mse")
    ref_graphdef, ref_state = training.init_state(models.build(config.model, rngs=nnx.Rngs(0)), lib_tx)
    ref_state, metrics = jax.jit(functools.partial(training.train_step, graphdef=ref_graphdef, tx=lib_tx, task=task))(
        ref_state, {"frames": x, "label": y})
    assert 0 < float(metrics["firing_rate"]) < 1, "the network under test must fire"
    assert bool(metrics["finite"])

    before = _bn_means(rest)
    for pattern in patterns:
        make = _plain_step_inside_grad if pattern == "inside_grad" else _plain_step_nnx_grad
        new_params, new_rest, _, loss = make(graphdef, tx)(params, rest, tx.init(params), x, y)
        np.testing.assert_allclose(float(loss), float(metrics["loss"]), rtol=1e-6)
        after = _bn_means(new_rest)
        assert len(after) == len(before) > 0
        assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before)), "BatchNorm statistics must update"
        for a, b in zip(after, _bn_means(ref_state["rest"])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(ref_state["params"])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
