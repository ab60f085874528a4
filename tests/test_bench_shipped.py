"""The shipped-model benchmark's check of the export's claim on further photos."""

from __future__ import annotations

import numpy as np

from bench.shipped import claim_check


def test_a_claim_is_judged_by_both_its_interval_and_the_two_samples_noise() -> None:
    further = [1] * 260 + [0] * 142  # 0.6468 on 402 further photos
    c = claim_check(0.7083, 240, further)  # a claim on 240 test images
    assert not c["inside"]  # below the claim's own interval (0.648-0.762)...
    assert c["consistent"]  # ...but not by more than the two estimates' noise
    assert c["ci95"][0] < c["points"] < 0 < c["ci95"][1]
    far = claim_check(0.85, 240, further)
    assert not far["inside"] and not far["consistent"] and far["ci95"][1] < 0
    assert claim_check(0.65, 240, further)["inside"]


def test_the_difference_interval_covers_an_honest_claim_about_95_percent() -> None:
    rng = np.random.default_rng(0)
    p, n_claim, n_here, reps = 0.7, 240, 402, 2000
    inside = consistent = 0
    for _ in range(reps):
        claim = rng.binomial(n_claim, p) / n_claim
        c = claim_check(claim, n_claim, list(rng.random(n_here) < p))
        inside += c["inside"]
        consistent += c["consistent"]
    assert 0.93 <= consistent / reps <= 0.97
    assert inside / reps < 0.92  # the by-eye check fails an honest claim more often than 5%
