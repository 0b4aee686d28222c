"""Reading every file of a dataset once before training: :func:`verify` and :func:`maybe_verify`.

Building a dataset checks that its files exist and are not empty (and, for DVS Gesture's IBM layout, that every
label window lies inside its recording); the contents of a file are validated when it is first read, which may be
hours into a run. :func:`verify` reads every recording of both splits once, in parallel threads, validates it
(coordinates, polarity, timestamps; see :mod:`masnn_jax.data.events.readers`) and checks every sample (events
present; under the official test rule, more than one timestamp), and reports every problem at once: its error
gives the counts and lists the first 10 bad files (the command line below lists them all).

Command line: ``python -m masnn_jax.data verify --config=configs/dvs_gesture.py --config.data.root=/data/gesture``.
"""

from __future__ import annotations

import concurrent.futures
import os
import time


from masnn_jax.data.events.core import validate_events

__all__ = ["VerifyReport", "verify", "maybe_verify", "dataset_file_bytes"]


#: How many bad files ``str(report)`` (and so the error of :func:`verify`) lists before "... and N more bad files".
MAX_LISTED_FILES = 10


class VerifyReport(dict):
    """What :func:`verify` found: a dict with ``name``, ``files`` (number read), ``samples``, ``events``,
    ``bytes``, ``seconds``, ``problems`` (list of messages, each naming a file, or a split that could not be built),
    ``problems_by_file`` (the same messages grouped: ``{file: [messages]}``, in the order found; a split that
    could not be built is keyed ``'<split> split'``, an emulated digits sample by its name), ``skipped`` (label
    windows dropped under ``bad_windows='skip'``, each naming its file and row) and ``ok`` (no problems).
    ``str(report)`` is a summary listing the problems of the first :data:`MAX_LISTED_FILES` bad files (splits that
    could not be built first) and the count of the others; :meth:`summary` with ``max_files=None`` lists all."""

    def summary(self, max_files: int | None = MAX_LISTED_FILES) -> str:
        """The summary paragraph; ``max_files``: bad files whose problems are listed (None: all). The counts of
        problems and bad files are always given."""
        head = (f"{self['name']}: verified {self['files']} file(s), {self['samples']} sample(s), {self['events']} "
                f"events ({self['bytes'] / 2 ** 20:.1f} MiB) in {self['seconds']:.1f} s")
        if self.get("skipped"):
            head += f" ({len(self['skipped'])} bad label window(s) skipped, config.data.bad_windows='skip')"
        if not self["problems"]:
            return head + ": no problems"
        groups = self.get("problems_by_file") or {p: [p] for p in self["problems"]}
        splits = [k for k in groups if k.endswith(" split")]
        files = [k for k in groups if not k.endswith(" split")]
        count = f"{len(self['problems'])} problem(s)"
        if files:
            count += f" in {len(files)} bad file(s)"
        if splits:
            count += f"{' and' if files else ' in'} {len(splits)} split(s) that could not be built"
        shown = files if max_files is None else files[:max_files]
        lines = [m for k in splits + shown for m in groups[k]]
        if len(shown) < len(files):
            lines.append(f"... and {len(files) - len(shown)} more bad files (all of them: "
                         "`python -m masnn_jax.data verify --config=<this config>`)")
        return head + f": {count}:\n  " + "\n  ".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _build_splits(data_config):
    """(datasets built, ``{'<split> split': [message]}`` for the splits that could not be built, their errors)."""
    from masnn_jax.data.events.config import build

    sets, problems, errors = [], {}, []
    for split in ("train", "test"):
        try:
            sets.append(build(data_config, split))
        except (ValueError, OSError) as e:  # DataFormatError, DatasetNotFoundError, FileNotFoundError
            problems[f"{split} split"] = [f"{split} split: {type(e).__name__}: {e}"]
            errors.append(e)
    return sets, problems, errors


def dataset_file_bytes(data_config, *, skip_unbuildable: bool = False) -> int:
    """Total size in bytes of the recording files of both splits (0 for the emulated digits).

    ``skip_unbuildable``: count only the splits that can be built (when neither can, raise the first one's error).

    Raises:
      ValueError / OSError: a split cannot be built (as :func:`masnn_jax.data.events.build`).
    """
    from masnn_jax.data.events.config import build, resolve

    if resolve(data_config)["name"] == "digits_dvs":
        return 0
    paths, errors = set(), []
    for split in ("train", "test"):
        try:
            paths.update(build(data_config, split).recordings())
        except (ValueError, OSError) as e:
            if not skip_unbuildable:
                raise
            errors.append(e)
    if len(errors) == 2:
        raise errors[0]
    return sum(os.path.getsize(p) for p in paths)


def _check_file(dataset, path: str, indices: list[int]) -> tuple[list[str], int, int]:
    """(problems, events, bytes) of one recording of ``dataset`` and its samples."""
    try:
        rec = dataset.read_recording(path)
    except (ValueError, OSError) as e:
        return [f"{type(e).__name__}: {e}"], 0, 0
    problems = []
    for i in indices:
        p = dataset.check_sample(i, rec)
        if p:
            problems.append(p)
    size = os.path.getsize(path) if os.path.isfile(path) else int(rec.nbytes)
    return problems, int(rec.shape[0]), size


