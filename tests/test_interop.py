"""Official MA-SNN weights <-> masnn-jax (``masnn_jax.interop``).

The reference is a PyTorch network written here from the official code's description (``MA_SNN/module/LIF_Module.py``,
``LIF.py``, ``Attention.py``, ``DVSGestures/CNN/Networks/Att_SNN.py``): conv 3x3 (bias) -> BatchNorm2d over B·T ->
AvgPool -> attention -> neuron loop; Linear -> BatchNorm1d -> TA -> neuron loop; output = mean over T. Conv-layer
attention is SpikingJelly's ``MultiDimensionalAttention`` (same computation and the same submodule names
``ta/ca.sharedMLP.{0,2}``, ``sa.conv`` as the official units); the FC layers' TA and the neuron are written here.
Module names equal the official ones, so ``state_dict()`` has the official keys (``convAttLIF0.conv2d.weight``,
``convAttLIF0.BNLayer.running_mean``, ``convAttLIF0.attention.ta.sharedMLP.0.weight``, ``FC0.linear.weight``, ...).
"""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from masnn_jax import interop, models  # noqa: E402
from masnn_jax.models import masnn_event  # noqa: E402
from masnn_jax.config import base_config  # noqa: E402

nn = torch.nn
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMES = ("no", "TA", "CA", "SA", "TCA", "TSA", "CSA", "TCSA")
V_TH, ALPHA, BETA, A = 0.3, 0.3, 0.0, 0.5


@pytest.fixture(scope="module")
def sj_mda():
    mod = pytest.importorskip("spikingjelly.activation_based.layer.attention")
    return mod.MultiDimensionalAttention


# --- the PyTorch reference ---------------------------------------------------------------------------------------


class _Spike(torch.autograd.Function):
    """Heaviside at 0 (fires at >=) with the rectangle surrogate 1/a on |x| < a/2 (official ``ActFun``, lens=a/2)."""

    @staticmethod
    def forward(ctx, x, width):
        ctx.save_for_backward(x)
        ctx.width = width
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() < ctx.width / 2).to(grad.dtype) / ctx.width, None


def _neuron_loop(x):
    """Official ``ConvIFCell``/``IFCell`` over time; x (B, T, ...)."""
    h = torch.zeros_like(x[:, 0])
    out = []
    for t in range(x.shape[1]):
        u = h + x[:, t]
        s = _Spike.apply(u - V_TH, A)
        h = (s * V_TH + (1 - s) * u) * ALPHA + BETA
        out.append(s)
    return torch.stack(out, 1)


