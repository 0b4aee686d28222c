"""Official MA-SNN ``Config.py`` fields -> a masnn-jax config (see :func:`official_config_to_masnn`)."""

from __future__ import annotations

import contextlib

import copy
import importlib.util
import os
from typing import Any, Mapping

import ml_collections

__all__ = ["official_config_to_masnn", "OFFICIAL_ARCHS"]

#: ``(target_size, im_height, im_width)`` of the official networks -> masnn-jax ``config.model.arch``.
OFFICIAL_ARCHS = {
    (11, 32, 32): "dvs_gesture",  # MA_SNN/DVSGestures/CNN (128 px / ds 4)
    (21, 128, 128): "dvs_gait",  # MA_SNN/DVSGait/CNN
    (10, 128, 128): "cifar10_dvs",  # MA_SNN/CIFAR10DVS/CNN
}

_SENSOR = 128  # all three official datasets come from a 128x128 DVS; im_height = 128 // ds
_MISSING = object()


def _get(official: Any, name: str, default: Any = _MISSING) -> Any:
    if isinstance(official, Mapping):
        return official.get(name, default)
    return getattr(official, name, default)


def _has(official: Any, name: str) -> bool:
    return _get(official, name) is not _MISSING


def _default_config(arch: str) -> ml_collections.ConfigDict:
    """``configs/<arch>.py`` of the source tree when present, else :func:`masnn_jax.config.base_config`."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs",
                        f"{arch}.py")
    if os.path.isfile(path):
        spec = importlib.util.spec_from_file_location(f"_masnn_configs_{arch}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config()
    from masnn_jax.config import base_config

    return base_config(arch=arch, T=60, dataset=arch)  # the dataset's own data defaults (ds, test windows, ...)


def _infer_arch(official: Any) -> str:
    target = _get(official, "target_size", None)
    h, w = _get(official, "im_height", None), _get(official, "im_width", None)
    if (h is None or w is None) and _get(official, "ds", None) is not None:
        h = w = _SENSOR // int(_get(official, "ds"))
    if target is None:
        raise ValueError("official config has no 'target_size': cannot tell the dataset; pass base=<masnn-jax config>")
    if h is None:
        raise ValueError("official config has neither 'im_height'/'im_width' nor 'ds': cannot tell the dataset; pass "
                         "base=<masnn-jax config>")
    key = (int(target), int(h), int(w))
    if key not in OFFICIAL_ARCHS:
        raise ValueError(
            f"official config fields target_size={key[0]}, im_height={key[1]}, im_width={key[2]} match no official "
            f"network {sorted(OFFICIAL_ARCHS.items())}; pass base=<masnn-jax config> with the layer plan"
        )
    return OFFICIAL_ARCHS[key]


def official_config_to_masnn(official: Mapping[str, Any] | Any, base: ml_collections.ConfigDict | None = None
                             ) -> ml_collections.ConfigDict:
    """Maps an official MA-SNN config (``MA_SNN/<dataset>/CNN/Config.py``, class ``configs``) onto masnn-jax's.

    Args:
      official: a mapping, or an object with the official attribute names (e.g. an instance of the official
        ``configs``). Absent fields keep the base config's value.
      base: the masnn-jax config to start from (copied; not modified). ``None``: ``configs/<arch>.py`` with the arch
        chosen from ``target_size`` and the image size (``im_height``/``im_width``, or ``128 // ds``):
        11 classes at 32x32 -> 'dvs_gesture', 21 at 128x128 -> 'dvs_gait', 10 at 128x128 -> 'cifar10_dvs'.
    Returns:
      a new ``ConfigDict`` (``model``, ``data``, ``train``, ``seed``).

    Field table (official -> masnn-jax):

    ========================  ==================================  =============================================
    official field            masnn-jax key                       note
    ========================  ==================================  =============================================
    ``attention``             ``model.attention``                 'no', 'TA', 'CA', 'SA', 'TCA', 'TSA', 'CSA', 'TCSA'
    ``c_ratio``               ``model.c_ratio``
    ``t_ratio``               ``model.t_ratio``                   also sizes the FC layers' TA, as officially
    ``T``                     ``model.T`` (= ``data.T``)
    ``dt``                    ``data.dt_ms``
    ``ds``                    ``data.ds``                         and the image size when im_height is absent
    ``im_height/im_width``,   ``model.input_shape`` (H, W, C)     set only when it differs from the arch's
    ``in_channels``
    ``target_size``           ``model.num_classes``               set only when it differs from the arch's
    ``Vthres``                ``model.neuron.v_th``
    ``alpha``                 ``model.neuron.alpha``
    ``beta``                  ``model.neuron.beta``
    ``lens`` (else ``a``)     ``model.surrogate.width = 2·lens``  the official ``ActFun`` reads ``lens``
                              (``= a``)                           (``a/2`` at construction), so ``lens`` wins
    ``mode_select``           ``model.neuron.mode_select``        'spike' or 'mem' (LIAF)
    ``TR_model``              ``model.neuron.tr_model``           'NTR' or 'TR'
    ``mem_act``               —                                   must be ReLU (masnn-jax's LIAF activation)
    ``track_running_stats``   —                                   must be True (masnn-jax always tracks)
    ``Vreset``                —                                   unused by the official neuron
    ``lr``                    ``train.learning_rate``
    ``betas``                 ``train.b1``, ``train.b2``
    ``eps``                   ``train.eps``
    ``weight_decay``          ``train.weight_decay``
    ``lr_scheduler``          ``train.schedule``                  True -> 'plateau', False -> 'constant'
    ``batch_size``            ``train.batch_size``
    ``batch_size_test``       ``train.eval_batch_size``
    ``num_epochs``            ``train.num_epochs``
    ``clip``                  ``data.n_test_windows``             test windows per recording
    ========================  ==================================  =============================================

    Every other official field (paths, loaders, ``init_method``, ``reduction``, ``pretrained_path``, run state) is
    ignored.

    Raises:
      ValueError: an official network that cannot be told (the message names the fields), or a setting masnn-jax
        cannot reproduce (``track_running_stats=False``, a LIAF ``mem_act`` other than ReLU).
    """
    if base is None:
        config = _default_config(_infer_arch(official))
    else:
        config = copy.deepcopy(base)
    m, d, t = config.model, config.data, config.train

    def put(section: ml_collections.ConfigDict, key: str, value: Any) -> None:
        old = section.get(key, None)
        if isinstance(old, bool) or isinstance(value, bool):
            pass
        elif isinstance(old, int) and isinstance(value, float) and float(value).is_integer():
            value = int(value)  # e.g. dt 25.0 into an int field
        elif isinstance(old, float) and isinstance(value, int):
            value = float(value)
        with section.unlocked() if hasattr(section, "unlocked") else contextlib.nullcontext():
            try:
                section[key] = value
            except TypeError:  # ml_collections keeps a field's type: e.g. dt 12.5 into an int field
                del section[key]
                section[key] = value

    for field, key, cast in (("attention", "attention", str), ("c_ratio", "c_ratio", int),
                             ("t_ratio", "t_ratio", int), ("T", "T", int)):
        if _has(official, field):
            put(m, key, cast(_get(official, field)))

    # image size and classes
    from masnn_jax.models.masnn_event import ARCHITECTURES

    plan = ARCHITECTURES.get(m.get("arch"), {})
    h, w = _get(official, "im_height", None), _get(official, "im_width", None)
    if (h is None or w is None) and _get(official, "ds", None) is not None:
        h = w = _SENSOR // int(_get(official, "ds"))
    if h is not None:
        c_in = int(_get(official, "in_channels", None) or (plan.get("input_shape") or (0, 0, 2))[2])
        shape = (int(h), int(w), c_in)
        if tuple(m.get("input_shape") or plan.get("input_shape") or ()) != shape:
            put(m, "input_shape", shape)
    if _has(official, "target_size"):
        n = int(_get(official, "target_size"))
        if (m.get("num_classes") or plan.get("num_classes")) != n:
            put(m, "num_classes", n)

    # neuron
    neuron = m.neuron
    for field, key, cast in (("Vthres", "v_th", float), ("alpha", "alpha", float), ("beta", "beta", float),
                             ("mode_select", "mode_select", str), ("TR_model", "tr_model", str)):
        if _has(official, field):
            put(neuron, key, cast(_get(official, field)))
    if _has(official, "lens") and _get(official, "lens") is not None:
        width = 2.0 * float(_get(official, "lens"))
    elif _has(official, "a") and _get(official, "a") is not None:
        width = float(_get(official, "a"))
    else:
        width = None
    if width is not None:
        put(m, "surrogate", ml_collections.ConfigDict(dict(name="rectangle", width=width)))
    mode = str(_get(official, "mode_select", neuron.get("mode_select", "spike")))
    if _has(official, "mem_act") and mode == "mem":
        act = _get(official, "mem_act")
        if act is None or getattr(act, "__name__", "") != "relu":
            raise ValueError(f"official mem_act={act!r}: masnn-jax's LIAF neuron uses ReLU only")
    if _has(official, "track_running_stats") and not _get(official, "track_running_stats"):
        raise ValueError("official track_running_stats=False (BatchNorm without running statistics) is not supported")

    # data
    for field, key, cast in (("dt", "dt_ms", float), ("ds", "ds", int), ("clip", "n_test_windows", int)):
        if _has(official, field) and _get(official, field) is not None:
            put(d, key, cast(_get(official, field)))

    # training
    for field, key, cast in (("lr", "learning_rate", float), ("eps", "eps", float),
                             ("weight_decay", "weight_decay", float), ("batch_size", "batch_size", int),
                             ("batch_size_test", "eval_batch_size", int), ("num_epochs", "num_epochs", int)):
        if _has(official, field) and _get(official, field) is not None:
            put(t, key, cast(_get(official, field)))
    if _has(official, "betas") and _get(official, "betas") is not None:
        b1, b2 = _get(official, "betas")
        put(t, "b1", float(b1))
        put(t, "b2", float(b2))
    if _has(official, "lr_scheduler"):
        put(t, "schedule", "plateau" if _get(official, "lr_scheduler") else "constant")
    return config

