"""Are the further photos harder than a split's test images? A configuration chosen by nothing.

``python -m bench.holdout_gap POOL --holdout DIR --split-seeds 7026,8026 --seeds 2``

A shipped model's claim is its accuracy on the run's test images; ``bench.shipped --holdout``
scores it on further photos, and over our emulated searches the further photos scored lower
(``bench/README.md``). Either something chose on the test images' luck, or the further photos are
harder for any model. This benchmark tells them apart: it refits the blog's configuration (or
``--values``), which no search chose, as the default refit does (train + validation of the
split that ``--seed S`` would make of POOL, ``--epochs`` epochs, the mean of the last 5 epochs'
weights), and scores it on that split's test images and on DIR. With nothing chosen, the gap is
the photos' difficulty plus chance; its interval is over runs (splits x seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from search.stats import Z95


def holdout_arrays(
    folder: Path, classes: Sequence[str], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The labelled photos of ``folder`` decoded and resized as the training cache does."""
    from bench.shipped import holdout_images
    from data_pipeline.images import decode_files

    paths, labels = holdout_images(folder, classes)
    pixels = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    decoded = decode_files(paths, size, out=pixels)
    bad = [(p, d.error) for p, d in zip(paths, decoded, strict=True) if d.error]
    if bad:
        raise SystemExit(
            f"error: --holdout {folder}: {len(bad)} of {len(paths)} photos do not decode "
            f"(first: {bad[0][0].name}: {bad[0][1]}); remove them to score the rest."
        )
    return pixels, labels


def tool_precision() -> None:
    """The precision the tool's ``--precision auto`` trains in on this CPU (no GPU: the cpu
    preset)."""
    import keras

    from search.devices import choose, cpu_flags

    keras.mixed_precision.set_global_policy(choose("auto", "off", gpus=0, flags=cpu_flags()).policy)


def refitted(data: Any, params: Any, seed: int, epochs: int) -> Any:
    """A model trained as the default refit is: on train + validation of ``data`` for
    ``epochs``, its weights the mean of its last ``refit_window(epochs)`` epochs'. Scored in
    the training policy: the benchmarks compare such models with each other."""
    import keras

    from models.alexnet import build_alexnet, compile_alexnet
    from models.checkpoint import TailMean
    from search.confirm import refit_window

    keras.utils.set_random_seed(seed)
    train = data.training_dataset(("train", "validation"), 125, seed=seed)
    model = build_alexnet(params)
    compile_alexnet(model, params)
    tail = TailMean(epochs, refit_window(epochs))
    for epoch in range(1, epochs + 1):
        model.fit(train, epochs=1, verbose=0)
        if tail.covers(epoch):
            tail.add(epoch, model.get_weights())
    model.set_weights(tail.mean())
    return model


def run(
    pool: Path,
    holdout: Path,
    *,
    values: dict[str, Any],
    split_seeds: Sequence[int],
    seeds: Sequence[int],
    epochs: int,
    image_size: int,
    width: float,
) -> list[dict[str, Any]]:
    import keras

    from data_pipeline.pipeline import DataConfig, prepare
    from models.alexnet import AlexNetParams

    tool_precision()
    params = AlexNetParams(image_size=image_size, width=width, **values)
    rows = []
    more: tuple[np.ndarray, np.ndarray] | None = None  # the same photos for every split
    for split_seed in split_seeds:
        data = prepare(DataConfig(data_dir=pool, image_size=image_size, seed=split_seed))
        x_test, y_test = data.arrays("test")
        if more is None:  # decoded once: the classes come from the pool's first split
            more = holdout_arrays(holdout, data.classes, image_size)
        x_more, y_more = more
        for seed in seeds:
            model = refitted(data, params, seed, epochs)
            row: dict[str, Any] = {"split_seed": split_seed, "seed": seed}
            for name, x, y in (("test", x_test, y_test), ("holdout", x_more, y_more)):
                probs = model.predict(x, batch_size=125, verbose=0)
                row[name] = float(np.mean(np.argmax(probs, axis=1) == y))
                row[f"n_{name}"] = len(y)
            row["gap"] = row["holdout"] - row["test"]
            rows.append(row)
            print(json.dumps(row), flush=True)
            keras.backend.clear_session()
    return rows


def add_emulation_args(p: argparse.ArgumentParser) -> None:
    """The arguments of a benchmark that emulates runs of one configuration on a pool's splits
    and scores them on further photos (the cpu preset's image size and width by default)."""
    p.add_argument("pool", type=Path, help="the labelled photos a run is given")
    p.add_argument("--holdout", type=Path, required=True, help="further photos, not in POOL")
    p.add_argument("--values", default="{}", help="the configuration as JSON (default: the blog's)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.holdout_gap", description=__doc__)
    add_emulation_args(p)
    p.add_argument("--split-seeds", default="7026,8026", help="--seed of the runs to emulate")
    p.add_argument("--seeds", type=int, default=2, help="training seeds per split")
    args = p.parse_args(argv)
    rows = run(
        args.pool,
        args.holdout,
        values=json.loads(args.values),
        split_seeds=[int(s) for s in args.split_seeds.split(",")],
        seeds=[101 + i for i in range(args.seeds)],
        epochs=args.epochs,
        image_size=args.image_size,
        width=args.width,
    )
    gaps = [100 * r["gap"] for r in rows]
    mean = statistics.mean(gaps)
    spread = ""
    if len(gaps) > 1:  # an interval over runs needs two
        half = Z95 * statistics.stdev(gaps) / len(gaps) ** 0.5
        spread = f" (normal 95% interval {mean - half:+.1f} to {mean + half:+.1f})"
    print(
        f"holdout - test over {len(gaps)} run{'s' if len(gaps) > 1 else ''}: {mean:+.1f} "
        f"points{spread}; per run " + " ".join(f"{g:+.1f}" for g in gaps)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