class _FcTimeAttention(nn.Module):
    """TA of an FC layer: avg and max over the features, shared 1x1 Conv1d MLP T -> T//r -> T (no bias), sigmoid."""

    def __init__(self, T, ratio):
        super().__init__()
        self.sharedMLP = nn.Sequential(
            nn.Conv1d(T, T // ratio, 1, bias=False), nn.ReLU(), nn.Conv1d(T // ratio, T, 1, bias=False)
        )

    def forward(self, x):  # (B, T, N) -> (B, T, 1)
        return torch.sigmoid(self.sharedMLP(x.mean(2, keepdim=True)) + self.sharedMLP(x.amax(2, keepdim=True)))


class _FcTA(nn.Module):
    def __init__(self, T, ratio):
        super().__init__()
        self.ta = _FcTimeAttention(T, ratio)

    def forward(self, x):
        return torch.relu(self.ta(x) * x)


class _RefConv(nn.Module):
    def __init__(self, mda, c_in, c_out, pool, T, scheme, c_ratio, t_ratio):
        super().__init__()
        self.conv2d = nn.Conv2d(c_in, c_out, 3, padding=1, bias=True)
        self.BNLayer = nn.BatchNorm2d(c_out)
        self.pool = pool
        letters = "" if scheme == "no" else scheme[:-1]
        if letters:
            self.attention = mda(T, c_out, reduction_t=t_ratio, reduction_c=c_ratio, kernel_size=3,
                                 use_temporal="T" in letters, use_channel="C" in letters, use_spatial="S" in letters)

    def forward(self, x):  # (B, T, C, H, W)
        b, t = x.shape[:2]
        y = self.BNLayer(self.conv2d(x.flatten(0, 1)))
        if self.pool > 1:
            y = nn.functional.avg_pool2d(y, self.pool)
        y = y.reshape(b, t, *y.shape[1:])
        if hasattr(self, "attention"):
            y = self.attention(y.transpose(0, 1)).transpose(0, 1)  # SpikingJelly wants [T, N, C, H, W]
        return _neuron_loop(y)


class _RefFC(nn.Module):
    def __init__(self, n_in, n_out, T, scheme, t_ratio):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.BNLayer = nn.BatchNorm1d(n_out)
        if "T" in scheme:
            self.attention = _FcTA(T, t_ratio)

    def forward(self, x):  # (B, T, N)
        b, t = x.shape[:2]
        y = self.BNLayer(self.linear(x.reshape(b * t, -1))).reshape(b, t, -1)
        if hasattr(self, "attention"):
            y = self.attention(y)
        return _neuron_loop(y)


class _RefNet(nn.Module):
    def __init__(self, mda, plan, T, scheme, c_ratio, t_ratio):
        super().__init__()
        h, w, c = plan["input_shape"]
        self.n_conv = len(plan["channels"])
        for i, (c_out, pool) in enumerate(zip(plan["channels"], plan["pools"])):
            setattr(self, f"convAttLIF{i}", _RefConv(mda, c, c_out, pool, T, scheme, c_ratio, t_ratio))
            c, h, w = c_out, h // pool, w // pool
        sizes = [c * h * w, *plan["fc"], plan["num_classes"]]
        self.n_fc = len(sizes) - 1
        for j in range(self.n_fc):
            setattr(self, f"FC{j}", _RefFC(sizes[j], sizes[j + 1], T, scheme, t_ratio))

    def forward(self, x):  # (B, T, C, H, W) -> (B, classes), per-layer spikes
        spikes = []
        for i in range(self.n_conv):
            x = getattr(self, f"convAttLIF{i}")(x)
            spikes.append(x)
        x = x.reshape(*x.shape[:2], -1)
        for j in range(self.n_fc):
            x = getattr(self, f"FC{j}")(x)
            spikes.append(x)
        return x.mean(1), spikes


SMALL = dict(input_shape=(16, 16, 2), channels=(8, 16), pools=(1, 2), fc=(32,), num_classes=5)


def _config(scheme, T, *, plan=None, arch=None, dtype="float32", c_ratio=4, t_ratio=2):
    config = base_config(arch=arch, T=T, attention=scheme, c_ratio=c_ratio, t_ratio=t_ratio, a=A)
    if plan is not None:
        for k, v in plan.items():
            config.model[k] = v
    config.model.param_dtype = dtype
    return config


def _plan(config):
    m = config.model
    plan = dict(masnn_event.ARCHITECTURES[m.arch]) if m.arch else {}
    plan.update({k: m[k] for k in ("input_shape", "channels", "pools", "fc", "num_classes") if k in m})
    return plan


def _reference(mda, config, seed, dtype):
    """The reference net with random weights; BatchNorm gets random affine parameters and running statistics drawn
    around the statistics of a calibration batch (so that eval mode fires neither never nor always)."""
    torch.manual_seed(seed)
    m = config.model
    net = _RefNet(mda, _plan(config), m.T, m.attention, m.c_ratio, m.t_ratio).to(dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    bns = [mod for mod in net.modules() if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d))]
    h, w, c = _plan(config)["input_shape"]
    calib = torch.poisson(torch.full((4, m.T, c, h, w), 0.4, dtype=dtype), generator=gen)
    with torch.no_grad():
        for bn in bns:
            n = bn.num_features
            bn.weight.copy_(1.0 + 2.0 * torch.rand(n, generator=gen))
            bn.bias.copy_(0.1 + 0.3 * torch.randn(n, generator=gen))
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration pass
        net.train()(calib)
        for bn in bns:
            n = bn.num_features
            bn.momentum = 0.1
            bn.running_mean.add_(0.2 * torch.randn(n, generator=gen, dtype=dtype) * bn.running_var.sqrt())
            bn.running_var.mul_(0.7 + 0.6 * torch.rand(n, generator=gen, dtype=dtype))
            bn.num_batches_tracked.fill_(17)
    return net


def _frames(rng, batch, config, lam=0.4):
    h, w, c = _plan(config)["input_shape"]
    return rng.poisson(lam, size=(batch, config.model.T, c, h, w)).astype(np.float64)  # official layout


def _jax_forward(model, x):
    spikes = []
    for layer in model.convs:
        x = layer(x)
        spikes.append(x)
    x = x.reshape(*x.shape[:2], -1)
    for layer in model.fcs:
        x = layer(x)
        spikes.append(x)
    return x.mean(1), spikes


def _to_channels_last(s):
    return np.transpose(s, (0, 1, 3, 4, 2)) if s.ndim == 5 else s


