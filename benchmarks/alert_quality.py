"""Alert quality of the SLO rules: the demo's traffic replayed in compressed event time.

The demo's HTTP traffic (its tenants' weights, routes, log-normal latencies and status
shares, imported from :mod:`streams.demo` so the two cannot drift) is drawn per 30-s
sample and key with numpy, built into the same ``Stats`` (status classes, latency sketch)
the latency detector closes, and judged by the real ``SloEvaluator`` under the default
rules — every (tenant, service, route), every tenant as a whole, and every tenant's
burn-rate alerts. A simulated day
takes seconds.

Two evaluators are compared on the same draws: the current one (decisions on evidence,
:mod:`streams.stats`) and :class:`PointEstimate`, the rules as they were before: a
sample with ``min_events`` events breaches when its observed value does.

* **False pages**: clean traffic (no incident) → fire transitions per simulated day, per
  rule.
* **Detection delay**: an incident at a given magnitude starting ``start_s`` into the
  run → the time from its start to the end of the sample whose verdict fired the alert.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from streams.demo import HTTP_SHARE, P_401, P_404, ROUTES, TENANTS
from streams.detectors.latency.sketch import Sketch, bucket_indices, gamma_for
from streams.detectors.latency.slo import (
    ALL,
    BudgetTracker,
    Key,
    Rule,
    RulesFile,
    Sample,
    SloEvaluator,
    Status,
    Transition,
    Verdict,
    load_rules,
)
from streams.detectors.latency.state import Stats

GAMMA = gamma_for(0.01)


@dataclass(frozen=True, slots=True)
class Incident:
    """What changes on one key while the incident runs."""

    tenant: str
    route: str  # "*": every route of the tenant
    start_s: float
    duration_s: float
    latency_factor: float = 1.0
    error_share: float | None = None  # 5xx share during the incident


class PointEstimate(SloEvaluator):
    """The decisions before statistical evidence: observed value against threshold once
    a sample has ``min_events`` events; burn rates on the observed ratios."""

    def judge(self, rule: Rule, threshold: float, sample: Sample) -> Verdict:
        value = sample.values.get(rule.sli, math.nan)
        enough = sample.count >= self.config.min_events or rule.sli == "throughput_rps"
        status: Status = (
            "no_data"
            if not enough or math.isnan(value)
            else "fail"
            if rule.breached(value, threshold)
            else "pass"
        )
        return Verdict(
            sample.key,
            sample.start_ms,
            sample.end_ms,
            rule.id,
            rule.sli,
            rule.op,
            value,
            threshold,
            status,
            sample.count,
        )

    def evaluate_tenant(
        self,
        tenant: str,
        start_ms: int,
        end_ms: int,
        count: int,
        budget: BudgetTracker,
        errors: int,
    ) -> tuple[list[Verdict], list[Transition]]:
        """Burn rates only: the tenant-level window rule came with the evidence."""
        rates = budget.add(tenant, end_ms, count, errors)
        key: Key = (tenant, ALL, ALL, "")
        verdicts: list[Verdict] = []
        transitions: list[Transition] = []
        for alert in budget.availability.burn_alerts:
            value = rates.rates[alert.long_s]
            if not budget.has_data(alert, rates, self.config.min_events):
                continue
            status: Status = "fail" if budget.burning(alert, rates) else "pass"
            verdict = Verdict(
                key, start_ms, end_ms, alert.alert, "burn_rate", ">", value, alert.factor,
                status, count,
            )  # fmt: skip
            verdicts.append(verdict)
            sample = Sample(key, start_ms, end_ms, count, {"burn_rate": value})
            t = self._step(alert.rule, alert.factor, sample, verdict)
            if t is not None:
                transitions.append(t)
        return verdicts, transitions


#: the background 5xx share of every route: 0.3 %, fifteen times the demo's (0.02 %), the
#: noisy case where one 5xx in a small sample already looks like "above 1 %"
BACKGROUND_5XX = 0.003


class DemoModel:
    """The demo's HTTP traffic per (tenant, route) and 30-s sample, drawn with numpy."""

    def __init__(self, rate_per_s: float, seed: int, sample_s: int = 30) -> None:
        self.rng = np.random.default_rng(seed)
        self.sample_s = sample_s
        per_route = rate_per_s * HTTP_SHARE * sample_s / len(ROUTES)
        self.keys: list[tuple[Key, float, float, float]] = [
            ((tenant, service, route, ""), weight * per_route, median, sigma)
            for tenant, weight in TENANTS
            for service, _method, route, median, sigma in ROUTES
        ]

    def sample(self, index: int, incidents: Iterable[Incident] = ()) -> dict[Key, Stats]:
        """Stats of every key for sample ``index``, incidents applied to the share of the
        sample they cover."""
        rng = self.rng
        start_s = index * self.sample_s
        out: dict[Key, Stats] = {}
        for key, mean, median, sigma in self.keys:
            n = int(rng.poisson(mean))
            if not n:
                continue
            durations = rng.lognormal(math.log(median), sigma, n)
            p5xx = np.full(n, BACKGROUND_5XX)
            for inc in incidents:
                if inc.tenant != key[0] or inc.route not in (key[2], ALL):
                    continue
                # events are spread evenly over the sample: the covered ones change
                times = start_s + rng.uniform(0, self.sample_s, n)
                hit = (times >= inc.start_s) & (times < inc.start_s + inc.duration_s)
                durations[hit] *= inc.latency_factor
                if inc.error_share is not None:
                    p5xx[hit] = inc.error_share
            u = rng.uniform(0, 1, n)
            c5xx = int(np.count_nonzero(u < p5xx))
            c4xx = int(np.count_nonzero((u >= p5xx) & (u < p5xx + P_404 + P_401)))
            keys, counts = np.unique(bucket_indices(durations, GAMMA), return_counts=True)
            sketch = Sketch.from_arrays(keys.tolist(), counts.tolist())
            out[key] = Stats(
                count=n,
                c2xx=n - c5xx - c4xx,
                c4xx=c4xx,
                c5xx=c5xx,
                max_ms=float(durations.max()),
                sketch=sketch,
            )
        return out


