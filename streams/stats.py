"""Statistical decisions on small samples, shared by every rule that judges a window.

A rule such as "5xx share above 1 %" or "p95 above 500 ms" looks at a sample of events,
not at the whole population: 1 error in 75 requests is an observed share of 1.3 %, but a
service whose true 5xx share is 0.3 % produces such a sample one time in five. Rules here
decide on evidence instead:

* ``fail``: the data show the share is above the limit — the one-sided lower confidence
  bound of the share lies above it, at the rule's confidence, and at least
  ``min_bad`` bad events were seen (one or two events never page on their own);
* ``pass``: the observed share is within the limit;
* ``insufficient``: the observed share is above the limit, but the sample is too small to
  tell that from chance. Like ``no_data``, it neither extends nor resets a streak.

The bound is exact (Clopper-Pearson, from the binomial distribution itself): the
closed-form Wilson bound, with or without continuity correction, breaches up to 2.6 times
more often than its nominal confidence on small samples with small shares, which is the
case that matters here. Only samples whose observed share is above the limit need it.

Percentile rules reduce to the same test: "p95 > 500 ms" holds exactly when more than
5 % of the events are slower than 500 ms, so the bad events are those above the threshold
and the limit is ``1 - q``. A quantile also needs enough events to be more than the
sample's largest value: :func:`quantile_min_count`.

Later detectors (security thresholds on small counts, funnel conversions, canary
comparisons) use these helpers too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Literal

Decision = Literal["pass", "fail", "insufficient"]

DEFAULT_CONFIDENCE = 0.95
DEFAULT_MIN_BAD = 3


def binomial_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``, exact (a sum of the probabilities in log
    space, stopped once the remaining terms cannot change it)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if k <= n * p:  # at or below the mean: the upper tail is large; sum the lower one
        return max(0.0, 1.0 - _sum_down(k - 1, n, p))
    return min(1.0, _sum_up(k, n, p))


def _log_pmf(i: int, n: int, p: float) -> float:
    return (
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
    )


def _sum_up(k: int, n: int, p: float) -> float:
    """Sum of P(X = i) for i = k..n, k above the mean: terms only shrink from there."""
    term = math.exp(_log_pmf(k, n, p))
    total = term
    odds = p / (1 - p)
    i = k
    while i < n and term > total * 1e-16:
        term *= (n - i) / (i + 1) * odds
        total += term
        i += 1
    return total


def _sum_down(k: int, n: int, p: float) -> float:
    """Sum of P(X = i) for i = 0..k, k below the mean: terms only shrink going down."""
    term = math.exp(_log_pmf(k, n, p))
    total = term
    odds = (1 - p) / p
    i = k
    while i > 0 and term > total * 1e-16:
        term *= i / (n - i + 1) * odds
        total += term
        i -= 1
    return total


#: From this many bad events on, the bound is Wilson's score bound: the count is then so
#: close to normal that it agrees with the exact bound to ~1 part in 1,000 (a test
#: checks), and the exact one would take thousands of terms per evaluation.
EXACT_BELOW = 1000


def share_lower_bound(bad: int, n: int, confidence: float, exact: bool = False) -> float:
    """One-sided lower confidence bound of the share ``bad / n`` (Clopper-Pearson): the
    smallest share under which seeing ``bad`` or more is not rarer than
    ``1 - confidence``. 0 when nothing was bad, NaN for an empty sample. Computed exactly
    below :data:`EXACT_BELOW` bad events (always with ``exact``)."""
    _check(confidence)
    if n <= 0:
        return math.nan
    if bad <= 0:
        return 0.0
    if bad >= EXACT_BELOW and not exact:
        return _wilson_lower(bad, n, confidence)
    alpha = 1.0 - confidence
    lo, hi = 0.0, bad / n
    for _ in range(32):  # bisection to ~2e-10 of the observed share
        mid = (lo + hi) / 2
        if binomial_tail(bad, n, mid) > alpha:
            hi = mid
        else:
            lo = mid
    return lo


def share_upper_bound(bad: int, n: int, confidence: float) -> float:
    """One-sided upper confidence bound of ``bad / n``: the mirror of the lower bound."""
    if n <= 0:
        return math.nan
    return 1.0 - share_lower_bound(n - bad, n, confidence)


def _wilson_lower(bad: int, n: int, confidence: float) -> float:
    z = _z(confidence)
    p = bad / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


@lru_cache(maxsize=64)
def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


def _check(confidence: float) -> None:
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")


@dataclass(frozen=True, slots=True)
class Evidence:
    """How much evidence a rule wants before it calls a sample a breach."""

    confidence: float = DEFAULT_CONFIDENCE
    min_bad: int = DEFAULT_MIN_BAD

    def share_above(self, bad: int, n: int, limit: float) -> tuple[Decision, float]:
        """Is the share of bad events above ``limit``? The decision and the lower bound."""
        if n <= 0:
            return "insufficient", math.nan
        if bad <= limit * n:
            return "pass", math.nan  # within the limit as observed: no bound needed
        low = share_lower_bound(bad, n, self.confidence)
        if bad >= self.min_bad and low > limit:
            return "fail", low
        return "insufficient", low

    def share_below(self, good: int, n: int, limit: float) -> tuple[Decision, float]:
        """Is the share of good events below ``limit`` (a conversion, a success rate)?
        The decision and the upper bound of the share; the missing events count as bad."""
        decision, low = self.share_above(n - good, n, 1.0 - limit)
        return decision, 1.0 - low


def quantile_min_count(q: float, min_tail: float) -> int:
    """Events a sample needs before its ``q`` quantile means something: at least
    ``min_tail`` events expected above it (p99 with a tail of 1 needs 100 events; with
    fewer, the p99 is the sample's maximum)."""
    if not 0 < q < 1:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    return max(1, math.ceil(min_tail / (1 - q) - 1e-9))
