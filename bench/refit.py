"""What a refit should keep: its last epoch, or the average of its last epochs' weights.

``python -m bench.refit DATA_DIR --values '{"dropout": 0.09, ...}' --epochs 16 --seeds 4``

A refit trains on train + validation, so no image is left to choose its epoch with: it keeps
what the training ends with. This benchmark trains a configuration on train only, the way a
refit would train (a fixed number of epochs), with several seeds, and scores on validation:
the last epoch's weights, the mean of the last k epochs' weights (for each k asked), and, for
reference, the best epoch chosen on those same validation images (optimistic: it is what a
judge run keeps). Test images are never read. The question it answers is about the method,
not about a model: which ending generalises better, over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _keep_class() -> type:
    import keras
    import numpy as np

    class Keep(keras.callbacks.Callback):
        """Each epoch's validation accuracy, and the running sums of the last k epochs'
        weights for each window k."""

        def __init__(self, val_ds: Any, labels: Any, epochs: int, windows: Sequence[int]):
            super().__init__()
            self.val_ds, self.labels, self.epochs, self.windows = val_ds, labels, epochs, windows
            self.per_epoch: list[float] = []
            self.sums: dict[int, Any] = dict.fromkeys(windows)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            probs = self.model.predict(self.val_ds, verbose=0)
            self.per_epoch.append(float(np.mean(np.argmax(probs, axis=1) == self.labels)))
            weights = self.model.get_weights()
            for k in self.windows:
                if epoch >= self.epochs - k:
                    acc = self.sums[k]
                    self.sums[k] = (
                        weights
                        if acc is None
                        else [a + w for a, w in zip(acc, weights, strict=True)]
                    )

    return Keep


def run(
    data_dir: Path,
    values: dict[str, Any],
    *,
    epochs: int,
    seeds: Sequence[int],
    windows: Sequence[int],
    image_size: int,
    width: float,
    subset: int | None,
    augment: bool = False,
) -> list[dict[str, Any]]:
    import keras
    import numpy as np

    from data_pipeline.pipeline import DataConfig, prepare
    from models.alexnet import AlexNetParams, build_alexnet, compile_alexnet

    data = prepare(
        DataConfig(data_dir=data_dir, image_size=image_size, subset=subset, cache_root=None)
    )
    val_ds = data.evaluation_dataset("validation", 125)
    _, labels = data.cached.split("validation")
    params = AlexNetParams(image_size=image_size, width=width, **values)
    _Keep = _keep_class()
    rows = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        train = data.training_dataset(("train",), 125, augment=augment, seed=seed)  # as a refit
        model = build_alexnet(params)
        compile_alexnet(model, params)
        keep = _Keep(val_ds, labels, epochs, windows)
        model.fit(train, epochs=epochs, verbose=0, callbacks=[keep])
        per_epoch, sums = keep.per_epoch, keep.sums
        row: dict[str, Any] = {
            "seed": seed,
            "last": per_epoch[-1],
            "best_selected": max(per_epoch),
            "best_epoch": int(np.argmax(per_epoch)) + 1,
        }
        for k in windows:
            model.set_weights([w / k for w in sums[k]])
            probs = model.predict(val_ds, verbose=0)
            row[f"mean_last_{k}"] = float(np.mean(np.argmax(probs, axis=1) == labels))
        rows.append(row)
        print(json.dumps(row), flush=True)
        keras.backend.clear_session()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.refit", description=__doc__)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--values", required=True, help="the configuration, as JSON")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--windows", default="3,6", help="k of the last-k weight averages")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--subset", type=int, default=2000)
    p.add_argument("--augment", action="store_true", help="random flips and crops, as --augment")
    args = p.parse_args(argv)
    rows = run(
        args.data_dir,
        json.loads(args.values),
        epochs=args.epochs,
        seeds=[101 + i for i in range(args.seeds)],
        windows=[int(k) for k in args.windows.split(",")],
        image_size=args.image_size,
        width=args.width,
        subset=args.subset,
        augment=args.augment,
    )
    keys = [k for k in rows[0] if k not in ("seed", "best_epoch")]
    for key in keys:
        vals = [r[key] for r in rows]
        print(f"{key:>15}: mean {statistics.mean(vals):.4f}  " + " ".join(f"{v:.4f}" for v in vals))
    for key in keys:
        if key.startswith("mean_last_"):
            diffs = [r[key] - r["last"] for r in rows]
            print(
                f"{key} - last: mean {100 * statistics.mean(diffs):+.2f} points, per seed "
                + " ".join(f"{100 * d:+.1f}" for d in diffs)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
