"""``python -m bench.precision --precision mixed_bfloat16``: training and evaluation images/s
of the project's AlexNet under one Keras precision policy, on random uint8 images, in this
process alone (run each policy in a fresh process, alternating, to compare them).

Also the train step's achieved GFLOP/s (3x the forward pass's multiply-adds x 2, per image)
against the machine's measured peak for that precision (a large matrix product in the same
dtype): how close the epochs are to the limit of the hardware.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any


def forward_flops(model: Any) -> float:
    """Floating-point operations of one image's forward pass (2 per multiply-add), from the
    convolution and dense layers' shapes; LRN, pooling and activations are left out."""
    import keras

    flops = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            flops += 2.0 * kh * kw * cin * cout * h * w
        elif isinstance(layer, keras.layers.Dense):
            n_in, n_out = layer.kernel.shape
            flops += 2.0 * n_in * n_out
    return flops


def peak_gflops(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """The best of a few ``n x n`` matrix products in ``dtype``: a practical peak."""
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    tf.linalg.matmul(a, a)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        tf.linalg.matmul(a, a).numpy()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def measure(precision: str, image_size: int, width: float, batch: int, steps: int) -> dict:
    import keras
    import numpy as np

    from models.alexnet import AlexNetParams, build_alexnet, compile_alexnet
    from search.trial.process import step_seconds

    keras.mixed_precision.set_global_policy(precision)
    params = AlexNetParams(image_size=image_size, width=width)
    model = build_alexnet(params)
    compile_alexnet(model, params, jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8)
    y = rng.integers(0, 2, batch)
    train_s, eval_s = step_seconds(model, x, y, train_steps=steps, eval_steps=steps)
    step_flops = 3.0 * forward_flops(model) * batch  # forward + two backward products
    compute = (
        "bfloat16" if "bfloat16" in precision else "float16" if "16" in precision else "float32"
    )
    peak = peak_gflops(compute)
    return {
        "precision": precision,
        "train_img_s": round(batch / train_s, 1),
        "eval_img_s": round(batch / eval_s, 1),
        "train_gflops": round(step_flops / train_s / 1e9, 1),
        "peak_gflops": round(peak, 1),
        "share_of_peak": round(step_flops / train_s / 1e9 / peak, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.precision", description=__doc__)
    p.add_argument("--precision", default="float32")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=125)
    p.add_argument("--steps", type=int, default=8)
    args = p.parse_args(argv)
    print(
        json.dumps(measure(args.precision, args.image_size, args.width, args.batch, args.steps)),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
