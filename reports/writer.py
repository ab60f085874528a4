"""The one place that writes reports: ``RUN_DIR/report.html`` and ``RUNS_DIR/index.html``.

Pages are self-contained: plotly.js is inlined once per page, images are data URIs, and
nothing is fetched from the network, so a report opens from ``file://`` and can be sent on.
Templates are Jinja2 with autoescaping; figure specs are embedded as JSON with ``<``, ``>``
and ``&`` escaped, so no file or class name can close a script tag.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import plotly.io as pio
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from data_pipeline.files import write_text_atomic
from reports import figures as fig
from reports.budgets import equal_budget
from reports.rundata import RunData, load_run
from reports.tables import (
    confirm_rows,
    confusion,
    cost_rows,
    grid_sample,
    results_rows,
    run_state,
    summarize,
    table_columns,
)
from search.pareto import front_records
from search.results import TRIAL_COLUMNS, baseline_score, best_trial, search_trials
from search.rundir import RunDirError, format_seconds, now_iso
from search.space import format_against_blog, to_toml
from search.stats import SELECTED_NOTE

# the user-facing columns of trials.csv, in its order, with the interval beside the score
_SHOWN = list(TRIAL_COLUMNS[: TRIAL_COLUMNS.index("error") + 1])
COLUMNS = [
    *_SHOWN[: _SHOWN.index("val_accuracy") + 1],
    "val_ci95",
    *_SHOWN[_SHOWN.index("val_accuracy") + 1 :],
]


@dataclass(frozen=True)
class FigureBlock:
    id: str
    spec: str


def _env() -> Environment:
    return Environment(
        loader=PackageLoader("reports", "templates"), autoescape=select_autoescape(["html"])
    )


def figure_json(figure: Any) -> str:
    """A figure's JSON, safe inside ``<script type="application/json">``."""
    text = pio.to_json(figure, validate=False, pretty=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def build_figures(run: RunData) -> tuple[list[FigureBlock], list[str], str | None]:
    """All figures of a report, plus edge-of-range warnings and the importance note."""
    trials, space = run.trials, run.space
    base = baseline_score(trials)
    n_val = run.split_size("validation")
    blocks = [
        FigureBlock(
            "fig-history", figure_json(fig.history_plot(fig.history_info(trials, base, n_val)))
        ),
    ]
    if (run.confirm["status"] == "completed").any():
        confirmed = fig.confirm_info(run.confirm, n_val, run.split_size("test"))
        blocks.insert(0, FigureBlock("fig-confirm", figure_json(fig.confirm_plot(confirmed))))
    warnings: list[str] = []
    importance_note = None
    if len(trials):
        blocks.append(
            FigureBlock(
                "fig-curves",
                figure_json(
                    fig.curves_plot(fig.curves_info(trials, run.history, n_validation=n_val))
                ),
            )
        )
    budgets = equal_budget(trials, run.history, run.config.max_epochs)
    if len(search_trials(trials).dropna(subset=["val_accuracy"])) >= 2:
        parallel = fig.parallel_info(trials, space, budgets)
        blocks.append(FigureBlock("fig-parallel", figure_json(fig.parallel_plot(parallel))))
    if len(search_trials(trials)):
        sl = fig.slice_info(trials, space, n_validation=n_val, budgets=budgets)
        warnings = list(sl.edge_flags.values())
        blocks.append(FigureBlock("fig-slice", figure_json(fig.slice_plot(sl))))
        imp = fig.importance_info(trials, space, budgets=budgets)
        importance_note = imp.message
        if imp.importances:
            blocks.append(FigureBlock("fig-importance", figure_json(fig.importance_plot(imp))))
        blocks.append(
            FigureBlock("fig-budget", figure_json(fig.budget_plot(fig.budget_info(trials))))
        )
    winner = ((run.summary or {}).get("winner") or {}).get("trial_id")
    pareto = fig.pareto_info(
        trials,
        space,
        run.config.max_epochs,
        winner,
        latency=(run.export or {}).get("front_latency"),
    )
    if len(pareto.points) >= 2:
        blocks.append(FigureBlock("fig-pareto", figure_json(fig.pareto_plot(pareto))))
    if run.predictions is not None and run.export:
        classes = list(run.export.get("classes") or run.config.classes)
        split = predictions_split(run.predictions)
        if run.export.get("trained_on_test"):  # --refit all: a fit to its training images
            split += " (trained on)"
        info = fig.ConfusionInfo(classes, confusion(run.predictions, classes), split)
        blocks.append(FigureBlock("fig-confusion", figure_json(fig.confusion_plot(info))))
    return blocks, warnings, importance_note


def _grid(run: RunData, run_dir: Path) -> list[dict[str, Any]]:
    """Thumbnails from the run's image cache (the pixels the model saw), misclassified first."""
    if run.predictions is None:
        return []
    cache = Path(run.config.data.get("cache", ""))
    size = run.config.image_size
    index_path = cache / f"images-{size}.json"
    if not index_path.exists():
        return []
    from PIL import Image

    rows = json.loads(index_path.read_text())["rows"]
    images = np.load(cache / f"images-{size}.npy", mmap_mode="r")
    out = []
    for r in grid_sample(run.predictions).to_dict("records"):
        if r["path"] not in rows:
            continue
        buf = io.BytesIO()
        Image.fromarray(np.asarray(images[rows[r["path"]]])).save(buf, format="PNG")
        out.append(
            {
                **r,
                "wrong": r["label"] != r["predicted"],
                "png": base64.b64encode(buf.getvalue()).decode(),
            }
        )
    return out


def render_report(
    run: RunData,
    run_dir: Path,
    *,
    plotly_js: str,
    grid: list[dict[str, Any]],
) -> str:
    summary = summarize(run)
    blocks, warnings, note = build_figures(run)
    rows = results_rows(run.trials, run.space, summary.n_validation)
    columns, constants = table_columns(rows, COLUMNS)
    classes = list(run.config.classes)
    return (
        _env()
        .get_template("report.html")
        .render(
            name=run.name,
            s=summary,
            options=run.config.options,
            classes=classes,
            rows=rows,
            constant_columns=constants,
            space_toml=to_toml(run.space),
            confirm_rows=confirm_rows(run.confirm, summary.n_validation, summary.n_test),
            selected_note=SELECTED_NOTE,
            winner_params=_winner_params(summary, run.space),
            predictions_split=predictions_split(run.predictions),
            cost_rows=cost_rows(run.costs, run.trials),
            front=front_records(
                run.trials,
                run.config.max_epochs,
                latency=(run.export or {}).get("front_latency"),
            ),
            columns=columns,
            figures=blocks,
            # the importance note sits beside its chart (or where it would be)
            importance_after="fig-importance"
            if any(b.id == "fig-importance" for b in blocks)
            else "fig-slice",
            warnings=warnings,
            importance_message=note,
            export=run.export,
            grid=grid,
            wall=format_seconds(summary.wall_seconds),
            plotly_js=plotly_js,
            run_dir=str(run_dir),
            verdict_sentence=verdict_sentence(summary.evidence),
            reproduce=reproduce_command(summary.command, str(run.config.data_config.data_dir)),
            tensorboard=(Path(run_dir) / "tensorboard").is_dir(),
            written_at=now_iso(),
        )
    )


def reproduce_command(command: str, data_dir: str) -> str:
    """The command that made the run, with the data it used spelled out when the command left
    it implicit (./data, or the default data set), so it reproduces from any folder."""
    if any(w == "--data-dir" or w.startswith("--data-dir=") for w in command.split()):
        return command
    return f"{command} --data-dir {shlex.quote(data_dir)}"


def verdict_sentence(evidence: dict[str, Any] | None) -> Markup:
    """The verdict sentence, escaped, with its verdict word (said once) in bold."""
    if not evidence:
        return Markup("")
    sentence, word = str(evidence.get("sentence", "")), str(evidence.get("verdict", ""))
    head, sep, tail = sentence.rpartition(f": {word}")
    if not sep:
        return Markup("<strong>{}</strong>: {}").format(word, sentence)
    return Markup("{}: <strong>{}</strong>{}").format(head, word, tail)


def index_rows(runs: list[tuple[str, RunData]]) -> list[dict[str, Any]]:
    rows = []
    for link, run in runs:
        best = best_trial(run.trials)
        base = baseline_score(run.trials)
        score = float(best["val_accuracy"]) if best is not None else None
        wall = float(run.status.get("wall_seconds", 0.0))
        ev = run.summary or {}
        rows.append(
            {
                "verdict": ev.get("verdict"),
                "delta": ev.get("delta_points"),
                "delta_ci": ev.get("delta_ci95"),
                "test_n": ev.get("test_n"),
                "name": run.name,
                "link": link,
                "created": run.config.created_at,
                "engine": run.config.engine,
                "trials": len(search_trials(run.trials)),
                "best": score,
                "gain": 100 * (score - base) if score is not None and base is not None else None,
                "wall": format_seconds(wall),
                "wall_seconds": wall,
                "state": run_state(run),
            }
        )
    return sorted(rows, key=lambda r: r["created"], reverse=True)


GENERATOR = '<meta name="generator" content="alexnet-tuner">'
OWN_INDEX = "alexnet-tuner-index.html"


def index_path(runs_dir: Path) -> Path:
    """``RUNS_DIR/index.html``, unless a file of that name is not ours (a user's own page
    beside their run folders): then ``RUNS_DIR/alexnet-tuner-index.html``, never theirs."""
    path = Path(runs_dir) / "index.html"
    if not path.exists() and not path.is_symlink():
        return path
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
    except OSError:
        return path.with_name(OWN_INDEX)
    return (
        path
        if path.is_file() and not path.is_symlink() and GENERATOR in head
        else (path.with_name(OWN_INDEX))
    )


def link_to(path: str) -> str:
    """A relative link to ``path`` that no folder name can turn into another scheme or a
    broken URL: ``./`` first (``javascript:x`` becomes ``./javascript%3Ax``), percent-encoded."""
    if not path.startswith(("./", "../")):
        path = "./" + path.lstrip("/")
    return quote(path, safe="/.")


def render_index(runs_dir: Path) -> tuple[Path, str]:
    """Where the runs index goes (``index_path``) and its HTML: every run below ``runs_dir``
    with a link to its report."""
    runs_dir = Path(runs_dir)
    runs = []
    for config in sorted(runs_dir.glob("*/config.json")):
        try:
            runs.append((link_to(f"{config.parent.name}/report.html"), load_run(config.parent)))
        except (FileNotFoundError, ValueError, KeyError, RunDirError):  # a damaged run is left out
            continue
    from reports.compare import compare_blocks, group_runs

    comparable = [g for g in group_runs(runs) if len(g.runs) >= 2]
    html = (
        _env()
        .get_template("index.html")
        .render(
            root=str(runs_dir),
            runs=index_rows(runs),
            groups=compare_blocks(comparable),
            plotly_js=_plotly_js() if comparable else "",
        )
    )
    return index_path(runs_dir), html


def write_index(runs_dir: Path) -> Path:
    """The runs index (``index_path``): every run below ``runs_dir`` with a link to its report."""
    path, html = render_index(runs_dir)
    write_text_atomic(path, html)
    return path


def write_report(run_dir: Path, *, index: bool = True) -> Path:
    """Write ``run_dir/report.html`` (and the index of its parent folder)."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    html = render_report(run, run_dir, plotly_js=_plotly_js(), grid=_grid(run, run_dir))
    path = run_dir / "report.html"
    write_text_atomic(path, html)
    if index:
        write_index(run_dir.parent)
    return path


def _winner_params(summary: Any, space: Any) -> str | None:
    """The confirmed winner's configuration, each parameter printed as the space prints it."""
    win = (summary.evidence or {}).get("winner") or {}
    return format_against_blog(win["params"], space) if win.get("params") else None


def predictions_split(predictions: Any) -> str:
    """Which images the exported model's per-image predictions are of (older runs: validation)."""
    if predictions is not None and "split" in predictions and len(predictions):
        return str(predictions["split"].iloc[0])
    return "validation"
