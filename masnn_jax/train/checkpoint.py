"""Checkpoints: orbax ``CheckpointManager`` in ``<workdir>/checkpoints``, one step per save holding the state pytree
(``params``, ``rest``, ``opt_state``) and JSON metadata (epoch, batch within the epoch, step, running sums, the
config). Restores pick the latest readable step (an unreadable one is reported and skipped, never deleted) and
refuse a checkpoint whose ``config.model`` differs in anything but execution options.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import warnings
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from masnn_jax import models
from masnn_jax.train import optim

__all__ = ["Progress", "checkpoint_manager", "existing_checkpoint_dir", "save", "restore", "restore_state",
           "set_aside_newer_checkpoints", "config_differences", "save_model_checkpoint", "load_model",
           "init_from_checkpoint"]


@dataclasses.dataclass
class Progress:
    """Where a run stands (stored with every checkpoint as JSON metadata)."""

    epoch: int = 0  # epoch being run (0-based)
    batch: int = 0  # next batch within that epoch
    step: int = 0  # optimiser steps done
    # running sums of this epoch's training metrics (so that a resumed epoch reports what an uninterrupted one does)
    sums: dict = dataclasses.field(default_factory=lambda: {"loss": 0.0, "accuracy": 0.0, "firing_rate": 0.0, "n": 0,
                                                                  "nonfinite": 0})


def existing_checkpoint_dir(workdir: str) -> str:
    """``<workdir>/checkpoints``; FileNotFoundError (naming it) when it does not exist."""
    ckpt_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"no checkpoints in {ckpt_dir}: train first, or pass the --workdir of a trained run")
    return ckpt_dir


def checkpoint_manager(workdir: str, max_to_keep: int, create: bool = True) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create),
    )


def save(manager: ocp.CheckpointManager, trainer) -> None:
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
    network is computed (the family's ``execution_keys``: dtype, conv_impl, remat, ...) are not compared."""
    stored, current = json.loads(stored_json), json.loads(config.to_json())
    name = json.loads(config.to_json()).get("model", {}).get("name", "masnn")
    try:
        ignored = {f"config.model.{key}" for key in models.execution_keys(name)}
    except ValueError:
        ignored = set()
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


_ORBAX_DIR = os.path.dirname(os.path.abspath(ocp.__file__))


def _is_orbax_late_error(unraisable) -> bool:
    """True for the unraisable exceptions orbax leaves behind when a restore of an unreadable checkpoint fails:
    ``RuntimeError('Event loop is closed')`` from asyncio's ``call_soon_threadsafe`` (TensorStore's reads still in
    flight calling back into the closed loop), and errors of orbax's own read coroutines finalised after the
    restore gave up (``Exception ignored in: <coroutine object _read_array_index_and_device_put ...>``). One
    traceback per array each; the useful line is our warning."""
    exc, tb = unraisable.exc_value, unraisable.exc_traceback
    code = getattr(unraisable.object, "cr_code", None)
    if code is not None and os.path.abspath(code.co_filename).startswith(_ORBAX_DIR):
        return True
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        return any(f.co_name == "call_soon_threadsafe" for f in frames)
    return any(os.path.abspath(f.co_filename).startswith(_ORBAX_DIR) for f in frames)


def _quiet_orbax_late_errors() -> None:
    """Installs (once) a ``sys.unraisablehook`` that drops :func:`_is_orbax_late_error` exceptions and passes every
    other one to the hook that was in place, and ignores the "coroutine ... was never awaited" warnings of orbax's
    read coroutines. Installed before restoring, since TensorStore calls back while the failing restore unwinds."""
    warnings.filterwarnings("ignore", message=r"coroutine '_read_array_index_and_device_put' was never awaited",
                            category=RuntimeWarning)
    previous = sys.unraisablehook
    if getattr(previous, "_masnn_quiet", False):
        return

    def hook(unraisable):
        if not _is_orbax_late_error(unraisable):
            previous(unraisable)

    hook._masnn_quiet = True
    sys.unraisablehook = hook


def restore_state(
    manager: ocp.CheckpointManager, abstract: Any, config: ml_collections.ConfigDict, step: int | None = None
) -> tuple[int, Any, dict] | None:
    """Restores ``(step, state, meta)`` from the latest readable checkpoint (or exactly ``step``); None if none.

    The stored ``config.model`` must equal ``config.model`` (else ValueError listing the differing keys). A
    checkpoint that cannot be read (truncated or corrupt files) is reported on stderr and the next older one is
    tried; nothing is deleted. Raises FileNotFoundError for a ``step`` that does not exist, ValueError when no
    checkpoint is readable.
    """
    directory = str(manager.directory)
    _quiet_orbax_late_errors()
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


def set_aside_newer_checkpoints(manager: ocp.CheckpointManager, workdir: str, resumed_step: int | None) -> None:
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


def restore(manager: ocp.CheckpointManager, trainer, step: int | None = None) -> bool:
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), trainer.state
    )
    found = restore_state(manager, abstract, trainer.config, step)
    if found is None:
        return False
    _, trainer.state, meta = found
    trainer.progress = Progress(epoch=int(meta["epoch"]), batch=int(meta["batch"]), step=int(meta["step"]))
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


