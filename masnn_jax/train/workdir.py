"""One training run per workdir: an exclusive lock on ``<workdir>/.lock``."""

from __future__ import annotations

import contextlib
import os
import socket

import jax

__all__ = ["WorkdirInUseError", "check_workdir", "make_workdir", "workdir_lock"]


class WorkdirInUseError(RuntimeError):
    """Another training run holds ``<workdir>/.lock``: two runs must not write one workdir's checkpoints."""


def check_workdir(workdir: str, name: str | None = None) -> None:
    """Checks, without writing anything, that a training run can create and write ``workdir``: it is a folder (or
    does not exist yet) and the folder it is in, or its nearest existing ancestor, is writable. Run before the
    minutes of building data and compiling.

    Args:
      workdir: the folder. name: how messages name it (default ``--workdir <workdir>``; the analysis CLI passes
        ``--out <dir>``).
    Raises:
      ValueError: naming ``workdir`` and what is wrong (a file, a file among its parents, no write permission).
    """
    name = name or f"--workdir {workdir}"
    path = os.path.abspath(workdir)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"{name}: is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{name}: the folder is not writable")
        return
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{name}: cannot be created, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: cannot be created, {parent} is not writable")


def make_workdir(workdir: str) -> None:
    """``os.makedirs(workdir, exist_ok=True)``, with an ``OSError`` (read-only file system, permissions, a file in
    the way) reported as a ``ValueError`` that names ``workdir``."""
    try:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, ".lock"), "a"):
            pass
    except OSError as e:
        raise ValueError(f"--workdir {workdir}: cannot be written ({e.strerror or e})") from None


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


