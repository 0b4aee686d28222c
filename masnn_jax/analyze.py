"""Analyse a trained (or randomly initialised) MA-SNN: spiking activity, operations and energy, figures,
gradient norms.

Usage::

    python -m masnn_jax.analyze --config=configs/<name>.py --workdir=<run dir> [--init=random]
        [--num_batches=N] [--grad_batches=N] [--energy=45nm_fp32] [--config.key=value ...]

Loads the latest checkpoint of ``<workdir>/checkpoints`` (``--step`` for another one) built from ``--config`` (the
config the run was trained with), or a random initialisation with ``--init=random``; runs the test split of
``config.data``; writes ``<workdir>/analysis/report.json`` (``--out`` for another folder) and PNG figures there,
and prints a short summary. See :mod:`masnn_jax.analysis`.

What the summary counts, per sample (``report.json`` field in brackets):

* ``dense MACs`` (``macs``): one evaluation of each layer as an ANN (T = 1, every input counted); the ANN energy
  is ``E_MAC`` times their sum.
* ``ops run`` (``sops``): the operations the SNN performs, ``T · dense MACs · the input's non-zero rate``, split
  into ``MACs on non-binary inputs`` (``mac_ops``: on the model input, real or integer values, at ``E_MAC``; marked
  ``*`` in the table) and ``ACs on spikes`` (``ac_ops``: accumulates, the SOPs, at ``E_AC``). This is the honest
  count; Spikformer reports add a ``paper's count`` line (its integer residual stream taken as spikes) with the
  same two labels.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from masnn_jax.config import define_config_flag, parse_flags

_CONFIG = define_config_flag(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "digits_dvs.py"),
    "Configuration file the run was trained with (ml_collections).", lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints in <workdir>/checkpoints).")
_INIT = flags.DEFINE_enum("init", "checkpoint", ["checkpoint", "random"],
                          "Analyse the latest checkpoint, or a random initialisation.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 0, "Test batches for the activity passes (0: all).",
                                     lower_bound=0)
_GRAD_BATCHES = flags.DEFINE_integer("grad_batches", 2, "Batches for the gradient norms (0: skip them).",
                                     lower_bound=0)
_ENERGY = flags.DEFINE_enum("energy", "45nm_fp32", ["45nm_fp32", "45nm_fp16", "45nm_int32", "45nm_int8"],
                            "Energy per operation preset (Horowitz, ISSCC 2014).")
_BATCH_STATS = flags.DEFINE_enum("batch_norm", "auto", ["auto", "running", "batch"],
                                 "BatchNorm statistics in the activity passes; auto: batch statistics for "
                                 "--init=random, running averages for a checkpoint.")
_BYPASS = flags.DEFINE_bool("bypass", True, "Also run the network with its attention modules bypassed.")
_FIGURES = flags.DEFINE_bool("figures", True, "Write the PNG figures.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default <workdir>/analysis); created if missing.")
_PROBE = flags.DEFINE_integer("probe_samples", 8, "Samples probed for rasters, traces and attention weights.",
                              lower_bound=1)
_NEURONS = flags.DEFINE_integer("raster_neurons", 16, "Most active neurons per layer in the raster.",
                                lower_bound=1)


def _check_out_dir(out_dir: str) -> None:
    """ValueError naming ``--out`` (or, without it, the default ``<workdir>/analysis``) when ``out_dir`` cannot be a
    writable output folder: :func:`masnn_jax.train.workdir.check_workdir`'s checks, which write nothing."""
    from masnn_jax.train.workdir import check_workdir

    check_workdir(out_dir, f"--out {out_dir}" if _OUT.value else f"{out_dir} (the default of --out)")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required (the run directory holding checkpoints/)")
    from absl import logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    from masnn_jax import analysis

    batch_stats = {"auto": None, "running": False, "batch": True}[_BATCH_STATS.value]
    out_dir = _OUT.value or os.path.join(os.path.abspath(_WORKDIR.value), "analysis")
    config = _CONFIG.value
    try:
        _check_out_dir(out_dir)  # a file, or an unwritable place: said now, not after loading and running the model
        report = analysis.analyze(
            config, _WORKDIR.value, init=_INIT.value, step=_STEP.value, num_batches=_NUM_BATCHES.value,
            grad_batches=_GRAD_BATCHES.value, energy=_ENERGY.value, batch_stats=batch_stats, bypass=_BYPASS.value,
            figures=_FIGURES.value, out_dir=out_dir, probe_samples=_PROBE.value, raster_neurons=_NEURONS.value,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(analysis.summary(report, out_dir), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
