"""The run directory: its configuration (``config.json``, a ``RunConfig``), its lock, its status
and its checkpoints. This module is the one reader and writer of those files; the results tables
have theirs in ``search.results`` and ``search.confirm``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from data_pipeline.files import LockHeld, locked_file, pid_alive, write_text_atomic
from data_pipeline.pipeline import DataConfig
from search.space import Space, baseline_values, from_dict, to_dict


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


def library_versions() -> dict[str, str]:
    """The versions that decide a run's numbers, recorded with it."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in (
        "tensorflow",
        "tensorflow-cpu",
        "keras",
        "keras-tuner",
        "optuna",
        "pandas",
        "plotly",
        "numpy",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run, resolved: what the chief writes once as ``config.json`` and
    the trial process, the export and the reports read back (``read``), never by key by hand.

    ``options`` are the search's options as given (``SearchOptions.to_dict``); ``identity`` is
    the part of them that a resumed run must share; ``data`` describes the prepared data
    (``layout``, per-split class ``counts``, ``skipped`` files, the ``cache`` folder).
    """

    identity: dict[str, Any]
    options: dict[str, Any]
    space: Space
    data_config: DataConfig
    classes: tuple[str, ...]
    data: dict[str, Any]
    versions: dict[str, str]
    command: str
    created_at: str

    @property
    def seed(self) -> int:
        return int(self.options["seed"])

    @property
    def image_size(self) -> int:
        return int(self.options["image_size"])

    @property
    def width(self) -> float:
        return float(self.options["width"])

    @property
    def batch_size(self) -> int:
        return int(self.options["batch_size"])

    @property
    def max_epochs(self) -> int:
        return int(self.options["max_epochs"])

    @property
    def engine(self) -> str:
        return str(self.options["engine"])

    def split_size(self, split: str) -> int:
        """Images in ``split`` (``train``, ``validation`` or ``test``) as the run used them."""
        return int(sum(self.data.get("counts", {}).get(split, {}).values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "options": self.options,
            "space": to_dict(self.space),
            "baseline": baseline_values(self.space),  # for a reader of the file
            "seed": self.seed,
            "data_config": self.data_config.to_dict(),
            "classes": list(self.classes),
            "data": self.data,
            "versions": self.versions,
            "command": self.command,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunConfig:
        return cls(
            identity=dict(d["identity"]),
            options=dict(d["options"]),
            space=from_dict(d.get("space", [])),
            data_config=DataConfig.from_dict(d["data_config"]),
            classes=tuple(d.get("classes", ())),
            data=dict(d.get("data", {})),
            versions=dict(d.get("versions", {})),
            command=str(d.get("command", "")),
            created_at=str(d.get("created_at", "")),
        )

    def write(self, run_dir: Path) -> None:
        write_json_atomic(Path(run_dir) / CONFIG_FILE, self.to_json())

    @classmethod
    def read(cls, run_dir: Path) -> RunConfig:
        """The run's configuration, or a ``RunDirError`` that says why there is none."""
        path = Path(run_dir) / CONFIG_FILE
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(
                f"{str(run_dir)!r} is not a search run directory (no {CONFIG_FILE})."
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{path} cannot be read ({exc}); restore it from a backup.") from None
        if not isinstance(d, dict) or "data_config" not in d or "options" not in d:
            raise RunDirError(
                f"{path} was written by an older alexnet-tuner (no data_config): run its "
                "search again with this version."
            )
        try:
            return cls.from_json(d)
        except (KeyError, TypeError, ValueError) as exc:
            raise RunDirError(f"{path} is damaged ({exc!r}); restore it from a backup.") from None


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, default=str))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text()) if Path(path).exists() else None


