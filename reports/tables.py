"""Pure functions from a run's results to the summary and the table the report shows."""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd

from reports.rundata import RunData
from search.confirm import flagged, refit_splits
from search.results import (
    BASELINE_ID,
    baseline_score,
    best_trial,
    cost_summary,
    missing,
    search_trials,
)
from search.results import number as _num
from search.rundir import format_seconds
from search.space import PARAM_NAMES, Space
from search.stats import accuracy_ci

STATE_TEXT = {
    "running": "in progress",
    "crashed": "crashed: the search process is gone; rerun its command to resume",
    "interrupted": "interrupted (Ctrl-C); rerun its command to resume",
    "failed": "stopped after consecutive failed trials",
    "finished": "finished",
}


class Summary(NamedTuple):
    state: str
    state_text: str
    engine: str
    trials_done: int
    trials_planned: int
    statuses: dict[str, int]
    max_epochs: int
    wall_seconds: float
    best_id: str | None
    best_score: float | None
    baseline: float | None
    gain_points: float | None  # best - baseline, in percentage points, signed
    export_passed: bool | None
    export_problems: list[str]
    counts: dict[str, dict[str, int]]
    skipped: list[dict[str, str]]
    unlabelled: int
    command: str
    peak_disk_mb: float | None
    n_validation: int
    n_test: int
    best_ci: tuple[float, float] | None
    baseline_ci: tuple[float, float] | None
    evidence: dict[str, Any] | None  # summary.json: the confirmed verdict, when the run has one
    confirm_planned: int  # --confirm: seeds per candidate (0: no confirmation)
    epochs_planned: int | None  # the plan's epochs; trained counts repeats after interruptions
    epochs_trained: int | None


def run_state(run: RunData) -> str:
    state = run.status.get("state", "running")
    if state == "running" and not run.pid_alive:
        return "crashed"
    return state


def summarize(run: RunData) -> Summary:
    trials = run.trials
    best = best_trial(trials)
    base = baseline_score(trials)
    search = search_trials(trials)
    score = float(best["val_accuracy"]) if best is not None else None
    gain = 100 * (score - base) if score is not None and base is not None else None
    state = run_state(run)
    options = run.config.options
    return Summary(
        state=state,
        state_text=STATE_TEXT.get(state, state),
        engine=str(options.get("engine", "?")),
        trials_done=len(search),
        trials_planned=int(options.get("trials", len(search))),
        statuses={str(k): int(v) for k, v in search["status"].value_counts().items()},
        max_epochs=int(options.get("max_epochs", 0)),
        wall_seconds=float(run.status.get("wall_seconds", 0.0)),
        best_id=str(best["trial_id"]) if best is not None else None,
        best_score=score,
        baseline=base,
        gain_points=gain,
        export_passed=bool(run.export.get("passed", run.export.get("equal")))
        if run.export
        else None,
        export_problems=list(run.export.get("problems", [])) if run.export else [],
        counts=run.config.data.get("counts", {}),
        skipped=list(run.rejects.get("skipped", [])),
        unlabelled=len(run.rejects.get("unlabelled", [])),
        command=run.config.command,
        peak_disk_mb=run.status.get("peak_disk_mb"),
        n_validation=run.split_size("validation"),
        n_test=run.split_size("test"),
        best_ci=_ci(score, run.split_size("validation")),
        baseline_ci=_ci(base, run.split_size("validation")),
        evidence=run.summary,
        confirm_planned=int(options.get("confirm", 0) or 0),
        epochs_planned=run.status.get("epochs_planned"),
        epochs_trained=run.status.get("epochs_trained"),
    )


def _seed_cell(row: dict[str, Any], stage: str) -> int | str:
    """A run's seed, and the fold of train a selection run was validated on (a refit's:
    which of the ``--refit-seeds`` refits averaged into the shipped model)."""
    if stage == "refit":
        return int(row.get("seed_index") or 1)
    fold = _num(row.get("val_fold"))
    index = int(row["seed_index"])
    return f"{index} (fold {int(fold)})" if fold else index


