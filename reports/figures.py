"""Report figures in two pure steps: ``*_info(results) -> NamedTuple``, ``*_plot(info)``.

Tests assert on the info objects. Every string that comes from data or configuration goes into
a figure HTML-escaped (plotly renders a subset of HTML in labels and hover text).
"""

from __future__ import annotations

import html
import math
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.budgets import EqualBudget, cumulative_epochs, trial_path
from search.results import BASELINE_ID, search_trials
from search.results import number as _num
from search.space import Axis, OpenParam, Space, searched
from search.stats import accuracy_ci

MARKERS = {"completed": "circle", "pruned": "diamond", "failed": "x"}
COLORS = {"completed": "#1f77b4", "pruned": "#ff7f0e", "failed": "#d62728"}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def error_bars(values: list[float | None], n: int) -> dict[str, Any] | None:
    """Plotly ``error_y`` with the 95% Wilson interval of each accuracy measured on n images."""
    if n <= 0:
        return None
    cis = [accuracy_ci(v, n) if v is not None else (math.nan, math.nan) for v in values]
    return {
        "type": "data",
        "symmetric": False,
        "array": [hi - v if v is not None else 0.0 for v, (_, hi) in zip(values, cis, strict=True)],
        "arrayminus": [
            v - lo if v is not None else 0.0 for v, (lo, _) in zip(values, cis, strict=True)
        ],
        "thickness": 1,
        "width": 2,
    }


def _in_order(trials: pd.DataFrame) -> pd.DataFrame:
    frame = search_trials(trials)
    return frame.sort_values("ended_at", kind="stable") if "ended_at" in frame else frame


# -------------------------------------------------------------------------- best so far
class HistoryInfo(NamedTuple):
    trial_ids: list[str]
    scores: list[float | None]
    statuses: list[str]
    best_so_far: list[float | None]
    baseline: float | None
    errors: list[str]
    n_validation: int  # images behind each score: the error bars' n
    epochs_so_far: list[int]  # cumulative epochs trained when each trial ended (compute axis)


def history_info(
    trials: pd.DataFrame, baseline: float | None, n_validation: int = 0
) -> HistoryInfo:
    frame = _in_order(trials)
    scores = [
        _num(v) if s != "failed" else None
        for v, s in zip(frame["val_accuracy"], frame["status"], strict=True)
    ]
    best: list[float | None] = []
    current: float | None = None
    for s in scores:
        if s is not None and (current is None or s > current):
            current = s
        best.append(current)
    return HistoryInfo(
        trial_ids=[str(t) for t in frame["trial_id"]],
        scores=scores,
        statuses=[str(s) for s in frame["status"]],
        best_so_far=best,
        baseline=baseline,
        errors=[
            "" if _num(e) is None and not isinstance(e, str) else str(e) for e in frame["error"]
        ],
        n_validation=n_validation,
        epochs_so_far=cumulative_epochs(trials),
    )


def x_axis_buttons(views: list[tuple[str, list[Any], str]]) -> list[dict[str, Any]]:
    """Plotly ``updatemenus``: one button per (label, x of every trace, axis title)."""
    return [
        {
            "type": "buttons",
            "direction": "right",
            "x": 1.0,
            "y": 1.15,
            "buttons": [
                {
                    "label": label,
                    "method": "update",
                    "args": [{"x": xs}, {"xaxis.title.text": title}],
                }
                for label, xs, title in views
            ],
        }
    ]


