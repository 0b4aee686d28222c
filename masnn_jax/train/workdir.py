"""One training run per workdir: an exclusive lock on ``<workdir>/.lock``."""

from __future__ import annotations

import contextlib
import os
import socket

import jax

__all__ = ["WorkdirInUseError", "workdir_lock"]


class WorkdirInUseError(RuntimeError):
    """Another training run holds ``<workdir>/.lock``: two runs must not write one workdir's checkpoints."""


@contextlib.contextmanager
def workdir_lock(workdir: str):
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


