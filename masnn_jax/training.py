"""Training and evaluation loop behind ``train.py``: functional jit steps, data parallelism, checkpoints, metrics.

Design:

* The model is an ``nnx.Module``; it is split once (``nnx.split``) into a graph definition and a state pytree, and
  the train/eval steps are plain ``jax.jit`` functions of that pytree that call ``nnx.merge`` inside.
* Data parallelism: one ``jax.sharding.Mesh`` with a single ``'data'`` axis over every device (all processes' when
  ``jax.distributed`` is initialised). Batches are sharded over B with ``NamedSharding(mesh, P('data'))``; parameters
  and optimiser state are replicated. The mesh axis is ``AxisType.Auto``, so the compiler propagates shardings
  through the model's ``(B, T) -> (B·T)`` reshapes and computes BatchNorm statistics over the *global* batch, which
  makes a step on N devices equal to a step on one.
* Optimiser: optax Adam (or SGD), with ``optax.contrib.reduce_on_plateau`` on the training loss accumulated over one
  epoch — the official ``ReduceLROnPlateau(factor=0.1, patience=5)`` stepped once per epoch on the training loss.
* Checkpoints: orbax ``CheckpointManager`` in ``<workdir>/checkpoints`` (state pytree + JSON metadata with epoch,
  batch within the epoch and the config). Rerunning on the same workdir resumes from the latest one; SIGTERM saves
  one before exiting. The data order is a pure function of (seed, epoch), so resuming mid-epoch skips to the batch.
* Metrics: one JSON object per line in ``<workdir>/metrics.jsonl`` and TensorBoard event files in
  ``<workdir>/tensorboard`` (tensorboardX, no TensorFlow needed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from masnn_jax import layers, models

__all__ = [
    "WorkdirInUseError",
    "release_host_memory",
    "CompiledStep",
    "make_mesh",
    "make_optimizer",
    "loss_fn",
    "network_firing_rate",
    "Trainer",
    "train_and_evaluate",
    "evaluate_checkpoint",
    "save_model_checkpoint",
    "load_model",
]


# --- pieces --------------------------------------------------------------------------------------------------------


class WorkdirInUseError(RuntimeError):
    """Another training run holds ``<workdir>/.lock``: two runs must not write one workdir's checkpoints."""


@contextlib.contextmanager
def _workdir_lock(workdir: str):
    """Holds an exclusive ``flock`` on ``<workdir>/.lock`` (process 0 only) for the life of a training run.

    Raises:
      WorkdirInUseError: another live run holds it (the message names its pid and host). The lock dies with the
        process that held it, so a killed run never leaves a stale lock behind.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    if jax.process_index() != 0:
        yield
        return
    path = os.path.join(workdir, ".lock")
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown process"
        f.close()
        raise WorkdirInUseError(
            f"{workdir} is in use by another training run ({holder}); wait for it to end, stop it, or choose "
            "another --workdir"
        ) from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def release_host_memory() -> bool:
    """Returns the C heap's free pages to the operating system (glibc ``malloc_trim(0)``).

    XLA's CPU compiler (LLVM) allocates several hundred MB while compiling a training step and frees it afterwards,
    but glibc keeps the freed pages mapped, so they add to the peak resident memory of the steps that follow (on the
    Gesture net at T = 60: 0.96 GB resident before the first step, 0.54 GB after the trim). Returns True when the
    trim ran; False where there is no glibc (macOS, musl), where it does nothing.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


def _note_batch_chunks(config: ml_collections.ConfigDict, n_dev: int) -> None:
    """Logs a warning when ``config.model.batch_chunks`` does not divide the per-device batch and so runs as fewer
    chunks (:func:`masnn_jax.layers.effective_batch_chunks`)."""
    chunks = int(config.model.get("batch_chunks", 1) or 1)
    per_device = int(config.train.batch_size) // n_dev
    used = layers.effective_batch_chunks(chunks, per_device)
    if used != chunks:
        logging.warning(
            "config.model.batch_chunks=%d does not divide the per-device batch %d (config.train.batch_size=%d over "
            "%d device(s)); training runs %d chunk(s) (less memory saved). Pick a divisor of %d.",
            chunks, per_device, int(config.train.batch_size), n_dev, used, per_device)


