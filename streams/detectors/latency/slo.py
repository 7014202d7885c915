"""SLO rules (from the YAML rules file) and their evaluation over closed samples.

Pure: samples in, sample verdicts and alert transitions out; state is plain data that
the latency detector checkpoints with its windows, so a restarted worker continues a
streak exactly where it stood.

* Each rule compares one SLI of a sample (p95_ms, error_rate, ...) with a threshold and
  decides on evidence (:mod:`streams.stats`): ``fail`` only when the sample shows the
  breach at the rule's confidence with at least ``min_bad_events`` bad events (5xx, 4xx,
  or events slower than a latency threshold); ``pass`` when the observed value is within
  the threshold; ``insufficient`` when it is not but the sample is too small to tell that
  from chance, or has fewer than ``min_events`` events (or fewer than a quantile needs);
  ``no_data`` when the key saw no events. ``insufficient`` and ``no_data`` leave streaks
  unchanged.
* A rule with an alert fires after ``for`` failing samples in a row (a passing sample
  resets the streak) and resolves after ``resolve_after`` passing samples in a row.
* Availability: per tenant, error ratio (5xx / requests) against the objective, with
  multi-window burn-rate alerts (both windows must be shown to burn faster than the
  factor).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from itertools import accumulate
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.alerts import Severity
from streams.catalogue import register_rule_alert
from streams.detectors.analytics.health import AnalyticsConfig
from streams.detectors.canary.rules import CanaryRules
from streams.detectors.funnel.rules import FunnelConfig
from streams.detectors.latency.sketch import Sketch, bucket_value
from streams.detectors.latency.windows import WindowSpec, parse_seconds
from streams.detectors.pii.config import PiiConfig
from streams.detectors.security.rules import SecurityConfig
from streams.errors import ConfigError
from streams.stats import DEFAULT_CONFIDENCE, DEFAULT_MIN_BAD, Evidence, quantile_min_count

SLI = Literal[
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "error_rate",
    "client_error_rate",
    "throughput_rps",
    "burn_rate",
]
#: (tenant, service, route, cohort); the tenant as a whole is (tenant, "*", "*", ""). The
#: cohort (``baseline``, ``canary``, ...) is "" for events that carry none, so keys of
#: traffic without release labels are the ones they always were.
Key = tuple[str, str, str, str]
ALL = "*"
Status = Literal["pass", "fail", "insufficient", "no_data"]
#: percentile SLIs and their quantile
QUANTILE_OF: dict[str, float] = {"p50_ms": 0.5, "p90_ms": 0.9, "p95_ms": 0.95, "p99_ms": 0.99}
#: rate SLIs: the share of events of one status class
RATES = frozenset({"error_rate", "client_error_rate"})
Confidence = Annotated[float, Field(ge=0.5, lt=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WindowsConfig(_Strict):
    pane_seconds: Annotated[int, Field(gt=0)] = 10
    sample_seconds: Annotated[int, Field(gt=0)] = 30
    rollup_seconds: tuple[int, ...] = (60, 300)
    grace_seconds: Annotated[int, Field(ge=0)] = 10
    idle_timeout_seconds: Annotated[int, Field(gt=0)] = 30

    def spec(self) -> WindowSpec:
        return WindowSpec(
            pane_ms=self.pane_seconds * 1000,
            sample_ms=self.sample_seconds * 1000,
            rollups_ms=tuple(s * 1000 for s in self.rollup_seconds),
            grace_ms=self.grace_seconds * 1000,
            idle_timeout_ms=self.idle_timeout_seconds * 1000,
        )


class Rule(_Strict):
    id: str
    sli: SLI
    op: Literal[">", "<"]
    threshold: float
    for_: Annotated[int | str, Field(alias="for")] = 1
    alert: str | None = None
    severity: Severity = "high"
    auto_rollback: bool = False
    only_declared: bool = False  # evaluated only for keys with a declared minimum
    confidence: Confidence | None = None  # default: slo.confidence
    min_bad_events: Annotated[int, Field(ge=1)] | None = None  # default: slo.min_bad_events
    #: a tenant-level rule: judged per tenant on the trailing window of this length (the
    #: tenant's samples in it, summed) at every sample's end, not per (service, route)
    over: str | None = None

    @field_validator("over")
    @classmethod
    def _over(cls, v: str | None) -> str | None:
        if v is not None and parse_seconds(v) <= 0:
            raise ValueError("over must be a positive duration such as 5m")
        return v

    @model_validator(mode="after")
    def _over_needs_a_rate(self) -> Rule:
        if self.over is not None and self.sli != "error_rate":
            raise ValueError(
                f"rule {self.id}: 'over' (a tenant-level window) is supported for sli "
                f"error_rate only, not {self.sli}"
            )
        return self

    @property
    def over_s(self) -> int:
        return int(parse_seconds(self.over)) if self.over is not None else 0

    def breached(self, value: float, threshold: float) -> bool:
        return value > threshold if self.op == ">" else value < threshold

    def samples_needed(self, sample_s: int) -> int:
        if isinstance(self.for_, int):
            return max(1, self.for_)
        if self.for_.isdigit():
            return max(1, int(self.for_))
        return max(1, math.ceil(parse_seconds(self.for_) / sample_s))


class Match(_Strict):
    tenant: str | None = None
    service: str | None = None
    route: str | None = None
    cohort: str | None = None

    def matches(self, key: Key) -> bool:
        tenant, service, route, cohort = key
        return (
            (self.tenant is None or self.tenant == tenant)
            and (self.service is None or self.service == service)
            and (self.route is None or self.route == route)
            and (self.cohort is None or self.cohort == cohort)
        )


class Override(_Strict):
    match: Match = Match()
    thresholds: dict[str, float] = {}
    min_throughput_rps: float | None = None
    disable: tuple[str, ...] = ()
    confidence: dict[str, Confidence] = {}  # per rule id
    min_bad_events: dict[str, Annotated[int, Field(ge=1)]] = {}  # per rule id


class BurnAlert(_Strict):
    alert: str
    severity: Severity
    long: str | float
    short: str | float
    factor: Annotated[float, Field(gt=0)]
    confidence: Confidence | None = None
    min_bad_events: Annotated[int, Field(ge=1)] | None = None

    @field_validator("long", "short")
    @classmethod
    def _duration(cls, v: str | float) -> str | float:
        parse_seconds(v)
        return v

    @property
    def long_s(self) -> int:
        return int(parse_seconds(self.long))

    @property
    def short_s(self) -> int:
        return int(parse_seconds(self.short))

    @cached_property
    def rule(self) -> Rule:
        """The alert as a rule, for the streak logic every rule shares."""
        return Rule(
            id=self.alert,
            sli="burn_rate",
            op=">",
            threshold=self.factor,
            alert=self.alert,
            severity=self.severity,
            confidence=self.confidence,
            min_bad_events=self.min_bad_events,
        )


class Availability(_Strict):
    objective: Annotated[float, Field(gt=0, lt=1)] = 0.999
    period_days: Annotated[float, Field(gt=0)] = 30
    burn_alerts: tuple[BurnAlert, ...] = ()

    @property
    def budget_minutes(self) -> float:
        return (1 - self.objective) * self.period_days * 24 * 60


class SloConfig(_Strict):
    windows: WindowsConfig = WindowsConfig()
    min_events: Annotated[int, Field(ge=1)] = 20
    resolve_after: Annotated[int, Field(ge=1)] = 3
    confidence: Confidence = DEFAULT_CONFIDENCE
    min_bad_events: Annotated[int, Field(ge=1)] = DEFAULT_MIN_BAD
    quantile_min_tail: Annotated[float, Field(gt=0)] = 1.0
    rules: tuple[Rule, ...] = ()
    overrides: tuple[Override, ...] = ()
    availability: Availability = Availability()

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        ids = [r.id for r in rules]
        if len(set(ids)) != len(ids):
            raise ValueError(f"rule ids must be unique: {ids}")
        return rules

    def evidence(self, rule: Rule) -> Evidence:
        return Evidence(
            rule.confidence if rule.confidence is not None else self.confidence,
            rule.min_bad_events if rule.min_bad_events is not None else self.min_bad_events,
        )

    @property
    def tenant_windows_s(self) -> tuple[int, ...]:
        """The trailing windows of the tenant-level rules (``over``)."""
        return tuple(sorted({r.over_s for r in self.rules if r.over is not None}))

    def min_count(self, sli: str) -> int:
        """Events a sample needs before a verdict on ``sli``."""
        q = QUANTILE_OF.get(sli)
        if q is None:
            return self.min_events
        return max(self.min_events, quantile_min_count(q, self.quantile_min_tail))


class RulesFile(_Strict):
    slo: SloConfig = SloConfig()
    pii: PiiConfig = PiiConfig()
    security: SecurityConfig = SecurityConfig()
    funnels: FunnelConfig = FunnelConfig()
    analytics: AnalyticsConfig = AnalyticsConfig()
    canary: CanaryRules = CanaryRules()


def load_rules(path: Path | None) -> RulesFile:
    """The rules file at ``path``, or the packaged default; ConfigError names the problem."""
    if path is None:
        text = resources.files("streams").joinpath("rules.default.yaml").read_text("utf-8")
        where = "the default rules"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"VIGIL_RULES_FILE: cannot read {path}: {exc}") from None
        where = str(path)
    try:
        data = yaml.safe_load(text) or {}
        if isinstance(data, dict) and data.get("extends") is not None:
            data = _extend(data, where)
        rules = RulesFile.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None
    for rule in rules.slo.rules:  # a rules file's own alert names join the catalogue
        if rule.alert is not None:
            labels = ("tenant_id",) if rule.over else ("tenant_id", "service", "route")
            register_rule_alert(rule.alert, rule.severity, labels)
    for burn in rules.slo.availability.burn_alerts:
        register_rule_alert(burn.alert, burn.severity, ("tenant_id",))
    return rules


def _extend(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``extends: default``: the packaged default rules, with this file's top-level
    sections replacing theirs (a demo or a deployment states only what differs)."""
    if data["extends"] != "default":
        raise ConfigError(f"{where}: extends: only `default` (the packaged rules) is known")
    text = resources.files("streams").joinpath("rules.default.yaml").read_text("utf-8")
    base = yaml.safe_load(text) or {}
    return {**base, **{k: v for k, v in data.items() if k != "extends"}}


