"""Accuracies with their uncertainty, and the verdict of a tuned model against the baseline.

An accuracy on n images is an estimate of a proportion: it is shown with its 95% Wilson
interval. A difference between two models is judged on the same test images over the same
seeds, with an interval that accounts for both sources of noise (``paired_difference``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

Z95 = 1.959963984540054
VERDICTS = ("better", "worse", "indistinguishable")


def wilson(correct: float, n: int, *, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion of ``correct`` successes out of ``n``.

    Unlike the normal ("Wald") interval it stays inside [0, 1] and keeps its coverage near 0 and
    1 and for small n, where tuning runs on a few hundred validation images often are.
    """
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if correct <= 0 else max(0.0, centre - half)
    hi = 1.0 if correct >= n else min(1.0, centre + half)
    return (lo, hi)


def accuracy_ci(accuracy: float, n: int) -> tuple[float, float]:
    """The Wilson interval of an accuracy measured on ``n`` images."""
    return wilson(round(accuracy * n), n)


def format_accuracy(accuracy: float | None, n: int) -> str:
    """``0.7750 (95% CI 0.729-0.815, n=320)``; ``-`` for no score."""
    if accuracy is None or not math.isfinite(accuracy):
        return "-"
    lo, hi = accuracy_ci(accuracy, n)
    return f"{accuracy:.4f} (95% CI {lo:.3f}-{hi:.3f}, n={n:,})"


class Difference(NamedTuple):
    """Winner minus baseline on the same test images and seeds, in percentage points."""

    points: float
    ci95: tuple[float, float]
    verdict: str  # "better", "worse" or "indistinguishable"
    seeds: int
    images: int
    t: float  # the interval's multiplier of the standard error (Cochran-Cox)


def verdict(lo: float, hi: float) -> str:
    """``better`` when the whole interval is above 0, ``worse`` below, else indistinguishable."""
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "indistinguishable"


def paired_difference(winner: np.ndarray, baseline: np.ndarray) -> Difference:
    """Mean test accuracy of ``winner`` minus ``baseline``, with a 95% interval.

    ``winner`` and ``baseline`` are boolean arrays of shape (seeds, images): whether seed s of
    each model classified test image i correctly. Row s of both was trained with the same seed,
    and column i is the same image: the comparison is paired on both axes.

    The question is whether the winner's *configuration* beats the blog's, for a new training
    run scored on new images; two sources of noise stand between the estimate and that answer:

    - the test images (a finite sample of the population): with the seeds fixed, the estimate is
      the mean over images of d_i, each image's difference averaged over seeds; its variance is
      var(d_i)/n. Pairing removes what both models get right or wrong together.
    - the training runs (initialisation, shuffling): the per-seed differences D_s, all on the
      same images, vary by var(D_s); their mean has variance var(D_s)/K.

    With the usual two-way model (a seed effect, an image effect, and their interaction) the
    sum of the two estimates counts the interaction term twice, so the interval errs on the
    wide side, never the narrow one. The multiplier is Cochran and Cox's: the t quantiles of
    the two parts (n-1 and K-1 degrees of freedom) weighted by their variances. With K=3 seeds
    and training noise dominating it approaches t with 2 degrees of freedom (4.3 standard
    errors): the honest price of three seeds. Welch-Satterthwaite degrees of freedom were
    tried first and covered only 89% with 2 seeds and 93% with 3 when seed noise dominates
    (the estimated df is largest exactly when the seed variance is underestimated).

    Why not a hierarchical bootstrap: resampling 3 seeds with replacement has only 10 distinct
    outcomes and underestimates the seed variance by a factor (K-1)/K, so its interval is too
    narrow exactly where seeds matter. ``tests/test_stats.py`` checks the coverage of this one
    by simulation (94-99% for 2 to 5 seeds, small to large seed noise).
    """
    w = np.asarray(winner, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if w.shape != b.shape or w.ndim != 2 or w.size == 0:
        raise ValueError(
            f"winner and baseline must be (seeds, images) arrays of one shape, but got "
            f"{w.shape} and {b.shape}."
        )
    k, n = w.shape
    diff = w - b
    estimate = float(diff.mean())
    per_image = diff.mean(axis=0)
    var_images = float(per_image.var(ddof=1)) / n if n > 1 else 0.0
    per_seed = diff.mean(axis=1)
    var_seeds = float(per_seed.var(ddof=1)) / k if k > 1 else 0.0
    var = var_images + var_seeds
    if var <= 0.0:  # the same difference on every image and seed (0 for identical models)
        lo = hi = estimate
        t = 0.0
    else:
        parts = [(var_images, n - 1), (var_seeds, k - 1)]
        t = sum(v * float(stats.t.ppf(0.975, d)) for v, d in parts if v > 0) / var
        half = t * math.sqrt(var)
        lo, hi = estimate - half, estimate + half
    word = verdict(lo, hi) if n > 1 else "indistinguishable"  # one image proves nothing
    return Difference(100 * estimate, (100 * lo, 100 * hi), word, k, n, t)


def sentence(
    *,
    n_test: int,
    seeds: int,
    winner_acc: float,
    baseline_acc: float,
    diff: Difference,
) -> str:
    """The verdict in one sentence, as the console and the report's summary print it."""
    lo, hi = diff.ci95
    return (
        f"On {n_test:,} untouched test images, {seeds} seeds each: tuned "
        f"{100 * winner_acc:.1f}% vs blog {100 * baseline_acc:.1f}%, {diff.points:+.1f} points "
        f"(95% CI {lo:+.1f} to {hi:+.1f}): {diff.verdict}."
    )
