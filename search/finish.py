"""After the search: the confirmation phase, the export and the run's answer (``summary.json``).

Each step reads what it needs from the run directory, so a run killed in any of them finishes
them when it is started again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_pipeline.pipeline import PreparedData
from search import results as res
from search import rundir
from search.confirm import (
    DEFAULT_MARGIN,
    JUDGE,
    REFIT,
    SELECT,
    SMALLEST,
    Candidate,
    candidate_name,
    candidates,
    choose_winner,
    finished_runs,
    keep_checkpoints,
    load_confirm,
    refit_epochs,
    refit_seed_count,
    run_candidates,
    run_evidence,
    run_id,
    seed_fold,
    selected_on_folds,
    selection,
    selection_column,
    shipped_pick,
    smaller_candidate,
    tta_words,
    unconfirmed,
)
from search.loop import Budget
from search.pareto import front_records
from search.space import format_against_blog
from search.stats import format_selected
from search.trial.runner import TrialRunner


def confirm_runs_left(run_dir: Path, total: int, options: dict[str, Any]) -> int:
    """Evidence runs still to train: those ``run_confirmation`` will train that are not in
    ``confirm.csv`` yet; runs of an earlier plan (a former winner's, a former smaller
    candidate's) are not counted as done. Until the selection has a leader, the search's
    best stands for the winner. ``total``, the plan's count, when there is no candidate."""
    if not total:
        return 0
    table = load_confirm(run_dir)
    cands = run_candidates(run_dir, options)
    if not cands:
        return total
    done = finished_runs(table)
    seeds = range(int(options.get("confirm", 0)))

    def owed(cand: Candidate, stage: str) -> int:
        return sum(run_id(cand, i, stage) not in done for i in seeds)

    left = sum(owed(c, SELECT) for c in cands) if len(cands) > 1 else 0
    winner = choose_winner(table, cands) or cands[0]
    shipped = [winner]
    if options.get("baseline", True):
        base = Candidate(res.BASELINE_ID, {}, None)
        # its seed 1 is the search's baseline run: owed here only once the search has it
        searched = (res.load_trials(run_dir)["trial_id"] == res.BASELINE_ID).any()
        left += sum(run_id(base, i, JUDGE) not in done for i in seeds if i or searched)
    if options.get("select") == SMALLEST:
        small = smaller_candidate(
            res.load_trials(run_dir),
            winner,
            max_epochs=int(options["max_epochs"]),
            margin=float(options.get("margin", DEFAULT_MARGIN)),
        )
        shipped += [small] if small is not None else []
    left += sum(owed(c, JUDGE) for c in shipped)
    refit = str(options.get("refit", "trainval"))
    if refit != "none":  # the refits still owed by whichever configuration ships: the fewest
        refits = range(refit_seed_count(options))
        left += min(sum(run_id(c, i, REFIT, refit) not in done for i in refits) for c in shipped)
    return left


def run_confirmation(
    run_dir: Path,
    runner: TrialRunner,
    budget: Budget,
    say: Callable[[str], None],
    *,
    seeds: int,
    top: int,
    max_epochs: int,
    baseline: dict[str, Any] | None,
    test_labels: Any,
    options: dict[str, Any],
) -> None:
    """The evidence phase (``search.confirm``): select over seeds on validation, judge the
    winner against the baseline with fresh seeds on test (with ``--select smallest``, the
    smaller candidate too, on the same seeds), refit the configuration shipped.

    Seed-major order in each stage (every candidate's seed 1, then seed 2, ...): a run stopped
    by the time budget still has complete pairs of seeds. Runs already in ``confirm.csv`` are
    not trained again, so a larger ``--confirm`` or ``--confirm-top`` continues.
    """
    n_test, refit = len(test_labels), str(options.get("refit", "trainval"))
    cands = candidates(res.load_trials(run_dir), top=top, baseline=None)
    if not cands:
        say("confirmation: no search trial has a score to confirm.")
        return
    table = load_confirm(run_dir)
    names = {c.trial_id: candidate_name(cands, c, table) for c in cands}

    def train(stage: str, order: list[Candidate], what: str) -> bool:
        for index in range(seeds):
            for cand in order:
                if run_id(cand, index, stage) in finished_runs(load_confirm(run_dir)):
                    continue  # done before (also before the search or confirmation grew)
                if not budget.fits(
                    runner.est.trial_s(max_epochs, runner.params(cand.values)), what
                ):
                    return False
                name = res.BASELINE_ID if cand.is_baseline else names[cand.trial_id]
                runner.confirm(cand, name, index, n_test=n_test, stage=stage)
                prune_confirm_checkpoints(run_dir)
        return True

    if len(cands) > 1:
        say(
            "selection: "
            + ", ".join(f"{names[c.trial_id]} (trial {c.trial_id})" for c in cands)
            + f"; {seeds} seeds each, {max_epochs} epochs, "
            + (
                "each seed validated on its own fold of train (never on test)"
                if seed_fold(table, 0, runner.folds)
                else "scored on validation only"
            )
        )
        if not train(SELECT, cands, "the next selection run"):
            return
        for line in selection_lines(load_confirm(run_dir), cands, names):
            say(line)
    winner = choose_winner(load_confirm(run_dir), cands)
    if winner is None:
        say("selection: no run finished; no winner to judge.")
        return
    judged = [winner] + ([Candidate(res.BASELINE_ID, dict(baseline), None)] if baseline else [])
    done = finished_runs(load_confirm(run_dir))
    ready = [
        f"{names.get(c.trial_id, c.trial_id)} seed {i + 1}"
        for i in range(seeds)
        for c in judged
        if run_id(c, i, JUDGE) in done
    ]
    say(
        f"judging: winner {names[winner.trial_id]} (trial {winner.trial_id})"
        + (" and the baseline" if baseline else "")
        + f", {seeds} fresh seeds each, {max_epochs} epochs, then {n_test:,} test images"
        + (f" (already trained: {', '.join(ready)})" if ready else "")
    )
    if not train(JUDGE, judged, "the next judge run"):
        return
    margin = float(options.get("margin", DEFAULT_MARGIN))
    if options.get("select") == SMALLEST:
        small = smaller_candidate(
            res.load_trials(run_dir), winner, max_epochs=max_epochs, margin=margin
        )
        if small is None:
            say(
                f"smallest: no configuration of the front with fewer parameters than the "
                f"winner scored within {margin:g} points of it in the search; the best ships"
            )
        else:
            names[small.trial_id] = SMALLEST
            say(
                f"smallest: trial {small.trial_id} (search score {small.search_val_accuracy:.4f},"
                f" within {margin:g} points of the winner's), judged on the same {seeds} seeds"
            )
            if not train(JUDGE, [small], "the next judge run of the smaller candidate"):
                return
    if refit == "none":
        return
    table = load_confirm(run_dir)
    ship = shipped_pick(run_dir, table, test_labels, options) or winner
    epochs = refit_epochs(table, ship.trial_id)
    if epochs is None:
        return
    what = "the winner" if ship is winner else "the smaller equivalent configuration"
    seeds = refit_seed_count(options)
    for index in range(seeds):
        if run_id(ship, index, REFIT, refit) in finished_runs(load_confirm(run_dir)):
            continue
        cost = runner.est.trial_s(epochs, runner.params(ship.values))
        if not budget.fits(cost, f"refit {index + 1} of {what}"):
            return
        runner.refit(
            ship,
            names[ship.trial_id],
            epochs=epochs,
            n_test=n_test,
            refit=refit,
            index=index,
            seeds=seeds,
        )
        prune_confirm_checkpoints(run_dir)


def selection_lines(table: Any, cands: list[Candidate], names: dict[str, str]) -> list[str]:
    """The selection's ranking, one line per candidate, the winner first."""
    ranked = selection(table, cands)
    what = "last-epochs" if selection_column(table) == "val_tail" else "best-epoch"
    where = "fold" if selected_on_folds(table) else "validation"
    lines = []
    for i, row in enumerate(ranked.to_dict("records")):
        sd = f" +- {row['val_sd']:.4f}" if row["val_sd"] is not None else ""
        chance = f", {row['at_chance']} seed(s) AT CHANCE" if row["at_chance"] else ""
        mean = "-" if row["val_mean"] is None else f"{row['val_mean']:.4f}"
        lines.append(
            f"  {'winner ' if i == 0 else '       '}{names[row['trial_id']]} (trial "
            f"{row['trial_id']}): {what} {where} mean {mean}{sd} over {row['seeds']} seeds, "
            f"score {row['score']:.4f} (mean - standard error){chance}"
        )
    return lines


def prune_confirm_checkpoints(run_dir: Path) -> None:
    """Keep the refit's checkpoint and each configuration's best judge run's (the export comes
    from the winner's); selection runs and the baseline's weights are not needed."""
    table = load_confirm(run_dir)
    rundir.prune_checkpoints(run_dir, keep_checkpoints(table), set(table["run_id"].astype(str)))


def prune_search_checkpoints(run_dir: Path, needed: set[str]) -> None:
    """At the end of the search only the best trial's weights may still be exported, and
    ``needed`` (the engine's ``needed_checkpoints``) started from: a search that stopped
    inside a Hyperband bracket promotes from them when a larger ``--trials`` continues it, and
    its best so far need not be the trial promotion picks (ties are broken differently)."""
    trials = res.load_trials(run_dir)
    best = res.best_trial(trials)
    rundir.prune_checkpoints(
        run_dir,
        needed | ({str(best["trial_id"])} if best is not None else set()),
        set(trials["trial_id"].astype(str)),
    )
    # nothing trains any more: a state left behind is a training that will not resume (an
    # Optuna trial requeued under a new number)
    for state in (run_dir / "trials").glob(f"*/{rundir.EPOCH_STATE}"):
        state.unlink(missing_ok=True)


def best_trial_line(trials: Any, n_validation: int) -> str | None:
    """The search's best trial against the baseline, both on validation (optimistic)."""
    best = res.best_trial(trials)
    if best is None:
        return None
    base = res.baseline_score(trials)
    gain = (
        f"; baseline {format_selected(base, n_validation)}, "
        f"{100 * (best['val_accuracy'] - base):+.2f} points"
        if base is not None
        else ""
    )
    return (
        f"best search trial {best['trial_id']}: validation "
        f"{format_selected(float(best['val_accuracy']), n_validation)}{gain} (* selected on "
        "validation, so optimistic)"
    )


def write_summary(run_dir: Path, data: PreparedData, options: dict[str, Any]) -> dict[str, Any]:
    """``summary.json``: the run's answer, confirmed on test or said to be unconfirmed."""
    _, test_labels = data.cached.split("test")
    export = rundir.read_json(run_dir / "export.json")
    table = load_confirm(run_dir)
    if options.get("confirm") and len(table):
        summary = run_evidence(run_dir, table, test_labels, export, options)
    else:
        summary = unconfirmed(res.load_trials(run_dir), export, len(test_labels))
    # accuracy and size together, at the full budget (selected on validation: optimistic)
    summary["pareto"] = front_records(
        res.load_trials(run_dir),
        int(options["max_epochs"]),
        latency=(export or {}).get("front_latency"),
    )
    rundir.write_json_atomic(run_dir / "summary.json", summary)
    return summary


def exported_line(summary: dict[str, Any]) -> str | None:
    """The shipped model: which configuration, trained how, and its own test score."""
    exported = summary.get("exported")
    if not exported:
        return None
    source = exported.get("run_id") or f"trial {exported['trial_id']}"
    shipped = summary.get("shipped") or {}
    same = shipped.get("what") and shipped.get("run_id") == exported.get("run_id")
    how = f", {shipped['what']}" if same else ""
    if exported.get("tta") == "flip":
        how += f"; {tta_words('flip')}"
    if exported.get("test_accuracy") is None:
        if not (same and "test" in shipped.get("trained_on", [])):
            return None
        judged = (summary.get("winner") or {}).get("test_accuracy_mean")
        estimate = (
            f"; its configuration's judge runs scored {judged:.4f} on those images (mean of "
            f"{summary.get('confirm_seeds')} seeds, trained on train only)"
            if judged is not None
            else ""
        )
        return (
            f"exported model ({source}{how}): accuracy not measured, since it trained on "
            f"every labelled image, test included{estimate}"
        )
    lo, hi = exported["test_ci95"]
    return (
        f"exported model ({source}{how}): test accuracy {exported['test_accuracy']:.4f} "
        f"(95% CI {lo:.3f}-{hi:.3f}, n={summary['test_n']:,}, scored once)"
    )


def winner_line(summary: dict[str, Any]) -> str | None:
    """The winner named, with its parameters: what a user copies into their own code."""
    win = summary.get("winner")
    if not win or not win.get("params"):
        return None
    return f"winner: trial {win['trial_id']}: {format_against_blog(win['params'])}"
