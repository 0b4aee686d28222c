"""Spikformer (Zhou et al., ICLR 2023) on the project's neurons, as the official code computes it, with its quirks as
options and MA-SNN multi-dimensional attention as an add-on.

Sources (``shared/specs/spikformer.md``): ``ZK-Zhou/spikformer`` @ 6212689, ``imagenet/model.py`` [IN],
``cifar10/model.py`` [C10], ``cifar10dvs/model.py`` [DVS]; paper arXiv 2209.15425v2 [Pv2] Eqs. 1-16, App. B-C.

Layout is batch-major and channels-last (the official code is time-major, channels-first): images ``(B, H, W, C)``
are repeated over T inside the model (``input_kind='image'``, [IN]/[C10] ``x.unsqueeze(0).repeat(T, ...)``), event
frames arrive as ``(B, T, H, W, C)`` (``input_kind='frames'``, [DVS] ``x.permute(1, 0, 2, 3, 4)``). Every conv,
linear map and BatchNorm runs on the merged ``B·T`` batch (BN statistics over B·T(·H·W or ·N), as ``x.flatten(0, 1)``
does); only the neuron recurrence scans over T. Network::

    SPS    stage i = 0..3:  Conv3×3 s1 p1 (no bias) -> BN -> LIF [-> MaxPool 3/2/1 if pool_stages[i]]
                            channels D/8, D/4, D/2, D                                          ([IN] SPS.forward)
           RPE: X0 = x_feat + LIF(BN(Conv3×3(x_feat)))  (x_feat = the pooled spikes; paper Eq. 5-6)
    blocks x = x + SSA(x);  x = x + MLP(x)          (spikes added to an integer stream: SEW 'ADD')
    SSA    q, k, v = LIF(BN(W x));  Y = LIF_{v_th=0.5}(s · Q Kᵀ V)  (no softmax; h heads, channel = head·d + j)
           out = LIF(BN(Proj Y))                                                          (paper Eq. 14-16)
    MLP    LIF(BN(FC1: D -> 4D)) -> LIF(BN(FC2: 4D -> D))
    head   logits = Linear(mean over T of mean over tokens of x)

Neuron: every LIF is SpikingJelly's multi-step ``LIFNode(tau=2., detach_reset=True)`` with its defaults
(``decay_input=True``, ``v_threshold=1``, ``v_reset=0``, ``Sigmoid(alpha=4)``; spec §1), i.e.
:func:`masnn_jax.snn.neurons.spikingjelly_lif` run by :func:`masnn_jax.snn.neurons.lif`; the attention neuron has
``v_threshold=0.5``. Every neuron population is a :class:`SpikformerLIF` that calls
:func:`masnn_jax.nn.layers.record_activity` on its spikes.

Options (spec §6): ``sps_pool_order`` ('conv-bn-lif-pool' official | 'conv-bn-pool-lif' SpikingJelly/CML),
``pool_stages``, ``attn_order`` ('kv_first' [IN]: ``(q(kᵀv))·s``; 'qk_first' [C10]: ``((qkᵀ)·s)v``), ``attn_scale``
(a number, or 'learnable': one scalar per block initialised to ``attn_scale_init``), ``attn_v_threshold``,
``qkv_bias`` / ``proj_bias`` / ``mlp_bias``, ``fc_init`` ('torch': Conv1d/Conv2d 1×1 default init [IN][DVS];
'trunc_normal': nn.Linear init trunc_normal(0.02), zero bias [C10]), ``residual`` ('spike' official SEW add |
'membrane': Spikingformer-style membrane shortcut, each branch starts with a LIF on the real-valued stream and ends
in BN), ``qk_maxpool1d`` (the DVS128 "1D max-pooling after Q and K", [Pv2] App. C.1; kernel k, stride 1, 'same'
padding over the token axis: kernel and stride are UNVERIFIED, stride 1 is the only choice that keeps Q, K and V
the same length). MA-SNN attention (:class:`masnn_jax.nn.attention.MultiDimensionalAttention`, placements 'input' |
'membrane'): ``sps_attention`` on the pre-activation of every SPS stage's neuron (and the RPE's),
``block_attention`` on the pre-activation of the neurons that write a block's branch outputs (SSA ``proj_lif`` and
MLP ``fc2_lif``; with ``residual='membrane'`` the neurons that read the stream, ``in_lif`` of both branches), tokens
viewed as their ``(H/P, W/P)`` grid.

Parameter counts equal the official models' parameters that take part in the computation (the unused LayerNorms,
the [DVS] ``pos_embed`` and final ``norm`` are left out; spec §3): ImageNet 8-768 66,338,632; 8-512 29,689,384;
8-384 16,816,024; CIFAR10 4-384 9,324,730; CIFAR10-DVS 2-256 2,566,666.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from masnn_jax.models import registry
from masnn_jax.nn import attention as attention_lib
from masnn_jax.nn import layers as layers_lib
from masnn_jax.snn import neurons
from masnn_jax.snn import surrogate as surrogate_lib
from masnn_jax.snn.norm import BatchNorm

__all__ = [
    "VARIANTS", "SPS_POOL_ORDERS", "ATTN_ORDERS", "RESIDUALS", "FC_INITS", "MODEL_KEYS", "EXECUTION_KEYS",
    "SpikformerLIF", "SPSStage", "SPS", "SSA", "MLP", "Block", "Spikformer", "build_spikformer",
    "spikformer_param_count",
]

#: ``config.model.sps_pool_order``.
SPS_POOL_ORDERS = ("conv-bn-lif-pool", "conv-bn-pool-lif")
#: ``config.model.attn_order``: 'kv_first' = ``q @ (kᵀ @ v)`` (d×d intermediate, [IN]); 'qk_first' = ``(q @ kᵀ) @ v``
#: (N×N intermediate, [C10], [DVS]). Equal in exact arithmetic.
ATTN_ORDERS = ("kv_first", "qk_first")
#: ``config.model.residual``: 'spike' (official: spikes added to the stream) | 'membrane' (Spikingformer).
RESIDUALS = ("spike", "membrane")
#: ``config.model.fc_init``: 'torch' (Conv1d/Conv2d 1×1: U(±1/√fan_in) weight and bias) | 'trunc_normal'
#: (nn.Linear under ``Spikformer._init_weights``: trunc_normal(std 0.02), bias 0).
FC_INITS = ("torch", "trunc_normal")

_T, _F = True, False
#: ``config.model.variant``: the official files' settings; explicit keys override any of them.
VARIANTS = {
    # imagenet/model.py `spikformer()`: 224², 8-512, 8 heads, T = 4 hard-coded in forward, Conv1d q/k/v (no bias).
    "imagenet": dict(input_kind="image", input_shape=(224, 224, 3), T=4, num_classes=1000, embed_dim=512, depth=8,
                     heads=8, pool_stages=(_T, _T, _T, _T), attn_order="kv_first", attn_scale=0.125,
                     qkv_bias=False, proj_bias=True, mlp_bias=True, fc_init="torch"),
    # cifar10/model.py + cifar10.yml: 32², 4-384, 12 heads, T = 4, nn.Linear everywhere (bias, trunc_normal init).
    "cifar": dict(input_kind="image", input_shape=(32, 32, 3), T=4, num_classes=10, embed_dim=384, depth=4,
                  heads=12, pool_stages=(_F, _F, _T, _T), attn_order="qk_first", attn_scale=0.125,
                  qkv_bias=True, proj_bias=True, mlp_bias=True, fc_init="trunc_normal"),
    # cifar10dvs/model.py + train.py --T 16: 128² × 2 event frames, 2-256, 16 heads, scale 0.25, Conv1d.
    "dvs": dict(input_kind="frames", input_shape=(128, 128, 2), T=16, num_classes=10, embed_dim=256, depth=2,
                heads=16, pool_stages=(_T, _T, _T, _T), attn_order="qk_first", attn_scale=0.25,
                qkv_bias=False, proj_bias=True, mlp_bias=True, fc_init="torch"),
}

_DEFAULTS = dict(
    variant="imagenet", mlp_ratio=4, sps_pool_order="conv-bn-lif-pool", attn_scale_init=0.25, attn_v_threshold=0.5,
    residual="spike", qk_maxpool1d=0, tau=2.0, v_threshold=1.0, surrogate_alpha=4.0, sps_attention="no",
    block_attention="no", attention_placement="input", c_ratio=8, t_ratio=2, sa_kernel=3, unroll=1,
    conv_impl="auto", dtype=None, param_dtype="float32",
)

#: Keys understood under ``config.model`` for ``name='spikformer'``.
MODEL_KEYS = ("name",) + tuple(VARIANTS["imagenet"]) + tuple(_DEFAULTS)
#: Keys that change how the network is computed, not what it computes or which parameters it has.
EXECUTION_KEYS = ("unroll", "conv_impl", "dtype", "attn_order")


def _merge_bt(x: jax.Array) -> jax.Array:
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def _split_bt(x: jax.Array, b: int) -> jax.Array:
    return x.reshape((b, x.shape[0] // b) + x.shape[1:])


def _trunc_normal_002(key, shape, dtype=jnp.float32):
    """timm 0.5.4 ``trunc_normal_(w, std=.02)``: N(0, 0.02²) truncated at the *absolute* bounds a=-2, b=2 (i.e. ±100σ,
    effectively untruncated)."""
    return jax.random.truncated_normal(key, -100.0, 100.0, shape, dtype) * jnp.asarray(0.02, dtype)


def _linear(n_in: int, n_out: int, *, use_bias: bool, init: str, dtype, param_dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """A 1×1 map on the last axis: the official Conv1d/Conv2d 1×1 ('torch' init) or nn.Linear ('trunc_normal')."""
    if init == "torch":
        k_init = b_init = layers_lib.torch_default_init(n_in)
    else:
        k_init, b_init = _trunc_normal_002, nnx.initializers.zeros_init()
    return nnx.Linear(n_in, n_out, use_bias=use_bias, kernel_init=k_init, bias_init=b_init, dtype=dtype,
                      param_dtype=param_dtype, rngs=rngs)


def _bn(features: int, dtype, param_dtype, rngs) -> BatchNorm:
    """PyTorch-default BatchNorm (eps 1e-5, momentum 0.1 = Flax 0.9; unbiased running variance; spec §1)."""
    return BatchNorm(features, momentum=0.9, epsilon=1e-5, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class SpikformerLIF(nnx.Module):
    """A population of SpikingJelly multi-step LIF neurons (``LIFNode(tau, detach_reset=True)``; spec §1), with an
    optional MA-SNN attention block on its input / membrane potential, recorded for the firing rate.

    ``H_t = V_{t-1} + (X_t − V_{t-1})/τ``; ``S_t = Θ(H_t − v_th)`` (Θ(0) = 1); ``V_t = H_t·(1 − sg(S_t))`` (hard
    reset to 0, reset detached); surrogate gradient ``α·σ(αx)(1 − σ(αx))``, α = 4 ([Pv2] Eq. 1-3, App. C.1 eq. 20).

    Args:
      v_threshold: 1.0, or 0.5 for the attention neuron ([IN] ``attn_lif``). tau: τ (2). surrogate_alpha: α (4).
      attention: None, or a :class:`~masnn_jax.nn.attention.MultiDimensionalAttention` applied as in
        :class:`masnn_jax.nn.layers.ConvAttLIF` (placement 'input': to the whole pre-activation sequence, ReLU
        included; 'membrane': TA on the input, CA/SA on each step's membrane potential inside the scan).
      grid: ``(h, w)`` token grid, for the attention on token sequences ``(B, T, N, C)`` (N = h·w, row-major).
      unroll: ``lax.scan`` unroll.
    Call:
      ``lif(y)``, ``y`` ``(B, T, ...)`` float -> spikes of ``y``'s shape and dtype, exactly 0/1. The membrane state
      is kept in at least float32. Sows ``activity`` (and ``spikes``) per :func:`~masnn_jax.nn.layers.record_activity`
      when ``self.record`` is on.
    """

    def __init__(self, *, v_threshold: float = 1.0, tau: float = 2.0, surrogate_alpha: float = 4.0,
                 attention: attention_lib.MultiDimensionalAttention | None = None, grid: tuple[int, int] | None = None,
                 unroll: int = 1):
        self.params = neurons.spikingjelly_lif(
            tau, decay_input=True, v_threshold=v_threshold, v_reset=0.0, detach_reset=True,
            surrogate=surrogate_lib.sigmoid(surrogate_alpha)).validate()
        self.attention = attention
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))
        self.unroll = int(unroll)
        self.record = "off"

    def fire(self, y: jax.Array) -> jax.Array:
        """Attention (if any) and the neuron scan, no recording: ``(B, T, ...)`` -> spikes of the same shape."""
        dtype = y.dtype
        shape = y.shape
        att = self.attention
        transform = None
        if att is not None:
            if y.ndim == 4:  # tokens (B, T, N, C) -> (B, T, h, w, C)
                if self.grid is None or self.grid[0] * self.grid[1] != y.shape[2]:
                    raise ValueError(f"SpikformerLIF: token grid {self.grid} does not match {y.shape[2]} tokens")
                y = y.reshape(shape[:2] + self.grid + shape[3:])
            y = att.input_transform(y)
            if att.has_membrane_stage:
                transform = att.membrane_transform
        state_dtype = jnp.promote_types(y.dtype, jnp.float32)
        s = neurons.lif(y.astype(state_dtype), self.params, transform=transform, unroll=self.unroll)
        return s.reshape(shape).astype(dtype)

    def __call__(self, y: jax.Array) -> jax.Array:
        s = self.fire(y)
        layers_lib.record_activity(self, s)
        return s


def _max_pool(x: jax.Array) -> jax.Array:
    """``torch.nn.MaxPool2d(kernel_size=3, stride=2, padding=1)`` on ``(N, H, W, C)`` (padding = −inf): output
    ``(N, ceil(H/2), ceil(W/2), C)``."""
    return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class SPSStage(nnx.Module):
    """One SPS stage: Conv3×3 s1 p1 (no bias) -> BN (over B·T·H·W) -> LIF, with ``MaxPool2d(3, 2, 1)`` after the LIF
    ('conv-bn-lif-pool', [IN] ``SPS.forward``, paper Eq. 10) or before it ('conv-bn-pool-lif').

    Args:
      in_features, out_features: channels. pool: whether the stage max-pools. pool_order: see
      :data:`SPS_POOL_ORDERS`. lif: the stage's :class:`SpikformerLIF`. conv_impl, dtype, param_dtype, rngs.
    Call: ``stage(x)`` ``(B, T, H, W, C_in)`` -> spikes ``(B, T, H', W', C_out)`` (``H' = ceil(H/2)`` when pooling).
    Parameters: ``convbn.conv.kernel`` ``(3, 3, C_in, C_out)`` (PyTorch default init), ``convbn.bn.scale/bias``.
    """

    def __init__(self, in_features: int, out_features: int, *, pool: bool, pool_order: str, lif: SpikformerLIF,
                 conv_impl: str = "auto", dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.convbn = layers_lib.ConvBN(in_features, out_features, kernel_size=3, stride=1, padding=1,
                                        use_bias=False, conv_impl=conv_impl, dtype=dtype, param_dtype=param_dtype,
                                        rngs=rngs)
        self.pool = bool(pool)
        self.pool_order = pool_order
        self.lif = lif

    def __call__(self, x: jax.Array) -> jax.Array:
        b = x.shape[0]
        z = self.convbn(_merge_bt(x))
        if self.pool and self.pool_order == "conv-bn-pool-lif":
            z = _max_pool(z)
        s = self.lif(_split_bt(z, b))
        if self.pool and self.pool_order == "conv-bn-lif-pool":
            s = _split_bt(_max_pool(_merge_bt(s)), b)
        return s


class SPS(nnx.Module):
    """Spiking Patch Splitting with the relative position embedding ([IN]/[C10]/[DVS] ``SPS``, paper Eq. 5-10).

    Four :class:`SPSStage` (channels D/8, D/4, D/2, D; pooling per ``pool_stages``), then
    ``X0 = x_feat + LIF(BN(Conv3×3(D→D, no bias)(x_feat)))`` (values in {0, 1, 2}).

    Call: ``sps(x)`` ``(B, T, H, W, C_in)`` -> ``(B, T, H/P, W/P, D)`` with ``P = 2 ** sum(pool_stages)``.
    """

    def __init__(self, in_features: int, embed_dim: int, *, pool_stages: Sequence[bool], pool_order: str,
                 make_lif, conv_impl: str = "auto", dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        widths = (embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim)
        stages, c = [], in_features
        for i, (w, p) in enumerate(zip(widths, pool_stages)):
            stages.append(SPSStage(c, w, pool=p, pool_order=pool_order, lif=make_lif(w, i), conv_impl=conv_impl,
                                   dtype=dtype, param_dtype=param_dtype, rngs=rngs))
            c = w
        self.stages = nnx.List(stages)
        self.rpe_convbn = layers_lib.ConvBN(embed_dim, embed_dim, kernel_size=3, stride=1, padding=1,
                                            use_bias=False, conv_impl=conv_impl, dtype=dtype,
                                            param_dtype=param_dtype, rngs=rngs)
        self.rpe_lif = make_lif(embed_dim, len(stages))

    def __call__(self, x: jax.Array) -> jax.Array:
        for stage in self.stages:
            x = stage(x)
        rpe = self.rpe_lif(_split_bt(self.rpe_convbn(_merge_bt(x)), x.shape[0]))
        return x + rpe


def _token_maxpool(s: jax.Array, k: int) -> jax.Array:
    """1-D max-pooling over the token axis of ``(B, T, N, C)``: kernel ``k``, stride 1, padding ``(k−1)//2`` and
    ``k//2`` (−inf), so N is kept."""
    return jax.lax.reduce_window(s, -jnp.inf, jax.lax.max, (1, 1, k, 1), (1, 1, 1, 1),
                                 ((0, 0), (0, 0), ((k - 1) // 2, k // 2), (0, 0)))


class SSA(nnx.Module):
    """Spiking Self-Attention ([IN]/[C10]/[DVS] ``SSA``, paper Eq. 14-16).

    ``q, k, v = LIF(BN(W_{q,k,v} x))`` (W: Conv1d 1×1 or Linear), heads split as channel = head·d + j;
    ``Y = LIF_{attn_v_threshold}(s · Q Kᵀ V)`` with no softmax, in the order ``attn_order``; output
    ``LIF(BN(Proj Y))``. With ``residual='membrane'`` the input first goes through ``in_lif`` and the output is
    ``BN(Proj Y)`` (no output neuron). With ``qk_maxpool1d = k > 0``, Q and K are max-pooled over tokens
    (:func:`_token_maxpool`) before the products.

    Call: ``ssa(x)`` ``(B, T, N, D)`` -> ``(B, T, N, D)`` (spikes, or BN output for 'membrane').
    Parameters: ``q``/``k``/``v``/``proj`` (``nnx.Linear`` kernels ``(D, D)``), their ``*_bn``; ``scale`` (0-d
    ``nnx.Param``) when ``attn_scale='learnable'``.
    """

    def __init__(self, dim: int, heads: int, *, attn_order: str, attn_scale, attn_scale_init: float,
                 qkv_bias: bool, proj_bias: bool, fc_init: str, residual: str, qk_maxpool1d: int, make_lif,
                 out_attention_lif, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.dim, self.heads = int(dim), int(heads)
        self.attn_order, self.residual, self.qk_maxpool1d = attn_order, residual, int(qk_maxpool1d or 0)
        lin = dict(init=fc_init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.in_lif = out_attention_lif() if residual == "membrane" else None
        self.q, self.k, self.v = (_linear(dim, dim, use_bias=qkv_bias, **lin) for _ in range(3))
        self.q_bn, self.k_bn, self.v_bn = (_bn(dim, dtype, param_dtype, rngs) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = make_lif(), make_lif(), make_lif()
        self.attn_lif = make_lif(attention_neuron=True)
        self.proj = _linear(dim, dim, use_bias=proj_bias, **lin)
        self.proj_bn = _bn(dim, dtype, param_dtype, rngs)
        self.proj_lif = out_attention_lif() if residual == "spike" else None
        if attn_scale == "learnable":
            self.scale = nnx.Param(jnp.asarray(attn_scale_init, param_dtype))
            self.fixed_scale = None
        else:
            self.scale = None
            self.fixed_scale = float(attn_scale)

    def attend(self, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        """``s · Q Kᵀ V`` per head on spikes ``(B, T, N, D)`` -> ``(B, T, N, D)`` (channel = head·d + j), computed in
        at least float32 (products of spikes are integers)."""
        b, t, n, c = q.shape
        h = self.heads
        work = jnp.promote_types(q.dtype, jnp.float32)
        qh, kh, vh = (a.astype(work).reshape(b, t, a.shape[2], h, c // h) for a in (q, k, v))
        scale = self.fixed_scale if self.scale is None else self.scale[...].astype(work)
        if self.attn_order == "kv_first":  # [IN]: x = kᵀ @ v; x = (q @ x) * scale
            kv = jnp.einsum("btmhd,btmhe->bthde", kh, vh)
            y = jnp.einsum("btnhd,bthde->btnhe", qh, kv) * scale
        else:  # [C10]: attn = (q @ kᵀ) * scale; x = attn @ v
            attn = jnp.einsum("btnhd,btmhd->bthnm", qh, kh) * scale
            y = jnp.einsum("bthnm,btmhe->btnhe", attn, vh)
        return y.reshape(b, t, n, c).astype(q.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.in_lif is not None:
            x = self.in_lif(x)
        q = self.q_lif(self.q_bn(self.q(x)))
        k = self.k_lif(self.k_bn(self.k(x)))
        v = self.v_lif(self.v_bn(self.v(x)))
        if self.qk_maxpool1d:
            q, k = _token_maxpool(q, self.qk_maxpool1d), _token_maxpool(k, self.qk_maxpool1d)
        y = self.attn_lif(self.attend(q, k, v))
        out = self.proj_bn(self.proj(y))
        return out if self.proj_lif is None else self.proj_lif(out)


class MLP(nnx.Module):
    """``LIF(BN(FC1: D -> hidden))`` -> ``LIF(BN(FC2: hidden -> D))`` ([IN]/[C10]/[DVS] ``MLP``); with
    ``residual='membrane'``: ``in_lif`` first and no neuron after ``fc2_bn``.

    Call: ``mlp(x)`` ``(B, T, N, D)`` -> ``(B, T, N, D)``.
    """

    def __init__(self, dim: int, hidden: int, *, use_bias: bool, fc_init: str, residual: str, make_lif,
                 out_attention_lif, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        lin = dict(init=fc_init, dtype=dtype, param_dtype=param_dtype, rngs=rngs, use_bias=use_bias)
        self.in_lif = out_attention_lif() if residual == "membrane" else None
        self.fc1 = _linear(dim, hidden, **lin)
        self.fc1_bn = _bn(hidden, dtype, param_dtype, rngs)
        self.fc1_lif = make_lif()
        self.fc2 = _linear(hidden, dim, **lin)
        self.fc2_bn = _bn(dim, dtype, param_dtype, rngs)
        self.fc2_lif = out_attention_lif() if residual == "spike" else None

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.in_lif is not None:
            x = self.in_lif(x)
        h = self.fc1_lif(self.fc1_bn(self.fc1(x)))
        out = self.fc2_bn(self.fc2(h))
        return out if self.fc2_lif is None else self.fc2_lif(out)


class Block(nnx.Module):
    """``x = x + SSA(x); x = x + MLP(x)`` ([IN] ``Block.forward``; no LayerNorm, no DropPath: both are built but
    never applied in the official code). Call: ``(B, T, N, D)`` -> ``(B, T, N, D)``."""

    def __init__(self, attn: SSA, mlp: MLP):
        self.attn = attn
        self.mlp = mlp

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikformer(nnx.Module):
    """Spikformer-L-D (see the module docstring).

    Args:
      input_kind: 'image' (input ``(B, H, W, C)``, repeated over T) | 'frames' (``(B, T, H, W, C)``).
      input_shape: ``(H, W, C)``; H and W divisible by ``2 ** sum(pool_stages)``. T, num_classes.
      embed_dim: D (divisible by 8 and by ``heads``). depth: L. heads. mlp_ratio: hidden = mlp_ratio·D.
      pool_stages: 4 bools. sps_pool_order, attn_order, residual, fc_init: see the module constants.
      attn_scale: a float, or 'learnable' (initialised to ``attn_scale_init``). attn_v_threshold: 0.5.
      qkv_bias, proj_bias, mlp_bias: biases of the 1×1 maps. qk_maxpool1d: 0 (off) or the kernel size.
      tau, v_threshold, surrogate_alpha: the neurons (2, 1, 4).
      sps_attention, block_attention: MA-SNN schemes (:data:`masnn_jax.nn.attention.SCHEMES`, 'no' = off);
      attention_placement: 'input' | 'membrane'; c_ratio, t_ratio, sa_kernel: their options.
      unroll: neuron scan unroll. conv_impl: 'auto' | 'xla' | 'im2col'. dtype: compute dtype (None: from the
        parameters; neuron states and attention products in at least float32). param_dtype. rngs.
    Attributes (:class:`~masnn_jax.models.registry.SpikingModel`): ``input_kind``, ``input_shape``, ``T``,
      ``num_classes``, ``dtype``; ``sps`` (:class:`SPS`), ``blocks`` (list of :class:`Block`), ``head``.
    Call:
      ``model(x)`` -> logits ``(B, num_classes)``: ``head(mean_T(mean_N(stream)))`` ([IN] ``forward``).
    Raises:
      ValueError: an input of the wrong shape (naming ``config.model.input_shape`` / ``T``).
    """

    def __init__(self, *, input_kind: str, input_shape: Sequence[int], T: int, num_classes: int, embed_dim: int,
                 depth: int, heads: int, mlp_ratio: int = 4, pool_stages: Sequence[bool] = (True,) * 4,
                 sps_pool_order: str = "conv-bn-lif-pool", attn_order: str = "kv_first", attn_scale=0.125,
                 attn_scale_init: float = 0.25, attn_v_threshold: float = 0.5, qkv_bias: bool = False,
                 proj_bias: bool = True, mlp_bias: bool = True, fc_init: str = "torch", residual: str = "spike",
                 qk_maxpool1d: int = 0, tau: float = 2.0, v_threshold: float = 1.0, surrogate_alpha: float = 4.0,
                 sps_attention: str = "no", block_attention: str = "no", attention_placement: str = "input",
                 c_ratio: int = 8, t_ratio: int = 2, sa_kernel: int = 3, unroll: int = 1, conv_impl: str = "auto",
                 dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.input_kind = input_kind
        self.input_shape = tuple(int(v) for v in input_shape)
        self.T, self.num_classes, self.dtype = int(T), int(num_classes), dtype
        self.embed_dim, self.depth, self.heads = int(embed_dim), int(depth), int(heads)
        self.pool_stages = tuple(bool(p) for p in pool_stages)
        self.residual = residual
        patch = 2 ** sum(self.pool_stages)
        self.grid = (self.input_shape[0] // patch, self.input_shape[1] // patch)
        neuron = dict(tau=tau, surrogate_alpha=surrogate_alpha, unroll=unroll)

        def mda(scheme: str, channels: int):
            if scheme == "no":
                return None
            return attention_lib.MultiDimensionalAttention(
                scheme, self.T, channels, c_ratio=c_ratio, t_ratio=t_ratio, kernel_size=sa_kernel,
                placement=attention_placement, rngs=rngs, param_dtype=param_dtype)

        def sps_lif(channels: int, _index: int) -> SpikformerLIF:
            return SpikformerLIF(v_threshold=v_threshold, attention=mda(sps_attention, channels), **neuron)

        def block_lif(attention_neuron: bool = False) -> SpikformerLIF:
            return SpikformerLIF(v_threshold=attn_v_threshold if attention_neuron else v_threshold, **neuron)

        def out_lif() -> SpikformerLIF:
            return SpikformerLIF(v_threshold=v_threshold, attention=mda(block_attention, self.embed_dim),
                                 grid=self.grid, **neuron)

        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.sps = SPS(self.input_shape[2], self.embed_dim, pool_stages=self.pool_stages, pool_order=sps_pool_order,
                       make_lif=sps_lif, conv_impl=conv_impl, **common)
        blocks = []
        for _ in range(self.depth):
            attn = SSA(self.embed_dim, self.heads, attn_order=attn_order, attn_scale=attn_scale,
                       attn_scale_init=attn_scale_init, qkv_bias=qkv_bias, proj_bias=proj_bias, fc_init=fc_init,
                       residual=residual, qk_maxpool1d=qk_maxpool1d, make_lif=block_lif, out_attention_lif=out_lif,
                       **common)
            mlp = MLP(self.embed_dim, int(mlp_ratio) * self.embed_dim, use_bias=mlp_bias, fc_init=fc_init,
                      residual=residual, make_lif=block_lif, out_attention_lif=out_lif, **common)
            blocks.append(Block(attn, mlp))
        self.blocks = nnx.List(blocks)
        # the head is an nn.Linear in every file: trunc_normal(0.02) weight, zero bias (_init_weights)
        self.head = _linear(self.embed_dim, self.num_classes, use_bias=True, init="trunc_normal", **common)

    def _sequence(self, x: jax.Array) -> jax.Array:
        h, w, c = self.input_shape
        if self.input_kind == "image":
            if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
                raise ValueError(f"config.model.input_shape is {self.input_shape}: the model expects images "
                                 f"(B, {h}, {w}, {c}) channels-last, got shape {tuple(x.shape)}")
            return jnp.broadcast_to(x[:, None], (x.shape[0], self.T) + x.shape[1:])
        if x.ndim != 5 or tuple(x.shape[2:]) != self.input_shape or x.shape[1] != self.T:
            raise ValueError(f"config.model.input_shape={self.input_shape}, config.model.T={self.T}: the model "
                             f"expects event frames (B, {self.T}, {h}, {w}, {c}) channels-last, got shape "
                             f"{tuple(x.shape)}")
        return x

    def features(self, x: jax.Array) -> jax.Array:
        """SPS and the blocks: input -> the stream ``(B, T, N, D)`` (integer-valued for ``residual='spike'``)."""
        x = self._sequence(x)
        if self.dtype is not None:
            x = x.astype(self.dtype)
        s = self.sps(x)
        b, t, gh, gw, d = s.shape
        s = s.reshape(b, t, gh * gw, d)  # token n = row·W' + col ([C10] flatten(-2).transpose(-1, -2))
        for block in self.blocks:
            s = block(s)
        return s

    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.features(x)
        return self.head(s.mean(axis=2).mean(axis=1))

    def spiking_layers(self) -> list[tuple[str, SpikformerLIF]]:
        """``(path, neuron)`` of every :class:`SpikformerLIF` in forward order (paths as in ``nnx.iter_graph``)."""
        out = [(f"sps.stages.{i}.lif", st.lif) for i, st in enumerate(self.sps.stages)]
        out.append(("sps.rpe_lif", self.sps.rpe_lif))
        for j, blk in enumerate(self.blocks):
            p = f"blocks.{j}"
            for name in ("in_lif", "q_lif", "k_lif", "v_lif", "attn_lif", "proj_lif"):
                if getattr(blk.attn, name) is not None:
                    out.append((f"{p}.attn.{name}", getattr(blk.attn, name)))
            for name in ("in_lif", "fc1_lif", "fc2_lif"):
                if getattr(blk.mlp, name) is not None:
                    out.append((f"{p}.mlp.{name}", getattr(blk.mlp, name)))
        return out

    def layer_names(self) -> dict[str, str]:
        """Recorded-layer path -> display name, in forward order (:class:`~masnn_jax.models.registry.SpikingModel`)."""
        names = {}
        for path, _ in self.spiking_layers():
            if path.startswith("sps.stages."):
                names[path] = f"sps{path.split('.')[2]}"
            elif path == "sps.rpe_lif":
                names[path] = "rpe"
            else:
                _, j, branch, name = path.split(".")
                names[path] = f"block{j}.{branch}.{name[:-4]}"
        return names

    def operation_counts(self) -> list[registry.OpCount]:
        """The synaptic operations of one inference (the :class:`~masnn_jax.models.registry.SpikingModel` hook), per
        sample in forward order: :func:`masnn_jax.models.spikformer_ops.operation_counts` (what each op reads, the
        honest count and the paper's)."""
        from masnn_jax.models import spikformer_ops

        return spikformer_ops.operation_counts(self)


def _model_error(key: str, message: str) -> ValueError:
    return ValueError(f"config.model.{key} {message}")


def _int(c: dict, key: str, minimum: int = 1) -> int:
    v = c[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise _model_error(key, f"must be an integer >= {minimum}, got {v!r}")
    return v


def _positive(c: dict, key: str) -> float:
    v = c[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise _model_error(key, f"must be a finite number > 0, got {v!r}")
    return float(v)


def _choice(c: dict, key: str, allowed) -> str:
    if c[key] not in allowed:
        raise _model_error(key, f"must be one of {tuple(allowed)}, got {c[key]!r}")
    return c[key]


def _resolve(cfg: dict) -> dict:
    """``config.model`` with the variant's settings under the explicit keys, validated. Raises ValueError naming
    ``config.model.<key>``."""
    cfg = {k: v for k, v in dict(cfg).items() if k != "name"}
    variant = cfg.get("variant", _DEFAULTS["variant"])
    if variant not in VARIANTS:
        raise _model_error("variant", f"must be one of {sorted(VARIANTS)}, got {variant!r}")
    c = dict(_DEFAULTS)
    c.update(VARIANTS[variant])
    c.update({k: v for k, v in cfg.items() if v is not None or k == "dtype"})
    _choice(c, "input_kind", registry.INPUT_KINDS)
    for key in ("T", "num_classes", "depth", "heads", "mlp_ratio", "c_ratio", "t_ratio", "unroll"):
        _int(c, key)
    _int(c, "qk_maxpool1d", 0)
    d = _int(c, "embed_dim", 8)
    if d % 8:
        raise _model_error("embed_dim", f"must be divisible by 8 (SPS widths D/8, D/4, D/2, D), got {d}")
    if d % c["heads"]:
        raise _model_error("heads", f"({c['heads']}) must divide config.model.embed_dim ({d})")
    pools = tuple(c["pool_stages"])
    if len(pools) != 4 or any(not isinstance(p, (bool, int)) or p not in (0, 1) for p in pools):
        raise _model_error("pool_stages", f"must be 4 booleans (max-pool after SPS stage i), got {c['pool_stages']!r}")
    c["pool_stages"] = tuple(bool(p) for p in pools)
    shape = tuple(c["input_shape"])
    patch = 2 ** sum(c["pool_stages"])
    if len(shape) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape) \
            or shape[0] % patch or shape[1] % patch:
        raise _model_error("input_shape", f"must be (H, W, C) with H and W divisible by the SPS patch size "
                                          f"2**sum(pool_stages)={patch}, got {c['input_shape']!r}")
    c["input_shape"] = shape
    for key, allowed in (("sps_pool_order", SPS_POOL_ORDERS), ("attn_order", ATTN_ORDERS), ("residual", RESIDUALS),
                         ("fc_init", FC_INITS), ("attention_placement", attention_lib.PLACEMENTS),
                         ("sps_attention", attention_lib.SCHEMES), ("block_attention", attention_lib.SCHEMES)):
        _choice(c, key, allowed)
    if c["attn_scale"] != "learnable":
        _positive(c, "attn_scale")
    for key in ("attn_scale_init", "attn_v_threshold", "v_threshold", "surrogate_alpha"):
        _positive(c, key)
    if not isinstance(c["tau"], (int, float)) or isinstance(c["tau"], bool) or not c["tau"] > 1:
        raise _model_error("tau", f"must be a number > 1, got {c['tau']!r}")
    if c["sa_kernel"] not in (3, 7):
        raise _model_error("sa_kernel", f"must be 3 or 7, got {c['sa_kernel']!r}")
    for key in ("sps_attention", "block_attention"):
        if "T" in c[key] and c["T"] // c["t_ratio"] < 1:
            raise _model_error(key, f"({c[key]!r}) has temporal attention, which needs config.model.T >= "
                                    f"config.model.t_ratio, got T={c['T']}, t_ratio={c['t_ratio']}")
        if c[key] != "no" and "C" in c[key]:
            widths = (d // 8,) if key == "sps_attention" else (d,)
            if widths[0] // c["c_ratio"] < 1:
                raise _model_error("c_ratio", f"({c['c_ratio']}) leaves no hidden channel for {key} on {widths[0]} "
                                              f"channels")
    for key in ("qkv_bias", "proj_bias", "mlp_bias"):
        if not isinstance(c[key], (bool, int)) or c[key] not in (0, 1):
            raise _model_error(key, f"must be a boolean, got {c[key]!r}")
        c[key] = bool(c[key])
    c["dtype"] = registry.parse_dtype("dtype", c["dtype"])
    c["param_dtype"] = registry.parse_dtype("param_dtype", c["param_dtype"])
    c.pop("variant")
    return c


def build_spikformer(cfg: dict, rngs: nnx.Rngs) -> Spikformer:
    """Builds :class:`Spikformer` from ``config.model`` (``name='spikformer'``).

    Keys: ``variant`` ('imagenet' | 'cifar' | 'dvs', :data:`VARIANTS`) fills ``input_kind``, ``input_shape``,
    ``T``, ``num_classes``, ``embed_dim``, ``depth``, ``heads``, ``pool_stages``, ``attn_order``, ``attn_scale``,
    ``qkv_bias``, ``proj_bias``, ``mlp_bias``, ``fc_init`` with the official file's values; any explicit key
    overrides. Other keys and defaults: ``mlp_ratio`` 4, ``sps_pool_order`` 'conv-bn-lif-pool', ``attn_scale_init``
    0.25, ``attn_v_threshold`` 0.5, ``residual`` 'spike', ``qk_maxpool1d`` 0, ``tau`` 2, ``v_threshold`` 1,
    ``surrogate_alpha`` 4, ``sps_attention`` / ``block_attention`` 'no', ``attention_placement`` 'input',
    ``c_ratio`` 8, ``t_ratio`` 2, ``sa_kernel`` 3, ``unroll`` 1, ``conv_impl`` 'auto', ``dtype`` None,
    ``param_dtype`` 'float32'.

    Raises:
      ValueError: a bad value, naming ``config.model.<key>``: unknown variant / order / residual / init / scheme /
        placement; ``embed_dim`` not divisible by 8 or by ``heads``; an ``input_shape`` the SPS cannot patch
        (H, W not divisible by ``2 ** sum(pool_stages)``); non-positive sizes.
    """
    return Spikformer(rngs=rngs, **_resolve(cfg))


def spikformer_param_count(model_config: dict, *, skip_attention: bool = False) -> int:
    """Number of ``nnx.Param`` scalars of the model ``model_config`` describes, from ``nnx.eval_shape`` (no
    arrays are allocated). ``skip_attention``: leave out the MA-SNN attention blocks' parameters."""
    abstract = nnx.eval_shape(lambda: build_spikformer(dict(model_config), nnx.Rngs(0)))
    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(abstract, nnx.Param)):
        if skip_attention and any(getattr(p, "key", None) == "attention" for p in path):
            continue
        total += math.prod(leaf.shape)
    return int(total)


registry.register("spikformer", build=build_spikformer, keys=MODEL_KEYS, execution_keys=EXECUTION_KEYS)
