"""Batch augmentations of the Spikformer recipes against timm: Mixup / CutMix (:mod:`masnn_jax.data.images.mixup`)
compared with timm's ``timm/data/mixup.py`` loaded standalone (``import timm`` itself needs torchvision)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from masnn_jax.data.images import mixup

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def timm_mixup():
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("timm is not installed")
    path = f"{list(spec.submodule_search_locations)[0]}/data/mixup.py"
    mod_spec = importlib.util.spec_from_file_location("timm_mixup_standalone", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kwargs", [
    dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, label_smoothing=0.1),  # ImageNet recipe
    dict(mixup_alpha=0.5, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5, label_smoothing=0.1),  # CIFAR10
    dict(mixup_alpha=0.5, cutmix_alpha=0.0, prob=0.5, switch_prob=0.5, label_smoothing=0.1),  # CIFAR10-DVS
    dict(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, label_smoothing=0.0),
])
def test_mixup_batch_matches_timm(timm_mixup, kwargs):
    num_classes, b, h, w = 7, 6, 12, 10
    data = np.random.default_rng(0)
    kinds = set()
    for seed in range(12):
        x = data.normal(size=(b, h, w, 3)).astype(np.float32)
        labels = data.integers(0, num_classes, b)
        np.random.seed(seed)
        ref = timm_mixup.Mixup(num_classes=num_classes, mode="batch", **kwargs)
        xt, yt = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(labels))
        got_x, got_y, lam = mixup.mixup_batch(x, labels, num_classes=num_classes, rng=np.random.RandomState(seed),
                                              **kwargs)
        np.testing.assert_allclose(got_x, xt.numpy().transpose(0, 2, 3, 1), rtol=0, atol=1e-6)
        np.testing.assert_allclose(got_y, yt.numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(got_y.sum(1), 1.0, atol=1e-6)
        kinds.add("none" if lam == 1.0 else ("cut" if not np.allclose(got_x, x * lam + x[::-1] * (1 - lam))
                                              else "mix"))
    assert kinds - {"none"}, "no batch was mixed"


def test_cutmix_on_event_frames_pastes_one_box_over_time():
    x = np.arange(2 * 3 * 8 * 8 * 2, dtype=np.float32).reshape(2, 3, 8, 8, 2)
    d = mixup.MixupDecision(lam=0.75, use_cutmix=True, bbox=(2, 6, 0, 4))
    out = mixup.apply_mixup(x, d)
    np.testing.assert_array_equal(out[:, :, 2:6, 0:4], x[::-1][:, :, 2:6, 0:4])
    mask = np.ones(out.shape, bool)
    mask[:, :, 2:6, 0:4] = False
    np.testing.assert_array_equal(out[mask], x[mask])


def test_mixup_bad_inputs():
    with pytest.raises(ValueError, match="even batch"):
        mixup.mixup_batch(np.zeros((3, 4, 4, 1)), np.zeros(3, int), num_classes=2, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="labels in"):
        mixup.mixup_target(np.array([0, 5]), 3)
    with pytest.raises(ValueError, match="mixup_alpha"):
        mixup.sample_mixup(np.random.RandomState(0), (4, 4), mixup_alpha=0, cutmix_alpha=0)
