"""Verdicts: one comparison of canary with baseline, and the run of them over a stage.

:func:`compare` judges one interval (or the stage so far): the latency tails, the 5xx
rate, optionally the canary's share of traffic against its declared weight and the SLO
rules' absolute thresholds; it scores the metrics (:func:`stats.score`) and says
``Pass`` (score >= ``pass_score``), ``Marginal`` (>= ``marginal_score``), ``Failing``,
or ``Inconclusive`` when either side has fewer than ``min_requests``.
:class:`Stage` turns failing intervals into ``Fail`` only after ``consecutive`` of them
in a row, like the SLO rules' consecutive samples; an interval fails when its own
comparison or the stage's cumulative one (more requests: more power) fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.detectors.canary.stats import (
    MetricResult,
    Thresholds,
    error_test,
    score,
    tail_test,
    threshold_test,
    weight_test,
)
from streams.detectors.latency.sketch import Sketch

Verdict = Literal["Pass", "Marginal", "Fail", "Inconclusive"]
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


@dataclass(frozen=True, slots=True)
class JudgeConfig:
    thresholds: Thresholds = field(default_factory=Thresholds)
    min_requests: int = 50  # per side, per comparison: below it, Inconclusive
    pass_score: float = 95.0
    marginal_score: float = 75.0
    consecutive: int = 2  # failing intervals in a row before Fail
    critical_quantiles: tuple[str, ...] = ("p99",)


@dataclass(slots=True)
class Cohort:
    """One cohort's requests in a window: latency bucket counts, requests, 5xx."""

    sketch: Sketch = field(default_factory=Sketch)
    requests: int = 0
    errors: int = 0

    def merge(self, other: Cohort) -> None:
        self.sketch.merge(other.sketch)
        self.requests += other.requests
        self.errors += other.errors


@dataclass(frozen=True, slots=True)
class Comparison:
    verdict: Verdict  # Pass / Marginal / Inconclusive, or Fail as "failing" before Stage
    failing: bool
    score: float
    metrics: tuple[MetricResult, ...]
    canary_requests: int
    baseline_requests: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "score": round(self.score, 1),
            "canary_requests": self.canary_requests,
            "baseline_requests": self.baseline_requests,
            "metrics": [
                {
                    "metric": m.metric,
                    "outcome": m.outcome,
                    "canary": m.canary,
                    "baseline": m.baseline,
                    "effect": m.effect,
                    "statistic": m.statistic,
                    "p_value": m.p_value,
                    "critical": m.critical,
                    "test": m.test,
                }
                for m in self.metrics
            ],
        }


def compare(
    canary: Cohort,
    baseline: Cohort,
    config: JudgeConfig,
    *,
    weight: float | None = None,
    slo_ms: Mapping[str, float] | None = None,
    gamma: float | None = None,
) -> Comparison:
    """One comparison; ``slo_ms`` maps a quantile name (p95) to an absolute threshold
    (needs ``gamma`` to read the canary's quantile from its sketch)."""
    n1, n2 = canary.requests, baseline.requests
    th = config.thresholds
    metrics: list[MetricResult] = [
        tail_test(name, canary.sketch.bins, baseline.sketch.bins, q, th,
                  critical=name in config.critical_quantiles)
        for name, q in QUANTILES
    ]  # fmt: skip
    metrics.append(error_test(canary.errors, n1, baseline.errors, n2, th))
    if weight is not None:
        metrics.append(weight_test(n1, n2, weight, th))
    for name, limit in (slo_ms or {}).items():
        q = dict(QUANTILES)[name]
        assert gamma is not None, "an absolute threshold needs the sketch's gamma"
        [value] = canary.sketch.quantiles([q], gamma) if canary.sketch.count else [0.0]
        metrics.append(threshold_test(f"slo_{name}", value, limit, canary.sketch.count))
    if n1 < config.min_requests or n2 < config.min_requests:
        return Comparison("Inconclusive", False, 0.0, tuple(metrics), n1, n2)
    result = score(metrics)
    if result.judged == 0:
        return Comparison("Inconclusive", False, 0.0, tuple(metrics), n1, n2)
    if result.score >= config.pass_score:
        verdict: Verdict = "Pass"
    elif result.score >= config.marginal_score and not result.critical_failed:
        verdict = "Marginal"
    else:
        return Comparison("Fail", True, result.score, tuple(metrics), n1, n2)
    return Comparison(verdict, False, result.score, tuple(metrics), n1, n2)


@dataclass(slots=True)
class Stage:
    """Consecutive failing intervals of one (service, release): Fail after enough."""

    consecutive: int
    failing_run: int = 0
    failed: bool = False

    def observe(self, comparison: Comparison, cumulative: Comparison | None = None) -> Verdict:
        """The stage's verdict after one interval. ``cumulative`` is the comparison over
        the stage so far: more requests, more power; the interval counts as failing
        when either comparison fails."""
        if cumulative is not None and comparison.verdict == "Inconclusive":
            comparison = cumulative if cumulative.verdict != "Inconclusive" else comparison
        if comparison.verdict == "Inconclusive":
            return "Inconclusive"  # neither breaks nor extends a failing run
        # the cumulative comparison adds power, but its looks are correlated (a fluke
        # early on lingers): it extends a failing run only when this interval is not a
        # clean Pass
        backed = cumulative is not None and cumulative.failing and comparison.verdict != "Pass"
        if comparison.failing or backed:
            self.failing_run += 1
            if self.failing_run >= self.consecutive:
                self.failed = True
                return "Fail"
            return "Marginal"  # failing, not yet long enough: a warning
        self.failing_run = 0
        return comparison.verdict
