"""The training loop behind ``train.py``: a :class:`Trainer` (model state, jitted steps, mesh, data) and the entry
points :func:`train_and_evaluate` and :func:`evaluate_checkpoint`.

Rerunning on the same workdir resumes from its latest checkpoint (mid-epoch included: the data order is a function
of (seed, epoch)); SIGTERM / Ctrl-C save one before returning. Metrics go to ``metrics.jsonl`` and TensorBoard.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from typing import Iterator

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from masnn_jax import data as data_lib
from masnn_jax import models
from masnn_jax.snn import chunking
from masnn_jax.train import checkpoint as ckpt
from masnn_jax.train import mesh as mesh_lib
from masnn_jax.train import mixing, optim, steps, tasks
from masnn_jax.train.compile import CompiledStep
from masnn_jax.train.metrics import MetricWriter
from masnn_jax.train.workdir import WorkdirInUseError, check_workdir, make_workdir, workdir_lock

__all__ = ["validate_train_config", "validate_seed", "Trainer", "train_and_evaluate", "evaluate_checkpoint",
           "WorkdirInUseError", "NonFiniteError"]


def validate_train_config(tc: ml_collections.ConfigDict) -> None:
    """Checks ``config.train`` before anything is built or written.

    Raises:
      ValueError: naming the key: non-positive ``batch_size``, ``eval_batch_size`` or ``num_epochs``; bad optimiser
        or schedule keys (:func:`masnn_jax.train.optim.validate_optimizer_config`); unknown ``loss``; negative
        ``checkpoint_every_steps``; ``max_to_keep`` (orbax would delete every checkpoint it writes),
        ``eval_every_epochs`` or ``max_nonfinite_steps`` below 1; negative ``num_workers`` (0: in-process loading);
        bad ``mixup`` keys or mixing with loss 'mse'
        (:func:`masnn_jax.train.mixing.mixup_spec_from_config`, naming ``config.train.mixup.<key>``).
    """
    for key in ("batch_size", "eval_batch_size", "num_epochs", "max_to_keep", "eval_every_epochs",
                "max_nonfinite_steps"):
        value = tc.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"config.train.{key} must be a positive integer, got {value!r}")
    workers = tc.get("num_workers", 0)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"config.train.num_workers must be an integer >= 0, got {workers!r}")
    optim.validate_optimizer_config(tc)
    if tc.get("loss") is not None and tc.get("loss") not in tasks.LOSSES:
        raise ValueError(f"config.train.loss must be one of {tasks.LOSSES}, got {tc.get('loss')!r}")
    if int(tc.get("checkpoint_every_steps", 0) or 0) < 0:
        raise ValueError(f"config.train.checkpoint_every_steps must be >= 0, got {tc.checkpoint_every_steps!r}")
    mixing.mixup_spec_from_config(tc)


def validate_seed(config: ml_collections.ConfigDict) -> None:
    """Checks ``config.seed`` (it seeds the parameters through ``nnx.Rngs`` and the data order through numpy).

    Raises:
      ValueError: naming ``config.seed``, when it is not an integer in ``[0, 2**32)``.
    """
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"config.seed must be an integer in [0, 2**32), got {seed!r}")


def note_batch_chunks(config: ml_collections.ConfigDict, n_dev: int) -> None:
    """Logs a warning when a ``config.model.batch_chunks`` the user set does not divide the per-device batch and so
    runs as fewer chunks (:func:`masnn_jax.snn.chunking.effective_batch_chunks`). ``'auto'`` picks the largest
    divisor of the per-device batch up to its backend's value silently: nothing was asked that is not done."""
    if "batch_chunks" not in config.model or config.model.get("batch_chunks") in (None, "auto"):
        return
    chunks = chunking.resolve_batch_chunks(config.model.get("batch_chunks"))
    per_device = int(config.train.batch_size) // n_dev
    used = chunking.effective_batch_chunks(chunks, per_device)
    if used != chunks:
        logging.warning(
            "config.model.batch_chunks=%d does not divide the per-device batch %d (config.train.batch_size=%d over "
            "%d device(s)); training runs %d chunk(s) (less memory saved). Pick a divisor of %d.",
            chunks, per_device, int(config.train.batch_size), n_dev, used, per_device)


