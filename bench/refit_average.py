"""What averaging refits buys: ``--refit-seeds``' default, measured.

``python -m bench.refit_average POOL --holdout DIR --values JSON --split-seed S``

The shipped model is the winner refitted on train + validation, and one refit is one draw of
its training seed: its accuracy moves by a few points with it. For one configuration and the
split that ``--seed S`` makes of POOL, this benchmark trains ``--judges`` judge-like runs
(train only, ``--epochs`` epochs, the best validation epoch) whose median best epoch sets the
refits' epochs, as the tool does, then ``--refits`` refits with different seeds, as the
default refit trains (``bench.holdout_gap.refitted``), and scores each refit and the average
of their class probabilities on the split's test images and on DIR, photos the pool does not
hold. One JSON line per configuration; the gain is the average's accuracy minus the mean of
the single refits'.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def averaged(probs: Sequence[np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """Each model's accuracy, the accuracy of their averaged class probabilities, and that
    minus the mean of the single accuracies (``gain``), as fractions."""
    single = [float(np.mean(np.argmax(p, axis=1) == labels)) for p in probs]
    mean = np.mean([np.asarray(p, dtype=np.float64) for p in probs], axis=0)
    average = float(np.mean(np.argmax(mean, axis=1) == labels))
    return {"single": single, "average": average, "gain": average - statistics.mean(single)}


def best_epoch(data: Any, params: Any, seed: int, epochs: int) -> int:
    """A judge-like run's best validation epoch (1-based; ties: the earlier)."""
    import keras

    from models.alexnet import build_alexnet, compile_alexnet

    keras.utils.set_random_seed(seed)
    train = data.training_dataset(("train",), 125, seed=seed)
    x_val, y_val = data.arrays("validation")
    model = build_alexnet(params)
    compile_alexnet(model, params)
    scores = []
    for _ in range(epochs):
        model.fit(train, epochs=1, verbose=0)
        probs = model.predict(x_val, batch_size=125, verbose=0)
        scores.append(float(np.mean(np.argmax(probs, axis=1) == y_val)))
    keras.backend.clear_session()
    return int(np.argmax(scores)) + 1


def run(
    pool: Path,
    holdout: Path,
    *,
    values: dict[str, Any],
    split_seed: int,
    judges: int,
    refits: int,
    epochs: int,
    image_size: int,
    width: float,
) -> dict[str, Any]:
    import keras

    from bench.holdout_gap import holdout_arrays, refitted, tool_precision
    from data_pipeline.pipeline import DataConfig, prepare
    from models.alexnet import AlexNetParams

    tool_precision()
    params = AlexNetParams(image_size=image_size, width=width, **values)
    data = prepare(DataConfig(data_dir=pool, image_size=image_size, seed=split_seed))
    sets = {
        "test": data.arrays("test"),
        "holdout": holdout_arrays(holdout, data.classes, image_size),
    }
    bests = [best_epoch(data, params, 201 + i, epochs) for i in range(judges)]
    refit_epochs = max(1, math.ceil(statistics.median(bests)))  # as search.confirm.refit_epochs
    probs: dict[str, list[np.ndarray]] = {name: [] for name in sets}
    for i in range(refits):
        model = refitted(data, params, 1201 + i, refit_epochs)
        for name, (x, _) in sets.items():
            probs[name].append(model.predict(x, batch_size=125, verbose=0))
        keras.backend.clear_session()
    out: dict[str, Any] = {"split_seed": split_seed, "values": values}
    out |= {"judge_best_epochs": bests, "refit_epochs": refit_epochs}
    for name, (_, y) in sets.items():
        out[name] = averaged(probs[name], y) | {"n": len(y)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from bench.holdout_gap import add_emulation_args

    p = argparse.ArgumentParser(prog="python -m bench.refit_average", description=__doc__)
    add_emulation_args(p)
    p.add_argument("--split-seed", type=int, default=1337, help="--seed of the run to emulate")
    p.add_argument("--judges", type=int, default=3, help="judge-like runs setting the epochs")
    p.add_argument("--refits", type=int, default=2, help="refits averaged")
    args = p.parse_args(argv)
    if args.judges < 1 or args.refits < 2:
        p.error(
            f"--judges must be 1 or more and --refits 2 or more, got {args.judges}, {args.refits}"
        )
    out = run(
        args.pool,
        args.holdout,
        values=json.loads(args.values),
        split_seed=args.split_seed,
        judges=args.judges,
        refits=args.refits,
        epochs=args.epochs,
        image_size=args.image_size,
        width=args.width,
    )
    print(json.dumps(out), flush=True)
    held = out["holdout"]
    print(
        f"{args.refits} refits ({out['refit_epochs']} epochs) on {held['n']} further photos: "
        + ", ".join(f"{a:.4f}" for a in held["single"])
        + f"; averaged {held['average']:.4f} ({100 * held['gain']:+.1f} points over their mean)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