def verify(data_config, *, workers: int | None = None, raise_on_problems: bool = True) -> VerifyReport:
    """Reads every recording of both splits of ``config.data`` once and reports every problem at once.

    Files are read in ``workers`` threads (default ``config.data.verify_workers``, 0 = ``min(8, CPUs)``); each is
    validated by its reader (coordinates inside the sensor, polarity in its two values, finite integral
    timestamps, time order where the format promises it), then each of its samples is checked (not empty; under
    ``window_rule='official'`` a test sample needs two distinct timestamps). A file is read once even when both
    splits use it. For the emulated digits every recording is checked against the sensor.

    Args:
      data_config: ``config.data`` (ConfigDict or dict).
      workers: threads (None: from the config).
      raise_on_problems: raise ValueError when anything is wrong (else return the report).

    Returns:
      a :class:`VerifyReport`.

    Raises:
      ValueError: any problem (``raise_on_problems``); the message gives the number of problems and bad files,
        the splits that could not be built (with their errors) and the first :data:`MAX_LISTED_FILES` bad files,
        each by path (and line, row or byte offset and the rule where the reader gives them), then "... and N more
        bad files".
      ValueError / OSError: no split can be built (``raise_on_problems``): the first split's own error.
    """
    from masnn_jax.data.events.config import resolve

    full = resolve(data_config)
    t0 = time.perf_counter()
    sets, groups, errors = _build_splits(data_config)
    if not sets and raise_on_problems:
        raise errors[0]  # nothing to read (no root, no dataset there): the build error itself is the message
    n_files = n_events = n_bytes = n_samples = 0
    skipped: list[str] = []
    if full["name"] == "digits_dvs":
        for ds in sets:
            n_samples += len(ds)
            for i in range(len(ds)):
                ev = ds.events(i)
                n_events += int(ev.shape[0])
                n_bytes += int(ev.nbytes)
                what = f"digits_dvs {ds.split} sample {i}"
                try:
                    validate_events(ev, ds.sensor_size, what=what)
                except ValueError as e:
                    groups.setdefault(what, []).append(str(e))
    else:
        jobs: dict[str, list[tuple]] = {}
        for ds in sets:
            n_samples += len(ds)
            skipped += getattr(ds, "skipped_windows", [])
            for path, indices in ds.recordings().items():
                jobs.setdefault(path, []).append((ds, indices))
        n_threads = workers if workers is not None else int(full.get("verify_workers") or 0)
        n_threads = n_threads or min(8, os.cpu_count() or 1)

        def run(path):
            """(problems, events, bytes) of one file, checked for every split that uses it."""
            out, events, size = [], 0, 0
            for ds, indices in jobs[path]:
                p, events, size = _check_file(ds, path, indices)
                out += [q for q in p if q not in out]
                if events == 0:  # unreadable: no need to try the other split
                    break
            return out, events, size

        paths = list(jobs)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, n_threads)) as pool:
            for path, (out, events, size) in zip(paths, pool.map(run, paths)):
                if out:
                    groups[path] = out
                n_events += events
                n_bytes += size
        n_files = len(jobs)
    problems = [m for msgs in groups.values() for m in msgs]
    report = VerifyReport(name=full["name"], files=n_files, samples=n_samples, events=n_events, bytes=n_bytes,
                          seconds=time.perf_counter() - t0, problems=problems, problems_by_file=groups,
                          skipped=skipped, ok=not problems)
    if problems and raise_on_problems:
        raise ValueError(f"config.data (name={full['name']!r}, root={full.get('root')!r}) failed verification; "
                         + str(report))
    return report


def maybe_verify(data_config) -> str:
    """Runs :func:`verify` when ``config.data.verify`` asks for it; the trainer calls this before training.

    ``verify=True``: always; ``False``: never; ``'auto'``: when the recordings of both splits total at most
    ``config.data.verify_auto_mb`` MiB (a few seconds of reading), and for the emulated digits (about 0.4 s once
    the process has emulated them, which training does anyway; the first call in a process emulates them, ~8 s
    on 2 CPU cores, and training then reuses them).

    The trainer calls it before it builds the datasets, so that when one split cannot be built (e.g. CIFAR10-DVS
    with too few files per class for a test split) and files of the other are corrupt, one error reports both. For
    ``'auto'`` the size counts the splits that can be built.

    Returns:
      a one-line message saying what was done (for the log).

    Raises:
      ValueError: problems found (as :func:`verify`), or a bad ``config.data.verify`` value (naming the key);
        ValueError / OSError: no split can be built (that split's own error).
    """
    from masnn_jax.data.events.config import resolve

    full = resolve(data_config)  # checks config.data.verify with the other enumerated keys
    mode = full["verify"]
    if mode is False:
        return "data verification off (config.data.verify=False)"
    if mode == "auto" and full["name"] != "digits_dvs":
        size = dataset_file_bytes(data_config, skip_unbuildable=True)
        limit = float(full["verify_auto_mb"]) * 2 ** 20
        if size > limit:
            return (f"data verification skipped: {size / 2 ** 20:.0f} MiB of recordings > config.data.verify_auto_mb="
                    f"{full['verify_auto_mb']} (run `python -m masnn_jax.data verify --config=...` or set "
                    "config.data.verify=True)")
    return str(verify(data_config))
