"""The search's side of ``search.worker``: start, feed and replace worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


class WorkerDied(RuntimeError):
    """The worker process ended without answering (crash, out of memory, killed)."""


def failed_result(trial_id: str, error: str) -> dict[str, Any]:
    """The ``done`` event of a trial that never reached the point of reporting one."""
    return {
        "event": "done",
        "trial_id": trial_id,
        "status": "failed",
        "error": error,
        "val_accuracy": None,
        "best_epoch": None,
        "epochs": 0,
        "seconds": 0.0,
        "fit_seconds": 0.0,
        "params": 0,
        "peak_rss_mb": None,
        "disk_mb": 0.0,
    }


@dataclass
class WorkerClient:
    """One worker process at a time; replaced after ``trials_per_worker`` trials or a crash."""

    setup: dict[str, Any]
    log_path: Path
    trials_per_worker: int = 5
    _proc: subprocess.Popen | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)
    _served: int = field(default=0, init=False)
    info: dict[str, Any] = field(default_factory=dict, init=False)

    def _start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "search.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            text=True,
            bufsize=1,
        )
        self._send(self.setup)
        event = self._read()
        if event.get("event") != "ready":
            raise WorkerDied(f"worker failed to start: {event.get('error')} (log: {self.log_path})")
        self.info = event
        self._served = 0

    def _send(self, msg: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(msg) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerDied(self._death_reason()) from None

    def _read(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise WorkerDied(self._death_reason())
        return json.loads(line)

    def _death_reason(self) -> str:
        assert self._proc is not None
        code = self._proc.wait()
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"worker process killed by {name}{hint}; log: {self.log_path}"
        return f"worker process exited with code {code}; log: {self.log_path}"

    def _ensure(self) -> None:
        if (
            self._proc is None
            or self._proc.poll() is not None
            or self._served >= self.trials_per_worker
        ):
            self.close()
            self._start()

    def warmup(self, params: dict[str, Any]) -> dict[str, Any]:
        self._ensure()
        self._send({"cmd": "warmup", "params": params})
        return self._read()

    def run_trial(
        self, msg: dict[str, Any], on_epoch: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Run one trial; ``on_epoch`` sees each epoch event. A dead worker fails the trial."""
        self._ensure()
        self._served += 1
        try:
            self._send({"cmd": "trial", **msg})
            while True:
                event = self._read()
                if event["event"] == "epoch":
                    on_epoch(event)
                elif event["event"] == "done":
                    return event
        except WorkerDied as exc:
            self._proc = None
            return failed_result(msg["trial_id"], str(exc))

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._send({"cmd": "exit"})
                self._proc.wait(timeout=30)
            except (WorkerDied, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
