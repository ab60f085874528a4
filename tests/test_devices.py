"""Precision and device choices for hardware this machine does not have."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from models.alexnet import AlexNetParams, build_alexnet, compile_alexnet, float32_twin
from search.devices import ONEDNN_ENV, ONEDNN_MACHINES, ask_for_onednn, choose, cpu_flags

AMX = frozenset({"fpu", "avx512f", "amx_bf16", "amx_tile", "amx_int8"})
NO_AMX = frozenset({"fpu", "avx2", "avx512f"})


@pytest.mark.parametrize(
    ("gpus", "flags", "policy", "xla", "why"),
    [
        (0, AMX, "mixed_bfloat16", False, "has AMX"),
        (0, NO_AMX | {"avx512_bf16"}, "mixed_bfloat16", False, "has AVX-512 BF16"),
        (0, NO_AMX, "float32", False, "no AMX"),
        (0, frozenset(), "float32", False, "no AMX"),
        (0, frozenset({"amx_tile"}), "float32", False, "no AMX"),  # tiles without bf16
        (1, NO_AMX, "mixed_float16", True, "GPU"),
        (2, AMX, "mixed_float16", True, "GPU"),
    ],
)
def test_auto_follows_the_hardware(
    gpus: int, flags: frozenset[str], policy: str, xla: bool, why: str
) -> None:
    choice = choose("auto", "auto", gpus=gpus, flags=flags)
    assert (choice.policy, choice.xla) == (policy, xla)
    assert why in choice.reason


@pytest.mark.parametrize("precision", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("gpus", [0, 1])
def test_a_forced_value_is_honoured_whatever_the_hardware(precision: str, gpus: int) -> None:
    for flags in (AMX, NO_AMX):
        choice = choose(precision, "on", gpus=gpus, flags=flags)
        assert choice.policy == precision and choice.xla
        assert choice.reason == f"--precision {precision}"
    assert not choose("auto", "off", gpus=1, flags=AMX).xla


@pytest.mark.parametrize(
    ("machine", "before", "after"),
    [
        ("x86_64", None, "1"),  # asked for where TensorFlow may leave them off
        ("AMD64", None, "1"),
        ("x86_64", "0", "0"),  # the user's setting wins
        ("aarch64", None, None),  # untried there: TensorFlow's own default
        ("arm64", "1", "1"),
    ],
)
def test_onednn_kernels_are_asked_for_on_x86_64_unless_the_user_chose(
    machine: str, before: str | None, after: str | None
) -> None:
    environ = {} if before is None else {ONEDNN_ENV: before}
    ask_for_onednn(machine, environ)
    assert environ.get(ONEDNN_ENV) == after


# a benchmark runs the kernels the search runs
@pytest.mark.parametrize("module", ["search", "bench.precision"])
def test_importing_the_package_asks_for_onednn_before_tensorflow_loads(module: str) -> None:
    probe = (
        f"import os, platform, sys, {module}; "
        "assert 'tensorflow' not in sys.modules, 'too late: TensorFlow loaded first'; "
        f"print(platform.machine(), os.environ.get({ONEDNN_ENV!r}))"
    )
    env = {k: v for k, v in os.environ.items() if k != ONEDNN_ENV}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    machine, value = out.stdout.split()
    assert value == ("1" if machine.lower() in ONEDNN_MACHINES else "None")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu amx_bf16 amx_tile\n")
    assert cpu_flags(info) == frozenset({"fpu", "amx_bf16", "amx_tile"})
    assert choose("auto", "auto", gpus=0, flags=cpu_flags(info)).policy == "mixed_bfloat16"
    assert cpu_flags(tmp_path / "missing") == frozenset()
    (tmp_path / "arm").write_text("processor : 0\nFeatures : fp asimd\n")
    assert cpu_flags(tmp_path / "arm") == frozenset({"fp", "asimd"})


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_model_keeps_lrn_and_softmax_in_float32(policy: str) -> None:
    keras.mixed_precision.set_global_policy(policy)
    try:
        params = AlexNetParams(image_size=67, width=0.125, dense_units=8)
        model = build_alexnet(params)
        compile_alexnet(model, params)
        assert model.get_layer("conv1").compute_dtype == policy.removeprefix("mixed_")
        assert model.get_layer("fc3").compute_dtype == "float32"
        if policy == "mixed_float16":  # float16 gradients underflow without loss scaling
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        x = np.random.default_rng(0).integers(0, 256, (4, 67, 67, 3), dtype=np.uint8)
        model.train_on_batch(x, np.array([0, 1, 0, 1]))
        probs = model.predict_on_batch(x)
        assert probs.dtype == np.float32 and np.isfinite(probs).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_the_float32_build_and_twin_serve_float32_under_any_policy() -> None:
    """The export, its latencies and every test score use a float32 model whatever the
    process trains in; the process's own policy is left as it was."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        params = AlexNetParams(image_size=67, width=0.125, dense_units=8)
        trained = build_alexnet(params)
        twin = float32_twin(trained, params)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert {layer.compute_dtype for layer in twin.layers} == {"float32"}
        for got, want in zip(twin.get_weights(), trained.get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)
    finally:
        keras.mixed_precision.set_global_policy("float32")
