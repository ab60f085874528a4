"""A full disk or a read-only folder: one message naming the path, the reason and what to do,
exit code 2, no temporary file left, nothing finished lost, and the rerun completes. A write
that fails for another (transient) reason fails its trial only.

Faults are injected into the search's processes by a ``sitecustomize`` module on their
``PYTHONPATH`` (checkpoint writes raise the chosen errno), and into in-process commands by
refusing writes under a folder, as a read-only mount does."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest

from data_pipeline.files import NoRoom, no_room, storage_problem
from tests.test_search import _cli, run, search_args, tiny  # noqa: F401 (a fixture)

# Every numpy.savez in the processes (the trial checkpoints and epoch states) raises
# FAULT_ERRNO, FAULT_TIMES times, then works.
SITECUSTOMIZE = """
import errno, os
if os.environ.get("FAULT_ERRNO"):
    import numpy as np
    _savez, _left = np.savez, [int(os.environ.get("FAULT_TIMES", "1000000"))]
    def savez(file, *args, **kwargs):
        if _left[0] > 0:
            _left[0] -= 1
            code = getattr(errno, os.environ["FAULT_ERRNO"])
            raise OSError(code, os.strerror(code))
        return _savez(file, *args, **kwargs)
    np.savez = savez
"""


def _fault_env(tmp_path: Path, code: str, times: int | None = None) -> dict[str, str]:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "FAULT_ERRNO": code}
    if times is not None:
        env["FAULT_TIMES"] = str(times)
    return env


def _temporary_files(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if ".tmp" in p.name or p.name.startswith(".export-")]


def test_storage_problems_are_told_apart_from_transient_ones(tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "trials.csv"))
    assert storage_problem(full) == "no space left on device"
    assert storage_problem(OSError(errno.EDQUOT, "Disk quota exceeded")) == "disk quota exceeded"
    assert storage_problem(OSError(errno.EROFS, "x")) == "read-only file system"
    # TensorFlow's writers raise their own types with the system's text only
    tf_like = RuntimeError("SaveV2: /runs/x/variables.data; No space left on device")
    assert storage_problem(tf_like) == "no space left on device"
    assert storage_problem(OSError(errno.EIO, "Input/output error")) is None
    assert storage_problem(ValueError("bad value")) is None
    room = no_room(full, tmp_path, needed_bytes=300 * 2**20, fix="free it")
    assert isinstance(room, NoRoom)
    text = str(room)
    assert str(tmp_path / "trials.csv") in text and "no space left on device" in text
    assert "MB free" in text and "about 300 MB must be free" in text and text.endswith("free it")
    read_only = str(no_room(OSError(errno.EROFS, "x"), tmp_path, read_only_fix="go elsewhere"))
    assert read_only == f"cannot write {tmp_path}: read-only file system; go elsewhere"
    assert no_room(OSError(errno.EIO, "x"), tmp_path) is None


@pytest.mark.slow
def test_a_full_disk_stops_the_search_cleanly_and_the_rerun_completes(
    tiny: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    args = search_args(tiny, run_dir, "--trials", "1", "--max-epochs", "1", "--no-baseline")
    full = run(args, env=_fault_env(tmp_path, "ENOSPC"))
    assert full.returncode == 2, full.stdout + full.stderr
    assert "Traceback" not in full.stderr + full.stdout
    message = full.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: cannot write {run_dir}")
    assert "no space left on device" in message and "must be free to go on" in message
    assert "run the same command again" in message
    assert _temporary_files(run_dir) == []
    trials = run_dir / "trials.csv"  # the trial that hit the full disk is not recorded failed
    assert not trials.exists() or "failed" not in set(pd.read_csv(trials)["status"])
    again = run(args)  # space freed: the same command completes, nothing missing
    assert again.returncode == 0, again.stdout + again.stderr
    table = pd.read_csv(trials, dtype={"trial_id": str})
    assert set(table["status"]) <= {"completed", "pruned"}
    assert len(table) == 1
    assert _temporary_files(run_dir) == []


@pytest.mark.slow
def test_a_transient_checkpoint_failure_fails_that_trial_only(
    tiny: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    args = search_args(
        tiny, run_dir, "--trials", "2", "--max-epochs", "1", "--engine", "random", "--no-baseline"
    )
    out = run(args, env=_fault_env(tmp_path, "EIO", times=1))
    assert out.returncode == 0, out.stdout + out.stderr
    table = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    failed = table[table["status"] == "failed"]
    assert len(failed) == 1 and "Input/output error" in failed["error"].iloc[0]
    assert len(table) == 2  # both trials: the search went on
    assert _temporary_files(run_dir) == []


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch):
    """Refuse every write under the folders given, with EROFS, as a read-only mount does."""
    roots: list[Path] = []
    real_open = Path.open

    def open_(self: Path, mode: str = "r", *args: object, **kwargs: object):
        inside = any(self.resolve().is_relative_to(r) for r in roots)
        if inside and any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    return lambda root: roots.append(Path(root).resolve())


@pytest.mark.slow
def test_writing_commands_on_a_read_only_run_exit_2_and_reading_ones_work(
    tiny: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    read_only,
) -> None:
    from reports import build, compare
    from search import export

    run_dir = tmp_path / "runs" / "run"
    args = search_args(tiny, run_dir, "--trials", "1", "--max-epochs", "1", "--no-baseline")
    assert run(args).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    read_only(tmp_path / "runs")
    for main, argv in [
        (export.main, [str(run_dir)]),
        (build.main, [str(run_dir)]),
        (build.main, [str(run_dir.parent), "--index"]),
        (compare.main, [str(run_dir), "--out", str(run_dir.parent / "compare.html")]),
    ]:
        out = _cli(main, argv, capsys)
        assert out.returncode == 2, (argv, out.stdout, out.stderr)
        assert "read-only file system" in out.stderr and str(run_dir.parent) in out.stderr
    elsewhere = _cli(compare.main, [str(run_dir), "--out", str(tmp_path / "c.html")], capsys)
    assert elsewhere.returncode == 0 and (tmp_path / "c.html").exists()
    after = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    assert after == before
