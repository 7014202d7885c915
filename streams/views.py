"""What operators look at: the overview, a tenant's health and the security picture, as
plain dicts built from ClickHouse aggregates (the console, ``vigil status`` and the JSON
API render the same documents).

The views are anchored at the newest closed latency window rather than the wall clock,
so a replay or the time-compressed demo shows its own last hour. Each document is built
by a handful of aggregate queries (``run``: SQL + parameters -> rows), never from raw
events except the security page's (its chart and IP prefixes); :class:`ViewCache` keeps each built
document for ``refresh_s``, so pages and boards cost at most one build per interval
whatever the number of viewers.

Tenant health score (0-100), documented in the README ("Views"):

    100 x (0.4 SLO + 0.3 budget + 0.2 security + 0.1 funnel)

* SLO -- passing / deciding SLO samples of the tenant's keys over the last 24 h (1 when
  none decided);
* budget -- the error budget left over the rolling period (30 days): 1 - (5xx share /
  (1 - objective)), clamped to 0..1;
* security -- 1 / (1 + security detections naming the tenant in the last 24 h);
* funnel -- each stage's conversion as its alert judges it (:func:`in_time`: of the
  journeys that reached the previous step in the judged period, those that converted
  within the stage's X) against the stage's alert threshold, the worst
  min(1, conversion / threshold), counted once 30 journeys are judged (1 without funnels).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sinks.sqltext import as_utc, iso_z
from streams.detectors.funnel.engine import judged_period
from streams.detectors.funnel.rules import Funnel, FunnelConfig, stage_conditions
from streams.incidents import of_tenant

#: run(sql, parameters) -> rows
Run = Callable[[str, dict[str, Any]], Awaitable[Sequence[Sequence[Any]]]]

HEALTH_WEIGHTS = {"slo": 0.4, "budget": 0.3, "security": 0.2, "funnel": 0.1}
SERIES_MINUTES = 60
#: SLO samples examined for the trailing run of failures (30-s samples: 10 minutes)
STREAK_SAMPLES = 20
#: judged journeys a stage needs before its conversion counts in the health score
MIN_JUDGED = 30


@dataclass(frozen=True, slots=True)
class ViewConfig:
    """What the views need from the rules: thresholds to draw, names to show."""

    database: str
    #: SLO rule id -> (sli, op, threshold)
    slo_rules: Mapping[str, tuple[str, str, float]] = field(default_factory=dict)
    objective: float = 0.999
    period_days: float = 30.0
    #: the rules file's funnels: steps, thresholds and overrides, X, period and marks, as
    #: the funnel detector applies them
    funnels: FunnelConfig = field(default_factory=FunnelConfig)


def _iso(value: Any) -> str:
    return iso_z(value) if isinstance(value, datetime) else str(value)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) or math.isinf(f) else f


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    return datetime.fromtimestamp(float(value), tz=UTC)


async def anchor(run: Run, db: str) -> datetime:
    """The end of the newest closed one-minute window (the wall clock without data)."""
    rows = await run(
        f"SELECT max(window_end) FROM {db}.latency_windows WHERE resolution_s = 60", {}
    )
    value = rows[0][0] if rows else None
    if value is None or _utc(value).year < 2000:
        return datetime.now(UTC).replace(microsecond=0)
    return _utc(value)


async def series(run: Run, db: str, at: datetime, tenant: str | None) -> list[dict[str, Any]]:
    """Per minute over the last hour: requests, 5xx share, p50/p95/p99 (sketches merged)."""
    since = at - timedelta(minutes=SERIES_MINUTES)
    rows = await run(
        "SELECT toUnixTimestamp(window_start) AS t, sum(count), sum(c5xx), "
        "vigilQuantile(0.5, sumMap(bucket_keys, bucket_counts), any(gamma)), "
        "vigilQuantile(0.95, sumMap(bucket_keys, bucket_counts), any(gamma)), "
        "vigilQuantile(0.99, sumMap(bucket_keys, bucket_counts), any(gamma)) "
        f"FROM {db}.latency_windows FINAL WHERE resolution_s = 60 AND service = '*' "
        "AND late = 0 AND ({t:String} = '' OR tenant_id = {t:String}) "
        "AND window_start >= {since:DateTime64(3)} AND window_start < {at:DateTime64(3)} "
        "GROUP BY t ORDER BY t",
        {"t": tenant or "", "since": since, "at": at},
    )
    out = []
    for t, n, c5, p50, p95, p99 in rows:
        n = int(n)
        out.append(
            {
                "t": int(t),
                "requests": n,
                "error_rate": int(c5) / n if n else 0.0,
                "p50_ms": _num(p50),
                "p95_ms": _num(p95),
                "p99_ms": _num(p99),
            }
        )
    return out


async def slo(run: Run, cfg: ViewConfig, at: datetime, tenant: str | None) -> list[dict[str, Any]]:
    """Per SLO rule: compliance over 24 h, keys failing now, the longest trailing run of
    failing samples of any key, and the rule's threshold."""
    db = cfg.database
    params = {"t": tenant or "", "since": at - timedelta(hours=24), "at": at}
    where = (
        "({t:String} = '' OR tenant_id = {t:String}) AND window_start >= {since:DateTime64(3)} "
        "AND window_end <= {at:DateTime64(3)}"
    )
    totals = await run(
        f"SELECT rule, countIf(status = 'pass'), countIf(status = 'fail') "
        f"FROM {db}.slo_samples FINAL WHERE {where} GROUP BY rule",
        params,
    )
    recent = await run(
        "SELECT rule, tenant_id, service, route, cohort, "
        "arraySlice(arrayReverseSort(x -> x.1, groupArray((window_start, status))), 1, "
        f"{STREAK_SAMPLES}) FROM {db}.slo_samples FINAL WHERE {where} "
        "AND window_start >= {recent:DateTime64(3)} "
        "GROUP BY rule, tenant_id, service, route, cohort",
        {**params, "recent": at - timedelta(minutes=15)},
    )
    streak: dict[str, int] = {}
    failing: dict[str, int] = {}
    for rule, *_key, samples in recent:
        run_length = 0
        for _, status in samples:
            if status == "fail":
                run_length += 1
            elif status == "pass":
                break
        streak[rule] = max(streak.get(rule, 0), run_length)
        failing[rule] = failing.get(rule, 0) + (run_length > 0)
    out = []
    decided = {str(r): (int(p), int(f)) for r, p, f in totals}
    for rule in sorted(set(decided) | set(cfg.slo_rules)):
        passes, fails = decided.get(rule, (0, 0))
        sli, op, threshold = cfg.slo_rules.get(rule, ("", "", math.nan))
        out.append(
            {
                "rule": rule,
                "sli": sli,
                "op": op,
                "threshold": _num(threshold),
                "compliance": passes / (passes + fails) if passes + fails else None,
                "pass": passes,
                "fail": fails,
                "keys_failing": failing.get(rule, 0),
                "consecutive_breaches": streak.get(rule, 0),
            }
        )
    return out


