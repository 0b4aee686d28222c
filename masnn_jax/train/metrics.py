"""Metrics: one JSON object per line in ``<workdir>/metrics.jsonl`` and TensorBoard event files in
``<workdir>/tensorboard`` (tensorboardX, no TensorFlow needed). Process 0 writes; the others do nothing."""

from __future__ import annotations

import json
import os
from typing import Any

import jax

__all__ = ["MetricWriter"]


class MetricWriter:
    """Appends JSON lines to ``metrics.jsonl`` and scalars to TensorBoard (tensorboardX).

    A resumed run (``resume_step`` not None) drops the ``metrics.jsonl`` rows past that step and starts its
    TensorBoard event file with a purge at ``resume_step + 1`` (TensorBoard then hides the earlier attempt's points
    from that step on, which the resumed run redoes). The event file is opened at the first row written, so a rerun
    that has nothing left to do leaves no empty event file behind."""

    def __init__(self, workdir: str, resume_step: int | None):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb_dir = os.path.join(workdir, "tensorboard")
        self.purge_step = None if resume_step is None else int(resume_step) + 1
        self.enabled = jax.process_index() == 0  # one writer in multi-host runs
        self.tb = None
        if not self.enabled:
            return
        if os.path.exists(self.path):  # a fresh run (resume_step None) keeps no rows of an unsaved earlier attempt
            # Rows past the checkpoint describe progress that the resumed run redoes: drop them (atomically).
            with open(self.path) as f:
                rows = [line for line in f if line.strip()]
            keep = []
            for line in rows:
                try:
                    if resume_step is not None and json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(keep)
            os.replace(tmp, self.path)

    def has_row(self, split: str, step: int) -> bool:
        """Whether ``metrics.jsonl`` already holds a row of ``split`` at ``step``."""
        if not os.path.exists(self.path):
            return False
        with open(self.path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if row.get("split") == split and row.get("step") == step:
                    return True
        return False

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is None:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(self.tb_dir, purge_step=self.purge_step)
        for key, value in row.items():
            if key not in ("step", "epoch", "split") and isinstance(value, (int, float)):
                self.tb.add_scalar(f"{row['split']}/{key}", value, row["step"])
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


