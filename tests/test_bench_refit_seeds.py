"""The refit-seed benchmark reruns a run's recorded command on a copy of the run."""

from __future__ import annotations

from bench.refit_seeds import without_run_dir


def test_the_copy_replaces_a_recorded_run_dir_in_either_spelling_or_none() -> None:
    recorded = ["--trials", "30", "--run-dir", "runs/a", "--seed", "7"]
    assert without_run_dir(recorded) == ["--trials", "30", "--seed", "7"]
    assert without_run_dir(["--run-dir=runs/a", "--trials", "30"]) == ["--trials", "30"]
    # a run started with --runs-root (or nothing) records no --run-dir: the argv is kept whole
    assert without_run_dir(["--runs-root", "r", "--seed", "4026"]) == [
        "--runs-root",
        "r",
        "--seed",
        "4026",
    ]