def _compare(mda, config, frames, mode, seed, dtype, nets=None, jit=False):
    """Runs both nets in ``mode``; returns (max |Δout|, mean |Δout|, spike mismatches per layer, firing rates).

    ``nets``: a dict to receive the two networks (``torch``, ``jax``) and the converted weights before the run
    (``before``), for checks of the BatchNorm statistics a train-mode run updates. ``jit``: compile the forward
    (pays off for the real-size net; the small ones run faster eagerly, reusing the op cache across schemes)."""
    tdt = torch.float64 if dtype == "float64" else torch.float32
    net = _reference(mda, config, seed, tdt)
    # frames="official": both nets see the same spatial order (see test_masnn_frames_are_the_transposed_official_ones)
    model = interop.from_official_torch(net.state_dict(), config, frames="official")
    if nets is not None:
        nets.update(torch=net, jax=model, before=interop.to_official_torch(model, frames="official"))
    getattr(net, mode)()
    getattr(model, mode)()
    with torch.no_grad():
        out_t, spikes_t = net(torch.from_numpy(frames).to(tdt))
    x = jnp.asarray(np.transpose(frames, (0, 1, 3, 4, 2)), dtype=dtype)
    out_j, spikes_j = (nnx.jit(_jax_forward) if jit else _jax_forward)(model, x)
    out_t = out_t.numpy()
    diff = np.abs(np.asarray(out_j, np.float64) - out_t.astype(np.float64))
    mismatches = [int(np.sum(np.asarray(sj) != _to_channels_last(st.numpy()))) for sj, st in zip(spikes_j, spikes_t)]
    rates = [float(st.mean()) for st in spikes_t]
    return float(diff.max()), float(diff.mean()), mismatches, rates


# --- forward parity ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_float64_parity_every_layer(sj_mda, rng, x64, scheme):
    config = _config(scheme, 6, plan=SMALL, dtype="float64")
    frames = _frames(rng, 4, config)
    for mode in ("eval", "train"):
        nets = {}
        max_diff, _, mismatches, rates = _compare(sj_mda, config, frames, mode, 3, "float64", nets)
        assert all(0.005 < r < 0.95 for r in rates), (mode, rates)  # the comparison is not vacuous
        assert mismatches == [0] * len(mismatches), (mode, mismatches)
        assert max_diff <= 1e-9, (mode, max_diff)
    _check_running_statistics(nets, batch=4, T=6)


def _check_running_statistics(nets, batch, T):
    """After one train-mode step the running statistics moved exactly like PyTorch's (momentum 0.1 = Flax 0.9,
    unbiased batch variance in the running-variance update)."""
    new = interop.to_official_torch(nets["jax"], frames="official")
    sd = nets["torch"].state_dict()
    for layer in ("convAttLIF0", "convAttLIF1", "FC0", "FC1"):
        key = f"{layer}.BNLayer."
        assert not np.allclose(new[key + "running_mean"], nets["before"][key + "running_mean"])  # they did move
        np.testing.assert_allclose(new[key + "running_mean"], sd[key + "running_mean"].numpy(), rtol=1e-10)
        np.testing.assert_allclose(new[key + "running_var"], sd[key + "running_var"].numpy(), rtol=1e-10)


@pytest.mark.parametrize("scheme", ("no", "TA", "CSA", "TCSA"))
def test_float32_parity(sj_mda, rng, scheme):
    config = _config(scheme, 6, plan=SMALL, dtype="float32")
    frames = _frames(rng, 4, config)
    for mode in ("eval", "train"):
        _, mean_diff, _, rates = _compare(sj_mda, config, frames, mode, 5, "float32")
        assert mean_diff < 1e-3, (mode, mean_diff)
        assert all(0.005 < r < 0.95 for r in rates), (mode, rates)  # every layer fires: the comparison can fail


def test_float64_parity_real_gesture_arch(sj_mda, rng, x64):
    config = _config("TCSA", 6, arch="dvs_gesture", dtype="float64", c_ratio=8, t_ratio=5)
    frames = _frames(rng, 2, config, lam=0.3)
    for mode in ("eval", "train"):
        max_diff, _, mismatches, rates = _compare(sj_mda, config, frames, mode, 11, "float64", jit=True)
        assert all(0.001 < r < 0.99 for r in rates), (mode, rates)
        assert mismatches == [0] * 5, (mode, mismatches)
        assert max_diff <= 1e-9, (mode, max_diff)