async def alerts(run: Run, db: str, tenant: str | None, limit: int = 20) -> list[dict[str, Any]]:
    rows = await run(
        "SELECT ts, status, severity, alertname, tenant_id, summary, fingerprint "
        f"FROM {db}.alerts WHERE ({{t:String}} = '' OR tenant_id = {{t:String}}) "
        f"ORDER BY ts DESC LIMIT {int(limit)}",
        {"t": tenant or ""},
    )
    return [
        {"time": _iso(ts), "status": st, "severity": sev, "alertname": name, "tenant_id": t,
         "summary": summary, "fingerprint": fp}
        for ts, st, sev, name, t, summary, fp in rows
    ]  # fmt: skip


async def firing(run: Run, db: str, tenant: str | None) -> dict[str, int]:
    """alertname -> alerts firing now (the newest transition of each fingerprint)."""
    rows = await run(
        "SELECT alertname, countIf(st = 'firing') FROM (SELECT fingerprint, alertname, "
        f"argMax(status, ts) AS st FROM {db}.alerts "
        "WHERE ({t:String} = '' OR tenant_id = {t:String}) GROUP BY fingerprint, alertname) "
        "GROUP BY alertname HAVING countIf(st = 'firing') > 0 ORDER BY alertname",
        {"t": tenant or ""},
    )
    return {str(name): int(n) for name, n in rows}


