"""What ``--tta flip`` buys, measured on runs exported without it.

``python -m bench.mirror RUN_DIR... --holdout DIR [--stock-json FILE...]``

Each run's exported SavedModel (``--tta none``, as every export before the option) scores the
labelled photos of DIR, which no run saw, through its ``serve`` signature on the pixels the
training path makes of them: once as they are, once mirrored left to right, and the mean of
the two class-probability vectors, which is what ``--tta flip`` ships. The gain is that
accuracy minus the plain one, paired per photo. With ``--stock-json`` (``bench.shipped``'s
``--out`` file, or its work directory's ``stock.json``, of the same runs in the same order,
scored on the same DIR) each run's mirrored
model is also paired with stock Keras Tuner's shipped model. One JSON line per run, then the
mean over runs with a 95% t interval (the runs are the replicates).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.shipped import holdout_images, paired


def views(serve: Any, pixels: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``serve``'s class probabilities on ``pixels`` and on their mirror images."""
    import tensorflow as tf

    def probs(x: np.ndarray) -> np.ndarray:
        out = [serve(tf.constant(x[i : i + batch])) for i in range(0, len(x), batch)]
        return np.concatenate([next(iter(o.values())).numpy() for o in out])

    return probs(pixels), probs(np.ascontiguousarray(pixels[:, :, ::-1]))


def scored(plain: np.ndarray, mirrored: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per photo, whether each way of looking labels it right (``tta``: the mean of both)."""
    return {
        "plain": np.argmax(plain, axis=1) == y,
        "mirrored": np.argmax(mirrored, axis=1) == y,
        "tta": np.argmax(plain + mirrored, axis=1) == y,
    }


def mean_t95(values: Sequence[float]) -> dict[str, Any]:
    """The mean of ``values`` with a 95% t interval (None under two values)."""
    from scipy import stats

    v = np.asarray(values, float)
    if v.size < 2:
        return {"n": int(v.size), "mean": float(v.mean()) if v.size else None, "ci95": None}
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return {"n": int(v.size), "mean": float(v.mean()), "ci95": [v.mean() - half, v.mean() + half]}


def measure(run_dir: Path, holdout: Path, stock_json: Path | None) -> dict[str, Any]:
    import tensorflow as tf

    from data_pipeline.images import decode_files
    from search.rundir import RunConfig

    export = json.loads((run_dir / "export.json").read_text())
    if export.get("tta", "none") != "none":
        raise SystemExit(
            f"error: {run_dir}: its export already averages mirror images (--tta "
            f"{export['tta']}); measure runs exported with --tta none."
        )
    config = RunConfig.read(run_dir)
    paths, y = holdout_images(holdout, config.classes)
    size = config.image_size
    pixels = np.zeros((len(paths), size, size, 3), np.uint8)
    bad = [
        str(p) for p, d in zip(paths, decode_files(paths, size, out=pixels), strict=True) if d.error
    ]
    if bad:
        raise SystemExit(f"error: --holdout {holdout}: cannot decode {', '.join(bad[:3])}")
    serve = tf.saved_model.load(str(run_dir / "best_model")).signatures["serve"]
    right = scored(*views(serve, pixels), y)
    out: dict[str, Any] = {
        "run": str(run_dir),
        "n": len(y),
        **{k: float(v.mean()) for k, v in right.items()},
        "gain": paired(right["tta"].astype(int), right["plain"].astype(int)),
    }
    if stock_json:
        saved = json.loads(stock_json.read_text())
        stock = saved.get("stock", saved)["correct"]  # --out's file or the work dir's stock.json
        if len(stock) != len(y):
            raise SystemExit(f"error: {stock_json} scored {len(stock)} photos, DIR has {len(y)}")
        out["stock"] = float(np.mean(stock))
        out["plain_minus_stock"] = paired(right["plain"].astype(int), stock)
        out["tta_minus_stock"] = paired(right["tta"].astype(int), stock)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mirror", description=__doc__)
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--holdout", type=Path, required=True, help="labelled photos no run saw")
    p.add_argument("--stock-json", type=Path, nargs="*", default=[], metavar="FILE")
    args = p.parse_args(argv)
    if args.stock_json and len(args.stock_json) != len(args.run_dirs):
        p.error(
            f"--stock-json needs one file per RUN_DIR ({len(args.run_dirs)}), "
            f"got {len(args.stock_json)}"
        )
    rows = []
    for i, run_dir in enumerate(args.run_dirs):
        rows.append(measure(run_dir, args.holdout, args.stock_json[i] if args.stock_json else None))
        print(json.dumps(rows[-1]), flush=True)
    keys = ["gain", "plain_minus_stock", "tta_minus_stock"] if args.stock_json else ["gain"]
    summary = {k: mean_t95([r[k]["points"] for r in rows]) for k in keys}
    print(json.dumps({"over_runs": summary}))
    for key, s in summary.items():
        ci = f" (95% t interval {s['ci95'][0]:+.1f} to {s['ci95'][1]:+.1f})" if s["ci95"] else ""
        ahead = sum(r[key]["points"] > 0 for r in rows)
        print(f"{key}: {s['mean']:+.1f} points over {s['n']} runs{ci}; {ahead} above 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
