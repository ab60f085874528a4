"""The refit-seed benchmark reruns a run's recorded command on a copy of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.refit_seeds import copy_argv
from search.run import build_parser


@pytest.mark.parametrize(
    "recorded",
    [
        "--trials 30 --run-dir runs/a --seed 7",
        "--run-dir=runs/a --trials 30",
        "--run-d runs/a --trials 30",  # argparse's abbreviation
        "--runs-root r --seed 4026",  # no --run-dir recorded
    ],
)
def test_the_copy_runs_in_its_own_directory_whatever_the_run_recorded(recorded: str) -> None:
    argv = copy_argv(f"python -m search.run {recorded}", Path("copy"))
    args = build_parser().parse_args(argv)
    assert args.run_dir == Path("copy")
    assert argv[:-2] == recorded.split()  # the rest of the command is kept whole
