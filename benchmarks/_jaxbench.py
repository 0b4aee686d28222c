"""Shared helpers of the masnn-jax benchmarks: flag checks, the real training step on synthetic data, timing,
memory, FLOPs.

Not a library module: the benchmark scripts import it from their own folder. Importing it is cheap (the standard
library only; jax, flax and ``masnn_jax`` are imported inside the functions that need them), so a script can check
its flags with it before it imports jax.

Flag checks: every benchmark refuses a bad flag with one ``error: ...`` line on stderr that names the flag, and exit
status 2 (argparse's status for a usage error), before it imports jax, compiles anything or starts a child process:
:class:`ArgumentParser` (argparse's own errors as that one line), :func:`positive_ints` (comma lists),
:func:`check_at_least` (numeric lower bounds), :func:`parse_args` (``--quick`` without overriding the user's flags),
:func:`check_threads`, :func:`parse_set` and :func:`check_model_config`, all through :func:`fail`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from typing import NoReturn

# Make `masnn_jax` importable when run from a checkout without installation.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --------------------------------------------------------------------------------------------------- flag checks


def fail(message: str) -> NoReturn:
    """Stops the script: one ``error: <message>`` line on stderr, exit status 2 (a usage error, as argparse's)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors (a value its ``type`` refuses, an unknown flag, a bad choice)
    are one ``error: argument --FLAG: ...`` line with exit status 2 (:func:`fail`) instead of the usage block and a
    ``prog: error:`` line; ``--help`` is unchanged."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see --help)")


def positive_ints(text: str) -> list[int]:
    """An argparse ``type`` for a comma list of integers >= 1: ``'8,16,30'`` -> ``[8, 16, 30]``; blank items are
    skipped, so ``''`` is ``[]`` (where a script documents that as 'skip').

    Raises:
      argparse.ArgumentTypeError: an item that is not an integer >= 1 (argparse adds the flag's name).
    """
    values = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            value = int(item)
        except ValueError:
            value = None
        if value is None or value < 1:
            which = f" ({item.strip()!r} is not one)" if item.strip() != text.strip() else ""
            raise argparse.ArgumentTypeError(f"expects a comma list of integers >= 1, got {text!r}{which}")
        values.append(value)
    return values


def check_at_least(args, **minimums) -> None:
    """Refuses, in one :func:`fail` line naming every offending flag, each ``args.<dest>`` below ``minimums[dest]``
    (``dest`` as argparse spells it: ``conv_batch`` is ``--conv-batch``); a value None (flag not given, default
    None) is not checked.

    Raises:
      SystemExit(2): e.g. ``error: --T must be >= 1, got 0`` or ``error: must be >= 1: --T 0, --steps -1``.
    """
    bad: dict = {}
    for dest, minimum in minimums.items():
        value = getattr(args, dest)
        if value is not None and value < minimum:
            bad.setdefault(minimum, []).append((f"--{dest.replace('_', '-')}", value))
    if bad:
        fail("; ".join(f"{flags[0][0]} must be >= {minimum}, got {flags[0][1]}" if len(flags) == 1 else
                       f"must be >= {minimum}: {', '.join(f'{flag} {value}' for flag, value in flags)}"
                       for minimum, flags in bad.items()))