def history_plot(info: HistoryInfo) -> go.Figure:
    """Best so far against the epochs spent (the compute axis: a 3-epoch trial costs less than
    a 20-epoch one); a button switches the x-axis to the trial order."""
    fig = go.Figure()
    order = list(range(1, len(info.trial_ids) + 1))
    x = info.epochs_so_far if len(info.epochs_so_far) == len(order) else order
    by_trace: list[tuple[list[Any], list[Any]]] = []
    floor = min([s for s in info.scores if s is not None] + [info.baseline or 1.0, 0.5])
    for status in ("completed", "pruned", "failed"):
        idx = [i for i, s in enumerate(info.statuses) if s == status]
        if not idx:
            continue
        by_trace.append(([x[i] for i in idx], [order[i] for i in idx]))
        fig.add_trace(
            go.Scatter(
                x=[x[i] for i in idx],
                y=[info.scores[i] if info.scores[i] is not None else floor for i in idx],
                error_y=error_bars([info.scores[i] for i in idx], info.n_validation),
                mode="markers",
                name=status,
                marker={"symbol": MARKERS[status], "size": 10, "color": COLORS[status]},
                text=[
                    f"trial {esc(info.trial_ids[i])}"
                    + (f"<br>{esc(info.errors[i])}" if info.errors[i] else "")
                    for i in idx
                ],
                hovertemplate="%{text}<br>val_accuracy %{y:.4f}<extra></extra>",
            )
        )
    by_trace.append((x, order))
    fig.add_trace(
        go.Scatter(
            x=x,
            y=info.best_so_far,
            mode="lines",
            name="best so far",
            line={"shape": "hv", "color": "#2ca02c"},
        )
    )
    compute_title = "epochs trained so far (search trials, in order of completion)"
    fig.update_layout(
        updatemenus=x_axis_buttons(
            [
                ("x: epochs spent", [t[0] for t in by_trace], compute_title),
                ("x: trial order", [t[1] for t in by_trace], "trial (in order of completion)"),
            ]
        )
    )
    if info.baseline is not None:
        fig.add_hline(
            y=info.baseline,
            line_dash="dash",
            line_color="#7f7f7f",
            annotation_text=f"baseline {info.baseline:.4f}",
        )
    fig.update_layout(
        title="Best validation accuracy so far (failed trials as X; bars: 95% interval on "
        f"{info.n_validation:,} validation images)",
        xaxis_title=compute_title if x is info.epochs_so_far else "trial (in order of completion)",
        yaxis_title="best validation accuracy",
    )
    return fig


# ------------------------------------------------------------------------------- curves
class CurvesInfo(NamedTuple):
    series: dict[str, dict[str, list[float]]]  # trial -> {"epoch", "val_accuracy", "val_loss"}
    n_validation: int = 0  # images behind each accuracy: the error bars' n


def curves_info(
    trials: pd.DataFrame, history: pd.DataFrame, top: int = 3, n_validation: int = 0
) -> CurvesInfo:
    ranked = (
        search_trials(trials)
        .dropna(subset=["val_accuracy"])
        .sort_values("val_accuracy", ascending=False)
    )
    ids = [str(t) for t in ranked["trial_id"].head(top)]
    if (trials["trial_id"] == BASELINE_ID).any():
        ids.append(BASELINE_ID)
    series: dict[str, dict[str, list[float]]] = {}
    loss = history[history["metric"] == "val_loss"].rename(columns={"metric": "_m"})
    for tid in ids:
        # a promoted trial's curve starts with its parents' epochs: the full path to its score
        acc = trial_path(trials, history, tid)
        losses = trial_path(trials, loss.assign(metric="val_accuracy"), tid)
        series[tid] = {
            "epoch": [float(e) for e in acc["epoch"]],
            "val_accuracy": [float(v) for v in acc["value"]],
            "val_loss": [float(v) for v in losses["value"]],
        }
    return CurvesInfo(series=series, n_validation=n_validation)


