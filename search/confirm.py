"""The confirmation phase: the search's best configurations and the baseline, trained again.

The search's best validation score is optimistic: it is the best of many noisy scores, and the
same validation images chose the trial, its epoch and its promotions (the winner's curse).
So after the search the top ``--confirm-top`` configurations and the baseline are each trained
from scratch with ``--confirm`` new seeds for the full budget, their best epoch chosen on
validation, then scored once on the test set, which nothing before has read. The winner is the
candidate with the best mean *validation* accuracy (never chosen on test); it is compared with
the baseline on the same test images and seeds (``search.stats.paired_difference``).

``confirm.csv`` has one row per finished run, written after its test predictions
(``confirm/<run_id>.npy``, the predicted class of every test image in file order), so a run
killed at any moment is either recorded whole or run again.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.results import (
    BASELINE_ID,
    best_trial,
    flatten,
    locked_results,
    number,
    ranked_trials,
    read_table,
    replace_rows,
)
from search.space import DEFAULT_SPACE, PARAM_NAMES, values_of
from search.stats import accuracy_ci, paired_difference, sentence

CONFIRM_COLUMNS = (
    "run_id",
    "candidate",
    "trial_id",
    "seed_index",
    "seed",
    *PARAM_NAMES,
    "search_val_accuracy",
    "val_accuracy",
    "best_epoch",
    "test_accuracy",
    "n_validation",
    "n_test",
    "epochs",
    "seconds",
    "peak_rss_mb",
    "status",
    "error",
    "ended_at",
)


@dataclass(frozen=True)
class Candidate:
    """One configuration to confirm: ``trial_id`` is the search trial it came from."""

    trial_id: str
    values: dict[str, Any]
    search_val_accuracy: float | None

    @property
    def is_baseline(self) -> bool:
        return self.trial_id == BASELINE_ID


@dataclass(frozen=True)
class ConfirmRow:
    run_id: str
    candidate: str  # "baseline" or "top-1", "top-2", ...
    trial_id: str
    seed_index: int
    seed: int
    values: dict[str, Any]  # every parameter of the space (one column each)
    search_val_accuracy: float | None
    val_accuracy: float | None
    best_epoch: int | None
    test_accuracy: float | None
    n_validation: int
    n_test: int
    epochs: int
    seconds: float
    peak_rss_mb: float | None
    status: str
    error: str | None
    ended_at: str


def candidates(
    trials: pd.DataFrame, *, top: int, baseline: dict[str, Any] | None
) -> list[Candidate]:
    """The ``top`` best distinct configurations of the search by validation accuracy, then
    the baseline (when the run has one). Ties go to the earlier trial id."""
    out: list[Candidate] = []
    seen: set[tuple[Any, ...]] = set()
    for row in ranked_trials(trials).to_dict("records"):
        values = params_of(row)
        key = tuple(sorted(values.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append(Candidate(str(row["trial_id"]), values, float(row["val_accuracy"])))
        if len(out) == top:
            break
    if baseline is not None:
        base = trials[trials["trial_id"] == BASELINE_ID]
        score = number(base["val_accuracy"].iloc[0]) if len(base) else None
        out.append(Candidate(BASELINE_ID, dict(baseline), score))
    return out


def params_of(row: Any) -> dict[str, Any]:
    """A results row's parameter values as plain Python (JSON-ready, comparable)."""
    return values_of(DEFAULT_SPACE, row)


def candidate_name(
    cands: list[Candidate], cand: Candidate, table: pd.DataFrame | None = None
) -> str:
    """``baseline`` or ``top-k`` (its rank now); one name per configuration in ``confirm.csv``:
    a configuration confirmed before keeps its name, and a search extended since (whose new
    top-k is another trial) names the newcomer ``top-k, trial ID``."""
    if cand.is_baseline:
        return BASELINE_ID
    name = f"top-{[c for c in cands if not c.is_baseline].index(cand) + 1}"
    if table is None or table.empty:
        return name
    mine = table.loc[table["trial_id"].astype(str) == cand.trial_id, "candidate"]
    if len(mine):
        return str(mine.iloc[0])
    taken = set(table["candidate"].astype(str))
    return name if name not in taken else f"{name}, trial {cand.trial_id}"


def confirm_seed(seed: int, index: int) -> int:
    """Seed ``index`` of the confirmation: the same for every candidate (the runs are paired by
    seed), and unlike any search trial's seed."""
    return (seed * 104_729 + zlib.crc32(f"confirm-{index}".encode())) % 2**31


def run_id(cand: Candidate, index: int) -> str:
    return f"confirm-{cand.trial_id}-s{index + 1}"


def predictions_path(run_dir: Path, rid: str) -> Path:
    return Path(run_dir) / "confirm" / f"{rid}.npy"


def load_confirm(run_dir: Path) -> pd.DataFrame:
    table = read_table(
        Path(run_dir) / "confirm.csv",
        CONFIRM_COLUMNS,
        {"run_id": str, "trial_id": str, "error": str},
    )
    return table[table["run_id"].notna()].reset_index(drop=True)


def record_confirm(run_dir: Path, row: ConfirmRow) -> None:
    with locked_results(run_dir):
        added = pd.DataFrame([flatten(row)], columns=list(CONFIRM_COLUMNS))
        path, table = Path(run_dir) / "confirm.csv", load_confirm(run_dir)
        replace_rows(path, table, added, key="run_id", value=row.run_id)


def finished_runs(table: pd.DataFrame) -> set[str]:
    return set(table.loc[table["status"] == "completed", "run_id"].astype(str))


