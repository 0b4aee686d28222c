"""Model families behind one registry: :func:`build` ``(config.model, rngs=...)`` dispatches on ``config.model.name``.

Families (each a module of this package that registers itself, see :mod:`masnn_jax.models.registry`):

* ``'masnn'`` — the MA-SNN event nets (DVS128 Gesture, Gait, CIFAR10-DVS): :mod:`masnn_jax.models.masnn_event`.

Every model follows :class:`~masnn_jax.models.registry.SpikingModel`.
"""

from __future__ import annotations

from masnn_jax.models.registry import (
    INPUT_KINDS, OP_INPUTS, Family, OpCount, SpikingModel, build, families, get_family, parse_dtype, register,
)

__all__ = ["build", "register", "families", "get_family", "Family", "SpikingModel", "OpCount", "OP_INPUTS",
           "INPUT_KINDS", "parse_dtype", "execution_keys"]


def execution_keys(name: str = "masnn") -> tuple[str, ...]:
    """The ``config.model`` keys of family ``name`` that change how the network is computed, not its parameters."""
    return get_family(name).execution_keys
