"""Accuracies with their uncertainty, and the verdict of a tuned model against the baseline.

An accuracy on n images is an estimate of a proportion: it is shown with its 95% Wilson
interval. A difference between two models is judged on the same test images over the same
seeds, with an interval that accounts for both sources of noise (``paired_difference``), and
put in one of four words (``VERDICTS``).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

Z95 = 1.959963984540054
VERDICTS = ("better", "worse", "equivalent", "inconclusive")
DEFAULT_MARGIN = 2.0  # points: a difference inside +-2 points is one nobody would ship for
MAX_SEEDS_ADVISED = 50  # --confirm's bound


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


SELECTED_MARK = "*"
SELECTED_NOTE = (
    "* selected: the best of several epochs (or trials) on the validation images that also "
    "score it, so it is optimistic; its range is the image noise of one measurement, not a "
    "confidence interval for the model."
)


def format_selected(accuracy: float | None, n: int) -> str:
    """A best-epoch validation score: ``0.7750* (range 0.726-0.817, n=320)``; the mark says it
    was selected on the images that score it (``SELECTED_NOTE``)."""
    if accuracy is None or not math.isfinite(accuracy):
        return "-"
    lo, hi = accuracy_ci(accuracy, n)
    return f"{accuracy:.4f}{SELECTED_MARK} (range {lo:.3f}-{hi:.3f}, n={n:,})"


def at_chance(accuracy: float | None, n: int, chance: float) -> bool:
    """Whether an accuracy on ``n`` images cannot be told from ``chance`` (the share of the
    commonest class: what a model that always answers it scores): a run that did not learn."""
    if accuracy is None or not math.isfinite(accuracy) or n <= 0:
        return False
    return accuracy_ci(accuracy, n)[0] <= chance


class Difference(NamedTuple):
    """Winner minus baseline on the same test images and seeds, in percentage points."""

    points: float
    ci95: tuple[float, float] | None  # None under two paired seeds: no interval is honest
    verdict: str  # one of VERDICTS
    seeds: int
    images: int
    t: float | None  # the interval's half-width in standard errors
    margin: float  # points: inside +-margin is "equivalent"
    seeds_needed: int | None  # inconclusive: seeds (at this test size) to reach +-margin
    images_limit: float | None  # points: the half-width the test images alone leave
    reason: str | None = None  # why a verdict was held back, when the interval is not why
    # inconclusive with a difference beyond the margin: seeds whose interval, if the difference
    # holds, would exclude 0 (the difference then decides, not the margin)
    seeds_to_decide: int | None = None
    # inconclusive where no number of seeds reaches +-margin on these images: about how many
    # test images would, as (images, seeds) pairs: with these seeds (or the fewest that can),
    # then with twice as many, which need fewer images
    images_to_settle: tuple[tuple[int, int], ...] = ()


def verdict(ci95: tuple[float, float] | None, *, margin: float = DEFAULT_MARGIN) -> str:
    """``better`` when the whole interval is above 0, ``worse`` below, ``equivalent`` when it
    lies inside +-``margin`` points, else (and without an interval) ``inconclusive``."""
    if ci95 is None:
        return "inconclusive"
    lo, hi = ci95
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    if -margin < lo and hi < margin:
        return "equivalent"
    return "inconclusive"


class _Components(NamedTuple):
    """Two-way variance components of per-(seed, image) differences (fractions squared)."""

    seed: float  # between training runs: sigma_a^2
    image: float  # between test images: sigma_c^2
    interaction: float  # seed x image: sigma_e^2


def _components(diff: np.ndarray) -> tuple[_Components, float, float]:
    """Variance components by the ANOVA mean squares, and the two parts of the estimate's
    variance: the per-seed means' (runs and run-by-image disagreement, K-1 degrees of
    freedom) and the images' beyond the interaction (n-1)."""
    k, n = diff.shape
    grand = diff.mean()
    by_seed = diff.mean(axis=1)
    by_image = diff.mean(axis=0)
    ms_seed = n * float(by_seed.var(ddof=1)) if k > 1 else 0.0
    ms_image = k * float(by_image.var(ddof=1)) if n > 1 else 0.0
    resid = diff - by_seed[:, None] - by_image[None, :] + grand
    df_e = (k - 1) * (n - 1)
    ms_e = float((resid**2).sum()) / df_e if df_e > 0 else 0.0
    comp = _Components(
        seed=max(0.0, (ms_seed - ms_e) / n),
        image=max(0.0, (ms_image - ms_e) / k),
        interaction=ms_e,
    )
    # Var(mean) = s_a/K + s_e/(Kn) + s_c/n: the first two are the variance of the mean of the
    # K per-seed means (what another set of runs on these images would give), the last the
    # images' own share, counted once.
    return comp, ms_seed / (k * n), comp.image / n


