"""Tests of the Att-Res-SNN / MS-Res-SNN family (``masnn_jax.models.resnet``) and its official-weight converter.

The parity reference is a PyTorch re-statement, written here, of ``Att_Res_SNN/models/resnet_2.py`` (mem_update,
tdBN, Snn_Conv2d, BasicBlock, ResNet_origin) and of ``Att_Res_SNN/module/LIF_Module.py`` (ChannelAttention,
SpatialAttention, CSA) with ``time_window`` as a parameter and the widths / blocks free. One deliberate difference:
the CA / SA max-pools share their gradient evenly among tied maxima (``EvenMax``), as ``jnp.max`` does, where torch
gives it to one element (REFERENCE §6); forward values are torch's. Ties are real here because the image is
repeated over T.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from masnn_jax import models
from masnn_jax.interop import resnet as interop
from masnn_jax.nn.layers import set_recording

TINY = dict(name="att_res_snn", blocks=(3, 2), widths=(8, 16), input_shape=(32, 32, 3),
            num_classes=10, T=1)


def tiny(**kw):
    return {**TINY, **kw}


def build(cfg, seed=0):
    """models.build with the 'rbg' PRNG: threefry initialisers cost seconds of compilation per shape here."""
    with jax.default_prng_impl("rbg"):
        return models.build(cfg, rngs=nnx.Rngs(seed))


def n_params(model) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("depth, csa, plain", [(18, 11_867_960, 11_693_736), (34, 22_116_552, 21_801_896),
                                               (104, 78_369_598, 77_284_264)])
def test_parameter_counts_match_official(depth, csa, plain):
    for attention, want in (("CSA", csa), ("no", plain)):
        model = nnx.eval_shape(lambda: models.build(dict(name="att_res_snn", depth=depth, attention=attention),
                                                    rngs=nnx.Rngs(0)))
        assert n_params(model) == want, (depth, attention)
        assert (model.input_kind, model.input_shape, model.T, model.num_classes) == ("image", (224, 224, 3), 1, 1000)


def test_parameter_count_variants():
    """Spec §3: paper's 7×7 SA adds 80 per block; MS-ResNet-104's 3-conv stem gives 77,350,504 without attention."""
    build = lambda **kw: nnx.eval_shape(lambda: models.build(dict(name="att_res_snn", **kw), rngs=nnx.Rngs(0)))  # noqa
    assert n_params(build(depth=18, placement="paper")) == 11_868_600
    assert n_params(build(depth=104, attention="no", stem="3conv", last_bn_init=0.0)) == 77_350_504
    stacked = build(depth=104)
    assert stacked.stages[2].rest.conv1.conv.kernel.shape == (31, 3, 3, 256, 256)  # leading block axis


# --------------------------------------------------------------------------- torch reference


def _torch_reference(torch, *, T, blocks, widths, attention, num_classes, c_ratio=8):
    nn, F = torch.nn, torch.nn.functional
    thresh, lens, decay = 0.5, 0.5, 0.25

    class ActFun(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return u.gt(thresh).to(u.dtype)

        @staticmethod
        def backward(ctx, g):
            (u,) = ctx.saved_tensors
            return g * ((u - thresh).abs() < lens).to(u.dtype) / (2 * lens)

    class EvenMax(torch.autograd.Function):
        """max over ``dims`` (keepdim) whose gradient is shared evenly by tied maxima, as ``jnp.max``'s is (torch
        gives it all to one element; ties are real here: a static image repeated over T gives equal values at
        different t). The forward value is torch's."""

        @staticmethod
        def forward(ctx, x, dims):
            m = x.amax(dim=dims, keepdim=True)
            ctx.save_for_backward(x, m)
            ctx.dims = dims
            return m

        @staticmethod
        def backward(ctx, g):
            x, m = ctx.saved_tensors
            tie = (x == m).to(x.dtype)
            return g * tie / tie.sum(dim=ctx.dims, keepdim=True), None

    class MemUpdate(nn.Module):  # x: (T, N, C, H, W)
        def forward(self, x):
            out, mem, spike = torch.zeros_like(x), None, None
            for t in range(T):
                mem = x[t] if t == 0 else mem * decay * (1 - spike.detach()) + x[t]
                spike = ActFun.apply(mem)
                out[t] = spike
            return out

    class TdBN(nn.Module):  # BatchNorm3d over (N, C, T, H, W), γ0 given
        def __init__(self, c, gamma):
            super().__init__()
            self.bn = nn.BatchNorm3d(c)
            nn.init.constant_(self.bn.weight, gamma)

        def forward(self, x):
            return self.bn(x.permute(1, 2, 0, 3, 4)).permute(2, 0, 1, 3, 4)

    class TConv(nn.Conv2d):  # the same conv at every time step
        def forward(self, x):
            return torch.stack([super(TConv, self).forward(x[t]) for t in range(x.shape[0])])

    class CA(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.sharedMLP = nn.Sequential(nn.Conv3d(c, c // c_ratio, 1, bias=False), nn.ReLU(),
                                           nn.Conv3d(c // c_ratio, c, 1, bias=False))

        def forward(self, x):  # (N, T, C, H, W) -> weights (N, 1, C, 1, 1), pooled over T, H, W jointly
            y = x.permute(0, 2, 1, 3, 4)
            a = self.sharedMLP(F.adaptive_avg_pool3d(y, 1)) + self.sharedMLP(EvenMax.apply(y, (2, 3, 4)))
            return torch.sigmoid(a).permute(0, 2, 1, 3, 4)

    class SA(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)

        def forward(self, x):  # mean / max over T·C jointly
            n, t, c, h, w = x.shape
            y = x.reshape(n, t * c, h, w)
            m = torch.cat([y.mean(1, keepdim=True), EvenMax.apply(y, (1,))], 1)
            return torch.sigmoid(self.conv(m)).unsqueeze(1)

    class CSACell(nn.Module):  # PruningCell('CSA'): (T, N, ...) -> (N, T, ...) -> CSA -> back
        def __init__(self, c):
            super().__init__()
            self.attention = nn.Module()
            self.attention.ca, self.attention.sa = CA(c), SA()

        def forward(self, x):
            y = x.permute(1, 0, 2, 3, 4)
            y = self.attention.ca(y) * y
            y = self.attention.sa(y) * y
            return torch.relu(y).permute(1, 0, 2, 3, 4)

    class Identity(nn.Module):
        def forward(self, x):
            return x

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.residual_function = nn.Sequential(
                MemUpdate(), TConv(cin, cout, 3, stride, 1, bias=False), TdBN(cout, 0.5),
                MemUpdate(), TConv(cout, cout, 3, 1, 1, bias=False), TdBN(cout, 0.1),
                CSACell(cout) if attention == "CSA" else Identity())
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.AvgPool3d((1, 2, 2), (1, 2, 2)),
                                              TConv(cin, cout, 1, 1, bias=False), TdBN(cout, 0.5))

        def forward(self, x):
            return self.residual_function(x) + self.shortcut(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Sequential(TConv(3, widths[0], 7, 2, 3, bias=False), TdBN(widths[0], 0.5))
            cin = widths[0]
            for s, (w, n) in enumerate(zip(widths, blocks)):
                layers = []
                for stride in [2] + [1] * (n - 1):
                    layers.append(Block(cin, w, stride))
                    cin = w
                setattr(self, f"conv{s + 2}_x", nn.Sequential(*layers))
            self.n_stages = len(widths)
            self.mem_update = MemUpdate()
            self.fc = nn.Linear(cin, num_classes)
            self.dropout = nn.Dropout(0.0)

        def forward(self, x):  # x: (N, 3, H, W)
            h = self.conv1(torch.stack([x] * T))
            for s in range(self.n_stages):
                h = getattr(self, f"conv{s + 2}_x")(h)
            h = self.mem_update(h)
            h = F.adaptive_avg_pool3d(h, (None, 1, 1))
            h = h.view(h.shape[0], h.shape[1], -1).sum(0) / h.shape[0]
            return self.fc(self.dropout(h))

    return Net


def _torch_spikes(torch, net, x):
    """Logits and every MemUpdate's spikes (N, T, H, W, C) in forward order."""
    outs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outs.append(o.detach().permute(1, 0, 3, 4, 2).numpy()))
             for m in net.modules() if type(m).__name__ == "MemUpdate"]
    logits = net(x)
    for h in hooks:
        h.remove()
    return logits, outs


def _jax_spikes(intermediates, model):
    """Spikes in forward order from the 'spikes' intermediates; stacked ones split into blocks."""
    out = []
    for s, stage in enumerate(model.stages):
        out += [intermediates["stages"][s]["first"][n]["spikes"][0] for n in ("neuron1", "neuron2")]
        if stage.rest is not None:
            s1 = intermediates["stages"][s]["rest"]["neuron1"]["spikes"][0]
            s2 = intermediates["stages"][s]["rest"]["neuron2"]["spikes"][0]
            for j in range(stage.num_rest):
                out += [s1[j], s2[j]]
    out.append(intermediates["head_neuron"]["spikes"][0])
    return [np.asarray(o) for o in out]


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("attention, T, scan, impl", [("no", 1, True, "xla"), ("CSA", 4, True, "im2col"),
                                                      ("CSA", 1, False, "xla"), ("no", 4, False, "xla")])
def test_float64_parity_with_official_reference(torch, x64, attention, T, scan, impl):
    torch.manual_seed(T * 10 + len(attention))
    Net = _torch_reference(torch, T=T, blocks=TINY["blocks"], widths=TINY["widths"], attention=attention,
                           num_classes=10)
    net = Net().double()
    rng = np.random.default_rng(T)
    x_np = rng.normal(0.0, 1.5, (2, 32, 32, 3))
    xt = torch.from_numpy(x_np.transpose(0, 3, 1, 2).copy())
    # realistic running statistics: one cumulative-average pass (running stats = this batch's), then momentum 0.1
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    for m in bns:
        m.momentum = None
    with torch.no_grad():
        net.train()(torch.from_numpy(rng.normal(0.0, 1.5, (4, 3, 32, 32))))
    for m in bns:
        m.momentum = 0.1
    sd = {"module." + k: v.clone() for k, v in net.state_dict().items()}  # DDP prefix, as the official files
    cfg = tiny(T=T, attention=attention, param_dtype="float64", dropout=0.0, scan_blocks=scan, conv_impl=impl)
    model = interop.from_official_torch(sd, cfg)
    set_recording(model, "spikes")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jnp.asarray(x_np)

    @functools.partial(jax.jit, static_argnums=0)
    def fwd(graphdef, params, rest, x, w):
        m = nnx.merge(graphdef, params, rest, copy=True)
        logits, inter = nnx.capture(m, nnx.Intermediate)(x)
        return jnp.sum(logits * w), (logits, inter, nnx.state(m, nnx.BatchStat))

    w = rng.normal(size=(2, 10))
    # ---- train mode: batch statistics, gradients, running-statistic updates
    net.train()
    logits_t, spikes_t = _torch_spikes(torch, net, xt)
    (logits_t * torch.from_numpy(w)).sum().backward()
    grads, (logits, inter, stats) = jax.grad(fwd, argnums=1, has_aux=True)(graphdef, params, rest, x, jnp.asarray(w))
    spikes = _jax_spikes(inter, model)
    assert len(spikes) == len(spikes_t) == 2 * sum(TINY["blocks"]) + 1
    for i, (a, b) in enumerate(zip(spikes, spikes_t)):
        np.testing.assert_array_equal(a, b, err_msg=f"train spikes of neuron {i}")
        assert 0.0 < a.mean() < 1.0, f"neuron {i} does not fire in a useful range: rate {a.mean()}"
    np.testing.assert_allclose(np.asarray(logits), logits_t.detach().numpy(), rtol=0, atol=1e-9)
    tsd = net.state_dict()
    pairs = {  # official name -> masnn-jax gradient leaf
        "conv1.0.weight": (("stem", "conv", "kernel"), None),
        "conv2_x.2.residual_function.1.weight": (("stages", 0, "rest", "conv1", "conv", "kernel"), 1),
        "conv3_x.0.shortcut.1.weight": (("stages", 1, "first", "shortcut", "conv", "kernel"), None),
        "conv2_x.1.residual_function.5.bn.weight": (("stages", 0, "rest", "conv2", "bn", "scale"), 0),
        "fc.weight": (("fc", "kernel"), None),
    }
    if attention == "CSA":
        pairs["conv3_x.0.residual_function.6.attention.ca.sharedMLP.0.weight"] = (
            ("stages", 1, "first", "attention", "ca", "fc1", "kernel"), None)
        pairs["conv3_x.1.residual_function.6.attention.sa.conv.weight"] = (
            ("stages", 1, "rest", "attention", "sa", "conv", "kernel"), 0)
    tparams = dict(net.named_parameters())
    entries = {e.name: e for e in interop._entries(model)}
    for name, (path, row) in pairs.items():
        g = grads
        for p in path:
            g = g[p]
        g = np.asarray(g[...])
        g = g if row is None else g[row]
        want = tparams[name].grad.numpy()
        got = entries[name].to_torch(g)
        assert np.abs(want).max() > 0, name
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=name)
    # running statistics after the step, scanned blocks included, equal torch's and have moved
    nnx.update(model, stats)
    new_sd = interop.to_official_torch(model)
    for name in ("conv2_x.1.residual_function.2.bn.running_mean", "conv2_x.2.residual_function.5.bn.running_var",
                 "conv3_x.1.residual_function.2.bn.running_mean", "conv1.1.bn.running_var"):
        np.testing.assert_allclose(new_sd[name], tsd[name].numpy(), rtol=0, atol=1e-12, err_msg=name)
        assert not np.allclose(new_sd[name], sd["module." + name].numpy()), f"{name} did not change"
    # ---- eval mode: running statistics
    net.eval()
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    with torch.no_grad():
        logits_t, spikes_t = _torch_spikes(torch, net, xt)
    _, (logits, inter, _) = fwd(graphdef, params, rest, x, jnp.asarray(w))
    spikes = _jax_spikes(inter, model)
    for i, (a, b) in enumerate(zip(spikes, spikes_t)):
        np.testing.assert_array_equal(a, b, err_msg=f"eval spikes of neuron {i}")
    assert 0.0 < np.mean([s.mean() for s in spikes]) < 1.0
    np.testing.assert_allclose(np.asarray(logits), logits_t.numpy(), rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- scan vs loop, training step


def test_scanned_and_looped_blocks_agree_and_update_statistics():
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3)) * 1.5
    outs = {}
    for scan in (True, False):
        model = build(tiny(T=2, scan_blocks=scan, dropout=0.0), 3)
        before = np.array(model.stages[0].rest.conv1.bn.mean[...])
        y = model(x)
        after = np.array(model.stages[0].rest.conv1.bn.mean[...])
        assert before.shape == (2, 8) and not np.allclose(before, after)
        assert not np.allclose(after[0], after[1])  # each stacked block keeps its own statistics
        outs[scan] = (np.asarray(y), after, np.array(model.stages[1].rest.conv2.bn.var[...]))
    for a, b in zip(outs[True], outs[False]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_train_step_with_image_task():
    from masnn_jax.config import train_defaults
    from masnn_jax.train import optim, steps, tasks

    model = build(tiny(T=2))
    tc = train_defaults(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-5,
                        schedule="torch_cosine", num_epochs=2, loss="cross_entropy", label_smoothing=0.1)
    tx = optim.make_optimizer(tc, steps_per_epoch=2)
    task = tasks.ImageTask(num_classes=10)
    graphdef, state = steps.init_state(model, tx)
    step = jax.jit(functools.partial(steps.train_step, graphdef=graphdef, tx=tx, task=task))
    batch = {"image": jax.random.normal(jax.random.key(1), (4, 32, 32, 3)) * 1.5,
             "label": jnp.array([0, 1, 2, 3])}
    new_state, metrics = step(state, batch)
    assert bool(metrics["finite"]) and np.isfinite(float(metrics["loss"]))
    assert 0.0 < float(metrics["firing_rate"]) < 1.0
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new_state["params"], state["params"])
    assert all(jax.tree.leaves(changed)), "every parameter gets an update"


