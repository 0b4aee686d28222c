"""Training: pure steps (:mod:`~masnn_jax.train.steps`), tasks (loss, metrics, evaluation), optimisers and
schedules, the data-parallel mesh, checkpoints, metrics and the loop behind ``train.py``.

Layering: ``steps``, ``tasks``, ``optim``, ``mesh``, ``compile``, ``workdir`` and ``metrics`` import nothing above
:mod:`masnn_jax.nn`; ``checkpoint`` adds :mod:`masnn_jax.models`; ``loop`` and ``mixing`` (Mixup/CutMix on
the host batch) add :mod:`masnn_jax.data`.
"""

from masnn_jax.train.checkpoint import load_model, save_model_checkpoint
from masnn_jax.train.compile import CompiledStep, enable_compilation_cache, release_host_memory
from masnn_jax.train.loop import (NonFiniteError, Trainer, evaluate_checkpoint, train_and_evaluate, validate_seed,
                                  validate_train_config)
from masnn_jax.train.mesh import make_mesh, shard_batch
from masnn_jax.train.optim import current_lr, make_optimizer
from masnn_jax.train.steps import eval_step, init_state, network_firing_rate, train_step
from masnn_jax.train.tasks import EventTask, ImageTask, loss_fn, soft_target_cross_entropy, task_from_config
from masnn_jax.train.workdir import WorkdirInUseError, workdir_lock

__all__ = [
    "train_step", "eval_step", "init_state", "network_firing_rate",
    "EventTask", "ImageTask", "loss_fn", "soft_target_cross_entropy", "task_from_config",
    "make_optimizer", "current_lr", "make_mesh", "shard_batch", "CompiledStep", "release_host_memory", "enable_compilation_cache", "NonFiniteError",
    "Trainer", "train_and_evaluate", "evaluate_checkpoint", "validate_train_config", "validate_seed",
    "load_model", "save_model_checkpoint", "WorkdirInUseError", "workdir_lock",
]
