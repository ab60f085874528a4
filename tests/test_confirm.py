"""The confirmation phase's choices: which candidates, which winner, what summary.json says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.confirm import (
    CONFIRM_COLUMNS,
    Candidate,
    candidates,
    choose_winner,
    confirm_seed,
    evidence,
    keep_checkpoints,
    load_confirm,
    refit_at_chance_hint,
    refit_epochs,
    robust_score,
    run_candidates,
    seed_fold,
    selection,
    selection_column,
    selection_images,
    shipped_runs,
    tail_accuracy,
    unconfirmed,
)
from search.results import load_trials
from search.space import baseline_values
from search.stats import VERDICTS
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


def _stage_rows(stage: str, scores: dict[str, list[float]], test: float = 0.5) -> list[dict]:
    return [
        {
            "run_id": f"{stage}-{trial}-s{k + 1}",
            "stage": stage,
            "candidate": trial,
            "trial_id": trial,
            "seed_index": k + 1,
            "val_accuracy": v,
            "best_epoch": 4 + 2 * k,
            "at_chance": v < 0.55,
            "test_accuracy": test,
            "status": "completed",
        }
        for trial, vals in scores.items()
        for k, v in enumerate(vals)
    ]


def _cands(*ids: str) -> list[Candidate]:
    return [Candidate(t, {"dropout": 0.1}, 0.8 - 0.01 * i) for i, t in enumerate(ids)]


def test_the_winner_is_chosen_on_selection_runs_never_on_test_or_judge_runs() -> None:
    rows = _stage_rows("select", {"a": [0.80, 0.81], "b": [0.70, 0.71]}, test=0.9)
    # judge runs of b that look better play no part in the choice
    rows += _stage_rows("judge", {"b": [0.95, 0.95]}, test=0.99)
    table = pd.DataFrame(rows)
    assert choose_winner(table, _cands("a", "b")).trial_id == "a"  # type: ignore[union-attr]


def test_a_refit_at_chance_points_to_a_judge_run_only_when_one_learned() -> None:
    learned = pd.DataFrame(_stage_rows("judge", {"a": [0.51, 0.74, 0.50]}))
    assert "--refit none ships" in refit_at_chance_hint(learned, "a")
    random_labels = pd.DataFrame(_stage_rows("judge", {"a": [0.51, 0.49, 0.52]}))
    hint = refit_at_chance_hint(random_labels, "a")
    assert "--refit none" not in hint and "nor did any judge run" in hint


def test_a_configuration_with_a_collapsed_seed_loses_to_a_steady_one_of_similar_mean() -> None:
    lucky = [0.75, 0.75, 0.52]  # mean 0.673, one seed did not learn
    steady = [0.68, 0.67, 0.67]  # mean 0.673
    assert np.mean(lucky) == pytest.approx(np.mean(steady), abs=1e-3)
    assert robust_score(steady) > robust_score(lucky)
    table = pd.DataFrame(_stage_rows("select", {"lucky": lucky, "steady": steady}))
    # "lucky" was the search's best: the seeds overrule it
    assert choose_winner(table, _cands("lucky", "steady")).trial_id == "steady"  # type: ignore[union-attr]
    ranked = selection(table, _cands("lucky", "steady"))
    assert list(ranked["trial_id"]) == ["steady", "lucky"]
    assert ranked.set_index("trial_id").loc["lucky", "at_chance"] == 1
    # between steady configurations the mean decides
    assert robust_score([0.74, 0.75, 0.74]) > robust_score([0.72, 0.73, 0.72])


def test_selection_seeds_validate_on_folds_of_train_shared_by_every_candidate() -> None:
    empty = pd.DataFrame(columns=list(CONFIRM_COLUMNS))
    # seed k on fold k for every candidate (paired), cycling when seeds outnumber folds
    assert [seed_fold(empty, i, 4) for i in range(6)] == [1, 2, 3, 4, 1, 2]
    assert [seed_fold(empty, i, 0) for i in range(3)] == [0, 0, 0]  # no fold: validation
    new = pd.DataFrame(_stage_rows("select", {"a": [0.7, 0.7]})).assign(val_fold=[1, 2])
    assert seed_fold(new, 2, 4) == 3
    assert "fold of the train images" in selection_images(new)
    # a run directory whose selection runs were validated on the validation images before
    # folds existed: its new selection runs stay on them, paired with the earlier ones
    old = pd.DataFrame(_stage_rows("select", {"a": [0.7, 0.7]}))
    assert seed_fold(old, 2, 4) == 0 and seed_fold(old.assign(val_fold=None), 2, 4) == 0
    assert selection_images(old) == selection_images(empty) == "the validation images"


def test_a_runs_tail_is_the_mean_of_the_epochs_a_refit_averages() -> None:
    curve = [(e, 0.50 + 0.01 * e) for e in range(1, 21)]
    assert tail_accuracy(curve, 20) == pytest.approx(0.50 + 0.01 * 18)  # epochs 16-20
    assert tail_accuracy(list(reversed(curve)), 20) == tail_accuracy(curve, 20)  # resumed
    assert tail_accuracy(curve[:-1], 20) is None  # it did not reach its last epoch
    assert tail_accuracy([(1, 0.6), (2, 0.7)], 2) == pytest.approx(0.7)  # short: its last
    assert tail_accuracy([*curve[:-1], (20, float("nan"))], 20) is None


def test_the_selection_ranks_runs_on_their_tail_not_on_their_best_epoch() -> None:
    """A noisy curve's best epoch is the luckiest of 20 scores: "spiky" peaks higher than
    "steady" on every seed but ends lower, and the tail (what the refit averages) decides. A
    run directory recorded before tails existed keeps its best-epoch ranking, for all alike."""
    rows = _stage_rows("select", {"spiky": [0.78, 0.77, 0.78], "steady": [0.75, 0.75, 0.76]})
    old = pd.DataFrame(rows)
    assert selection_column(old) == "val_accuracy"
    assert choose_winner(old, _cands("spiky", "steady")).trial_id == "spiky"  # type: ignore[union-attr]
    tails = {"spiky": 0.69, "steady": 0.73}
    table = pd.DataFrame(
        [{**r, "val_tail": tails[r["trial_id"]] + 0.001 * i} for i, r in enumerate(rows)]
    )
    assert selection_column(table) == "val_tail"
    assert choose_winner(table, _cands("spiky", "steady")).trial_id == "steady"  # type: ignore[union-attr]
    ranked = selection(table, _cands("spiky", "steady")).set_index("trial_id")
    assert ranked.loc["steady", "val_mean"] == pytest.approx(0.73 + 0.001 * 4)
    table.loc[0, "val_tail"] = float("nan")  # one run without a tail: all rank on best epochs
    assert choose_winner(table, _cands("spiky", "steady")).trial_id == "spiky"  # type: ignore[union-attr]


def test_with_one_candidate_the_searchs_choice_stands() -> None:
    empty = pd.DataFrame(columns=list(CONFIRM_COLUMNS))
    assert choose_winner(empty, _cands("a")).trial_id == "a"  # type: ignore[union-attr]
    assert choose_winner(empty, _cands("a", "b")) is None  # no selection run yet


def test_the_shipped_model_is_the_refit_else_the_best_judge_run() -> None:
    rows = _stage_rows("judge", {"a": [0.70, 0.74, 0.72]})
    table = pd.DataFrame(rows)
    assert refit_epochs(table, "a") == 6  # median of best epochs 4, 6, 8
    assert _shipped(table, "a", "trainval") == ["judge-a-s2"]
    refit = {**rows[0], "run_id": "refit-a", "stage": "refit", "val_accuracy": None}
    table = pd.DataFrame([*rows, refit])
    assert _shipped(table, "a", "trainval") == ["refit-a"]
    assert _shipped(table, "a", "none") == ["judge-a-s2"]
    assert keep_checkpoints(table) == {"refit-a", "judge-a-s2"}


def _shipped(table: pd.DataFrame, trial_id: str, refit: str, seeds: int = 1) -> list[str]:
    return [str(r["run_id"]) for r in shipped_runs(table, trial_id, refit, seeds)]


def test_the_shipped_model_averages_the_refits_that_learned() -> None:
    """--refit-seeds R: the refits of the winner, in seed order, are averaged; one that did
    not learn its own images is left out (decided without test), and a smaller R ships the
    first R. The first refit keeps its old run id, so an older run's refit is its seed 1."""
    from search.confirm import Candidate, refit_id, shipped_summary

    assert [refit_id("a", "trainval", i) for i in range(3)] == [
        "refit-a",
        "refit-a-s2",
        "refit-a-s3",
    ]
    assert refit_id("a", "all", 1) == "refit-all-a-s2"
    rows = _stage_rows("judge", {"a": [0.70, 0.74, 0.72]})
    refit = {**rows[0], "stage": "refit", "val_accuracy": None, "fit_at_chance": False}
    refit |= {"averaged_epochs": 5, "epochs": 6}
    first, second = (
        {**refit, "run_id": "refit-a"},
        {**refit, "run_id": "refit-a-s2", "seed_index": 1},
    )
    table = pd.DataFrame([*rows, second, first])  # finished out of order
    assert _shipped(table, "a", "trainval", 2) == ["refit-a", "refit-a-s2"]
    assert _shipped(table, "a", "trainval", 1) == ["refit-a"]
    assert _shipped(table, "a", "trainval", 3) == ["refit-a", "refit-a-s2"]  # the third not yet
    summary = shipped_summary(table, Candidate("a", {}, 0.75), "trainval", 2)
    assert summary["run_ids"] == ["refit-a", "refit-a-s2"]
    assert "2 times" in summary["what"] and "probabilities averaged" in summary["what"]
    collapsed = {**first, "fit_accuracy": 0.5, "fit_at_chance": True}
    table = pd.DataFrame([*rows, collapsed, second])
    assert _shipped(table, "a", "trainval", 2) == ["refit-a-s2"]
    what = shipped_summary(table, Candidate("a", {}, 0.75), "trainval", 2)["what"]
    assert "refit-a left out" in what
    both = pd.DataFrame([*rows, collapsed, {**second, "fit_at_chance": True}])
    assert _shipped(both, "a", "trainval", 2) == ["judge-a-s2"]  # the best judge run learned


