"""Shared defaults for the ``configs/*.py`` files (ml_collections).

A config has four parts: ``seed``; ``model`` (read by :func:`masnn_jax.models.build`, keys of the family
``model.name``); ``data`` (read by :func:`masnn_jax.data.build`, keys of the dataset's kind only); ``train`` (read by
:mod:`masnn_jax.train`; :func:`train_defaults`). For event data ``T`` is one ``ml_collections.FieldReference``
shared by ``model.T`` and ``data.T``: ``--config.model.T=16`` sets both.
"""

from __future__ import annotations

import os
import sys

import ml_collections

from masnn_jax.data import default_data_config

__all__ = ["train_defaults", "base_config", "att_res_snn_imagenet_config", "spikformer_imagenet_config",
           "spikformer_cifar_config",
           "define_config_flag", "parse_flags"]


def train_defaults(**overrides) -> ml_collections.ConfigDict:
    """``config.train`` with every key the trainer reads, at the MA-SNN event recipe's values (Adam 1e-4, plateau,
    MSE, batch 128, 300 epochs, no Mixup/CutMix); ``overrides`` replace any of them (new keys allowed: e.g.
    ``label_smoothing``). See :mod:`masnn_jax.train.optim` for the optimiser and schedule keys and
    :mod:`masnn_jax.train.mixing` for ``mixup`` (``mixup_alpha``, ``cutmix_alpha``, ``prob``, ``switch_prob``,
    ``mode``, ``off_epoch``)."""
    t = ml_collections.ConfigDict(dict(
        num_epochs=300, batch_size=128, eval_batch_size=128, optimizer="adam", learning_rate=1e-4, b1=0.9,
        b2=0.999, eps=1e-8, momentum=0.9, nesterov=False, weight_decay=0.0, weight_decay_mask="all",
        schedule="plateau", plateau_factor=0.1, plateau_patience=5, min_lr=0.0, warmup_epochs=0, warmup_lr=0.0,
        step_epochs=30, step_gamma=0.1, lr_base_batch=ml_collections.FieldReference(None, field_type=int),
        max_nonfinite_steps=10, num_threads=0, loss="mse",
        label_smoothing=0.0, cooldown_epochs=0, init_from="", eval_every_epochs=1,
        checkpoint_every_steps=0, max_to_keep=3, num_workers=0,
    ))
    # Mixup/CutMix on the host batch (masnn_jax.train.mixing): both alphas 0 = off
    t.mixup = ml_collections.ConfigDict(dict(mixup_alpha=0.0, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5,
                                             mode="batch", off_epoch=0))
    t.update(overrides)
    return t


def base_config(*, arch: str | None, T: int, dataset: str = "digits_dvs", attention: str = "TCSA",
                c_ratio: int = 8, t_ratio: int = 5, a: float = 0.5) -> ml_collections.ConfigDict:
    """The official MA-SNN event recipe (``MA_SNN/*/CNN/Config.py``): official neuron (Vthres 0.3, alpha 0.3,
    beta 0) with a rectangle surrogate of width ``a``; Adam (betas 0.9/0.999, eps 1e-8, no weight decay) with
    ReduceLROnPlateau(0.1, patience 5) on the training loss; MSE between firing rates and one-hot labels.

    Args:
      arch: the official layer plan ('dvs_gesture', 'dvs_gait', 'cifar10_dvs') or None (give the sizes yourself).
      T: time steps (shared by ``model.T`` and ``data.T``).
      dataset: ``config.data.name``; ``config.data`` gets every key of that dataset with its defaults
        (:func:`masnn_jax.data.default_data_config`), so any of them can be set with ``--config.data.<key>=``.
      attention, c_ratio, t_ratio: attention scheme and reduction ratios.
      a: the rectangle surrogate's width (official ``a``).
    """
    config = ml_collections.ConfigDict()
    config.seed = 0
    t_ref = ml_collections.FieldReference(T)

    config.model = ml_collections.ConfigDict()
    m = config.model
    m.name = "masnn"
    m.arch = ml_collections.FieldReference(arch, field_type=str)  # typed, so --config.model.arch= works when None
    m.T = t_ref
    m.attention = attention
    m.placement = "input"  # 'input' = official code; 'membrane' = the paper's equations
    m.c_ratio = c_ratio
    m.t_ratio = t_ratio
    m.sa_kernel = 3
    m.channel_attention = "cbam"
    m.spatial_attention = "cbam"
    m.neuron = ml_collections.ConfigDict(
        dict(kind="masnn_official", v_th=0.3, alpha=0.3, beta=0.0, mode_select="spike", tr_model="NTR")
    )
    m.surrogate = ml_collections.ConfigDict(dict(name="rectangle", width=a))
    m.checkpoint = False
    m.unroll = 1
    m.conv_impl = "auto"  # 'auto' = im2col on CPU, XLA's (cuDNN's) conv elsewhere; 'xla' | 'im2col'
    m.remat = "none"  # 'layer': recompute each spiking layer in the backward pass (memory for long T)
    m.batch_chunks = ml_collections.FieldReference("auto", field_type=object)  # n > 1: BN/pool/attention/neuron of conv layers in n chunks; 'auto': 8 on CPU, 1 on GPU
    m.neuron_impl = "auto"  # the neuron's time loop: 'auto' = fused Pallas kernel on GPU, lax.scan elsewhere; 'scan' | 'pallas'
    m.dtype = ml_collections.FieldReference(None, field_type=str)
    m.param_dtype = "float32"

    config.data = default_data_config(dataset)
    config.data.T = t_ref

    config.train = train_defaults()  # checkpoint_every_steps 0: at the end of every epoch only
    return config




