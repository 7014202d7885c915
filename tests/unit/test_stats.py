"""The shared statistical decisions, checked against the binomial distribution itself."""

from __future__ import annotations

import math

import pytest

from streams.stats import (
    EXACT_BELOW,
    Evidence,
    binomial_tail,
    quantile_min_count,
    share_lower_bound,
    share_upper_bound,
)


def pmf(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


def test_binomial_tail_is_the_sum_of_the_probabilities() -> None:
    for n in (1, 7, 75, 300):
        for p in (1e-4, 0.003, 0.01, 0.3, 0.5, 0.97):
            for k in range(0, n + 1, max(1, n // 25)):
                reference = sum(pmf(i, n, p) for i in range(k, n + 1))
                assert binomial_tail(k, n, p) == pytest.approx(reference, rel=1e-6, abs=1e-200)
    assert binomial_tail(0, 10, 0.5) == 1.0
    assert binomial_tail(11, 10, 0.5) == 0.0


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_a_true_share_at_the_limit_is_called_a_breach_at_most_alpha_of_the_time(
    confidence: float,
) -> None:
    """The false-breach probability, computed exactly over every possible sample, never
    exceeds 1 - confidence (the closed-form Wilson bound fails this by up to 2.6x)."""
    evidence = Evidence(confidence=confidence, min_bad=1)
    for n in range(2, 250, 7):
        for limit in (0.001, 0.003, 0.01, 0.05, 0.2, 0.5):
            # the decision is monotone in k: every sample from the first failing k fails
            first = next(
                (k for k in range(n + 1) if evidence.share_above(k, n, limit)[0] == "fail"),
                n + 1,
            )
            assert all(
                evidence.share_above(k, n, limit)[0] == "fail" for k in range(first, n + 1, 5)
            )
            false_breach = sum(pmf(k, n, limit) for k in range(first, n + 1))
            assert false_breach <= (1 - confidence) * (1 + 1e-9), (n, limit, false_breach)


def test_the_bound_is_the_exact_clopper_pearson_bound() -> None:
    # at the bound, seeing `bad` or more has probability exactly 1 - confidence
    for bad, n in [(1, 75), (5, 75), (3, 100), (40, 1000)]:
        low = share_lower_bound(bad, n, 0.95)
        assert 0 < low < bad / n
        assert binomial_tail(bad, n, low) == pytest.approx(0.05, rel=1e-6)
    # k = n has a closed form: alpha ** (1 / n)
    assert share_lower_bound(20, 20, 0.95) == pytest.approx(0.05 ** (1 / 20), rel=1e-9)
    assert share_lower_bound(0, 20, 0.95) == 0.0
    assert math.isnan(share_lower_bound(0, 0, 0.95))
    # 0 of 20: the upper bound is 1 - alpha ** (1 / 20) (the "rule of three" regime)
    assert share_upper_bound(0, 20, 0.95) == pytest.approx(1 - 0.05 ** (1 / 20), rel=1e-9)


def test_large_counts_use_wilson_within_a_part_in_a_thousand() -> None:
    for bad in (EXACT_BELOW, 5 * EXACT_BELOW):
        for n in (bad * 3, bad * 500):
            fast = share_lower_bound(bad, n, 0.95)
            exact = share_lower_bound(bad, n, 0.95, exact=True)
            assert fast == pytest.approx(exact, rel=2e-3)


def test_the_bound_grows_with_the_evidence() -> None:
    bounds = [share_lower_bound(k, 100, 0.95) for k in range(0, 101)]
    assert bounds == sorted(bounds)
    by_confidence = [share_lower_bound(5, 75, c) for c in (0.8, 0.9, 0.95, 0.99)]
    assert by_confidence == sorted(by_confidence, reverse=True)


def test_decisions_on_the_issues_samples() -> None:
    evidence = Evidence()  # 95 %, at least 3 bad events
    assert evidence.share_above(1, 75, 0.01)[0] == "insufficient"  # 1.3 % observed
    decision, low = evidence.share_above(5, 75, 0.01)
    assert decision == "fail" and 0.01 < low < 5 / 75
    assert evidence.share_above(0, 75, 0.01)[0] == "pass"
    assert evidence.share_above(0, 0, 0.01)[0] == "insufficient"
    # two bad events are never enough, whatever the share
    assert evidence.share_above(2, 2, 0.01)[0] == "insufficient"
    assert Evidence(min_bad=2).share_above(2, 2, 0.01)[0] == "fail"


def test_share_below_mirrors_share_above() -> None:
    evidence = Evidence()
    # 50 of 100 converted against an expected 80 %: shown to be below
    decision, high = evidence.share_below(50, 100, 0.8)
    assert decision == "fail" and 0.5 < high < 0.8
    assert evidence.share_below(85, 100, 0.8)[0] == "pass"
    assert evidence.share_below(3, 5, 0.8)[0] == "insufficient"


def test_quantile_min_count() -> None:
    assert quantile_min_count(0.99, 1) == 100
    assert quantile_min_count(0.95, 1) == 20
    assert quantile_min_count(0.5, 1) == 2
    assert quantile_min_count(0.99, 5) == 500
    with pytest.raises(ValueError):
        quantile_min_count(1.0, 1)


def test_confidence_is_checked() -> None:
    with pytest.raises(ValueError, match="confidence"):
        share_lower_bound(1, 10, 1.0)
