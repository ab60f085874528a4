"""The results table: the one interface between the search and the reports.

``trials.csv`` has one row per ended trial (and one for the baseline), rewritten atomically as
each trial ends; ``history.csv`` is long format (trial x epoch x metric). A trial that was
running when the process died has no row, so it is simply run again.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from data_pipeline.files import locked_file, write_text_atomic
from search.rundir import RunDirError
from search.space import DEFAULT_SPACE, PARAM_NAMES, baseline_values

BASELINE_ID = "baseline"
STATUSES = ("completed", "failed", "pruned")
TRIAL_COLUMNS = (
    "trial_id",
    "status",
    *PARAM_NAMES,
    "val_accuracy",
    "best_epoch",
    "epochs",
    "seconds",
    "params",
    "error",
    "fit_seconds",
    "peak_rss_mb",
    "bracket",
    "round",
    "parent_id",
    "initial_epoch",
    "target_epochs",
    "ended_at",
)
HISTORY_COLUMNS = ("trial_id", "epoch", "metric", "value")
# Where each training's time went (long format: trial x component), written beside the row.
COST_COLUMNS = ("trial_id", "component", "seconds")
# The epochs' own work; every other component is a trial's fixed cost.
EPOCH_COMPONENTS = ("train", "validation")


@dataclass(frozen=True)
class TrialRow:
    """One ended trial; ``values`` holds every parameter of the space (one column each)."""

    trial_id: str
    status: str
    values: dict[str, Any]
    val_accuracy: float | None
    best_epoch: int | None
    epochs: int  # epochs trained in this trial (cumulative, as Keras counts them)
    seconds: float
    params: int
    error: str | None
    fit_seconds: float
    peak_rss_mb: float | None
    bracket: int | None
    round: int | None
    parent_id: str | None
    initial_epoch: int
    target_epochs: int
    ended_at: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, but got {self.status=}.")

    def record(self) -> dict[str, Any]:
        """The row as the table stores it: the parameters as columns of their own."""
        return flatten(self)


def flatten(row: Any) -> dict[str, Any]:
    """A row dataclass with a ``values`` dict, as one flat record (parameters as columns)."""
    record = asdict(row)
    values = record.pop("values")
    unknown = set(values) - set(PARAM_NAMES)
    if unknown:
        raise ValueError(f"values has unknown parameter(s) {sorted(unknown)}: {values!r}.")
    return {**record, **{name: values.get(name) for name in PARAM_NAMES}}


def _write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    write_text_atomic(path, frame.to_csv(index=False))


class ResultsError(RunDirError):
    """A results file is damaged beyond what can be recovered: message and exit code 2."""


def read_table(path: Path, columns: tuple[str, ...], dtype: dict[str, Any]) -> pd.DataFrame:
    """A results CSV, whole: a missing file is an empty table; a torn last line (a crash in
    the middle of a write that was not atomic, or a file cut short by hand) is dropped, so no
    partial row is ever read as a finished one; an empty or unreadable file is refused with a
    message that names it. A parameter column that a file written before that parameter
    existed lacks reads as the parameter's baseline (``_LATER_COLUMNS``)."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=list(columns))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path} cannot be read ({exc}); restore it from a backup.") from None
    lines = text.splitlines(keepends=True)
    if not lines or not lines[0].strip():
        raise ResultsError(
            f"{path} is empty (cut short by a crash or by hand): its results are lost. Restore "
            "it from a backup, or delete it to run the search's trials again."
        )
    header = lines[0].rstrip("\r\n").split(",")
    added = _LATER_COLUMNS.keys() - set(header)
    if [c for c in columns if c not in added] != header:
        raise ResultsError(
            f"{path} does not start with the expected header ({','.join(columns[:4])},...): "
            "not a results file of this version of alexnet-tuner."
        )
    if not lines[-1].endswith("\n"):
        lines = lines[:-1]  # torn: the row that was being written is not a result
    try:
        frame = pd.read_csv(io.StringIO("".join(lines)), dtype=dtype)
    except (pd.errors.ParserError, ValueError) as exc:
        raise ResultsError(f"{path} is damaged ({exc}); restore it from a backup.") from None
    for name in added & set(columns):
        frame[name] = _LATER_COLUMNS[name]
    return frame[list(columns)]


# Columns a file written before they existed lacks, and what they read as there: a parameter
# added to the space, its baseline; a refit's averaged epochs, 1 (refits kept their last epoch);
# a confirmation run's tail, unknown (the selection then ranks on best epochs); its fold, none.
_LATER_COLUMNS = {
    **baseline_values(DEFAULT_SPACE),
    "averaged_epochs": 1,
    "val_tail": math.nan,
    "val_fold": math.nan,  # a selection run recorded before folds: validated on validation
}


def load_trials(run_dir: Path) -> pd.DataFrame:
    frame = read_table(
        Path(run_dir) / "trials.csv",
        TRIAL_COLUMNS,
        {"trial_id": str, "parent_id": str, "error": str},
    )
    valid = frame["status"].isin(STATUSES) & frame["trial_id"].notna()
    return frame[valid].reset_index(drop=True)


