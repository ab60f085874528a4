"""Small helpers shared by every layer: atomic writes, content digests, process liveness."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, ``fsync`` and a rename: readers (and
    a crash, even a power loss) see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a read-only folder, a kill: no partial file stays
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    # the rename itself is durable only once the folder's entry is on disk
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """``write_bytes_atomic`` for UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))


def file_digest(path: Path, *, algorithm: str = "blake2b") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with Path(path).open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id runs on this host (one we may not signal counts); a
    missing or malformed id (a damaged status file) is not a live process."""
    try:
        number = int(str(pid))
    except ValueError:
        return False
    if number <= 0:
        return False
    try:
        os.kill(number, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


class LockHeld(RuntimeError):
    """``locked_file(..., wait=False)`` found the lock taken; ``holder`` says by whom."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by {holder}")
        self.holder = holder


@contextlib.contextmanager
def locked_file(path: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold ``path`` exclusively: one process at a time around a critical section (``flock``;
    released by the kernel if the holder dies, even by kill -9). ``wait=False`` raises
    ``LockHeld`` at once instead of waiting; the holder writes its pid into the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.seek(0)
            raise LockHeld(path, fh.read().strip() or "another process") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