def best_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Each non-baseline candidate's finished run with the best validation accuracy (ties: the
    earlier seed), indexed by candidate: the runs whose weights may still be exported."""
    done = table[(table["status"] == "completed") & (table["candidate"] != BASELINE_ID)]
    ordered = done.sort_values(["val_accuracy", "seed_index"], ascending=[False, True])
    return ordered.drop_duplicates("candidate").set_index("candidate", drop=False)


def winner(table: pd.DataFrame) -> tuple[str, pd.Series] | None:
    """The confirmed winner: the non-baseline candidate with the best mean validation accuracy
    over its seeds (test is never used to choose), and its run with the best validation
    accuracy, which is the one exported."""
    done = table[(table["status"] == "completed") & (table["candidate"] != BASELINE_ID)]
    if done.empty:
        return None
    means = done.groupby("candidate")["val_accuracy"].mean()
    best = sorted(means.index, key=lambda c: (-means[c], c))[0]
    return best, best_runs(table).loc[best]


def _correct(run_dir: Path, rid: str, labels: np.ndarray) -> np.ndarray:
    return np.load(predictions_path(run_dir, rid)) == labels


def evidence(
    run_dir: Path,
    table: pd.DataFrame,
    test_labels: np.ndarray,
    export: dict[str, Any] | None,
) -> dict[str, Any]:
    """``summary.json``: the confirmed answer to "is the tuned AlexNet better than the blog's?"

    Only seeds that finished for both the winner and the baseline enter the comparison (it is
    paired by seed). Accuracies are fractions; ``delta_*`` are percentage points.
    """
    n_test = len(test_labels)
    out: dict[str, Any] = {"test_n": n_test, "confirmed": True}
    pick = winner(table)
    done = table[table["status"] == "completed"]
    base = done[done["candidate"] == BASELINE_ID]
    if pick is None:
        return {**out, "verdict": "unconfirmed", "reason": "no confirmation run finished"}
    name, best_run = pick
    win = done[done["candidate"] == name]
    seeds = sorted(set(win["seed_index"]) & set(base["seed_index"]))
    out["confirm_seeds"] = len(seeds)
    out["winner"] = _side(win, seeds) | {
        "candidate": name,
        "trial_id": str(best_run["trial_id"]),
        "params": params_of(best_run),
        "search_val_accuracy": number(best_run["search_val_accuracy"]),
    }
    if len(base):
        out["baseline"] = _side(base, seeds) | {
            "search_val_accuracy": number(base["search_val_accuracy"].iloc[0])
        }
    if seeds and len(base):
        by_seed = lambda frame: frame.set_index("seed_index").loc[seeds, "run_id"]  # noqa: E731
        w = np.stack([_correct(run_dir, r, test_labels) for r in by_seed(win)])
        b = np.stack([_correct(run_dir, r, test_labels) for r in by_seed(base)])
        diff = paired_difference(w, b)
        out |= {
            "delta_points": diff.points,
            "delta_ci95": list(diff.ci95),
            "verdict": diff.verdict if len(seeds) >= 2 else "indistinguishable",
            "sentence": sentence(
                n_test=n_test,
                seeds=len(seeds),
                winner_acc=float(w.mean()),
                baseline_acc=float(b.mean()),
                diff=diff,
            ),
        }
    else:
        out |= {
            "delta_points": None,
            "delta_ci95": None,
            "verdict": "unconfirmed",
            "sentence": "No baseline confirmation runs (--no-baseline or none finished): the "
            "tuned model cannot be compared with the blog's.",
        }
    if export:
        out["exported"] = exported_summary(export)
    return out


def exported_summary(export: dict[str, Any]) -> dict[str, Any]:
    acc, n = export.get("test_accuracy_in_memory"), int(export.get("n_test", 0))
    return {
        "trial_id": export.get("source_trial"),
        "run_id": export.get("source_run"),
        "seed": export.get("source_seed"),
        "val_accuracy": export.get("val_accuracy_in_memory"),
        "test_accuracy": acc,
        "test_ci95": list(accuracy_ci(acc, n)) if acc is not None and n else None,
    }


def unconfirmed(trials: pd.DataFrame, export: dict[str, Any] | None, n_test: int) -> dict[str, Any]:
    """``summary.json`` of a run with ``--confirm 0``: what the search chose, said plainly."""
    best = best_trial(trials)
    base = trials[trials["trial_id"] == BASELINE_ID].dropna(subset=["val_accuracy"])
    out: dict[str, Any] = {
        "test_n": n_test,
        "confirmed": False,
        "confirm_seeds": 0,
        "verdict": "unconfirmed",
        "delta_points": None,
        "delta_ci95": None,
        "sentence": "Unconfirmed (--confirm 0): the best trial's validation accuracy was "
        "selected on the same images that scored it, so its gain over the baseline is "
        "optimistic; run with --confirm 3 for a verdict on the test set.",
    }
    if best is not None:
        out["winner"] = {
            "trial_id": str(best["trial_id"]),
            "params": params_of(best),
            "search_val_accuracy": float(best["val_accuracy"]),
        }
    if len(base):
        out["baseline"] = {"search_val_accuracy": float(base["val_accuracy"].iloc[0])}
    if export:
        out["exported"] = exported_summary(export)
    return out


def _side(frame: pd.DataFrame, seeds: list[int]) -> dict[str, Any]:
    paired = frame[frame["seed_index"].isin(seeds)].sort_values("seed_index")
    return {
        "val_accuracy_mean": float(paired["val_accuracy"].mean()) if len(paired) else None,
        "test_accuracy_mean": float(paired["test_accuracy"].mean()) if len(paired) else None,
        "test_accuracy_seeds": [float(v) for v in paired["test_accuracy"]],
        "val_accuracy_seeds": [float(v) for v in paired["val_accuracy"]],
    }