class CompiledStep:
    """A ``jax.jit``-ed step compiled ahead of time on its first call, after which :func:`release_host_memory` returns
    the compiler's freed heap to the OS before the step first runs (lower peak memory on CPU; harmless elsewhere).

    Args:
      jitted: a ``jax.jit``-wrapped function (donation and static arguments as it declares them).
    Call: ``step(*args)`` returns what ``jitted(*args)`` returns. Later calls with the same argument structure,
    shapes, dtypes and shardings reuse the executable; other arguments compile again. ``lower`` is the jitted
    function's (for cost analysis). Raises what compilation or the executable raise.
    """

    def __init__(self, jitted):
        self.jitted = jitted
        self._key = None
        self._compiled = None

    @staticmethod
    def _signature(args):
        leaves, treedef = jax.tree_util.tree_flatten(args)
        return treedef, tuple((jnp.shape(a), jnp.result_type(a), getattr(a, "sharding", None)) for a in leaves)

    def lower(self, *args):
        return self.jitted.lower(*args)

    def __call__(self, *args):
        key = self._signature(args)
        if self._compiled is None or key != self._key:
            self._compiled = self.jitted.lower(*args).compile()
            self._key = key
            release_host_memory()
        return self._compiled(*args)


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D ``('data',)`` mesh over ``devices`` (default: all devices of all processes), axis type Auto."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.sharding.Mesh(np.asarray(devices), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def make_optimizer(train_cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformationExtraArgs:
    """The optimiser from ``config.train``.

    Keys: ``optimizer`` ('adam' | 'sgd'), ``learning_rate``, ``b1``, ``b2``, ``eps`` (Adam), ``momentum`` (SGD),
    ``weight_decay`` (L2 added to the gradient, as PyTorch's ``weight_decay``), ``schedule`` ('plateau' | 'cosine' |
    'constant'), ``plateau_factor``, ``plateau_patience``, ``num_epochs`` (cosine length).
    The 'plateau' schedule's update takes the training loss as ``value=``.

    Raises:
      ValueError: unknown ``config.train.optimizer`` or ``config.train.schedule``.
    """
    lr = float(train_cfg.learning_rate)
    schedule = train_cfg.get("schedule", "plateau")
    if schedule == "cosine":
        lr = optax.cosine_decay_schedule(lr, max(1, int(train_cfg.num_epochs) * steps_per_epoch))
    elif schedule not in ("plateau", "constant"):
        raise ValueError(f"config.train.schedule must be 'plateau', 'cosine' or 'constant', got {schedule!r}")
    name = train_cfg.get("optimizer", "adam")
    parts = []
    if float(train_cfg.get("weight_decay", 0.0)):
        parts.append(optax.add_decayed_weights(float(train_cfg.weight_decay)))
    if name == "adam":
        parts.append(
            optax.adam(lr, b1=float(train_cfg.get("b1", 0.9)), b2=float(train_cfg.get("b2", 0.999)),
                       eps=float(train_cfg.get("eps", 1e-8)))
        )
    elif name == "sgd":
        parts.append(optax.sgd(lr, momentum=float(train_cfg.get("momentum", 0.9))))
    else:
        raise ValueError(f"config.train.optimizer must be 'adam' or 'sgd', got {name!r}")
    if schedule == "plateau":
        parts.append(
            optax.contrib.reduce_on_plateau(
                factor=float(train_cfg.get("plateau_factor", 0.1)),
                patience=int(train_cfg.get("plateau_patience", 5)),
                rtol=1e-4,  # PyTorch's default threshold (mode 'rel')
                accumulation_size=steps_per_epoch,
            )
        )
    return optax.chain(*parts)


def current_lr(train_cfg, opt_state, step: int, steps_per_epoch: int) -> float:
    """The learning rate in force (base rate × plateau scale, or the cosine value at ``step``)."""
    lr = float(train_cfg.learning_rate)
    schedule = train_cfg.get("schedule", "plateau")
    if schedule == "cosine":
        total = max(1, int(train_cfg.num_epochs) * steps_per_epoch)
        return float(optax.cosine_decay_schedule(lr, total)(step))
    if schedule == "plateau":
        plateau = opt_state[-1]
        return lr * float(plateau.scale)
    return lr