async def incidents(run: Run, db: str, tenant: str | None) -> list[dict[str, Any]]:
    rows = await run(
        "SELECT incident_id, tenant_id, tenants, category, severity, status, alertnames, "
        f"detected_at, acknowledged_by FROM {db}.incidents FINAL WHERE status != 'resolved' "
        "AND ({t:String} = '' OR " + of_tenant("{t:String}") + ") "
        "ORDER BY detected_at DESC LIMIT 20",
        {"t": tenant or ""},
    )
    return [
        {"incident_id": i, "tenant_id": t, "tenants": list(ts), "category": c,
         "severity": sev, "status": st, "alertnames": list(names), "detected_at": _iso(at),
         "acknowledged_by": by}
        for i, t, ts, c, sev, st, names, at, by in rows
    ]  # fmt: skip


async def canary(run: Run, db: str, tenant: str | None) -> list[dict[str, Any]]:
    rows = await run(
        "SELECT service, release, argMax(verdict, interval_start), "
        "argMax(score, interval_start), argMax(failing_run, interval_start), "
        f"max(interval_end) AS last FROM {db}.canary_verdicts FINAL "
        "WHERE tenant_id = {t:String} GROUP BY service, release ORDER BY last DESC LIMIT 10",
        {"t": tenant or ""},
    )
    return [
        {"service": s, "release": r, "verdict": v, "score": round(float(sc), 1),
         "failing_intervals": int(run_), "interval_end": _iso(last)}
        for s, r, v, sc, run_, last in rows
    ]  # fmt: skip


async def pii(run: Run, db: str, at: datetime, tenant: str | None) -> dict[str, int]:
    """PII findings per entity over 24 h: values found (and redacted) where none belong."""
    rows = await run(
        f"SELECT entity, count() FROM {db}.pii_findings WHERE ts >= {{since:DateTime64(3)}} "
        "AND ({t:String} = '' OR tenant_id = {t:String}) GROUP BY entity ORDER BY entity",
        {"since": at - timedelta(hours=24), "t": tenant or ""},
    )
    return {str(e): int(n) for e, n in rows}


async def funnels(
    run: Run, cfg: ViewConfig, at: datetime, tenant: str | None, judged: InTime | None = None
) -> list[dict[str, Any]]:
    """Each funnel's newest daily cohorts (today and yesterday by entry): per step the
    journeys that reached it, are pending at it, and the stage's decided conversion."""
    rows = await run(
        "SELECT funnel, sum(entered), sumForEach(reached), sumForEach(pending), "
        "sumForEach(dropped) "
        f"FROM {cfg.database}.funnel_cohorts FINAL WHERE grain = 'day' "
        "AND tenant_id = {t:String} AND cohort >= {since:DateTime} GROUP BY funnel ORDER BY funnel",
        {"t": tenant or "*", "since": (at - timedelta(days=1)).replace(tzinfo=None)},
    )
    timely: dict[str, list[tuple[int, int]]] = {}
    if judged is None:
        judged = await in_time(run, cfg, at, tenant)
    for (_, name), stages in judged.items():
        total = timely.setdefault(name, [(0, 0)] * len(stages))
        timely[name] = [(a + n, b + g) for (a, b), (n, g) in zip(total, stages, strict=True)]
    out = []
    for name, entered, reached, pending, dropped in rows:
        funnel = _funnel(cfg, str(name))
        labels = [step.label for step in funnel.steps] if funnel is not None else []
        reached = [int(x) for x in reached]
        steps = []
        for i, n in enumerate(reached):
            prev = reached[i - 1] if i else 0
            decided = _decided(reached, dropped, i)
            n_judged, good = _at(timely.get(str(name), ()), i)
            below, min_sample = stage_rule(cfg, str(name), tenant, i)
            x = _within(funnel, i + 1) if funnel is not None else None
            steps.append(
                {
                    "step": labels[i] if i < len(labels) else f"step {i + 1}",
                    "reached": n,
                    "pending": int(pending[i]) if i < len(pending) else 0,
                    # of the journeys that reached the previous step (some still pending)
                    "conversion": n / prev if prev else None,
                    # of those decided: reached, or dropped at the previous step
                    "decided": decided,
                    "decided_conversion": n / decided if decided else None,
                    # what the stage alert judges: of the journeys that reached the
                    # previous step in the judged period, those that converted within X
                    "within_s": x / 1000 if x is not None else None,
                    "judged": n_judged,
                    "in_time_conversion": good / n_judged if n_judged else None,
                    "alert_below": below,
                    "min_sample": min_sample,
                }
            )
        out.append({"funnel": name, "entered": int(entered), "steps": steps})
    return out