def test_a_refit_that_did_not_learn_its_own_images_is_not_shipped() -> None:
    """A refit whose weights are at chance on the train + validation images it trained on did not
    learn: the winner's best judge run (chosen on validation) ships instead, and the summary
    says why. No test score takes part in that choice; with no judge run that learned, the
    refit stays."""
    from search.confirm import Candidate, shipped_summary

    rows = _stage_rows("judge", {"a": [0.70, 0.74, 0.72]})
    refit = {**rows[0], "run_id": "refit-a", "stage": "refit", "val_accuracy": None}
    learned = {**refit, "fit_accuracy": 0.93, "fit_at_chance": False, "test_accuracy": 0.40}
    collapsed = {**refit, "fit_accuracy": 0.50, "fit_at_chance": True, "test_accuracy": 0.90}
    pick = Candidate("a", {}, 0.75)
    table = pd.DataFrame([*rows, learned])
    assert _shipped(table, "a", "trainval") == ["refit-a"]
    table = pd.DataFrame([*rows, collapsed])
    assert _shipped(table, "a", "trainval") == ["judge-a-s2"]
    what = shipped_summary(table, pick, "trainval")["what"]
    assert "refit did not learn" in what and "0.5000" in what
    alone = pd.DataFrame([collapsed])  # nothing better to ship: the refit, flagged
    assert _shipped(alone, "a", "trainval") == ["refit-a"]
    # nor when no judge run learned either (all at chance on validation): nothing is better
    unlearned = _stage_rows("judge", {"a": [0.50, 0.52, 0.51]})
    table = pd.DataFrame([*unlearned, collapsed])
    assert _shipped(table, "a", "trainval") == ["refit-a"]
    # confirm.csv holds the flag as text
    table = pd.DataFrame([*rows, {**collapsed, "fit_at_chance": "True"}])
    assert _shipped(table, "a", "trainval") == ["judge-a-s2"]


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
    assert summary["verdict"] in VERDICTS
    assert summary["sentence"].startswith(f"On {N_TEST} untouched test images, 3 seeds each")


