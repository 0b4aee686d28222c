"""Float64 parity of the Spikformer family with a PyTorch reference of the three official model files.

The reference below is written for this test from ``ZK-Zhou/spikformer`` @ 6212689 (``imagenet/model.py``,
``cifar10/model.py``, ``cifar10dvs/model.py``; read, not copied): the same layers, layouts (time-major,
channels-first), reshapes, matmul orders and scales as each file, with SpikingJelly 2.0's multi-step ``LIFNode(tau=2.,
detach_reset=True, step_mode='m', surrogate_function=Sigmoid(alpha=4.))`` on the torch backend for the official
``MultiStepLIFNode(tau=2.0, detach_reset=True, backend='cupy')`` (same defaults: decay_input=True, v_reset=0,
v_threshold=1; spec §1). Unused modules (LayerNorms, DropPath, [DVS] pos_embed / norm / res_lif) are left out.

For a small configuration of each file: every neuron's spikes are identical, logits agree to 1e-9, a few gradients
agree to 1e-9 (surrogate gradients through the whole network), every neuron fires at a rate strictly between 0 and
1, and the running BatchNorm statistics after the training-mode pass agree.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax.models import build
from masnn_jax.nn.layers import set_recording

torch = pytest.importorskip("torch")
sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
nn = torch.nn


def _lif(v_threshold=1.0):
    return sj_neuron.LIFNode(tau=2.0, v_threshold=v_threshold, detach_reset=True, step_mode="m",
                             surrogate_function=sj_surrogate.Sigmoid(alpha=4.0))


def _linear_init(m):  # Spikformer._init_weights: trunc_normal_(std=.02) on nn.Linear weights, zero bias
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.constant_(m.bias, 0)


# --------------------------------------------------------------------------------------------------- reference
class RefSPS(nn.Module):
    """SPS of the three files; ``pools`` = which stages max-pool, ``kind`` picks the file's reshapes."""

    def __init__(self, c_in, d, pools, kind):
        super().__init__()
        self.kind, self.pools = kind, pools
        widths = [d // 8, d // 4, d // 2, d]
        cs = [c_in] + widths
        self.convs = nn.ModuleList([nn.Conv2d(cs[i], cs[i + 1], 3, 1, 1, bias=False) for i in range(4)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(w) for w in widths])
        self.lifs = nn.ModuleList([_lif() for _ in widths])
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)
        self.rpe_conv = nn.Conv2d(d, d, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(d)
        self.rpe_lif = _lif()

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = x.flatten(0, 1)
        h, w = H, W
        for i in range(4):
            x = self.bns[i](self.convs[i](x))
            if self.kind == "dvs" and i > 0:  # [DVS] hard-codes 64/32/16 (128² input)
                h = w = (64, 32, 16)[i - 1]
            x = self.lifs[i](x.reshape(T, B, -1, h, w).contiguous()).flatten(0, 1).contiguous()
            if self.pools[i]:
                x = self.maxpool(x)
                h, w = h // 2, w // 2
        if self.kind == "dvs":  # x_rpe on the pooled spikes, added before the reshape to (T, B, C, N)
            x_rpe = self.rpe_bn(self.rpe_conv(x)).reshape(T, B, -1, H // 16, W // 16).contiguous()
            x_rpe = self.rpe_lif(x_rpe).flatten(0, 1)
            x = x + x_rpe
            return x.reshape(T, B, -1, (H // 16) * (H // 16)).contiguous()
        x_feat = x.reshape(T, B, -1, h, w).contiguous()
        x = self.rpe_lif(self.rpe_bn(self.rpe_conv(x)).reshape(T, B, -1, h, w).contiguous())
        x = x + x_feat
        if self.kind == "cifar":
            return x.flatten(-2).transpose(-1, -2)  # T, B, N, C
        return x  # imagenet: T, B, C, H, W


class RefSSA(nn.Module):
    def __init__(self, d, heads, kind):
        super().__init__()
        self.kind, self.h = kind, heads
        self.scale = 0.25 if kind == "dvs" else 0.125
        if kind == "cifar":
            self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))
        else:
            self.q, self.k, self.v = (nn.Conv1d(d, d, 1, 1, bias=False) for _ in range(3))
            self.proj = nn.Conv1d(d, d, 1, 1)
        self.q_bn, self.k_bn, self.v_bn, self.proj_bn = (nn.BatchNorm1d(d) for _ in range(4))
        self.q_lif, self.k_lif, self.v_lif = _lif(), _lif(), _lif()
        self.attn_lif = _lif(0.5)
        self.proj_lif = _lif()

    def _heads_cn(self, z, T, B, C, N):  # (T, B, C, N) -> (T, B, h, N, d)
        return z.transpose(-1, -2).reshape(T, B, N, self.h, C // self.h).permute(0, 1, 3, 2, 4).contiguous()

    def forward(self, x):
        if self.kind == "cifar":  # x: T, B, N, C
            T, B, N, C = x.shape
            xq = x.flatten(0, 1)
            outs = []
            for lin, bn, lif in ((self.q, self.q_bn, self.q_lif), (self.k, self.k_bn, self.k_lif),
                                 (self.v, self.v_bn, self.v_lif)):
                z = bn(lin(xq).transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C).contiguous()
                z = lif(z)
                outs.append(z.reshape(T, B, N, self.h, C // self.h).permute(0, 1, 3, 2, 4).contiguous())
            q, k, v = outs
            attn = (q @ k.transpose(-2, -1)) * self.scale
            x = (attn @ v).transpose(2, 3).reshape(T, B, N, C).contiguous()
            x = self.attn_lif(x).flatten(0, 1)
            return self.proj_lif(self.proj_bn(self.proj(x).transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C))
        if self.kind == "imagenet":  # x: T, B, C, H, W
            T, B, C, H, W = x.shape
            x = x.flatten(3)
        T, B, C, N = x.shape
        xq = x.flatten(0, 1)
        q, k, v = (self._heads_cn(lif(bn(conv(xq)).reshape(T, B, C, N).contiguous()), T, B, C, N)
                   for conv, bn, lif in ((self.q, self.q_bn, self.q_lif), (self.k, self.k_bn, self.k_lif),
                                         (self.v, self.v_bn, self.v_lif)))
        if self.kind == "imagenet":
            x = k.transpose(-2, -1) @ v
            x = (q @ x) * self.scale
        else:
            x = (q @ k.transpose(-2, -1) @ v) * self.scale
        x = x.transpose(3, 4).reshape(T, B, C, N).contiguous()
        x = self.attn_lif(x).flatten(0, 1)
        if self.kind == "imagenet":
            return self.proj_lif(self.proj_bn(self.proj(x)).reshape(T, B, C, H, W))
        return self.proj_lif(self.proj_bn(self.proj(x)).reshape(T, B, C, N))


class RefMLP(nn.Module):
    def __init__(self, d, kind):
        super().__init__()
        self.kind, self.hid = kind, 4 * d
        if kind == "imagenet":
            self.fc1, self.fc2 = nn.Conv2d(d, 4 * d, 1, 1), nn.Conv2d(4 * d, d, 1, 1)
        elif kind == "cifar":
            self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        else:
            self.fc1, self.fc2 = nn.Conv1d(d, 4 * d, 1, 1), nn.Conv1d(4 * d, d, 1, 1)
        bn = nn.BatchNorm2d if kind == "imagenet" else nn.BatchNorm1d
        self.fc1_bn, self.fc2_bn = bn(4 * d), bn(d)
        self.fc1_lif, self.fc2_lif = _lif(), _lif()

    def forward(self, x):
        if self.kind == "cifar":
            T, B, N, C = x.shape
            x = self.fc1(x.flatten(0, 1))
            x = self.fc1_lif(self.fc1_bn(x.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, self.hid))
            x = self.fc2(x.flatten(0, 1))
            return self.fc2_lif(self.fc2_bn(x.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C))
        T, B, C = x.shape[:3]
        rest = x.shape[3:]
        x = self.fc1_lif(self.fc1_bn(self.fc1(x.flatten(0, 1))).reshape(T, B, self.hid, *rest).contiguous())
        return self.fc2_lif(self.fc2_bn(self.fc2(x.flatten(0, 1))).reshape(T, B, C, *rest).contiguous())


class RefSpikformer(nn.Module):
    def __init__(self, kind, c_in, d, heads, depth, pools, classes, T):
        super().__init__()
        self.kind, self.T = kind, T
        self.patch_embed = RefSPS(c_in, d, pools, kind)
        self.block = nn.ModuleList([nn.ModuleList([RefSSA(d, heads, kind), RefMLP(d, kind)]) for _ in range(depth)])
        self.head = nn.Linear(d, classes)
        self.apply(_linear_init)

    def forward(self, x):
        if self.kind == "dvs":
            x = x.permute(1, 0, 2, 3, 4)  # [T, B, 2, H, W]
        else:
            x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.patch_embed(x)
        for attn, mlp in self.block:
            x = x + attn(x)
            x = x + mlp(x)
        if self.kind == "imagenet":
            x = x.flatten(3).mean(3)
        elif self.kind == "cifar":
            x = x.mean(2)
        else:
            x = x.mean(3)
        return self.head(x.mean(0))


# ------------------------------------------------------------------------------------------------ weight copy
def _t(a):
    return jnp.asarray(a.detach().numpy())


def _copy_bn(bn_j, bn_t):
    bn_j.scale[...] = _t(bn_t.weight)
    bn_j.bias[...] = _t(bn_t.bias)
    bn_j.mean[...] = _t(bn_t.running_mean)
    bn_j.var[...] = _t(bn_t.running_var)


def _fc_kernel(w):  # Linear (O, I), Conv1d (O, I, 1), Conv2d (O, I, 1, 1) -> (I, O)
    return _t(w.reshape(w.shape[0], w.shape[1]).T)


def _copy_fc(lin, mod):
    lin.kernel[...] = _fc_kernel(mod.weight)
    if mod.bias is not None:
        lin.bias[...] = _t(mod.bias)
    else:
        assert lin.bias is None


def load_reference(model, net):
    """Copies ``net``'s parameters and running statistics into ``model`` (conv ``(O, I, kh, kw)`` -> ``(kh, kw, I,
    O)``, 1×1 maps -> ``(I, O)``)."""
    ps = net.patch_embed
    for i, st in enumerate(model.sps.stages):
        st.convbn.conv.kernel[...] = _t(ps.convs[i].weight.permute(2, 3, 1, 0))
        _copy_bn(st.convbn.bn, ps.bns[i])
    model.sps.rpe_convbn.conv.kernel[...] = _t(ps.rpe_conv.weight.permute(2, 3, 1, 0))
    _copy_bn(model.sps.rpe_convbn.bn, ps.rpe_bn)
    for blk, (attn, mlp) in zip(model.blocks, net.block):
        for name in ("q", "k", "v", "proj"):
            _copy_fc(getattr(blk.attn, name), getattr(attn, name))
            _copy_bn(getattr(blk.attn, f"{name}_bn"), getattr(attn, f"{name}_bn"))
        for name in ("fc1", "fc2"):
            _copy_fc(getattr(blk.mlp, name), getattr(mlp, name))
            _copy_bn(getattr(blk.mlp, f"{name}_bn"), getattr(mlp, f"{name}_bn"))
    _copy_fc(model.head, net.head)


def _torch_to_jax_layout(a, kind, shape):
    """A reference neuron's output ``(T, B, ...)`` in the model's layout ``shape`` ``(B, T, ...)``."""
    a = a.detach().numpy()
    if a.ndim == 5:  # T, B, C, H, W
        a = a.transpose(1, 0, 3, 4, 2)
    elif kind == "cifar":  # T, B, N, C
        a = a.transpose(1, 0, 2, 3)
    else:  # T, B, C, N
        a = a.transpose(1, 0, 3, 2)
    return a.reshape(shape)


def blank_model(cfg):
    """The model ``cfg`` describes with every variable zero, built without running its initialisers (each eager
    initialiser compiles once per shape; the parameters are overwritten by :func:`load_reference` anyway)."""
    abstract = nnx.eval_shape(lambda: build(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    state = jax.tree.map(lambda s: jnp.asarray(np.zeros(s.shape, s.dtype)), state)
    return nnx.merge(graphdef, state)


def _lookup(tree, path):
    for p in path.split("."):
        tree = tree[int(p) if p.isdigit() else p]
    return tree


CASES = {
    # file: (model config overrides, input shape of one sample, seed)
    "imagenet": (dict(variant="imagenet", input_shape=(64, 64, 3), T=4, embed_dim=32, heads=4, depth=1,
                      num_classes=7, conv_impl="xla"), (64, 64, 3), 1),
    "cifar": (dict(variant="cifar", input_shape=(16, 16, 3), T=3, embed_dim=32, heads=4, depth=2, num_classes=7,
                   conv_impl="xla"), (16, 16, 3), 2),
    "dvs": (dict(variant="dvs", input_shape=(128, 128, 2), T=3, embed_dim=32, heads=4, depth=1, num_classes=7,
                 conv_impl="xla"), (128, 128, 2), 3),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_float64_parity_with_official_files(kind, x64):
    overrides, sample, seed = CASES[kind]
    cfg = dict(name="spikformer", param_dtype="float64", **overrides)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    T, d = overrides["T"], overrides["embed_dim"]
    pools = {"imagenet": (1, 1, 1, 1), "cifar": (0, 0, 1, 1), "dvs": (1, 1, 1, 1)}[kind]
    net = RefSpikformer(kind, sample[2], d, overrides["heads"], overrides["depth"], pools, 7, T).double()
    with torch.no_grad():  # non-trivial BN affine parameters and running statistics
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.7, 1.6)
                m.bias.normal_(0.0, 0.3)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for attn, _ in net.block:  # q, k, v busy enough that s·QKᵀV crosses the attention threshold
            for bn in (attn.q_bn, attn.k_bn, attn.v_bn):
                bn.bias.normal_(0.8, 0.3)
    model = blank_model(cfg)
    load_reference(model, net)
    B = 2
    if kind == "dvs":
        x_np = rng.poisson(0.4, (B, T) + sample).astype(np.float64)  # event counts
        xt = torch.from_numpy(x_np.transpose(0, 1, 4, 2, 3).copy())
    else:
        x_np = rng.normal(0.0, 1.0, (B,) + sample)
        xt = torch.from_numpy(x_np.transpose(0, 3, 1, 2).copy())
    w = rng.normal(size=(B, 7))

    # ---- torch: training mode, spikes of every neuron in call order, gradients
    spikes_t = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: spikes_t.append(out))
             for m in net.modules() if isinstance(m, sj_neuron.LIFNode)]
    net.train()
    logits_t = net(xt)
    (logits_t * torch.from_numpy(w)).sum().backward()
    for h in hooks:
        h.remove()

    # ---- jax
    set_recording(model, "spikes")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @functools.partial(jax.jit, static_argnums=0)
    def fwd(graphdef, params, rest, x, w):
        m = nnx.merge(graphdef, params, rest, copy=True)
        logits, inter = nnx.capture(m, nnx.Intermediate)(x)
        return jnp.sum(logits * w), (logits, inter, nnx.state(m, nnx.BatchStat))

    grads, (logits, inter, stats) = jax.grad(fwd, argnums=1, has_aux=True)(graphdef, params, rest,
                                                                          jnp.asarray(x_np), jnp.asarray(w))
    layers = model.spiking_layers()
    assert len(layers) == len(spikes_t) == 5 + 7 * overrides["depth"]
    for (path, _), st in zip(layers, spikes_t):
        got = np.asarray(_lookup(inter, path)["spikes"][0])
        want = _torch_to_jax_layout(st, kind, got.shape)
        assert set(np.unique(got)) <= {0.0, 1.0}
        np.testing.assert_array_equal(got, want, err_msg=f"{kind}: spikes of {path}")
        assert 0.0 < got.mean() < 1.0, f"{kind}: {path} does not fire in a useful range (rate {got.mean()})"
    assert np.abs(np.asarray(logits)).max() > 1e-3
    np.testing.assert_allclose(np.asarray(logits), logits_t.detach().numpy(), rtol=0, atol=1e-9)
    errors = {"logits": float(np.abs(np.asarray(logits) - logits_t.detach().numpy()).max())}

    # ---- gradients (surrogate through SPS, SSA, MLP and head)
    ps, blk = net.patch_embed, net.block[0]
    pairs = [
        (("sps", "stages", 0, "convbn", "conv", "kernel"), ps.convs[0].weight.grad.permute(2, 3, 1, 0)),
        (("sps", "rpe_convbn", "bn", "scale"), ps.rpe_bn.weight.grad),
        (("blocks", 0, "attn", "q", "kernel"), blk[0].q.weight.grad.reshape(d, d).T),
        (("blocks", 0, "attn", "proj_bn", "bias"), blk[0].proj_bn.bias.grad),
        (("blocks", 0, "mlp", "fc1", "kernel"), blk[1].fc1.weight.grad.reshape(4 * d, d).T),
        (("head", "kernel"), net.head.weight.grad.T),
    ]
    for path, want in pairs:
        got = np.asarray(_lookup(grads, ".".join(map(str, path)))[...])
        want = want.numpy()
        assert np.abs(want).max() > 0, path
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=f"{kind}: gradient {path}")
        errors["grad " + ".".join(map(str, path))] = float(np.abs(got - want).max())
    print(f"\n{kind}: max |jax - torch|: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))

    # ---- running statistics after the pass (momentum 0.1, unbiased variance over T·B(·H·W | ·N))
    nnx.update(model, stats)
    np.testing.assert_allclose(np.asarray(model.blocks[0].attn.q_bn.var[...]),
                               blk[0].q_bn.running_var.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(model.sps.stages[1].convbn.bn.mean[...]),
                               ps.bns[1].running_mean.detach().numpy(), rtol=0, atol=1e-12)