#: (tenant, funnel) -> per step (journeys judged, converted within X)
InTime = dict[tuple[str, str], list[tuple[int, int]]]


async def in_time(run: Run, cfg: ViewConfig, at: datetime, tenant: str | None) -> InTime:
    """(tenant, funnel) -> per step: (journeys judged, converted within X) -- what
    FunnelStageConversionLow judges at the mark ``at``: journeys that reached the previous
    step in [until - period, until), until = at - X in whole marks, and of those the ones
    that reached the step within X (the alert evidence's SQL, per stage). Step 1 and
    stages without a configured X: (0, 0)."""
    at_ms = int(at.timestamp() * 1000)
    config = cfg.funnels
    out: InTime = {}
    for funnel in config.definitions:
        judged, converted, oldest = ["0"], ["0"], at_ms
        for k in range(2, len(funnel.steps) + 1):
            x = _within(funnel, k)
            if x is None:
                judged.append("0")
                converted.append("0")
                continue
            since, until = judged_period(at_ms, x, config.every_ms, config.period_ms)
            oldest = min(oldest, since)
            in_period, within_x = stage_conditions(k - 1, k, since, until, x)
            judged.append(f"countIf({in_period})")
            converted.append(f"countIf({in_period} AND {within_x})")
        if oldest == at_ms:
            continue
        rows = await run(
            f"SELECT tenant_id, [{', '.join(judged)}], [{', '.join(converted)}] "
            f"FROM {cfg.database}.funnel_progress FINAL WHERE funnel = {{f:String}} "
            "AND ({t:String} = '' OR tenant_id = {t:String}) "
            "AND entered_at >= {oldest:DateTime64(3)} GROUP BY tenant_id",
            {"f": funnel.name, "t": tenant or "",
             # a journey reaches its steps within its window of entering
             "oldest": datetime.fromtimestamp(oldest / 1000, UTC)
             - timedelta(milliseconds=funnel.window_ms)},
        )  # fmt: skip
        for t, n, good in rows:
            out[(str(t), funnel.name)] = [(int(a), int(b)) for a, b in zip(n, good, strict=True)]
    return out


def _at(stages: Sequence[tuple[int, int]], i: int) -> tuple[int, int]:
    return stages[i] if i < len(stages) else (0, 0)


def _decided(reached: Sequence[int], dropped: Sequence[Any], i: int) -> int:
    """Journeys decided at stage ``i`` (step i+1): they reached it, or dropped one step
    earlier (0 for the first step: nothing leads into it)."""
    if not i:
        return 0
    return reached[i] + (int(dropped[i - 1]) if i - 1 < len(dropped) else 0)