def _check_image_shapes(config, model, train_set, test_set) -> None:
    """Image data: the crop sides ``config.data.image_size`` (training) and ``config.data.eval_image_size``
    (evaluation) against the ``(H, W, C)`` the model takes (``config.model.input_shape``); a mismatch names both keys
    before anything runs (the model itself could only name its own key)."""
    shape = getattr(model, "input_shape", None)
    if getattr(model, "input_kind", None) != "image" or shape is None:
        return
    shape = tuple(int(v) for v in shape)
    for dataset, key in ((train_set, "image_size"), (test_set, "eval_image_size")):
        item = getattr(dataset, "item_shape", None)
        if item is None or tuple(int(v) for v in item) == shape:
            continue
        fix = f"set config.data.{key}={shape[0]} or change" if shape[0] == shape[1] else "change"
        raise ValueError(
            f"config.data.{key}={config.data.get(key)} gives images (H, W, C) = {tuple(int(v) for v in item)} but "
            f"config.model.input_shape is {shape}: {fix} config.model.input_shape")


class Trainer:
    """Holds the model state, the jit-compiled steps, the mesh and the data for one run.

    Args:
      config: the run's ``ml_collections.ConfigDict`` (``model``, ``data``, ``train``, ``seed``).
      workdir: run directory (metrics, TensorBoard, checkpoints).
      devices: devices to use (default: all of every process).
      need_train_data: False for evaluation only.
    Raises:
      ValueError: a global batch size not divisible by the device count, a dataset whose class count or input kind
        does not fit the model, image crops (``config.data.image_size`` / ``eval_image_size``) of another size than
        ``config.model.input_shape`` (both keys named), an event split that cannot be built reported together with
        the bad files verification found, ``config.train.mixup`` with an odd per-process batch or CutMix on a model
        input without spatial axes, or bad config values (named).
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, devices=None, *, need_train_data: bool = True):
        self.config = config
        self.workdir = os.path.abspath(workdir)
        self.mesh = mesh_lib.make_mesh(devices)
        n_dev = self.mesh.devices.size
        tc = config.train
        validate_seed(config)
        validate_train_config(tc)
        for key in ("batch_size", "eval_batch_size"):
            if int(tc[key]) % n_dev:
                raise ValueError(f"config.train.{key}={tc[key]} must be divisible by the device count {n_dev}")
        events_data = data_lib.kind_of(config.data.get("name", "digits_dvs")) == "events"
        if events_data:
            from masnn_jax.data import events as events_lib

            abstract = nnx.eval_shape(lambda: models.build(config.model, rngs=nnx.Rngs(0)))
            # config.data.ds / T vs config.model.input_shape / T, both keys named, before anything is written
            events_lib.check_model_data(config, getattr(abstract, "input_shape", None))
            # before the datasets are built: a split that cannot be built is reported with the bad files of the
            # other (ValueError: counts, the first 10 bad files)
            logging.info("%s", events_lib.maybe_verify(config.data))
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
        chunking.set_data_shards(model, n_dev)
        note_batch_chunks(config, n_dev)
        self.num_classes = model.num_classes
        if self.test_set.num_classes != model.num_classes:
            raise ValueError(
                f"config.model.num_classes={model.num_classes} but dataset {config.data.name!r} has "
                f"{self.test_set.num_classes} classes"
            )
        _check_image_shapes(config, model, self.train_set, self.test_set)
        self.task = tasks.task_from_config(tc, model.input_kind, model.num_classes)
        self.mixup = mixing.mixup_spec_from_config(tc, loss=self.task.loss)
        if self.mixup.enabled:
            local = int(tc.batch_size) // jax.process_count()
            if local % 2:
                raise ValueError(f"config.train.mixup needs an even batch on each process (timm pairs sample i with "
                                 f"B-1-i): config.train.batch_size={tc.batch_size} gives {local} rows per process")
            shape = getattr(model, "input_shape", None)
            if self.mixup.cutmix_alpha > 0 and shape is not None and len(tuple(shape)) < 3:
                raise ValueError(f"config.train.mixup.cutmix_alpha > 0 needs inputs with spatial axes (H, W, C); "
                                 f"the model's input shape is {tuple(shape)}")
        self.tx = optim.make_optimizer(tc, self.steps_per_epoch)
        self.graphdef_train, state = steps.init_state(model, self.tx)
        model.eval()
        self.graphdef_eval = nnx.graphdef(model)
        self.state = jax.device_put(state, mesh_lib.replicated(self.mesh))
        self.progress = ckpt.Progress()
        self.train_step = CompiledStep(jax.jit(
            functools.partial(steps.train_step, graphdef=self.graphdef_train, tx=self.tx, task=self.task),
            donate_argnums=(0,)))
        self.eval_step = jax.jit(functools.partial(steps.eval_step, graphdef=self.graphdef_eval, task=self.task))
        self._stop_requested = False
        self.stop_signal: int | None = None  # the signal that asked to stop (SIGTERM / SIGINT), if any
        self._saving = self._interrupt_pending = False

    # -- data --

    def device_batch(self, batch: dict, keys=None) -> dict:
        """This process's rows of a global batch (what :meth:`train_batches` yields) -> the step's batch of global
        ``jax.Array``s sharded over the mesh: the task's input, ``label`` as int32 and, when present, ``mask`` and
        ``soft_target`` (Mixup/CutMix targets, float32)."""
        keys = keys or (self.task.input_key, "label", "mask", "soft_target")
        out = {}
        for key in keys:
            if key in batch:
                value = np.asarray(batch[key], np.int32 if key == "label" else None)
                out[key] = mesh_lib.shard_local_batch(self.mesh, value)
        return out

    def train_batches(self, epoch: int, start_batch: int) -> Iterator[dict]:
        """This process's rows of the training batches of ``epoch`` (0-based) from batch ``start_batch`` on (order: a
        function of seed and epoch). With ``config.train.mixup`` each batch is mixed on the host
        (:func:`masnn_jax.train.mixing.mix_batch`, draws a function of seed, epoch, batch index and process index)
        and carries ``'soft_target'`` ``(B, num_classes)`` float32 — from ``off_epoch`` on too (smoothed one-hot)."""
        loader = self._train_loader(epoch, start_batch)
        if not self.mixup.enabled:
            return loader
        return self._mixed(loader, epoch, start_batch)

    def _mixed(self, loader, epoch: int, start_batch: int) -> Iterator[dict]:
        active = self.mixup.active(epoch)
        seed, proc = int(self.config.seed), jax.process_index()
        for index, batch in enumerate(loader, start=start_batch):
            rng = mixing.mixup_rng(seed, epoch, index, proc) if active else None
            yield mixing.mix_batch(batch, self.mixup, input_key=self.task.input_key, num_classes=self.num_classes,
                                   label_smoothing=self.task.label_smoothing, rng=rng, active=active)

    def _train_loader(self, epoch: int, start_batch: int) -> Iterator[dict]:
        tc = self.config.train
        return iter(
            data_lib.make_loader(
                self.train_set, batch_size=int(tc.batch_size), shuffle=True, seed=int(self.config.seed), epoch=epoch,
                drop_remainder=True, num_workers=int(tc.get("num_workers", 0)), start_batch=start_batch,
                num_threads=int(tc.get("num_threads", 0) or 0), process_index=jax.process_index(),
                process_count=jax.process_count(),
            )
        )

    # -- public API --

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Evaluates the current state on ``split``: ``{'loss', 'accuracy', 'firing_rate', 'count'}`` (and
        ``'top5'`` for image tasks). Every sample counts exactly once over all processes: the last partial global
        batch is padded and masked, and the step sums over the global batch."""
        dataset = self.test_set if split == "test" else data_lib.build(self.config.data, split)
        bs = int(self.config.train.eval_batch_size)
        totals: dict[str, float] = {}
        rates = []
        loader = data_lib.make_loader(dataset, batch_size=bs, shuffle=False, seed=0, epoch=0, drop_remainder=False,
                                      pad_remainder=True, num_threads=int(self.config.train.get("num_threads", 0) or 0),
                                      process_index=jax.process_index(), process_count=jax.process_count())
        key = self.task.input_key
        for batch in loader:  # this process's rows of every global batch; padding rows have mask 0
            x, labels = np.asarray(batch[key]), np.asarray(batch["label"], np.int32)
            if key == "frames" and x.ndim == 5:  # a split without test windows: one window per recording
                x = x[:, None]
            mask = np.asarray(batch["mask"], np.float32)
            out = jax.device_get(self.eval_step(self.state, self.device_batch({key: x, "label": labels, "mask": mask})))
            for name, value in out.items():
                if name != "spike_rate":
                    totals[name] = totals.get(name, 0.0) + float(value)
            k = float(out["count"])  # real samples in the global batch (summed over every process by the step)
            rates.append((float(out["spike_rate"]), k))
        count = max(totals.get("count", 0.0), 1.0)
        result = {
            "loss": totals.get("loss_sum", 0.0) / count,
            "accuracy": totals.get("correct", 0.0) / count,
            "firing_rate": sum(r * k for r, k in rates) / max(sum(k for _, k in rates), 1),
            "count": int(totals.get("count", 0.0)),
        }
        if "correct_top5" in totals:
            result["top5"] = totals["correct_top5"] / count
        return result

    def request_stop(self, signum=None, _frame=None) -> None:
        """Asks the training loop to save a checkpoint and return after the current step (the SIGTERM and SIGINT
        handler). A second SIGINT (Ctrl-C pressed twice) stops at once, without a checkpoint."""
        if self._stop_requested and signum == signal.SIGINT:
            if self._saving:  # honoured once the checkpoint being written is complete
                self._interrupt_pending = True
                return
            raise KeyboardInterrupt
        self._stop_requested = True
        self.stop_signal = signum

    def save_checkpoint(self, manager) -> None:
        """:func:`masnn_jax.train.checkpoint.save` with a second Ctrl-C held back until the write has finished (one
        that lands inside orbax's write leaves its finalize thread failing at exit with a traceback).

        Raises:
          KeyboardInterrupt: after the write, when Ctrl-C was pressed twice during it.
        """
        self._saving = True
        try:
            ckpt.save(manager, self)
        finally:
            self._saving = False
        if self._interrupt_pending:
            raise KeyboardInterrupt


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, devices=None, progress_bar: bool = True) -> dict:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint; evaluates after every epoch.

    Returns the last test metrics (``loss``, ``accuracy``, ``firing_rate``, ...) and ``stopped`` (True when a
    SIGTERM or Ctrl-C ended the run early, after saving a checkpoint; ``stop_signal`` then holds the signal
    number). Writes ``metrics.jsonl``, TensorBoard files and checkpoints under ``workdir``.
    Raises:
      ValueError: bad config values (named), or a checkpoint that does not fit the model.
      WorkdirInUseError: another training run is using ``workdir`` (``<workdir>/.lock``).
      ValueError: also when ``workdir`` is a file or cannot be created or written (the message names it).
    """
    check_workdir(workdir)  # a file, or an unwritable place: said now, not after building data and compiling
    trainer = Trainer(config, workdir, devices)  # validates the config and finds the data before anything is written
    make_workdir(workdir)
    with workdir_lock(workdir):
        return _train_locked(trainer, config, workdir, progress_bar)


class NonFiniteError(RuntimeError):
    """Training stopped after ``config.train.max_nonfinite_steps`` consecutive steps with a non-finite loss or
    gradient (each was skipped: parameters, optimiser state and BatchNorm statistics stayed as they were)."""


def _eval_due(tc, epoch: int) -> bool:
    """Whether epoch ``epoch`` (1-based, just finished) is evaluated."""
    return epoch % int(tc.get("eval_every_epochs", 1) or 1) == 0 or epoch == int(tc.num_epochs)


def _evaluate_epoch(trainer: "Trainer", writer: MetricWriter, epoch: int, lr: float) -> dict:
    """Evaluates the test split after epoch ``epoch`` (1-based) and writes its metrics row."""
    t1 = time.time()
    result = trainer.evaluate("test")
    writer.write({"step": trainer.progress.step, "epoch": epoch, "split": "test",
                  **{k: v for k, v in result.items() if k != "count"}, "lr": lr, "seconds": time.time() - t1})
    return result


def _train_locked(trainer: "Trainer", config: ml_collections.ConfigDict, workdir: str, progress_bar: bool) -> dict:
    """:func:`train_and_evaluate` once the workdir lock is held.

    Order at the end of an epoch: the training metrics row, a checkpoint, then evaluation and its row — so an
    evaluation that fails (a bad test file) never costs the trained epoch; the rerun resumes after that epoch,
    evaluates it first (its test row is missing) and writes each row once.
    """
    tc = config.train
    manager = ckpt.checkpoint_manager(workdir, int(tc.get("max_to_keep", 3)))
    resumed = ckpt.restore(manager, trainer)
    ckpt.set_aside_newer_checkpoints(manager, workdir, trainer.progress.step if resumed else None)
    if not resumed and tc.get("init_from"):  # a fresh run that starts from another run's weights (fine-tuning)
        print(ckpt.init_from_checkpoint(trainer), flush=True)
    writer = MetricWriter(workdir, trainer.progress.step if resumed else None)
    if resumed:
        print(f"Resuming from {manager.directory}/{trainer.progress.step} (epoch {trainer.progress.epoch + 1}, "
              f"batch {trainer.progress.batch})", flush=True)
    handlers = (
        {sig: signal.signal(sig, trainer.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        if _is_main_thread() else {}
    )
    num_epochs = int(tc.num_epochs)
    ckpt_every = int(tc.get("checkpoint_every_steps", 0) or 0)
    max_bad = int(tc.get("max_nonfinite_steps", 10) or 10)
    bad_streak = 0
    last_eval: dict = {}
    try:
        from tqdm.auto import tqdm

        done = trainer.progress.epoch
        if (resumed and done > 0 and trainer.progress.batch == 0 and _eval_due(tc, done)
                and not writer.has_row("test", trainer.progress.step)):
            lr = optim.current_lr(tc, trainer.state["opt_state"], max(trainer.progress.step - 1, 0),
                                  trainer.steps_per_epoch)  # the rate of the epoch just trained
            print(f"Evaluating epoch {done} (trained and saved, but not evaluated)", flush=True)
            last_eval = _evaluate_epoch(trainer, writer, done, lr)
        elif done >= num_epochs:
            print(f"{workdir} already holds {done} epochs (config.train.num_epochs={num_epochs}); "
                  "evaluating its latest checkpoint. Raise --config.train.num_epochs to train further.", flush=True)
            last_eval = trainer.evaluate("test")

        while trainer.progress.epoch < num_epochs:
            epoch = trainer.progress.epoch
            start = trainer.progress.batch
            t0 = time.time()
            sums = trainer.progress.sums
            sums.setdefault("nonfinite", 0)
            bar = tqdm(total=trainer.steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{num_epochs}",
                       disable=None if progress_bar else True, leave=False, dynamic_ncols=True)
            for batch in trainer.train_batches(epoch, start):
                trainer.state, metrics = trainer.train_step(trainer.state, trainer.device_batch(batch))
                trainer.progress.batch += 1
                trainer.progress.step += 1
                if bool(metrics["finite"]):
                    bad_streak = 0
                    sums["n"] += 1
                    for key in ("loss", "accuracy", "firing_rate"):
                        sums[key] += float(metrics[key])
                else:  # the step skipped its update on device; count it
                    bad_streak += 1
                    sums["nonfinite"] += 1
                    logging.warning("step %d: non-finite loss or gradient (loss %s); update skipped (%d in a row)",
                                    trainer.progress.step, float(metrics["loss"]), bad_streak)
                    if bad_streak >= max_bad:
                        raise NonFiniteError(
                            f"{bad_streak} consecutive training steps (up to step {trainer.progress.step}) had a "
                            "non-finite loss or gradient; each update was skipped and nothing was saved after the "
                            "last checkpoint. Look for NaN/Inf in the data or lower config.train.learning_rate; "
                            "rerun with JAX_DEBUG_NANS=True to stop at the first NaN "
                            "(config.train.max_nonfinite_steps sets the limit).")
                bar.update(1)
                bar.set_postfix(loss=f"{float(metrics['loss']):.4f}", acc=f"{float(metrics['accuracy']):.3f}")
                if trainer._stop_requested:
                    break
                if (ckpt_every and trainer.progress.step % ckpt_every == 0
                        and trainer.progress.batch < trainer.steps_per_epoch):  # the epoch's end saves anyway
                    trainer.save_checkpoint(manager)
            bar.close()
            if trainer._stop_requested:
                trainer.save_checkpoint(manager)
                print(f"Stop requested (SIGTERM/SIGINT): saved checkpoint at step {trainer.progress.step}; rerun the "
                      "same command to resume.", flush=True)
                return {"stopped": True, "stop_signal": trainer.stop_signal, **last_eval}
            trainer.progress.epoch += 1
            trainer.progress.batch = 0
            n = sums.pop("n")
            nonfinite = sums.pop("nonfinite", 0)
            trainer.progress.sums = {"loss": 0.0, "accuracy": 0.0, "firing_rate": 0.0, "n": 0, "nonfinite": 0}
            seconds = time.time() - t0
            lr = optim.current_lr(tc, trainer.state["opt_state"], max(trainer.progress.step - 1, 0),
                                  trainer.steps_per_epoch)  # the rate of the epoch just trained
            writer.write({"step": trainer.progress.step, "epoch": epoch + 1, "split": "train",
                          **{k: v / max(n, 1) for k, v in sums.items()}, "nonfinite_steps": nonfinite, "lr": lr,
                          "seconds": seconds})
            trainer.save_checkpoint(manager)  # before evaluating: a failing evaluation never costs the trained epoch
            if _eval_due(tc, epoch + 1):
                last_eval = _evaluate_epoch(trainer, writer, epoch + 1, lr)
                train_loss = sums["loss"] / max(n, 1)
                print(f"epoch {epoch + 1:3d}/{num_epochs}  train loss {train_loss:.4f}  "
                      f"test loss {last_eval['loss']:.4f}  test acc {100 * last_eval['accuracy']:.2f}%  "
                      + (f"top-5 {100 * last_eval['top5']:.2f}%  " if "top5" in last_eval else "")
                      + f"firing rate {last_eval['firing_rate']:.4f}  lr {lr:.2e}  {seconds:.1f}s"
                      + (f"  ({nonfinite} non-finite steps skipped)" if nonfinite else ""), flush=True)
        return {"stopped": False, **last_eval}
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        writer.close()
        manager.close()


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, *, step: int | None = None, devices=None) -> dict:
    """Restores the latest (or ``step``) checkpoint of ``workdir`` and evaluates it on the test split.

    Raises:
      FileNotFoundError: no checkpoint in ``<workdir>/checkpoints``.
      ValueError: a checkpoint that does not fit the model built from ``config``.
    """
    ckpt_dir = ckpt.existing_checkpoint_dir(workdir)
    trainer = Trainer(config, workdir, devices, need_train_data=False)
    manager = ckpt.checkpoint_manager(workdir, 3, create=False)
    try:
        if not ckpt.restore(manager, trainer, step):
            raise FileNotFoundError(f"no checkpoint found in {ckpt_dir}")
        result = trainer.evaluate("test")
        return {"step": trainer.progress.step, "epoch": trainer.progress.epoch, **result}
    finally:
        manager.close()


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
