"""The search's side of the trial process (``search.trial.process``): start it, send it work,
replace it after ``trials_per_process`` trainings (AlexNet leaks memory in a long-lived
process) or after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from models.alexnet import AlexNetParams
from search.rundir import RunConfig
from search.trial.protocol import (
    Done,
    Epoch,
    Exit,
    Failure,
    Message,
    ProtocolError,
    Ready,
    Setup,
    Train,
    Warmup,
    WarmupDone,
    decode,
    encode,
    failed,
)


class TrialProcessDied(RuntimeError):
    """The trial process ended without answering (crash, out of memory, killed)."""


@dataclass
class TrialProcessClient:
    """One trial process at a time; replaced after ``trials_per_process`` trials or a crash."""

    run_dir: Path
    config: RunConfig
    log_path: Path
    trials_per_process: int = 5
    command: tuple[str, ...] = (sys.executable, "-m", "search.trial.process")
    _proc: subprocess.Popen | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)
    _served: int = field(default=0, init=False)
    started: int = field(default=0, init=False)  # processes started so far
    ready: Ready | None = field(default=None, init=False)

    def _start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        self._proc = subprocess.Popen(
            list(self.command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            text=True,
            bufsize=1,
        )
        self.started += 1
        self._send(Setup(run_dir=str(Path(self.run_dir).resolve()), config=self.config))
        event = self._read()
        if not isinstance(event, Ready):
            reason = event.error if isinstance(event, Failure) else repr(event)
            raise TrialProcessDied(
                f"the trial process failed to start: {reason} (log: {self.log_path})"
            )
        self.ready = event
        self._served = 0

    def _send(self, msg: Message) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(encode(msg))
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise TrialProcessDied(self._death_reason()) from None

    def _read(self) -> Message:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise TrialProcessDied(self._death_reason())
        try:
            return decode(line)
        except ProtocolError as exc:
            raise TrialProcessDied(f"{exc}; log: {self.log_path}") from None

    def _death_reason(self) -> str:
        assert self._proc is not None
        code = self._proc.wait()
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"trial process killed by {name}{hint}; log: {self.log_path}"
        return f"trial process exited with code {code}; log: {self.log_path}"

    def _ensure(self) -> None:
        if (
            self._proc is None
            or self._proc.poll() is not None
            or self._served >= self.trials_per_process
        ):
            self.close()
            self._start()

    def warmup(self, params: AlexNetParams) -> WarmupDone | Failure:
        self._ensure()
        self._send(Warmup(params=params))
        event = self._read()
        if isinstance(event, WarmupDone | Failure):
            return event
        return Failure(f"unexpected answer to a warm-up: {event!r}")

    def run_trial(self, msg: Train, on_epoch: Callable[[Epoch], None]) -> Done:
        """Train one model; ``on_epoch`` sees each epoch. A dead process fails the trial."""
        self._ensure()
        self._served += 1
        try:
            self._send(msg)
            while True:
                event = self._read()
                if isinstance(event, Epoch):
                    on_epoch(event)
                elif isinstance(event, Done):
                    return event
        except TrialProcessDied as exc:
            self._proc = None
            return failed(msg.trial_id, str(exc))

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._send(Exit())
                self._proc.wait(timeout=30)
            except (TrialProcessDied, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
