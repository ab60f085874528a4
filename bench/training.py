"""``python -m bench.training``: how much the input pipeline and the search cost around ``fit``.

(a) Training images/s of the same model through our tf.data pipeline and through ``model.fit``
on the same images already in memory (uint8 arrays, the model's input): the pipeline's
overhead.
(b) With ``--run-dir``: the share of a finished search's wall time spent outside
``model.fit`` (worker start-up, warm-up, checkpoints, export, report), from its results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def pipeline_overhead(
    data_dir: Path, image_size: int, width: float, batch_size: int, epochs: int
) -> dict[str, Any]:
    import keras

    from data_pipeline.pipeline import DataConfig, prepare
    from models.alexnet import AlexNetParams, build_alexnet, compile_alexnet

    data = prepare(DataConfig(data_dir=data_dir, image_size=image_size))
    train, _ = data.datasets(batch_size)
    x, y = data.arrays("train")
    params = AlexNetParams(image_size=image_size, width=width)

    class Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.times.append(time.perf_counter() - self.t0)

    def img_s(source: str) -> float:
        keras.utils.set_random_seed(0)
        model = build_alexnet(params)
        compile_alexnet(model, params, jit_compile=False)
        timer = Timer()
        if source == "pipeline":
            model.fit(train, epochs=epochs, verbose=0, callbacks=[timer])
        else:
            model.fit(
                x,
                y,
                batch_size=batch_size,
                epochs=epochs,
                verbose=0,
                callbacks=[timer],
            )
        keras.backend.clear_session()
        return len(y) / statistics.median(timer.times[1:])  # the first epoch traces

    # alternate the two so that machine noise hits both alike
    memory, pipeline = [], []
    for _ in range(2):
        memory.append(img_s("memory"))
        pipeline.append(img_s("pipeline"))
    m, p = statistics.median(memory), statistics.median(pipeline)
    return {
        "image_size": image_size,
        "width": width,
        "train_images": len(y),
        "in_memory_img_s": round(m, 1),
        "pipeline_img_s": round(p, 1),
        "pipeline_overhead_pct": round(100 * (1 - p / m), 1),
    }


def search_overhead(run_dir: Path) -> dict[str, Any]:
    import pandas as pd

    trials = pd.read_csv(run_dir / "trials.csv")
    status = json.loads((run_dir / "status.json").read_text())
    fit = float(trials["fit_seconds"].sum())
    wall = float(status["wall_seconds"])
    return {
        "run_dir": str(run_dir),
        "trials": len(trials),
        "wall_seconds": round(wall, 1),
        "fit_seconds": round(fit, 1),
        "outside_fit_pct": round(100 * (1 - fit / wall), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, help="measure (a) on this data set")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=125)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--run-dir", type=Path, help="measure (b) on this finished search")
    args = p.parse_args(argv)
    out: dict[str, Any] = {}
    if args.data_dir:
        out["pipeline"] = pipeline_overhead(
            args.data_dir, args.image_size, args.width, args.batch_size, args.epochs
        )
    if args.run_dir:
        out["search"] = search_overhead(args.run_dir)
    if not out:
        p.error("give --data-dir, --run-dir or both")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