def stage_rule(
    cfg: ViewConfig, funnel: str, tenant: str | None, i: int
) -> tuple[float | None, int]:
    """(alert threshold, minimum sample) of step ``i`` (0-based) for ``tenant``, as the
    alert applies them (FunnelConfig.threshold: the tenant's override, else the funnel's)."""
    f = _funnel(cfg, funnel)
    if f is None or not 0 <= i < len(f.steps):
        return None, MIN_JUDGED
    rule = cfg.funnels.threshold(f, i + 1, tenant or "") if i else None
    return (None, f.steps[i].min_sample) if rule is None else (rule.alert_below, rule.min_sample)


def _funnel(cfg: ViewConfig, name: str) -> Funnel | None:
    return next((f for f in cfg.funnels.definitions if f.name == name), None)


def _within(funnel: Funnel, k: int) -> int | None:
    """X of the stage into step ``k`` (1-based) in ms; None for step 1 and for stages
    judged within their observed p95 (which the views do not know)."""
    return None if k < 2 or funnel.auto_within(k) else funnel.within_ms(k)


async def ingest(run: Run, db: str, at: datetime) -> dict[str, Any]:
    """Analytics health: events stored and dead letters by reason over the last hour of
    event time (dead letters by arrival: the last hour of the wall clock)."""
    events = await run(
        f"SELECT count() FROM {db}.events WHERE ts >= {{since:DateTime64(3)}}",
        {"since": at - timedelta(hours=1)},
    )
    dead = await run(
        f"SELECT reason, count() FROM {db}.dead_letters WHERE ts >= now() - INTERVAL 1 HOUR "
        "GROUP BY reason ORDER BY count() DESC",
        {},
    )
    return {"events_last_hour": int(events[0][0]) if events else 0,
            "dead_letters_last_hour": {str(r): int(n) for r, n in dead}}  # fmt: skip


async def overview(run: Run, cfg: ViewConfig) -> dict[str, Any]:
    at = await anchor(run, cfg.database)
    db = cfg.database
    judged = await in_time(run, cfg, at, None)  # the funnel table and the health scores
    return {
        "as_of": _iso(at),
        "series": await series(run, db, at, None),
        "slo": await slo(run, cfg, at, None),
        "firing": await firing(run, db, None),
        "alerts": await alerts(run, db, None),
        "incidents": await incidents(run, db, None),
        "canary": await canary(run, db, None),
        "pii_findings": await pii(run, db, at, None),
        "funnels": await funnels(run, cfg, at, None, judged),
        "ingest": await ingest(run, db, at),
        "tenants": await tenant_scores(run, cfg, at, judged),
    }


async def health(
    run: Run, cfg: ViewConfig, at: datetime, tenant: str, judged: InTime | None = None
) -> dict[str, Any]:
    """The tenant's health score and its parts (formula in the module docstring)."""
    found = await healths(run, cfg, at, tenant, judged)
    return found.get(tenant) or _health(cfg, tenant, 0, 0, 0, 0, 0, [])


async def healths(
    run: Run, cfg: ViewConfig, at: datetime, only: str | None = None, judged: InTime | None = None
) -> dict[str, dict[str, Any]]:
    """Every tenant's health (or ``only``'s), from four grouped queries: the cost of the
    overview does not grow with a query per tenant."""
    db = cfg.database
    params = {"t": only or "", "since": at - timedelta(hours=24), "at": at,
              "period": at - timedelta(days=cfg.period_days)}  # fmt: skip
    mine = "({t:String} = '' OR tenant_id = {t:String})"
    budget = await run(
        f"SELECT tenant_id, sum(count), sum(c5xx) FROM {db}.latency_windows FINAL "
        f"WHERE resolution_s = 60 AND service = '*' AND late = 0 AND {mine} "
        "AND window_start >= {period:DateTime64(3)} AND window_start < {at:DateTime64(3)} "
        "GROUP BY tenant_id",
        params,
    )
    decided = await run(
        f"SELECT tenant_id, countIf(status = 'pass'), countIf(status = 'fail') "
        f"FROM {db}.slo_samples FINAL WHERE {mine} AND window_start >= {{since:DateTime64(3)}} "
        "AND window_end <= {at:DateTime64(3)} GROUP BY tenant_id",
        params,
    )
    detections = await run(
        "SELECT if(labels['resource_tenant_id'] != '', labels['resource_tenant_id'], tenant_id) "
        f"AS t, count() FROM {db}.security_detections FINAL "
        "WHERE first_hold >= {since:DateTime64(3)} GROUP BY t",
        params,
    )
    stages = judged if judged is not None else await in_time(run, cfg, at, only)
    slo_by = {str(t): (int(p), int(f)) for t, p, f in decided}
    det_by = {str(t): int(n) for t, n in detections}
    funnel_by: dict[str, list[tuple[str, list[tuple[int, int]]]]] = {}
    for (t, name), counts in stages.items():
        funnel_by.setdefault(t, []).append((name, counts))
    out = {}
    for t, requests, errors in budget:
        t = str(t)
        if only and t != only:
            continue
        passes, fails = slo_by.get(t, (0, 0))
        out[t] = _health(cfg, t, passes, fails, int(requests or 0), int(errors or 0),
                         det_by.get(t, 0), funnel_by.get(t, []))  # fmt: skip
    return out


