"""Small helpers shared by every layer: atomic writes, content digests, process liveness, and
what to say when the storage is full or read-only."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
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
    except BaseException as exc:  # a full disk, a read-only folder, a kill: no partial file
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            exc.filename = str(path)  # the file meant, not its temporary name
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


# Why a write can fail for good: the storage's state, which every retry meets again until the
# user acts. TensorFlow's own writers (checkpoints, summaries) raise their errors with the
# system's text only, hence the texts.
_STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}


def storage_problem(exc: BaseException) -> str | None:
    """``no space left on device``, ``disk quota exceeded`` or ``read-only file system`` when
    ``exc`` failed a write for that reason; None for any other error (a transient one)."""
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return _STORAGE_ERRNOS[exc.errno]
    text = str(exc).lower()
    return next((reason for reason in _STORAGE_ERRNOS.values() if reason in text), None)


class NoRoom(RuntimeError):
    """A write failed because its storage is full, over quota or read-only. Retrying fails
    alike until the user acts, so a command stops with this message and exit code 2 instead
    of failing trial after trial; everything finished before stays as it was."""


def no_room(
    exc: BaseException,
    where: Path,
    *,
    needed_bytes: int | None = None,
    fix: str = "free some space, then run the same command again",
    read_only_fix: str = "copy the folder to a writable disk and run the command there",
) -> NoRoom | None:
    """The ``NoRoom`` to raise for ``exc`` while writing under ``where``, naming the path,
    the reason, the free space and the space needed, and what to do (``fix`` for a full disk,
    ``read_only_fix`` for a read-only one); None when ``exc`` is no such failure."""
    reason = storage_problem(exc)
    if reason is None:
        return None
    filename = getattr(exc, "filename", None)
    path = Path(filename) if filename else Path(where)
    if reason == "read-only file system":
        return NoRoom(f"cannot write {path}: {reason}; {read_only_fix}")
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    need = f"; about {_mb(needed_bytes)} must be free to go on" if needed_bytes else ""
    return NoRoom(f"cannot write {path}: {reason} ({_mb(free)} free{need}); {fix}")


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} KB"
