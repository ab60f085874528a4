"""Which precision, compiler and CPU kernels a trial trains with, chosen from the hardware.

The choice is a pure function of what the machine has (GPUs, the CPU's feature flags), so
tests decide it for hardware they do not have; ``cpu_flags`` is the only reader of the machine,
and ``ask_for_onednn`` (an environment variable, set as the package loads) its one side effect.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
XLA_MODES = ("auto", "on", "off")

# CPU features that oneDNN (TensorFlow's CPU kernels) uses for bfloat16 convolutions and
# matrix products. Intel AMX tiles: 1.6-2.5x faster training than float32 on a 2-core AMX Xeon
# (issue 22). AVX-512 BF16 without AMX: 1.43x faster training, 1.47x faster evaluation on a
# 2-core AMD EPYC (bench/README.md, "Precision"). Without either bfloat16 is emulated: 40%
# slower on a 2-core Xeon of the AMX machine's kind.
AMX_FLAGS = ("amx_bf16", "amx_tile")
AVX512_BF16 = "avx512_bf16"

# oneDNN's CPU kernels: TensorFlow turns them on by itself only on x86 CPUs with AVX-512 VNNI,
# AVX-512 BF16, AVX-VNNI or AMX, and runs Eigen's elsewhere. On a 2-core AVX2-only AMD EPYC,
# oneDNN's trained the CPU preset's AlexNet 1.5x faster in float32 (evaluation 0.9x): see
# bench/README.md, "oneDNN's kernels on every x86-64 CPU". Untried on ARM, so left to TF there.
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
ONEDNN_MACHINES = ("x86_64", "amd64")


@dataclass(frozen=True)
class DeviceChoice:
    policy: str  # a Keras mixed-precision policy name
    xla: bool
    reason: str  # one clause for the plan: why this precision


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def ask_for_onednn(machine: str, environ: MutableMapping[str, str] = os.environ) -> None:
    """Ask TensorFlow for oneDNN's kernels on an x86-64 ``machine`` (``platform.machine()``),
    unless ``TF_ENABLE_ONEDNN_OPTS`` is set already: the user's setting wins. Takes effect only
    before TensorFlow loads, so ``search/__init__.py`` calls it."""
    if machine.lower() in ONEDNN_MACHINES:
        environ.setdefault(ONEDNN_ENV, "1")


def has_amx(flags: frozenset[str]) -> bool:
    return all(flag in flags for flag in AMX_FLAGS)


def bf16_hardware(flags: frozenset[str]) -> str | None:
    """The CPU feature that makes bfloat16 faster than float32 here, if any."""
    if has_amx(flags):
        return "AMX (amx_bf16)"
    if AVX512_BF16 in flags:
        return "AVX-512 BF16 (avx512_bf16)"
    return None


def choose(precision: str, xla: str, *, gpus: int, flags: frozenset[str]) -> DeviceChoice:
    """``auto`` resolved by the hardware: mixed float16 and XLA on a GPU; mixed bfloat16 on a
    CPU with AMX or AVX-512 BF16; float32 on other CPUs. A forced value is honoured whatever
    the hardware.

    XLA stays off on CPUs: it made AlexNet 40% slower at 128px on the 2-core CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, but got {precision!r}")
    if xla not in XLA_MODES:
        raise ValueError(f"xla must be one of {', '.join(XLA_MODES)}, but got {xla!r}")
    jit = gpus > 0 if xla == "auto" else xla == "on"
    if precision != "auto":
        return DeviceChoice(precision, jit, f"--precision {precision}")
    if gpus:
        return DeviceChoice("mixed_float16", jit, "auto: a GPU (float16 tensor cores)")
    feature = bf16_hardware(flags)
    if feature:
        return DeviceChoice(
            "mixed_bfloat16", jit, f"auto: this CPU has {feature}, where bfloat16 trains faster"
        )
    return DeviceChoice(
        "float32",
        jit,
        "auto: this CPU has no AMX or AVX-512 BF16, where bfloat16 is slower than float32",
    )