def loss_fn(kind: str, outputs: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """Per-sample training loss.

    Args:
      kind: 'mse' (official: mean squared error between the time-averaged output and the one-hot label, averaged
        over classes, as ``nn.MSELoss``) or 'cross_entropy' (softmax cross-entropy on the outputs).
      outputs: ``(B, num_classes)`` float; labels: ``(B,)`` int.
    Returns:
      ``(B,)`` float32 losses.
    Raises:
      ValueError: unknown ``config.train.loss``.
    """
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    outputs = outputs.astype(jnp.float32)
    if kind == "mse":
        return jnp.mean(jnp.square(outputs - onehot), axis=-1)
    if kind == "cross_entropy":
        return optax.softmax_cross_entropy(outputs, onehot)
    raise ValueError(f"config.train.loss must be 'mse' or 'cross_entropy', got {kind!r}")


def _set_record(model: nnx.Module, on: bool) -> None:
    for layer in getattr(model, "spiking_layers", []):
        layer.record = on


def network_firing_rate(intermediates, mask: jax.Array | None = None) -> jax.Array:
    """Neuron-count-weighted mean firing rate from the ``activity`` intermediates the spiking layers sow.

    Each layer sows, per sample, ``[spike count, T·neurons]`` (shape ``(B, 2)``); the result is
    ``Σ spikes / Σ (T·neurons)`` over layers and the samples where ``mask`` (``(B,)``, optional) is non-zero — the
    neuron-count-weighted network average the paper reports (Yao et al., TPAMI 2023, energy evaluation). Returns a float32 scalar (0 if nothing
    was recorded).
    """
    leaves = [jnp.asarray(v) for v in jax.tree_util.tree_leaves(intermediates)]
    if not leaves:
        return jnp.float32(0)
    per_sample = sum(leaf.reshape(-1, leaf.shape[-2], 2).sum(0) for leaf in leaves)  # (B, 2)
    if mask is not None:
        per_sample = per_sample * mask[:, None]
    total = per_sample.sum(0)
    return total[0] / jnp.maximum(total[1], 1.0)


_LOSSES = ("mse", "cross_entropy")


def validate_train_config(tc: ml_collections.ConfigDict) -> None:
    """Checks ``config.train`` before anything is built or written.

    Raises:
      ValueError: naming the key: non-positive ``batch_size``, ``eval_batch_size``, ``num_epochs`` or
        ``learning_rate``; unknown ``loss``, ``optimizer`` or ``schedule``; negative ``checkpoint_every_steps``.
    """
    for key in ("batch_size", "eval_batch_size", "num_epochs"):
        value = tc.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"config.train.{key} must be a positive integer, got {value!r}")
    if not float(tc.learning_rate) > 0:
        raise ValueError(f"config.train.learning_rate must be > 0, got {tc.learning_rate!r}")
    if tc.get("loss", "mse") not in _LOSSES:
        raise ValueError(f"config.train.loss must be one of {_LOSSES}, got {tc.get('loss')!r}")
    if tc.get("optimizer", "adam") not in ("adam", "sgd"):
        raise ValueError(f"config.train.optimizer must be 'adam' or 'sgd', got {tc.get('optimizer')!r}")
    if tc.get("schedule", "plateau") not in ("plateau", "cosine", "constant"):
        raise ValueError(
            f"config.train.schedule must be 'plateau', 'cosine' or 'constant', got {tc.get('schedule')!r}"
        )
    if int(tc.get("checkpoint_every_steps", 0) or 0) < 0:
        raise ValueError(f"config.train.checkpoint_every_steps must be >= 0, got {tc.checkpoint_every_steps!r}")


# --- the trainer ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Progress:
    epoch: int = 0  # epoch being run (0-based)
    batch: int = 0  # next batch within that epoch
    step: int = 0  # optimiser steps done
    # running sums of this epoch's training metrics (so that a resumed epoch reports what an uninterrupted one does)
    sums: dict = dataclasses.field(default_factory=lambda: {"loss": 0.0, "accuracy": 0.0, "firing_rate": 0.0, "n": 0})