def _ci(accuracy: float | None, n: int) -> tuple[float, float] | None:
    return accuracy_ci(accuracy, n) if accuracy is not None and n > 0 else None


STAGE_TITLES = {
    "select": "selection (no test)",
    "judge": "judge (fresh seeds, test)",
    "refit": "refit (train + validation, test)",
}
ALL_REFIT_TITLE = "refit (train + validation + test: not measured)"  # --refit all


def confirm_rows(confirm: pd.DataFrame, n_validation: int, n_test: int) -> list[dict[str, Any]]:
    """One row per evidence run, by stage (select, judge, refit) and candidate, then each
    candidate's mean. Validation scores are best epochs (selected) and the last epochs' mean
    (what the selection ranks on): shown without an interval; test scores carry theirs."""
    rows: list[dict[str, Any]] = []
    stages = confirm["stage"].fillna("judge").astype(str) if "stage" in confirm else None
    frame = confirm.assign(stage=stages if stages is not None else "judge")
    frame["at_chance"] = flagged(frame["at_chance"]) if "at_chance" in frame else False
    for stage in ("select", "judge", "refit"):
        part = frame[frame["stage"] == stage]
        order = sorted(set(part["candidate"]), key=lambda c: (c == BASELINE_ID, c))
        for cand in order:
            runs = part[part["candidate"] == cand].sort_values("seed_index")
            for r in runs.to_dict("records"):
                test = _num(r.get("test_accuracy"))
                rows.append(
                    {
                        "stage": ALL_REFIT_TITLE
                        if stage == "refit" and "test" in refit_splits(r)
                        else STAGE_TITLES[stage],
                        "candidate": str(cand),
                        "trial_id": str(r["trial_id"]),
                        "seed": _seed_cell(r, stage),
                        "status": str(r["status"]),
                        "search_val": _num(r.get("search_val_accuracy")),
                        "val": _num(r.get("val_accuracy")),
                        "tail": _num(r.get("val_tail")),
                        "at_chance": bool(r["at_chance"]),
                        "test": test,
                        "test_ci": _ci(test, n_test),
                        "best_epoch": _cell(r.get("best_epoch")),
                        "seconds": _cell(r.get("seconds")),
                        "error": _cell(r.get("error")),
                        "mean": False,
                    }
                )
            done = runs[runs["status"] == "completed"]
            # a candidate's refits (trainval, all) are different models, not seeds of one
            if len(done) > 1 and stage != "refit":
                rows.append(
                    {
                        "stage": STAGE_TITLES[stage],
                        "candidate": str(cand),
                        "trial_id": str(runs["trial_id"].iloc[0]),
                        "seed": f"mean of {len(done)}",
                        "status": "",
                        "search_val": _num(runs["search_val_accuracy"].iloc[0]),
                        "val": float(pd.to_numeric(done["val_accuracy"]).mean()),
                        "tail": _mean(done.get("val_tail")),
                        "at_chance": False,
                        "test": _mean(done["test_accuracy"]),
                        "test_ci": None,
                        "best_epoch": "",
                        "seconds": float(done["seconds"].sum()),
                        "error": "",
                        "mean": True,
                    }
                )
    return rows