# --------------------------------------------------------------------------- variants, bf16, errors


@pytest.mark.parametrize("kw", [dict(attention="CSA", placement="paper"), dict(attention="CSA", residual="att_res_2"),
                                dict(attention="TCSA", T=2), dict(attention="ECA"), dict(attention="SimAM"),
                                dict(attention="no", stem="3conv", last_bn_init=0.0)])
def test_variants_run(kw):
    model = build(tiny(**{"blocks": (1, 2), "input_shape": (16, 16, 3), **kw}))
    y = model(jax.random.normal(jax.random.key(0), (2, 16, 16, 3)))
    assert y.shape == (2, 10) and bool(jnp.all(jnp.isfinite(y)))
    if kw.get("placement") == "paper":
        assert model.stages[0].first.attention.sa.conv.kernel.shape == (7, 7, 2, 1)


def test_bfloat16_compute():
    model = build(tiny(T=2, dtype="bfloat16"))
    set_recording(model, "spikes")
    y, inter = nnx.capture(model, nnx.Intermediate)(jax.random.normal(jax.random.key(0), (2, 32, 32, 3)) * 1.5)
    assert y.dtype == jnp.bfloat16
    spikes = _jax_spikes(inter, model)
    for s in spikes:
        assert s.dtype == jnp.bfloat16 and set(np.unique(s.astype(np.float32))) <= {0.0, 1.0}
    assert 0 < np.mean([s.astype(np.float32).mean() for s in spikes]) < 1
    for leaf in jax.tree.leaves(nnx.state(model, nnx.BatchStat)) + jax.tree.leaves(nnx.state(model, nnx.Param)):
        assert leaf.dtype == jnp.float32