class Trainer:
    """Holds the model state, the jit-compiled steps, the mesh and the data for one run.

    Args:
      config: the run's ``ml_collections.ConfigDict`` (``model``, ``data``, ``train``, ``seed``).
      workdir: run directory (metrics, TensorBoard, checkpoints).
      devices: devices to use (default: all).
    Raises:
      ValueError: a global batch size not divisible by the device count, or bad config values (named).
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, devices=None, *, need_train_data: bool = True):
        self.config = config
        self.workdir = os.path.abspath(workdir)
        self.mesh = make_mesh(devices)
        n_dev = self.mesh.devices.size
        tc = config.train
        validate_train_config(tc)
        for key in ("batch_size", "eval_batch_size"):
            if int(tc[key]) % n_dev:
                raise ValueError(f"config.train.{key}={tc[key]} must be divisible by the device count {n_dev}")
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        self.replicated = NamedSharding(self.mesh, P())

        from masnn_jax import data as data_lib  # imported here: the step functions and optimiser need no data stack

        self.test_set = data_lib.build(config.data, "test")
        self.train_set = data_lib.build(config.data, "train") if need_train_data else None
        self.steps_per_epoch = (
            data_lib.num_batches(self.train_set, int(tc.batch_size), drop_remainder=True) if need_train_data else 1
        )
        if need_train_data and self.steps_per_epoch == 0:
            raise ValueError(
                f"config.train.batch_size={tc.batch_size} exceeds the {len(self.train_set)} training samples"
            )

        model = models.build(config.model, rngs=nnx.Rngs(int(config.seed)))
        model.set_data_shards(n_dev)
        _note_batch_chunks(config, n_dev)
        self.num_classes = model.num_classes
        if self.test_set.num_classes != model.num_classes:
            raise ValueError(
                f"config.model.num_classes={model.num_classes} but dataset {config.data.name!r} has "
                f"{self.test_set.num_classes} classes"
            )
        model.train()
        self.graphdef_train, params, rest = nnx.split(model, nnx.Param, ...)
        model.eval()
        self.graphdef_eval = nnx.graphdef(model)
        self.tx = make_optimizer(tc, self.steps_per_epoch)
        state = {"params": params, "rest": rest, "opt_state": self.tx.init(params)}
        self.state = jax.device_put(state, self.replicated)
        self.progress = _Progress()
        self._train_step = CompiledStep(jax.jit(self._train_step_impl, donate_argnums=(0,)))
        self._eval_step = jax.jit(self._eval_step_impl)
        self._stop_requested = False

    # -- steps (pure functions of the state pytree) --

    def _train_step_impl(self, state, frames, labels):
        def compute_loss(params):
            model = nnx.merge(self.graphdef_train, params, state["rest"], copy=True)
            _set_record(model, True)
            outputs, intermediates = nnx.capture(model, nnx.Intermediate)(frames)
            losses = loss_fn(self.config.train.loss, outputs, labels, self.num_classes)
            new_rest = nnx.state(model, nnx.Not(nnx.Param))
            return losses.mean(), (outputs, new_rest, intermediates)

        (loss, (outputs, new_rest, inter)), grads = jax.value_and_grad(compute_loss, has_aux=True)(state["params"])
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"], value=loss)
        params = optax.apply_updates(state["params"], updates)
        metrics = {
            "loss": loss,
            "accuracy": jnp.mean(jnp.argmax(outputs, -1) == labels),
            "firing_rate": network_firing_rate(inter),
        }
        return {"params": params, "rest": new_rest, "opt_state": opt_state}, metrics

    def _eval_step_impl(self, state, frames, labels, mask):
        # frames: (B, n, T, H, W, C) — n windows per recording; a recording counts as correct when more than half
        # of its windows are classified correctly (official test procedure).
        b, n = frames.shape[:2]
        model = nnx.merge(self.graphdef_eval, state["params"], state["rest"], copy=True)
        _set_record(model, True)
        outputs, inter = nnx.capture(model, nnx.Intermediate)(frames.reshape((b * n,) + frames.shape[2:]))
        losses = loss_fn(self.config.train.loss, outputs, jnp.repeat(labels, n), self.num_classes).reshape(b, n)
        correct = (jnp.argmax(outputs, -1) == jnp.repeat(labels, n)).reshape(b, n)
        sample_correct = correct.sum(1) * 2 > n
        mask = mask.astype(jnp.float32)
        window_mask = jnp.repeat(mask, n)
        return {
            "loss_sum": jnp.sum(losses.mean(1) * mask),
            "correct": jnp.sum(sample_correct * mask),
            "count": jnp.sum(mask),
            "spike_rate": network_firing_rate(inter, window_mask),
        }

    # -- data --

    def _shard(self, array: np.ndarray) -> jax.Array:
        """Global batch (every process draws the same one: the order is a function of seed and epoch) -> a jax.Array
        sharded over the mesh's 'data' axis; each process contributes its own contiguous slice of rows."""
        array = np.asarray(array)
        n_proc = jax.process_count()
        if n_proc > 1:
            per = array.shape[0] // n_proc
            array = array[jax.process_index() * per:(jax.process_index() + 1) * per]
        return jax.make_array_from_process_local_data(self.batch_sharding, array)

    def _train_batches(self, epoch: int, start_batch: int) -> Iterator[dict]:
        from masnn_jax import data as data_lib

        tc = self.config.train
        return iter(
            data_lib.make_loader(
                self.train_set, batch_size=int(tc.batch_size), shuffle=True, seed=int(self.config.seed), epoch=epoch,
                drop_remainder=True, num_workers=int(tc.get("num_workers", 0)), start_batch=start_batch,
            )
        )

    # -- public API --

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Evaluates the current state on ``split``; returns ``{'loss', 'accuracy', 'firing_rate', 'count'}``.

        The last partial batch is padded to the full batch size and masked, so every batch has one shape.
        """
        from masnn_jax import data as data_lib

        dataset = self.test_set if split == "test" else data_lib.build(self.config.data, split)
        bs = int(self.config.train.eval_batch_size)
        totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
        rates = []
        loader = data_lib.make_loader(dataset, batch_size=bs, shuffle=False, seed=0, epoch=0, drop_remainder=False)
        for batch in loader:
            frames, labels = np.asarray(batch["frames"]), np.asarray(batch["label"], np.int32)
            if frames.ndim == 5:  # a split without test windows: one window per recording
                frames = frames[:, None]
            k = frames.shape[0]
            mask = np.zeros(bs, np.float32)
            mask[:k] = 1
            if k < bs:
                frames = np.concatenate([frames, np.zeros((bs - k,) + frames.shape[1:], frames.dtype)])
                labels = np.concatenate([labels, np.zeros(bs - k, np.int32)])
            out = self._eval_step(self.state, self._shard(frames), self._shard(labels), self._shard(mask))
            out = jax.device_get(out)
            for key in totals:
                totals[key] += float(out[key])
            rates.append((float(out["spike_rate"]), k))
        count = max(totals["count"], 1.0)
        firing = sum(r * k for r, k in rates) / max(sum(k for _, k in rates), 1)
        return {
            "loss": totals["loss_sum"] / count,
            "accuracy": totals["correct"] / count,
            "firing_rate": firing,
            "count": int(totals["count"]),
        }

    def request_stop(self, signum=None, _frame=None) -> None:
        """Asks the training loop to save a checkpoint and return after the current step (the SIGTERM and SIGINT
        handler). A second SIGINT (Ctrl-C pressed twice) stops at once, without a checkpoint."""
        if self._stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._stop_requested = True


# --- checkpoints ---------------------------------------------------------------------------------------------------


def _existing_checkpoint_dir(workdir: str) -> str:
    """``<workdir>/checkpoints``; FileNotFoundError (naming it) when it does not exist."""
    ckpt_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"no checkpoints in {ckpt_dir}: train first, or pass the --workdir of a trained run")
    return ckpt_dir


def _checkpoint_manager(workdir: str, max_to_keep: int, create: bool = True) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create),
    )


def _save(manager: ocp.CheckpointManager, trainer: Trainer) -> None:
    """Saves the state and progress as step ``trainer.progress.step`` (skipped when that step is already saved)."""
    if trainer.progress.step in manager.all_steps():
        return
    meta = dataclasses.asdict(trainer.progress) | {"config": trainer.config.to_json()}
    manager.save(
        trainer.progress.step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(trainer.state), meta=ocp.args.JsonSave(meta)),
        force=True,
    )
    manager.wait_until_finished()


def _flat(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}.{key}"))
        return out
    return {prefix: tree}


def config_differences(stored_json: str, config: ml_collections.ConfigDict, sections=("model",)) -> list[str]:
    """Lines ``config.<section>.<key>: checkpoint <a>, this run <b>`` for every value of ``sections`` that differs
    between a checkpoint's stored config (JSON) and ``config``; ``config.model`` keys that only change how the
    network is computed (:data:`masnn_jax.models.EXECUTION_KEYS`: dtype, conv_impl, remat, ...) are not compared."""
    stored, current = json.loads(stored_json), json.loads(config.to_json())
    ignored = {f"config.model.{key}" for key in models.EXECUTION_KEYS}
    lines = []
    for section in sections:
        a = _flat(stored.get(section, {}), f"config.{section}")
        b = _flat(current.get(section, {}), f"config.{section}")
        for key in sorted(set(a) | set(b)):
            if key in ignored:
                continue
            if a.get(key, "<absent>") != b.get(key, "<absent>"):
                lines.append(f"{key}: checkpoint {a.get(key, '<absent>')!r}, this run {b.get(key, '<absent>')!r}")
    return lines


def _first_line(e: Exception) -> str:
    """An exception's message cut to its first line and to what precedes TensorStore's "See full ... details"."""
    text = (str(e).splitlines() or [""])[0]
    return text.split(" See full")[0][:300]


def _restore_state(
    manager: ocp.CheckpointManager, abstract: Any, config: ml_collections.ConfigDict, step: int | None = None
) -> tuple[int, Any, dict] | None:
    """Restores ``(step, state, meta)`` from the latest readable checkpoint (or exactly ``step``); None if none.

    The stored ``config.model`` must equal ``config.model`` (else ValueError listing the differing keys). A
    checkpoint that cannot be read (truncated or corrupt files) is reported on stderr and the next older one is
    tried; nothing is deleted. Raises FileNotFoundError for a ``step`` that does not exist, ValueError when no
    checkpoint is readable.
    """
    directory = str(manager.directory)
    steps = sorted(manager.all_steps(), reverse=True)
    if step is not None:
        if step not in steps:
            raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; available steps: {sorted(steps)}")
        steps = [step]
    problems = []
    for s in steps:
        try:
            meta = manager.restore(s, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # noqa: BLE001 — orbax/tensorstore raise many types for unreadable files
            problems.append(f"{directory}/{s}: metadata unreadable ({type(e).__name__}: {_first_line(e)})")
            print(f"warning: {problems[-1]}; trying an older checkpoint", file=sys.stderr, flush=True)
            continue
        diffs = config_differences(meta.get("config", "{}"), config)
        if diffs:
            raise ValueError(
                f"checkpoint {directory}/{s} was written by a run with another model configuration:\n  "
                + "\n  ".join(diffs)
                + "\nUse a new --workdir for a different model, or repeat that run's --config overrides."
            )
        try:
            state = manager.restore(s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
        except Exception as e:  # noqa: BLE001
            problems.append(f"{directory}/{s}: unreadable ({type(e).__name__}: {_first_line(e)})")
            if step is not None:
                break
            print(f"warning: checkpoint {problems[-1]}; trying an older checkpoint", file=sys.stderr, flush=True)
            continue
        return s, state, meta
    if problems:
        raise ValueError("no readable checkpoint:\n  " + "\n  ".join(problems))
    return None


def _set_aside_newer_checkpoints(manager: ocp.CheckpointManager, workdir: str, resumed_step: int | None) -> None:
    """Before training resumes from an older checkpoint because the newer ones were unreadable: moves those to
    ``<workdir>/checkpoints_unreadable/<step>`` (kept for inspection, never deleted), so that the steps this run
    trains again are saved instead of being skipped as already present. Process 0 only."""
    newer = [s for s in manager.all_steps() if resumed_step is None or s > resumed_step]
    if not newer or jax.process_index() != 0:
        return
    aside = os.path.join(workdir, "checkpoints_unreadable")
    os.makedirs(aside, exist_ok=True)
    for s in newer:
        target = os.path.join(aside, str(s))
        while os.path.exists(target):
            target += "_"
        os.replace(os.path.join(str(manager.directory), str(s)), target)
        print(f"warning: moved unreadable checkpoint step {s} to {target} (kept, not deleted); training redoes it",
              file=sys.stderr, flush=True)
    manager.reload()


def _restore(manager: ocp.CheckpointManager, trainer: Trainer, step: int | None = None) -> bool:
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), trainer.state
    )
    found = _restore_state(manager, abstract, trainer.config, step)
    if found is None:
        return False
    _, trainer.state, meta = found
    trainer.progress = _Progress(epoch=int(meta["epoch"]), batch=int(meta["batch"]), step=int(meta["step"]))
    if "sums" in meta:
        trainer.progress.sums = dict(meta["sums"])
    if trainer.progress.batch > 0:
        stored_bs = json.loads(meta.get("config", "{}")).get("train", {}).get("batch_size")
        if stored_bs is not None and int(stored_bs) != int(trainer.config.train.batch_size):
            raise ValueError(
                f"checkpoint {manager.directory}/{found[0]} stopped inside epoch {trainer.progress.epoch + 1} with "
                f"config.train.batch_size={stored_bs}; resuming it with batch_size="
                f"{trainer.config.train.batch_size} would skip or repeat data. Resume with the same batch size."
            )
    return True


# --- metrics -------------------------------------------------------------------------------------------------------


class _MetricWriter:
    """Appends JSON lines to ``metrics.jsonl`` and scalars to TensorBoard (tensorboardX)."""

    def __init__(self, workdir: str, resume_step: int | None):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = jax.process_index() == 0  # one writer in multi-host runs
        self.tb = None
        if not self.enabled:
            return
        if resume_step is not None and os.path.exists(self.path):
            # Rows past the checkpoint describe progress that the resumed run redoes: drop them (atomically).
            with open(self.path) as f:
                rows = [line for line in f if line.strip()]
            keep = []
            for line in rows:
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(keep)
            os.replace(tmp, self.path)
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for key, value in row.items():
            if key not in ("step", "epoch", "split") and isinstance(value, (int, float)):
                self.tb.add_scalar(f"{row['split']}/{key}", value, row["step"])
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# --- entry points --------------------------------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, devices=None, progress_bar: bool = True) -> dict:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint; evaluates after every epoch.

    Returns the last test metrics (``loss``, ``accuracy``, ``firing_rate``, ...) and ``stopped`` (True when a
    SIGTERM ended the run early). Writes ``metrics.jsonl``, TensorBoard files and checkpoints under ``workdir``.
    Raises:
      ValueError: bad config values (named), or a checkpoint that does not fit the model.
      WorkdirInUseError: another training run is using ``workdir`` (``<workdir>/.lock``).
    """
    trainer = Trainer(config, workdir, devices)  # validates the config and finds the data before anything is written
    os.makedirs(workdir, exist_ok=True)
    with _workdir_lock(workdir):
        return _train_locked(trainer, config, workdir, progress_bar)


