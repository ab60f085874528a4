"""Open generated reports in headless Chromium with the network off.

No console errors, every figure drawn, nothing from the data executed; a screenshot of the
report and of the index is saved under ``test-artifacts/`` (or ``$TEST_ARTIFACTS``).
``.ci/run`` installs Debian's chromium when it is missing and sets REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reports.writer import write_report
from tests.report_fixtures import XSS_CLASS, add_budget_confounded_trials, make_run

CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)
if CHROMIUM is None and os.environ.get("REQUIRE_BROWSER"):
    raise RuntimeError("REQUIRE_BROWSER is set but no chromium was found on PATH")
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium on PATH (Debian: apt-get install chromium); .ci/run installs it",
    ),
    pytest.mark.slow,
]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", "test-artifacts"))


def chromium(tmp_path: Path, url: str, *extra: str) -> str:
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        # the network is off: every host resolves to nothing, every proxy is refused
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        "--virtual-time-budget=15000",
        *extra,
        url,
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_report_and_index_render_offline(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "runs" / "browser", classes=("cat", XSS_CLASS))
    report = write_report(run_dir)
    html = report.read_text()
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # plotly.js source aside
    assert not re.search(r'(src|href)="(https?:)?//', markup), "the page must not fetch anything"
    assert html.count("plotly.js v") == 1  # included once, not per figure
    n_figures = html.count('data-figure="1"')
    assert n_figures == 8  # confirmation and Pareto front included; importance needs 10 trials
    assert 'id="fig-confirm"' in html and 'id="confirm-table"' in html

    dom = chromium(tmp_path, report.as_uri(), "--dump-dom")
    assert 'data-errors="0"' in dom, re.findall(r'<pre id="js-errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert dom.count('data-drawn="1"') == n_figures
    assert dom.count('class="main-svg"') >= n_figures
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert "data-pwned" not in body  # the payloads in file names and errors never ran
    verdict = re.search(r'<div class="verdict (\w+)" id="verdict">(.*?)</div>', dom, re.S)
    assert verdict is not None and "untouched test images, 3 seeds each" in verdict.group(2)
    word = verdict.group(1)
    assert verdict.group(2).count(word) == 1 and f"<strong>{word}</strong>" in verdict.group(2)
    table = re.search(r'<table id="confirm-table">(.*?)</table>', dom, re.S).group(1)
    assert table.count("<tr") == 1 + 2 * (3 + 1)  # header, 3 seeds + a mean per candidate
    assert "baseline (blog)" in table and "mean of 3" in table

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    chromium(tmp_path, report.as_uri(), "--window-size=1300,5200", f"--screenshot={shot}")
    assert shot.stat().st_size > 50_000

    index = run_dir.parent / "index.html"
    dom = chromium(tmp_path, index.as_uri(), "--dump-dom")
    assert 'data-errors="0"' in dom and 'href="./browser/report.html"' in dom
    assert re.search(r"(better|worse|equivalent|inconclusive)</span>", dom)  # the run's verdict
    chromium(
        tmp_path,
        index.as_uri(),
        "--window-size=1200,600",
        f"--screenshot={ARTIFACTS / 'index.png'}",
    )
    assert (ARTIFACTS / "index.png").exists()


def test_equal_budget_figures_render(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "runs" / "budgets", failed=False, max_epochs=20)
    add_budget_confounded_trials(run_dir)
    html = write_report(run_dir).read_text()
    for fid in ("fig-slice", "fig-importance", "fig-history", "fig-parallel", "fig-confirm"):
        assert f'id="{fid}"' in html
    assert "best of epochs 1-3" in html and "full budget, 20 epochs" in html
    assert "x: epochs spent" in html and "bootstrap resamples" in html
    dom = chromium(tmp_path, (run_dir / "report.html").as_uri(), "--dump-dom")
    assert 'data-errors="0"' in dom, re.findall(r'<pre id="js-errors"[^>]*>(.*?)</pre>', dom, re.S)
    n_figures = html.count('data-figure="1"')
    assert dom.count('data-drawn="1"') == n_figures
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-equal-budget.png"
    chromium(
        tmp_path,
        (run_dir / "report.html").as_uri(),
        "--window-size=1300,6500",
        f"--screenshot={shot}",
    )
    assert shot.stat().st_size > 50_000


def test_comparable_runs_are_drawn_side_by_side_in_the_index_and_the_compare_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reports import compare

    runs = tmp_path / "runs"
    first = make_run(runs / "hyperband-a", failed=False, max_epochs=20)
    add_budget_confounded_trials(first)
    second = make_run(runs / "random-<b>", failed=True)
    write_report(first)
    write_report(second)
    index = (runs / "index.html").read_text()
    assert index.count('id="fig-compare-0"') == 1 and "Comparable searches" in index
    assert "random-&lt;b&gt;" in index and "random-<b>" not in index
    dom = chromium(tmp_path, (runs / "index.html").as_uri(), "--dump-dom")
    assert 'data-errors="0"' in dom and dom.count('data-drawn="1"') == 1
    out = tmp_path / "pages" / "compare.html"
    out.parent.mkdir()
    assert compare.main([str(first), str(second), "--out", str(out)]) == 0
    page = out.read_text()
    assert 'href="../runs/hyperband-a/report.html"' in page  # relative: the folder can move
    dom = chromium(tmp_path, out.as_uri(), "--dump-dom")
    assert 'data-errors="0"' in dom and dom.count('data-drawn="1"') == 1
    assert "x: wall time" in page and "epochs to reach its baseline" in page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    chromium(
        tmp_path,
        out.as_uri(),
        "--window-size=1300,1100",
        f"--screenshot={ARTIFACTS / 'compare.png'}",
    )
    assert compare.main([str(tmp_path / "nowhere")]) == 2
    assert "not a search run directory" in capsys.readouterr().err
