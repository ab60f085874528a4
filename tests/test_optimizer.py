"""The fused Adam trains as Keras' Adam does, on every path a training takes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.alexnet import AlexNetParams, build_alexnet, compile_alexnet
from models.optimizer import FusedAdam

ROOT = Path(__file__).resolve().parents[1]
PARAMS = AlexNetParams(image_size=67, width=0.125, dense_units=16, learning_rate=1e-3)


def _trained(
    *,
    fused: bool,
    policy: str = "float32",
    jit_compile: bool = False,
    steps: int = 4,
    strategy: Any = None,
) -> list[np.ndarray]:
    """A tiny AlexNet's weights (and its optimizer's slots) after ``steps`` steps from fixed
    initial weights on fixed batches, built under ``strategy``'s scope when one is given."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(3)
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model = build_alexnet(PARAMS)
            compile_alexnet(model, PARAMS, jit_compile=jit_compile, fused=fused)
        rng = np.random.default_rng(0)
        for _ in range(steps):
            x = rng.integers(0, 256, (8, 67, 67, 3), dtype=np.uint8)
            model.train_on_batch(x, rng.integers(0, 2, 8))
        return [np.asarray(v, np.float32) for v in model.weights + model.optimizer.variables]
    finally:
        keras.mixed_precision.set_global_policy("float32")


def assert_same_training(fused: list[np.ndarray], stock: list[np.ndarray]) -> None:
    """Equal up to float32 rounding, and trained: most values moved from zero."""
    assert len(fused) == len(stock)
    moved = 0
    for a, b in zip(fused, stock, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        moved += int(np.any(a != 0))
    assert moved > len(fused) // 2  # the comparison is of trained values, not of zeros


@pytest.mark.parametrize(
    ("policy", "jit_compile", "steps"),
    [
        ("float32", False, 4),
        ("float32", True, 4),
        # one step: a rounding apart in float32 weights can round apart in bfloat16 activations
        ("mixed_bfloat16", False, 1),
        ("mixed_float16", False, 1),
    ],
)
def test_the_fused_update_is_keras_adams(policy: str, jit_compile: bool, steps: int) -> None:
    """Same weights, slots and step count as Keras' Adam, up to float32 rounding; float16 goes
    through the loss-scale wrapper, ``jit_compile`` through XLA."""
    fused = _trained(fused=True, policy=policy, jit_compile=jit_compile, steps=steps)
    stock = _trained(fused=False, policy=policy, jit_compile=jit_compile, steps=steps)
    assert_same_training(fused, stock)


def test_the_fused_kernel_is_what_runs() -> None:
    """The traced update holds TensorFlow's one-kernel Adam and none of Keras' element-wise
    update; AMSGrad keeps Keras' own."""
    var = keras.Variable(np.ones((4, 4), np.float32))

    def ops_of(optimizer: keras.optimizers.Optimizer) -> set[str]:
        optimizer.build([var])
        fn = tf.function(lambda: optimizer.apply([tf.ones((4, 4))], [var]))
        return {op.type for op in fn.get_concrete_function().graph.get_operations()}

    assert "ResourceApplyAdam" in ops_of(FusedAdam(1e-3))
    assert "Sqrt" not in ops_of(FusedAdam(1e-3))
    assert "ResourceApplyAdam" not in ops_of(FusedAdam(1e-3, amsgrad=True))


def test_the_exported_compile_names_keras_adam(tmp_path: Path) -> None:
    """Training compiles the fused Adam; ``fused=False`` (the export's) saves a file whose
    optimizer stock Keras knows."""
    model = build_alexnet(PARAMS)
    compile_alexnet(model, PARAMS)
    assert type(model.optimizer) is FusedAdam
    model = build_alexnet(PARAMS)
    compile_alexnet(model, PARAMS, fused=False)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert type(again.optimizer) is keras.optimizers.Adam


# Logical devices must be set before TensorFlow starts: a fresh process, this module's helpers.
MIRRORED = textwrap.dedent(
    """
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tests.test_optimizer import _trained, assert_same_training
    strategy = tf.distribute.MirroredStrategy(
        devices=["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    assert strategy.num_replicas_in_sync == 2
    fused, stock = (_trained(fused=f, strategy=strategy) for f in (True, False))
    assert_same_training(fused, stock)
    print("equal")
    """
)


def test_the_fused_update_under_a_mirrored_strategy() -> None:
    """Two replicas on two logical CPUs (the path of several GPUs): each replica's copy is
    updated by the fused kernel, equal to Keras' Adam."""
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "equal"