# --- evaluation ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One closed sample of one key: what the rules look at."""

    key: Key
    start_ms: int
    end_ms: int
    count: int
    values: dict[str, float]  # SLI name -> value
    bad: dict[str, int] = field(default_factory=dict)  # rate SLI -> events of its class
    sketch: Sketch | None = None  # latency buckets, for percentile evidence
    gamma: float = 0.0
    _cache: list[tuple[list[float], list[int]]] = field(
        default_factory=list, compare=False, repr=False
    )

    def _cumulative(self) -> tuple[list[float], list[int]]:
        """Bucket representatives ascending, and ``at_or_below[i]`` = events in the
        first ``i`` buckets; computed once per sample, for every percentile rule."""
        if not self._cache:
            assert self.sketch is not None
            bins = self.sketch.bins
            keys = sorted(bins)
            reps = [bucket_value(k, self.gamma) for k in keys]
            at_or_below = [0, *accumulate(bins[k] for k in keys)]
            self._cache.append((reps, at_or_below))
        return self._cache[0]

    def hits(self, sli: str, op: str, threshold: float) -> int | None:
        """Events on the breaching side of ``threshold`` for ``sli`` (5xx for
        error_rate, events slower than a p95 threshold, ...); None for SLIs measured
        exactly (throughput, max)."""
        if sli in RATES:
            bad = self.bad.get(sli)
            if bad is None:
                return None
            return bad if op == ">" else self.count - bad
        if sli in QUANTILE_OF and self.sketch is not None:
            reps, at_or_below = self._cumulative()
            if op == ">":  # events whose bucket is represented above the threshold
                return self.count - at_or_below[bisect_right(reps, threshold)]
            return at_or_below[bisect_left(reps, threshold)]
        return None

    def limit(self, sli: str, op: str, threshold: float) -> float:
        """The share of hits that breaches: the threshold of a rate, the tail of a
        quantile (``p95 > T`` means more than 5 % of the events above ``T``)."""
        q = QUANTILE_OF.get(sli)
        if q is None:
            return threshold if op == ">" else 1.0 - threshold
        return 1.0 - q if op == ">" else q


