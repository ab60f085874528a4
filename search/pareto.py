"""Accuracy and size together: the trials no other trial beats on both.

A trial is on the Pareto front when no other trial at the same budget has at most its
parameters and a higher validation accuracy. Compared at the full budget (``--max-epochs``),
as the other equal-budget views are: a 3-epoch trial's score says little about its size's
worth. Pure functions over the results table.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from search.results import BASELINE_ID
from search.space import PARAM_NAMES

BYTES_PER_PARAM = 4  # float32 weights, as exported


def full_budget(trials: pd.DataFrame, max_epochs: int) -> pd.DataFrame:
    """Completed trials (the baseline included) that trained for ``max_epochs``."""
    done = trials[(trials["status"] == "completed") & trials["val_accuracy"].notna()]
    done = done[(done["epochs"] >= max_epochs) & done["params"].notna() & (done["params"] > 0)]
    return done.reset_index(drop=True)


def front(points: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``points`` (``params``, ``val_accuracy``) on the front, smallest first: each
    strictly more accurate than every smaller or equal one before it."""
    ordered = points.sort_values(["params", "val_accuracy"], ascending=[True, False])
    best = -1.0
    keep = []
    for index, row in ordered.iterrows():
        if float(row["val_accuracy"]) > best:
            keep.append(index)
            best = float(row["val_accuracy"])
    return ordered.loc[keep].reset_index(drop=True)


def front_records(
    trials: pd.DataFrame,
    max_epochs: int,
    latency: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """``summary.json``'s ``pareto``: the front's trials with parameters, size and score, and
    the serving latency the export measured (``latency``, by trial id) where it has one."""
    rows = front(full_budget(trials, max_epochs))
    latency = latency or {}
    return [
        {
            "trial_id": str(r["trial_id"]),
            "baseline": str(r["trial_id"]) == BASELINE_ID,
            "params": int(r["params"]),
            "size_bytes": int(r["params"]) * BYTES_PER_PARAM,
            "val_accuracy": float(r["val_accuracy"]),
            "values": {k: _plain(r[k]) for k in PARAM_NAMES if k in r},
            "latency_ms_per_image": latency.get(str(r["trial_id"])),
        }
        for r in rows.to_dict("records")
    ]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
