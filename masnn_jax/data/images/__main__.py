"""Command line: ``python -m masnn_jax.data.images <command>``.

* ``write-digits DIR [--image-size 32] [--val-fraction 0.2] [--per-class N] [--seed 0] [--no-array-record]``:
  writes the digits ImageFolder + ArrayRecord copy (:func:`masnn_jax.data.images.write_digits`).
* ``prepare-imagenet --manual_dir M --data_dir D``: checks M holds the two ILSVRC2012 tars, then prepares
  ``D/imagenet2012/`` as ArrayRecord with tfds (needs TensorFlow installed for this step only).
* ``check --name NAME --root ROOT [--source S]``: builds both splits, prints their sizes and decodes every image,
  listing the unreadable ones (exit status 1 if any).
"""

from __future__ import annotations

import argparse
import sys


def _write_digits(args) -> int:
    from masnn_jax.data.images.digits import digits_complete, write_digits

    root = write_digits(args.dir, image_size=args.image_size, val_fraction=args.val_fraction,
                        per_class=args.per_class, seed=args.seed, array_record=not args.no_array_record,
                        overwrite=args.overwrite)
    info = digits_complete(root)
    print(f"{root}: {info['n_train']} train + {info['n_val']} val JPEGs "
          f"({info['image_size']}x{info['image_size']}){', ArrayRecord copy in tfds/' if info['array_record'] else ''}")
    return 0


def _prepare_imagenet(args) -> int:
    from masnn_jax.data.images.sources import check_manual_dir

    check_manual_dir(args.manual_dir)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print("preparing imagenet2012 needs TensorFlow (this step only): install it in a separate environment, "
              "e.g. `pip install tensorflow-cpu tensorflow-datasets array_record`, and rerun; or run "
              f"`tfds build imagenet2012 --manual_dir={args.manual_dir} --data_dir={args.data_dir} "
              "--file_format=array_record` there", file=sys.stderr)
        return 2
    import tensorflow_datasets as tfds

    builder = tfds.builder("imagenet2012", data_dir=args.data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir))
    print(f"prepared {builder.data_dir}")
    return 0


def _check(args) -> int:
    from masnn_jax.data.images.config import build
    from masnn_jax.data.images.transforms import ImageDecodeError, decode_image

    cfg = {"name": args.name, "root": args.root}
    if args.source:
        cfg["source"] = args.source
    bad = 0
    for split in ("train", "test"):
        ds = build(cfg, split)
        print(f"{split}: {len(ds)} images, {ds.num_classes} classes", flush=True)
        for i in range(len(ds)):
            data, _, origin = ds.source.record(i)
            try:
                decode_image(data, origin)
            except ImageDecodeError as e:
                bad += 1
                print(f"unreadable: {e}")
    return 1 if bad else 0


def main(argv=None) -> int:
    """Entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m masnn_jax.data.images", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write-digits", help="write the digits ImageFolder + ArrayRecord copy")
    w.add_argument("dir")
    w.add_argument("--image-size", type=int, default=32)
    w.add_argument("--val-fraction", type=float, default=0.2)
    w.add_argument("--per-class", type=int, default=None)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--no-array-record", action="store_true")
    w.add_argument("--overwrite", action="store_true")
    q = sub.add_parser("prepare-imagenet", help="prepare imagenet2012 as ArrayRecord (needs TensorFlow)")
    q.add_argument("--manual_dir", required=True)
    q.add_argument("--data_dir", required=True)
    c = sub.add_parser("check", help="build both splits and decode every image")
    c.add_argument("--name", required=True)
    c.add_argument("--root", required=True)
    c.add_argument("--source", default=None)
    args = p.parse_args(argv)
    try:
        return {"write-digits": _write_digits, "prepare-imagenet": _prepare_imagenet, "check": _check}[
            args.command](args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
