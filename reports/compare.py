"""Searches side by side on the compute they spent: ``python -m reports.compare RUN_DIR ...``.

Runs are compared only when they saw the same images the same way: the same data, image size
and splits (seed, fractions, subset). For each such group: best-so-far validation accuracy
against the cumulative training epochs of the search (wall time as a second view), one line per
run, and a table with each run's epochs to reach its baseline, best score, confirmed verdict and
winner. The runs index (``reports.writer.write_index``) shows the same for every group of two or
more runs. Pure ``*_info`` / ``*_plot`` steps, as in ``reports.figures``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import plotly.graph_objects as go

from reports import figures as fig
from reports.rundata import RunData, load_run
from reports.tables import run_state
from search.results import baseline_score, best_trial, search_trials
from search.rundir import RunDirError, format_seconds


class Group(NamedTuple):
    label: str  # what its runs share
    runs: list[tuple[str, RunData]]  # (link to its report, run)


def group_key(run: RunData) -> tuple[Any, ...]:
    d = run.config.data_config
    return (str(d.data_dir), d.image_size, d.seed, d.val_fraction, d.test_fraction, d.subset)


def group_runs(runs: list[tuple[str, RunData]]) -> list[Group]:
    """Runs that can be compared, together (first seen first)."""
    by_key: dict[tuple[Any, ...], list[tuple[str, RunData]]] = {}
    for link, run in runs:
        by_key.setdefault(group_key(run), []).append((link, run))
    groups = []
    for (data_dir, size, seed, val, test, subset), members in by_key.items():
        sub = f", subset {subset:,}" if subset else ""
        label = (
            f"{Path(data_dir).name} at {size}px, splits seed {seed} (validation {val:g}, test "
            f"{test:g}{sub})"
        )
        groups.append(Group(label, members))
    return groups


class CompareInfo(NamedTuple):
    names: list[str]
    epochs: dict[str, list[int]]  # cumulative epochs trained when each search trial ended
    wall: dict[str, list[float]]  # cumulative seconds of search trials at the same points
    best: dict[str, list[float | None]]  # best validation accuracy so far
    baseline: dict[str, float | None]


def compare_info(runs: list[RunData]) -> CompareInfo:
    epochs, wall, best, base = {}, {}, {}, {}
    for run in runs:
        history = fig.history_info(run.trials, baseline_score(run.trials))
        ordered = search_trials(run.trials).sort_values("ended_at", kind="stable")
        epochs[run.name] = history.epochs_so_far
        wall[run.name] = [float(v) for v in ordered["seconds"].fillna(0.0).cumsum()]
        best[run.name] = history.best_so_far
        base[run.name] = history.baseline
    return CompareInfo([r.name for r in runs], epochs, wall, best, base)


def compare_plot(info: CompareInfo) -> go.Figure:
    figure = go.Figure()
    for name in info.names:
        figure.add_trace(
            go.Scatter(
                x=info.epochs[name],
                y=info.best[name],
                mode="lines+markers",
                line={"shape": "hv"},
                name=fig.esc(name),
            )
        )
    baselines = {b for b in info.baseline.values() if b is not None}
    for value in sorted(baselines):
        figure.add_hline(
            y=value, line_dash="dash", line_color="#7f7f7f", annotation_text=f"baseline {value:.4f}"
        )
    epochs_title = "training epochs spent by the search (cumulative)"
    figure.update_layout(
        title="Best validation accuracy so far, on the compute spent",
        xaxis_title=epochs_title,
        yaxis_title="best validation accuracy",
        updatemenus=fig.x_axis_buttons(
            [
                ("x: epochs", [info.epochs[n] for n in info.names], epochs_title),
                (
                    "x: wall time",
                    [info.wall[n] for n in info.names],
                    "seconds of training (cumulative)",
                ),
            ]
        ),
    )
    return figure


def epochs_to_reach(
    epochs: list[int], best: list[float | None], target: float | None
) -> int | None:
    """The search's cumulative epochs when its best first reached ``target`` (None: never)."""
    if target is None:
        return None
    for spent, value in zip(epochs, best, strict=True):
        if value is not None and value >= target:
            return spent
    return None


def compare_rows(runs: list[tuple[str, RunData]]) -> list[dict[str, Any]]:
    info = compare_info([run for _, run in runs])
    rows = []
    for link, run in runs:
        best = best_trial(run.trials)
        ev = run.summary or {}
        chosen: dict[str, Any] = (
            (ev.get("winner") or {}).get("params") or (ev.get("best") or {}).get("params") or {}
        )
        winner = {p.name: p.format(chosen[p.name]) for p in run.space if p.name in chosen}
        rows.append(
            {
                "name": run.name,
                "link": link,
                "engine": run.config.engine,
                "trials": len(search_trials(run.trials)),
                "epochs": info.epochs[run.name][-1] if info.epochs[run.name] else 0,
                "wall": format_seconds(info.wall[run.name][-1] if info.wall[run.name] else 0.0),
                "to_baseline": epochs_to_reach(
                    info.epochs[run.name], info.best[run.name], info.baseline[run.name]
                ),
                "best": float(best["val_accuracy"]) if best is not None else None,
                "verdict": ev.get("verdict"),
                "sentence": ev.get("sentence"),
                "winner": winner,
                "state": run_state(run),
            }
        )
    return rows


def compare_blocks(groups: list[Group]) -> list[dict[str, Any]]:
    """What a page shows of each group: its label, its figure and its table."""
    from reports.writer import FigureBlock, figure_json

    blocks = []
    for i, group in enumerate(groups):
        info = compare_info([run for _, run in group.runs])
        blocks.append(
            {
                "label": group.label,
                "figure": FigureBlock(f"fig-compare-{i}", figure_json(compare_plot(info))),
                "rows": compare_rows(group.runs),
            }
        )
    return blocks


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports.compare", description=__doc__)
    p.add_argument("run_dirs", type=Path, nargs="+", help="run directories to compare")
    p.add_argument("--out", type=Path, default=Path("compare.html"), help="page to write")
    args = p.parse_args(argv)
    from data_pipeline.files import no_room, write_text_atomic
    from reports.writer import _env, _plotly_js, link_to

    runs = []
    for run_dir in args.run_dirs:
        try:
            run = load_run(run_dir)
        except RunDirError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        report = Path(run_dir).resolve() / "report.html"
        runs.append((link_to(os.path.relpath(report, args.out.resolve().parent)), run))
    groups = group_runs(runs)
    html = (
        _env()
        .get_template("compare.html")
        .render(
            title="alexnet-tuner: searches compared",
            groups=compare_blocks(groups),
            plotly_js=_plotly_js(),
        )
    )
    try:
        write_text_atomic(args.out, html)
    except OSError as exc:  # a full disk, a read-only folder: the page goes elsewhere
        room = no_room(
            exc,
            args.out,
            fix="free some space or pass --out a path on another disk",
            read_only_fix="pass --out a path on a writable disk",
        )
        if room is None:
            raise
        print(f"error: {room}", file=sys.stderr)
        return 2
    print(f"{args.out} ({len(runs)} runs in {len(groups)} group(s) of comparable runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