def test_float64_gradients_match(sj_mda, rng, x64):
    """Input and parameter gradients (train mode, BatchNorm batch statistics, surrogate gradients).

    One conv layer fed with continuous inputs, so that the attention's max-pools see no ties: with spike inputs ties
    are common in deeper conv layers (identical spike patches give identical values) and torch routes a tie's gradient
    to one element where ``jnp.max`` splits it (REFERENCE §6); the forward pass is tie-agnostic and checked above.
    """
    plan = dict(input_shape=(8, 8, 2), channels=(8,), pools=(2,), fc=(16,), num_classes=4)
    config = _config("TCSA", 6, plan=plan, dtype="float64")
    frames = rng.uniform(0.0, 2.0, size=(3, 6, 2, 8, 8))
    weights = rng.normal(size=(3, 4))
    net = _reference(sj_mda, config, 7, torch.float64).train()
    model = interop.from_official_torch(net.state_dict(), config, frames="official")
    model.train()
    xt = torch.from_numpy(frames).requires_grad_(True)
    out_t, _ = net(xt)
    (out_t * torch.from_numpy(weights)).sum().backward()

    def loss(model, x):
        return jnp.sum(model(x) * weights)

    x = jnp.asarray(np.transpose(frames, (0, 1, 3, 4, 2)))
    grads, gx = nnx.jit(nnx.grad(loss, argnums=(0, 1)))(model, x)  # jit: eager grad compiles op by op (slow)
    gmodel = nnx.clone(model)
    nnx.update(gmodel, grads)
    g_official = interop.to_official_torch(gmodel, frames="official")
    gx_t = np.transpose(xt.grad.numpy(), (0, 1, 3, 4, 2))
    assert np.abs(gx_t).max() > 1e-3
    np.testing.assert_allclose(np.asarray(gx), gx_t, rtol=1e-9, atol=1e-12)
    names = dict(net.named_parameters())
    assert set(names) <= set(g_official)
    for name, p in names.items():
        np.testing.assert_allclose(g_official[name], p.grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=name)


# --- names, round trip, errors -----------------------------------------------------------------------------------