def _health(
    cfg: ViewConfig,
    tenant: str,
    passes: int,
    fails: int,
    requests: int,
    errors: int,
    n_detections: int,
    funnels_of: list[tuple[str, list[tuple[int, int]]]],
) -> dict[str, Any]:
    slo_part = passes / (passes + fails) if passes + fails else 1.0
    burned = (errors / requests) / (1 - cfg.objective) if requests else 0.0
    budget_part = min(1.0, max(0.0, 1.0 - burned))
    security_part = 1.0 / (1 + n_detections)
    funnel_part = 1.0
    for name, counts in funnels_of:
        for i, (judged, good) in enumerate(counts):
            below, min_sample = stage_rule(cfg, name, tenant, i)
            if below and judged >= min_sample:
                funnel_part = min(funnel_part, good / judged / below)
    parts = {"slo": slo_part, "budget": budget_part, "security": security_part,
             "funnel": funnel_part}  # fmt: skip
    score = 100 * sum(HEALTH_WEIGHTS[k] * v for k, v in parts.items())
    return {
        "tenant_id": tenant,
        "score": round(score, 1),
        "parts": {k: round(v, 4) for k, v in parts.items()},
        "slo_samples": {"pass": passes, "fail": fails},
        "error_budget": {
            "objective": cfg.objective,
            "period_days": cfg.period_days,
            "requests": requests,
            "errors": errors,
            "burned": round(burned, 4),
            "left": round(budget_part, 4),
        },
        "security_detections_24h": n_detections,
    }


async def tenant_scores(
    run: Run, cfg: ViewConfig, at: datetime, judged: InTime | None = None
) -> list[dict[str, Any]]:
    found = await healths(run, cfg, at, None, judged)
    return [{"tenant_id": t, "score": found[t]["score"]} for t in sorted(found)]


async def tenant(run: Run, cfg: ViewConfig, tenant_id: str) -> dict[str, Any]:
    at = await anchor(run, cfg.database)
    db = cfg.database
    judged = await in_time(run, cfg, at, tenant_id)
    return {
        "as_of": _iso(at),
        "tenant_id": tenant_id,
        "health": await health(run, cfg, at, tenant_id, judged),
        "series": await series(run, db, at, tenant_id),
        "slo": await slo(run, cfg, at, tenant_id),
        "firing": await firing(run, db, tenant_id),
        "alerts": await alerts(run, db, tenant_id),
        "incidents": await incidents(run, db, tenant_id),
        "funnels": await funnels(run, cfg, at, tenant_id, judged),
        "pii_findings": await pii(run, db, at, tenant_id),
    }