LOCK_NAME = ".lock"


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for this process; a second search on it is refused.

    ``flock`` is released by the kernel when the holder dies, even by ``kill -9``.
    """
    try:
        with locked_file(Path(run_dir) / LOCK_NAME, wait=False):
            yield
    except LockHeld as held:
        raise RunDirError(
            f"run directory {str(run_dir)!r} is in use by {held.holder}; wait for it "
            "to finish or choose another --run-dir."
        ) from None


EXTENDABLE = frozenset({"trials", "confirm", "confirm_top"})
"""Settings a run directory may be given again with a larger value: more trials, seeds or
confirmed configurations extend it (``confirm``, ``confirm_top`` were in older identities)."""


def check_identity(run_dir: Path, identity: dict[str, Any]) -> bool:
    """True when the run directory already holds this run; refuse one made with other settings."""
    existing = read_json(run_dir / "config.json")
    if existing is None:
        return False
    before = existing.get("identity", {})
    diffs = [
        f"{k}: {before.get(k)!r} -> {identity.get(k)!r}"
        for k in sorted((set(before) | set(identity)) - EXTENDABLE)
        if before.get(k) != identity.get(k)
    ]
    if diffs:
        raise RunDirError(
            f"run directory {str(run_dir)!r} holds a search with other settings "
            f"({'; '.join(diffs)}); rerun with the original settings to resume it, or pass "
            "another --run-dir for a new search."
        )
    return True


DATA_MANIFEST = "data_manifest.json"


def check_data(
    run_dir: Path, manifest: dict[str, list[Any]], *, write: bool, content_key: str | None = None
) -> None:
    """Refuse a run whose data folder changed since the run began (its splits would move
    images a trial trained on into validation or test); record the manifest the first time.
    Files that only have new modification times are the same data when their bytes hash to
    the key of the cache the run was made with (``content_key``, the cache directory's name):
    the run resumes, and the manifest records the new times."""
    from data_pipeline.discover import manifest_changes, only_times_changed

    path = Path(run_dir) / DATA_MANIFEST
    before = read_json(path) if path.exists() else None
    if before is None:
        if write:
            write_json_atomic(path, manifest)
        return
    if not isinstance(before, dict):
        raise RunDirError(f"{str(path)!r} is not a data manifest; it cannot be checked.")
    changes = manifest_changes(before, manifest)
    if changes and content_key and only_times_changed(before, manifest):
        recorded = ((read_json(Path(run_dir) / "config.json") or {}).get("data") or {}).get("cache")
        if recorded and Path(str(recorded)).name == content_key:
            if write:
                write_json_atomic(path, manifest)
            return
    if changes:
        raise RunDirError(
            f"the data folder changed since run directory {str(run_dir)!r} began (files: {changes}"
            "): resuming would split it anew and move images a trial trained on into "
            "validation or test. Put the data back as it was to resume, or pass another "
            "--run-dir for a new search on the data as it is now."
        )


def checkpoint_path(run_dir: Path, trial_id: str) -> Path:
    return run_dir / "trials" / trial_id / "checkpoint.npz"


EPOCH_STATE = "epoch_state.npz"
# A running trial holds up to this many copies of its weights on disk: its checkpoint and the
# epoch state (weights, Adam's two slots and a refit's tail sum), the checkpoint beside its
# temporary file.
PEAK_WEIGHT_COPIES = 6
# What a search stopped by a full or read-only disk tells its user to do.
ROOM_FIX = (
    "free some space (or move the run directory to a larger disk), then run the same command "
    "again: finished trials are kept, the running one restarts from its last saved epoch"
)


def epoch_state_path(run_dir: Path, trial_id: str) -> Path:
    """A running training's last finished epoch (weights, optimizer, history): what resumes it
    after an interruption; deleted once its row is recorded."""
    return run_dir / "trials" / trial_id / EPOCH_STATE


def adopt_epoch_state(run_dir: Path, old_id: str, new_id: str) -> None:
    """Give a retried trial the epoch state (and best-epoch checkpoint) of the trial it
    repeats, whose process died: the retry continues that training instead of starting over."""
    state = epoch_state_path(run_dir, old_id)
    if not state.exists() or epoch_state_path(run_dir, new_id).exists():
        return
    new_dir = state.parent.parent / new_id
    new_dir.mkdir(parents=True, exist_ok=True)
    old_ckpt = checkpoint_path(run_dir, old_id)
    if old_ckpt.exists():
        os.replace(old_ckpt, checkpoint_path(run_dir, new_id))
    os.replace(state, epoch_state_path(run_dir, new_id))


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


def running_pid(status: dict[str, Any]) -> bool:
    """Whether the process a ``status.json`` says is running is alive (on this host)."""
    return status.get("state") == "running" and pid_alive(status.get("pid"))


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
            # every epoch trained, repeats after an interruption included (epochs_planned:
            # the plan's count), so what an interruption cost can be read here
            "epochs_trained": int(previous.get("epochs_trained") or 0),
            "epochs_planned": previous.get("epochs_planned"),
        }
        self._t0 = time.monotonic()
        self.save()

    def session_seconds(self) -> float:
        """Seconds since this process took the run (the report's wall time adds earlier ones)."""
        return time.monotonic() - self._t0

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
        self.data["wall_seconds"] = self.data["wall_seconds_before"] + self.session_seconds()
        write_json_atomic(self.path, self.data)