def _mean(column: pd.Series | None) -> float | None:
    """The mean of a numeric column, None when it has no value (or the table lacks it)."""
    if column is None:
        return None
    values = pd.to_numeric(column, errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def cost_rows(costs: pd.DataFrame, trials: pd.DataFrame) -> list[dict[str, Any]]:
    """Where the search trials' time went (``costs.csv``), per component, largest first, with
    its share of their total; ``fixed`` (all but the epochs' own work) comes first."""
    ids = set(search_trials(trials)["trial_id"])
    summary = cost_summary(costs[costs["trial_id"].isin(ids)])
    if summary.empty:
        return []
    parts = summary[summary["component"] != "fixed"]
    total = float(parts["total"].sum()) or 1.0
    rows = [{**r, "share": r["total"] / total} for r in summary.to_dict("records")]
    return sorted(rows, key=lambda r: (r["component"] != "fixed", -r["total"]))


def _cell(value: Any) -> Any:
    return "" if missing(value) else value


def results_rows(trials: pd.DataFrame, space: Space, n_validation: int = 0) -> list[dict[str, Any]]:
    """Every trial (failed and pruned too), best first; the baseline is marked, not dropped.
    ``val_ci95`` is the 95% interval of its validation accuracy on ``n_validation`` images;
    ``display`` has each parameter's value as the space writes it."""
    frame = trials.copy()
    frame["_order"] = frame["val_accuracy"].fillna(-1.0)
    frame = frame.sort_values(["_order", "trial_id"], ascending=[False, True])
    rows = []
    for r in frame.to_dict("records"):
        rows.append(
            {
                "trial_id": str(r["trial_id"]),
                "baseline": r["trial_id"] == BASELINE_ID,
                "status": str(r["status"]),
                **{k: _cell(r.get(k)) for k in PARAM_NAMES},
                "val_accuracy": _cell(r.get("val_accuracy")),
                "val_ci95": _ci(_num(r.get("val_accuracy")), n_validation),
                "best_epoch": _cell(r.get("best_epoch")),
                "epochs": _cell(r.get("epochs")),
                "seconds": _cell(r.get("seconds")),
                "params": _cell(r.get("params")),
                "error": _cell(r.get("error")),
                "display": {
                    **{p.name: p.format(r[p.name]) for p in space if _cell(r.get(p.name)) != ""},
                    **_as_console(r),
                },
            }
        )
    return rows


def _as_console(r: dict[str, Any]) -> dict[str, str]:
    """Seconds and parameter counts as the console prints them (1m46s, 19,836,610)."""
    out = {}
    seconds, params = _num(r.get("seconds")), _num(r.get("params"))
    if seconds is not None:
        out["seconds"] = format_seconds(seconds)
    if params is not None and params > 0:
        out["params"] = f"{int(params):,}"
    return out


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def table_columns(rows: list[dict[str, Any]], columns: list[str]) -> tuple[list[str], list[str]]:
    """The trial table's columns that say something, and the rest folded into one line: a
    column with one value in every row (a fixed parameter) becomes ``name value``; an empty
    one (no trial failed: ``error``) is left out."""
    keep = ["trial_id", "status", "val_accuracy", "val_ci95"]
    shown, constant = [], []
    for c in columns:
        values = {_text(r["display"].get(c, r.get(c))) for r in rows}
        if c in keep or len(rows) < 2 or len(values) > 1:
            if values != {""}:
                shown.append(c)
        elif values != {""}:
            constant.append(f"{c} {values.pop()}")
    return shown, constant


def confusion(predictions: pd.DataFrame, classes: list[str]) -> list[list[int]]:
    """Counts by (true class, predicted class), in the order of ``classes``."""
    table = pd.crosstab(predictions["label"], predictions["predicted"])
    table = table.reindex(index=classes, columns=classes, fill_value=0)
    return [[int(v) for v in row] for row in table.to_numpy()]


def grid_sample(predictions: pd.DataFrame, n: int = 9) -> pd.DataFrame:
    """Images for the blog-style grid, balanced by true class (taken in turn, class by class):
    within each class the misclassified ones first, then the rest."""
    queues = []
    for _, group in predictions.groupby("label", sort=True):
        wrong = group[group["label"] != group["predicted"]]
        right = group[group["label"] == group["predicted"]]
        queues.append(pd.concat([wrong, right]))
    picked = []
    for i in range(max((len(q) for q in queues), default=0)):
        picked += [q.iloc[[i]] for q in queues if i < len(q)]
        if len(picked) >= n:
            break
    return pd.concat(picked).head(n) if picked else predictions.head(0)