def _train_locked(trainer: "Trainer", config: ml_collections.ConfigDict, workdir: str, progress_bar: bool) -> dict:
    """:func:`train_and_evaluate` once the workdir lock is held."""
    tc = config.train
    manager = _checkpoint_manager(workdir, int(tc.get("max_to_keep", 3)))
    resumed = _restore(manager, trainer)
    _set_aside_newer_checkpoints(manager, workdir, trainer.progress.step if resumed else None)
    writer = _MetricWriter(workdir, trainer.progress.step if resumed else None)
    if resumed:
        print(f"Resuming from {manager.directory}/{trainer.progress.step} (epoch {trainer.progress.epoch + 1}, "
              f"batch {trainer.progress.batch})", flush=True)
    handlers = (
        {sig: signal.signal(sig, trainer.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        if _is_main_thread() else {}
    )
    num_epochs = int(tc.num_epochs)
    ckpt_every = int(tc.get("checkpoint_every_steps", 0) or 0)
    last_eval: dict = {}
    try:
        from tqdm.auto import tqdm

        if trainer.progress.epoch >= num_epochs:
            print(f"{workdir} already holds {trainer.progress.epoch} epochs (config.train.num_epochs={num_epochs}); "
                  "evaluating its latest checkpoint. Raise --config.train.num_epochs to train further.", flush=True)
            last_eval = trainer.evaluate("test")

        while trainer.progress.epoch < num_epochs:
            epoch = trainer.progress.epoch
            start = trainer.progress.batch
            t0 = time.time()
            sums = trainer.progress.sums
            bar = tqdm(total=trainer.steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{num_epochs}",
                       disable=None if progress_bar else True, leave=False, dynamic_ncols=True)
            for batch in trainer._train_batches(epoch, start):
                frames = trainer._shard(np.asarray(batch["frames"]))
                labels = trainer._shard(np.asarray(batch["label"], np.int32))
                trainer.state, metrics = trainer._train_step(trainer.state, frames, labels)
                trainer.progress.batch += 1
                trainer.progress.step += 1
                sums["n"] += 1
                for key in ("loss", "accuracy", "firing_rate"):
                    sums[key] += float(metrics[key])
                bar.update(1)
                bar.set_postfix(loss=f"{float(metrics['loss']):.4f}", acc=f"{float(metrics['accuracy']):.3f}")
                if trainer._stop_requested:
                    break
                if (ckpt_every and trainer.progress.step % ckpt_every == 0
                        and trainer.progress.batch < trainer.steps_per_epoch):  # the epoch's end saves anyway
                    _save(manager, trainer)
            bar.close()
            if trainer._stop_requested:
                _save(manager, trainer)
                print(f"Stop requested (SIGTERM/SIGINT): saved checkpoint at step {trainer.progress.step}; rerun the "
                      "same command to resume.", flush=True)
                return {"stopped": True, **last_eval}
            trainer.progress.epoch += 1
            trainer.progress.batch = 0
            n = sums.pop("n")
            trainer.progress.sums = {"loss": 0.0, "accuracy": 0.0, "firing_rate": 0.0, "n": 0}
            seconds = time.time() - t0
            lr = current_lr(tc, trainer.state["opt_state"], trainer.progress.step, trainer.steps_per_epoch)
            if n:
                writer.write({"step": trainer.progress.step, "epoch": epoch + 1, "split": "train",
                              **{k: v / n for k, v in sums.items()}, "lr": lr, "seconds": seconds})
            if (epoch + 1) % int(tc.get("eval_every_epochs", 1)) == 0 or epoch + 1 == num_epochs:
                t1 = time.time()
                last_eval = trainer.evaluate("test")
                writer.write({"step": trainer.progress.step, "epoch": epoch + 1, "split": "test",
                              "loss": last_eval["loss"], "accuracy": last_eval["accuracy"],
                              "firing_rate": last_eval["firing_rate"], "lr": lr, "seconds": time.time() - t1})
                train_loss = sums["loss"] / max(n, 1)
                print(f"epoch {epoch + 1:3d}/{num_epochs}  train loss {train_loss:.4f}  "
                      f"test loss {last_eval['loss']:.4f}  test acc {100 * last_eval['accuracy']:.2f}%  "
                      f"firing rate {last_eval['firing_rate']:.4f}  lr {lr:.2e}  {seconds:.1f}s", flush=True)
            _save(manager, trainer)
        return {"stopped": False, **last_eval}
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        writer.close()
        manager.close()


def save_model_checkpoint(model: nnx.Module, config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes ``model``'s weights as step 0 of ``<workdir>/checkpoints`` in the layout ``train.py`` uses (parameters,
    BatchNorm statistics, a fresh optimiser state from ``config.train``), so that ``train.py --mode=eval`` (or a
    fine-tuning run) loads it. Used by the official-weights converter.

    Returns the checkpoint directory. Raises FileExistsError when ``workdir`` already holds checkpoints (nothing is
    overwritten).
    """
    ckpt_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
        raise FileExistsError(f"{ckpt_dir} already holds checkpoints; choose an empty --out directory")
    _, params, rest = nnx.split(model, nnx.Param, ...)
    tx = make_optimizer(config.train, steps_per_epoch=1)
    state = {"params": params, "rest": rest, "opt_state": tx.init(params)}
    manager = _checkpoint_manager(workdir, int(config.train.get("max_to_keep", 3)))
    try:
        meta = dataclasses.asdict(_Progress()) | {"config": config.to_json()}
        manager.save(0, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()
    finally:
        manager.close()
    return ckpt_dir


def load_model(config: ml_collections.ConfigDict, workdir: str, *, step: int | None = None) -> tuple[nnx.Module, dict]:
    """Builds the model of ``config`` and loads the latest (or ``step``) checkpoint of ``<workdir>/checkpoints``.

    Returns ``(model, meta)``: the model in eval mode with the checkpoint's parameters and BatchNorm statistics,
    and the checkpoint's metadata (``step``, ``epoch``, ``batch``, ``config`` as JSON).
    Raises:
      FileNotFoundError: no checkpoint there. ValueError: a checkpoint that does not fit the model.
    """
    ckpt_dir = _existing_checkpoint_dir(workdir)
    # Built abstractly: the restore overwrites every value, so no initialiser needs to run (or compile).
    model = nnx.eval_shape(lambda: models.build(config.model, rngs=nnx.Rngs(int(config.seed))))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = make_optimizer(config.train, steps_per_epoch=1)
    abstract = jax.eval_shape(lambda p, r: {"params": p, "rest": r, "opt_state": tx.init(p)}, params, rest)
    manager = _checkpoint_manager(workdir, 3, create=False)
    try:
        found = _restore_state(manager, abstract, config, step)
    finally:
        manager.close()
    if found is None:
        raise FileNotFoundError(f"no checkpoint found in {ckpt_dir}")
    _, state, meta = found
    model = nnx.merge(graphdef, state["params"], state["rest"])
    model.eval()
    return model, meta


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, *, step: int | None = None, devices=None) -> dict:
    """Restores the latest (or ``step``) checkpoint of ``workdir`` and evaluates it on the test split.

    Raises:
      FileNotFoundError: no checkpoint in ``<workdir>/checkpoints``.
      ValueError: a checkpoint that does not fit the model built from ``config``.
    """
    ckpt_dir = _existing_checkpoint_dir(workdir)
    trainer = Trainer(config, workdir, devices, need_train_data=False)
    manager = _checkpoint_manager(workdir, 3, create=False)
    try:
        if not _restore(manager, trainer, step):
            raise FileNotFoundError(f"no checkpoint found in {ckpt_dir}")
        result = trainer.evaluate("test")
        return {"step": trainer.progress.step, "epoch": trainer.progress.epoch, **result}
    finally:
        manager.close()


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