async def security(run: Run, cfg: ViewConfig) -> dict[str, Any]:
    at = await anchor(run, cfg.database)
    db = cfg.database
    crossings = await run(
        "SELECT labels['actor_tenant_id'], labels['resource_tenant_id'], labels['target'], "
        f"labels['blocked'], count(), max(first_event) FROM {db}.security_detections FINAL "
        "WHERE alertname = 'CrossTenantAccess' GROUP BY 1, 2, 3, 4 ORDER BY 6 DESC LIMIT 20",
        {},
    )
    by_rule = await run(
        "SELECT rule, alertname, count(), countIf(status = 'firing'), max(peak) "
        f"FROM {db}.security_detections FINAL GROUP BY rule, alertname ORDER BY 3 DESC",
        {},
    )
    prefixes = await run(
        f"SELECT ip_prefix, count() FROM {db}.events WHERE kind = 'security.auth_failure' "
        "AND ip_prefix != '' AND ts >= {since:DateTime64(3)} GROUP BY ip_prefix "
        "ORDER BY count() DESC, ip_prefix LIMIT 10",
        {"since": at - timedelta(hours=24)},
    )
    return {
        "as_of": _iso(at),
        "series": await security_series(run, db, at),
        "cross_tenant": [
            {"actor_tenant_id": a, "resource_tenant_id": r, "target": t,
             "blocked": b == "true", "attempts": int(n), "last": _iso(last)}
            for a, r, t, b, n, last in crossings
        ],
        "by_rule": [
            {"rule": r, "alertname": a, "episodes": int(n), "firing": int(f), "peak": int(p)}
            for r, a, n, f, p in by_rule
        ],
        "top_ip_prefixes": [{"ip_prefix": p, "auth_failures": int(n)} for p, n in prefixes],
    }  # fmt: skip


#: the security events counted per minute on the security page (event kind -> series name)
SECURITY_SERIES = {
    "security.auth_failure": "auth_failures",
    "security.access_denied": "access_denied",
    "security.tenant_violation": "tenant_violations",
    "security.webhook_signature": "webhook_signature_failures",
}


async def security_series(run: Run, db: str, at: datetime) -> list[dict[str, Any]]:
    """Per minute over the last hour: security events by kind (webhook signatures only
    when they failed), every minute present (zero when nothing happened)."""
    since = at - timedelta(minutes=SERIES_MINUTES)
    rows = await run(
        "SELECT toUnixTimestamp(toStartOfMinute(ts)) AS t, kind, count() "
        f"FROM {db}.events WHERE kind IN {{kinds:Array(String)}} "
        "AND NOT (kind = 'security.webhook_signature' AND signature_valid = 1) "
        "AND ts >= {since:DateTime64(3)} AND ts < {at:DateTime64(3)} GROUP BY t, kind",
        {"kinds": list(SECURITY_SERIES), "since": since, "at": at},
    )
    start = int(since.timestamp()) // 60 * 60
    minutes = {t: dict.fromkeys(SECURITY_SERIES.values(), 0)
               for t in range(start, int(at.timestamp()), 60)}  # fmt: skip
    for t, kind, n in rows:
        if int(t) in minutes:
            minutes[int(t)][SECURITY_SERIES[str(kind)]] += int(n)
    return [{"t": t, **counts} for t, counts in sorted(minutes.items())]