@dataclass
class Run:
    samples: int
    sample_s: int
    pages: Counter[str]  # alertname -> fire transitions
    fires: dict[tuple[str, Key], list[float]]  # (alertname, key) -> ends of firing samples
    statuses: Counter[str]

    def first_fire(self, alert: str, key: Key, since_s: float) -> float | None:
        """End of the first sample at or after ``since_s`` whose verdict fired ``alert``."""
        return next((at for at in self.fires.get((alert, key), []) if at >= since_s), None)

    @property
    def days(self) -> float:
        return self.samples * self.sample_s / 86_400


def replay(
    evaluator: SloEvaluator,
    rules: RulesFile,
    model: DemoModel,
    samples: int,
    incidents: tuple[Incident, ...] = (),
) -> Run:
    """Judge ``samples`` consecutive samples of the model with ``evaluator``."""
    sample_s = model.sample_s
    budget = BudgetTracker(rules.slo.availability, sample_s, rules.slo.tenant_windows_s)
    pages: Counter[str] = Counter()
    fires: dict[tuple[str, Key], list[float]] = {}
    statuses: Counter[str] = Counter()
    for i in range(samples):
        start_ms, end_ms = i * sample_s * 1000, (i + 1) * sample_s * 1000
        active = tuple(
            inc
            for inc in incidents
            if inc.start_s < (i + 1) * sample_s and inc.start_s + inc.duration_s > i * sample_s
        )
        per_key = model.sample(i, active)
        tenants: dict[str, Stats] = {}
        for key, stats in per_key.items():
            tenants.setdefault(key[0], Stats()).merge(stats)
        for tenant, stats in tenants.items():
            per_key[(tenant, ALL, ALL, "")] = stats
        transitions: list[Transition] = []
        for key in sorted(per_key):
            stats = per_key[key]
            verdicts, fired = evaluator.evaluate(
                Sample(
                    key,
                    start_ms,
                    end_ms,
                    stats.count,
                    stats.slis(GAMMA, sample_s),
                    {"error_rate": stats.c5xx, "client_error_rate": stats.c4xx},
                    stats.sketch,
                    GAMMA,
                )
            )
            transitions.extend(fired)
            statuses.update(v.status for v in verdicts)
            if key[1] == ALL:
                verdicts, fired = evaluator.evaluate_tenant(
                    key[0], start_ms, end_ms, stats.count, budget, stats.c5xx
                )
                transitions.extend(fired)
                statuses.update(v.status for v in verdicts)
        for t in transitions:
            if t.action == "fire":
                pages[t.alertname] += 1
                fires.setdefault((t.alertname, t.key), []).append(t.at_ms / 1000)
    return Run(samples, sample_s, pages, fires, statuses)


def evaluators(rules: RulesFile) -> dict[str, SloEvaluator]:
    return {"before": PointEstimate(rules.slo), "after": SloEvaluator(rules.slo)}


def default_rules() -> RulesFile:
    return load_rules(None)


def severity_of(rules: RulesFile) -> dict[str, str]:
    out: dict[str, str] = {r.alert: r.severity for r in rules.slo.rules if r.alert}
    out |= {b.alert: b.severity for b in rules.slo.availability.burn_alerts}
    return out
