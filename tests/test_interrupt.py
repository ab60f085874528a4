"""Ctrl-C and SIGTERM: a clean stop within 10 seconds, nothing left running, and a rerun that
continues the interrupted training at its last finished epoch."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from search.rundir import format_seconds
from tests.conftest import children_of
from tests.test_search import run, search_args, tiny  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _interrupt_when(
    args: list[str], ready, sig: int, *, group: bool = False, timeout: float = 300
) -> tuple[subprocess.Popen, str, float]:
    """Start the search, send ``sig`` once ``ready()`` holds; its output and the seconds it
    took to exit. ``group``: to the whole process group, as a terminal's Ctrl-C does."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < end, "never reached the point to interrupt"
        time.sleep(0.05)
    t0 = time.monotonic()
    (os.killpg if group else os.kill)(proc.pid, sig)
    out, _ = proc.communicate(timeout=60)
    return proc, out, time.monotonic() - t0


@pytest.mark.parametrize(
    ("sig", "group"), [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["SIGTERM", "Ctrl-C"]
)
def test_interrupted_mid_trial_stops_cleanly_and_resumes_at_its_epoch(
    tiny: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    sig: int,
    group: bool,
) -> None:
    run_dir = tmp_path / "run"
    args = search_args(
        tiny, run_dir, "--trials", "2", "--max-epochs", "40", "--engine", "random", "--no-baseline"
    )

    def mid_trial() -> bool:
        return int(_status(run_dir).get("epochs_trained") or 0) >= 5

    proc, out, seconds = _interrupt_when(args, mid_trial, sig, group=group)
    assert proc.returncode == 128 + sig, out
    assert seconds < 10, f"took {seconds:.1f}s to stop"
    assert "Traceback" not in out
    lines = out.splitlines()
    start = [i for i, x in enumerate(lines) if x.startswith("interrupted by")]
    assert len(start) == 1 and signal.Signals(sig).name in lines[start[0]]
    said = "\n".join(lines[start[0] :])
    assert "resume with:\npython -m search.run" in said
    # a pipe: 80 columns, but for a line that holds one word longer than that (a deep path)
    assert all(len(x) <= 80 or len(x.rstrip(" \\").split()) == 1 for x in lines[start[0] :])
    resumed = said.split("resume with:\n", 1)[1].replace(" \\\n    ", " ")
    assert shlex.split(resumed)[3:] == args[3:]  # the very command, pasted as printed
    assert children_of(proc.pid) == []  # no trial process left behind
    status = _status(run_dir)
    assert status["state"] == "interrupted" and status["current_trial"] is None
    trained_before = status["epochs_trained"]
    states = list((run_dir / "trials").glob("*/epoch_state.npz"))
    files = sorted(str(f.relative_to(run_dir)) for f in run_dir.rglob("*") if f.is_file())
    assert len(states) == 1, (status, out, files)  # the running trial's last finished epoch

    again = run(args)
    assert again.returncode == 0, again.stdout + again.stderr
    status = _status(run_dir)
    assert status["state"] == "finished"
    assert status["epochs_planned"] == 80
    # the console's time is this session's; the report's wall time (status.json) counts both
    done = [x for x in again.stdout.splitlines() if x.startswith("done in ")]
    total = format_seconds(status["wall_seconds"])
    assert len(done) == 1 and f"({total} with earlier sessions)" in done[0], done
    assert trained_before <= status["epochs_trained"] <= status["epochs_planned"] + 1
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    assert list(trials["status"]) == ["completed", "completed"]
    assert list(trials["epochs"]) == [40, 40]  # as an uninterrupted search
    history = pd.read_csv(run_dir / "history.csv", dtype={"trial_id": str})
    per_trial = history.groupby("trial_id")["epoch"]
    assert per_trial.nunique().tolist() == [40, 40] and per_trial.max().tolist() == [40, 40]
    assert not list((run_dir / "trials").glob("*/epoch_state.npz"))  # deleted once recorded
    assert not children_of(proc.pid)


def test_sigterm_during_the_confirmation_then_resume(
    tiny: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    args = search_args(
        tiny,
        run_dir,
        "--trials",
        "1",
        "--max-epochs",
        "8",
        "--engine",
        "random",
        "--confirm",
        "2",
        "--no-baseline",  # the judge runs of the winner alone: confirmation all the same
    )

    def confirming() -> bool:
        return str(_status(run_dir).get("current_trial") or "").startswith("confirm-")

    proc, out, seconds = _interrupt_when(args, confirming, signal.SIGTERM)
    assert proc.returncode == 143 and seconds < 10, out
    assert children_of(proc.pid) == []
    again = run(args)
    assert again.returncode == 0, again.stdout + again.stderr
    status = _status(run_dir)
    assert status["epochs_trained"] <= status["epochs_planned"] + 1
    confirm = pd.read_csv(run_dir / "confirm.csv")
    assert (confirm["status"] == "completed").all() and confirm["run_id"].is_unique
    assert json.loads((run_dir / "export.json").read_text())["equal"]


def test_a_child_dies_with_its_parent_even_after_kill_9(tmp_path: Path) -> None:
    """The parent-death signal: a trial process whose search is killed with -9 ends too."""
    import sys

    script = (
        "import subprocess, sys, time\n"
        "from search import interrupt\n"
        "child = subprocess.Popen([sys.executable, '-c', 'from search import interrupt; "
        "interrupt.die_with_parent(); import time; time.sleep(120)'], "
        "env=interrupt.child_env())\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # the child has set its parent-death signal
    parent.kill()
    parent.wait()
    end = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < end:
        stat = Path(f"/proc/{child}/stat").read_text(errors="replace").split()
        if stat[2] == "Z":
            break
        time.sleep(0.1)
    alive = Path(f"/proc/{child}/stat").exists() and (
        Path(f"/proc/{child}/stat").read_text().split()[2] != "Z"
    )
    assert not alive


def test_sigterm_during_the_export_then_a_second_ctrl_c_and_resume(
    tiny: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Stopped while its export is being checked: the checking child ends with the search,
    and the rerun makes the export; a second signal while stopping ends the command at once."""
    run_dir = tmp_path / "run"
    args = search_args(tiny, run_dir, "--trials", "1", "--max-epochs", "1", "--no-baseline")
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("exporting"):
            break
    deadline = time.monotonic() + 120
    while not any(b"--verify" in _cmdline(c) for c in children_of(proc.pid)):
        assert time.monotonic() < deadline, "the export's checking child never started"
        time.sleep(0.1)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGTERM)  # the second: at once
    rest = proc.stdout.read()
    code = proc.wait(timeout=30)
    # 143 from the handler; or, when the second signal lands after the first's clean stop has
    # returned 143 and Python has put back the default handlers on its way out, the signal
    # itself ends the process (-15 here): a shell reports 143 either way
    assert code in (143, -signal.SIGTERM) and time.monotonic() - t0 < 10, rest
    assert "Traceback" not in rest
    time.sleep(0.5)
    assert children_of(proc.pid) == []
    again = run(args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((run_dir / "export.json").read_text())["equal"]
    assert _status(run_dir)["state"] == "finished"


def test_an_interrupted_optuna_trial_is_retried_from_its_epoch(
    tiny: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Optuna requeues a trial whose process died under a new number: the retry repeats its
    values and seed and continues its training from the saved epoch, not from epoch 1."""
    run_dir = tmp_path / "run"
    args = search_args(
        tiny,
        run_dir,
        "--trials",
        "2",
        "--max-epochs",
        "40",
        "--engine",
        "optuna",
        "--no-baseline",
    )

    def mid_trial() -> bool:
        return int(_status(run_dir).get("epochs_trained") or 0) >= 5

    proc, out, seconds = _interrupt_when(args, mid_trial, signal.SIGTERM)
    assert proc.returncode == 143 and seconds < 10, out
    trained_before = _status(run_dir)["epochs_trained"]
    saved = sorted(p.parent.name for p in run_dir.glob("trials/*/epoch_state.npz"))
    again = run(args)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    assert len(trials) == 2 and set(trials["status"]) <= {"completed", "pruned"}
    history = pd.read_csv(run_dir / "history.csv", dtype={"trial_id": str})
    recorded = int(history.groupby("trial_id")["epoch"].nunique().sum())
    # every epoch trained is in the results, but for at most the one the stop cut
    assert _status(run_dir)["epochs_trained"] <= recorded + 1, (
        f"trained {trained_before} epochs before the stop ({seconds:.1f} s), epoch states "
        f"saved {saved}, recorded {recorded}; the rerun:\n{again.stdout}"
    )
    assert not list((run_dir / "trials").glob("*/epoch_state.npz"))


@pytest.fixture
def handlers() -> Iterator[None]:
    """This test process's own SIGINT and SIGTERM handlers, put back after the test."""
    from search import interrupt

    saved = {sig: signal.getsignal(sig) for sig in interrupt.SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_signal_inside_deferred_is_raised_when_the_block_ends(handlers: None) -> None:
    """An epoch's state is copied whole before a Ctrl-C or SIGTERM stops the training: the
    signal waits for the end of the block, then raises as usual; outside, it raises at once."""
    from search import interrupt

    interrupt.install()
    copied = []
    with pytest.raises(interrupt.Interrupted) as caught, interrupt.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler has run by now
        copied.append("after the signal")
    assert copied == ["after the signal"] and caught.value.signum == signal.SIGTERM
    interrupt.install()
    with pytest.raises(interrupt.Interrupted):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        copied.append("never")  # pragma: no cover
    assert copied == ["after the signal"]
    with interrupt.deferred():  # nothing pending: nothing raised
        pass
    interrupt.install()
    with pytest.raises(interrupt.Interrupted), interrupt.deferred():
        with interrupt.deferred():  # nested: the outer block raises, after both
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        copied.append("after the inner block")
    assert copied[-1] == "after the inner block"


def test_a_stop_whose_exception_was_swallowed_is_raised_again(handlers: None) -> None:
    """A first signal raised where Python drops the exception (a ``__del__``, a library's bare
    ``except``) would leave a trial process training until its parent kills it, its last
    epoch unsaved; the next epoch end raises it again. Without a signal, nothing is raised."""
    from search import interrupt

    interrupt.install(second_exits=False)  # as a trial process
    interrupt.raise_if_lost()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    except BaseException:  # what the library did
        pass
    os.kill(os.getpid(), signal.SIGINT)  # the parent passing a Ctrl-C on: ignored
    time.sleep(0.05)
    with pytest.raises(interrupt.Interrupted) as caught:
        interrupt.raise_if_lost()
    assert caught.value.signum == signal.SIGTERM
    with interrupt.deferred():  # inside a block that must finish whole: not yet
        interrupt.raise_if_lost()
    interrupt.install(second_exits=False)
    interrupt.raise_if_lost()  # a fresh start forgets it


def test_a_signal_inside_an_optuna_journal_append_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handlers: None
) -> None:
    """A SIGTERM at the worst instant of a journal append, just after Optuna's lock file is
    unlinked, still stops the search as ``Interrupted`` with the record written and the lock
    free; uncaught, Optuna's cleanup unlinks the file again and a FileNotFoundError replaced
    the clean stop (CI, session 19)."""
    from search import interrupt
    from search.engines.optuna_tpe import _journal

    journal = tmp_path / "optuna.journal"
    backend = _journal(journal)
    unlink = os.unlink
    signalled = []

    def unlink_then_signal(path: str) -> None:
        unlink(path)
        if str(path).endswith(".rename") and not signalled:
            signalled.append(path)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs here, inside Optuna's release

    monkeypatch.setattr(os, "unlink", unlink_then_signal)
    interrupt.install()
    with pytest.raises(interrupt.Interrupted):
        backend.append_logs([{"op_code": 0, "worker_id": "w"}])
    assert signalled
    assert [json.loads(line)["worker_id"] for line in journal.read_text().splitlines()] == ["w"]
    assert [p.name for p in tmp_path.iterdir()] == ["optuna.journal"]