_CONFIG_ERRORS = (AttributeError, KeyError, OSError, SyntaxError, NameError, TypeError)


def _override_for(key: str) -> str | None:
    """The ``--config.<path>`` argument on the command line that has ``key`` in its path, if any."""
    for arg in sys.argv[1:]:
        if arg.startswith("--config.") and key in arg.split("=", 1)[0].split(".")[1:]:
            return arg.split("=", 1)[0]
    return None


def _config_error_exit(e: BaseException) -> None:
    inner = e
    while inner.args and isinstance(inner.args[0], BaseException):  # ml_collections wraps a KeyError
        inner = inner.args[0]
    text = str(inner.args[0]) if inner.args else str(inner)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if isinstance(e, (AttributeError, KeyError)) and lines and lines[0].strip("'\"") and " " not in lines[0]:
        key = lines[0].strip("'\"")
        flag = _override_for(key)
        hint = " " + lines[1] if len(lines) > 1 else ""
        where = f"{flag}: " if flag else ""
        message = f"{where}unknown config key {key!r} (not in the --config file).{hint}"
    elif isinstance(inner, SyntaxError) and getattr(inner, "filename", None):
        message = f"--config file {inner.filename}, line {inner.lineno}: SyntaxError: {inner.msg}"
    elif isinstance(inner, OSError) and getattr(inner, "filename", None):
        message = f"--config file {inner.filename}: {inner.strerror or inner}"
    else:
        detail = lines[-1] if lines else ""
        message = (f"--config or one of its --config.* overrides: {type(e).__name__}: {detail} (unknown config key, "
                   "missing file or not a config file)")
    print(f"FATAL Flags parsing error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def define_config_flag(default: str | None, help_string: str, **kwargs):
    """``config_flags.DEFINE_config_file('config', default, help_string, **kwargs)`` for the command-line tools.

    ml_collections loads the file and applies ``--config.a.b=value`` overrides while defining the flag (at import)
    or while parsing, and reports a missing file, a file that is not a config, or an override of a key the config
    does not have as a traceback (``OSError``, ``NameError``, ``AttributeError: 'b'``, ``KeyError``). Those become
    one ``FATAL Flags parsing error`` line and exit status 1, as absl does for other bad flags; use
    :func:`parse_flags` as ``app.run``'s ``flags_parser`` for the parse-time half.

    Raises:
      SystemExit(1): as above.
    """
    from ml_collections import config_flags

    try:
        return config_flags.DEFINE_config_file("config", default, help_string, **kwargs)
    except _CONFIG_ERRORS as e:
        _config_error_exit(e)


def parse_flags(argv: list[str]) -> list[str]:
    """absl ``flags_parser`` for ``app.run``: ``flags.FLAGS(argv)`` with ``--config=`` moved before the ``--config.*``
    overrides (any order on the command line works), and the config errors of :func:`define_config_flag` reported
    as one line (exit 1)."""
    from absl import flags

    # ml_collections applies --config.* overrides in order and needs --config= first: put it there.
    head = [a for a in argv[1:] if a == "--config" or a.startswith("--config=")]
    if head and head[0] == "--config":
        i = argv.index("--config")
        head = argv[i:i + 2]
    argv = argv[:1] + head + [a for a in argv[1:] if a not in head]
    if sys.argv[1:] and sys.argv[0] == argv[0]:
        sys.argv[:] = argv  # ml_collections reads the overrides from sys.argv itself
    try:
        rest = flags.FLAGS(argv)
        given = "config" in flags.FLAGS and flags.FLAGS["config"].present
        filename = flags.FLAGS["config"].config_filename if given else None
        if given and not (filename or "").strip():
            raise flags.Error("--config is empty; give a config file, e.g. --config=configs/digits_dvs.py")
        if filename and not os.path.isfile(filename.split(":")[0]):
            raise flags.Error(f"--config={filename}: no such file")
        return rest
    except flags.Error as e:  # absl's own report (app.run does not catch errors of a custom flags_parser)
        print(f"FATAL Flags parsing error: {e}\nPass --helpshort or --helpfull to see help on flags.",
              file=sys.stderr, flush=True)
        sys.exit(1)
    except _CONFIG_ERRORS as e:
        _config_error_exit(e)


def att_res_snn_imagenet_config(depth: int, *, T: int = 1) -> ml_collections.ConfigDict:
    """Att-Res-SNN-``depth`` (CSA) on ImageNet-1K with the official recipe (``Att_Res_SNN/train_amp.py``; spec
    ``shared/specs/att_res_snn.md`` §1-4): SGD momentum 0.9, coupled weight decay 1e-5 on every parameter, lr 0.6 at
    global batch 600 (linear scaling rule for other batches: ``train.lr_base_batch``), CosineAnnealingLR stepped per
    epoch (``torch_cosine``), label smoothing 0.1, 150 epochs (inferred from the released checkpoint names),
    224×224×3 input, 1000 classes, seed 445 (``train_amp.py:151-154``). Set ``--config.data.root``."""
    config = ml_collections.ConfigDict()
    config.seed = 445
    config.model = ml_collections.ConfigDict(dict(
        name="att_res_snn", depth=int(depth), T=int(T), num_classes=1000, input_shape=(224, 224, 3),
        attention="CSA", residual="att_res_1", placement="official", stem="7x7", last_bn_init=0.1, c_ratio=8,
        t_ratio=1, sa_kernel=3, dropout=0.2, param_dtype="float32", conv_impl="auto", batch_chunks=1,
        scan_blocks=True, unroll=1,
    ))
    config.model.dtype = ml_collections.FieldReference(None, field_type=str)  # 'bfloat16' for mixed precision
    config.data = default_data_config("imagenet2012")
    config.train = train_defaults(
        optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=1e-5, weight_decay_mask="all",
        learning_rate=0.6, lr_base_batch=600, batch_size=600, eval_batch_size=600, schedule="torch_cosine",
        min_lr=0.0, num_epochs=150, loss="cross_entropy", label_smoothing=0.1,
    )
    return config


def spikformer_imagenet_config(depth: int, embed_dim: int, heads: int) -> ml_collections.ConfigDict:
    """Spikformer-``depth``-``embed_dim`` on ImageNet-1K (Zhou et al., ICLR 2023; spec ``shared/specs/spikformer.md``
    §2-4): ``imagenet/model.py`` at 224×224×3, T = 4, 1000 classes; AdamW (0.9/0.999, eps 1e-8) lr 5e-4, weight
    decay 0.05 on parameters with ndim > 1 only, timm's CosineLRScheduler (``timm_cosine``: 20 warm-up epochs from
    1e-6, cosine to 1e-5 over 300 epochs, 10 cool-down epochs), label smoothing 0.1, batch 192; RandomResizedCrop
    scale (1, 1), bicubic, horizontal flip, eval at 224 (crop_pct 1); Mixup 0.8 / CutMix 1.0 (prob 1, switch 0.5,
    batch mode) with soft-target cross-entropy (``config.train.mixup``); timm RandAugment ``rand-m9-mstd0.5-inc1``
    and RandomErasing p 0.25 'const' (``imagenet.yml``; ``config.data.rand_augment`` / ``random_erase_*``). Not
    reproduced: AMP."""
    config = ml_collections.ConfigDict()
    config.seed = 42
    config.model = ml_collections.ConfigDict(dict(
        name="spikformer", variant="imagenet", input_kind="image", input_shape=(224, 224, 3), T=4,
        num_classes=1000, embed_dim=int(embed_dim), depth=int(depth), heads=int(heads), mlp_ratio=4,
        pool_stages=(True, True, True, True), sps_pool_order="conv-bn-lif-pool", attn_order="kv_first",
        attn_scale=0.125, qkv_bias=False, proj_bias=True, mlp_bias=True, fc_init="torch", residual="spike",
        qk_maxpool1d=0, sps_attention="no", block_attention="no", attention_placement="input",
        param_dtype="float32", conv_impl="auto", unroll=1,
    ))
    config.model.dtype = ml_collections.FieldReference(None, field_type=str)
    config.data = default_data_config("imagenet2012")
    config.data.update(dict(crop_scale=(1.0, 1.0), crop_ratio=(3 / 4, 4 / 3), interpolation="bicubic",
                            random_flip=True, auto_augment=False, eval_image_size=224,
                            rand_augment="rand-m9-mstd0.5-inc1", random_erase_prob=0.25, random_erase_mode="const",
                            random_erase_count=1))  # imagenet.yml: aa, reprob 0.25, remode const
    config.data.eval_resize = 224  # crop_pct 1.0
    config.train = train_defaults(
        optimizer="adamw", learning_rate=5e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.05,
        weight_decay_mask="ndim>1", schedule="timm_cosine", cooldown_epochs=10, warmup_epochs=20, warmup_lr=1e-6,
        min_lr=1e-5, num_epochs=310, batch_size=192, eval_batch_size=192, loss="cross_entropy", label_smoothing=0.1,
    )
    config.train.mixup.update(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch",
                                   off_epoch=0))  # timm Mixup + SoftTargetCrossEntropy (spec §4)
    return config


