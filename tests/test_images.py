"""Image data: the digits ImageFolder and its ArrayRecord copy, loaders (one and two simulated processes, resume,
workers), tfds mock data, bad input, and no TensorFlow import when reading."""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from masnn_jax import data as data_lib
from masnn_jax.data.images import (
    DatasetNotFoundError,
    ImageDecodeError,
    build,
    default_data_config,
    make_sharded_loader,
    write_digits,
)
from masnn_jax.data.images.loader import _ProcessRows
from masnn_jax.data.images.sources import TfdsSource, check_manual_dir


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory):
    """20 digits per class (200 JPEGs, 32x32): train 150, val 50, + the ArrayRecord copy."""
    return write_digits(str(tmp_path_factory.mktemp("img") / "digits"), per_class=20, val_fraction=0.25)


def _cfg(root, source="folder", **kw):
    return dict(name="digits_images", root=root, source=source, **kw)


def _batches(loader):
    return [{k: np.asarray(v) for k, v in b.items()} for b in loader]


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert sorted(x) == sorted(y)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_digits_layout_and_config(digits_root):
    info = json.load(open(os.path.join(digits_root, "DIGITS_IMAGES.json")))
    assert (info["n_train"], info["n_val"]) == (150, 50)
    assert sorted(os.listdir(os.path.join(digits_root, "train"))) == [str(d) for d in range(10)]
    cfg = default_data_config("digits_images")
    cfg.root = digits_root
    ds = data_lib.build(cfg, "train")  # through the kind dispatch
    assert data_lib.kind_of("digits_images") == "images" and len(ds) == 150 and ds.num_classes == 10
    item = ds[0]
    assert item["image"].shape == (32, 32, 3) and item["image"].dtype == np.float32 and item["label"] == 0
    assert set(default_data_config("imagenet2012")) == set(cfg)
    assert write_digits(digits_root, per_class=20, val_fraction=0.25) == digits_root  # complete: kept


@pytest.mark.parametrize("split", ["train", "test"])
def test_folder_and_array_record_give_the_same_examples(digits_root, split):
    kw = dict(auto_augment=True, crop_scale=(0.08, 1.0))
    folder, tfds_ds = build(_cfg(digits_root, **kw), split), build(_cfg(digits_root, "tfds", **kw), split)
    assert len(folder) == len(tfds_ds) and folder.classes == tfds_ds.classes
    for i in range(len(folder)):
        a, b = folder.get(i, epoch=2), tfds_ds.get(i, epoch=2)
        assert a["label"] == b["label"]
        np.testing.assert_array_equal(a["image"], b["image"])
    if split == "train":
        assert not np.array_equal(folder.get(3, epoch=0)["image"], folder.get(3, epoch=1)["image"])


def test_loaders_same_order_one_and_two_processes(digits_root):
    folder, tfds_ds = build(_cfg(digits_root), "train"), build(_cfg(digits_root, "tfds"), "train")
    kw = dict(batch_size=16, shuffle=True, seed=3, epoch=1, drop_remainder=True)
    ref = _batches(data_lib.make_loader(folder, **kw))
    assert len(ref) == 150 // 16
    _assert_same_batches(ref, _batches(data_lib.make_loader(tfds_ds, **kw)))
    _assert_same_batches(ref, _batches(make_sharded_loader(tfds_ds, **kw)))  # one process
    for ds in (folder, tfds_ds):  # two simulated processes: rows [0, 8) and [8, 16) of each global batch
        parts = [_batches(make_sharded_loader(ds, process_index=p, process_count=2, **kw)) for p in range(2)]
        joined = [{k: np.concatenate([parts[0][b][k], parts[1][b][k]]) for k in ref[b]} for b in range(len(ref))]
        _assert_same_batches(ref, joined)
    # another epoch or seed: another order
    other = _batches(data_lib.make_loader(folder, **dict(kw, epoch=2)))
    assert not np.array_equal(other[0]["label"], ref[0]["label"]) or not np.array_equal(other[0]["image"],
                                                                                        ref[0]["image"])


