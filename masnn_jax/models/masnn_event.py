"""MA-SNN event networks (DVS128 Gesture, DVS128 Gait, CIFAR10-DVS) as the official code builds them.

Source: ``MA_SNN/DVSGestures/CNN/Networks/Att_SNN.py``, ``MA_SNN/DVSGait/CNN/Networks/Att_SNN.py``,
``MA_SNN/CIFAR10DVS/CNN/Networks/Att_SNN.py`` (and their LIAF variants: the same net with
``neuron.mode_select='mem'``).

Each network is a stack of :class:`~masnn_jax.nn.layers.ConvAttLIF` layers (conv 3×3 pad 1 with bias -> BN -> AvgPool
-> attention -> neuron) followed by :class:`~masnn_jax.nn.layers.DenseAttLIF` layers (Linear -> BN -> TA -> neuron);
the output is the mean over T of the last layer's spikes (or LIAF values).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from masnn_jax.models import registry
from masnn_jax.nn import layers as layers_lib
from masnn_jax.snn import pallas_lif

__all__ = ["MASNN", "ARCHITECTURES", "REMAT_MODES", "MODEL_KEYS", "EXECUTION_KEYS", "build_masnn"]

#: Values of ``config.model.remat``.
REMAT_MODES = ("none", "layer")


def _apply_layer(layer, x):
    return layer(x)

#: Official layer plans: conv channels, pooling kernels, hidden FC sizes, input (H, W, C) and classes.
ARCHITECTURES = {
    "dvs_gesture": dict(channels=(64, 128, 128), pools=(1, 2, 2), fc=(256,), input_shape=(32, 32, 2), num_classes=11),
    "dvs_gait": dict(
        channels=(32, 64, 128, 256, 512), pools=(2, 2, 2, 2, 4), fc=(256,), input_shape=(128, 128, 2), num_classes=21
    ),
    "cifar10_dvs": dict(
        channels=(32, 64, 128, 256, 512), pools=(2, 2, 2, 2, 4), fc=(256,), input_shape=(128, 128, 2), num_classes=10
    ),
}


class MASNN(nnx.Module):
    """A multi-dimensional-attention SNN for event frames.

    Args:
      input_shape: ``(H, W, C)`` of one frame (channels-last; C = 2 polarities for event data).
      T: time steps.
      num_classes: output size.
      channels: conv output channels, one entry per conv layer.
      pools: average-pooling kernel per conv layer (1 = none); H and W must be divisible by their product.
      fc: hidden fully connected sizes (the classifier layer of ``num_classes`` is appended).
      neuron: :class:`~masnn_jax.snn.neurons.LIFParams` or PLIF kwargs (see :func:`masnn_jax.nn.layers.neuron_from_config`).
      attention, placement, c_ratio, t_ratio, sa_kernel, channel_attention, spatial_attention: as
        :class:`~masnn_jax.nn.layers.ConvAttLIF`.
      checkpoint, unroll: neuron scan options; dtype / param_dtype: computation / parameter dtypes.
      conv_impl: 'auto' | 'xla' | 'im2col' (see :mod:`masnn_jax.snn.ops`).
      remat: 'none', or 'layer': each spiking layer is ``jax.checkpoint``-ed so that only its input (spikes) is kept
        for the backward pass and the rest is recomputed there — memory grows with T by the layer inputs alone.
      batch_chunks: conv layers run everything after the convolution over this many checkpointed chunks of the
        batch (:class:`~masnn_jax.nn.layers.ConvAttLIF`); 1 = off; 'auto' = per backend
        (:func:`masnn_jax.snn.chunking.resolve_batch_chunks`).
      neuron_impl: the neuron's time loop: 'scan' (``lax.scan``), 'pallas' (fused kernel,
        :mod:`masnn_jax.snn.pallas_lif`) or 'auto' (pallas on GPU, scan elsewhere); set on every layer's
        :class:`~masnn_jax.nn.layers.SpikingNeuron` (PLIF and membrane-placed attention keep the scan).
      rngs: ``nnx.Rngs`` for initialisation.
    Call:
      ``model(x)`` with ``x`` float ``(B, T, H, W, C)`` -> ``(B, num_classes)``: time-averaged output of the last
      layer (firing rates in [0, 1] for spiking neurons). ``model.train()`` / ``model.eval()`` switch BatchNorm
      between batch statistics and running averages.
    Raises:
      ValueError: sizes that do not divide, ``len(pools) != len(channels)``, input of the wrong shape.
    """

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        T: int,
        num_classes: int,
        channels: Sequence[int],
        pools: Sequence[int],
        fc: Sequence[int],
        neuron,
        attention: str = "no",
        placement: str = "input",
        c_ratio: int = 8,
        t_ratio: int = 5,
        sa_kernel: int = 3,
        channel_attention: str = "cbam",
        spatial_attention: str = "cbam",
        checkpoint: bool = False,
        unroll: int = 1,
        conv_impl: str = "auto",
        remat: str = "none",
        batch_chunks: int | str = 1,
        neuron_impl: str = "auto",
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        neuron_impl = pallas_lif.resolve_neuron_impl(neuron_impl)  # 'scan' | 'pallas', set on every neuron below
        h, w, c_in = (int(v) for v in input_shape)
        if len(pools) != len(channels):
            raise ValueError(f"config.model.pools has {len(pools)} entries but config.model.channels has {len(channels)}")
        total_pool = math.prod(pools)
        if h % total_pool or w % total_pool:
            raise ValueError(f"config.model.input_shape {tuple(input_shape)}: H and W must be divisible by prod(pools)={total_pool}")
        self.input_kind = "frames"
        self.input_shape, self.T, self.num_classes = (h, w, c_in), int(T), int(num_classes)
        self.dtype = dtype
        if remat not in REMAT_MODES:
            raise ValueError(f"config.model.remat must be one of {REMAT_MODES}, got {remat!r}")
        self.remat = remat
        common = dict(
            T=self.T, neuron=neuron, checkpoint=checkpoint, unroll=unroll, dtype=dtype, param_dtype=param_dtype,
            rngs=rngs, attention=attention, placement=placement, t_ratio=t_ratio,
        )
        emits_spikes = isinstance(neuron, dict) or neuron.output == "spike"  # PLIF kwargs, or LIFParams
        convs = []
        for i, (c_out, pool) in enumerate(zip(channels, pools)):
            convs.append(
                layers_lib.ConvAttLIF(
                    c_in, c_out, pool=pool, c_ratio=c_ratio, sa_kernel=sa_kernel,
                    channel_attention=channel_attention, spatial_attention=spatial_attention, conv_impl=conv_impl,
                    batch_chunks=batch_chunks, binary_input=emits_spikes and i > 0,  # fed the previous layer's spikes
                    **common,
                )
            )
            c_in, h, w = c_out, h // pool, w // pool
        self.convs = nnx.List(convs)
        sizes = [c_in * h * w, *fc, self.num_classes]
        self.fcs = nnx.List([layers_lib.DenseAttLIF(a, b, **common) for a, b in zip(sizes[:-1], sizes[1:])])
        for layer in self.spiking_layers:
            layer.neuron.impl = neuron_impl

    @property
    def spiking_layers(self) -> list[nnx.Module]:
        """All spiking layers in order (convs then dense)."""
        return [*self.convs, *self.fcs]

    def layer_names(self) -> dict[str, str]:
        """Recorded-layer path -> display name, in forward order: ``{'convs.0': 'conv1', ..., 'fcs.0': 'fc1', ...}``
        (the :class:`~masnn_jax.models.registry.SpikingModel` hook :mod:`masnn_jax.analysis` names layers by)."""
        names = {f"convs.{i}": f"conv{i + 1}" for i in range(len(self.convs))}
        names.update({f"fcs.{i}": f"fc{i + 1}" for i in range(len(self.fcs))})
        return names

    def operation_counts(self) -> list[registry.OpCount]:
        """The synaptic operations of one inference, one per spiking layer (Yao et al., TPAMI 2023, §4).

        Conv layer: ``k·k·h_out·w_out·c_in·c_out`` MACs per step at the conv's output size (before the layer's
        average pool; kernel, padding and stride are the layer's own, via ``jax.eval_shape``); dense layer:
        ``in·out``. The first layer reads the event frames (``input='input'``), every other one the previous
        layer's spikes. Each op names its layer's attention module (``convs.<i>.attention``) and the one-step shape
        it acts on (the pooled conv output). Works on an abstract model (``nnx.eval_shape``) too.

        Returns:
          list of :class:`~masnn_jax.models.registry.OpCount`, convs then dense layers.
        """
        names = list(self.layer_names().values())
        shape: tuple[int, ...] = tuple(int(v) for v in self.input_shape)
        ops, source = [], "input"
        for i, layer in enumerate(self.convs):
            kh, kw, cin, cout = (int(d) for d in layer.conv.kernel.shape)
            graphdef, state = nnx.split(layer.conv)
            probe = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
            ho, wo = (int(d) for d in jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, probe).shape[1:3])
            p = int(layer.pool)
            out_shape = (ho // p, wo // p, cout)
            ops.append(registry.OpCount(
                name=names[i], macs_per_step=kh * kw * ho * wo * cin * cout, input=source, layer=names[i], kind="conv",
                input_shape=shape, output_shape=out_shape, conv_output=(ho, wo, cout), kernel=(kh, kw, cin, cout),
                attention=f"convs.{i}.attention"))
            shape, source = out_shape, names[i]
        shape = (math.prod(shape),)
        for j, layer in enumerate(self.fcs):
            nin, nout = (int(d) for d in layer.linear.kernel.shape)
            name = names[len(self.convs) + j]
            ops.append(registry.OpCount(
                name=name, macs_per_step=nin * nout, input=source, layer=name, kind="fc", input_shape=shape,
                output_shape=(nout,), kernel=(nin, nout), attention=f"fcs.{j}.attention"))
            shape, source = (nout,), name
        return ops

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 5 or tuple(x.shape[2:]) != self.input_shape or x.shape[1] != self.T:
            raise ValueError(
                f"MASNN expects channels-last input (B, T={self.T}, H={self.input_shape[0]}, W={self.input_shape[1]}, "
                f"C={self.input_shape[2]}), got shape {tuple(x.shape)}"
            )
        if self.dtype is not None:
            x = x.astype(self.dtype)
        apply = nnx.remat(_apply_layer) if self.remat == "layer" else _apply_layer
        for layer in self.convs:
            x = apply(layer, x)
        b, t = x.shape[:2]
        x = x.reshape(b, t, -1)  # flattened (H, W, C) — see masnn_jax.interop for the official (C, H, W) order
        for layer in self.fcs:
            x = apply(layer, x)
        return x.mean(axis=1)


#: Keys understood under ``config.model`` for ``name='masnn'``.
MODEL_KEYS = (
    "name", "arch", "input_shape", "T", "num_classes", "channels", "pools", "fc", "attention", "placement",
    "c_ratio", "t_ratio", "sa_kernel", "channel_attention", "spatial_attention", "neuron", "surrogate",
    "checkpoint", "unroll", "dtype", "param_dtype", "conv_impl", "remat", "batch_chunks", "neuron_impl",
)

#: ``config.model`` keys that change how the network is computed, not what it computes or which parameters it has.
EXECUTION_KEYS = ("checkpoint", "unroll", "dtype", "conv_impl", "remat", "batch_chunks", "neuron_impl")


def build_masnn(cfg: dict, rngs: nnx.Rngs) -> MASNN:
    """Builds :class:`MASNN` from ``config.model`` (``name='masnn'``).

    Keys: ``arch``: 'dvs_gesture' | 'dvs_gait' | 'cifar10_dvs' fills ``channels``, ``pools``, ``fc``,
    ``input_shape`` and ``num_classes`` with the official layer plan (explicit keys override it; None/'custom': give
    them all); ``T``; ``attention`` (scheme, e.g. 'TCSA'); ``placement`` ('input' = official code, 'membrane' =
    paper); ``c_ratio``, ``t_ratio``, ``sa_kernel``, ``channel_attention`` ('cbam'|'eca'), ``spatial_attention``
    ('cbam'|'simam'); ``neuron`` (mapping with ``kind`` and preset arguments) and ``surrogate`` (``name`` and its
    hyper-parameter); ``checkpoint``, ``unroll`` (neuron scan); ``dtype``, ``param_dtype``; ``conv_impl`` ('auto' |
    'xla' | 'im2col'); ``remat`` ('none' | 'layer'); ``batch_chunks`` ('auto' | n >= 1); ``neuron_impl`` ('auto' |
    'scan' | 'pallas').

    Raises:
      ValueError: unknown ``arch``, missing sizes, bad values (the message names ``config.model.<key>``).
    """
    cfg = dict(cfg)
    cfg.pop("name", None)
    arch = cfg.pop("arch", None)
    plan: dict = {}
    if arch not in (None, "custom"):
        if arch not in ARCHITECTURES:
            raise ValueError(f"config.model.arch must be one of {sorted(ARCHITECTURES)} or 'custom', got {arch!r}")
        plan.update(ARCHITECTURES[arch])
    plan.update({k: v for k, v in cfg.items() if v is not None or k in ("dtype",)})
    for key in ("input_shape", "T", "num_classes", "channels", "pools", "fc"):
        if key not in plan:
            raise ValueError(f"config.model.{key} is required (or set config.model.arch)")
    neuron = layers_lib.neuron_from_config(plan.pop("neuron", {"kind": "masnn_official"}), plan.pop("surrogate", None))
    plan["dtype"] = registry.parse_dtype("dtype", plan.get("dtype"))
    plan["param_dtype"] = registry.parse_dtype("param_dtype", plan.get("param_dtype", "float32"))
    for key in ("channels", "pools", "fc", "input_shape"):
        plan[key] = registry.int_tuple(key, plan[key])
    for key in ("T", "num_classes", "c_ratio", "t_ratio", "sa_kernel"):
        if key in plan:
            plan[key] = registry.positive_int(key, plan[key])
    return MASNN(neuron=neuron, rngs=rngs, **plan)


registry.register("masnn", build=build_masnn, keys=MODEL_KEYS, execution_keys=EXECUTION_KEYS,
                  interop="masnn_jax.interop.official")
