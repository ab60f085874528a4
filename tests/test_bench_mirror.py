"""The mirror benchmark: which way of looking labels each photo right, and its summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.mirror import mean_t95, measure, scored


def test_the_average_of_two_views_can_be_right_where_either_alone_is_wrong() -> None:
    y = np.array([0, 1, 1])
    plain = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])  # right, wrong, right
    mirrored = np.array([[0.4, 0.6], [0.3, 0.7], [0.7, 0.3]])  # wrong, right, wrong
    right = scored(plain, mirrored, y)
    assert right["plain"].tolist() == [True, False, True]
    assert right["mirrored"].tolist() == [False, True, False]
    # means: (0.65, 0.35) right, (0.45, 0.55) right, (0.45, 0.55) right
    assert right["tta"].tolist() == [True, True, True]


def test_the_mean_over_runs_has_a_t_interval() -> None:
    out = mean_t95([1.0, 2.0, 3.0])
    assert out["mean"] == 2.0
    # t(0.975, 2) = 4.303: 2 +- 4.303 * 1 / sqrt(3)
    assert out["ci95"] == pytest.approx([2 - 2.4843, 2 + 2.4843], abs=1e-3)
    assert mean_t95([1.5])["ci95"] is None


def test_a_run_exported_with_the_mirror_already_is_refused(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_text(json.dumps({"tta": "flip"}))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="already averages mirror images"):
        measure(tmp_path, tmp_path, None)