def curves_plot(info: CurvesInfo) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation accuracy", "validation loss"))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
    for i, (tid, s) in enumerate(info.series.items()):
        color = "#7f7f7f" if tid == BASELINE_ID else palette[i % len(palette)]
        dash = "dash" if tid == BASELINE_ID else "solid"
        for col, metric in ((1, "val_accuracy"), (2, "val_loss")):
            fig.add_trace(
                go.Scatter(
                    x=s["epoch"],
                    y=s[metric],
                    error_y=error_bars(list(s[metric]), info.n_validation)
                    if metric == "val_accuracy"
                    else None,
                    mode="lines+markers",
                    name=esc(tid),
                    legendgroup=esc(tid),
                    showlegend=col == 1,
                    line={"color": color, "dash": dash},
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title="Training curves: the best trials and the baseline")
    return fig


# -------------------------------------------------------------------- parallel coordinates
class ParallelInfo(NamedTuple):
    dimensions: dict[str, list[float]]
    score: list[float]
    budget: str  # which scores: every trial at one budget, or the first rung's
    # axis label -> plotly dimension settings: the space's range (not the data's ends), and
    # ticks that read as the parameter does (off/on, 1e-5)
    axes: dict[str, dict[str, Any]]


def _parallel_axis(p: OpenParam) -> dict[str, Any]:
    if p.axis == "category":
        return {"range": [0, 1], "tickvals": [0, 1], "ticktext": ["off", "on"]}
    bounds = p.range
    if bounds is None:
        return {}
    lo, hi = bounds
    if p.axis == "log":
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        return {
            "range": [math.log10(lo), math.log10(hi)],
            "tickvals": list(decades),
            "ticktext": [f"1e{d}" for d in decades],
        }
    return {"range": [lo, hi]}


def parallel_info(
    trials: pd.DataFrame, space: Space, budgets: EqualBudget | None = None
) -> ParallelInfo:
    """Every configuration at one budget (the first rung when budgets differ); one axis per
    searched parameter, on its own scale (``log10(name)`` for a log range, 0/1 for on/off)."""
    label, frame = next(iter(budget_views(trials, budgets).items()))
    done = frame.dropna(subset=["val_accuracy"])
    dims = {
        (f"log10({p.name})" if p.axis == "log" else p.name): [p.plot_value(v) for v in done[p.name]]
        for p in searched(space)
    }
    axes = {
        (f"log10({p.name})" if p.axis == "log" else p.name): _parallel_axis(p)
        for p in searched(space)
    }
    return ParallelInfo(dims, [float(v) for v in done["val_accuracy"]], label, axes)


def parallel_plot(info: ParallelInfo) -> go.Figure:
    dims = [
        {"label": k.removeprefix("log10(").removesuffix(")"), "values": v, **info.axes.get(k, {})}
        for k, v in info.dimensions.items()
    ]
    dims.append({"label": "val_accuracy", "values": info.score})
    fig = go.Figure(
        go.Parcoords(
            line={"color": info.score, "colorscale": "Viridis", "showscale": True}, dimensions=dims
        )
    )
    fig.update_layout(title=f"Parallel coordinates: {esc(info.budget)}")
    return fig


# ------------------------------------------------------------------ objective per parameter
class SliceInfo(NamedTuple):
    # view label -> parameter -> {"x", "y", "status", "id"}; one view per budget
    views: dict[str, dict[str, dict[str, list[Any]]]]
    ranges: dict[str, tuple[float, float] | None]
    edge_flags: dict[str, str]  # param -> warning text when the best trials sit at an edge
    n_validation: int
    axes: dict[str, Axis]  # param -> how its x axis is drawn (log, linear, category)


def budget_views(trials: pd.DataFrame, budgets: EqualBudget | None) -> dict[str, pd.DataFrame]:
    """The score tables the per-parameter views and the importance compare, each at one
    budget: every trial when all share one budget (random, Bayesian), else the first rung and
    the full budget (Hyperband, Optuna's pruning)."""
    if budgets is None or not budgets.mixed:
        return {"all trials (one budget)": search_trials(trials)}
    views = {
        f"best of epochs 1-{budgets.rung_epoch} ({len(budgets.at_rung)} configurations)": (
            budgets.at_rung.assign(status="completed")
        ),
    }
    if len(budgets.at_full):
        label = f"full budget, {budgets.max_epochs} epochs ({len(budgets.at_full)} trials)"
        views[label] = budgets.at_full.assign(status="completed")
    return views


def slice_info(
    trials: pd.DataFrame,
    space: Space,
    top: int = 3,
    n_validation: int = 0,
    budgets: EqualBudget | None = None,
) -> SliceInfo:
    params = searched(space)
    ranges = {p.name: p.range for p in params}
    views: dict[str, dict[str, dict[str, list[Any]]]] = {}
    tables = budget_views(trials, budgets)
    for label, frame in tables.items():
        views[label] = {
            p.name: {
                "x": [_axis_value(p, v) for v in frame[p.name]],
                "id": [str(t) for t in frame["trial_id"]],
                "y": [_num(v) for v in frame["val_accuracy"]],
                "status": [str(s) for s in frame["status"]],
            }
            for p in params
        }
    # the edge of a range is judged at the largest budget: short runs favour fast learners
    judged = list(tables.values())[-1]
    best = judged.dropna(subset=["val_accuracy"]).sort_values("val_accuracy", ascending=False)
    best = best.head(top)
    flags: dict[str, str] = {}
    for p in params:
        rng = ranges[p.name]
        if rng is None or len(best) == 0:
            continue
        lo, hi = rng
        span = p.plot_value(hi) - p.plot_value(lo)
        values = [p.plot_value(v) for v in best[p.name]]
        if all(v <= p.plot_value(lo) + 0.1 * span for v in values):
            flags[p.name] = (
                f"the best {len(values)} trials sit at the low edge of {p.name}'s "
                f"range ({lo:g}): consider widening it"
            )
        elif all(v >= p.plot_value(hi) - 0.1 * span for v in values):
            flags[p.name] = (
                f"the best {len(values)} trials sit at the high edge of {p.name}'s "
                f"range ({hi:g}): consider widening it"
            )
    return SliceInfo(
        views=views,
        ranges=ranges,
        edge_flags=flags,
        n_validation=n_validation,
        axes={p.name: p.axis for p in params},
    )


def _axis_value(p: OpenParam, value: Any) -> Any:
    """A parameter's value as its axis takes it: a category's as text, a number's as a number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(p.coerce(value)) if p.axis == "category" else p.coerce(value)


def _slice_axis(axis: Axis, bounds: tuple[float, float] | None) -> dict[str, Any]:
    """One parameter's x axis, the same in every row: on/off in one order, the space's range
    (a little padded), decades labelled 1e-5, 1e-4."""
    if axis == "category":
        return {"type": "category", "categoryorder": "array", "categoryarray": ["False", "True"]}
    if bounds is None:
        return {}
    lo, hi = bounds
    if axis == "log":
        pad = 0.05 * (math.log10(hi) - math.log10(lo))
        return {
            "type": "log",
            "range": [math.log10(lo) - pad, math.log10(hi) + pad],
            "dtick": 1,
            "tickformat": ".0e",
        }
    pad = 0.05 * (hi - lo)
    return {"range": [lo - pad, hi + pad]}


def slice_plot(info: SliceInfo) -> go.Figure:
    labels = list(info.views)
    names = list(info.axes)
    fig = make_subplots(
        rows=len(labels),
        cols=len(names),
        subplot_titles=[f"{n}" for _ in labels for n in names],
        shared_yaxes=True,
        row_titles=[esc(label) for label in labels] if len(labels) > 1 else None,
        vertical_spacing=0.18,
    )
    shown: set[str] = set()
    for row, label in enumerate(labels, start=1):
        for col, name in enumerate(names, start=1):
            d = info.views[label][name]
            floor = min([y for y in d["y"] if y is not None] + [0.5])
            for status in ("completed", "pruned", "failed"):
                idx = [i for i, s in enumerate(d["status"]) if s == status]
                if not idx:
                    continue
                ys = [d["y"][i] for i in idx]
                fig.add_trace(
                    go.Scatter(
                        x=[d["x"][i] for i in idx],
                        y=[y if y is not None else floor for y in ys],
                        error_y=error_bars(ys, info.n_validation),
                        mode="markers",
                        marker={"symbol": MARKERS[status], "color": COLORS[status], "size": 8},
                        name=status,
                        legendgroup=status,
                        showlegend=status not in shown,
                        text=[f"trial {esc(d['id'][i])}" for i in idx],
                        hovertemplate="%{text}<br>%{x}<br>val_accuracy %{y:.4f}<extra></extra>",
                    ),
                    row=row,
                    col=col,
                )
                shown.add(status)
            fig.update_xaxes(row=row, col=col, **_slice_axis(info.axes[name], info.ranges[name]))
    for col, name in enumerate(names):
        if name in info.edge_flags:
            fig.layout.annotations[col].text = f"{name} (best at edge)"
    title = "Validation accuracy against each hyperparameter"
    if len(labels) > 1:
        title += " at equal budget (rows: first rung, full budget)"
    fig.update_layout(title=title, height=380 * len(labels))
    return fig


# ------------------------------------------------------------------------------ importance
MIN_IMPORTANCE_TRIALS = 10  # fANOVA over 4 parameters on fewer trials is noise, not a ranking
PERMUTATIONS = 19  # an estimate above all 19 shuffles: one-sided p <= 0.05 for that parameter


class ImportanceInfo(NamedTuple):
    importances: dict[str, float]  # the first view's point estimates (all trials, or rung)
    message: str | None
    # view label -> parameter -> (estimate, 10th, 90th percentile over bootstrap resamples)
    views: dict[str, dict[str, tuple[float, float, float]]]
    trials: dict[str, int]  # view label -> trials it rests on
    resamples: int
    # view label -> parameter -> the largest importance it got on shuffled scores (the null)
    null: dict[str, dict[str, float]]

    def distinguishable(self, label: str) -> list[str]:
        """Parameters whose importance in view ``label`` is above every shuffled one's."""
        view, null = self.views.get(label, {}), self.null.get(label, {})
        return [k for k, v in view.items() if v[0] > null.get(k, math.inf)]


def _fanova(rows: pd.DataFrame, params: tuple[OpenParam, ...], seed: int) -> dict[str, float]:
    import optuna

    dists = {p.name: p.distribution() for p in params}
    study = optuna.create_study(direction="maximize")
    for r in rows.to_dict("records"):
        study.add_trial(
            optuna.trial.create_trial(
                params={p.name: p.coerce(r[p.name]) for p in params},
                distributions=dists,
                value=float(r["val_accuracy"]),
            )
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=seed)
    return {
        k: float(v)
        for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()
    }


def importance_info(
    trials: pd.DataFrame,
    space: Space,
    budgets: EqualBudget | None = None,
    resamples: int = 10,
    permutations: int = PERMUTATIONS,
) -> ImportanceInfo:
    """Optuna's fANOVA importance on scores that share a budget, with its spread over
    bootstrap resamples of the trials (how much the ranking depends on which trials ran) and
    a permutation null: a parameter whose importance does not beat every one of
    ``permutations`` score shuffles is "not distinguishable from noise"."""
    import optuna

    params = searched(space)
    if not params:
        return ImportanceInfo({}, "no searched parameter: nothing to rank", {}, {}, 0, {})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    views: dict[str, dict[str, tuple[float, float, float]]] = {}
    nulls: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    for label, frame in budget_views(trials, budgets).items():
        done = frame[(frame["status"] == "completed") & frame["val_accuracy"].notna()]
        counts[label] = len(done)
        if len(done) < MIN_IMPORTANCE_TRIALS:
            continue
        try:
            point = _fanova(done, params, seed=0)
            rng = np.random.default_rng(0)
            boot = [
                _fanova(done.iloc[rng.integers(0, len(done), len(done))], params, seed=b)
                for b in range(resamples)
            ]
            # The null: the same trials with their scores shuffled, so no parameter matters.
            # fANOVA always shares out 100% of the variance, so on pure noise it still ranks.
            shuffled = [
                _fanova(
                    done.assign(val_accuracy=rng.permutation(done["val_accuracy"].to_numpy())),
                    params,
                    seed=100 + b,
                )
                for b in range(permutations)
            ]
        except (RuntimeError, ValueError) as exc:
            return ImportanceInfo({}, f"importance could not be computed: {exc}", {}, counts, 0, {})
        nulls[label] = {k: max(p.get(k, 0.0) for p in shuffled) for k in point}
        views[label] = {
            k: (
                v,
                float(np.percentile([b.get(k, 0.0) for b in boot], 10)),
                float(np.percentile([b.get(k, 0.0) for b in boot], 90)),
            )
            for k, v in point.items()
        }
    rests = "; ".join(f"{label}: {n} trials" for label, n in counts.items())
    if not views:
        return ImportanceInfo(
            {},
            f"not informative: it needs at least {MIN_IMPORTANCE_TRIALS} trials at one budget "
            f"({rests})",
            {},
            counts,
            0,
            {},
        )
    first = next(iter(views.values()))
    info = ImportanceInfo(
        {k: v[0] for k, v in first.items()}, None, views, counts, resamples, nulls
    )
    verdicts = [
        f"{label}: not informative, so not drawn ({n} trials, fewer than {MIN_IMPORTANCE_TRIALS})"
        for label, n in counts.items()
        if label not in views
    ]
    for label, view in views.items():
        real = info.distinguishable(label)
        noise = [k for k in view if k not in real]
        verdicts.append(
            f"{label}: "
            + (f"above the noise: {', '.join(real)}" if real else "no parameter above the noise")
            + (f"; not distinguishable from noise: {', '.join(noise)}" if noise else "")
        )
    message = (
        f"fANOVA on scores at equal budget ({rests}); bars: 10th-90th percentile over "
        f"{resamples} bootstrap resamples of the trials; grey ticks: the largest importance of "
        f"each parameter over {permutations} shuffles of the scores (the noise level). "
        + ". ".join(verdicts)
        + ". A parameter inside the noise is not ranked, and overlapping bars do not rank."
    )
    return info._replace(message=message)


def importance_plot(info: ImportanceInfo) -> go.Figure:
    fig = go.Figure()
    order = sorted(info.importances, key=lambda k: info.importances[k])
    for label, imp in info.views.items():
        values = [imp.get(k, (0.0, 0.0, 0.0)) for k in order]
        real = set(info.distinguishable(label))
        fig.add_trace(
            go.Scatter(
                x=[info.null.get(label, {}).get(k, 0.0) for k in order],
                y=order,
                mode="markers",
                marker={"symbol": "line-ns-open", "size": 18, "color": "#7f7f7f"},
                name=esc(f"{label}: noise level (shuffled scores)"),
                hovertemplate="noise level %{x:.3f}<extra></extra>",
            )
        )
        fig.add_trace(
            go.Bar(
                x=[v[0] for v in values],
                y=order,
                orientation="h",
                name=esc(label),
                # a parameter inside the noise is drawn pale: it is not ranked
                marker={"opacity": [1.0 if k in real else 0.35 for k in order]},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [max(v[2] - v[0], 0.0) for v in values],
                    "arrayminus": [max(v[0] - v[1], 0.0) for v in values],
                },
            )
        )
    fig.update_layout(
        title="Hyperparameter importance (Optuna fANOVA) on "
        + esc("; ".join(f"{label}" for label in info.views))
        + "<br><sup>pale: not above the noise of shuffled scores</sup>",
        xaxis_title="importance",
        barmode="group",
    )
    return fig


