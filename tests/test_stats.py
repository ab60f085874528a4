"""Intervals that hold their coverage, and a verdict that can say "indistinguishable"."""

from __future__ import annotations

import numpy as np
import pytest

from search.stats import format_accuracy, paired_difference, sentence, verdict, wilson


@pytest.mark.parametrize(("p", "n"), [(0.5, 60), (0.9, 100), (0.75, 400), (0.97, 50)])
def test_wilson_interval_covers_the_true_accuracy_95_percent_of_the_time(p: float, n: int) -> None:
    rng = np.random.default_rng(0)
    hits = rng.binomial(n, p, size=4000)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson(k, n) for k in hits)])
    assert 0.925 <= covered <= 0.985


def test_wilson_known_values_and_edges() -> None:
    lo, hi = wilson(80, 100)
    assert lo == pytest.approx(0.7112, abs=1e-4) and hi == pytest.approx(0.8666, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)
    assert format_accuracy(0.775, 320) == "0.7750 (95% CI 0.726-0.817, n=320)"
    assert format_accuracy(None, 10) == "-"


def _simulate(rng, *, n: int, seeds: int, beta_w: float, beta_b: float, sd_seed: float):
    """Correctness of two models over the same images and seeds: image difficulty is shared
    (pairing), each training run shifts its model's logit (seed noise)."""
    z = rng.normal(0.0, 1.5, size=n)
    shift_w = rng.normal(0.0, sd_seed, size=(seeds, 1))
    shift_b = rng.normal(0.0, sd_seed, size=(seeds, 1))
    pw = 1 / (1 + np.exp(-(beta_w + z + shift_w)))
    pb = 1 / (1 + np.exp(-(beta_b + z + shift_b)))
    u = rng.random((seeds, n))  # one uniform per (seed, image): correlated errors, like
    return u < pw, u < pb  # two similar networks that find the same images hard


def _true_difference(beta_w: float, beta_b: float, sd_seed: float) -> float:
    rng = np.random.default_rng(123)
    z = rng.normal(0.0, 1.5, size=2_000_000)
    a = rng.normal(0.0, sd_seed, size=z.size)
    c = rng.normal(0.0, sd_seed, size=z.size)
    pw = 1 / (1 + np.exp(-(beta_w + z + a)))
    pb = 1 / (1 + np.exp(-(beta_b + z + c)))
    return float(100 * (pw.mean() - pb.mean()))


@pytest.mark.parametrize(
    ("n", "seeds", "beta_w", "sd_seed"),
    [
        (400, 3, 0.4, 0.05),
        (400, 3, 0.2, 0.3),
        (150, 5, 0.0, 0.15),
        (1000, 2, 0.3, 0.2),
        (402, 3, 0.3, 0.6),
    ],
)
def test_difference_interval_covers_the_true_difference(
    n: int, seeds: int, beta_w: float, sd_seed: float
) -> None:
    truth = _true_difference(beta_w, 0.0, sd_seed)
    rng = np.random.default_rng(1)
    covered = []
    for _ in range(600):
        w, b = _simulate(rng, n=n, seeds=seeds, beta_w=beta_w, beta_b=0.0, sd_seed=sd_seed)
        d = paired_difference(w, b)
        covered.append(d.ci95[0] <= truth <= d.ci95[1])
    assert 0.93 <= np.mean(covered) <= 0.995


def test_identical_models_are_indistinguishable() -> None:
    rng = np.random.default_rng(2)
    same = rng.random((3, 402)) < 0.7
    d = paired_difference(same, same.copy())
    assert d.points == 0.0 and d.ci95 == (0.0, 0.0) and d.verdict == "indistinguishable"


def test_two_models_at_chance_are_indistinguishable_not_13_points_better() -> None:
    rng = np.random.default_rng(3)
    wrongs = []
    for _ in range(200):  # two coin-flipping models on 60 images, 3 seeds
        d = paired_difference(rng.random((3, 60)) < 0.5, rng.random((3, 60)) < 0.5)
        wrongs.append(d.verdict != "indistinguishable")
    assert np.mean(wrongs) <= 0.08


def test_a_clear_gain_is_better_and_a_clear_loss_is_worse() -> None:
    rng = np.random.default_rng(4)
    w, b = _simulate(rng, n=400, seeds=3, beta_w=1.5, beta_b=0.0, sd_seed=0.05)
    assert paired_difference(w, b).verdict == "better"
    assert paired_difference(b, w).verdict == "worse"


def test_verdict_words_and_sentence() -> None:
    assert verdict(0.1, 3.0) == "better"
    assert verdict(-3.0, -0.1) == "worse"
    assert verdict(-1.0, 2.0) == "indistinguishable"
    assert verdict(0.0, 2.0) == "indistinguishable"
    w = np.array([[1, 1, 0, 1]] * 3, dtype=bool)
    b = np.array([[1, 0, 0, 1]] * 3, dtype=bool)
    d = paired_difference(w, b)
    text = sentence(n_test=4, seeds=3, winner_acc=0.75, baseline_acc=0.5, diff=d)
    assert text.startswith("On 4 untouched test images, 3 seeds each: tuned 75.0% vs blog 50.0%")
    assert text.endswith(f": {d.verdict}.")


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="seeds, images"):
        paired_difference(np.ones((3, 4), bool), np.ones((2, 4), bool))


def test_plotted_accuracies_carry_their_wilson_interval() -> None:
    from reports.figures import error_bars

    bars = error_bars([0.75, None, 0.5], 320)
    lo, hi = wilson(240, 320)
    assert bars is not None and bars["array"][0] == pytest.approx(hi - 0.75)
    assert bars["arrayminus"][0] == pytest.approx(0.75 - lo)
    assert bars["array"][1] == 0.0  # no score, no bar
    assert error_bars([0.5], 0) is None  # unknown n: no bars rather than wrong ones
