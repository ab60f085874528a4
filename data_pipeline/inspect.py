"""``python -m data_pipeline.inspect DATA_DIR``: what a data folder holds, before any training."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_pipeline import cache as image_cache
from data_pipeline.discover import (
    DEFAULT_SEED,
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    SPLITS,
    layout_name,
)
from data_pipeline.errors import DataError
from data_pipeline.pipeline import DataConfig, find_images
from data_pipeline.progress import progress_bars


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data_pipeline.inspect", description=__doc__)
    p.add_argument("data_dir", type=Path, help="data folder or .zip (any supported layout)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="split seed (default %(default)s)"
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help="validation share of train/ (or of all images without a test folder; "
        "default %(default)s)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=DEFAULT_TEST_FRACTION,
        help="test share for layouts without a test/ folder (default %(default)s)",
    )
    p.add_argument("--subset", type=int, default=None, help="stratified sample of N images")
    p.add_argument("--image-size", type=int, default=227, help="size whose cache status to show")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"cache root (default ${image_cache.CACHE_ENV} or ~/.cache/alexnet-tuner)",
    )
    return p


def _size_stats(sizes: dict[str, tuple[int, int]]) -> dict[str, object]:
    if not sizes:
        return {}
    wh = np.array(list(sizes.values()))

    def stats(col: np.ndarray) -> dict[str, float]:
        return {"min": int(col.min()), "median": float(np.median(col)), "max": int(col.max())}

    return {
        "width": stats(wh[:, 0]),
        "height": stats(wh[:, 1]),
        "smaller_than_227": int(((wh[:, 0] < 227) | (wh[:, 1] < 227)).sum()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cache_root = args.cache_dir or image_cache.default_cache_root()
    try:
        found = find_images(
            DataConfig(
                data_dir=args.data_dir,
                image_size=args.image_size,
                seed=args.seed,
                val_fraction=args.val_fraction,
                test_fraction=args.test_fraction,
                subset=args.subset,
                cache_root=cache_root,
            )
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache_dir = image_cache.cache_dir_for(found, cache_root)
    with progress_bars(enabled=not args.json and sys.stderr.isatty()) as progress:
        result = image_cache.scan(found, cache_dir, progress=progress)
    bad = {r.path for r in result.rejects}
    files = [f for f in found.files if f.path not in bad]
    counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for f in files:
        counts[f.split][f.label] = counts[f.split].get(f.label, 0) + 1
    cached = image_cache.is_cached(cache_dir, args.image_size)
    report = {
        "data_dir": str(args.data_dir),
        "layout": found.layout,
        "classes": list(found.classes),
        "counts": counts,
        "files": [{"path": f.path, "split": f.split, "label": f.label} for f in files],
        "skipped": [{"path": r.path, "reason": r.reason} for r in result.rejects],
        "unlabelled": list(found.unlabelled),
        "image_sizes": _size_stats(result.sizes),
        "notes": list(found.notes),
        "cache": {"dir": str(cache_dir), "image_size": args.image_size, "cached": cached},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{args.data_dir}: {layout_name(found.layout)} layout, classes {', '.join(found.classes)}"
    )
    for split, per_class in counts.items():
        detail = ", ".join(f"{c} {n:,}" for c, n in sorted(per_class.items()))
        print(f"  {split:<10} {sum(per_class.values()):>7,}  ({detail})")
    print(
        f"  skipped {len(result.rejects):,} of {len(found.files):,} files"
        + (":" if result.rejects else "")
    )
    for r in result.rejects:
        print(f"    {r.path}: {r.reason}")
    if found.unlabelled:
        print(
            f"  unlabelled {len(found.unlabelled):,} files (not used), e.g. {found.unlabelled[0]}"
        )
    for note in found.notes:
        print(f"  note: {note}")
    s = report["image_sizes"]
    if s:
        w, h = s["width"], s["height"]  # type: ignore[index]
        print(
            f"  image width {w['min']}-{w['max']} (median {w['median']:.0f}), "
            f"height {h['min']}-{h['max']} (median {h['median']:.0f})"
        )
    print(f"  cache {cache_dir}: {args.image_size}px {'ready' if cached else 'not built yet'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