def load_history(run_dir: Path) -> pd.DataFrame:
    return read_table(Path(run_dir) / "history.csv", HISTORY_COLUMNS, {"trial_id": str})


def load_costs(run_dir: Path) -> pd.DataFrame:
    return read_table(Path(run_dir) / "costs.csv", COST_COLUMNS, {"trial_id": str})


def record_costs(run_dir: Path, trial_id: str, costs: dict[str, float]) -> None:
    """Replace one training's cost breakdown (a re-run trial's replaces the lost run's)."""
    with locked_results(run_dir):
        new = pd.DataFrame(
            [{"trial_id": trial_id, "component": k, "seconds": v} for k, v in costs.items()],
            columns=list(COST_COLUMNS),
        )
        replace_rows(Path(run_dir) / "costs.csv", load_costs(run_dir), new, value=trial_id)


def cost_summary(costs: pd.DataFrame) -> pd.DataFrame:
    """Per component: trainings, total, mean and median seconds per training (0 where a
    training did not have it, e.g. no process start); ``fixed`` sums every component but the
    epochs' own ``train`` and ``validation``."""
    if costs.empty:
        return pd.DataFrame(columns=["component", "trainings", "total", "mean", "median"])
    wide = costs.pivot_table(
        index="trial_id", columns="component", values="seconds", aggfunc="sum"
    ).fillna(0.0)
    fixed = [c for c in wide.columns if c not in EPOCH_COMPONENTS]
    wide["fixed"] = wide[fixed].sum(axis=1)
    rows = [
        {
            "component": name,
            "trainings": len(wide),
            "total": float(wide[name].sum()),
            "mean": float(wide[name].mean()),
            "median": float(wide[name].median()),
        }
        for name in wide.columns
    ]
    return pd.DataFrame(rows).sort_values("total", ascending=False, ignore_index=True)


@contextlib.contextmanager
def locked_results(run_dir: Path) -> Iterator[None]:
    """Serialise the processes of one search around the results table (fcntl lock)."""
    with locked_file(Path(run_dir) / ".results.lock"):
        yield


Epochs = list[tuple[int, dict[str, float]]]  # (epoch, metrics) of one trial, in order


def record_trial(run_dir: Path, row: TrialRow, history: Epochs) -> None:
    """Add one ended trial: history first, then the row that marks it as done."""
    with locked_results(run_dir):
        _record_trial(Path(run_dir), row, history)


def _record_trial(run_dir: Path, row: TrialRow, history: Epochs) -> None:
    new = pd.DataFrame(
        [
            {"trial_id": row.trial_id, "epoch": epoch, "metric": k, "value": v}
            for epoch, metrics in history
            for k, v in metrics.items()
        ],
        columns=list(HISTORY_COLUMNS),
    )
    replace_rows(run_dir / "history.csv", load_history(run_dir), new, value=row.trial_id)
    added = pd.DataFrame([row.record()], columns=list(TRIAL_COLUMNS))
    replace_rows(run_dir / "trials.csv", load_trials(run_dir), added, value=row.trial_id)


def replace_rows(
    path: Path, table: pd.DataFrame, new: pd.DataFrame, *, value: str, key: str = "trial_id"
) -> None:
    """Write ``table`` to ``path`` atomically, its rows whose ``key`` is ``value`` replaced by
    ``new`` (a re-run's rows replace those of the run that was lost)."""
    kept = table[table[key] != value]
    _write_csv_atomic(pd.concat([kept, new], ignore_index=True) if len(kept) else new, path)


def missing(value: Any) -> bool:
    """An empty cell of a results table (None, or NaN as pandas reads one)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: Any) -> float | None:
    """A numeric cell as a float; None for an empty cell or one that is not a number."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def search_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The engine's trials, without the baseline row."""
    return trials[trials["trial_id"] != BASELINE_ID]


def ranked_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The scored search trials (completed or pruned), best validation accuracy first; ties go
    to the smaller model (fewer parameters: as good and cheaper to serve), then to the earlier
    trial id."""
    scored = search_trials(trials)
    scored = scored[scored["status"].isin(["completed", "pruned"]) & scored["val_accuracy"].notna()]
    return scored.sort_values(["val_accuracy", "params", "trial_id"], ascending=[False, True, True])


def best_trial(trials: pd.DataFrame) -> pd.Series | None:
    """The search trial with the best validation accuracy (completed or pruned), if any."""
    ranked = ranked_trials(trials)
    return None if ranked.empty else ranked.iloc[0]


def baseline_score(trials: pd.DataFrame) -> float | None:
    rows = trials[(trials["trial_id"] == BASELINE_ID) & trials["val_accuracy"].notna()]
    return float(rows["val_accuracy"].iloc[0]) if len(rows) else None


def progress_note(trials: pd.DataFrame) -> str:
    """``best 0.7761 (16) | baseline 0.6418``, for progress lines."""
    best = best_trial(trials)
    base = baseline_score(trials)
    parts = []
    if best is not None:
        parts.append(f"best {best['val_accuracy']:.4f} ({best['trial_id']})")
    if base is not None:
        parts.append(f"baseline {base:.4f}")
    return " | ".join(parts)
