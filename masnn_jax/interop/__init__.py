"""Interoperability with the official MA-SNN code (``BICLab/Attention-SNN``, PyTorch).

* :func:`from_official_torch` — official event-net weights (state dict, or a ``torch.save`` file) -> masnn-jax model.
* :func:`to_official_torch` — the reverse: a masnn-jax model -> official state dict (NumPy or torch tensors).
* :func:`official_config_to_masnn` — official ``Config.py`` fields -> masnn-jax ``ConfigDict``.
* :func:`load_official_state_dict`, :func:`official_state_dict_shapes`, :class:`StateDictMismatchError`.
* ``python -m masnn_jax.interop <official.pth> --config=configs/dvs_gesture.py --out=<dir>`` writes a checkpoint
  that ``train.py --mode=eval --workdir=<dir>`` loads (see :mod:`masnn_jax.interop.__main__`).

The Att-Res-SNN (ImageNet ResNet) weights are not covered: masnn-jax has no such model yet.
"""

from masnn_jax.interop.official import (
    StateDictMismatchError,
    from_official_torch,
    load_official_state_dict,
    official_state_dict_shapes,
    to_official_torch,
)
from masnn_jax.interop.official_config import OFFICIAL_ARCHS, official_config_to_masnn

__all__ = [
    "StateDictMismatchError",
    "from_official_torch",
    "to_official_torch",
    "load_official_state_dict",
    "official_state_dict_shapes",
    "official_config_to_masnn",
    "OFFICIAL_ARCHS",
]
