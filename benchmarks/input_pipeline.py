"""Image input pipeline throughput: images/s per CPU worker, JPEG decode included.

Writes a synthetic ImageFolder of ``--images`` photographic 500x375 JPEGs (crops of scikit-learn's two sample
photographs with noise, quality 90) into a temporary folder, then prints one JSON line per pipeline:

* ``decode``: ``Image.open(...).convert('RGB')`` only;
* ``train_no_autoaugment``: decode -> RandomResizedCrop 224 -> ToTensor/Normalize (float32 HWC);
* ``train_autoaugment``: the official recipe, with torchvision's ImageNet AutoAugment;
* ``eval_224`` / ``eval_288``: decode -> Resize 256 (329) -> CentreCrop 224 (288) -> normalise;

each timed in this process on one core (``ImageDataset.get`` in a loop: what one grain worker does), median of
``--repeats`` passes over the folder. With ``--loader-workers`` it also times ``masnn_jax.data.make_loader`` with
that many grain worker processes (batch 32, training pipeline with AutoAugment): total images/s.

Usage::

    python benchmarks/input_pipeline.py                 # 200 images, 3 repeats
    python benchmarks/input_pipeline.py --quick         # 24 images, 1 repeat
    python benchmarks/input_pipeline.py --loader-workers 2
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import _jaxbench as jb  # noqa: E402  (the standard library only: the shared flag checks)


def write_synthetic_folder(root: str, n: int, seed: int = 0) -> str:
    """Writes ``n`` 500x375 JPEGs (quality 90) as ``root/{train,val}/c{k}/img_{i}.jpg`` (4 classes; the same files in
    both splits) and returns ``root``."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photos = [load_sample_image("china.jpg"), load_sample_image("flower.jpg")]
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in range(4):
            os.makedirs(os.path.join(root, split, f"c{c}"), exist_ok=True)
    for i in range(n):
        photo = photos[i % 2]
        h, w = photo.shape[:2]
        ch, cw = int(rng.integers(h // 2, h)), int(rng.integers(w // 2, w))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = Image.fromarray(photo[top:top + ch, left:left + cw]).resize((500, 375), Image.BILINEAR)
        arr = np.clip(np.asarray(img, np.int16) + rng.integers(-6, 7, (375, 500, 3)), 0, 255).astype(np.uint8)
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        for split in ("train", "val"):
            Image.fromarray(arr).save(os.path.join(root, split, f"c{i % 4}", f"img_{i:05d}.jpg"), quality=90)
    return root


def _time_passes(fn, n: int, repeats: int) -> list[float]:
    fn(0)  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    p = jb.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200, help="synthetic JPEGs to write (500x375)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes (median reported)")
    p.add_argument("--loader-workers", type=int, default=0,
                   help="also time make_loader with N grain workers (0: do not time the loader)")
    p.add_argument("--quick", action="store_true",
                   help="small defaults: 24 images, 1 repeat (flags given explicitly keep their values)")
    p.add_argument("--dir", default=None, help="use/keep this folder instead of a temporary one")
    args = jb.parse_args(p, argv, quick=dict(images=24, repeats=1))
    jb.check_at_least(args, images=1, repeats=1, loader_workers=0)  # the user's values, --quick or not
    if args.dir is not None and os.path.exists(args.dir) and not os.path.isdir(args.dir):
        jb.fail(f"--dir {args.dir!r} is a file, not a folder")

    import PIL

    from masnn_jax.data.images import build
    from masnn_jax.data.images.transforms import decode_image

    tmp = None
    root = args.dir
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="masnn_input_bench_")
        root = tmp.name
    if not os.path.isdir(os.path.join(root, "train")):
        write_synthetic_folder(root, args.images)
    common = dict(machine=platform.machine(), cpu_count=os.cpu_count(), pillow=PIL.__version__,
                  source_size=[500, 375], workers=1, repeats=args.repeats)
    try:
        pipelines = {
            "decode": None,
            "train_no_autoaugment": (dict(auto_augment=False), "train", 224),
            "train_autoaugment": (dict(auto_augment=True), "train", 224),
            "eval_224": (dict(eval_image_size=224), "test", 224),
            "eval_288": (dict(eval_image_size=288), "test", 288),
        }
        n_files = None
        for name, spec in pipelines.items():
            if spec is None:
                ds = build(dict(name="imagefolder", root=root), "train")
                fn = lambda i, ds=ds: decode_image(ds.source.path(i % len(ds)))  # noqa: E731
                size = None
            else:
                keys, split, size = spec
                ds = build(dict(name="imagefolder", root=root, **keys), split)
                fn = lambda i, ds=ds: ds.get(i % len(ds), epoch=1)  # noqa: E731
            n_files = len(ds)
            times = _time_passes(fn, n_files, args.repeats)
            med = statistics.median(times)
            print(json.dumps(dict(benchmark="input_pipeline", pipeline=name, image_size=size, images=n_files,
                                  images_per_s=round(n_files / med, 1), ms_per_image=round(1000 * med / n_files, 3),
                                  pass_seconds=[round(t, 3) for t in times], **common)), flush=True)
        if args.loader_workers:
            from masnn_jax.data import make_loader

            ds = build(dict(name="imagefolder", root=root, auto_augment=True), "train")
            loader = lambda: make_loader(ds, batch_size=32, shuffle=True, seed=0, epoch=1,  # noqa: E731
                                         num_workers=args.loader_workers, prefetch=2)
            for _ in loader():  # warm-up: worker start
                break
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                count = sum(int(b["label"].shape[0]) for b in loader())
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            print(json.dumps(dict(benchmark="input_pipeline", pipeline="loader_train_autoaugment", image_size=224,
                                  images=count, images_per_s=round(count / med, 1),
                                  pass_seconds=[round(t, 3) for t in times],
                                  **dict(common, workers=args.loader_workers))), flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