class BudgetInfo(NamedTuple):
    trial_ids: list[str]
    epochs: list[int]  # epochs trained in each trial
    groups: list[str]  # bracket label (Hyperband) or status


def budget_info(trials: pd.DataFrame) -> BudgetInfo:
    frame = _in_order(trials)
    # each trial's total epochs (a promoted trial's parent's included), as the plan and the
    # trial table count them
    trained = [int(_num(e) or 0) for e in frame["epochs"]]
    groups = []
    for b, r, s in zip(frame["bracket"], frame["round"], frame["status"], strict=True):
        if _num(b) is not None:
            groups.append(f"bracket {int(float(b))}, round {int(float(r))}")
        else:
            groups.append(str(s))
    return BudgetInfo([str(t) for t in frame["trial_id"]], trained, groups)


def budget_plot(info: BudgetInfo) -> go.Figure:
    fig = go.Figure()
    for group in dict.fromkeys(info.groups):
        idx = [i for i, g in enumerate(info.groups) if g == group]
        fig.add_trace(
            go.Bar(
                x=[esc(info.trial_ids[i]) for i in idx],
                y=[info.epochs[i] for i in idx],
                name=esc(group),
            )
        )
    fig.update_layout(
        title="Epoch budget per trial (a promoted trial's count includes its parent's)",
        xaxis_title="trial",
        yaxis_title="epochs (total)",
        xaxis={"type": "category"},
    )
    return fig