def spikformer_cifar_config(num_classes: int, mean, std) -> ml_collections.ConfigDict:
    """Spikformer-4-384 on CIFAR10 / CIFAR100 (``cifar10/model.py`` + ``cifar10.yml``, spec
    ``shared/specs/spikformer.md`` §2-4): 32×32×3, T = 4, nn.Linear q/k/v/proj/MLP with bias, ``(q kᵀ)·0.125 @ v``;
    AdamW lr 5e-4, weight decay 0.06 on ndim > 1, ``timm_cosine`` (20 warm-up epochs from 1e-5, 300 + 10 cool-down),
    batch 128, label smoothing 0.1, Mixup 0.5 (no CutMix, prob 1) off from epoch 200 with soft-target cross-entropy
    (``config.train.mixup``). Data: the dataset exported as an ImageFolder (set ``--config.data.root``),
    normalised with ``mean`` / ``std`` (per channel, [0, 1] scale), resize only + horizontal flip, bicubic
    (``train_interpolation``; it only matters for RandAugment's geometric ops at 32×32), timm RandAugment
    ``rand-m9-n1-mstd0.4-inc1`` over Equalize, Rotate, ShearX, TranslateXRel, TranslateYRel (``aa_snn.py``) and
    RandomErasing p 0.25 'const' (``cifar10.yml``)."""
    config = ml_collections.ConfigDict()
    config.seed = 42
    config.model = ml_collections.ConfigDict(dict(
        name="spikformer", variant="cifar", input_kind="image", input_shape=(32, 32, 3), T=4,
        num_classes=int(num_classes), embed_dim=384, depth=4, heads=12, mlp_ratio=4,
        pool_stages=(False, False, True, True), sps_pool_order="conv-bn-lif-pool", attn_order="qk_first",
        attn_scale=0.125, qkv_bias=True, proj_bias=True, mlp_bias=True, fc_init="trunc_normal", residual="spike",
        qk_maxpool1d=0, sps_attention="no", block_attention="no", attention_placement="input",
        param_dtype="float32", conv_impl="auto", unroll=1,
    ))
    config.model.dtype = ml_collections.FieldReference(None, field_type=str)
    config.data = default_data_config("imagefolder")
    config.data.update(dict(image_size=32, eval_image_size=32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                            random_flip=True, auto_augment=False, interpolation="bicubic", mean=tuple(mean),
                            std=tuple(std), rand_augment="rand-m9-n1-mstd0.4-inc1",
                            random_erase_prob=0.25, random_erase_mode="const", random_erase_count=1))
    config.data.rand_augment_ops = ("Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel")  # aa_snn.py
    config.data.eval_resize = 32
    config.train = train_defaults(
        optimizer="adamw", learning_rate=5e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.06,
        weight_decay_mask="ndim>1", schedule="timm_cosine", cooldown_epochs=10, warmup_epochs=20, warmup_lr=1e-5,
        min_lr=1e-5, num_epochs=310, batch_size=128, eval_batch_size=128, loss="cross_entropy", label_smoothing=0.1,
    )
    config.train.mixup.update(dict(mixup_alpha=0.5, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5, mode="batch",
                                   off_epoch=200))  # cifar10.yml: mixup_off_epoch 200 (spec §4)
    return config
