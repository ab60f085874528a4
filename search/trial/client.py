"""The search's side of the trial process (``search.trial.process``): start it, send it work,
replace it after ``trials_per_process`` trainings (AlexNet leaks memory in a long-lived
process) or after a crash."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from models.alexnet import AlexNetParams
from search import interrupt
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

STOP_TIMEOUT_S = 6.0  # a stopped trial process's time to save; the command exits within 10 s


class TrialProcessDied(RuntimeError):
    """The trial process ended without answering (crash, out of memory, killed)."""


@dataclass
class TrialProcessClient:
    """One trial process at a time; replaced after ``trials_per_process`` trials or a crash.

    The replacement is started while the last trial of the current process trains (its
    imports and data mapping take seconds), so the search rarely waits for a new process.
    """

    run_dir: Path
    config: RunConfig
    log_path: Path
    trials_per_process: int = 5
    command: tuple[str, ...] = (sys.executable, "-m", "search.trial.process")
    prestart: bool = True  # start the next process ahead, during the current one's last trial
    _proc: subprocess.Popen | None = field(default=None, init=False)
    _spare: subprocess.Popen | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)
    _served: int = field(default=0, init=False)
    started: int = field(default=0, init=False)  # processes started so far
    ready: Ready | None = field(default=None, init=False)
    _start_costs: dict[str, float] = field(default_factory=dict, init=False)
    _idle_since: float | None = field(default=None, init=False)

    def _spawn(self) -> subprocess.Popen:
        """A new trial process, sent its ``Setup``; it answers ``Ready`` when it has started."""
        if self._log is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        env = {**interrupt.child_env(), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.Popen(
            list(self.command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            text=True,
            bufsize=1,
        )
        self.started += 1
        interrupt.track(proc)
        setup = Setup(run_dir=str(Path(self.run_dir).resolve()), config=self.config)
        assert proc.stdin is not None
        try:
            proc.stdin.write(encode(setup))
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died at once: reading its Ready says how
        return proc

    def _start(self) -> None:
        t0 = time.perf_counter()
        spare, self._spare = self._spare, None
        self._proc = spare if spare is not None and spare.poll() is None else self._spawn()
        event = self._read()
        if not isinstance(event, Ready):
            reason = event.error if isinstance(event, Failure) else repr(event)
            raise TrialProcessDied(
                f"the trial process failed to start: {reason} (log: {self.log_path})"
            )
        self.ready = event
        self._served = 0
        # Charged to the next training: the part of the start the search waited for (none
        # when the process was started ahead and is ready), the price of memory isolation.
        wall = time.perf_counter() - t0
        data = min(wall, event.data_seconds)
        self._start_costs = {"process_start": round(wall - data, 4), "data": round(data, 4)}

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
            self._stop(self._proc)
            self._proc = None
            self._start()

    def warmup(self, params: AlexNetParams) -> WarmupDone | Failure:
        self._ensure()
        self._send(Warmup(params=params))
        event = self._read()
        self._idle_since = time.perf_counter()
        if isinstance(event, WarmupDone | Failure):
            return event
        return Failure(f"unexpected answer to a warm-up: {event!r}")

    def run_trial(self, msg: Train, on_epoch: Callable[[Epoch], None]) -> Done:
        """Train one model; ``on_epoch`` sees each epoch. A dead process fails the trial.

        The ``Done`` carries the training's cost breakdown, with the search's share added:
        ``chief`` (the trial process idle between trainings while the search chose and
        recorded), ``process_start`` and ``data`` (when a process was started for it) and
        ``exchange`` (messages to and from the process)."""
        entered = time.perf_counter()
        chief = entered - self._idle_since if self._idle_since is not None else 0.0
        self._ensure()
        self._served += 1
        sent = time.perf_counter()
        try:
            self._send(msg)
            if self.prestart and self._served >= self.trials_per_process and self._spare is None:
                self._spare = self._spawn()  # starts while this last trial trains
            while True:
                event = self._read()
                if isinstance(event, Epoch):
                    on_epoch(event)
                elif isinstance(event, Done):
                    break
        except TrialProcessDied as exc:
            self._proc = None
            return failed(msg.trial_id, str(exc))
        finally:
            self._idle_since = time.perf_counter()
        costs = {
            **event.costs,
            **self._start_costs,
            "chief": round(chief, 4),
            "exchange": round(max(0.0, self._idle_since - sent - event.seconds), 4),
        }
        self._start_costs = {}
        return dataclasses.replace(event, costs=costs)

    def _stop(self, proc: subprocess.Popen | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.write(encode(Exit()))
            proc.stdin.flush()
            proc.wait(timeout=30)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        _close_pipes(proc)

    def interrupt(self, signum: int, timeout: float = STOP_TIMEOUT_S) -> None:
        """Pass a stop signal on: the trial process saves its last finished epoch and exits
        (killed after ``timeout`` seconds); a process started ahead just ends."""
        procs = [p for p in (self._proc, self._spare) if p is not None]
        interrupt.stop(procs, signum, timeout)
        for proc in procs:
            _close_pipes(proc)
        self._proc = self._spare = None

    def close(self) -> None:
        """Stop the trial process and a process started ahead, if any."""
        self._stop(self._proc)
        self._proc = None
        if self._spare is not None:  # still starting, maybe: no need to let it finish
            self._spare.kill()
            self._spare.wait()
            _close_pipes(self._spare)
            self._spare = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _close_pipes(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