@dataclass(frozen=True, slots=True)
class Verdict:
    """One row of ``slo_samples``."""

    key: Key
    start_ms: int
    end_ms: int
    rule: str
    sli: str
    op: str
    value: float
    threshold: float
    status: Status
    count: int
    hits: int = 0  # events on the breaching side (5xx, events above a latency threshold)
    lower_bound: float = math.nan  # of hits / count at the rule's confidence, when above


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert to fire or resolve, with the evidence of the samples that decided it."""

    action: Literal["fire", "resolve"]
    alertname: str
    severity: Severity
    key: Key
    at_ms: int
    starts_at_ms: int
    value: float
    threshold: float
    auto_rollback: bool
    description: str
    evidence: list[dict[str, Any]]


@dataclass(slots=True)
class Streak:
    """Where one (key, rule) alert stands; the default is not checkpointed."""

    breaches: int = 0
    goods: int = 0
    firing: bool = False
    starts_at_ms: int = 0
    #: (start, end, value, count, hits, lower bound) of the failing samples
    evidence: list[tuple[int, int, float, int, int, float]] = field(default_factory=list)

    def is_default(self) -> bool:
        return not (self.breaches or self.goods or self.firing)

    def dump(self) -> list[Any]:
        return [self.breaches, self.goods, self.firing, self.starts_at_ms, self.evidence]

    @classmethod
    def load(cls, data: list[Any]) -> Streak:
        evidence = [
            (int(x[0]), int(x[1]), float(x[2]), *_extra(x))  # checkpoints before 0.2: 3-tuples
            for x in data[4]
        ]
        return cls(int(data[0]), int(data[1]), bool(data[2]), int(data[3]), evidence)


def _extra(item: list[Any]) -> tuple[int, int, float]:
    if len(item) >= 6:
        return int(item[3]), int(item[4]), float(item[5])
    return 0, 0, math.nan


def replace_knobs(rule: Rule, confidence: dict[str, float], min_bad: dict[str, int]) -> Rule:
    """``rule`` with the confidence and minimum of bad events an override gives it."""
    update: dict[str, Any] = {}
    if rule.id in confidence:
        update["confidence"] = confidence[rule.id]
    if rule.id in min_bad:
        update["min_bad_events"] = min_bad[rule.id]
    return rule.model_copy(update=update) if update else rule


def key_text(key: Key) -> str:
    """A key as checkpoint text; without a cohort it is the three-part text of before."""
    return "\x1f".join(key if key[3] else key[:3])


def tenant_key(tenant: str) -> Key:
    """The key of a tenant as a whole."""
    return (tenant, ALL, ALL, "")


def text_key(text: str) -> Key:
    parts = text.split("\x1f")
    return (parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else "")


class SloEvaluator:
    """Rules applied to one partition's samples, in window order."""

    def __init__(self, config: SloConfig) -> None:
        self.config = config
        self.sample_s = config.windows.sample_seconds
        self._effective: dict[Key, tuple[tuple[Rule, float], ...]] = {}
        self.streaks: dict[tuple[Key, str], Streak] = {}

    def rules_for(self, key: Key) -> tuple[tuple[Rule, float], ...]:
        """(rule, threshold) pairs that apply to ``key``, overrides applied (cached)."""
        cached = self._effective.get(key)
        if cached is not None:
            return cached
        thresholds = {r.id: r.threshold for r in self.config.rules}
        disabled: set[str] = set()
        confidence: dict[str, float] = {}
        min_bad: dict[str, int] = {}
        declared = False
        for override in self.config.overrides:
            if not override.match.matches(key):
                continue
            thresholds.update(override.thresholds)
            disabled.update(override.disable)
            confidence.update(override.confidence)
            min_bad.update(override.min_bad_events)
            if override.min_throughput_rps is not None:
                declared = True
                for r in self.config.rules:
                    if r.sli == "throughput_rps":
                        thresholds[r.id] = override.min_throughput_rps
        effective = tuple(
            (replace_knobs(r, confidence, min_bad), thresholds[r.id])
            for r in self.config.rules
            if r.id not in disabled and (declared or not r.only_declared)
        )
        self._effective[key] = effective
        return effective

    def declares_minimum(self, key: Key) -> bool:
        return any(r.only_declared for r, _ in self.rules_for(key))

    def evaluate(self, sample: Sample) -> tuple[list[Verdict], list[Transition]]:
        verdicts: list[Verdict] = []
        transitions: list[Transition] = []
        for rule, threshold in self.rules_for(sample.key):
            if rule.over is not None:
                continue  # tenant-level: evaluate_tenant
            verdict = self.judge(rule, threshold, sample)
            verdicts.append(verdict)
            if rule.alert is not None and verdict.status in ("pass", "fail"):
                t = self._step(rule, threshold, sample, verdict)
                if t is not None:
                    transitions.append(t)
        return verdicts, transitions

    def judge(self, rule: Rule, threshold: float, sample: Sample) -> Verdict:
        """One rule's verdict on one sample (see the module docstring)."""
        value = sample.values.get(rule.sli, math.nan)
        counted = sample.hits(rule.sli, rule.op, threshold) if sample.count else None
        hits = counted or 0
        low = math.nan
        status: Status
        if rule.sli == "throughput_rps":  # exact: a count, not an estimate
            status = "fail" if rule.breached(value, threshold) else "pass"
        elif sample.count == 0 or math.isnan(value):
            status = "no_data"
        elif sample.count < self.config.min_count(rule.sli):
            status = "insufficient"
        elif not rule.breached(value, threshold):
            status = "pass"
        elif counted is None:  # max_ms: the slowest event is the breach itself
            status = "fail"
        else:
            limit = sample.limit(rule.sli, rule.op, threshold)
            decision, low = self.config.evidence(rule).share_above(hits, sample.count, limit)
            status = "fail" if decision == "fail" else "insufficient"
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
            hits,
            low,
        )

    def _step(
        self, rule: Rule, threshold: float, sample: Sample, verdict: Verdict
    ) -> Transition | None:
        assert rule.alert is not None
        slot = (sample.key, rule.id)
        streak = self.streaks.get(slot) or Streak()
        needed = rule.samples_needed(self.sample_s)
        value = verdict.value
        result: Transition | None = None
        if verdict.status == "fail":
            streak.breaches += 1
            streak.goods = 0
            seen = (
                sample.start_ms,
                sample.end_ms,
                value,
                verdict.count,
                verdict.hits,
                verdict.lower_bound,
            )
            streak.evidence = [*streak.evidence, seen][-needed:]
            if not streak.firing and streak.breaches >= needed:
                streak.firing = True
                streak.starts_at_ms = streak.evidence[0][0]
                result = self._transition("fire", rule, threshold, sample, value, streak, needed)
        else:
            streak.breaches = 0
            streak.evidence = []
            if streak.firing:
                streak.goods += 1
                if streak.goods >= self.config.resolve_after:
                    result = self._transition(
                        "resolve", rule, threshold, sample, value, streak, needed
                    )
                    streak.firing = False
                    streak.goods = 0
        if streak.is_default():
            self.streaks.pop(slot, None)
        else:
            self.streaks[slot] = streak
        return result

    def _transition(
        self,
        action: Literal["fire", "resolve"],
        rule: Rule,
        threshold: float,
        sample: Sample,
        value: float,
        streak: Streak,
        needed: int,
    ) -> Transition:
        assert rule.alert is not None
        tenant, service, route, cohort = sample.key
        where = tenant if service == ALL else f"{tenant} {service} {route}"
        if cohort:
            where += f" (cohort {cohort})"
        if action == "fire":
            text = (
                f"{rule.sli} {rule.op} {threshold:g} for {needed} consecutive "
                f"{self.sample_s} s samples on {where} (last {value:.4g}"
                f"{self._shown(rule, threshold, streak)})"
            )
        else:
            text = (
                f"{rule.sli} back within {threshold:g} for {self.config.resolve_after} "
                f"samples on {where}"
            )
        evidence = [
            {
                "window_start_ms": s,
                "window_end_ms": e,
                "value": v,
                "count": n,
                "hits": h,
                "lower_bound": None if math.isnan(low) else low,
            }
            for s, e, v, n, h, low in streak.evidence
        ]
        return Transition(
            action,
            rule.alert,
            rule.severity,
            sample.key,
            sample.end_ms,
            streak.starts_at_ms,
            value,
            threshold,
            rule.auto_rollback,
            text,
            evidence,
        )

    def _shown(self, rule: Rule, threshold: float, streak: Streak) -> str:
        """What the last failing sample showed, in words: '; 5 of 75 events 5xx, the
        share at least 2.66 % at 95 % confidence'."""
        if not streak.evidence:
            return ""
        _, _, _, count, hits, low = streak.evidence[-1]
        if math.isnan(low) or not count:
            return ""
        side = {
            "error_rate": "5xx",
            "client_error_rate": "4xx",
        }.get(rule.sli, f"{'above' if rule.op == '>' else 'below'} {threshold:g} ms")
        confidence = self.config.evidence(rule).confidence
        return (
            f"; {hits} of {count} events {side}, the share at least {low:.3%} at "
            f"{confidence:.0%} confidence"
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
        """Tenant ``tenant`` as a whole at the end of one sample: its burn-rate alerts
        and its tenant-level rules (``over``: the 5xx share of the trailing window)."""
        rates = budget.add(tenant, end_ms, count, errors)
        verdicts, transitions = self._burn(tenant, start_ms, end_ms, count, budget, rates)
        key = tenant_key(tenant)
        for rule, threshold in self.rules_for(key):
            if rule.over is None:
                continue
            verdict = self._judge_window(rule, threshold, key, start_ms, end_ms, rates, budget)
            verdicts.append(verdict)
            if rule.alert is None or verdict.status not in ("pass", "fail"):
                continue
            sample = Sample(key, start_ms, end_ms, verdict.count, {rule.sli: verdict.value})
            t = self._step(rule, threshold, sample, verdict)
            if t is not None:
                window = rule.over
                text = (
                    f"5xx share of {tenant} over the last {window}: {verdict.value:.2%} "
                    f"({verdict.hits} of {verdict.count} requests; above {threshold:.2%} "
                    f"with at least {verdict.lower_bound:.2%} at "
                    f"{self.config.evidence(rule).confidence:.0%} confidence)"
                    if t.action == "fire"
                    else f"5xx share of {tenant} over the last {window} back within "
                    f"{threshold:.2%} ({verdict.value:.2%})"
                )
                transitions.append(replace(t, description=text))
        return verdicts, transitions

    def _judge_window(
        self,
        rule: Rule,
        threshold: float,
        key: Key,
        start_ms: int,
        end_ms: int,
        rates: BurnRates,
        budget: BudgetTracker,
    ) -> Verdict:
        """A tenant-level rule on its trailing window: the window must be covered by
        samples and hold ``min_events`` requests; it fails when the 5xx share is shown
        above the threshold at the rule's confidence."""
        window_s = rule.over_s
        requests = rates.requests[window_s]
        errors = rates.errors[window_s]
        value = errors / requests if requests else math.nan
        low = math.nan
        status: Status
        if not requests:
            status = "no_data"
        elif (
            rates.samples[window_s] * budget.sample_s < window_s
            or requests < self.config.min_events
        ):
            status = "insufficient"
        elif value <= threshold:
            status = "pass"
        else:
            decision, low = self.config.evidence(rule).share_above(errors, requests, threshold)
            status = "fail" if decision == "fail" else "insufficient"
        return Verdict(
            key, start_ms, end_ms, rule.id, rule.sli, rule.op, value, threshold, status,
            requests, errors, low,
        )  # fmt: skip

    def _burn(
        self,
        tenant: str,
        start_ms: int,
        end_ms: int,
        count: int,
        budget: BudgetTracker,
        rates: BurnRates,
    ) -> tuple[list[Verdict], list[Transition]]:
        """The burn-rate alerts. A window burns when its error share is shown (at the
        alert's confidence) to be above ``factor * (1 - objective)``; the alert needs
        both windows burning."""
        key = tenant_key(tenant)
        verdicts: list[Verdict] = []
        transitions: list[Transition] = []
        allowed = 1 - budget.availability.objective
        for alert in budget.availability.burn_alerts:
            rule = alert.rule
            value = rates.rates[alert.long_s]
            evidence = self.config.evidence(rule)
            limit = alert.factor * allowed
            low = math.nan
            status: Status
            if not rates.requests[alert.long_s]:
                status = "no_data"
            elif not budget.has_data(alert, rates, self.config.min_events):
                status = "insufficient"
            elif not budget.burning(alert, rates):
                status = "pass"
            else:
                decisions = []
                for window_s in (alert.long_s, alert.short_s):
                    decision, bound = evidence.share_above(
                        rates.errors[window_s], rates.requests[window_s], limit
                    )
                    decisions.append(decision)
                    if window_s == alert.long_s:
                        low = bound / allowed  # as a burn rate, like the value
                status = "fail" if decisions == ["fail", "fail"] else "insufficient"
            verdict = Verdict(
                key,
                start_ms,
                end_ms,
                rule.id,
                "burn_rate",
                ">",
                value,
                alert.factor,
                status,
                count,
                rates.errors[alert.long_s],
                low,
            )
            verdicts.append(verdict)
            if status not in ("pass", "fail"):
                continue
            sample = Sample(key, start_ms, end_ms, count, {"burn_rate": value})
            t = self._step(rule, alert.factor, sample, verdict)
            if t is not None:
                text = (
                    f"error budget of {tenant} burning {value:.1f}x over {alert.long} and "
                    f"{rates.rates[alert.short_s]:.1f}x over {alert.short} (alert above "
                    f"{alert.factor:g}x; {budget.availability.objective:.3%} objective; "
                    f"{rates.errors[alert.long_s]} of {rates.requests[alert.long_s]} "
                    f"requests failed over {alert.long}, at least {low:.1f}x at "
                    f"{evidence.confidence:.0%} confidence)"
                    if t.action == "fire"
                    else f"error budget of {tenant} no longer burning above {alert.factor:g}x"
                )
                transitions.append(replace(t, description=text))
        return verdicts, transitions

    def dump(self) -> dict[str, dict[str, list[Any]]]:
        out: dict[str, dict[str, list[Any]]] = {}
        for (key, rule_id), streak in self.streaks.items():
            out.setdefault(key_text(key), {})[rule_id] = streak.dump()
        return out

    def load(self, data: dict[str, dict[str, list[Any]]]) -> None:
        self.streaks = {
            (text_key(k), rule_id): Streak.load(s)
            for k, rules in data.items()
            for rule_id, s in rules.items()
        }


# --- availability and error budget ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class BurnRates:
    """Per window length (seconds) at one sample's end: the burn rate, the requests in
    the window and how many samples of history it spans."""

    at_ms: int
    rates: dict[int, float]
    requests: dict[int, int]
    samples: dict[int, int]
    errors: dict[int, int]


class BudgetTracker:
    """Per-tenant error ratio history (one entry per sample) and burn rates over it."""

    def __init__(
        self, availability: Availability, sample_s: int, windows_s: tuple[int, ...] = ()
    ) -> None:
        """``windows_s``: further trailing windows (the tenant-level rules')."""
        self.availability = availability
        self.sample_s = sample_s
        self.windows_s = sorted(
            {w for b in availability.burn_alerts for w in (b.long_s, b.short_s)} | set(windows_s)
        )
        self.horizon_samples = max([*self.windows_s, sample_s]) // sample_s
        self.history: dict[str, deque[tuple[int, int, int]]] = {}

    def add(self, tenant: str, end_ms: int, count: int, errors: int) -> BurnRates:
        h = self.history.setdefault(tenant, deque(maxlen=self.horizon_samples))
        h.append((end_ms, count, errors))
        allowed = 1 - self.availability.objective
        rates: dict[int, float] = {}
        requests: dict[int, int] = {}
        samples: dict[int, int] = {}
        failed: dict[int, int] = {}
        for window_s in self.windows_s:
            since = end_ms - window_s * 1000
            total = errs = spanned = 0
            for e, c, x in reversed(h):
                if e <= since:
                    break
                total += c
                errs += x
                spanned += 1
            rates[window_s] = (errs / total) / allowed if total else 0.0
            requests[window_s] = total
            samples[window_s] = spanned
            failed[window_s] = errs
        return BurnRates(end_ms, rates, requests, samples, failed)

    def has_data(self, alert: BurnAlert, rates: BurnRates, min_events: int) -> bool:
        """Enough history to judge: the short window is fully covered by samples and
        holds ``min_events`` requests (a partial first sample with one 5xx in 30
        requests would otherwise "burn" 33x)."""
        covered = rates.samples[alert.short_s] * self.sample_s >= alert.short_s
        return covered and rates.requests[alert.short_s] >= min_events

    def burning(self, alert: BurnAlert, rates: BurnRates) -> bool:
        return (
            rates.rates[alert.long_s] > alert.factor and rates.rates[alert.short_s] > alert.factor
        )