def test_reference_names_are_the_official_names(sj_mda):
    config = _config("TCSA", 6, plan=SMALL)
    net = _reference(sj_mda, config, 0, torch.float32)
    sd = net.state_dict()
    for name in ("convAttLIF0.conv2d.weight", "convAttLIF0.conv2d.bias", "convAttLIF0.BNLayer.running_mean",
                 "convAttLIF0.BNLayer.num_batches_tracked", "convAttLIF0.attention.ta.sharedMLP.0.weight",
                 "convAttLIF1.attention.ca.sharedMLP.2.weight", "convAttLIF1.attention.sa.conv.weight",
                 "FC0.linear.weight", "FC0.BNLayer.running_var", "FC1.attention.ta.sharedMLP.2.weight"):
        assert name in sd, name
    shapes = interop.official_state_dict_shapes(config)
    assert {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")} == dict(shapes)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_round_trip_is_identity(sj_mda, scheme):
    config = _config(scheme, 6, plan=SMALL)
    net = _reference(sj_mda, config, 1, torch.float32)
    sd = net.state_dict()
    back = interop.to_official_torch(interop.from_official_torch(sd, config), config, as_torch=True)
    assert set(back) == set(sd)
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            assert int(back[k]) == 0  # masnn-jax does not count batches
        else:
            assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    net.load_state_dict(back, strict=True)


def _numpy_sd(config, seed=0, dtype=np.float32):
    """A random official-layout state dict (positive running variances)."""
    rng = np.random.default_rng(seed)
    sd = {}
    for k, s in interop.official_state_dict_shapes(config).items():
        v = rng.normal(size=s)
        sd[k] = (np.abs(v) + 0.5 if k.endswith("running_var") else v).astype(dtype)
    return sd


def test_mismatch_errors_name_keys_and_shapes():
    config = _config("TCSA", 6, plan=SMALL)
    sd = _numpy_sd(config)
    sd.pop("FC0.linear.bias")
    sd["convAttLIF1.conv2d.weight"] = np.zeros((16, 4, 3, 3), np.float32)
    sd["convAttLIF2.conv2d.weight"] = np.zeros((3, 16, 3, 3), np.float32)
    sd["convAttLIF0.BNLayer.num_batches_tracked"] = np.array(5)  # accepted and ignored
    with pytest.raises(interop.StateDictMismatchError) as info:
        interop.from_official_torch(sd, config)
    err = info.value
    assert isinstance(err, ValueError)
    msg = str(err)
    assert "missing key FC0.linear.bias (expected shape (32,))" in msg
    assert "unexpected key convAttLIF2.conv2d.weight (shape (3, 16, 3, 3))" in msg
    assert ("mis-shaped key convAttLIF1.conv2d.weight: shape (16, 4, 3, 3) in the state dict, "
            "expected (16, 8, 3, 3)") in msg
    assert "num_batches_tracked" not in msg
    assert err.missing == {"FC0.linear.bias": (32,)}
    assert err.mismatched == {"convAttLIF1.conv2d.weight": ((16, 4, 3, 3), (16, 8, 3, 3))}
    assert list(err.unexpected) == ["convAttLIF2.conv2d.weight"]


def test_wrong_scheme_or_T_is_reported():
    sd = _numpy_sd(_config("TCSA", 6, plan=SMALL))
    with pytest.raises(ValueError, match=r"(?s)unexpected key convAttLIF0\.attention\.ta\.sharedMLP\.0\.weight.*"
                                         r"attention='TCSA', T=6"):
        interop.from_official_torch(sd, _config("no", 6, plan=SMALL))
    with pytest.raises(ValueError, match=r"mis-shaped key convAttLIF0\.attention\.ta\.sharedMLP\.0\.weight: shape "
                                         r"\(3, 6, 1, 1, 1\) in the state dict, expected \(4, 8, 1, 1, 1\)"):
        interop.from_official_torch(sd, _config("TCSA", 8, plan=SMALL))


def test_unsupported_models_are_refused():
    config = _config("TCSA", 6, plan=SMALL)
    config.model.channel_attention = "eca"
    with pytest.raises(ValueError, match="channel_attention='eca'"):
        interop.official_state_dict_shapes(config)


@pytest.mark.parametrize("wrapped", [True, False])
@pytest.mark.parametrize("prefix", ["module.", ""])
def test_loads_torch_files(tmp_path, wrapped, prefix):
    config = _config("TCA", 6, plan=SMALL)
    sd = {prefix + k: torch.from_numpy(v) for k, v in _numpy_sd(config, 2).items()}
    sd[prefix + "FC1.BNLayer.num_batches_tracked"] = torch.tensor(3)
    obj = {"net": sd, "acc": 91.5, "epoch": 12, "acc_record": [80.0, 91.5]} if wrapped else sd
    path = tmp_path / "official.t7"
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    model = interop.from_official_torch(str(path), config.model)  # config.model works as well as the full config
    back = interop.to_official_torch(model, num_batches_tracked=False)
    for k, v in sd.items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(back[k[len(prefix):]], v.numpy())


def test_first_fc_rows_follow_the_flatten_order():
    """Official flatten is (C, H, W), masnn-jax's (H, W, C): the same feature map must give the same FC0 input."""
    config = _config("no", 6, plan=SMALL)
    sd = _numpy_sd(config, 4)
    fmap = np.random.default_rng(0).normal(size=(16, 8, 8))  # (C, H, W) of the last conv layer
    official = sd["FC0.linear.weight"].astype(np.float64) @ fmap.reshape(-1)
    model = interop.from_official_torch(sd, config, frames="official")
    ours = fmap.transpose(1, 2, 0).reshape(-1) @ np.asarray(model.fcs[0].linear.kernel[...], np.float64)
    np.testing.assert_allclose(ours, official, rtol=1e-6, atol=1e-8)
    # frames="masnn": the official (C, H=x, W=y) map is masnn-jax's (y, x, C) map
    model = interop.from_official_torch(sd, config)
    ours = fmap.transpose(2, 1, 0).reshape(-1) @ np.asarray(model.fcs[0].linear.kernel[...], np.float64)
    np.testing.assert_allclose(ours, official, rtol=1e-6, atol=1e-8)


# --- official config -> masnn-jax config -------------------------------------------------------------------------


class _OfficialGesture:
    """The fields of the official ``configs`` class for DVS128 Gesture (values of MA_SNN/DVSGestures/CNN/Config.py)."""

    def __init__(self):
        self.dt, self.T, self.attention, self.c_ratio, self.t_ratio = 25, 60, "TCSA", 8, 5
        self.num_epochs, self.batch_size, self.batch_size_test = 300, 128, 128
        self.ds, self.in_channels = 4, 2
        self.im_width, self.im_height = 128 // self.ds, 128 // self.ds
        self.target_size, self.clip = 11, 10
        self.beta, self.alpha, self.Vreset, self.Vthres = 0, 0.3, 0, 0.3
        self.mem_act, self.mode_select, self.TR_model = torch.relu, "spike", "NTR"
        self.track_running_stats = True
        self.a = 0.5
        self.lens = self.a / 2
        self.lr, self.betas, self.eps, self.weight_decay, self.lr_scheduler = 1e-4, [0.9, 0.999], 1e-8, 0, True


def test_official_config_gesture():
    off = _OfficialGesture()
    off.T, off.attention, off.dt = 20, "CSA", 15
    config = interop.official_config_to_masnn(off)
    m = config.model
    assert m.arch == "dvs_gesture" and m.attention == "CSA" and m.T == 20 and config.data.T == 20
    assert (m.c_ratio, m.t_ratio) == (8, 5)
    assert (m.neuron.v_th, m.neuron.alpha, m.neuron.beta) == (0.3, 0.3, 0.0)
    assert m.surrogate.name == "rectangle" and m.surrogate.width == 0.5
    assert (config.data.dt_ms, config.data.ds, config.data.n_test_windows) == (15, 4, 10)
    assert (config.train.learning_rate, config.train.batch_size, config.train.num_epochs) == (1e-4, 128, 300)
    assert config.train.schedule == "plateau"
    assert "input_shape" not in m or tuple(m.input_shape) == (32, 32, 2)
    shapes = interop.official_state_dict_shapes(config)
    assert shapes["FC0.linear.weight"] == (256, 8192)


def test_official_config_dicts_gait_cifar_and_errors():
    gait = dict(T=8, attention="TCSA", t_ratio=2, c_ratio=8, ds=1, target_size=21, a=0.5, lr=1e-3, num_epochs=100,
                dt=500, mode_select="mem", TR_model="TR", mem_act=torch.relu)
    config = interop.official_config_to_masnn(gait)
    assert config.model.arch == "dvs_gait" and config.model.t_ratio == 2 and config.train.learning_rate == 1e-3
    assert config.model.neuron.mode_select == "mem" and config.model.neuron.tr_model == "TR"
    cifar = dict(T=20, im_height=128, im_width=128, target_size=10, a=1, lens=0.5)
    assert interop.official_config_to_masnn(cifar).model.surrogate.width == 1.0
    # lens is what the official surrogate reads: it wins over a stale 'a'
    assert interop.official_config_to_masnn(dict(cifar, a=0.5, lens=0.5)).model.surrogate.width == 1.0
    with pytest.raises(ValueError, match="target_size=12"):
        interop.official_config_to_masnn(dict(target_size=12, im_height=32, im_width=32))
    with pytest.raises(ValueError, match="target_size"):
        interop.official_config_to_masnn(dict(T=8))
    with pytest.raises(ValueError, match="track_running_stats"):
        interop.official_config_to_masnn(dict(gait, track_running_stats=False))
    # an explicit base: keeps its layer plan, takes the official fields
    base = _config("TA", 6, plan=SMALL)
    out = interop.official_config_to_masnn(dict(T=10, attention="TCSA", t_ratio=5, lr_scheduler=False), base=base)
    assert out.model.T == 10 and out.model.attention == "TCSA" and out.train.schedule == "constant"
    assert base.model.T == 6 and tuple(out.model.channels) == (8, 16)


# --- command-line converter --------------------------------------------------------------------------------------


def _run(args, **kw):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, **kw)


