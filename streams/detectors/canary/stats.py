"""The canary judge's statistics: exact where counts are small, pure Python, no SciPy.

Latency is compared as a *tail exceedance*: for a quantile ``q`` (p50, p95, p99) take the
baseline's ``q`` bucket ``k`` in the shared log-bucket grid (:mod:`...latency.sketch`),
move the edge up by ``tolerance`` buckets (one bucket spans ``2a`` relative: a canary
within the sketch's accuracy of the baseline is never called slower), and compare the
share of canary requests above that edge with the share of baseline requests above it
as two proportions. Both shares come from bucket counts, so the test is exact on the
sketches: no interpolation, and partitions merge by adding counts. Rank tests on log
buckets are weak on tails; this one asks the question a rollout cares about -- "are more
canary requests slower than the baseline's p99?".

Error rates are compared with Fisher's exact test (one-sided, canary worse) when any
expected cell count is below 5, with a pooled two-proportion z-test otherwise. Every
comparison also needs a minimum effect size, so a large baseline cannot make a
negligible difference significant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["Pass", "High", "Low", "Nodata"]


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One metric of one comparison: outcome with its statistic, p-value and effect.

    ``canary`` and ``baseline`` are the compared figures (a share above the edge, an
    error rate, a throughput share, a quantile in ms); ``effect`` is canary - baseline
    on them (a difference of proportions; ms for an absolute threshold)."""

    metric: str
    outcome: Outcome
    canary: float
    baseline: float
    effect: float
    statistic: float
    p_value: float
    critical: bool = False
    test: str = ""

    @property
    def failing(self) -> bool:
        return self.outcome == "High"


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_greater(a: int, n1: int, c: int, n2: int) -> float:
    """One-sided Fisher exact p-value that group 1's rate (``a`` of ``n1``) exceeds
    group 2's (``c`` of ``n2``): P(X >= a), X hypergeometric with the margins fixed."""
    total, hits = n1 + n2, a + c
    lo, hi = max(0, hits - n2), min(hits, n1)
    if a <= lo:
        return 1.0
    denominator = _log_comb(total, n1)
    terms = [_log_comb(hits, x) + _log_comb(total - hits, n1 - x) - denominator
             for x in range(a, hi + 1)]  # fmt: skip
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def two_proportion_z(a: int, n1: int, c: int, n2: int) -> tuple[float, float]:
    """Pooled z statistic of rate1 - rate2 and its one-sided p-value (rate1 greater)."""
    pooled = (a + c) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (a / n1 - c / n2) / se
    return z, normal_sf(z)


def compare_proportions(a: int, n1: int, c: int, n2: int) -> tuple[float, float, float, str]:
    """(statistic, p greater, p less, test name) for canary ``a/n1`` vs baseline
    ``c/n2``: Fisher's exact test when an expected count is below 5, else the z-test."""
    hits, total = a + c, n1 + n2
    expected = min(hits * n1, hits * n2, (total - hits) * n1, (total - hits) * n2) / total
    if expected < 5:
        greater = fisher_greater(a, n1, c, n2)
        less = fisher_greater(c, n2, a, n1)
        return a / n1 - c / n2, greater, less, "fisher"
    z, greater = two_proportion_z(a, n1, c, n2)
    return z, greater, normal_sf(-z), "z"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """How sure and how large a difference must be before it counts."""

    alpha: float = 0.001  # per metric and interval; Fail also needs consecutive intervals
    tolerance_buckets: int = 1  # >= 1: no finer than twice the sketch's relative accuracy
    #: a latency tail fails when the canary's share above the edge exceeds the
    #: baseline's by at least this share of the tail (1 - q): 0.1 above the median,
    #: 0.01 above p95, 0.002 above p99
    tail_min_excess: float = 0.2
    #: an error rate fails when at least this much higher (absolute) and this many times
    error_min_diff: float = 0.005
    error_min_ratio: float = 1.5
    #: the canary's share of requests may differ from its declared weight by this factor
    weight_tolerance: float = 0.5


def _edge_key(baseline: Mapping[int, int], q: float, tolerance: int) -> int | None:
    n = sum(baseline.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n - 1e-9))
    seen = 0
    for key in sorted(baseline):
        seen += baseline[key]
        if seen >= rank:
            return key + tolerance
    return None  # unreachable: rank <= n


