"""The run directory: its identity (config.json), its lock, its status and its checkpoints."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from data_pipeline.files import write_text_atomic


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (locked, or made with other settings)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def format_seconds(seconds: float) -> str:
    """``3725`` -> ``1h02m``; ``95`` -> ``1m35s``; ``7`` -> ``7s``."""
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, default=str))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text()) if Path(path).exists() else None


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for this process; a second search on it is refused.

    ``flock`` is released by the kernel when the holder dies, even by ``kill -9``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    fh = path.open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RunDirError(
            f"run directory {str(run_dir)!r} is in use by {holder}; wait for it "
            "to finish or choose another --run-dir."
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def check_identity(run_dir: Path, identity: dict[str, Any]) -> bool:
    """True when the run directory already holds this run; refuse one made with other settings."""
    existing = read_json(run_dir / "config.json")
    if existing is None:
        return False
    before = existing.get("identity", {})
    diffs = [
        f"{k}: {before.get(k)!r} -> {identity.get(k)!r}"
        for k in sorted(set(before) | set(identity))
        if before.get(k) != identity.get(k)
    ]
    if diffs:
        raise RunDirError(
            f"run directory {str(run_dir)!r} holds a search with other settings "
            f"({'; '.join(diffs)}); rerun with the original settings to resume it, or pass "
            "another --run-dir for a new search."
        )
    return True


def checkpoint_path(run_dir: Path, trial_id: str) -> Path:
    return run_dir / "trials" / trial_id / "checkpoint.npz"


def prune_checkpoints(run_dir: Path, keep: set[str], ended: set[str]) -> list[str]:
    """Delete the checkpoints of ended trials not in ``keep`` (a trial still running, maybe
    in another process, keeps its own); return the trial ids deleted."""
    deleted = []
    for path in sorted((run_dir / "trials").glob("*/checkpoint.npz")):
        if path.parent.name in ended and path.parent.name not in keep:
            path.unlink(missing_ok=True)
            deleted.append(path.parent.name)
    return deleted


def disk_usage_mb(root: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total / 2**20


def clear_stop_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Status:
    """``status.json``: what the run is doing, for the report of a running or crashed run."""

    def __init__(self, run_dir: Path, trials_planned: int, *, write: bool = True) -> None:
        self.path = run_dir / "status.json"
        self.write = write  # only a search's chief writes its status
        previous = read_json(self.path) or {}
        self.data: dict[str, Any] = {
            "state": "running",
            "pid": os.getpid(),
            "started_at": now_iso(),
            "first_started_at": previous.get("first_started_at") or now_iso(),
            "trials_planned": trials_planned,
            "peak_disk_mb": float(previous.get("peak_disk_mb") or 0.0),
            "wall_seconds_before": float(previous.get("wall_seconds", 0.0)),
            "wall_seconds": float(previous.get("wall_seconds", 0.0)),
        }
        self._t0 = time.monotonic()
        self.save()

    def update(self, **fields: Any) -> None:
        disk = fields.pop("disk_mb", None)
        if disk is not None:
            self.data["peak_disk_mb"] = max(self.data["peak_disk_mb"], float(disk))
        self.data.update(fields)
        self.save()

    def save(self) -> None:
        if not self.write:
            return
        self.data["updated_at"] = now_iso()
        self.data["wall_seconds"] = self.data["wall_seconds_before"] + time.monotonic() - self._t0
        write_json_atomic(self.path, self.data)
