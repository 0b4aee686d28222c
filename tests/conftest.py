"""Shared pytest fixtures for masnn-jax tests."""

from __future__ import annotations

import contextlib
import importlib

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