def tail_test(
    name: str,
    canary: Mapping[int, int],
    baseline: Mapping[int, int],
    q: float,
    th: Thresholds,
    critical: bool = False,
) -> MetricResult:
    """Share of canary requests above the baseline's ``q`` bucket (+ tolerance) against
    the baseline's own share above it; ``canary``/``baseline`` are bucket counts."""
    n1, n2 = sum(canary.values()), sum(baseline.values())
    edge = _edge_key(baseline, q, max(1, th.tolerance_buckets))
    if n1 == 0 or edge is None:
        return MetricResult(name, "Nodata", 0.0, 0.0, 0.0, 0.0, 1.0, critical, "tail")
    a = sum(c for k, c in canary.items() if k > edge)
    c = sum(c for k, c in baseline.items() if k > edge)
    stat, greater, less, test = compare_proportions(a, n1, c, n2)
    share1, share2 = a / n1, c / n2
    tail = 1.0 - q
    effect = share1 - share2
    large = effect >= th.tail_min_excess * tail
    small = -effect >= th.tail_min_excess * tail
    outcome: Outcome = "Pass"
    if greater < th.alpha and large:
        outcome = "High"
    elif less < th.alpha and small:
        outcome = "Low"
    p_value = greater if outcome != "Low" else less
    return MetricResult(name, outcome, share1, share2, effect, stat, p_value, critical, test)


def error_test(
    errors: int, n1: int, base_errors: int, n2: int, th: Thresholds, critical: bool = True
) -> MetricResult:
    """5xx rate of the canary against the baseline's (one-sided: only worse fails)."""
    if n1 == 0 or n2 == 0:
        return MetricResult("error_rate", "Nodata", 0.0, 0.0, 0.0, 0.0, 1.0, critical, "")
    stat, greater, less, test = compare_proportions(errors, n1, base_errors, n2)
    r1, r2 = errors / n1, base_errors / n2
    outcome: Outcome = "Pass"
    if greater < th.alpha and r1 - r2 >= th.error_min_diff and r1 >= th.error_min_ratio * r2:
        outcome = "High"
    elif less < th.alpha and r2 - r1 >= th.error_min_diff and r2 >= th.error_min_ratio * r1:
        outcome = "Low"
    p_value = greater if outcome != "Low" else less
    return MetricResult("error_rate", outcome, r1, r2, r1 - r2, stat, p_value, critical, test)


def weight_test(n1: int, n2: int, weight: float, th: Thresholds) -> MetricResult:
    """The canary's share of requests against its declared weight (a two-sided binomial
    z-test; off by more than ``weight_tolerance`` relative and significant)."""
    total = n1 + n2
    if total == 0 or not 0 < weight < 1:
        return MetricResult("throughput_share", "Nodata", 0.0, weight, 0.0, 0.0, 1.0)
    share = n1 / total
    z = (share - weight) / math.sqrt(weight * (1 - weight) / total)
    p = 2 * normal_sf(abs(z))
    outcome: Outcome = "Pass"
    if p < th.alpha and abs(share - weight) > th.weight_tolerance * weight:
        outcome = "High" if share > weight else "Low"
    # too little traffic reaching the canary is as bad as too much: both fail
    if outcome == "Low":
        outcome = "High"
    return MetricResult("throughput_share", outcome, share, weight, share - weight, z, p,
                        False, "binomial-z")  # fmt: skip


def threshold_test(name: str, value_ms: float, threshold_ms: float, n: int) -> MetricResult:
    """An SLO rule's absolute threshold on the canary's own quantile."""
    if n == 0:
        return MetricResult(name, "Nodata", 0.0, threshold_ms, 0.0, 0.0, 1.0, True, "slo")
    outcome: Outcome = "High" if value_ms > threshold_ms else "Pass"
    ratio = value_ms / threshold_ms if threshold_ms else 0.0
    effect = value_ms - threshold_ms
    return MetricResult(name, outcome, value_ms, threshold_ms, effect, ratio, 0.0, True, "slo")


@dataclass(frozen=True, slots=True)
class Score:
    score: float  # 0..100
    passing: int
    judged: int
    critical_failed: bool


def score(results: list[MetricResult]) -> Score:
    """Share of passing metrics among those with data, x100; a failing critical metric
    makes it 0. No metric with data: score 0 (the caller says Inconclusive)."""
    judged = [r for r in results if r.outcome != "Nodata"]
    passing = sum(1 for r in judged if not r.failing)
    critical = any(r.failing and r.critical for r in judged)
    value = 0.0 if critical or not judged else 100.0 * passing / len(judged)
    return Score(value, passing, len(judged), critical)
