"""After the search: the confirmation phase, the export and the run's answer (``summary.json``).

Each step reads what it needs from the run directory, so a run killed in any of them finishes
them when it is started again.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_pipeline.pipeline import PreparedData
from search import results as res
from search import rundir
from search.confirm import (
    best_runs,
    candidate_name,
    candidates,
    evidence,
    finished_runs,
    load_confirm,
    run_id,
    unconfirmed,
)
from search.loop import Budget
from search.stats import format_accuracy
from search.trial.runner import TrialRunner


def confirm_runs_left(run_dir: Path, total: int) -> int:
    return max(0, total - len(finished_runs(load_confirm(run_dir))))


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
    n_test: int,
) -> None:
    """Train the candidates again with new seeds and score them once on test.

    Seed-major order (every candidate's seed 1, then seed 2, ...): a run stopped by the time
    budget still has complete pairs of seeds to compare. Runs already in ``confirm.csv`` are
    not trained again.
    """
    cands = candidates(res.load_trials(run_dir), top=top, baseline=baseline)
    if not any(not c.is_baseline for c in cands):
        say("confirmation: no search trial has a score to confirm.")
        return
    names = {c.trial_id: candidate_name(cands, c, load_confirm(run_dir)) for c in cands}
    say(
        "confirmation: "
        + ", ".join(f"{names[c.trial_id]} (trial {c.trial_id})" for c in cands)
        + f"; {seeds} seeds each, {max_epochs} epochs, then {n_test:,} test images"
    )
    for index in range(seeds):
        for cand in cands:
            if run_id(cand, index) in finished_runs(load_confirm(run_dir)):
                continue  # confirmed before (also before the search was extended)
            if not budget.fits(runner.est.trial_s(max_epochs), "the next confirmation run"):
                return
            runner.confirm(cand, names[cand.trial_id], index, n_test=n_test)
            prune_confirm_checkpoints(run_dir)


def prune_confirm_checkpoints(run_dir: Path) -> None:
    """Keep the checkpoint of each candidate's best validation run (the export comes from
    the winner's); the baseline's and every other run's weights are not needed."""
    table = load_confirm(run_dir)
    keep = set(best_runs(table)["run_id"].astype(str))
    rundir.prune_checkpoints(run_dir, keep, set(table["run_id"].astype(str)))


def prune_search_checkpoints(run_dir: Path) -> None:
    """At the end of the search only the best trial's weights may still be exported."""
    trials = res.load_trials(run_dir)
    best = res.best_trial(trials)
    rundir.prune_checkpoints(
        run_dir,
        {str(best["trial_id"])} if best is not None else set(),
        set(trials["trial_id"].astype(str)),
    )


@dataclass(frozen=True)
class ExportResult:
    ok: bool
    stdout: str
    stderr: str


def export_in_fresh_process(run_dir: Path) -> ExportResult:
    """``python -m search.export --locked RUN_DIR``: the model is reloaded and checked in a
    process that shares nothing with the search (the search holds the run's lock)."""
    done = subprocess.run(
        [sys.executable, "-m", "search.export", "--locked", str(run_dir)],
        check=False,
        capture_output=True,
        text=True,
    )
    return ExportResult(done.returncode == 0, done.stdout.strip(), done.stderr)


def best_trial_line(trials: Any, n_validation: int) -> str | None:
    """The search's best trial against the baseline, both on validation (optimistic)."""
    best = res.best_trial(trials)
    if best is None:
        return None
    base = res.baseline_score(trials)
    gain = (
        f"; baseline {format_accuracy(base, n_validation)}, "
        f"{100 * (best['val_accuracy'] - base):+.2f} points"
        if base is not None
        else ""
    )
    return (
        f"best search trial {best['trial_id']}: validation "
        f"{format_accuracy(float(best['val_accuracy']), n_validation)}{gain} (selected on "
        "validation, so optimistic)"
    )


def write_summary(run_dir: Path, data: PreparedData, *, confirmed: bool) -> dict[str, Any]:
    """``summary.json``: the run's answer, confirmed on test or said to be unconfirmed."""
    _, test_labels = data.cached.split("test")
    export = rundir.read_json(run_dir / "export.json")
    table = load_confirm(run_dir)
    if confirmed and len(table):
        summary = evidence(run_dir, table, test_labels, export)
    else:
        summary = unconfirmed(res.load_trials(run_dir), export, len(test_labels))
    rundir.write_json_atomic(run_dir / "summary.json", summary)
    return summary


def exported_line(summary: dict[str, Any]) -> str | None:
    exported = summary.get("exported")
    if not exported or exported.get("test_accuracy") is None:
        return None
    lo, hi = exported["test_ci95"]
    source = exported.get("run_id") or f"trial {exported['trial_id']}"
    return (
        f"exported model ({source}): test accuracy {exported['test_accuracy']:.4f} "
        f"(95% CI {lo:.3f}-{hi:.3f}, n={summary['test_n']:,})"
    )
