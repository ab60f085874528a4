"""Scores at equal budget: what the report's per-parameter views and importance compare.

Hyperband trains trials for 3, 7 or 20 epochs and Optuna prunes trials early, so a trial's best
validation accuracy partly measures the budget it was dealt. Two tables compare like with like:

- **at the first rung**: every configuration's best validation accuracy over epochs 1..E, where
  E is the largest epoch that every scored configuration reached (Hyperband's first rung, or the
  earliest pruning). A promoted trial continues its parent's run (same parameters, same
  weights), so it is the same path: each path is counted once, by its first trial.
- **at the full budget**: the trials that trained for ``--max-epochs``, with their score.

Pure functions over the results table and ``history.csv``.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from search.results import search_trials
from search.space import PARAM_NAMES


class EqualBudget(NamedTuple):
    rung_epoch: int | None  # E: the epoch every scored configuration reached
    at_rung: pd.DataFrame  # trial_id, the parameters, val_accuracy (best over epochs <= E)
    max_epochs: int
    at_full: pd.DataFrame  # trials that reached max_epochs, with their val_accuracy
    mixed: bool  # whether the run's scores come from different budgets at all


def trial_path(trials: pd.DataFrame, history: pd.DataFrame, trial_id: str) -> pd.DataFrame:
    """A trial's validation accuracy per epoch along its full path: its parents' epochs first.

    Hyperband's promoted trials record only the epochs they trained; their earlier epochs are
    their parent's (``parent_id``, possibly a chain).
    """
    parents = trials.set_index(trials["trial_id"].astype(str))["parent_id"]
    chain: list[str] = []
    current: str | None = str(trial_id)
    while current is not None and current not in chain:
        chain.append(current)
        parent = parents.get(current)
        current = None if parent is None or pd.isna(parent) else str(parent)
    acc = history[(history["metric"] == "val_accuracy") & history["trial_id"].isin(chain)]
    # a child's own epochs override what its parent recorded for the same epoch numbers
    rank = {t: i for i, t in enumerate(chain)}
    acc = acc.assign(_rank=acc["trial_id"].map(rank)).sort_values(["epoch", "_rank"])
    acc = acc.drop_duplicates("epoch", keep="first")
    return acc[["epoch", "value"]].reset_index(drop=True)


def equal_budget(trials: pd.DataFrame, history: pd.DataFrame, max_epochs: int) -> EqualBudget:
    search = search_trials(trials)
    scored = search[search["status"].isin(["completed", "pruned"]) & search["val_accuracy"].notna()]
    roots = scored[scored["parent_id"].isna()] if "parent_id" in scored else scored
    paths = {str(t): trial_path(trials, history, str(t)) for t in roots["trial_id"]}
    reached = [int(p["epoch"].max()) for p in paths.values() if len(p)]
    rung = min(reached) if reached else None
    rows = []
    for r in roots.to_dict("records"):
        path = paths[str(r["trial_id"])]
        upto = path[path["epoch"] <= (rung or 0)]
        if upto.empty:
            continue
        rows.append(
            {
                "trial_id": str(r["trial_id"]),
                **{k: r[k] for k in PARAM_NAMES},
                "val_accuracy": float(upto["value"].max()),
            }
        )
    at_rung = pd.DataFrame(rows, columns=["trial_id", *PARAM_NAMES, "val_accuracy"])
    full = scored[scored["epochs"] >= max_epochs][["trial_id", *PARAM_NAMES, "val_accuracy"]]
    budgets = set(scored["epochs"].astype(int))
    return EqualBudget(rung, at_rung, max_epochs, full.reset_index(drop=True), len(budgets) > 1)


def cumulative_epochs(trials: pd.DataFrame) -> list[int]:
    """Epochs trained so far after each search trial, in order of completion (compute axis)."""
    frame = search_trials(trials)
    if "ended_at" in frame:
        frame = frame.sort_values("ended_at", kind="stable")
    trained = (frame["epochs"].fillna(0) - frame["initial_epoch"].fillna(0)).clip(lower=0)
    return [int(v) for v in trained.cumsum()]