def parse_args(parser: argparse.ArgumentParser, argv=None, quick: dict | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; when ``--quick`` is given, the values in ``quick`` (dest -> value) replace the
    *defaults*, so a flag the user gave explicitly keeps its value (``--quick --T 3`` runs T 3, and
    ``--quick --T 0`` is refused by the script's checks instead of silently replaced)."""
    args = parser.parse_args(argv)
    if quick and getattr(args, "quick", False):
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    return args


def check_threads(n: int | None) -> list[int]:
    """The cores this process may run on, after checking that ``--threads n`` fits them.

    Raises:
      SystemExit(2): ``n`` is negative or more than those cores (one line naming ``--threads``).
    """
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if n is not None and (n < 0 or n > len(allowed)):
        fail(f"--threads must be between 0 (all cores) and {len(allowed)} (the cores this process may use), got {n}")
    return allowed


def set_threads(n: int | None) -> None:
    """Limits this process (XLA's CPU thread pools, torch, OpenMP) to ``n`` CPU cores; must run before jax or torch
    is imported. XLA sizes its CPU thread pools from the cores the process may run on (``sched_getaffinity``), so the
    limit is set as CPU affinity (the first ``n`` allowed cores) plus ``OMP_NUM_THREADS``. ``None`` or 0: all cores.

    Raises:
      SystemExit(2): ``n`` is negative or more than the cores this process may use (names ``--threads``).
    """
    allowed = check_threads(n)
    if not n:
        return
    if n < len(allowed) and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, allowed[:n])
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


def gesture_model_config(T: int, attention: str = "TCSA", dtype: str | None = None, **overrides) -> dict:
    """``config.model`` of the official DVS128 Gesture net, read from ``configs/dvs_gesture.py`` (so the benchmarks run
    the library's defaults, e.g. ``batch_chunks``), as a plain dict with ``T``, ``attention``, ``dtype`` and
    ``overrides`` applied."""
    from masnn_jax.config import base_config

    cfg = base_config(dataset="dvs_gesture", arch="dvs_gesture", T=T, attention=attention, c_ratio=8,
                      t_ratio=gesture_t_ratio(T), a=0.5).model.to_dict()
    cfg.update(dtype=dtype, **overrides)
    return cfg


def gesture_t_ratio(T: int) -> int:
    """The official temporal-attention reduction 5, or 1 when T < 5 (T // 5 would leave the MLP no hidden unit)."""
    return 5 if T >= 5 else 1


def parse_set(items) -> dict:
    """``["key=value", ...]`` (``--jax-set``) -> dict; values are JSON when they parse (8, true, "xla"), else strings.

    Raises:
      SystemExit(2): an item without ``=`` or with an empty key, printed as one ``error:`` line.
    """
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            fail(f"--jax-set expects KEY=VALUE (a config.model key), got {item!r}")
        if key in ("T", "attention", "dtype"):
            fail(f"--jax-set {key}=...: use the script's --{key} flag (it sets both frameworks)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def check_model_config(cfg: dict) -> None:
    """Builds ``cfg`` abstractly (``nnx.eval_shape``: no parameters allocated) so that a bad ``--jax-set`` (or a flag
    that becomes a ``config.model`` value) is reported by the parent process as one line, before any child starts
    or anything compiles.

    Raises:
      SystemExit(2): the library's ValueError message (it names the ``config.model`` key).
    """
    from flax import nnx

    from masnn_jax import models

    try:
        nnx.eval_shape(lambda: models.build(cfg, rngs=nnx.Rngs(0)))
    except ValueError as e:
        fail(str(e))


def execution_options(cfg: dict) -> dict:
    """The ``config.model`` keys that decide how the step runs (defaults included), for the JSON rows."""
    from masnn_jax import models

    return {key: cfg.get(key) for key in models.execution_keys(cfg.get("name", "masnn"))}


def resolved_execution(cfg: dict, batch: int | None = None) -> dict:
    """What the backend-aware 'auto' values of ``cfg`` mean on this machine's default backend: ``batch_chunks``
    (an integer: the chunks that actually run when ``batch``, the per-device batch, is given — a divisor of it, see
    :func:`masnn_jax.snn.chunking.effective_batch_chunks`), ``conv_impl`` ('xla' | 'im2col'), ``neuron_impl``
    ('scan' | 'pallas'), plus ``backend``."""
    import jax

    from masnn_jax.snn import chunking, ops, pallas_lif

    chunks = chunking.resolve_batch_chunks(cfg.get("batch_chunks", 1))
    return {
        "backend": jax.default_backend(),
        "batch_chunks": chunking.effective_batch_chunks(chunks, batch) if batch else chunks,
        "conv_impl": ops.resolve_conv_impl(cfg.get("conv_impl", "auto")),
        "neuron_impl": pallas_lif.resolve_neuron_impl(cfg.get("neuron_impl", "auto")),
    }


def memory_analysis_mb(compiled) -> dict | None:
    """The compiled step's own memory plan (``compiled.memory_analysis()``), in MB: ``temp`` (scratch the step
    allocates), ``argument``, ``output``, ``alias`` (outputs written into donated arguments) and ``total`` = temp +
    argument + output (an upper bound of what the step holds on the device; subtract ``alias`` for donated state).
    Deterministic for a given XLA version, unlike the allocator's peak (which also counts autotuning buffers).
    None where the backend gives no analysis."""
    try:
        ma = compiled.memory_analysis()
        if isinstance(ma, (list, tuple)):
            ma = ma[0]
        mb = {k: getattr(ma, f"{k}_size_in_bytes") / 2**20 for k in ("temp", "argument", "output", "alias")}
    except Exception:  # noqa: BLE001 - optional per backend
        return None
    mb["total"] = mb["temp"] + mb["argument"] + mb["output"]
    return mb


def make_train_step(model_cfg: dict, *, batch: int, seed: int = 0, donate: bool = True):
    """The library's train step (:func:`masnn_jax.train.train_step`, Adam + plateau, MSE: what ``train.py`` runs)
    for ``model_cfg``, jitted and compiled ahead of time, with its initial state and one synthetic batch of
    event-count frames.

    Returns ``(step, state, frames, labels)``; ``step(state, frames, labels) -> (state, metrics)``.
    """
    import functools

    import jax
    import jax.numpy as jnp
    import ml_collections
    import numpy as np
    from flax import nnx

    from masnn_jax import models
    from masnn_jax import train as training

    train_cfg = ml_collections.ConfigDict(dict(
        optimizer="adam", learning_rate=1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, schedule="plateau",
        plateau_factor=0.1, plateau_patience=5, loss="mse", num_epochs=1,
    ))
    model = models.build(model_cfg, rngs=nnx.Rngs(seed))
    tx = training.make_optimizer(train_cfg, 100)
    graphdef, state = training.init_state(model, tx)
    task = training.task_from_config(train_cfg, model.input_kind, model.num_classes)
    h, w, c = model.input_shape
    rng = np.random.default_rng(seed)
    # Event counts per bin: mostly 0, some 1..3 (like 25 ms DVS bins downsampled by 4).
    frames = rng.poisson(0.3, size=(batch, model.T, h, w, c)).astype(np.float32)
    labels = rng.integers(0, model.num_classes, size=(batch,)).astype(np.int32)
    pure = functools.partial(training.train_step, graphdef=graphdef, tx=tx, task=task)
    # what the Trainer runs: compiled ahead of time, then the compiler's freed heap is returned to the OS
    compiled = training.CompiledStep(jax.jit(pure, donate_argnums=(0,) if donate else ()))

    def step(state, frames, labels):
        return compiled(state, {"frames": frames, "label": labels})

    step.lower = lambda state, frames, labels: compiled.lower(state, {"frames": frames, "label": labels})

    def prime(state, frames, labels):
        """Compiles the step ahead of time (timed) and installs that executable as the one ``step`` runs, so one
        compile serves the timing, ``cost_analysis`` and ``memory_analysis``. Returns ``(compiled, seconds)``."""
        batch = {"frames": frames, "label": labels}
        t0 = time.perf_counter()
        exe = compiled.jitted.lower(state, batch).compile()
        seconds = time.perf_counter() - t0
        compiled._compiled, compiled._key = exe, compiled._signature((state, batch))  # noqa: SLF001
        training.release_host_memory()
        return exe, seconds

    step.prime = prime
    return step, state, jnp.asarray(frames), jnp.asarray(labels)


def _flops(analysis) -> float | None:
    try:
        if isinstance(analysis, (list, tuple)):
            analysis = analysis[0]
        return float(analysis.get("flops", 0.0)) / 1e9 or None
    except Exception:  # noqa: BLE001 - cost analysis is optional per backend
        return None


def cost_gflops(jitted, *args, reference=None) -> tuple[float | None, float]:
    """(GFLOPs of one call from XLA's cost analysis or None, compile seconds).

    XLA's cost analysis counts a loop body once, so the chunked im2col convolution (a ``lax.map``) would be
    under-counted; pass ``reference`` (the same step built with ``conv_impl='xla'``, same arithmetic) to count the
    FLOPs on that graph instead (lowered only, not compiled).
    """
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    if reference is not None:
        try:
            return _flops(reference.lower(*args).cost_analysis()), compile_s
        except Exception:  # noqa: BLE001
            pass
    return _flops(compiled.cost_analysis()), compile_s


def compiled_gflops(compiled, *args, reference=None) -> float | None:
    """GFLOPs of one call of an already compiled step (see :func:`cost_gflops` for ``reference``)."""
    if reference is not None:
        try:
            return _flops(reference.lower(*args).cost_analysis())
        except Exception:  # noqa: BLE001
            pass
    try:
        return _flops(compiled.cost_analysis())
    except Exception:  # noqa: BLE001
        return None


def flops_reference(model_cfg: dict, batch: int):
    """The train step of ``model_cfg`` with ``conv_impl='xla'`` and no remat (for FLOP counting), or None when
    ``model_cfg`` already is that."""
    from masnn_jax.snn import ops

    if ops.resolve_conv_impl(model_cfg.get("conv_impl", "auto")) == "xla" and model_cfg.get("remat", "none") == "none":
        return None
    ref = dict(model_cfg, conv_impl="xla", remat="none")
    return make_train_step(ref, batch=batch, donate=False)[0]


def peak_memory_mb() -> tuple[float, str]:
    """(peak memory in MB, what it is): device memory on accelerators, else the process's peak RSS."""
    import jax

    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] / 2**20, "device_peak_bytes_in_use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss"


def time_steps(step, state, frames, labels, steps: int):
    """Runs ``steps`` timed steps (after the compiling one); returns (state, list of seconds, first-call seconds)."""
    import jax

    t0 = time.perf_counter()
    state, metrics = step(state, frames, labels)
    jax.block_until_ready((state, metrics))
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = step(state, frames, labels)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    return state, times, first, metrics


def summary(times) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times)} if times else None


def devices_str() -> str:
    import jax

    devs = jax.devices()
    return f"{len(devs)}x{devs[0].platform}:{devs[0].device_kind}"


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)
