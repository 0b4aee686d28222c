"""Shared pytest fixtures for masnn-jax tests."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil

import jax
import numpy as np
import pytest


@contextlib.contextmanager
def _x64_enabled():
    # jax 0.10 has the context manager ``jax.enable_x64`` (``jax.experimental.enable_x64`` is gone); fall back to a
    # global config flip, restored on exit, for versions without it.
    ctx = getattr(jax, "enable_x64", None)
    if ctx is not None:
        with ctx(True):
            yield
        return
    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def x64():
    """Turns on ``jax_enable_x64`` for one test and restores the previous setting afterwards."""
    before = jax.numpy.zeros(()).dtype
    with _x64_enabled():
        assert jax.numpy.zeros(()).dtype == np.float64
        yield
    assert jax.numpy.zeros(()).dtype == before


@pytest.fixture
def rng():
    """A seeded NumPy generator (tests stay deterministic)."""
    return np.random.default_rng(20230929)


@pytest.fixture(scope="session")
def sj():
    """SpikingJelly's ``activation_based`` modules (``neuron``, ``surrogate``) plus torch, or skip.

    They come with the optional ``parity`` extra (CPU torch + spikingjelly 2.0.0).
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("spikingjelly")
    neuron = importlib.import_module("spikingjelly.activation_based.neuron")
    surrogate = importlib.import_module("spikingjelly.activation_based.surrogate")
    return type("SJ", (), {"torch": torch, "neuron": neuron, "surrogate": surrogate})


@pytest.fixture(scope="session")
def run_once(tmp_path_factory):
    """``run_once(name, make)``: ``make(folder)``'s JSON result, computed once per test session also under
    pytest-xdist (see :func:`_run_once`)."""
    return lambda name, make: _run_once(tmp_path_factory, name, make)


def _run_once(tmp_path_factory, name, make):
    """``make(folder)``'s JSON result, computed once per test session also under pytest-xdist.

    Each xdist worker builds its own module fixtures, so a costly one (a training run several tests inspect) would
    run once per worker. Here the first worker to ask runs ``make`` in ``<session temp>/shared-<name>/`` (a folder all
    workers see) under an exclusive file lock; the others wait on the lock and reuse the result. A ``make`` that
    raised leaves no result: the next worker tries again (and fails the same way). Tests must not change the folder
    (copy it first).
    """
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-<user>/pytest-<n>/, the parent of every worker's popen-gw<k>/
    folder = root / f"shared-{name}"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / f"shared-{name}.json"
        if done.exists():
            return json.loads(done.read_text())
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        result = make(folder)
        done.write_text(json.dumps(result))
        return result