# --------------------------------------------------------------------------- confusion
class ConfusionInfo(NamedTuple):
    classes: list[str]
    matrix: list[list[int]]
    split: str = "validation"  # test for a refitted model, which trained on validation


def confusion_plot(info: ConfusionInfo) -> go.Figure:
    labels = [esc(c) for c in info.classes]
    z = np.array(info.matrix)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            colorscale="Blues",
            text=z,
            texttemplate="%{text}",
            showscale=False,
        )
    )
    fig.update_layout(
        title=f"Confusion matrix ({info.split} set, exported model)",
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis={"autorange": "reversed"},
    )
    return fig


# -------------------------------------------------------------------------- confirmation
class ConfirmInfo(NamedTuple):
    """Per candidate: the validation score that selected it in the search, then each
    confirmation seed's validation and test accuracy (the winner's-curse shrinkage)."""

    candidates: list[str]  # "top-1 (trial 7)", ..., "baseline"
    search_val: list[float | None]
    seeds: dict[str, dict[str, list[float]]]  # candidate -> {"val", "test"}
    n_validation: int
    n_test: int


def confirm_info(confirm: pd.DataFrame, n_validation: int, n_test: int) -> ConfirmInfo:
    """Per stage and candidate; the refit has no validation score (it trained on those
    images) and selection runs no test score (they never read it)."""
    done = confirm[confirm["status"] == "completed"]
    if "stage" not in done:
        done = done.assign(stage="judge")
    names: list[str] = []
    search_val: list[float | None] = []
    seeds: dict[str, dict[str, list[float]]] = {}
    for stage in ("select", "judge", "refit"):
        part = done[done["stage"].fillna("judge") == stage]
        order = sorted(set(part["candidate"]), key=lambda c: (c == BASELINE_ID, c))
        for cand in order:
            rows = part[part["candidate"] == cand].sort_values("seed_index")
            who = (
                "baseline (blog)"
                if cand == BASELINE_ID
                else f"{cand} (trial {rows['trial_id'].iloc[0]})"
            )
            label = f"{stage}: {who}"
            names.append(label)
            search_val.append(_num(rows["search_val_accuracy"].iloc[0]))
            seeds[label] = {
                kind: [float(v) for v in pd.to_numeric(rows[col], errors="coerce").dropna()]
                for kind, col in (("val", "val_accuracy"), ("test", "test_accuracy"))
            }
    return ConfirmInfo(names, search_val, seeds, n_validation, n_test)