@pytest.mark.parametrize("key, value", [("attention", "XYZ"), ("residual", "att_res_3"), ("T", 0), ("depth", 50),
                                        ("placement", "input"), ("stem", "5x5"), ("input_shape", (36, 36, 3)),
                                        ("widths", (8, 16, 32)), ("dtype", "int8")])
def test_bad_config_names_the_key(key, value):
    with pytest.raises(ValueError, match=f"config.model.{key}"):
        models.build(tiny(**{key: value}) if key != "depth" else dict(name="att_res_snn", depth=value),
                     rngs=nnx.Rngs(0))


def test_temporal_attention_needs_T_above_one():
    with pytest.raises(ValueError, match="config.model.attention"):
        models.build(tiny(attention="TCSA", T=1), rngs=nnx.Rngs(0))


def test_wrong_image_shape():
    model = nnx.eval_shape(lambda: models.build(tiny(), rngs=nnx.Rngs(0)))
    for shape in ((2, 32, 32, 1), (2, 3, 32, 32), (2, 1, 32, 32, 3)):
        with pytest.raises(ValueError, match="config.model.input_shape"):
            model(jnp.zeros(shape))


# --------------------------------------------------------------------------- interop


def test_interop_round_trip_and_errors():
    model = build(tiny(attention="CSA"), 1)
    sd = interop.to_official_torch(model, prefix="module.")
    assert sd["module.conv2_x.2.residual_function.6.attention.ca.sharedMLP.0.weight"].shape == (1, 8, 1, 1, 1)
    assert sd["module.conv3_x.0.shortcut.1.weight"].shape == (16, 8, 1, 1)
    back = interop.from_official_torch(sd, tiny(attention="CSA"))
    arrays = lambda m: jax.tree.leaves(nnx.state(m, nnx.Any(nnx.Param, nnx.BatchStat)))  # noqa: E731
    for a, b in zip(arrays(model), arrays(back), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert list(interop.official_state_dict_shapes(tiny(attention="CSA"))) == [
        k[len("module."):] for k in sd if not k.endswith("num_batches_tracked")]
    bad = dict(sd)
    bad["module.fc.weight"] = np.zeros((10, 15), np.float32)
    with pytest.raises(interop.StateDictMismatchError, match=r"fc.weight: shape \(10, 15\).*expected \(10, 16\)"):
        interop.from_official_torch(bad, tiny(attention="CSA"))
    with pytest.raises(interop.StateDictMismatchError, match="missing key .*sa.conv.weight"):
        interop.from_official_torch({k: v for k, v in sd.items() if "sa.conv" not in k}, tiny(attention="CSA"))
    with pytest.raises(ValueError, match=r"config.model.depth"):
        interop.from_official_torch(sd, tiny(attention="CSA", blocks=(2, 2)))


def test_interop_other_official_depth_is_one_error():
    shapes34 = interop.official_state_dict_shapes(dict(name="att_res_snn", depth=34))
    fake = {k: np.zeros(s, np.float32) for k, s in shapes34.items()}
    with pytest.raises(ValueError, match=r"depth 34.*config.model.depth=18.*config.model.depth=34"):
        interop.from_official_torch(fake, dict(name="att_res_snn", depth=18))
