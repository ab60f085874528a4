"""The confirmation phase's choices: which candidates, which winner, what summary.json says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.confirm import (
    candidates,
    confirm_seed,
    evidence,
    load_confirm,
    unconfirmed,
    winner,
)
from search.results import load_trials
from search.space import baseline_values
from tests.report_fixtures import N_TEST, make_run, write_confirmation

SUMMARY_KEYS = {
    "test_n",
    "confirm_seeds",
    "winner",
    "baseline",
    "delta_points",
    "delta_ci95",
    "verdict",
    "exported",
}


def test_candidates_are_the_best_distinct_configurations_then_the_baseline(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", confirmed=False)
    trials = load_trials(run_dir)
    dup = trials[trials["trial_id"] == "0003"].assign(trial_id="0009", val_accuracy=0.72)
    trials = pd.concat([trials, dup], ignore_index=True)  # same parameters, same score
    cands = candidates(trials, top=2, baseline=baseline_values())
    assert [c.trial_id for c in cands] == ["0003", "0001", "baseline"]
    assert cands[0].search_val_accuracy == pytest.approx(0.72)
    assert cands[-1].values == baseline_values() and cands[-1].is_baseline
    assert [c.trial_id for c in candidates(trials, top=1, baseline=None)] == ["0003"]


def test_confirmation_seeds_are_shared_by_candidates_and_new() -> None:
    seeds = [confirm_seed(1337, i) for i in range(3)]
    assert len(set(seeds)) == 3 and seeds == [confirm_seed(1337, i) for i in range(3)]
    assert confirm_seed(0, 0) != confirm_seed(1, 0)  # --seed 0 is a seed like any other


def test_the_winner_is_chosen_on_validation_never_on_test() -> None:
    rows = []
    for cand, val, test in (("top-1", 0.80, 0.60), ("top-2", 0.70, 0.90), ("baseline", 0.9, 0.9)):
        for k in (1, 2):
            rows.append(
                {
                    "run_id": f"{cand}-{k}",
                    "candidate": cand,
                    "trial_id": cand,
                    "seed_index": k,
                    "val_accuracy": val + 0.01 * k,
                    "test_accuracy": test,
                    "status": "completed",
                }
            )
    name, run = winner(pd.DataFrame(rows))
    assert name == "top-1"  # best mean validation; top-2's better test score plays no part
    assert run["run_id"] == "top-1-2"  # its best validation run is the one exported


def test_summary_json_answers_the_question(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS - {"exported"} <= set(summary)
    assert summary["test_n"] == N_TEST and summary["confirm_seeds"] == 3
    w, b = summary["winner"], summary["baseline"]
    assert w["trial_id"] == "0003" and len(w["test_accuracy_seeds"]) == 3
    assert w["test_accuracy_mean"] == pytest.approx(np.mean(w["test_accuracy_seeds"]))
    delta = 100 * (w["test_accuracy_mean"] - b["test_accuracy_mean"])
    assert summary["delta_points"] == pytest.approx(delta)
    lo, hi = summary["delta_ci95"]
    assert lo <= summary["delta_points"] <= hi
    assert summary["verdict"] in ("better", "worse", "indistinguishable")
    assert summary["sentence"].startswith(f"On {N_TEST} untouched test images, 3 seeds each")


def test_only_seeds_finished_for_both_sides_are_compared(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", confirmed=False)
    write_confirmation(run_dir, seeds=3)
    table = load_confirm(run_dir)
    table.loc[table["run_id"] == "confirm-baseline-s3", "status"] = "failed"
    labels = np.array([i % 2 for i in range(N_TEST)])
    summary = evidence(run_dir, table, labels, None)
    assert summary["confirm_seeds"] == 2
    assert len(summary["winner"]["test_accuracy_seeds"]) == 2


def test_a_run_without_confirmation_says_it_is_unconfirmed(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", confirmed=False)
    summary = unconfirmed(load_trials(run_dir), None, 40)
    assert summary["verdict"] == "unconfirmed" and summary["delta_ci95"] is None
    assert "optimistic" in summary["sentence"]
    assert summary["winner"]["trial_id"] == "0003"


def test_an_export_is_swapped_in_whole(tmp_path: Path) -> None:
    from search.export import _install

    run_dir = tmp_path / "run"
    (run_dir / "best_model").mkdir(parents=True)
    (run_dir / "best_model" / "saved_model.pb").write_text("old")
    (run_dir / "export.json").write_text('{"old": true}')
    stage = run_dir / ".export-1"
    (stage / "best_model").mkdir(parents=True)
    (stage / "best_model" / "saved_model.pb").write_text("new")
    (stage / "best_model.keras").write_text("new keras")
    (stage / "validation_predictions.csv").write_text("path\n")
    _install(stage, run_dir, {"new": True})
    assert (run_dir / "best_model" / "saved_model.pb").read_text() == "new"
    assert (run_dir / "best_model.keras").read_text() == "new keras"
    assert json.loads((run_dir / "export.json").read_text()) == {"new": True}
    assert not stage.exists()
