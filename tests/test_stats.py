"""Intervals that hold their coverage, and verdict words that say what the evidence shows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.stats import (
    SELECTED_NOTE,
    VERDICTS,
    at_chance,
    format_accuracy,
    format_selected,
    paired_difference,
    sentence,
    settle_hint,
    verdict,
    wilson,
)


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


def _simulate(
    rng,
    *,
    n: int,
    seeds: int,
    beta_w: float,
    sd_seed: float,
    disagree: float = 1.0,
    collapse: float = 0.0,
):
    """Correctness of two models over the same images and seeds, as messy as real runs: image
    difficulty is shared (pairing), each model also finds its own images hard (the models
    disagree on images in both directions), each training run shifts its model's logit (seed
    noise), and a run may collapse to chance (``collapse``: its probability per run)."""
    z = rng.normal(0.0, 1.5, size=n)
    own_w, own_b = rng.normal(0.0, disagree, size=(2, n))
    shift_w, shift_b = rng.normal(0.0, sd_seed, size=(2, seeds, 1))
    pw = 1 / (1 + np.exp(-(beta_w + z + own_w + shift_w)))
    pb = 1 / (1 + np.exp(-(z + own_b + shift_b)))
    pw = np.where(rng.random((seeds, 1)) < collapse, 0.5, pw)
    pb = np.where(rng.random((seeds, 1)) < collapse, 0.5, pb)
    u, v = rng.random((2, seeds, n))
    shared = rng.random((seeds, n)) < 0.5  # errors partly correlated between the two models
    return u < pw, np.where(shared, u, v) < pb


def _true_difference(beta_w: float, sd_seed: float, disagree: float, collapse: float) -> float:
    """The difference for a new run of each model on new images, by a large simulation."""
    rng = np.random.default_rng(123)
    size = 2_000_000
    z = rng.normal(0.0, 1.5, size=size)
    pw = 1 / (
        1 + np.exp(-(beta_w + z + rng.normal(0, disagree, size) + rng.normal(0, sd_seed, size)))
    )
    pb = 1 / (1 + np.exp(-(z + rng.normal(0, disagree, size) + rng.normal(0, sd_seed, size))))
    pw = np.where(rng.random(size) < collapse, 0.5, pw)
    pb = np.where(rng.random(size) < collapse, 0.5, pb)
    return float(100 * (pw.mean() - pb.mean()))


@pytest.mark.parametrize(
    ("n", "seeds", "beta_w", "sd_seed", "disagree", "collapse"),
    [
        (400, 3, 0.4, 0.0, 1.0, 0.0),  # no seed noise at all
        (402, 3, 0.3, 0.2, 1.0, 0.0),  # seed and image noise of one size
        (402, 3, 0.3, 1.0, 1.0, 0.0),  # seed noise far above the image noise
        (402, 2, 0.3, 0.4, 1.0, 0.0),  # two seeds
        (402, 3, 0.3, 0.1, 1.0, 0.15),  # runs that collapse to chance
        (150, 5, 0.0, 0.15, 2.0, 0.0),  # no difference; strong disagreement
    ],
)
def test_difference_interval_covers_the_true_difference(
    n: int, seeds: int, beta_w: float, sd_seed: float, disagree: float, collapse: float
) -> None:
    truth = _true_difference(beta_w, sd_seed, disagree, collapse)
    rng = np.random.default_rng(1)
    covered = []
    for _ in range(500):
        w, b = _simulate(
            rng,
            n=n,
            seeds=seeds,
            beta_w=beta_w,
            sd_seed=sd_seed,
            disagree=disagree,
            collapse=collapse,
        )
        d = paired_difference(w, b)
        assert d.ci95 is not None
        covered.append(d.ci95[0] <= truth <= d.ci95[1])
    # at least 93% (92% with 2 seeds), and not so wide that it almost never misses
    assert (0.92 if seeds == 2 else 0.93) <= np.mean(covered) <= 0.99


def test_identical_models_are_equivalent() -> None:
    rng = np.random.default_rng(2)
    same = rng.random((3, 402)) < 0.7
    d = paired_difference(same, same.copy())
    assert d.points == 0.0 and d.ci95 == (0.0, 0.0) and d.verdict == "equivalent"


def test_two_models_at_chance_are_rarely_better_or_worse_and_never_equivalent() -> None:
    rng = np.random.default_rng(3)
    words = []
    for _ in range(200):  # two coin-flipping models on 60 images, 3 seeds
        d = paired_difference(rng.random((3, 60)) < 0.5, rng.random((3, 60)) < 0.5)
        words.append(d.verdict)
    assert np.mean([w in ("better", "worse") for w in words]) <= 0.08
    assert "equivalent" not in words  # +-2 points cannot be shown on 60 images
    assert set(words) <= set(VERDICTS)


def test_a_clear_gain_is_better_and_a_clear_loss_is_worse() -> None:
    rng = np.random.default_rng(4)
    w, b = _simulate(rng, n=400, seeds=3, beta_w=1.5, sd_seed=0.05)
    assert paired_difference(w, b).verdict == "better"
    assert paired_difference(b, w).verdict == "worse"


def test_equal_models_on_many_images_and_seeds_are_equivalent() -> None:
    rng = np.random.default_rng(5)
    w, b = _simulate(rng, n=20_000, seeds=5, beta_w=0.0, sd_seed=0.02, disagree=0.3)
    d = paired_difference(w, b, margin=2.0)
    assert d.verdict == "equivalent" and d.ci95 is not None
    assert d.ci95[0] > -2.0 and d.ci95[1] < 2.0
    # the same evidence against a margin it cannot show is inconclusive, not "equivalent"
    assert paired_difference(w, b, margin=0.05).verdict == "inconclusive"


def test_verdict_words() -> None:
    assert verdict((0.1, 3.0)) == "better"
    assert verdict((-3.0, -0.1)) == "worse"
    assert verdict((-1.0, 1.5)) == "equivalent"
    assert verdict((-1.0, 2.5)) == "inconclusive"
    assert verdict((-18.0, 16.0)) == "inconclusive"
    assert verdict((0.0, 2.0)) == "inconclusive"
    assert verdict((-1.0, 2.5), margin=3.0) == "equivalent"
    assert verdict(None) == "inconclusive"
    assert VERDICTS == ("better", "worse", "equivalent", "inconclusive")


def test_under_two_seeds_there_is_no_interval_and_no_finding() -> None:
    w = np.ones((1, 400), bool)
    b = np.zeros((1, 400), bool)  # 100 points apart on one seed: still one training run
    d = paired_difference(w, b)
    assert d.ci95 is None and d.verdict == "inconclusive" and d.points == 100.0
    text = sentence(n_test=400, seeds=1, winner_acc=1.0, baseline_acc=0.0, diff=d)
    assert "inconclusive" in text and "better" not in text and "--confirm" in text


@settings(max_examples=200, deadline=None)
@given(
    k=st.integers(2, 5),
    n=st.integers(2, 12),
    seed=st.integers(0, 2**32 - 1),
    margin=st.floats(0.5, 50),
)
def test_the_interval_stays_inside_the_possible_differences(
    k: int, n: int, seed: int, margin: float
) -> None:
    # two seeds that disagree (one all right, one all wrong) once gave -585 to +685 points
    rng = np.random.default_rng(seed)
    w, b = rng.random((k, n)) < rng.random(), rng.random((k, n)) < rng.random()
    d = paired_difference(w, b, margin=margin)
    assert d.ci95 is not None and d.verdict in VERDICTS
    lo, hi = d.ci95
    assert -100.0 <= lo <= d.points <= hi <= 100.0
    assert d.verdict == verdict(d.ci95, margin=margin)


def test_two_seeds_that_disagree_wholly_get_the_widest_possible_interval() -> None:
    w = np.array([[True] * 50, [False] * 50])
    d = paired_difference(w, np.zeros((2, 50), bool))
    assert d.points == 50.0 and d.ci95 == (-100.0, 100.0) and d.verdict == "inconclusive"


def test_an_inconclusive_verdict_says_how_many_seeds_would_settle_it() -> None:
    rng = np.random.default_rng(6)
    w, b = _simulate(rng, n=2000, seeds=3, beta_w=0.02, sd_seed=0.15, disagree=0.3)
    d = paired_difference(w, b)
    assert d.verdict == "inconclusive"
    assert d.seeds_needed is not None and d.seeds_needed > 3
    text = sentence(n_test=2000, seeds=3, winner_acc=0.7, baseline_acc=0.7, diff=d)
    assert f"--confirm {d.seeds_needed}" in text
    # too few images for the margin: no number of seeds helps, and the sentence says so
    few = paired_difference(*_simulate(rng, n=60, seeds=3, beta_w=0.0, sd_seed=0.1))
    assert few.verdict == "inconclusive" and few.seeds_needed is None
    assert few.images_to_settle and "test images with" in settle_hint(few)


def test_when_no_number_of_seeds_settles_it_the_hint_says_how_many_test_images_would() -> None:
    """240 test images leave about +-4 points from the images alone: the hint names a test
    size (with these seeds, and with twice as many), and that many images of the same kind do
    bring the interval to about the margin, while a quarter of them does not."""
    rng = np.random.default_rng(8)
    d = paired_difference(*_simulate(rng, n=240, seeds=3, beta_w=0.0, sd_seed=0.0))
    assert d.verdict == "inconclusive" and d.seeds_needed is None
    assert d.images_limit is not None and d.images_limit > d.margin
    assert len(d.images_to_settle) == 2
    (images, seeds), (fewer, more_seeds) = d.images_to_settle
    assert seeds == 3 and more_seeds == 6 and 240 < fewer < images
    hint = settle_hint(d)
    assert f"about {images:,} test images with 3 seeds would ({fewer:,} with 6)" in hint

    def half_width(n: int, k: int) -> float:
        widths = []
        for r in range(12):
            sim = _simulate(np.random.default_rng(500 + r), n=n, seeds=k, beta_w=0.0, sd_seed=0.0)
            lo, hi = paired_difference(*sim).ci95 or (np.nan, np.nan)
            widths.append((hi - lo) / 2)
        return float(np.median(widths))

    # the projection rests on 3 seeds' estimates: within a third of the margin either way
    assert abs(half_width(images, 3) - d.margin) < d.margin / 3
    assert half_width(images // 4, 3) > d.margin
    assert abs(half_width(fewer, 6) - d.margin) < d.margin / 3
    # no noise at all: nothing to project, and the verdict is not inconclusive
    same = np.ones((3, 240), bool)
    assert paired_difference(same, same).images_to_settle == ()


def test_a_large_inconclusive_difference_says_how_many_seeds_would_decide_it() -> None:
    """+8 points on 3 seeds whose differences spread (+5, +12, +7: the t interval of 3 seeds
    is 4.3 standard errors wide) is inconclusive, but it needs a narrower interval, not one
    of +-2 points: the hint says how many seeds would show it, and that many seeds of the same
    spread do."""
    n = 400
    rng = np.random.default_rng(3)

    def runs(gains: list[float]) -> tuple[np.ndarray, np.ndarray]:
        base = rng.random((len(gains), n)) < 0.62
        flip = rng.random((len(gains), n)) < np.array(gains)[:, None] / 0.38
        return base | flip, base

    gains = [0.05, 0.12, 0.07]
    w, b = runs(gains)
    d = paired_difference(w, b)
    assert d.verdict == "inconclusive" and d.points > 5
    assert d.seeds_to_decide is not None and 3 < d.seeds_to_decide <= 10
    hint = settle_hint(d)
    want = f"about {d.seeds_to_decide} seeds (--confirm {d.seeds_to_decide}) would show it better"
    assert want in hint
    more = paired_difference(*runs((gains * 4)[: d.seeds_to_decide]))
    assert more.verdict == "better"
    # the other way round, it would show it worse
    assert "would show it worse" in settle_hint(paired_difference(b, w))
    # a difference inside the margin: only the margin's interval would settle it
    near = paired_difference(*runs([0.0, 0.03, -0.01]))
    assert near.verdict == "inconclusive" and abs(near.points) < 2
    assert near.seeds_to_decide is None and "would show it" not in settle_hint(near)


def test_verdict_words_and_sentence() -> None:
    w = np.array([[1, 1, 0, 1]] * 3, dtype=bool)
    b = np.array([[1, 0, 0, 1]] * 3, dtype=bool)
    d = paired_difference(w, b)
    text = sentence(n_test=4, seeds=3, winner_acc=0.75, baseline_acc=0.5, diff=d)
    assert text.startswith("On 4 untouched test images, 3 seeds each: tuned 75.0% vs blog 50.0%")
    assert f": {d.verdict}" in text


def test_selected_scores_are_marked_and_not_called_confidence_intervals() -> None:
    text = format_selected(0.775, 320)
    assert text.startswith("0.7750*") and "CI" not in text and "n=320" in text
    assert "selected" in SELECTED_NOTE and format_selected(None, 3) == "-"


def test_a_run_at_chance_is_flagged() -> None:
    assert at_chance(0.52, 400, 0.5) and at_chance(0.49, 400, 0.5)
    assert not at_chance(0.73, 400, 0.5)
    assert not at_chance(None, 400, 0.5)


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="seeds, images"):
        paired_difference(np.ones((3, 4), bool), np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"at least one seed and one image.*\(3, 0\)"):
        paired_difference(np.ones((3, 0), bool), np.ones((3, 0), bool))


@pytest.mark.parametrize("margin", [0, -1.0, np.nan, np.inf, "2", None])
def test_the_margin_must_be_a_positive_number_of_points(margin: object) -> None:
    w = np.ones((3, 4), bool)
    with pytest.raises(ValueError, match=f"margin must be a positive number.*{margin!r}"):
        paired_difference(w, w, margin=margin)  # type: ignore[arg-type]
    assert paired_difference(w, w, margin=np.int64(3)).verdict == "equivalent"


@pytest.mark.parametrize("odd", [0.7, np.nan, 2.0, -1.0])
def test_entries_must_be_correct_or_not(odd: float) -> None:
    """Probabilities or NaNs passed by mistake would give a number and a verdict."""
    right = np.ones((3, 4))
    wrong = right.copy()
    wrong[1, 2] = odd
    with pytest.raises(ValueError, match="baseline must hold whether"):
        paired_difference(right, wrong)
    assert paired_difference(right.astype(int), right.astype(bool)).points == 0.0


def test_plotted_accuracies_carry_their_wilson_interval() -> None:
    from reports.figures import error_bars

    bars = error_bars([0.75, None, 0.5], 320)
    lo, hi = wilson(240, 320)
    assert bars is not None and bars["array"][0] == pytest.approx(hi - 0.75)
    assert bars["arrayminus"][0] == pytest.approx(0.75 - lo)
    assert bars["array"][1] == 0.0  # no score, no bar
    assert error_bars([0.5], 0) is None  # unknown n: no bars rather than wrong ones
