"""MS-Res-SNN and Att-Res-SNN (ResNet-18/34/104 with membrane shortcuts) for still images, as the official
ImageNet code computes them.

Source: ``BICLab/Attention-SNN`` @ ad80e7b, ``Att_Res_SNN/models/resnet_2.py`` (network, neuron, tdBN) and
``Att_Res_SNN/module/LIF_Module.py`` (``PruningCell`` / ``CSA``: CA ``:27-46``, SA ``:49-67``, ReLU ``:137``); the
paper's variants (Yao et al., TPAMI 2023, Eqs. 15-16) and the MS-ResNet-104 stem (Ariande1/MS-ResNet,
``models/MS_ResNet.py``). Facts and line numbers: ``shared/specs/att_res_snn.md`` §1-2.

Network (input ``(B, H, W, 3)`` channels-last, repeated over T inside the model; activations ``(B, T, H, W, C)``;
every conv and BatchNorm runs on the merged ``(B·T, H, W, C)`` batch, so BN statistics cover N·T·H·W = tdBN)::

    stem   conv 7×7 s2 p3 (no bias) -> BN(γ0 0.5)                      (no neuron, no max-pool; resnet_2.py:216-223)
    stage  i = 1..4, widths 64/128/256/512, first block stride 2 (all four stages; resnet_2.py:228-231)
    block  r  = LIF -> conv3×3 s (no bias) -> BN(γ0 0.5) -> LIF -> conv3×3 -> BN(γ0 0.1) -> attention
           sc = x | AvgPool 2×2 -> conv1×1 (no bias) -> BN(γ0 0.5)     (on the real-valued membrane input x)
           out = r + sc                                                  (resnet_2.py:152-206)
    head   LIF -> spatial mean -> mean over T -> Dropout(0.2) -> Linear(512 -> classes)   (resnet_2.py:272-277)

Neuron: :func:`masnn_jax.snn.neurons.att_res_snn` (decay 0.25, threshold 0.5 strict, detached hard reset,
rectangle surrogate of width 1) run with :func:`masnn_jax.snn.neurons.lif`; its state is kept in at least float32.

Compile time: the blocks after the first of every stage are identical, so each stage keeps them as one module whose
variables carry a leading block axis (``stages[i].rest``, ``blocks[i] − 1`` long) and runs them as one
``jax.lax.scan`` (``scan_blocks=True``; the parameters and the BatchNorm statistics are scanned inputs and the
updated statistics scanned outputs, so running statistics update exactly as in the unrolled loop). ``scan_blocks=False``
runs the same stacked variables in a Python loop (same checkpoint layout, same values).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from masnn_jax.models import registry
from masnn_jax.nn import attention as attention_lib
from masnn_jax.nn import layers as layers_lib
from masnn_jax.snn import chunking, neurons

__all__ = [
    "DEPTHS", "ATTENTIONS", "RESIDUALS", "PLACEMENTS", "STEMS", "MODEL_KEYS", "EXECUTION_KEYS", "ResNeuron",
    "BasicBlock", "Stage", "AttResSNN", "build_resnet",
]

#: Blocks per stage for ``config.model.depth`` (``resnet_2.py:281-292``).
DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 104: (3, 8, 32, 8)}
#: ``config.model.attention``: the MA-SNN schemes (:data:`masnn_jax.nn.attention.SCHEMES`), plus 'ECA' (ECA-Net as
#: the channel attention, no spatial one) and 'SimAM' (SimAM as the spatial attention, no channel one).
ATTENTIONS = tuple(attention_lib.SCHEMES) + ("ECA", "SimAM")
#: ``config.model.residual``: 'att_res_1' (official code, paper Eq. 15: attention on the branch, then the add) or
#: 'att_res_2' (paper Eq. 16: add first, then attention on the sum).
RESIDUALS = ("att_res_1", "att_res_2")
#: ``config.model.placement``: 'official' (CA pooled over T·H·W jointly, SA over T·C, 3×3, then ReLU) or 'paper'
#: (CA/SA per time step, SA 7×7 by default, no ReLU; TA on the whole sequence).
PLACEMENTS = ("official", "paper")
#: ``config.model.stem``: '7x7' (Att-Res-SNN, MS-ResNet-18/34) or '3conv' (MS-ResNet-104: three 3×3 convs with bias,
#: 3->64 s2, 64->64, 64->64, then one BN).
STEMS = ("7x7", "3conv")

_BN_HALF = 0.5  # BatchNorm3d1: γ0 = thresh (resnet_2.py:84-89)


def _model_error(key: str, message: str) -> ValueError:
    return ValueError(f"config.model.{key} {message}")


class ResNeuron(nnx.Module):
    """The Att-Res-SNN LIF population on a sequence, recorded for the firing rate.

    Args:
      params: :class:`~masnn_jax.snn.neurons.LIFParams` (default :func:`~masnn_jax.snn.neurons.att_res_snn`).
      unroll: ``lax.scan`` unroll of the time loop.
    Call:
      ``neuron(x, record=True)``, ``x`` ``(B, T, H, W, C)`` (any float dtype) -> spikes of ``x``'s shape and dtype,
      exactly 0/1. The membrane state is computed in ``promote(x.dtype, float32)`` (bf16 input: float32 state). With
      ``record`` it calls :func:`masnn_jax.nn.layers.record_activity` (``self.record`` decides what is sown).
    Source: ``mem_update`` (``resnet_2.py:33-51``).
    """

    def __init__(self, params: neurons.LIFParams | None = None, *, unroll: int = 1):
        self.lif = layers_lib.SpikingNeuron(params if params is not None else neurons.att_res_snn(), unroll=unroll)
        self.record = "off"

    def __call__(self, x: jax.Array, *, record: bool = True) -> jax.Array:
        state_dtype = jnp.promote_types(x.dtype, jnp.float32)
        out = self.lif(x.astype(state_dtype)).astype(x.dtype)
        if record:
            layers_lib.record_activity(self, out)
        return out


def _merge_bt(x: jax.Array) -> jax.Array:
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def _split_bt(x: jax.Array, b: int) -> jax.Array:
    return x.reshape((b, x.shape[0] // b) + x.shape[1:])


class BasicBlock(nnx.Module):
    """One MS-Res-SNN / Att-Res-SNN basic block on the membrane stream ``(B, T, H, W, C_in)``.

    Args:
      in_features, out_features: channels. stride: of the first 3×3 conv (and the AvgPool of the shortcut).
      T: time steps (sizes TA). attention: one of :data:`ATTENTIONS`. residual: one of :data:`RESIDUALS`.
      placement: one of :data:`PLACEMENTS`. c_ratio, t_ratio: attention MLP reductions. sa_kernel: 3 or 7.
      last_bn_init: γ0 of the second BN (official 0.1 = 0.2·thresh, ``BatchNorm3d2``; MS-ResNet 0).
      conv_impl, dtype, param_dtype, rngs: as :class:`~masnn_jax.nn.layers.ConvBN`.
    Call:
      ``block(x)`` -> ``(B, T, H/stride, W/stride, out_features)`` in the compute dtype; ``block.forward(x)`` returns
      ``(out, (spikes1, spikes2))`` and sows nothing (used inside the scan over stacked blocks).
    Shortcut: identity when ``stride == 1`` and the channels agree; otherwise AvgPool(stride) (only when stride > 1)
    -> conv 1×1 (no bias) -> BN(γ0 0.5). (The official code always pools in the projection; with its own widths a
    projection always has stride 2, which is the case reproduced.)
    Raises:
      ValueError: bad attention options (from :class:`~masnn_jax.nn.attention.MultiDimensionalAttention`).
    Source: ``resnet_2.py:152-206``; CSA ``LIF_Module.py:118-138``; paper Eqs. 15-16.
    """

    def __init__(self, in_features: int, out_features: int, stride: int, *, T: int, attention: str, residual: str,
                 placement: str, c_ratio: int, t_ratio: int, sa_kernel: int, last_bn_init: float, conv_impl: str,
                 unroll: int = 1, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        cb = dict(conv_impl=conv_impl, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.stride, self.residual, self.placement = int(stride), residual, placement
        self.neuron1 = ResNeuron(unroll=unroll)
        self.conv1 = layers_lib.ConvBN(in_features, out_features, kernel_size=3, stride=stride, padding=1,
                                       bn_scale_init=_BN_HALF, binary_input=True, **cb)
        self.neuron2 = ResNeuron(unroll=unroll)
        self.conv2 = layers_lib.ConvBN(out_features, out_features, kernel_size=3, stride=1, padding=1,
                                       bn_scale_init=last_bn_init, binary_input=True, **cb)
        if attention == "no":
            self.attention = None
        else:
            scheme, channel, spatial = {"ECA": ("CA", "eca", "cbam"), "SimAM": ("SA", "cbam", "simam")}.get(
                attention, (attention, "cbam", "cbam"))
            self.attention = attention_lib.MultiDimensionalAttention(
                scheme, T, out_features, c_ratio=c_ratio, t_ratio=t_ratio, kernel_size=sa_kernel,
                placement="input" if placement == "official" else "membrane", channel=channel, spatial=spatial,
                rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        if stride != 1 or in_features != out_features:
            self.shortcut = layers_lib.ConvBN(in_features, out_features, kernel_size=1, stride=1, padding=0,
                                              bn_scale_init=_BN_HALF, **cb)
        else:
            self.shortcut = None

    def _attend(self, u: jax.Array) -> jax.Array:
        """The attention on ``u`` ``(B, T, H, W, C)``: official = ``relu(sa·(ca·(ta·u)))`` with pools over T jointly;
        paper = TA on the sequence, then CA -> SA per time step (``membrane_transform`` on the merged batch)."""
        if self.attention is None:
            return u
        if self.placement == "official":
            # input_transform == attention(u) in 'input' placement, and honours ``bypass`` (analysis), which
            # MultiDimensionalAttention.__call__ does not
            return self.attention.input_transform(u)
        u = self.attention.input_transform(u)
        return _split_bt(self.attention.membrane_transform(_merge_bt(u)), u.shape[0])

    def _shortcut(self, x: jax.Array) -> jax.Array:
        if self.shortcut is None:
            return x
        z = _merge_bt(x)
        if self.stride > 1:
            z = nnx.avg_pool(z, (self.stride, self.stride), strides=(self.stride, self.stride))
        return _split_bt(self.shortcut(z), x.shape[0])

    def forward(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """``(out, (spikes of neuron1, spikes of neuron2))``; records nothing."""
        b = x.shape[0]
        s1 = self.neuron1(x, record=False)
        s2 = self.neuron2(_split_bt(self.conv1(_merge_bt(s1)), b), record=False)
        u = _split_bt(self.conv2(_merge_bt(s2)), b)
        sc = self._shortcut(x)
        if self.residual == "att_res_1":
            out = self._attend(u) + sc.astype(u.dtype)
        else:
            out = self._attend(u + sc.astype(u.dtype))
        return out, (s1, s2)

    def __call__(self, x: jax.Array) -> jax.Array:
        out, (s1, s2) = self.forward(x)
        layers_lib.record_activity(self.neuron1, s1)
        layers_lib.record_activity(self.neuron2, s2)
        return out


def _sow_stacked(neuron: ResNeuron, spikes: jax.Array) -> None:
    """:func:`~masnn_jax.nn.layers.record_activity` for the stacked neurons of scanned blocks: ``spikes`` is
    ``(n_blocks, B, T, ...)``; sows ``activity`` ``(n_blocks, B, 2)`` (and ``spikes`` itself in 'spikes' mode)."""
    mode = getattr(neuron, "record", "off")
    mode = "activity" if mode is True else mode
    if not mode or mode == "off":
        return
    per = spikes.reshape(spikes.shape[:2] + (-1,)).astype(jnp.float32)
    count = jnp.full(per.shape[:2], per.shape[2], jnp.float32)
    neuron.sow(nnx.Intermediate, "activity", jnp.stack([per.sum(-1), count], axis=-1))
    if mode == "spikes":
        neuron.sow(nnx.Intermediate, "spikes", spikes)


class Stage(nnx.Module):
    """A stage: its first block (stride, projection shortcut) and ``blocks − 1`` identical blocks stacked.

    Args:
      in_features, out_features, stride: as the first :class:`BasicBlock`. blocks: >= 1.
      scan_blocks: run the stacked blocks with ``jax.lax.scan`` (True) or a Python loop (False).
      block_kwargs: the remaining :class:`BasicBlock` arguments (``rngs`` included).
    Attributes: ``first`` (:class:`BasicBlock`); ``rest``: a :class:`BasicBlock` whose every variable has a leading
      axis of length ``blocks − 1`` (None when ``blocks == 1``); ``num_rest``.
    Call: ``stage(x)`` ``(B, T, H, W, C_in)`` -> ``(B, T, H/stride, W/stride, C_out)``. Activity of the stacked
      neurons is sown once per stage with a leading block axis (``(blocks − 1, B, 2)``), which
      :func:`masnn_jax.train.steps.network_firing_rate` sums over.
    """

    def __init__(self, in_features: int, out_features: int, stride: int, blocks: int, *, scan_blocks: bool = True,
                 **block_kwargs):
        self.first = BasicBlock(in_features, out_features, stride, **block_kwargs)
        self.num_rest = int(blocks) - 1
        self.scan_blocks = bool(scan_blocks)
        if self.num_rest == 0:
            self.rest = None
            return
        kwargs = dict(block_kwargs)
        rngs = kwargs.pop("rngs")

        # One traced construction vmapped over split RNG streams: every block gets its own initial weights and
        # each initialiser is compiled once, whatever the number of blocks.
        @nnx.split_rngs(splits=self.num_rest)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make(r):
            return BasicBlock(out_features, out_features, 1, rngs=r, **kwargs)

        self.rest = make(rngs)

    def _output_perturbation(self, x: jax.Array) -> jax.Array | None:
        """``(blocks − 1, *x.shape)`` perturbation added to each stacked block's output while
        :func:`masnn_jax.analysis.capture.forward` probes ``stages[i].rest``'s output (its ``perturb`` marks the
        module with ``_analysis_probe``; the stacked blocks run ``forward`` inside the scan, never ``__call__``, so
        the stage adds it itself: ``Module.perturb`` on the stacked module, one slice per block; the gradient w.r.t.
        it is the per-block output gradient). None otherwise: the normal forward pass is unchanged."""
        if "output" not in getattr(self.rest, "_analysis_probe", ""):
            return None
        return self.rest.perturb("output", jnp.zeros((self.num_rest,) + x.shape, x.dtype))

    def _run_rest(self, x: jax.Array) -> jax.Array:
        graphdef, params, stats, other = nnx.split(self.rest, nnx.Param, nnx.BatchStat, ...)
        pert = self._output_perturbation(x)

        def body(h, xs):
            p, s = xs[:2]
            block = nnx.merge(graphdef, p, s, other, copy=True)
            h, spikes = block.forward(h)
            if len(xs) > 2:  # analysis probe only (see _output_perturbation)
                h = h + xs[2].astype(h.dtype)
            return h, (nnx.state(block, nnx.BatchStat), spikes)

        xs = (params, stats) if pert is None else (params, stats, pert)
        if self.scan_blocks:
            x, (new_stats, (s1, s2)) = jax.lax.scan(body, x, xs)
        else:
            outs = []
            for i in range(self.num_rest):
                x, o = body(x, jax.tree.map(lambda a: a[i], xs))
                outs.append(o)
            new_stats, (s1, s2) = jax.tree.map(lambda *a: jnp.stack(a), *outs)
        nnx.update(self.rest, new_stats)
        _sow_stacked(self.rest.neuron1, s1)
        _sow_stacked(self.rest.neuron2, s2)
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.first(x)
        return x if self.rest is None else self._run_rest(x)


class AttResSNN(nnx.Module):
    """Att-Res-SNN / MS-Res-SNN for images (see the module docstring for the network).

    Args:
      input_shape: ``(H, W, 3)``; H and W divisible by ``2 ** (len(blocks) + 1)``.
      T: time steps (>= 1); the image is repeated at every step. num_classes: output size.
      blocks: blocks per stage (``DEPTHS[depth]``). widths: channels per stage (64, 128, 256, 512).
      attention, residual, placement, stem: see :data:`ATTENTIONS`, :data:`RESIDUALS`, :data:`PLACEMENTS`,
        :data:`STEMS`. c_ratio: CA reduction (8). t_ratio: TA reduction (TCSA only). sa_kernel: 3 or 7 (None: 3
        official, 7 paper). last_bn_init: γ0 of each block's second BN (0.1 official, 0 MS-ResNet).
      dropout: rate before the classifier (0.2). scan_blocks: see :class:`Stage`. unroll: neuron time-loop unroll.
      conv_impl: 'auto' | 'xla' | 'im2col'. dtype: compute dtype (None: float32 from the parameters; 'bfloat16':
        convs/attention in bf16, BN statistics and neuron state in float32). param_dtype; rngs (streams ``params``
        and ``dropout``, or a default).
    Attributes (:class:`~masnn_jax.models.registry.SpikingModel`): ``input_kind='image'``, ``input_shape``, ``T``,
      ``num_classes``, ``dtype``; ``stem`` (``stem_convs`` for '3conv'), ``stages`` (:class:`Stage` list),
      ``head_neuron``, ``dropout``, ``fc``.
    Call:
      ``model(x)``, ``x`` ``(B, H, W, 3)`` float -> logits ``(B, num_classes)`` (compute dtype). ``model.train()`` /
      ``model.eval()`` switch BN batch/running statistics and dropout.
    Raises:
      ValueError: an input of another shape (naming ``config.model.input_shape``).
    """

    def __init__(self, *, input_shape: Sequence[int], T: int, num_classes: int, blocks: Sequence[int],
                 widths: Sequence[int] = (64, 128, 256, 512), attention: str = "CSA", residual: str = "att_res_1",
                 placement: str = "official", stem: str = "7x7", c_ratio: int = 8, t_ratio: int = 1,
                 sa_kernel: int | None = None, last_bn_init: float = 0.1, dropout: float = 0.2,
                 scan_blocks: bool = True, unroll: int = 1, conv_impl: str = "auto", dtype=None,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.input_kind = "image"
        self.input_shape = tuple(int(v) for v in input_shape)
        self.T, self.num_classes, self.dtype = int(T), int(num_classes), dtype
        self.blocks, self.widths = tuple(int(b) for b in blocks), tuple(int(w) for w in widths)
        self.attention, self.residual, self.placement, self.stem_kind = attention, residual, placement, stem
        if sa_kernel is None:
            sa_kernel = 3 if placement == "official" else 7
        c_in = self.input_shape[2]
        w0 = self.widths[0]
        cb = dict(conv_impl=conv_impl, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if stem == "7x7":
            self.stem_convs = None
            self.stem = layers_lib.ConvBN(c_in, w0, kernel_size=7, stride=2, padding=3, bn_scale_init=_BN_HALF, **cb)
        else:  # MS-ResNet-104: conv3x3 s2 (bias) -> conv3x3 (bias) -> conv3x3 (bias) -> BN, no neuron in between
            from masnn_jax.snn import ops

            def conv3(a, b, s):
                init = layers_lib.torch_default_init(a * 9)
                return ops.conv(a, b, (3, 3), impl=conv_impl, strides=(s, s), padding=((1, 1), (1, 1)),
                                use_bias=True, kernel_init=init, bias_init=init, dtype=dtype,
                                param_dtype=param_dtype, rngs=rngs)

            self.stem_convs = nnx.List([conv3(c_in, w0, 2), conv3(w0, w0, 1)])
            self.stem = layers_lib.ConvBN(w0, w0, kernel_size=3, stride=1, padding=1, use_bias=True,
                                          bn_scale_init=_BN_HALF, **cb)
        block_kwargs = dict(T=self.T, attention=attention, residual=residual, placement=placement, c_ratio=c_ratio,
                            t_ratio=t_ratio, sa_kernel=sa_kernel, last_bn_init=last_bn_init, unroll=unroll, **cb)
        stages, cin = [], w0
        for width, n in zip(self.widths, self.blocks):
            stages.append(Stage(cin, width, 2, n, scan_blocks=scan_blocks, **block_kwargs))
            cin = width
        self.stages = nnx.List(stages)
        self.head_neuron = ResNeuron(unroll=unroll)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.fc = nnx.Linear(cin, self.num_classes, kernel_init=layers_lib.torch_default_init(cin),
                             bias_init=layers_lib.torch_default_init(cin), dtype=dtype, param_dtype=param_dtype,
                             rngs=rngs)

    @property
    def spiking_layers(self) -> list[nnx.Module]:
        """Every :class:`ResNeuron` of the network in order (stacked ones hold ``blocks − 1`` populations)."""
        out = []
        for stage in self.stages:
            out += [stage.first.neuron1, stage.first.neuron2]
            if stage.rest is not None:
                out += [stage.rest.neuron1, stage.rest.neuron2]
        return out + [self.head_neuron]

    # ------------------------------------------------------------------ analysis hooks (masnn_jax.analysis)

    def _block_list(self) -> list[tuple[str, str, "BasicBlock", int]]:
        """``(path, display name, module, stage index)`` of every residual block in forward order; a stacked block
        is ``'stages.<i>.rest[<j>]'`` (module: the stacked ``rest``), named ``stage<i+1>.block<j+2>``."""
        out = []
        for i, stage in enumerate(self.stages):
            out.append((f"stages.{i}.first", f"stage{i + 1}.block1", stage.first, i))
            out += [(f"stages.{i}.rest[{j}]", f"stage{i + 1}.block{j + 2}", stage.rest, i)
                    for j in range(stage.num_rest)]
        return out

    def layer_names(self) -> dict[str, str]:
        """Recorded-layer path -> display name in forward order (the
        :class:`~masnn_jax.models.registry.SpikingModel` hook): ``'stages.0.first.neuron1'`` ->
        ``'stage1.block1.neuron1'``, ``'stages.0.rest.neuron1[0]'`` -> ``'stage1.block2.neuron1'``, ...,
        ``'head_neuron'`` -> ``'head'``. Each block's own path (``'stages.0.first'``, ``'stages.0.rest[0]'``, the
        :meth:`gradient_blocks` entries) is named too (``'stage1.block1'``), for the gradient-norm analysis."""
        names = {}
        for path, name, _, _ in self._block_list():
            base, bracket, idx = path.partition("[")
            idx = bracket + idx
            names[path] = name
            names[f"{base}.neuron1{idx}"] = f"{name}.neuron1"
            names[f"{base}.neuron2{idx}"] = f"{name}.neuron2"
        names["head_neuron"] = "head"
        return names

    def operation_counts(self) -> list[registry.OpCount]:
        """The synaptic operations of one inference (Yao et al., TPAMI 2023, §4; ``shared/specs/att_res_snn.md``
        §5: ``E = E_MAC · FLOPs(first conv) + E_AC · Σ SOPs``), in forward order:

        * stem (``'stem'``; '3conv': ``'stem.conv1..3'``): on the image, MACs, counted once per inference
          (``time_steps=1``: the image is the same at every step, as the paper's ``FLOPs(first conv)``);
        * per block ``<b>`` (stacked blocks one op each, MACs of one block): ``<b>.conv1`` (3×3, the block's
          stride) on ``<b>.neuron1``'s spikes, ``<b>.conv2`` (3×3) on ``<b>.neuron2``'s spikes, with the block's
          attention module counted on conv2's output shape; ``<b>.shortcut`` (1×1 projection after the AvgPool, first
          blocks only) on the real-valued membrane input (``input='membrane'``: MACs, T per inference);
        * ``fc`` on the head neuron's spikes (SOPs = T · in · out · head rate, as the paper counts the classifier).

        Conv MACs = ``k·k·h_out·w_out·c_in·c_out`` at the conv's output size. ``layer`` (the recorded neurons an op
        drives): stem -> the first neuron1, conv1 -> neuron2, conv2 -> the next block's neuron1 (the head for the
        last block), shortcut and fc none. Works on an abstract model (``nnx.eval_shape``)."""
        names = self.layer_names()
        h, w, c = (int(v) for v in self.input_shape)
        ops: list[registry.OpCount] = []

        def size(v: int, k: int, s: int, p: int) -> int:
            return (v + 2 * p - k) // s + 1

        def kernel(conv) -> tuple[int, ...]:
            return tuple(int(d) for d in conv.kernel.shape[-4:])  # stacked blocks: leading block axis

        blocks = self._block_list()
        first_neuron = f"{blocks[0][1]}.neuron1"
        stem = ([(self.stem_convs[0], 2, 1), (self.stem_convs[1], 1, 1), (self.stem.conv, 1, 1)]
                if self.stem_convs is not None else [(self.stem.conv, 2, 3)])
        for k, (conv, stride, pad) in enumerate(stem):
            kh, kw, cin, cout = kernel(conv)
            ho, wo = size(h, kh, stride, pad), size(w, kw, stride, pad)
            last = k == len(stem) - 1
            ops.append(registry.OpCount(
                name="stem" if len(stem) == 1 else f"stem.conv{k + 1}", macs_per_step=kh * kw * ho * wo * cin * cout,
                input="input" if k == 0 else "real", layer=first_neuron if last else "", kind="conv",
                input_shape=(h, w, c), output_shape=(ho, wo, cout), conv_output=(ho, wo, cout),
                kernel=(kh, kw, cin, cout), time_steps=1))
            h, w, c = ho, wo, cout
        for n, (path, name, block, i) in enumerate(blocks):
            base = path.partition("[")[0]
            stride = 2 if path.endswith(".first") else 1
            kh, kw, cin, cout = kernel(block.conv1.conv)
            ho, wo = size(h, kh, stride, 1), size(w, kw, stride, 1)
            ops.append(registry.OpCount(
                name=f"{name}.conv1", macs_per_step=kh * kw * ho * wo * cin * cout, input=f"{name}.neuron1",
                layer=f"{name}.neuron2", kind="conv", input_shape=(h, w, cin), output_shape=(ho, wo, cout),
                conv_output=(ho, wo, cout), kernel=(kh, kw, cin, cout)))
            kh2, kw2, cin2, cout2 = kernel(block.conv2.conv)
            nxt = f"{blocks[n + 1][1]}.neuron1" if n + 1 < len(blocks) else names["head_neuron"]
            ops.append(registry.OpCount(
                name=f"{name}.conv2", macs_per_step=kh2 * kw2 * ho * wo * cin2 * cout2, input=f"{name}.neuron2",
                layer=nxt, kind="conv", input_shape=(ho, wo, cin2), output_shape=(ho, wo, cout2),
                conv_output=(ho, wo, cout2), kernel=(kh2, kw2, cin2, cout2),
                attention=None if block.attention is None else f"{base}.attention",
                attention_shape=(ho, wo, cout2)))
            if block.shortcut is not None:
                k1, k2, sc_in, sc_out = kernel(block.shortcut.conv)
                hp, wp = h // stride, w // stride  # AvgPool(stride) before the 1×1 conv
                ops.append(registry.OpCount(
                    name=f"{name}.shortcut", macs_per_step=k1 * k2 * hp * wp * sc_in * sc_out, input="membrane",
                    layer="", kind="conv", input_shape=(h, w, sc_in), output_shape=(hp, wp, sc_out),
                    conv_output=(hp, wp, sc_out), kernel=(k1, k2, sc_in, sc_out)))
            h, w, c = ho, wo, cout2
        nin, nout = (int(d) for d in self.fc.kernel.shape)
        ops.append(registry.OpCount(name="fc", macs_per_step=nin * nout, input=names["head_neuron"], layer="",
                                    kind="fc", input_shape=(nin,), output_shape=(nout,), kernel=(nin, nout)))
        return ops

    def gradient_blocks(self) -> list[str]:
        """Module paths of the residual blocks in forward order (the
        :class:`~masnn_jax.models.registry.SpikingModel` hook): ``'stages.<i>.first'``, ``'stages.<i>.rest'`` (one
        block per stacked index; the stage adds the per-block output perturbation, see
        :meth:`Stage._output_perturbation`)."""
        out = []
        for i, stage in enumerate(self.stages):
            out.append(f"stages.{i}.first")
            if stage.rest is not None:
                out.append(f"stages.{i}.rest")
        return out

    def features(self, x: jax.Array) -> jax.Array:
        """Stem and stages: ``(B, H, W, 3)`` -> membrane stream ``(B, T, H/2^(S+1), W/2^(S+1), C_last)``."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"config.model.input_shape is {self.input_shape}: the model expects images "
                             f"(B, {', '.join(map(str, self.input_shape))}) channels-last, got shape {tuple(x.shape)}")
        if self.dtype is not None:
            x = x.astype(self.dtype)
        b = x.shape[0]
        z = jnp.broadcast_to(x[:, None], (b, self.T) + x.shape[1:]).reshape((b * self.T,) + x.shape[1:])
        if self.stem_convs is not None:
            for conv in self.stem_convs:
                z = conv(z)
        h = _split_bt(self.stem(z), b)
        for stage in self.stages:
            h = stage(h)
        return h

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.features(x)
        s = self.head_neuron(h)
        feat = s.mean(axis=(2, 3)).mean(axis=1)  # adaptive_avg_pool3d(., (None,1,1)) then mean over T
        return self.fc(self.dropout(feat))


