"""Command-line data tools: ``python -m masnn_jax.data verify --config=configs/dvs_gesture.py [--config.data.*=...]``.

``verify`` builds both splits of ``config.data`` and reads every recording once in parallel threads
(:func:`masnn_jax.data.events.verify`), printing one summary and every bad file (path, place in the file, rule
broken; the error training raises lists only the first 10). Exit status 0 when everything is fine, 1 when a problem
was found.
"""

from __future__ import annotations

import sys

from absl import app, flags

from masnn_jax.config import define_config_flag, parse_flags

FLAGS = flags.FLAGS
_CONFIG = define_config_flag(None, "Run config (a configs/*.py file); only config.data is used.")
flags.DEFINE_integer("workers", None, "Reader threads (default: config.data.verify_workers, 0 = min(8, CPUs)).")

COMMANDS = ("verify",)


def main(argv: list[str]) -> int:
    """Runs the command named in ``argv[1]``; returns the exit status (0 ok, 1 problems, 2 usage)."""
    if len(argv) != 2 or argv[1] not in COMMANDS:
        print(f"usage: python -m masnn_jax.data {{{'|'.join(COMMANDS)}}} --config=<file> [--config.data.<key>=...]",
              file=sys.stderr)
        return 2
    if _CONFIG.value is None:
        print("--config is required (e.g. --config=configs/dvs_gesture.py)", file=sys.stderr)
        return 2
    from masnn_jax.data.events import verify

    data = _CONFIG.value.data
    name = data.get("name", "digits_dvs")
    from masnn_jax.data.events.config import DATASET_NAMES

    if name not in DATASET_NAMES:
        print(f"verify handles the event datasets {DATASET_NAMES}; config.data.name is {name!r}", file=sys.stderr)
        return 2
    report = verify(data, workers=FLAGS.workers, raise_on_problems=False)
    print(report.summary(max_files=None))  # every bad file (the training error lists the first 10)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)
