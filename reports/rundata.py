"""Everything a report shows about one run, read from its run directory (read-only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from search.confirm import load_confirm
from search.results import load_costs, load_history, load_trials
from search.rundir import RunConfig, RunDirError, running_pid
from search.space import Space


@dataclass(frozen=True)
class RunData:
    name: str
    config: RunConfig
    trials: pd.DataFrame
    history: pd.DataFrame
    status: dict[str, Any]
    export: dict[str, Any] | None
    rejects: dict[str, Any]
    predictions: pd.DataFrame | None
    pid_alive: bool
    confirm: pd.DataFrame  # confirm.csv: one row per confirmation run (empty without one)
    summary: dict[str, Any] | None  # summary.json: the verdict, once the run has finished
    costs: pd.DataFrame  # costs.csv: where each training's time went (trial x component)

    @property
    def space(self) -> Space:
        """The search space the run used."""
        return self.config.space

    def split_size(self, split: str) -> int:
        """Images in ``split`` (``train``, ``validation`` or ``test``) as the run used them."""
        return self.config.split_size(split)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _predictions(path: Path) -> pd.DataFrame | None:
    """The export's predictions, or None where there are none; a torn file is refused by name
    (the export writes it whole: an empty or cut one is damage, which a new export repairs)."""
    if not path.exists():
        return None
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RunDirError(
            f"{str(path)!r} is damaged ({type(exc).__name__}); run python -m search.export "
            f"{str(path.parent)!r} to write it again."
        ) from None
    if not {"path", "label", "predicted"} <= set(table.columns):
        raise RunDirError(
            f"{str(path)!r} is not the export's predictions (columns {list(table.columns)}); run "
            f"python -m search.export {str(path.parent)!r} to write it again."
        )
    return table


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    config = RunConfig.read(run_dir)
    status = _json(run_dir / "status.json") or {}
    predictions_path = run_dir / "validation_predictions.csv"
    export = _json(run_dir / "export.json")
    return RunData(
        name=run_dir.name,
        config=config,
        trials=load_trials(run_dir),
        history=load_history(run_dir),
        status=status,
        export=export,
        rejects=_json(run_dir / "rejects.json") or {"skipped": [], "unlabelled": []},
        predictions=_predictions(predictions_path),
        pid_alive=running_pid(status),
        confirm=load_confirm(run_dir),
        summary=_json(run_dir / "summary.json"),
        costs=load_costs(run_dir),
    )
