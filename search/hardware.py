"""What the plan says about the machine: a GPU TensorFlow cannot see, a CPU plan of hours.

Advice only: nothing here changes the user's settings.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from search.rundir import format_seconds

CUDA_INSTALL = "pip uninstall -y tensorflow-cpu && pip install 'tensorflow[and-cuda]>=2.21'"
LONG_CPU_PLAN_S = 2 * 3600


def nvidia_gpus() -> int:
    """GPUs the NVIDIA driver lists (``nvidia-smi -L``); 0 without a driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def visible_gpus() -> int:
    """GPUs this process may use: the driver's list, none where ``CUDA_VISIBLE_DEVICES`` is
    empty. Read without TensorFlow, so a command can decide before importing it."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return 0
    return nvidia_gpus()


def auto_preset(gpus: int) -> tuple[str, str]:
    """``--preset auto``: the blog's setting where there is a GPU, the ``cpu`` preset where
    there is none (the blog's is a 2-3 hour job on 2 cores); the preset and why."""
    if gpus:
        return "blog", f"auto: {gpus} GPU(s) visible; --preset cpu for a small trial run"
    return "cpu", "auto: no GPU visible; --preset blog for the blog's 227px setting"


def advice(*, tf_gpus: int, driver_gpus: int, eta_s: float, preset: str | None) -> list[str]:
    """Plan lines: why the GPU is unused, and the preset when a CPU plan takes hours."""
    lines = []
    if tf_gpus == 0 and driver_gpus > 0:
        lines.append(
            f"warning: nvidia-smi lists {driver_gpus} GPU(s) but TensorFlow sees none, so this "
            "search would train on the CPU: this is the CPU build of TensorFlow. Install the "
            f"CUDA build: {CUDA_INSTALL}"
        )
    if tf_gpus == 0 and eta_s > LONG_CPU_PLAN_S and preset != "cpu":
        lines.append(
            f"note: no GPU visible and this plan takes ~{format_seconds(eta_s)} on this CPU; "
            "add --preset cpu (2,000 images at 128px, half-width filters; the plan gives its "
            "ETA) for a search that fits a small machine."
        )
    return lines