def test_only_seeds_finished_for_both_sides_are_compared(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", confirmed=False)
    write_confirmation(run_dir, seeds=3)
    table = load_confirm(run_dir)
    table.loc[table["run_id"] == "confirm-baseline-s3", "status"] = "failed"
    labels = np.array([i % 2 for i in range(N_TEST)])
    summary = evidence(
        run_dir, table, labels, None, cands=run_candidates(run_dir, {"confirm_top": 1})
    )
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


def test_one_paired_seed_gives_no_interval_and_an_inconclusive_verdict(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", confirmed=False)
    write_confirmation(run_dir, seeds=3)
    table = load_confirm(run_dir)
    table.loc[table["run_id"].isin(["confirm-baseline-s2", "confirm-baseline-s3"]), "status"] = (
        "failed"
    )
    labels = np.array([i % 2 for i in range(N_TEST)])
    summary = evidence(
        run_dir, table, labels, None, cands=run_candidates(run_dir, {"confirm_top": 1})
    )
    assert summary["confirm_seeds"] == 1
    assert summary["delta_ci95"] is None and summary["verdict"] == "inconclusive"
    assert "inconclusive" in summary["sentence"] and "better" not in summary["sentence"]


def test_two_models_at_chance_get_no_verdict_whatever_the_test_noise(tmp_path: Path) -> None:
    """Random labels: every judge run at chance; the verdict is held back even when the test
    images happen to favour one side."""
    run_dir = make_run(tmp_path / "run", confirmed=False)
    write_confirmation(run_dir, seeds=3)  # the winner is clearly better on test here
    table = load_confirm(run_dir)
    labels = np.array([i % 2 for i in range(N_TEST)])
    cands = run_candidates(run_dir, {"confirm_top": 1})
    before = evidence(run_dir, table, labels, None, cands=cands)
    table["at_chance"] = True
    after = evidence(run_dir, table, labels, None, cands=cands)
    assert before["verdict"] in VERDICTS and before["delta_points"] == after["delta_points"]
    assert after["verdict"] == "inconclusive" and "neither model learned" in after["sentence"]
    assert len(after["at_chance_runs"]) == 6


def _smaller_run(tmp_path: Path, smaller_right: float) -> tuple[Path, np.ndarray]:
    """The fixture run (winner 0003: dense 512, search 0.72) with params per trial, plus trial
    0005 (dense 128, search 0.71: within 2 points, 4x smaller) judged on the same seeds; its
    test predictions equal the winner's where ``smaller_right`` is 1, else worse."""
    import dataclasses

    from search.confirm import ConfirmRow, predictions_path, record_confirm, run_id
    from search.results import record_trial
    from tests.report_fixtures import _history, _row

    run_dir = make_run(tmp_path / "run")
    trials = load_trials(run_dir)
    sizes = {"baseline": 58_000_000, "0000": 8_000, "0001": 16_000, "0002": 8_000, "0003": 4_000}
    for trial_id, size in sizes.items():
        row = trials[trials["trial_id"] == trial_id].iloc[0]
        rebuilt = _row(
            trial_id,
            "completed",
            float(row["val_accuracy"]),
            lr=float(row["learning_rate"]),
            dense=int(row["dense_units"]),
            dropout=float(row["dropout"]),
            lrn=bool(row["lrn"]),
            epochs=3,
        )
        record_trial(run_dir, dataclasses.replace(rebuilt, params=size), _history(3, 0.5))
    small = _row("0005", "completed", 0.71, lr=9e-4, dense=128, epochs=3)
    record_trial(run_dir, dataclasses.replace(small, params=1_000), _history(3, 0.5))
    labels = np.array([i % 2 for i in range(N_TEST)])
    table = load_confirm(run_dir)
    rng = np.random.default_rng(9)
    cand = Candidate(
        "0005", {"dropout": 0.25, "lrn": True, "dense_units": 128, "learning_rate": 9e-4}, 0.71
    )
    for index in range(3):
        winner_preds = np.load(predictions_path(run_dir, f"confirm-0003-s{index + 1}"))
        worse = rng.random(N_TEST) > smaller_right
        predicted = np.where(worse, 1 - labels, winner_preds).astype(np.int16)
        rid = run_id(cand, index)
        np.save(predictions_path(run_dir, rid), predicted)
        base = table[table["run_id"] == f"confirm-0003-s{index + 1}"].iloc[0]
        record_confirm(
            run_dir,
            ConfirmRow(
                run_id=rid,
                stage="judge",
                candidate="smallest",
                trial_id="0005",
                seed_index=index + 1,
                seed=int(base["seed"]),
                values=cand.values,
                search_val_accuracy=0.71,
                val_accuracy=0.7,
                best_epoch=3,
                at_chance=False,
                test_accuracy=float(np.mean(predicted == labels)),
                n_validation=7,
                n_test=N_TEST,
                epochs=3,
                seconds=2.0,
                peak_rss_mb=800.0,
                status="completed",
                error=None,
                ended_at="2026-11-26T00:02:00+00:00",
            ),
        )
    return run_dir, labels


def test_the_smaller_candidate_is_the_smallest_of_the_front_within_the_margin(
    tmp_path: Path,
) -> None:
    from search.confirm import smaller_candidate

    run_dir, _ = _smaller_run(tmp_path, 1.0)
    trials = load_trials(run_dir)
    winner = Candidate("0003", {}, 0.72)
    assert smaller_candidate(trials, winner, max_epochs=3, margin=2.0).trial_id == "0005"
    # a margin under the 1-point gap leaves none; a trial short of the full budget never counts
    assert smaller_candidate(trials, winner, max_epochs=3, margin=0.5) is None
    assert smaller_candidate(trials, winner, max_epochs=4, margin=2.0) is None
    assert smaller_candidate(trials, Candidate("0005", {}, 0.71), max_epochs=3, margin=2) is None


@pytest.mark.parametrize("right, ships", [(1.0, True), (0.6, False)])
def test_select_smallest_ships_the_smaller_model_only_when_it_is_equivalent(
    tmp_path: Path, right: float, ships: bool
) -> None:
    from search.confirm import run_evidence, shipped_pick

    run_dir, labels = _smaller_run(tmp_path, right)
    options = {"confirm_top": 1, "refit": "none", "select": "smallest", "max_epochs": 3}
    summary = run_evidence(run_dir, load_confirm(run_dir), labels, None, options)
    smaller = summary["smaller"]
    assert smaller["trial_id"] == "0005" and smaller["times_smaller"] == pytest.approx(4.0)
    assert smaller["verdict"] in VERDICTS and smaller["seeds"] == 3
    assert smaller["ships"] is ships
    shipped = shipped_pick(run_dir, load_confirm(run_dir), labels, options)
    assert shipped.trial_id == ("0005" if ships else "0003")
    assert summary["winner"]["trial_id"] == shipped.trial_id
    assert summary["shipped"]["run_id"].startswith(f"confirm-{shipped.trial_id}-")
    assert summary["verdict"] in VERDICTS
    if ships:
        assert smaller["verdict"] == "equivalent" and smaller["delta_ci95"] == [0.0, 0.0]
        assert summary["sentence"].startswith(
            "The 1,000-parameter variant (trial 0005) is equivalent to the best"
        )
        assert "4.0x smaller; against the blog: on 40 untouched test images" in summary["sentence"]
    else:
        assert smaller["verdict"] != "equivalent"
        assert "(trial 0005, 1,000 parameters) was not shipped" in summary["sentence"]
    best = run_evidence(run_dir, load_confirm(run_dir), labels, None, options | {"select": "best"})
    assert "smaller" not in best and best["winner"]["trial_id"] == "0003"


def test_runs_left_counts_the_plans_own_runs_not_an_earlier_plans(tmp_path: Path) -> None:
    """The plan's "N runs to go" (and its ETA): a judge run from an earlier plan (a former
    smaller candidate's) is not a run this plan owes; a larger --confirm-top owes the new
    selection runs; the search's best stands for the winner until the selection has one."""
    from dataclasses import replace

    from search.confirm import ConfirmRow, record_confirm
    from search.finish import confirm_runs_left
    from search.rundir import RunConfig

    run_dir = make_run(tmp_path / "run")  # judge runs of 0003 and the baseline, 3 seeds each
    rows = load_confirm(run_dir).to_dict("records")
    old = ConfirmRow(
        **{k: rows[0][k] for k in ConfirmRow.__dataclass_fields__ if k in rows[0]},
        values={},
    )
    old = replace(old, run_id="confirm-0001-s1", trial_id="0001", candidate="smallest")
    record_confirm(run_dir, old)
    options = RunConfig.read(run_dir).options
    plan = {"confirm": 3, "baseline": True, "max_epochs": 3, "select": "best"}
    left = {
        (top, refit): confirm_runs_left(
            run_dir, 99, options | plan | {"confirm_top": top, "refit": refit}
        )
        for top in (1, 2)
        for refit in ("none", "trainval")
    }
    assert left == {(1, "none"): 0, (1, "trainval"): 2, (2, "none"): 6, (2, "trainval"): 8}
    # --refit-seeds: one refit each, or three; the plan's count agrees
    one = options | plan | {"confirm_top": 1, "refit": "trainval", "refit_seeds": 1}
    assert confirm_runs_left(run_dir, 99, one) == 1
    assert confirm_runs_left(run_dir, 99, one | {"refit_seeds": 3}) == 3
    assert confirm_runs_left(run_dir, 0, options | plan) == 0  # no evidence phase planned


def test_the_baselines_first_judge_run_is_owed_by_the_search_until_it_has_run(
    tmp_path: Path,
) -> None:
    """The search's baseline run is the judge's baseline seed 1: before the search has
    trained it, the evidence phase does not count it; once the search has a baseline without
    that judge row (a run that started with --confirm 0), the judge trains it."""
    from search.finish import confirm_runs_left
    from search.results import BASELINE_ID
    from search.rundir import RunConfig

    run_dir = make_run(tmp_path / "run")  # judge runs of 0003 and the baseline, 3 seeds each
    table = pd.read_csv(run_dir / "confirm.csv")
    table[table["candidate"] != BASELINE_ID].to_csv(run_dir / "confirm.csv", index=False)
    options = RunConfig.read(run_dir).options | {"confirm": 3, "confirm_top": 1, "refit": "none"}
    assert confirm_runs_left(run_dir, 99, options) == 3  # the search has its baseline
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    trials[trials["trial_id"] != BASELINE_ID].to_csv(run_dir / "trials.csv", index=False)
    assert confirm_runs_left(run_dir, 99, options) == 2  # seed 1 comes with the search