class ViewCache:
    """Each document built at most once per ``refresh_s`` (one build at a time per key;
    concurrent readers wait for it), so viewers never add queries per request."""

    def __init__(self, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh_s = refresh_s
        self._clock = clock
        self._docs: dict[str, tuple[float, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.builds = 0

    async def get(self, key: str, build: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        cached = self._docs.get(key)
        if cached is not None and self._clock() - cached[0] < self.refresh_s:
            return cached[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._docs.get(key)
            if cached is not None and self._clock() - cached[0] < self.refresh_s:
                return cached[1]
            doc = await build()
            self.builds += 1
            if len(self._docs) > 1000:  # tenants come and go: keep the cache bounded
                self._docs.clear()
            self._docs[key] = (self._clock(), doc)
            return doc


def view_config(settings: Any, rules: Any) -> ViewConfig:
    """From the settings and the loaded rules file."""
    slo_cfg = rules.slo
    return ViewConfig(
        database=settings.clickhouse_database,
        slo_rules={r.id: (r.sli, r.op, float(r.threshold)) for r in slo_cfg.rules},
        objective=slo_cfg.availability.objective,
        period_days=slo_cfg.availability.period_days,
        funnels=rules.funnels,
    )


class Console:
    """The documents behind the console, ``vigil status`` and the JSON API, cached."""

    def __init__(self, run: Run, cfg: ViewConfig, refresh_s: float) -> None:
        self.run = run
        self.cfg = cfg
        self.cache = ViewCache(refresh_s)

    async def overview(self) -> dict[str, Any]:
        return await self.cache.get("overview", lambda: overview(self.run, self.cfg))

    async def tenant(self, tenant_id: str) -> dict[str, Any]:
        return await self.cache.get(
            f"tenant:{tenant_id}", lambda: tenant(self.run, self.cfg, tenant_id)
        )

    async def security(self) -> dict[str, Any]:
        return await self.cache.get("security", lambda: security(self.run, self.cfg))

    async def public(self, tenant_id: str) -> dict[str, Any]:
        return await self.cache.get(
            f"public:{tenant_id}", lambda: tenant_public(self.run, self.cfg, tenant_id)
        )


def bearer_ok(expected: str, authorization: str, cookie: str) -> bool:
    """``Authorization: Bearer <token>`` or the ``vigil_token`` cookie equals the token
    (compared in constant time)."""
    import hmac

    given = authorization[7:].strip() if authorization.lower().startswith("bearer ") else cookie
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


#: labels a tenant may see on its own alerts (never one naming a tenant)
PUBLIC_LABELS = frozenset(
    {"service", "route", "cohort", "target", "blocked", "entity", "event_name", "funnel",
     "stage", "release", "provider", "rule"}
)  # fmt: skip


async def tenant_alerts(run: Run, db: str, tenant_id: str) -> list[dict[str, Any]]:
    """The alerts firing now that concern ``tenant_id`` -- its own, and cross-tenant ones
    on either side -- with every other tenant's id withheld."""
    rows = await run(
        "SELECT fingerprint, argMax(status, ts) AS st, any(alertname), any(severity), "
        f"argMax(labels, ts), min(starts_at) FROM {db}.alerts WHERE tenant_id = {{t:String}} "
        "OR labels['actor_tenant_id'] = {t:String} OR labels['resource_tenant_id'] = {t:String} "
        "GROUP BY fingerprint HAVING st = 'firing' ORDER BY min(starts_at) DESC LIMIT 50",
        {"t": tenant_id},
    )
    out = []
    for _, _, name, severity, labels, since in rows:
        labels = dict(labels)
        shown = {k: str(v) for k, v in labels.items() if k in PUBLIC_LABELS}
        entry: dict[str, Any] = {"alertname": name, "severity": severity,
                                 "since": _iso(since), "labels": shown}  # fmt: skip
        actor, resource = labels.get("actor_tenant_id"), labels.get("resource_tenant_id")
        if actor or resource:
            # a cross-tenant access: each side learns its role, never the other's name
            entry["cross_tenant"] = (
                "your data was accessed by another tenant"
                if resource == tenant_id
                else "one of your users accessed another tenant's data"
            )
        out.append(entry)
    return out


async def tenant_public(run: Run, cfg: ViewConfig, tenant_id: str) -> dict[str, Any]:
    """The tenant-scoped API's document (``/api/v1/tenants/{id}/health`` and ``/slo``)."""
    at = await anchor(run, cfg.database)
    h = await health(run, cfg, at, tenant_id)
    rules = await slo(run, cfg, at, tenant_id)
    return {
        "tenant_id": tenant_id,
        "as_of": _iso(at),
        "health": {k: h[k] for k in ("score", "parts", "error_budget")},
        "slo": [
            {k: r[k] for k in ("rule", "sli", "op", "threshold", "compliance", "pass", "fail",
                               "consecutive_breaches")}
            for r in rules if r["pass"] or r["fail"]
        ],
        "alerts": await tenant_alerts(run, cfg.database, tenant_id),
    }  # fmt: skip