def _path_str(path) -> str:
    """A pytree key path as ``params.stages.0.first.conv1.conv.kernel`` (nnx's trailing ``value`` dropped)."""
    parts = []
    for k in path:
        name = getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))
        parts.append(str(name))
    if parts and parts[-1] == "value":
        parts.pop()
    return ".".join(parts)


def init_from_checkpoint(trainer, source: str | None = None) -> str:
    """Loads parameters and BatchNorm statistics of another run into ``trainer.state`` (``config.train.init_from``:
    e.g. a T = 4 fine-tune starting from a T = 1 run of the same family, as ``train_finetune.py`` does). The
    optimiser state, the progress and the dropout RNG stay fresh.

    Args:
      trainer: a :class:`~masnn_jax.train.loop.Trainer` of a fresh run.
      source: a workdir (holding ``checkpoints/``) or a checkpoints directory; its latest step is read. Default:
        ``trainer.config.train.init_from``.
    Returns:
      a one-line description of what was loaded.
    Raises:
      FileNotFoundError: no such directory, or no checkpoint in it (one line naming ``config.train.init_from``).
      ValueError: a different model family, or a parameter / statistic whose path or shape differs (the first one
        named).
    """
    source = source or str(trainer.config.train.get("init_from") or "")
    key = f"config.train.init_from={source!r}"
    path = os.path.abspath(os.path.expanduser(source))
    if not source or not os.path.isdir(path):
        raise FileNotFoundError(f"{key}: no such directory (give the --workdir of the run to start from, or its "
                                "checkpoints directory)")
    ckpt_dir = os.path.join(path, "checkpoints") if os.path.isdir(os.path.join(path, "checkpoints")) else path
    manager = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(create=False))
    try:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"{key}: no checkpoint in {ckpt_dir}")
        where = f"{ckpt_dir}/{step}"
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        stored_name = json.loads(meta.get("config", "{}")).get("model", {}).get("name")
        name = trainer.config.model.get("name")
        if stored_name is not None and stored_name != name:
            raise ValueError(f"{key}: {where} holds a {stored_name!r} model, this run builds {name!r} "
                             "(config.model.name must match)")
        stored = ocp.StandardCheckpointer().metadata(os.path.join(str(manager.directory), str(step), "state"))
        stored = getattr(getattr(stored, "item_metadata", stored), "tree", stored)
        target = {"params": trainer.state["params"], "rest": trainer.state["rest"]}
        have = {_path_str(p): tuple(v.shape) for p, v in jax.tree_util.tree_flatten_with_path(
            {k: stored[k] for k in target if k in stored})[0]}
        want = jax.tree_util.tree_flatten_with_path(target)[0]
        for p, v in want:
            name = _path_str(p)
            if "rngs" in name.split("."):  # RNG state: not loaded (and stored as raw key data)
                continue
            if name not in have:
                raise ValueError(f"{key}: {name} of this model is not in {where} (config.model must match that run's "
                                 "apart from T)")
            if have[name] != tuple(v.shape):
                raise ValueError(f"{key}: {name} has shape {have[name]} in {where} but {tuple(v.shape)} in this "
                                 "model (config.model must match that run's apart from T)")
        extra = sorted(set(have) - {_path_str(p) for p, _ in want} - {k for k in have if "rngs" in k.split(".")})
        if extra:
            raise ValueError(f"{key}: {where} holds {extra[0]}, which this model lacks (config.model must match "
                             "that run's apart from T)")
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target)
        loaded = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
            partial_restore=True)))["state"]  # parameters and statistics only (not the optimiser state)
    finally:
        manager.close()
    # the dropout RNG stays this run's own (a fresh stream, as a fresh run has)
    rest = jax.tree_util.tree_map_with_path(
        lambda p, new, old: old if "rngs" in _path_str(p).split(".") else new, loaded["rest"], trainer.state["rest"])
    trainer.state = {**trainer.state, "params": loaded["params"], "rest": rest}
    n = sum(int(v.size) for v in jax.tree_util.tree_leaves(loaded["params"]))
    return (f"Initialised {n:,} parameters and the BatchNorm statistics from {where} ({key}, epoch "
            f"{int(meta.get('epoch', 0))}); fresh optimiser state")


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
    tx = optim.make_optimizer(config.train, steps_per_epoch=1)
    state = {"params": params, "rest": rest, "opt_state": tx.init(params)}
    manager = checkpoint_manager(workdir, int(config.train.get("max_to_keep", 3)))
    try:
        meta = dataclasses.asdict(Progress()) | {"config": config.to_json()}
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
    ckpt_dir = existing_checkpoint_dir(workdir)
    # Built abstractly: the restore overwrites every value, so no initialiser needs to run (or compile).
    model = nnx.eval_shape(lambda: models.build(config.model, rngs=nnx.Rngs(int(config.seed))))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optim.make_optimizer(config.train, steps_per_epoch=1)
    abstract = jax.eval_shape(lambda p, r: {"params": p, "rest": r, "opt_state": tx.init(p)}, params, rest)
    manager = checkpoint_manager(workdir, 3, create=False)
    try:
        found = restore_state(manager, abstract, config, step)
    finally:
        manager.close()
    if found is None:
        raise FileNotFoundError(f"no checkpoint found in {ckpt_dir}")
    _, state, meta = found
    model = nnx.merge(graphdef, state["params"], state["rest"])
    model.eval()
    return model, meta