def _half_width(v_seed: float, v_image: float, k: int, n: int) -> tuple[float, float]:
    """Half-width of the 95% interval and its multiplier of the standard error: each part's
    own t half-width (K-1 and n-1 degrees of freedom), added in quadrature."""
    # Student's t quantile from scipy.special, imported here: scipy.stats costs every command
    # that imports this module (the CLI, the export check's process) ~0.8 s to load
    from scipy.special import stdtrit

    var = v_seed + v_image
    if var <= 0.0:
        return 0.0, 0.0
    parts = ((v_seed, k - 1), (v_image, n - 1))
    half = math.sqrt(sum(v * float(stdtrit(d, 0.975)) ** 2 for v, d in parts if d > 0))
    return half, half / math.sqrt(var)


def paired_difference(
    winner: np.ndarray, baseline: np.ndarray, *, margin: float = DEFAULT_MARGIN
) -> Difference:
    """Mean test accuracy of ``winner`` minus ``baseline``, with a 95% interval and a verdict.

    ``winner`` and ``baseline`` are boolean arrays of shape (seeds, images): whether seed s of
    each model classified test image i correctly. Row s of both was trained with the same seed,
    and column i is the same image: the comparison is paired on both axes.

    The question is whether the winner's *configuration* beats the blog's, for a new training
    run scored on new images. With the two-way model of the per-(seed, image) differences,
    D_si = mu + a_s + c_i + e_si (a run's luck, an image's, and the run-by-image disagreement),
    the estimate's variance is s_a/K + s_e/(Kn) + s_c/n. The first two are estimated by the
    variance of the K per-seed means (K-1 degrees of freedom), the last by the images' mean
    square beyond the interaction (ANOVA, n-1). The first version added the per-seed and the
    per-image variances, which both hold s_e: the interaction was counted twice.

    The half-width is each part's own t half-width added in quadrature: with seeds dominating
    it is the t interval of the per-seed means (4.3 standard errors with 3 seeds: the honest
    price of three seeds), with no seed noise the images' normal interval. Simulated (models
    that disagree on images in both directions, seeds that collapse, seed noise from none to
    far above the image noise; ``tests/test_stats.py``) it covered 93-98%, where Cochran-Cox
    weights on the other split covered 87% with 2 seeds (the weights shrink exactly when the
    seed variance is underestimated), Satterthwaite's df 87-95%, and the double-counting
    version up to 99.5%. A hierarchical bootstrap over 3 seeds has only 10 distinct outcomes.

    Under two paired seeds there is no estimate of the seed noise: no interval, and the verdict
    is ``inconclusive``. An inconclusive verdict comes with ``seeds_needed``: about how many
    seeds, at this test size, would bring the half-width to ``margin`` (None when the test
    images alone leave more than that: ``images_limit``, and then ``images_to_settle``: about
    how many test images, with how many seeds, would), and, when the difference is larger
    than the margin, ``seeds_to_decide``: about how many would give an interval that excludes
    0 if the difference holds (a +8-point difference on 3 seeds needs no +-2-point interval to
    be shown, only a narrower one).
    """
    w = np.asarray(winner, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if w.shape != b.shape or w.ndim != 2 or w.size == 0:
        raise ValueError(
            f"winner and baseline must be (seeds, images) arrays of one shape with at least "
            f"one seed and one image, but got {w.shape} and {b.shape}."
        )
    for name, values in (("winner", w), ("baseline", b)):
        odd = values[(values != 0) & (values != 1)]
        if odd.size:  # a probability or a NaN is not a correct/incorrect record
            raise ValueError(
                f"{name} must hold whether each image was classified correctly (booleans, "
                f"or 0 and 1), but got {odd.size} other value(s), such as {odd.flat[0]!r}; "
                f"pass predictions == labels."
            )
    if not (isinstance(margin, numbers.Real) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a positive number of points, but got {margin=}.")
    k, n = w.shape
    diff = w - b
    estimate = float(diff.mean())
    if k < 2 or n < 2:  # one run (or one image) says nothing about the noise
        return Difference(100 * estimate, None, "inconclusive", k, n, None, margin, None, None)
    comp, v_seed, v_image = _components(diff)
    half, t = _half_width(v_seed, v_image, k, n)
    # a difference of two accuracies lies in [-100, +100] points: two seeds' t multiplier
    # (12.7) can reach past that, which no reader should be shown; the true difference is
    # inside, so the coverage and the verdict are the same
    ci95 = (max(-100.0, 100 * (estimate - half)), min(100.0, 100 * (estimate + half)))
    word = verdict(ci95, margin=margin)
    needed, limit, decide = None, None, None
    images: tuple[tuple[int, int], ...] = ()
    if word == "inconclusive":
        needed, limit = _seeds_to_settle(comp, n, margin / 100)
        if abs(estimate) > margin / 100:
            decide = _seeds_to_settle(comp, n, abs(estimate), strict=True)[0]
        if needed is None:
            images = _test_sizes_to_settle(comp, k, margin / 100)
    return Difference(
        100 * estimate,
        ci95,
        word,
        k,
        n,
        t,
        margin,
        needed,
        limit,
        seeds_to_decide=decide,
        images_to_settle=images,
    )


def _projected_half_width(comp: _Components, k: int, n: int) -> float:
    """The 95% half-width ``k`` seeds on ``n`` test images would give, if the variance
    components are what this comparison estimated."""
    return _half_width((comp.seed + comp.interaction / n) / k, comp.image / n, k, n)[0]


def _seeds_to_settle(
    comp: _Components, n: int, width: float, *, strict: bool = False
) -> tuple[int | None, float]:
    """The fewest seeds whose projected half-width (same variance components, same n) is at
    most ``width`` (below it, ``strict``); None if even ``MAX_SEEDS_ADVISED`` do not reach it.
    Also the half-width the images alone leave (in points), the floor no number of seeds goes
    below."""
    limit = 100 * Z95 * math.sqrt(comp.image / n)
    for k in range(2, MAX_SEEDS_ADVISED + 1):
        half = _projected_half_width(comp, k, n)
        if half < width or (half == width and not strict):
            return k, limit
    return None, limit


MAX_IMAGES_ADVISED = 10_000_000  # beyond this a test set is not advice


def _images_to_settle(comp: _Components, k: int, width: float) -> tuple[int, int] | None:
    """The fewest test images, with ``k`` seeds or else the fewest seeds that can, whose
    projected half-width (same variance components) is at most ``width``; None if no number of
    seeds up to ``MAX_SEEDS_ADVISED`` reaches it on ``MAX_IMAGES_ADVISED`` images (the
    training runs' own noise then dominates). Rounded up to two significant digits: the
    components are estimates, so the count is an order of size, not a prescription."""
    for seeds in range(max(2, k), MAX_SEEDS_ADVISED + 1):
        if _projected_half_width(comp, seeds, MAX_IMAGES_ADVISED) > width:
            continue
        lo, hi = 2, MAX_IMAGES_ADVISED  # hi's half-width is within width; find the fewest
        while lo < hi:
            mid = (lo + hi) // 2
            fits = _projected_half_width(comp, seeds, mid) <= width
            lo, hi = (lo, mid) if fits else (mid + 1, hi)
        step = 10 ** max(0, len(str(hi)) - 2)
        return -(-hi // step) * step, seeds
    return None


def _test_sizes_to_settle(comp: _Components, k: int, width: float) -> tuple[tuple[int, int], ...]:
    """``_images_to_settle`` with ``k`` seeds (or the fewest that can), then with twice that
    many where it needs fewer images: the two ends of the images-for-seeds trade."""
    first = _images_to_settle(comp, k, width)
    if first is None:
        return ()
    second = (
        None if 2 * first[1] > MAX_SEEDS_ADVISED else _images_to_settle(comp, 2 * first[1], width)
    )
    return (first,) if second is None or second[0] >= first[0] else (first, second)


def settle_hint(diff: Difference) -> str:
    """What would settle an inconclusive verdict, in a few words; empty otherwise."""
    if diff.verdict != "inconclusive":
        return ""
    if diff.reason:
        return diff.reason
    if diff.ci95 is None:
        return (
            f"only {diff.seeds} paired seed{'s' if diff.seeds != 1 else ''}: no interval can be "
            "given; rerun with --confirm 3 or more"
        )
    decide = ""
    if diff.seeds_to_decide is not None:
        word = "better" if diff.points > 0 else "worse"
        decide = (
            f"if the {diff.points:+.1f} points hold, about {diff.seeds_to_decide} seeds "
            f"(--confirm {diff.seeds_to_decide}) would show it {word}; "
        )
    if diff.seeds_needed is not None:
        return decide + (
            f"about {diff.seeds_needed} seeds (--confirm {diff.seeds_needed}) on these "
            f"{diff.images:,} test images would bring the interval to +-{diff.margin:g} points"
        )
    more = "more test images would"
    if diff.images_to_settle:
        (images, seeds), *others = diff.images_to_settle
        more = f"about {images:,} test images with {seeds} seeds would"
        more += "".join(f" ({i:,} with {k})" for i, k in others)
    return decide + (
        f"no number of seeds up to {MAX_SEEDS_ADVISED} brings the interval to "
        f"+-{diff.margin:g} points on {diff.images:,} test images (the images alone leave "
        f"+-{diff.images_limit or 0:.1f}): {more}"
    )


def sentence(
    *,
    n_test: int,
    seeds: int,
    winner_acc: float,
    baseline_acc: float,
    diff: Difference,
) -> str:
    """The verdict in one sentence, as the console and the report's summary print it."""
    head = (
        f"On {n_test:,} untouched test images, {seeds} seed{'s' if seeds != 1 else ''} each: "
        f"tuned {100 * winner_acc:.1f}% vs blog {100 * baseline_acc:.1f}%, "
        f"{diff.points:+.1f} points"
    )
    if diff.ci95 is None:
        return f"{head} (no interval with under 2 seeds): {diff.verdict}; {settle_hint(diff)}."
    lo, hi = diff.ci95
    body = f"{head} (95% CI {lo:+.1f} to {hi:+.1f}): {diff.verdict}"
    if diff.verdict == "equivalent":
        return f"{body} (within +-{diff.margin:g} points)."
    if diff.verdict == "inconclusive":
        return f"{body}; {settle_hint(diff)}."
    return body + "."
