"""Ctrl-C and SIGTERM: one exception for both, children that never outlive their parent.

A preemptible machine gets SIGTERM and a short grace period; a user presses Ctrl-C. Both
become ``Interrupted`` in the main thread (a ``BaseException``, so no ``except Exception``
swallows it), which each command turns into a clean stop: children stopped, state saved,
one line, exit 128 + the signal (130, 143). A second signal while stopping ends the process
at once (``os._exit``), killing the children it knows; the next run resumes from what was
saved, as after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

PARENT_ENV = "ALEXNET_TUNER_PARENT_PID"  # set for a child that must die with its parent
_PR_SET_PDEATHSIG = 1
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The process was asked to stop by ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_children: list[subprocess.Popen] = []
_second_exits = True
_deferring = False
_received: int | None = None  # the first signal, once its handler has run: stopping
_pending: int | None = None  # a first signal that arrived inside ``deferred``


def track(proc: subprocess.Popen) -> subprocess.Popen:
    """Remember a child: a second signal kills it before this process ends."""
    _children[:] = [p for p in _children if p.poll() is None]
    _children.append(proc)
    return proc


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received, _pending
    if _received is not None:  # the second signal: stop now, children included
        if not _second_exits:
            return  # a child: its parent passes a Ctrl-C on too, and kills it on the second
        for proc in _children:
            with contextlib.suppress(OSError):
                proc.kill()
        os._exit(128 + signum)
    _received = signum
    if _deferring:
        _pending = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A first signal that arrives inside is raised as ``Interrupted`` when the block ends,
    so what the block writes (an epoch's training state, an Optuna journal record under its
    lock file) is never left half-done; a second signal still ends the process at once.
    Blocks nest (the outermost raises); outside the main thread, where no handler runs and so
    nothing can be cut, a block is a plain block."""
    global _deferring, _pending
    if _deferring or threading.current_thread() is not threading.main_thread():
        yield
        return
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
        signum, _pending = _pending, None
        if signum is not None:
            raise Interrupted(signum)


def raise_if_lost() -> None:
    """Raise ``Interrupted`` again for a first signal whose exception never arrived: raised
    while the main thread ran a ``__del__`` or a weakref callback, or inside a library's bare
    ``except``, it is printed or dropped and the training goes on, while the second signal
    (the parent passing a Ctrl-C on) is ignored. A trial process calls this at each epoch's
    end, where no earlier ``Interrupted`` can still be on its way."""
    if _received is not None and not _deferring:
        raise Interrupted(_received)


def install(*, second_exits: bool = True) -> None:
    """SIGINT and SIGTERM raise ``Interrupted`` in the main thread from now on; a second one
    ends the process at once (``second_exits``) or is ignored (a child finishing its save,
    whose parent decides when it has waited long enough)."""
    global _second_exits, _received
    _second_exits, _received = second_exits, None
    for sig in SIGNALS:
        signal.signal(sig, _handler)


def child_env() -> dict[str, str]:
    """The environment of a child that must end with this process (``die_with_parent``)."""
    return {**os.environ, PARENT_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """If this process was started by one of ours (``child_env``), have the kernel send it
    SIGTERM when that parent dies, even by ``kill -9`` (Linux ``PR_SET_PDEATHSIG``); if the
    parent is already gone, stop now. Elsewhere the trial process's own check at each epoch
    end remains."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None:
        return
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if str(os.getppid()) != parent:
        os._exit(128 + signal.SIGTERM)


def stop(procs: list[subprocess.Popen], signum: int, timeout: float) -> None:
    """Pass ``signum`` to each live process, wait up to ``timeout`` seconds in all for them
    to save and exit, then kill what is left."""
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        with contextlib.suppress(OSError):
            proc.send_signal(signum)
    deadline = time.monotonic() + timeout
    for proc in live:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