def confirm_plot(info: ConfirmInfo) -> go.Figure:
    fig = go.Figure()
    kinds = (
        ("search", "selected in the search (validation, optimistic)", "#7f7f7f", "diamond"),
        ("val", "each seed's best validated epoch (selected)", "#1f77b4", "circle"),
        ("test", "confirmation seeds: test (untouched)", "#2ca02c", "square"),
    )
    for offset, (kind, name, color, symbol) in zip((-0.2, 0.0, 0.2), kinds, strict=True):
        xs: list[float] = []
        ys: list[float | None] = []
        text: list[str] = []
        for i, cand in enumerate(info.candidates):
            values = [info.search_val[i]] if kind == "search" else info.seeds[cand][kind]
            xs += [i + offset] * len(values)
            ys += values
            text += [esc(cand)] * len(values)
        n = info.n_test if kind == "test" else info.n_validation
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                name=name,
                marker={"color": color, "symbol": symbol, "size": 9},
                # best-epoch validation scores are selected: no interval is drawn for them
                error_y=error_bars(ys, n) if kind == "test" else None,
                text=text,
                hovertemplate="%{text}<br>accuracy %{y:.4f}<extra></extra>",
            )
        )
    fig.update_xaxes(
        tickmode="array",
        tickvals=list(range(len(info.candidates))),
        ticktext=[esc(c) for c in info.candidates],
    )
    fig.update_layout(
        title="Evidence: selection and judge runs with new seeds (bars: test 95% interval)",
        yaxis_title="accuracy",
    )
    return fig


