"""Library chatter kept off the console: TensorFlow's native start-up lines (oneDNN notice, CPU
feature guard), and whatever the libraries print while the search exports in its own process.

In TF 2.21 they are written by absl before its logging is set up, so ``TF_CPP_MIN_LOG_LEVEL``
does not silence them; the only way is to load TensorFlow (and run one op, which triggers the
feature guard) while file descriptor 2 points at /dev/null. ``--debug`` keeps them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def _descriptors_to(target: int, fds: tuple[int, ...]) -> Iterator[None]:
    """The file descriptors ``fds`` pointed at ``target`` for the block, then given back."""
    saved = [os.dup(fd) for fd in fds]
    try:
        for fd in fds:
            os.dup2(target, fd)
        yield
    finally:
        for fd, copy in zip(fds, saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def import_tensorflow_quietly(*, enabled: bool = True) -> None:
    if not enabled or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with _descriptors_to(devnull, (2,)):
            import tensorflow as tf

            tf.config.list_physical_devices("CPU")
            _ = tf.constant(0.0) + 1.0  # the CPU feature guard speaks at the first op
    finally:
        os.close(devnull)


@contextlib.contextmanager
def output_to(log: Path, *, enabled: bool = True) -> Iterator[None]:
    """Send everything printed in the block, by Python or by native code (file descriptors 1
    and 2), to the end of ``log``; /dev/null where ``log`` cannot be opened (a full or
    read-only disk, which the block then reports itself)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        sink = open(log, "a")  # noqa: SIM115 - closed below, after the descriptors are back
    except OSError:
        sink = open(os.devnull, "w")  # noqa: SIM115
    try:
        with (
            _descriptors_to(sink.fileno(), (1, 2)),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            yield
    finally:
        with contextlib.suppress(OSError):  # a full disk: what did not fit is lost, no more
            sink.close()
