"""Results files cut short (a crash, a power loss, a hand edit): never read as if whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reports.writer import write_index
from search.results import ResultsError, load_history, load_trials
from tests.report_fixtures import make_run


def test_a_torn_last_row_is_dropped_not_read_as_a_finished_trial(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "runs" / "a")
    whole = load_trials(run_dir)
    text = (run_dir / "trials.csv").read_text()
    cut = text.rstrip("\n").rsplit("\n", 1)
    torn = cut[0] + "\n" + cut[1][: len(cut[1]) // 3]  # the last row half written
    (run_dir / "trials.csv").write_text(torn)
    trials = load_trials(run_dir)
    assert list(trials["trial_id"]) == list(whole["trial_id"])[:-1]
    assert trials["status"].isin(["completed", "failed", "pruned"]).all()


def test_an_empty_results_file_is_refused_with_a_message(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "runs" / "a")
    make_run(tmp_path / "runs" / "b")
    (run_dir / "trials.csv").write_text("")
    with pytest.raises(ResultsError, match="is empty"):
        load_trials(run_dir)
    (run_dir / "history.csv").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ResultsError, match=r"cannot be read|header"):
        load_history(run_dir)
    out = subprocess.run(
        [sys.executable, "-m", "reports.build", str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 2 and "is empty" in out.stderr and "Traceback" not in out.stderr
    index = write_index(tmp_path / "runs").read_text()  # the damaged run does not stop the index
    assert 'href="./b/report.html"' in index and 'href="./a/report.html"' not in index


def test_costs_are_replaced_per_training_and_summarised_per_component(tmp_path: Path) -> None:
    from search.results import cost_summary, load_costs, record_costs

    record_costs(tmp_path, "0001", {"train": 10.0, "validation": 2.0, "build": 0.5})
    record_costs(tmp_path, "0002", {"train": 20.0, "validation": 4.0, "process_start": 3.0})
    record_costs(tmp_path, "0002", {"train": 30.0, "validation": 6.0, "process_start": 1.0})
    costs = load_costs(tmp_path)
    assert sorted(costs["trial_id"].unique()) == ["0001", "0002"]  # the re-run replaced
    summary = cost_summary(costs).set_index("component")
    assert summary.loc["train", "total"] == 40.0
    # a training without a component counts 0 for it; fixed = all but the epochs' own work
    assert summary.loc["process_start", "mean"] == 0.5
    assert summary.loc["fixed", "total"] == 1.5 and summary.loc["fixed", "median"] == 0.75


def test_equal_scores_rank_the_smaller_model_first_then_the_earlier_trial() -> None:
    import pandas as pd

    from search.results import best_trial, ranked_trials

    trials = pd.DataFrame(
        {
            "trial_id": ["baseline", "0", "1", "2", "3"],
            "status": ["completed", "completed", "completed", "pruned", "failed"],
            "val_accuracy": [0.9, 0.7, 0.7, 0.7, None],
            "params": [1000, 500, 200, 200, 10],
        }
    )
    assert list(ranked_trials(trials)["trial_id"]) == ["1", "2", "0"]  # baseline, failed out
    best = best_trial(trials)
    assert best is not None and best["trial_id"] == "1"


def test_a_confirm_file_from_before_refits_averaged_reads_their_last_epoch(tmp_path: Path) -> None:
    """An older run's ``confirm.csv`` has no ``averaged_epochs`` column: it is read (the run
    can be continued) and its refit described as what it shipped, its last epoch's weights."""
    import pandas as pd

    from search.confirm import CONFIRM_COLUMNS, load_confirm, shipped_summary

    row = dict.fromkeys(CONFIRM_COLUMNS)
    row |= {"run_id": "refit-7", "stage": "refit", "candidate": "top-1", "trial_id": "7"}
    row |= {"status": "completed", "epochs": 12, "seed": 3, "seed_index": 1}
    old = [c for c in CONFIRM_COLUMNS if c != "averaged_epochs"]
    pd.DataFrame([row], columns=old).to_csv(tmp_path / "confirm.csv", index=False)
    table = load_confirm(tmp_path)
    assert table["averaged_epochs"].tolist() == [1]
    pick = type("Pick", (), {"trial_id": "7"})()
    shipped = shipped_summary(table, pick, "trainval")  # type: ignore[arg-type]
    assert shipped["averaged_epochs"] == 1 and shipped["what"].endswith("its last epoch")


def test_a_confirm_file_from_before_selection_folds_keeps_its_selection_on_validation(
    tmp_path: Path,
) -> None:
    """An older run's ``confirm.csv`` has no ``val_fold`` column: it is read, and its further
    selection runs are validated on the validation images, paired with its earlier ones."""
    import pandas as pd

    from search.confirm import CONFIRM_COLUMNS, load_confirm, seed_fold, selection_images

    row = dict.fromkeys(CONFIRM_COLUMNS)
    row |= {"run_id": "select-7-s1", "stage": "select", "candidate": "top-1", "trial_id": "7"}
    row |= {"status": "completed", "epochs": 12, "seed": 3, "seed_index": 1, "val_tail": 0.7}
    old = [c for c in CONFIRM_COLUMNS if c != "val_fold"]
    pd.DataFrame([row], columns=old).to_csv(tmp_path / "confirm.csv", index=False)
    table = load_confirm(tmp_path)
    assert table["val_fold"].isna().all()
    assert seed_fold(table, 1, 4) == 0
    assert selection_images(table) == "the validation images"
