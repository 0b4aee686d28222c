"""Train or evaluate an MA-SNN: ``python train.py --config=configs/<name>.py --workdir=<dir> [--config.key=value]``.

Defaults: ``--config=configs/digits_dvs.py`` (the event digits that ship with the install) and
``--workdir=runs/<config name>``. Rerunning the same command on the same workdir resumes from its latest checkpoint;
SIGTERM and Ctrl-C save a checkpoint first and exit with 128 + the signal number (143, 130) after the result line
(``"stopped": true``); Ctrl-C twice stops at once (130, nothing saved). Before the training loop runs (imports,
data, compilation) either signal stops at once with one line (nothing of the run is unsaved then). ``--mode=eval`` evaluates the latest checkpoint of ``--workdir``.
Multi-host: pass ``--distributed`` to call ``jax.distributed.initialize()`` (cluster settings from the environment).
"""

import json
import os
import signal
import sys


def _stop_before_training(signum, _frame):
    """SIGTERM / Ctrl-C before the training loop runs (imports, data, compilation, restore) or after it returned:
    this run has nothing unsaved, so it stops at once with one line and exit status 128 + the signal number."""
    print(f"stopped by {signal.Signals(signum).name} outside the training loop: nothing unsaved; rerun the same "
          "command to start or resume.", file=sys.stderr, flush=True)
    os._exit(128 + signum)


if __name__ == "__main__":  # the training loop installs its own handlers (save, then stop)
    for _sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(_sig, _stop_before_training)

from absl import app, flags, logging  # noqa: E402  (after the handlers: a Ctrl-C during imports is one line too)
from masnn_jax.config import define_config_flag, parse_flags  # noqa: E402

_CONFIG = define_config_flag(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "digits_dvs.py"),
    "Training configuration file (ml_collections).", lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config file name>).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (resumes if possible) or eval a checkpoint.")
_STEP = flags.DEFINE_integer("step", None, "With --mode=eval: the checkpoint step (default: latest).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Initialise jax.distributed for multi-host runs.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
_CACHE = flags.DEFINE_string(
    "compilation_cache", None,
    "JAX persistent compilation cache folder (default $MASNN_JAX_CACHE_DIR or ~/.cache/masnn_jax/xla); "
    "'none' turns it off. A second run of the same config then loads its compiled steps from there.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; --verbosity=0 brings it back
    import jax

    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    from masnn_jax import train as training
    from masnn_jax.train.compile import enable_compilation_cache

    cache = enable_compilation_cache(_CACHE.value)

    config = _CONFIG.value
    config_name = os.path.splitext(os.path.basename(flags.FLAGS["config"].config_filename))[0]
    if flags.FLAGS["workdir"].present and not (_WORKDIR.value or "").strip():
        print("error: --workdir is empty; give a folder, or leave the flag out for runs/<config name>",
              file=sys.stderr, flush=True)
        sys.exit(1)
    if _MODE.value == "train" and _STEP.value is not None:
        print("error: --step selects the checkpoint of --mode=eval; training resumes from the latest checkpoint",
              file=sys.stderr, flush=True)
        sys.exit(1)
    workdir = _WORKDIR.value or os.path.join("runs", config_name)
    print(f"config {config_name}; workdir {os.path.abspath(workdir)}; backend {jax.default_backend()}, "
          f"{jax.device_count()} device(s) ({jax.devices()[0].device_kind}); compilation cache {cache or 'off'}",
          flush=True)
    try:
        if _MODE.value == "eval":
            result = training.evaluate_checkpoint(config, workdir, step=_STEP.value)
        else:
            result = training.train_and_evaluate(config, workdir, progress_bar=_PROGRESS.value)
    except (ValueError, FileNotFoundError, FileExistsError, training.WorkdirInUseError,
            training.NonFiniteError) as e:
        # Config, data and checkpoint problems: one clear message (the traceback adds nothing for a user).
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C pressed twice: stopped at once
        print(f"stopped at once (Ctrl-C twice): nothing saved since the latest checkpoint in {workdir}; rerun the "
              "same command to resume from it.", file=sys.stderr, flush=True)
        sys.exit(130)
    for sig in (signal.SIGTERM, signal.SIGINT):  # the result stands: a late signal no longer changes the exit status
        signal.signal(sig, signal.SIG_IGN)
    print(json.dumps(result), flush=True)
    if result.get("stopped"):  # a checkpoint was saved; 128 + signal, as a shell reports a process it stopped
        sys.exit(128 + int(result.get("stop_signal") or signal.SIGTERM))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
