"""Report tables, figure data, escaping, and the states a run can be in (no pixels here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports import figures as fig
from reports.budgets import equal_budget, trial_path
from reports.rundata import load_run
from reports.tables import (
    confirm_rows,
    confusion,
    cost_rows,
    grid_sample,
    results_rows,
    summarize,
)
from reports.writer import figure_json, write_index, write_report
from search.results import load_trials, record_costs
from search.stats import VERDICTS
from tests.report_fixtures import (
    XSS_CLASS,
    XSS_ERROR,
    XSS_FILE,
    add_budget_confounded_trials,
    make_run,
)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "runs" / "hb-1")


def test_summary_and_table(run_dir: Path) -> None:
    run = load_run(run_dir)
    s = summarize(run)
    assert (s.state, s.trials_done, s.trials_planned) == ("finished", 5, 6)
    assert s.statuses == {"completed": 4, "failed": 1}
    assert s.best_id == "0003" and s.best_score == pytest.approx(0.72)
    assert s.baseline == pytest.approx(0.60)
    assert s.gain_points == pytest.approx(12.0)
    assert s.export_passed is True
    rows = results_rows(run.trials, run.space)
    assert [r["trial_id"] for r in rows] == ["0003", "0001", "0000", "baseline", "0002", "0004"]
    assert [r["baseline"] for r in rows].count(True) == 1
    assert rows[-1]["status"] == "failed" and "MemoryError" in rows[-1]["error"]


def test_the_report_shows_where_the_search_trials_time_went(run_dir: Path) -> None:
    record_costs(run_dir, "0000", {"train": 8.0, "validation": 1.0, "tracing": 0.5})
    record_costs(run_dir, "0001", {"train": 6.0, "validation": 1.0, "process_start": 1.5})
    record_costs(run_dir, "baseline", {"train": 100.0, "validation": 10.0})  # not a trial
    run = load_run(run_dir)
    rows = {r["component"]: r for r in cost_rows(run.costs, run.trials)}
    assert rows["train"]["total"] == 14.0 and rows["train"]["trainings"] == 2
    assert rows["fixed"]["total"] == 2.0 and rows["fixed"]["mean"] == 1.0
    assert rows["train"]["share"] == pytest.approx(14.0 / 18.0)
    assert next(iter(rows)) == "fixed"
    html = write_report(run_dir).read_text()
    assert "Where the time went" in html and "fixed (all but train and validation)" in html
    # a run without costs.csv (older runs) has no such section
    (run_dir / "costs.csv").unlink()
    assert "Where the time went" not in write_report(run_dir).read_text()


def test_figure_infos(run_dir: Path) -> None:
    trials = load_trials(run_dir)
    run = load_run(run_dir)
    h = fig.history_info(trials, 0.60)
    assert h.trial_ids == ["0000", "0001", "0002", "0003", "0004"]
    assert h.best_so_far == pytest.approx([0.65, 0.70, 0.70, 0.72, 0.72])
    assert h.statuses[-1] == "failed" and h.scores[-1] is None
    c = fig.curves_info(trials, run.history, top=2)
    assert list(c.series) == ["0003", "0001", "baseline"]
    assert c.series["0003"]["epoch"] == [1, 2, 3]
    p = fig.parallel_info(trials, run.space)
    assert len(p.score) == 4 and p.dimensions["lrn"].count(0.0) == 1
    sl = fig.slice_info(trials, run.space)
    assert "learning_rate" in sl.edge_flags and "high edge" in sl.edge_flags["learning_rate"]
    assert "dropout" not in sl.edge_flags
    imp = fig.importance_info(trials, run.space)
    assert imp.importances == {} and imp.message.startswith("not informative")
    assert "4 trials" in imp.message  # says what it would rest on
    b = fig.budget_info(trials)
    assert b.epochs == [3, 3, 3, 3, 0]
    assert b.groups[3] == "bracket 1, round 1"
    preds = run.predictions
    assert confusion(preds, ["cat", "dog"]) == [[3, 0], [2, 2]]
    grid = grid_sample(preds)
    assert list(grid["label"])[:4] == ["cat", "dog", "cat", "dog"]  # balanced by true class
    dogs = grid[grid["label"] == "dog"]
    assert list(dogs["label"] != dogs["predicted"]) == [True, True, False, False]  # wrong first


def test_importance_needs_completed_trials(run_dir: Path) -> None:
    trials = load_trials(run_dir).head(2)
    info = fig.importance_info(trials, load_run(run_dir).space)
    assert info.importances == {} and "at least 10 trials" in info.message


def _confounded(tmp_path: Path):
    run_dir = make_run(tmp_path / "conf", failed=False, confirmed=False, max_epochs=20)
    add_budget_confounded_trials(run_dir)
    run = load_run(run_dir)
    return run, equal_budget(run.trials, run.history, 20)


def test_equal_budget_importance_is_not_fooled_by_the_budget_a_parameter_was_dealt(
    tmp_path: Path,
) -> None:
    run, budgets = _confounded(tmp_path)
    space = run.space
    mixed = fig.importance_info(run.trials, space)  # every score as if budgets were equal
    assert max(mixed.importances, key=mixed.importances.get) == "lrn"
    fair = fig.importance_info(run.trials, space, budgets=budgets)
    rung = next(iter(fair.views))
    assert rung.startswith("best of epochs 1-3")
    ranking = sorted(fair.views[rung], key=lambda k: -fair.views[rung][k][0])
    assert ranking[0] == "dense_units" and ranking[0] != "lrn"
    spreads = [hi - lo for _, lo, hi in fair.views[rung].values()]
    assert all(s >= 0 for s in spreads) and max(spreads) > 0  # a spread over resamples
    assert fair.resamples == 10 and "bootstrap" in fair.message
    # a real effect clears the noise of shuffled scores
    assert "dense_units" in fair.distinguishable(rung)
    assert "above the noise: dense_units" in fair.message


def test_importance_on_pure_noise_ranks_nothing() -> None:
    """22 first-rung trials whose scores are Binomial(320, 0.70) draws: fANOVA still shares
    out 100% of the variance, but no parameter beats the shuffled scores."""
    from search.space import DEFAULT_SPACE

    rng = np.random.default_rng(21)
    rows = [
        {
            "trial_id": f"{i:04d}",
            "status": "completed",
            "val_accuracy": rng.binomial(320, 0.70) / 320,
            "dropout": float(rng.uniform(0, 0.6)),
            "lrn": bool(rng.integers(0, 2)),
            "dense_units": int(rng.choice(range(512, 4097, 512))),
            "learning_rate": float(10 ** rng.uniform(-5, -3)),
            "weight_decay": 0.0,
        }
        for i in range(22)
    ]
    info = fig.importance_info(pd.DataFrame(rows), DEFAULT_SPACE, resamples=3)
    label = next(iter(info.views))
    assert sum(v[0] for v in info.views[label].values()) == pytest.approx(1.0, abs=0.02)
    assert info.distinguishable(label) == []
    assert "no parameter above the noise" in (info.message or "")


def test_equal_budget_views_and_full_paths(tmp_path: Path) -> None:
    run, budgets = _confounded(tmp_path)
    assert budgets.mixed and budgets.rung_epoch == 3
    assert len(budgets.at_rung) == 24 + 4  # every configuration, the fixture's 4 included
    assert set(budgets.at_full["trial_id"]) == {f"c{i:02d}" for i in range(1, 24, 2)}
    sl = fig.slice_info(run.trials, run.space, n_validation=7, budgets=budgets)
    assert len(sl.views) == 2  # first rung, full budget: never one axis of mixed budgets
    h = fig.history_info(run.trials, None)
    assert h.epochs_so_far[-1] == sum(3 if i % 2 == 0 else 20 for i in range(24)) + 4 * 3
    # a promoted trial's curve starts at epoch 1, with its parent's epochs
    trials = run.trials.copy()
    child = _promoted(run.trials.iloc[1], "p1", parent="c01")
    hist = pd.concat(
        [
            run.history,
            pd.DataFrame(
                [
                    {"trial_id": "p1", "epoch": e, "metric": "val_accuracy", "value": 0.9}
                    for e in (21, 22)
                ]
            ),
        ]
    )
    trials = pd.concat([trials, child], ignore_index=True)
    path = trial_path(trials, hist, "p1")
    assert list(path["epoch"]) == list(range(1, 23)) and path["value"].iloc[-1] == 0.9


def _promoted(row: pd.Series, trial_id: str, *, parent: str) -> pd.DataFrame:
    return pd.DataFrame([{**row.to_dict(), "trial_id": trial_id, "parent_id": parent}])


def test_everything_from_data_is_escaped(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "runs" / "xss", classes=("cat", XSS_CLASS))
    html = write_report(run_dir).read_text()
    for raw in (XSS_FILE, XSS_CLASS, XSS_ERROR, "<img src=x", "<b onmouseover"):
        assert raw not in html
    assert "&lt;img src=x onerror=" in html  # shown as text in the tables
    assert "[learning_rate]\nlow = 1e-05\nhigh = 0.001\nlog = true" in html  # the space file
    specs = re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S)
    assert specs and all("<" not in s for s in specs)
    confusion_spec = json.loads(specs[-1])
    assert confusion_spec["data"][0]["x"][1] == "&lt;b onmouseover=alert(1)&gt;dog&lt;/b&gt;"
    # every script element is ours: no src (offline), and none opened by data; the only
    # scripts with content from data are the JSON figure specs, checked above
    from html.parser import HTMLParser

    class Scripts(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.attrs: list[dict[str, str | None]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "script":
                self.attrs.append(dict(attrs))

    parser = Scripts()
    parser.feed(html)
    assert parser.attrs and all("src" not in a for a in parser.attrs)
    kinds = {a.get("type") for a in parser.attrs}
    assert kinds <= {None, "application/json"}
    n_json = sum(a.get("type") == "application/json" for a in parser.attrs)
    assert n_json == len(specs)  # the regex above saw every JSON spec
    assert html.count("<script") == len(parser.attrs)  # none hidden from the parser


def test_figure_json_cannot_close_a_script_tag() -> None:
    import plotly.graph_objects as go

    text = figure_json(go.Figure(go.Bar(x=["</script><script>x()</script>"], y=[1])))
    assert "<" not in text and ">" not in text  # plotly escapes "/" too; we add "<", ">", "&"


def test_report_of_a_run_in_progress_and_of_a_crashed_run(tmp_path: Path) -> None:
    running = make_run(tmp_path / "runs" / "live", state="running", failed=False, exported=False)
    html = write_report(running).read_text()
    assert "in progress" in html and "No model exported yet" in html
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    crashed = make_run(
        tmp_path / "runs" / "dead", state="running", exported=False, pid=int(dead.stdout)
    )
    html = write_report(crashed).read_text()
    assert "crashed" in html and "rerun its command to resume" in html


def test_index_lists_every_run(tmp_path: Path) -> None:
    make_run(tmp_path / "runs" / "a")
    make_run(tmp_path / "runs" / "b", state="running", exported=False, confirmed=False)
    (tmp_path / "runs" / "not-a-run").mkdir()
    html = write_index(tmp_path / "runs").read_text()
    listing = html.split("Comparable searches")[0]  # the table of runs, before the groups
    assert listing.count('href="./a/report.html"') == 1 and 'href="./b/report.html"' in listing
    assert html.count("Comparable searches") == 1  # a and b saw the same images: one group
    assert "not-a-run" not in html
    summary = json.loads((tmp_path / "runs" / "a" / "summary.json").read_text())
    lo, hi = summary["delta_ci95"]
    # the confirmed verdict and the test-set difference with its interval, not the
    # selection-biased validation gain
    assert f"{summary['delta_points']:+.1f} ({lo:+.1f} to {hi:+.1f}, n=40)" in html
    assert f">{summary['verdict']}</span>" in html and "not finished" in html


@pytest.mark.parametrize(
    "name", ["javascript:alert(1)", "data:text,hi", "a b#c?d", "%2e%2e", "https:x"]
)
def test_no_run_name_becomes_a_link_scheme(tmp_path: Path, name: str) -> None:
    """Links built from folder names are relative and percent-encoded: a folder named like a
    URL scheme stays a folder (``./javascript%3Aalert(1)/report.html``)."""
    from urllib.parse import unquote, urlsplit

    from reports.writer import link_to

    make_run(tmp_path / "runs" / name)
    html = write_index(tmp_path / "runs").read_text()
    links = re.findall(r'href="([^"]+)"', html)
    ours = [link for link in links if link.endswith("/report.html")]
    assert ours == [link_to(f"{name}/report.html")] * len(ours) and ours
    for link in ours:
        assert link.startswith("./") and not urlsplit(link).scheme
        assert unquote(link) == f"./{name}/report.html"


def test_build_cli(run_dir: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "reports.build", str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and (run_dir / "report.html").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "reports.build", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "not a search run directory" in bad.stderr


def _serve(runs_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "reports.serve", str(runs_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_serve_prints_the_address_and_serves_the_index(run_dir: Path) -> None:
    import urllib.request

    proc = _serve(run_dir.parent)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        with urllib.request.urlopen(url.group(0) + "index.html", timeout=10) as response:
            assert b"hb-1/report.html" in response.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_browses_a_read_only_runs_folder(run_dir: Path, tmp_path: Path) -> None:
    """An archive or a mounted share: the index cannot be written, so it is served from
    memory (the reports themselves are files already). Read-only is simulated by making every
    replace into the runs folder fail with EROFS (chmod does not stop root)."""
    import urllib.request

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import errno, os\n"
        "_replace = os.replace\n"
        "def replace(src, dst, *a, **k):\n"
        f"    if str(dst).startswith({str(run_dir.parent)!r}):\n"
        "        raise OSError(errno.EROFS, 'Read-only file system', str(dst))\n"
        "    return _replace(src, dst, *a, **k)\n"
        "os.replace = replace\n"
    )
    before = {p.name for p in run_dir.parent.iterdir()}
    env = {**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reports.serve", str(run_dir.parent), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = [proc.stdout.readline() if proc.stdout else "" for _ in range(2)]
        assert "serving the index from memory" in lines[0], lines
        base = re.search(r"http://127\.0\.0\.1:\d+/", lines[1]).group(0)
        for page in ("", "index.html"):
            with urllib.request.urlopen(base + page, timeout=10) as response:
                assert b"hb-1/report.html" in response.read()
        with urllib.request.urlopen(base + "hb-1/config.json", timeout=10) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert {p.name for p in run_dir.parent.iterdir()} == before  # nothing written


def test_serve_keeps_to_the_runs_folder(run_dir: Path, tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    secret = tmp_path / "outside.txt"
    secret.write_text("not for the web")
    (run_dir.parent / "leak.txt").symlink_to(secret)
    proc = _serve(run_dir.parent)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        base = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "leak.txt", timeout=10)
        assert err.value.code == 404
        with urllib.request.urlopen(base + "hb-1/config.json", timeout=10) as response:
            assert response.status == 200
        port = int(base.rsplit(":", 1)[1].strip("/"))
        busy = subprocess.run(
            [sys.executable, "-m", "reports.serve", str(run_dir.parent), "--port", str(port)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert busy.returncode == 2 and "--port" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = subprocess.run(
        [sys.executable, "-m", "reports.serve", str(run_dir.parent), "--port", "70000"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert bad.returncode == 2 and "0-65535" in bad.stderr


def test_a_users_own_index_html_is_left_alone(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run(runs / "a")
    mine = runs / "index.html"
    mine.write_text("<html><body>my own page</body></html>")
    written = write_index(runs)
    assert mine.read_text() == "<html><body>my own page</body></html>"
    assert written.name == "alexnet-tuner-index.html" and "a/report.html" in written.read_text()
    write_report(runs / "a")  # rebuilding a report (which rewrites the index) leaves it too
    assert mine.read_text() == "<html><body>my own page</body></html>"
    ours = tmp_path / "runs2"
    make_run(ours / "b")
    assert write_index(ours).name == "index.html"
    assert write_index(ours).name == "index.html"  # our own index is ours to rewrite


def test_only_runs_on_the_same_images_and_splits_are_compared(tmp_path: Path) -> None:
    from dataclasses import replace

    from reports import compare

    a = load_run(make_run(tmp_path / "runs" / "a"))
    b = load_run(make_run(tmp_path / "runs" / "b", failed=False))
    bigger = replace(
        b,
        name="c",
        config=replace(b.config, data_config=replace(b.config.data_config, image_size=128)),
    )
    groups = compare.group_runs([("a", a), ("b", b), ("c", bigger)])
    assert [[name for name, _ in g.runs] for g in groups] == [["a", "b"], ["c"]]
    assert "at 67px" in groups[0].label and "at 128px" in groups[1].label
    info = compare.compare_info([a, b])
    assert info.epochs["a"] == [3, 6, 9, 12, 12]  # the failed trial trained nothing
    assert info.best["a"] == pytest.approx([0.65, 0.70, 0.70, 0.72, 0.72])
    assert info.wall["a"] == pytest.approx([1.5, 3.0, 4.5, 6.0, 7.5])
    assert compare.epochs_to_reach(info.epochs["a"], info.best["a"], 0.70) == 6
    assert compare.epochs_to_reach(info.epochs["a"], info.best["a"], 0.9) is None
    rows = compare.compare_rows([("a.html", a), ("b.html", b)])
    assert rows[0]["to_baseline"] == 3 and rows[0]["verdict"] in VERDICTS


def test_the_trial_table_folds_constant_columns_and_hides_empty_ones() -> None:
    from reports.tables import table_columns

    rows = [
        {
            "trial_id": "1",
            "status": "completed",
            "val_accuracy": 0.7,
            "val_ci95": None,
            "weight_decay": 0.0,
            "dropout": 0.1,
            "error": "",
            "seconds": 65.0,
            "display": {"weight_decay": "0.00e+00", "dropout": "0.1000", "seconds": "1m05s"},
        },
        {
            "trial_id": "2",
            "status": "completed",
            "val_accuracy": 0.6,
            "val_ci95": None,
            "weight_decay": 0.0,
            "dropout": 0.2,
            "error": "",
            "seconds": 7.25,
            "display": {"weight_decay": "0.00e+00", "dropout": "0.2000", "seconds": "7s"},
        },
    ]
    cols = [
        "trial_id",
        "status",
        "dropout",
        "weight_decay",
        "val_accuracy",
        "val_ci95",
        "seconds",
        "error",
    ]
    shown, folded = table_columns(rows, cols)
    assert shown == ["trial_id", "status", "dropout", "val_accuracy", "seconds"]
    assert folded == ["weight_decay 0.00e+00"]
    rows[1]["error"] = "NaN/inf loss at epoch 3"
    assert "error" in table_columns(rows, cols)[0]


def test_the_evidence_table_shows_what_the_selection_ranked_on(tmp_path: Path) -> None:
    """Each evidence run's last-epochs validation mean (the selection's score) is in the
    report beside its best epoch, with each candidate's mean; a run directory recorded before
    that column existed shows it empty rather than failing."""
    run_dir = make_run(tmp_path / "run")  # judge runs with val_tail = best epoch - 0.03
    write_report(run_dir)
    html = (run_dir / "report.html").read_text()
    table = re.search(r'<table id="confirm-table">(.*?)</table>', html, re.S).group(1)  # type: ignore[union-attr]
    assert "last epochs&#39; mean, ranks the selection" in table or "last epochs' mean" in table
    confirm = load_run(run_dir).confirm
    rows = confirm_rows(confirm, 7, 40)
    means = [r for r in rows if r["mean"]]
    assert means and all(r["tail"] == pytest.approx(r["val"] - 0.03) for r in means)
    assert f"{means[0]['tail']:.4f}" in table
    old = confirm_rows(confirm.drop(columns=["val_tail"]), 7, 40)
    assert all(r["tail"] is None for r in old) and len(old) == len(rows)
