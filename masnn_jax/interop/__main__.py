"""Converts official PyTorch weights into a masnn-jax checkpoint, for any model family with a converter
(``models.get_family(config.model.name).interop``, see :func:`masnn_jax.interop.converter`).

Usage::

    python -m masnn_jax.interop <official.pth> --config=configs/dvs_gesture.py --config.model.attention=TCSA \\
        --out=<dir>

``<official.pth>`` is what the official scripts save (``{'net': state_dict, 'acc': ..., 'epoch': ...}``, usually
named ``*.t7``) or a bare state dict; ``module.`` prefixes are removed. The config must describe the network the
weights were trained with (attention scheme, ``T``, ``t_ratio``, ``c_ratio``); a mismatch is reported key by key.
The checkpoint goes to ``<dir>/checkpoints`` (step 0, the layout ``train.py`` writes), so that

    python train.py --config=configs/dvs_gesture.py --config.model.attention=TCSA --workdir=<dir> --mode=eval

evaluates it (or a training run fine-tunes it). A non-empty ``<dir>/checkpoints`` is never overwritten.
Prints one JSON line: checkpoint directory, tensor and parameter counts, what the file says about itself
(``acc``, ``epoch``) and whether converting back reproduces the file exactly.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging
from masnn_jax.config import define_config_flag, parse_flags

_CONFIG = define_config_flag(
    None, "masnn-jax config file (ml_collections) describing the official network.", lock_config=True
)
_OUT = flags.DEFINE_string("out", None, "Output run directory; the checkpoint goes to <out>/checkpoints.")
_FRAMES = flags.DEFINE_enum(
    "frames", "masnn", ["masnn", "official"],
    "Frame layout the converted model will see: 'masnn' (masnn-jax data, H = y; spatial kernels are transposed from "
    "the official (x, y) frames) or 'official' (the official frames' spatial order). Only for converters with a "
    "'frames' option (the MA-SNN event nets).",
)


def _accepts(fn, name: str) -> bool:
    import inspect

    params = inspect.signature(fn).parameters
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _options(fn, **candidates) -> dict:
    """The keyword options ``fn`` accepts among ``candidates``."""
    return {k: v for k, v in candidates.items() if _accepts(fn, k)}
_WEIGHTS_ONLY = flags.DEFINE_bool("weights_only", True, "torch.load(weights_only=...) for the official file.")


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m masnn_jax.interop <official.pth> --config=<config.py> --out=<dir>")
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required")
    if not _OUT.value:
        raise app.UsageError("--out is required")
    path = argv[1]
    ckpt_dir = os.path.join(os.path.abspath(_OUT.value), "checkpoints")
    # errors about the files print as one 'error: ...' line (app.UsageError would add the whole usage text)
    if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
        sys.exit(f"error: {ckpt_dir} already holds checkpoints; choose an empty --out directory")
    if not os.path.exists(path):
        sys.exit(f"error: official checkpoint {path} does not exist")
    logging.set_verbosity(logging.WARNING)  # orbax logs every step of a save at INFO
    import jax
    import numpy as np
    from flax import nnx

    from masnn_jax import interop
    from masnn_jax import train as training
    from masnn_jax.interop.official import read_torch_file  # generic torch.load with one-line errors

    try:
        conv = interop.converter(config)
    except ValueError as e:
        sys.exit(f"error: {e}")
    if _FRAMES.present and not _accepts(conv.from_official_torch, "frames"):
        sys.exit(f"error: --frames is not an option of the converter {conv.__name__} "
                 f"(config.model.name={config.model.get('name', 'masnn')!r})")

    try:  # garbage file, torch missing, NumPy objects under weights_only: one line naming the file and the fix
        raw = read_torch_file(path, weights_only=_WEIGHTS_ONLY.value, cli=True)
    except (ValueError, ImportError, OSError) as e:
        sys.exit(f"error: {e}")
    meta = {}
    if isinstance(raw, dict):
        for key in ("acc", "epoch"):
            value = raw.get(key)
            if isinstance(value, (int, float)) or (hasattr(value, "item") and getattr(value, "ndim", 1) == 0):
                meta[key] = float(value) if key == "acc" else int(value)
    try:
        load = getattr(conv, "load_official_state_dict", interop.load_official_state_dict)
        state_dict = load(raw)
        model = conv.from_official_torch(state_dict, config,
                                         **_options(conv.from_official_torch, frames=_FRAMES.value))
    except (ValueError, ImportError) as e:  # StateDictMismatchError lists every key with its shapes
        sys.exit(f"error: {e}")
    back = conv.to_official_torch(model, **_options(conv.to_official_torch, frames=_FRAMES.value,
                                                    num_batches_tracked=False))
    # lossless means: the converted tensors, cast back to the file's dtypes, equal the file's (a float64 file loaded
    # into a float32 model is not); keys the file lacks (e.g. BN counters) are not compared
    exact = all(
        np.array_equal(np.asarray(v).astype(np.asarray(state_dict[k]).dtype), np.asarray(state_dict[k]))
        for k, v in back.items() if k in state_dict
    ) and any(k in state_dict for k in back)
    out = training.save_model_checkpoint(model, config, _OUT.value)
    n_params = sum(int(np.size(v)) for v in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
    print(json.dumps({
        "checkpoint": out,
        "tensors": len(back),
        "parameters": n_params,
        "official": meta,
        "round_trip_exact": bool(exact),
        "model": str(config.model.get("name", "masnn")),
        "attention": config.model.get("attention"),
        "T": int(config.model.T),
    }), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
