"""Kill anywhere: SIGKILL ``train.py`` at ``--kills`` random moments, resume each time, and check that the run ends
with parameters bit-equal to an uninterrupted run and each metrics row written once (issue 11).

The run is the tiny digits-DVS config of ``tests/test_training.py`` (one conv layer of 8 channels, T = 4, batch 64:
22 steps an epoch) for ``--epochs`` epochs with a checkpoint every ``--checkpoint-every`` steps, so that checkpoint
writes, evaluation and steps all take a visible share of the wall time. Each kill aims at one phase, in turn:

* ``step``: a random moment (uniform in ``[0, 1.5]`` s) after the resumed process has written its first new
  checkpoint, i.e. while it trains;
* ``checkpoint``: a random moment (uniform in ``[0, 0.3]`` s) after orbax's ``<step>.orbax-checkpoint-tmp`` folder
  appears (an orbax write takes ≈ 0.5 s here);
* ``eval``: a random moment (uniform in ``[0, 1]`` s) after the checkpoint of an epoch's last step is final while
  that epoch's test row is not yet in ``metrics.jsonl`` (the trainer checkpoints before it evaluates); the eval
  of an epoch whose run was killed in evaluation is redone by the resumed process, which can be killed again.

The phase the process was really in when the signal went is read back from the files and printed per kill (a
``checkpoint`` kill can land just after the write finished). When no moment of the wanted phase remains, the kill
aims at a step. Kills while the process starts and restores are not aimed at (``--restore-kills`` adds some).

Prints one JSON line per kill and a summary line: the number of kills by phase, restarts, wall seconds of the
reference and the killed runs, ``params_bit_equal`` and ``metrics_equal``. Exits non-zero when they are not both
true.

Usage::

    python benchmarks/kill_resume.py --epochs 6 --checkpoint-every 2   # 20 kills (the figure in BENCHMARKS.md)
    python benchmarks/kill_resume.py --kills 5 --epochs 2 # shorter
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import _jaxbench as jb  # noqa: E402  (the standard library only: the shared flag checks)

TINY = ["--config.model.T=4", "--config.model.t_ratio=2", "--config.model.c_ratio=2", "--config.model.channels=(8,)",
        "--config.model.pools=(2,)", "--config.model.fc=(16,)", "--config.train.batch_size=64",
        "--config.train.eval_batch_size=120", "--config.train.learning_rate=0.005"]
STEPS_PER_EPOCH = 22  # 1,437 training digits // 64
PHASES = ("step", "checkpoint", "eval")


def _cmd(workdir: str, epochs: int, every: int) -> list[str]:
    return [sys.executable, os.path.join(ROOT, "train.py"), "--config=" + os.path.join(ROOT, "configs", "digits_dvs.py"),
            f"--workdir={workdir}", "--noprogress", *TINY, f"--config.train.num_epochs={epochs}",
            f"--config.train.checkpoint_every_steps={every}"]


def _env() -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env.pop("XLA_FLAGS", None)
    return env


def _checkpoints(workdir: str) -> tuple[set[int], bool]:
    """(final checkpoint steps, whether an orbax write is in progress)."""
    path = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(path):
        return set(), False
    names = os.listdir(path)
    return {int(n) for n in names if n.isdigit()}, any("orbax-checkpoint-tmp" in n for n in names)


def _rows(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().endswith("}")]


def _phase(workdir: str, epochs: int) -> str:
    """What the training process is doing now, read from its files."""
    steps, writing = _checkpoints(workdir)
    if writing:
        return "checkpoint"
    last = max(steps, default=0)
    tested = {r["epoch"] for r in _rows(workdir) if r["split"] == "test"}
    if last and last % STEPS_PER_EPOCH == 0 and last // STEPS_PER_EPOCH not in tested:
        return "eval"
    return "step"


class _Run:
    """One ``train.py`` process whose stdout is read on a thread (``resumed``: restored and running)."""

    def __init__(self, cmd: list[str], workdir: str):
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self.resumed = threading.Event()
        self.start_steps = _checkpoints(workdir)[0]
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith(("Resuming from", "Evaluating epoch")):
                self.resumed.set()


def _wait_for(run: _Run, workdir: str, epochs: int, phase: str, rng: random.Random, deadline: float) -> str | None:
    """Sleeps until a random moment of ``phase`` (or of a step when none remains); returns the aimed phase, or
    None when the process ended first."""
    def alive():
        return run.proc.poll() is None and time.time() < deadline

    if phase == "restore":
        time.sleep(rng.uniform(2.0, 12.0))
        return phase if alive() else None
    while alive():
        steps, writing = _checkpoints(workdir)
        new = steps - run.start_steps
        final_step = epochs * STEPS_PER_EPOCH
        if phase == "checkpoint" and writing and (new or run.resumed.is_set() or not run.start_steps):
            time.sleep(rng.uniform(0.0, 0.3))
            return phase
        if phase == "eval" and _phase(workdir, epochs) == "eval" and (new or run.resumed.is_set()):
            time.sleep(rng.uniform(0.0, 1.0))
            return phase
        if phase != "step" and max(steps, default=0) >= final_step - 3:
            phase = "step"  # nothing of the wanted phase left
        if phase == "step" and new:
            time.sleep(rng.uniform(0.0, 1.5))
            return phase
        time.sleep(0.002)
    return None


def _final_state(workdir: str, epochs: int, every: int):
    """(step, parameter and state leaves) of the latest checkpoint in ``workdir``."""
    import importlib.util

    import jax
    from flax import nnx

    from masnn_jax import train as training

    spec = importlib.util.spec_from_file_location("digits_dvs", os.path.join(ROOT, "configs", "digits_dvs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.model.T, config.model.t_ratio, config.model.c_ratio = 4, 2, 2
    config.model.channels, config.model.pools, config.model.fc = (8,), (2,), (16,)
    config.train.batch_size, config.train.eval_batch_size, config.train.learning_rate = 64, 120, 0.005
    config.train.num_epochs, config.train.checkpoint_every_steps = epochs, every
    model, meta = training.load_model(config, workdir)
    return meta["step"], [np.asarray(x) for x in jax.tree_util.tree_leaves(nnx.state(model))]


def main(argv=None) -> int:
    parser = jb.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=3)
    parser.add_argument("--restore-kills", type=int, default=0, help="extra kills while a process starts/restores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", default=None, help="keep the two workdirs under this folder")
    args = parser.parse_args(argv)
    jb.check_at_least(args, kills=1, epochs=1, checkpoint_every=1, restore_kills=0)
    if args.keep is not None and os.path.exists(args.keep) and not os.path.isdir(args.keep):
        jb.fail(f"--keep {args.keep!r} is a file, not a folder")

    base = args.keep or tempfile.mkdtemp(prefix="masnn_kill_resume_")
    os.makedirs(base, exist_ok=True)
    reference, killed = os.path.join(base, "reference"), os.path.join(base, "killed")
    for path in (reference, killed):
        if os.path.exists(path):
            shutil.rmtree(path)
    rng = random.Random(args.seed)
    t0 = time.time()
    proc = subprocess.run(_cmd(reference, args.epochs, args.checkpoint_every), cwd=ROOT, env=_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(json.dumps({"error": "reference run failed", "output": proc.stdout[-2000:] + proc.stderr[-2000:]}))
        return 1
    reference_seconds = time.time() - t0

    plan = [PHASES[i % len(PHASES)] for i in range(args.kills)] + ["restore"] * args.restore_kills
    rng.shuffle(plan)
    t0, kills, restarts, counts = time.time(), 0, 0, {}
    deadline = t0 + 3600
    for aim in plan:
        run = _Run(_cmd(killed, args.epochs, args.checkpoint_every), killed)
        restarts += 1
        aimed = _wait_for(run, killed, args.epochs, aim, rng, deadline)
        if aimed is None:  # finished (or deadline) before the kill
            run.proc.wait()
            break
        phase = "restore" if aimed == "restore" and not run.resumed.is_set() else _phase(killed, args.epochs)
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait()
        kills += 1
        counts[phase] = counts.get(phase, 0) + 1
        steps, _ = _checkpoints(killed)
        print(json.dumps({"kill": kills, "aimed": aim, "phase": phase, "latest_checkpoint": max(steps, default=0),
                          "seconds": round(time.time() - t0, 1)}), flush=True)
    final = subprocess.run(_cmd(killed, args.epochs, args.checkpoint_every), cwd=ROOT, env=_env(),
                           capture_output=True, text=True)
    restarts += 1
    killed_seconds = time.time() - t0
    if final.returncode != 0:
        print(json.dumps({"error": "final resume failed", "output": final.stdout[-2000:] + final.stderr[-2000:]}))
        return 1

    step_a, params_a = _final_state(reference, args.epochs, args.checkpoint_every)
    step_b, params_b = _final_state(killed, args.epochs, args.checkpoint_every)
    bit_equal = step_a == step_b and len(params_a) == len(params_b) and all(
        a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b) for a, b in zip(params_a, params_b))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    rows_a, rows_b = strip(_rows(reference)), strip(_rows(killed))
    summary = {"summary": True, "kills": kills, "kills_by_phase": counts, "restarts": restarts,
               "final_step": step_b, "reference_seconds": round(reference_seconds, 1),
               "killed_run_seconds": round(killed_seconds, 1), "params_bit_equal": bool(bit_equal),
               "metrics_equal": rows_a == rows_b, "metrics_rows": len(rows_b), "workdirs": base}
    print(json.dumps(summary), flush=True)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if bit_equal and rows_a == rows_b and kills == args.kills + args.restore_kills else 1


if __name__ == "__main__":
    sys.exit(main())