# ------------------------------------------------------------------------------ pareto
class ParetoInfo(NamedTuple):
    points: pd.DataFrame  # full-budget trials: trial_id, params, val_accuracy, parameters
    front_ids: list[str]
    winner_id: str | None
    max_epochs: int
    described: list[str]  # each point's configuration (and measured latency), for the hover


def pareto_info(
    trials: pd.DataFrame,
    space: Space,
    max_epochs: int,
    winner_id: str | None,
    latency: dict[str, dict[str, float]] | None = None,
) -> ParetoInfo:
    """``latency``: the export's serving times of the front's configurations, by trial id."""
    from search.pareto import front, full_budget
    from search.space import format_searched

    points = full_budget(trials, max_epochs)
    ids = [str(t) for t in front(points)["trial_id"]] if len(points) else []
    latency = latency or {}
    described = [
        format_searched(r, space) + latency_text(latency.get(str(r["trial_id"])))
        for r in points.to_dict("records")
    ]
    return ParetoInfo(points, ids, winner_id, max_epochs, described)


def latency_text(ms: dict[str, float] | None) -> str:
    """A front configuration's measured serving time, labelled with where it was measured."""
    if not ms:
        return ""
    return (
        f"; SavedModel {ms['batch_1']:.1f} ms/image at batch 1, {ms['batch_32']:.1f} at "
        "batch 32 (CPU of the export)"
    )


