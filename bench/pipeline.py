"""``python -m bench.pipeline``: images/s of the blog's input pipeline against ours.

(a) the blog's: list files, read, decode, resize, /255, every epoch; (b) ours, first epoch with a
cold cache (discover, hash, decode once, iterate); (c) ours, a later epoch (warm cache). Each
over the whole set; (a) and (b) are timed from nothing, pipeline construction included.
``--fresh-rounds`` also times (a) and (b) each in a new process (after importing TensorFlow),
as a user's first run meets them: with no memory the process touched before.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from data_pipeline.pipeline import DataConfig, prepare, resolve_root


def blog_dataset(root: Path, image_size: int, batch_size: int):
    """The blog post's pipeline, as written there (labels by regex over the whole path)."""
    import tensorflow as tf

    def process_path(file_path):
        label = tf.cast(tf.strings.regex_full_match(file_path, ".*cat.*"), tf.int32)
        img = tf.io.read_file(file_path)
        img = tf.image.decode_jpeg(img, channels=3)
        img = tf.image.resize(img, [image_size, image_size]) / 255.0
        return img, label

    files = tf.data.Dataset.list_files(str(root / "*" / "*.jpg"), shuffle=True, seed=0)
    return (
        files.map(process_path, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def _epoch_img_s(datasets: Sequence, start: float | None = None) -> float:
    t0 = time.perf_counter() if start is None else start
    n = 0
    for ds in datasets:
        for x, _ in ds:
            n += int(x.shape[0])
    return n / (time.perf_counter() - t0)


def _blog_epoch_img_s(root: Path, image_size: int, batch_size: int) -> float:
    """The blog's first epoch from nothing: building its pipeline counts, as ours does."""
    t0 = time.perf_counter()
    return _epoch_img_s([blog_dataset(root, image_size, batch_size)], start=t0)


def _ours(args: argparse.Namespace, cache_root: Path) -> tuple[float, float, int]:
    """One round of ours: first epoch from nothing (cold cache), then the best of two warm
    epochs. Everything it built is released on return, so each round starts alike."""
    t0 = time.perf_counter()
    data = prepare(
        DataConfig(data_dir=args.data_dir, image_size=args.image_size, cache_root=cache_root)
    )
    datasets = data.datasets(args.batch_size)
    first = _epoch_img_s(datasets, start=t0)
    cached = max(_epoch_img_s(datasets) for _ in range(2))
    return first, cached, len(data.cached.files)


def _child(args: argparse.Namespace) -> int:
    """One first epoch in this (new) process, after the same TensorFlow warm-up as main()."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as scratch:
        root = resolve_root(args.data_dir, Path(scratch))
        _epoch_img_s([blog_dataset(root, args.image_size, args.batch_size).take(1)])
        if args.child == "blog":
            img_s = _blog_epoch_img_s(root, args.image_size, args.batch_size)
        else:
            img_s = _ours(args, Path(scratch) / "cache")[0]
    print(json.dumps({"img_s": img_s}))
    return 0


def _fresh(args: argparse.Namespace, which: str) -> float:
    cmd = [sys.executable, "-m", "bench.pipeline", "--child", which, "--data-dir"]
    cmd += [str(args.data_dir), "--image-size", str(args.image_size)]
    cmd += ["--batch-size", str(args.batch_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["img_s"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    p.add_argument("--data-dir", type=Path, required=True, help="blog layout: train/ and test/")
    p.add_argument("--image-size", type=int, default=227)
    p.add_argument("--batch-size", type=int, default=125)
    p.add_argument("--repeats", type=int, default=7, help="alternating rounds (medians)")
    p.add_argument(
        "--fresh-rounds", type=int, default=5, help="alternating new-process rounds (0: none)"
    )
    p.add_argument("--child", choices=["blog", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        return _child(args)

    blog, first, cached = [], [], []
    scratch = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        root = resolve_root(args.data_dir, scratch)
        _epoch_img_s([blog_dataset(root, args.image_size, args.batch_size).take(1)])  # TF warm-up
        # Alternate the three measurements so that machine noise hits each alike; report medians.
        for rep in range(args.repeats):
            blog.append(_blog_epoch_img_s(root, args.image_size, args.batch_size))
            first_img_s, cached_img_s, images = _ours(args, scratch / f"cache-{rep}")
            first.append(first_img_s)
            cached.append(cached_img_s)
            os.sync()  # the cache's dirty pages hit the disk now, not during the next round
            shutil.rmtree(scratch / f"cache-{rep}")  # and its memory is free again
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "image_size": args.image_size,
        "images": images,
        "repeats": args.repeats,
        "blog_img_s": round(statistics.median(blog), 1),
        "first_epoch_img_s": round(statistics.median(first), 1),
        "cached_img_s": round(statistics.median(cached), 1),
    }
    result["rounds"] = {
        "blog_img_s": [round(v) for v in blog],
        "first_epoch_img_s": [round(v) for v in first],
        "cached_img_s": [round(v) for v in cached],
    }
    result["first_epoch_vs_blog"] = round(result["first_epoch_img_s"] / result["blog_img_s"], 2)
    result["cached_vs_blog"] = round(result["cached_img_s"] / result["blog_img_s"], 1)
    if args.fresh_rounds:
        fresh: dict[str, list[float]] = {"blog": [], "ours": []}
        for _ in range(args.fresh_rounds):
            for which in fresh:
                fresh[which].append(_fresh(args, which))
        result["fresh_process"] = {
            "blog_img_s": round(statistics.median(fresh["blog"]), 1),
            "first_epoch_img_s": round(statistics.median(fresh["ours"]), 1),
            "rounds": {k: [round(v) for v in vs] for k, vs in fresh.items()},
        }
        result["fresh_process"]["first_epoch_vs_blog"] = round(
            statistics.median(fresh["ours"]) / statistics.median(fresh["blog"]), 2
        )
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>18}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