def test_each_example_exactly_once_across_processes():
    n, B = 150, 16
    for P in (1, 2, 4):
        for n_rows in ((n // B) * (B // P), -(-n // B) * (B // P)):
            seen = [_ProcessRows(None, n, B, p, P, n_rows, False).global_position(j)
                    for p in range(P) for j in range(n_rows)]
            assert len(seen) == len(set(seen)) == n_rows * P
            assert set(range(n_rows * P // B * B)) == set(seen)


def test_padded_eval_batches_over_two_processes(digits_root):
    ds = build(_cfg(digits_root), "test")
    kw = dict(batch_size=16, shuffle=False, drop_remainder=False, pad_remainder=True)
    parts = [_batches(make_sharded_loader(ds, process_index=p, process_count=2, **kw)) for p in range(2)]
    assert len(parts[0]) == len(parts[1]) == 4  # ceil(50 / 16)
    assert all(b["image"].shape == (8, 32, 32, 3) for part in parts for b in part)
    mask = np.concatenate([np.concatenate([parts[0][b]["mask"], parts[1][b]["mask"]]) for b in range(4)])
    assert mask.sum() == 50 and (mask[:50] == 1).all()
    labels = np.concatenate([np.concatenate([parts[0][b]["label"], parts[1][b]["label"]]) for b in range(4)])[:50]
    np.testing.assert_array_equal(labels, ds.labels)
    plain = _batches(data_lib.make_loader(ds, batch_size=16, shuffle=False))
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in plain]),
                                  np.concatenate([np.concatenate([parts[0][b]["image"], parts[1][b]["image"]])
                                                  for b in range(4)])[:50])
    with pytest.raises(ValueError, match="pad_remainder"):
        make_sharded_loader(ds, batch_size=16, process_index=0, process_count=2)
    with pytest.raises(ValueError, match="does not split"):
        make_sharded_loader(ds, batch_size=15, process_index=0, process_count=2, drop_remainder=True)


def test_resume_mid_epoch_and_workers(digits_root):
    ds = build(_cfg(digits_root, "tfds", auto_augment=True), "train")
    kw = dict(batch_size=16, shuffle=True, seed=5, epoch=4, drop_remainder=True)
    full = _batches(make_sharded_loader(ds, process_index=1, process_count=2, **kw))
    resumed = _batches(make_sharded_loader(ds, process_index=1, process_count=2, start_batch=6, **kw))
    _assert_same_batches(full[6:], resumed)
    _assert_same_batches(_batches(data_lib.make_loader(ds, **kw))[6:],
                         _batches(data_lib.make_loader(ds, start_batch=6, **kw)))
    # grain worker processes (the tfds reader reopens there) give the same batches
    _assert_same_batches(full[6:], _batches(make_sharded_loader(ds, process_index=1, process_count=2,
                                                                start_batch=6, num_workers=1, **kw)))


def test_tfds_mock_data_imagenet2012():
    tfds = pytest.importorskip("tensorflow_datasets")
    from masnn_jax.data.images.dataset import ImageDataset
    from masnn_jax.data.images.transforms import EvalTransform, TrainTransform

    with tfds.testing.mock_data(num_examples=6):
        src = TfdsSource(None, "imagenet2012", "train", skip_decoding=False, check_files=False)
        assert len(src) == 6 and src.num_classes == 1000 and src.classes[0] == "n01440764"
        for t in (TrainTransform(224), EvalTransform(288)):
            ds = ImageDataset(src, t, name="imagenet2012", split="train", seed=0)
            item = ds.get(4, epoch=1)
            assert item["image"].shape == t.output_shape and 0 <= item["label"] < 1000


def test_no_tensorflow_import_when_reading(digits_root):
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from masnn_jax import data
        for source in ("folder", "tfds"):
            for split in ("train", "test"):
                ds = data.build(dict(name="digits_images", root={digits_root!r}, source=source,
                                     auto_augment=True), split)
                batch = next(iter(data.make_loader(ds, batch_size=8, seed=1, epoch=0)))
                assert batch["image"].shape == (8, 32, 32, 3), batch["image"].shape
        assert "tensorflow" not in sys.modules, sorted(m for m in sys.modules if m.startswith("tensorflow."))[:5]
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


# ------------------------------------------------------------------------------------------------ bad input


def _copy_folder(digits_root, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(os.path.join(digits_root, "train"), dst / "train")
    shutil.copytree(os.path.join(digits_root, "val"), dst / "val")
    return dst


def test_bad_imagefolder(digits_root, tmp_path):
    missing = tmp_path / "nothing"
    with pytest.raises(DatasetNotFoundError, match=f"{missing}/train: no such folder.*train/<class>"):
        build(dict(name="imagefolder", root=str(missing)), "train")
    with pytest.raises(ValueError, match="config.data.root must be set for imagefolder"):
        build(dict(name="imagefolder"), "train")
    root = _copy_folder(digits_root, tmp_path)
    (root / "train" / "7_empty").mkdir()
    (root / "train" / "7_empty" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetNotFoundError, match=f"{root}/train/7_empty: class folder holds no image files"):
        build(dict(name="imagefolder", root=str(root)), "train")
    shutil.rmtree(root / "train" / "7_empty")
    shutil.rmtree(root / "val" / "9")
    with pytest.raises(DatasetNotFoundError, match=r"class folders differ .*missing \['9'\]"):
        build(dict(name="imagefolder", root=str(root)), "test")
    # upper-case and other extensions count; the classes are the sorted folder names
    src = root / "train" / "3"
    first = sorted(os.listdir(src))[0]
    os.rename(src / first, src / "zz.JPEG")
    ds = build(dict(name="imagefolder", root=str(root), image_size=32), "train")
    assert ds.source.path(int(np.flatnonzero(ds.labels == 3)[-1])).endswith("3/zz.JPEG")
    for key, bad, msg in (("source", "tfds", "config.data.source"), ("crop_scale", (0.5, 2.0), "config.data.crop_scale"),
                          ("image_size", 0, "config.data.image_size"), ("interpolation", "lanczos", "interpolation"),
                          ("on_corrupt", "ignore", "on_corrupt"), ("std", (1, 0, 1), "config.data.std"),
                          ("bogus", 1, "unknown key")):
        with pytest.raises(ValueError, match=msg):
            build(dict(name="imagefolder", root=str(root), **{key: bad}), "train")


def test_corrupt_jpeg_raise_or_skip(digits_root, tmp_path, caplog):
    root = _copy_folder(digits_root, tmp_path)
    victim = sorted(glob.glob(str(root / "train" / "0" / "*.jpg")))[2]
    data = open(victim, "rb").read()
    open(victim, "wb").write(data[: len(data) // 3])  # truncated JPEG
    strict = build(dict(name="imagefolder", root=str(root), image_size=32, on_corrupt="raise"), "train")
    with pytest.raises(ImageDecodeError, match=f"{victim}: not a readable image"):
        strict.get(2)
    lenient = build(dict(name="imagefolder", root=str(root), image_size=32), "train")
    with caplog.at_level(logging.WARNING, logger="masnn_jax.data.images.dataset"):
        item = lenient.get(2, epoch=0)
    assert lenient.corrupt_count == 1 and victim in caplog.text
    np.testing.assert_array_equal(item["image"], lenient.get(3, epoch=0)["image"])  # the next example
    open(victim, "wb").write(b"garbage, not a JPEG")
    with pytest.raises(ImageDecodeError, match=victim):
        strict.get(2)


def test_bad_tfds_dirs(digits_root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no such tfds data_dir.*tfds build imagenet2012"):
        build(dict(name="imagenet2012", root=str(tmp_path / "none")), "train")
    with pytest.raises(ValueError, match="config.data.root must be set for imagenet2012.*tfds build"):
        build(dict(name="imagenet2012"), "train")
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "ILSVRC2012_img_val.tar").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match=f"{manual}: missing ILSVRC2012_img_train.tar"):
        check_manual_dir(str(manual))
    with pytest.raises(DatasetNotFoundError, match="holds the ImageNet manual-download tars"):
        build(dict(name="imagenet2012", root=str(manual)), "train")
    empty = tmp_path / "data_dir"
    (empty / "imagenet2012" / "5.1.0.incompleteABC").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="preparation was interrupted"):
        build(dict(name="imagenet2012", root=str(empty)), "train")
    # a half-copied ArrayRecord copy: the train shard missing; a TFRecord-only preparation
    copy = tmp_path / "digits_copy"
    shutil.copytree(digits_root, copy)
    vdir = copy / "tfds" / "digits_images" / "1.0.0"
    shard = vdir / "digits_images-train.array_record-00000-of-00001"
    os.remove(shard)
    with pytest.raises(DatasetNotFoundError, match=f"{vdir}: no ArrayRecord shards digits_images-train"):
        build(_cfg(str(copy), "tfds"), "train")
    (vdir / "digits_images-train.tfrecord-00000-of-00001").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match="prepared as TFRecord"):
        build(_cfg(str(copy), "tfds"), "train")
    assert len(build(_cfg(str(copy), "tfds"), "test")) == 50  # the intact split still reads
    with pytest.raises(DatasetNotFoundError, match="write-digits"):
        build(_cfg(str(tmp_path / "no_digits")), "train")


def test_write_digits_cli(tmp_path, capsys):
    from masnn_jax.data.images.__main__ import main

    assert main(["write-digits", str(tmp_path / "d"), "--per-class", "2", "--no-array-record"]) == 0
    assert "10 train + 10 val JPEGs" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "d" / "tfds")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("")
    assert main(["write-digits", str(tmp_path / "junk")]) == 2
    assert "not a complete digits_images folder" in capsys.readouterr().err
    assert main(["check", "--name", "imagefolder", "--root", str(tmp_path / "d")]) == 0
    assert main(["prepare-imagenet", "--manual_dir", str(tmp_path), "--data_dir", str(tmp_path / "o")]) == 2
    assert "ILSVRC2012_img_train.tar" in capsys.readouterr().err


def test_input_pipeline_benchmark_runs():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "input_pipeline.py"), "--images", "4",
                          "--repeats", "1"], capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert [r["pipeline"] for r in rows] == ["decode", "train_no_autoaugment", "train_autoaugment", "eval_224",
                                             "eval_288"]
    assert all(r["images_per_s"] > 0 and r["images"] == 4 for r in rows)
