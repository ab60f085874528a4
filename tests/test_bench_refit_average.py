"""The refit-averaging benchmark averages class probabilities, not votes, and reports the gain
over the mean single model."""

from __future__ import annotations

import numpy as np
import pytest

from bench.refit_average import averaged


def test_the_average_is_of_probabilities_and_its_gain_is_over_the_mean_single_model() -> None:
    labels = np.array([0, 0, 1, 1])
    a = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.45, 0.55]])  # wrong on image 1
    b = np.array([[0.6, 0.4], [0.7, 0.3], [0.7, 0.3], [0.2, 0.8]])  # wrong on image 2
    out = averaged([a, b], labels)
    assert out["single"] == [0.75, 0.75]
    # image 1: (0.2 + 0.7) / 2 = 0.45 for cat, wrong; image 2: 0.55 for cat, wrong; a vote
    # could not say, the probabilities do
    assert out["average"] == 0.5 and out["gain"] == pytest.approx(-0.25)
    sure = np.array([[0.6, 0.4], [0.9, 0.1], [0.45, 0.55], [0.2, 0.8]])  # wrong on none
    assert averaged([a, sure], labels) == {"single": [0.75, 1.0], "average": 1.0, "gain": 0.125}