#: Keys understood under ``config.model`` for ``name='att_res_snn'``.
MODEL_KEYS = (
    "name", "depth", "blocks", "widths", "T", "num_classes", "input_shape", "attention", "residual", "placement",
    "stem", "last_bn_init", "c_ratio", "t_ratio", "sa_kernel", "dropout", "dtype", "param_dtype", "conv_impl",
    "batch_chunks", "scan_blocks", "unroll",
)
#: Keys that change how the network is computed, not its parameters or results.
EXECUTION_KEYS = ("dtype", "conv_impl", "batch_chunks", "scan_blocks", "unroll")


def _int(cfg: dict, key: str, minimum: int = 1) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _model_error(key, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _conv_impl(value):
    """``config.model.conv_impl`` for this family: 'auto' is XLA's convolution on every backend. On the 2-core CPU
    the depth-104 train step (T = 1, batch 2, 224 px) compiled in 51 s with it and in 83 s with the im2col conv that
    'auto' picks for the event nets (measured on a shared machine; see ``benchmarks/resnet_compile.py``); these nets
    train on accelerators, where 'auto' is XLA's convolution anyway. 'im2col' stays available."""
    return "xla" if value in (None, "auto") else value


def build_resnet(cfg: dict, rngs: nnx.Rngs) -> AttResSNN:
    """Builds :class:`AttResSNN` from ``config.model`` (``name='att_res_snn'``).

    Keys (defaults = the official Att-Res-SNN-18 at T=1): ``depth`` 18 | 34 | 104, or ``blocks`` (4 ints, overrides
    depth); ``widths`` (64, 128, 256, 512); ``T`` 1; ``num_classes`` 1000; ``input_shape`` (224, 224, 3);
    ``attention`` 'CSA' (:data:`ATTENTIONS`; 'no' = MS-Res-SNN); ``residual`` 'att_res_1'; ``placement``
    'official'; ``stem`` '7x7'; ``last_bn_init`` 0.1; ``c_ratio`` 8; ``t_ratio`` 1; ``sa_kernel`` None (3 / 7 by
    placement); ``dropout`` 0.2; ``dtype`` None; ``param_dtype`` 'float32'; ``conv_impl`` 'auto' (= 'xla' here,
    see :func:`_conv_impl`);
    ``scan_blocks`` True; ``unroll`` 1; ``batch_chunks``: validated and ignored — this family does not chunk the
    batch (at the official T=1 the neuron loop is one step and the convolutions dominate memory; splitting the
    per-sample attention + neuron part would not pay for the extra loop in every block).

    Raises:
      ValueError: a bad value, naming ``config.model.<key>`` (unknown depth/attention/residual/placement/stem, T < 1,
        TA schemes at T = 1, input sizes that do not halve evenly, mismatched blocks/widths lengths).
    """
    c = dict(depth=18, blocks=None, widths=(64, 128, 256, 512), T=1, num_classes=1000, input_shape=(224, 224, 3),
             attention="CSA", residual="att_res_1", placement="official", stem="7x7", last_bn_init=0.1, c_ratio=8,
             t_ratio=1, sa_kernel=None, dropout=0.2, dtype=None, param_dtype="float32", conv_impl="auto",
             batch_chunks=1, scan_blocks=True, unroll=1)
    c.update({k: v for k, v in dict(cfg).items() if k != "name" and (v is not None or k in ("dtype", "sa_kernel",
                                                                                            "blocks"))})
    if c["blocks"] is None:
        if c["depth"] not in DEPTHS:
            raise _model_error("depth", f"must be one of {sorted(DEPTHS)} (or give config.model.blocks), "
                                        f"got {c['depth']!r}")
        blocks = DEPTHS[c["depth"]]
    else:
        blocks = tuple(c["blocks"])
        if not blocks or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in blocks):
            raise _model_error("blocks", f"must be positive integers, got {c['blocks']!r}")
    widths = tuple(c["widths"])
    if len(widths) != len(blocks) or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise _model_error("widths", f"must be {len(blocks)} positive integers (one per stage), got {c['widths']!r}")
    T = _int(c, "T")
    _int(c, "num_classes")
    for key, allowed in (("attention", ATTENTIONS), ("residual", RESIDUALS), ("placement", PLACEMENTS),
                         ("stem", STEMS)):
        if c[key] not in allowed:
            raise _model_error(key, f"must be one of {allowed}, got {c[key]!r}")
    if "T" in c["attention"] and T < 2:
        raise _model_error("attention", f"={c['attention']!r} has temporal attention, which needs "
                                        f"config.model.T > 1, got T={T}")
    shape = tuple(c["input_shape"])
    factor = 2 ** (len(blocks) + 1)
    if len(shape) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape) \
            or shape[0] % factor or shape[1] % factor:
        raise _model_error("input_shape", f"must be (H, W, C) with H and W divisible by {factor}, got {shape!r}")
    if not 0.0 <= float(c["dropout"]) < 1.0:
        raise _model_error("dropout", f"must be in [0, 1), got {c['dropout']!r}")
    if c["sa_kernel"] not in (None, 3, 7):
        raise _model_error("sa_kernel", f"must be 3 or 7, got {c['sa_kernel']!r}")
    chunking.resolve_batch_chunks(c["batch_chunks"])
    kwargs = dict(input_shape=shape, T=T, num_classes=c["num_classes"], blocks=blocks, widths=widths,
                  attention=c["attention"], residual=c["residual"], placement=c["placement"], stem=c["stem"],
                  c_ratio=_int(c, "c_ratio"), t_ratio=_int(c, "t_ratio"), sa_kernel=c["sa_kernel"],
                  last_bn_init=float(c["last_bn_init"]), dropout=float(c["dropout"]),
                  scan_blocks=bool(c["scan_blocks"]), unroll=_int(c, "unroll"), conv_impl=_conv_impl(c["conv_impl"]),
                  dtype=registry.parse_dtype("dtype", c["dtype"]),
                  param_dtype=registry.parse_dtype("param_dtype", c["param_dtype"]))
    try:
        return AttResSNN(rngs=rngs, **kwargs)
    except ValueError as e:
        if "config.model" in str(e):
            raise
        raise ValueError(f"config.model (attention={c['attention']!r}, c_ratio={c['c_ratio']}, "
                         f"t_ratio={c['t_ratio']}): {e}") from None


registry.register("att_res_snn", build=build_resnet, keys=MODEL_KEYS, execution_keys=EXECUTION_KEYS,
                  interop="masnn_jax.interop.resnet")