TINY_CONFIG = """
from masnn_jax.config import base_config


def get_config():
    config = base_config(arch=None, T=6, attention="no", c_ratio=4, t_ratio=2)
    m = config.model
    m.input_shape = (16, 16, 2)
    m.channels = (8, 16)
    m.pools = (1, 2)
    m.fc = (32,)
    m.num_classes = 5
    return config
"""


def _load_config_file(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"cfg_{abs(hash(str(path)))}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


def test_command_line_converter_end_to_end(tmp_path):
    from masnn_jax import train as training

    cfg_file = tmp_path / "tiny.py"
    cfg_file.write_text(TINY_CONFIG)
    flags = [f"--config={cfg_file}", "--config.model.attention=TCSA"]
    config = _load_config_file(cfg_file)
    config.model.attention = "TCSA"
    sd = {"module." + k: torch.from_numpy(v) for k, v in _numpy_sd(config, 9).items()}
    sd["module.FC0.BNLayer.num_batches_tracked"] = torch.tensor(1234)
    pth = tmp_path / "TCSA_SNN.t7"
    torch.save({"net": sd, "acc": 93.75, "epoch": 42, "acc_record": [93.75]}, pth, _use_new_zipfile_serialization=False)
    out = tmp_path / "run"
    proc = _run(["-m", "masnn_jax.interop", str(pth), *flags, f"--out={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["official"] == {"acc": 93.75, "epoch": 42} and summary["round_trip_exact"] is True
    assert summary["tensors"] == len(sd) - 1 and os.path.isdir(summary["checkpoint"])

    # restore the checkpoint the way train.py --mode=eval does and compare with the in-process conversion
    expected = interop.from_official_torch(str(pth), config)
    restored, _ = training.load_model(config, str(out))
    for kind in (nnx.Param, nnx.BatchStat):
        got_leaves = jax.tree_util.tree_leaves(nnx.state(restored, kind))
        want_leaves = jax.tree_util.tree_leaves(nnx.state(expected, kind))
        assert len(got_leaves) == len(want_leaves) > 0
        for g, w in zip(got_leaves, want_leaves):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w))

    # float64 weights with more digits than float32 holds are not a lossless round trip, and the summary says so
    pth64 = tmp_path / "TCSA_SNN_f64.t7"
    torch.save({"net": {k: v.double() + 1e-12 if v.is_floating_point() else v for k, v in sd.items()}}, pth64)
    proc = _run(["-m", "masnn_jax.interop", str(pth64), *flags, f"--out={tmp_path / 'run64'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["round_trip_exact"] is False

    # never overwrites (the converter refuses before loading anything; save_model_checkpoint raises as well)
    again = _run(["-m", "masnn_jax.interop", str(pth), *flags, f"--out={out}"])
    assert again.returncode != 0 and "already holds checkpoints" in again.stderr
    with pytest.raises(FileExistsError):
        training.save_model_checkpoint(expected, config, str(out))


def test_converted_checkpoint_evaluates_with_train_py(tmp_path):
    """``train.py --mode=eval`` on a converted checkpoint (needs a config whose data ships with the install)."""
    cfg_file = os.path.join(REPO, "configs", "digits_dvs.py")
    if not os.path.isfile(cfg_file):
        pytest.skip("configs/digits_dvs.py does not exist (no offline dataset config to evaluate on)")
    config = _load_config_file(cfg_file)
    # the converter itself is exercised above; here the conversion runs in-process to save a subprocess
    from masnn_jax import train as training

    out = tmp_path / "run"
    training.save_model_checkpoint(interop.from_official_torch(_numpy_sd(config, 3), config), config, str(out))
    proc = _run(["train.py", f"--config={cfg_file}", f"--workdir={out}", "--mode=eval", "--noprogress"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["step"] == 0 and 0.0 <= float(result["accuracy"]) <= 1.0


def test_masnn_frames_are_the_transposed_official_ones():
    """frames='masnn' (default): the model fed masnn-jax frames (H = y) computes what the official network computes
    on its own frames (H = x, ``events_timeslices.py``): same outputs when the input's spatial axes are swapped."""
    plan = dict(input_shape=(8, 8, 2), channels=(4, 8), pools=(1, 2), fc=(16,), num_classes=4)
    config = _config("TCSA", 6, plan=plan, dtype="float64")
    with jax.enable_x64(True):
        sd = _numpy_sd(config, 5)
        official = interop.from_official_torch(sd, config, frames="official")
        masnn = interop.from_official_torch(sd, config)
        official.eval()
        masnn.eval()
        x = np.random.default_rng(3).poisson(1.0, size=(2, 6, 8, 8, 2)).astype(np.float64)  # (B, T, x, y, C): official spatial order
        y_official = np.asarray(official(jnp.asarray(x)))
        y_masnn = np.asarray(masnn(jnp.asarray(np.swapaxes(x, 2, 3))))  # (B, T, y, x, C)
        assert 0 < y_official.mean() < 1
        np.testing.assert_allclose(y_masnn, y_official, rtol=0, atol=1e-12)
        # and the way back restores the official orientation
        back = interop.to_official_torch(masnn)
        for name, value in sd.items():
            if name in back:
                np.testing.assert_array_equal(back[name], np.asarray(value, back[name].dtype), err_msg=name)


# --- error messages of the file loader and the command line -----------------------------------------------------


def test_garbage_file_is_reported_with_path_reason_and_option(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError) as err:
        interop.load_official_state_dict(str(path))
    msg = str(err.value)
    assert msg.startswith(f"cannot read {path} as a PyTorch checkpoint (torch.load failed: ")
    assert msg.endswith("if you trust the file and it holds non-tensor objects, pass weights_only=False")
    assert "file an issue" not in msg and "\n" not in msg and len(msg) < 400
    with pytest.raises(ValueError, match=r"cannot read .*garbage\.pth as a PyTorch checkpoint"):
        interop.load_official_state_dict(str(path), weights_only=False)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pth .*the file is empty \(0 bytes\)"):
        interop.from_official_torch(str(empty), _config("TCA", 6, plan=SMALL))


def test_reading_a_file_without_torch_says_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "official.pth"
    torch.save(_numpy_sd(_config("TCA", 6, plan=SMALL)), path)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError) as err:
        interop.load_official_state_dict(str(path))
    assert "reading a .pth file" in str(err.value) and str(path) in str(err.value)
    assert "needs PyTorch" in str(err.value)
    assert "pip install -c constraints.txt -e '.[parity]' (or any torch)" in str(err.value)
    model = interop.from_official_torch(_numpy_sd(_config("TCA", 6, plan=SMALL)), _config("TCA", 6, plan=SMALL))
    with pytest.raises(ImportError, match=r"as_torch=True\) needs PyTorch: pip install"):
        interop.to_official_torch(model, as_torch=True)


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_save_of_the_default_numpy_output_loads_with_weights_only(tmp_path, legacy):
    config = _config("TCSA", 6, plan=SMALL)
    model = interop.from_official_torch(_numpy_sd(config, 4), config)
    sd = interop.to_official_torch(model)  # NumPy arrays (the default)
    path = tmp_path / "numpy.pth"
    torch.save({"net": sd, "acc": np.float64(88.5), "epoch": np.int64(3)}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(pickle.UnpicklingError):  # a plain weights_only load refuses the NumPy globals ...
        torch.load(path, weights_only=True)
    loaded = interop.load_official_state_dict(str(path))  # ... this loader allows them (numeric dtypes only)
    assert list(loaded) == list(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(loaded[k], v)
    back = interop.to_official_torch(interop.from_official_torch(str(path), config))
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v)
    # a file written the recommended way loads with a plain torch.load(weights_only=True)
    torch.save({"net": interop.to_official_torch(model, as_torch=True)}, tmp_path / "torch.pth")
    assert set(torch.load(tmp_path / "torch.pth", weights_only=True)["net"]) == set(sd)
    # NumPy objects that are not numeric arrays are still refused, with the advice
    torch.save({"net": sd, "names": np.array(["a", 1], dtype=object)}, tmp_path / "object.pth")
    with pytest.raises(ValueError) as err:
        interop.load_official_state_dict(str(tmp_path / "object.pth"))
    msg = str(err.value)
    assert "object.pth" in msg and "to_official_torch(..., as_torch=True) before torch.save" in msg
    assert "pass weights_only=False" in msg
    assert "names" in interop.official.read_torch_file(str(tmp_path / "object.pth"), weights_only=False)


def test_command_line_errors_are_one_line(tmp_path):
    cfg_file = tmp_path / "tiny.py"
    cfg_file.write_text(TINY_CONFIG)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    good = tmp_path / "good.pth"
    torch.save(_numpy_sd(_load_config_file(cfg_file)), good)
    flags = [f"--config={cfg_file}", f"--out={tmp_path / 'run'}"]
    no_torch = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = ['interop', *sys.argv[1:]]; "
                "runpy.run_module('masnn_jax.interop', run_name='__main__')")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cases = {
        "garbage": ([str(garbage), *flags],
                    f"error: cannot read {garbage} as a PyTorch checkpoint (torch.load failed: ",
                    "if you trust the file and it holds non-tensor objects, pass --noweights_only"),
        "missing": ([str(tmp_path / "nope.pth"), *flags], f"error: official checkpoint {tmp_path / 'nope.pth'}",
                    "does not exist"),
        "no_torch": ([str(good), *flags], f"error: reading a .pth file ({good}) needs PyTorch",
                     "pip install -c constraints.txt -e '.[parity]' (or any torch)"),
    }
    procs = {}
    for name, (args, _, _) in cases.items():
        runner = ["-c", no_torch] if name == "no_torch" else ["-m", "masnn_jax.interop"]
        procs[name] = subprocess.Popen([sys.executable, *runner, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=300)
        _, start, end = cases[name]
        errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
        assert proc.returncode != 0 and len(errors) == 1, (name, stderr[-3000:])
        assert errors[0].startswith(start) and errors[0].endswith(end), (name, errors[0])
        assert "Usage::" not in stderr and "--helpfull" not in stderr and "Traceback" not in stderr, (name, stderr)


# --------------------------------------------------------------------------- dispatch through the model registry


def test_dispatch_through_the_registry(monkeypatch):
    """interop picks the converter module from models.get_family(config.model.name).interop (importlib); no
    per-family code: a fake family with a fake converter module is dispatched to, one without a converter is
    refused with one clear error."""
    import types

    from masnn_jax.models import registry

    config = _config("TCA", 6, plan=SMALL)
    assert interop.converter(config) is interop.official and interop.converter("masnn") is interop.official
    fake = types.ModuleType("fake_converter")
    fake.from_official_torch = lambda sd, config, **kw: ("from", sd, kw)
    fake.to_official_torch = lambda model, config=None, **kw: ("to", model, config, kw)
    monkeypatch.setitem(sys.modules, "fake_converter", fake)
    build = lambda cfg, rngs: None  # noqa: E731
    monkeypatch.setitem(registry._FAMILIES, "fake", registry.Family("fake", build, (), (), "fake_converter"))
    monkeypatch.setitem(registry._FAMILIES, "bare", registry.Family("bare", build, (), (), None))
    monkeypatch.setitem(registry._FAMILIES, "gone", registry.Family("gone", build, (), (), "masnn_jax.interop.nope"))
    fake_cfg = _config("TCA", 6, plan=SMALL)
    fake_cfg.model.name = "fake"
    assert interop.from_official_torch({"w": 1}, fake_cfg, seed=3) == ("from", {"w": 1}, {"seed": 3})
    assert interop.to_official_torch("m", {"name": "fake"}) == ("to", "m", {"name": "fake"}, {})
    fake.to_official_torch = lambda model, **kw: ("to", model, kw)  # a converter without a config option
    assert interop.to_official_torch("m", {"name": "fake"}, prefix="p.") == ("to", "m", {"prefix": "p."})
    with pytest.raises(ValueError, match=r"model family 'bare' has no official-checkpoint converter.*'masnn'"):
        interop.from_official_torch({}, {"name": "bare"})
    with pytest.raises(ValueError, match=r"converter module 'masnn_jax.interop.nope' of model family 'gone' does "
                                         r"not exist"):
        interop.to_official_torch(None, {"name": "gone"})
    # without a config, the family is the one whose module defines the model's class
    model = interop.from_official_torch(_numpy_sd(config, 1), config)
    assert list(interop.to_official_torch(model)) == list(interop.official.to_official_torch(model))