def pareto_plot(info: ParetoInfo) -> go.Figure:
    """Validation accuracy against parameters (log axis) at the full budget, the front joined
    and highlighted, the baseline and the winner marked; hovering names the configuration."""
    fig = go.Figure()
    pts = info.points
    ids = [str(t) for t in pts["trial_id"]]
    role = [
        "baseline" if t == "baseline" else "winner" if t == info.winner_id else "trial" for t in ids
    ]
    for name, symbol, size in (
        ("trial", "circle", 9),
        ("baseline", "square", 13),
        ("winner", "star", 16),
    ):
        idx = [i for i, r in enumerate(role) if r == name]
        if not idx:
            continue
        fig.add_trace(
            go.Scatter(
                x=[int(pts["params"].iloc[i]) for i in idx],
                y=[float(pts["val_accuracy"].iloc[i]) for i in idx],
                mode="markers",
                name=name if name != "trial" else "trials",
                marker={"symbol": symbol, "size": size},
                text=[f"{esc(ids[i])}: {esc(info.described[i])}" for i in idx],
                hovertemplate="%{text}<br>%{x:,} parameters<br>validation %{y:.4f}*<extra></extra>",
            )
        )
    on_front = pts.set_index(pts["trial_id"].astype(str)).loc[info.front_ids]
    fig.add_trace(
        go.Scatter(
            x=[int(v) for v in on_front["params"]],
            y=[float(v) for v in on_front["val_accuracy"]],
            mode="lines+markers",
            line={"shape": "hv", "width": 2},
            marker={"size": 5},
            name="Pareto front",
            hoverinfo="skip",
        )
    )
    fig.update_layout(
        title=f"Accuracy against size, trials trained {info.max_epochs} epochs (front joined)",
        xaxis={"type": "log", "title": "parameters (log scale)", "exponentformat": "SI"},
        yaxis={"title": "best validation accuracy* (selected)"},
    )
    return fig
