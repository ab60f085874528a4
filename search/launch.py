"""``python -m search.launch --workers N [search.run options]``: a search on one host, N workers.

Starts the chief and N workers of one search, one GPU each (``CUDA_VISIBLE_DEVICES``) when
the host has GPUs, or N CPU workers when it has none, and supervises them: a worker that dies
is started again under the same ``KERASTUNER_TUNER_ID``, so Keras Tuner hands it back its
unfinished trial. Keras Tuner engines: the chief serves its oracle on a free local port and
trains the baseline; Optuna: every process trains, sharing the run directory's study. The
chief's run directory gets the one results table, report and export.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from search import interrupt
from search.hardware import visible_gpus

MAX_RESTARTS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gpu_count() -> int:
    """GPUs on this host, from ``nvidia-smi`` (no TensorFlow import in the launcher)."""
    return visible_gpus()


def assign_gpus(workers: int, gpus: int) -> dict[str, str]:
    """``CUDA_VISIBLE_DEVICES`` of each process: the chief GPU 0, worker i the next GPU round
    the ring (so workers share a GPU only when there are more processes than GPUs); without
    GPUs the chief sees the machine's devices (``""`` hides none) and every worker none."""
    if gpus <= 0:
        return {"chief": "", **{f"worker-{i}": "" for i in range(workers)}}
    return {"chief": "0", **{f"worker-{i}": str((i + 1) % gpus) for i in range(workers)}}


def _value(args: Sequence[str], flag: str, default: str) -> str:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return default


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m search.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workers", type=int, required=True, help="worker processes besides the chief")
    args, run_args = p.parse_known_args(argv)
    if args.workers < 1:
        print(f"error: --workers must be at least 1, but got {args.workers}.", file=sys.stderr)
        return 2
    for flag in ("--role", "--oracle", "--dry-run"):
        if any(a == flag or a.startswith(flag + "=") for a in run_args):
            print(f"error: search.launch sets {flag} itself; leave it out.", file=sys.stderr)
            return 2
    if "--run-dir" not in " ".join(run_args):
        print("error: pass --run-dir: the chief and its workers must share it.", file=sys.stderr)
        return 2
    engine = _value(run_args, "--engine", "hyperband")
    base = [sys.executable, "-m", "search.run", *run_args]
    extra: list[str] = []
    if engine != "optuna":
        extra = ["--oracle", f"127.0.0.1:{free_port()}"]
    interrupt.install()
    procs: list[subprocess.Popen] = []
    try:
        return _supervise(args.workers, base, extra, run_args, procs)
    except interrupt.Interrupted as exc:  # passed on: each process saves and exits
        interrupt.stop(procs, exc.signum, timeout=9.0)
        print(
            f"launch: interrupted by {exc.name}; the chief and workers stopped, their "
            f"finished trials and running trials' last epochs saved. Resume with: python -m "
            f"search.launch --workers {args.workers} {shlex.join(run_args)}",
            flush=True,
        )
        return exc.exit_code


def _supervise(
    n_workers: int,
    base: list[str],
    extra: list[str],
    run_args: Sequence[str],
    procs: list[subprocess.Popen],
) -> int:
    """Start the chief, then the workers once the run exists; restart a worker that dies;
    ``procs`` holds every process started, for the caller to stop."""
    gpus = gpu_count()
    devices = assign_gpus(n_workers, gpus)
    chief_env = {**interrupt.child_env(), "KERASTUNER_TUNER_ID": "chief"}
    if gpus:
        chief_env["CUDA_VISIBLE_DEVICES"] = devices["chief"]
    chief = interrupt.track(subprocess.Popen([*base, *extra], env=chief_env))
    procs.append(chief)
    print(
        f"launch: chief pid {chief.pid} ({'GPU 0' if gpus else 'CPU'}); "
        f"{n_workers} worker(s) on {'GPUs' if gpus else 'the CPU'}"
        + (
            f" (sharing: {n_workers + 1} processes on {gpus} GPU(s))"
            if 0 < gpus < n_workers + 1
            else ""
        ),
        flush=True,
    )
    run_dir = _value(run_args, "--run-dir", "")
    config = os.path.join(run_dir, "config.json")
    while not os.path.exists(config):  # workers join a search that exists
        if chief.poll() is not None:
            return chief.returncode
        time.sleep(0.5)

    def start(i: int) -> subprocess.Popen:
        env = {**interrupt.child_env(), "KERASTUNER_TUNER_ID": f"worker-{i}"}
        env["CUDA_VISIBLE_DEVICES"] = devices[f"worker-{i}"]
        proc = interrupt.track(subprocess.Popen([*base, *extra, "--role", "worker"], env=env))
        procs.append(proc)
        where = f"GPU {devices[f'worker-{i}']}" if gpus else "CPU"
        print(f"launch: worker {i} pid {proc.pid} ({where})", flush=True)
        return proc

    workers = {i: start(i) for i in range(n_workers)}
    restarts = dict.fromkeys(workers, 0)
    while chief.poll() is None:
        for i, proc in list(workers.items()):
            code = proc.poll()
            if code is None or code == 0:
                continue
            if restarts[i] >= MAX_RESTARTS:
                print(
                    f"launch: worker {i} failed {MAX_RESTARTS + 1} times; not restarted",
                    flush=True,
                )
                del workers[i]
                continue
            restarts[i] += 1
            print(f"launch: worker {i} exited with {code}; restarting it", flush=True)
            workers[i] = start(i)
        time.sleep(1.0)
    # the chief is done: a worker still training has nothing left to contribute
    interrupt.stop(list(workers.values()), signal.SIGTERM, timeout=9.0)
    return chief.returncode


if __name__ == "__main__":
    raise SystemExit(main())
