"""Analytics health: is the stream itself healthy? The worker has the counts, so it
judges them itself (``infra/prometheus/vigil-rules.yml`` carries the same rules for
clusters that prefer Prometheus):

* ``AnalyticsIngestionFailure`` (high): the share of valid records (valid events / all
  records: events plus rejected records and NDJSON lines) over the trailing 5 minutes is
  below 95 %, at the shared helper's confidence, for 5 minutes;
* ``SchemaValidationFailures`` (medium): schema-validation rejections above 2 % of all
  records over the trailing hour;
* ``AnalyticsEventRateAbnormal`` (medium): a tenant's count of one event name over a
  period outside the bounds its override declares (none by default), judged only while
  the tenant has any traffic at all (a tenant that went quiet is not an abnormal rate).

Counts are by arrival (wall clock, 10-s buckets): rejected records have no event time.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from functools import cached_property
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.alerts import Annotations
from schemas.fastpath import FAST_STRUCTS
from sinks.sqltext import dt as _dt
from streams.alerting import AlertPublisher, AlertSpec
from streams.catalogue import lookup
from streams.detectors.latency.windows import parse_seconds
from streams.ingest import IngestResult
from streams.metrics import Metrics
from streams.stats import Evidence

ANALYTICS = FAST_STRUCTS["analytics"]
#: rejection reasons that are schema-validation failures (the record was JSON)
SCHEMA_REASONS = frozenset(
    {"not_object", "schema_violation", "unknown_kind", "missing_tenant", "bad_timestamp"}
)
BUCKET_MS = 10_000
INGESTION, SCHEMA, RATE = (
    "AnalyticsIngestionFailure",
    "SchemaValidationFailures",
    "AnalyticsEventRateAbnormal",
)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _ms(value: str | float) -> int:
    return round(parse_seconds(value) * 1000)


class Ingestion(_Strict):
    min_success: Annotated[float, Field(gt=0, le=1)] = 0.95
    over: str | float = "5m"  # the trailing window of the share
    for_: str | float = Field(default="5m", alias="for")  # how long it must hold

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Schema(_Strict):
    max_share: Annotated[float, Field(gt=0, lt=1)] = 0.02
    over: str | float = "1h"


class RateBound(_Strict):
    per: str | float = "5m"
    min: Annotated[int, Field(ge=0)] | None = None
    max: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _some(self) -> RateBound:
        if self.min is None and self.max is None:
            raise ValueError("a rate bound needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("a rate bound's min is above its max")
        return self

    @field_validator("per")
    @classmethod
    def _per(cls, value: str | float) -> str | float:
        parse_seconds(value)
        return value


class RateOverride(_Strict):
    match: dict[str, str]  # {tenant: <tenant_id>}
    rates: dict[str, RateBound]  # event name -> bounds

    @field_validator("match")
    @classmethod
    def _tenant(cls, value: dict[str, str]) -> dict[str, str]:
        if set(value) != {"tenant"}:
            raise ValueError("an analytics override matches one tenant: match: {tenant: ...}")
        return value


class AnalyticsConfig(_Strict):
    """The ``analytics`` section of the rules file."""

    enabled: bool = True
    confidence: Annotated[float, Field(ge=0.5, lt=1)] = 0.95
    ingestion: Ingestion = Ingestion()
    schema_failures: Schema = Schema()
    overrides: tuple[RateOverride, ...] = ()

    @cached_property
    def bounds(self) -> dict[tuple[str, str], RateBound]:
        """(tenant, event name) -> its bounds (later overrides win)."""
        out: dict[tuple[str, str], RateBound] = {}
        for o in self.overrides:
            for name, bound in o.rates.items():
                out[(o.match["tenant"], name)] = bound
        return out


class _Series:
    """Counts in 10-s buckets of arrival time, trailing sums over any window."""

    def __init__(self) -> None:
        self.buckets: deque[tuple[int, Counter[Any]]] = deque()

    def add(self, now_ms: int, counts: Counter[Any]) -> None:
        start = now_ms - now_ms % BUCKET_MS
        if self.buckets and self.buckets[-1][0] == start:
            self.buckets[-1][1].update(counts)
        else:
            self.buckets.append((start, Counter(counts)))

    def total(self, now_ms: int, window_ms: int) -> Counter[Any]:
        out: Counter[Any] = Counter()
        for start, counts in self.buckets:
            if start + BUCKET_MS > now_ms - window_ms:
                out.update(counts)
        return out

    def trim(self, now_ms: int, keep_ms: int) -> None:
        while self.buckets and self.buckets[0][0] + BUCKET_MS <= now_ms - keep_ms:
            self.buckets.popleft()


class AnalyticsHealth:
    name = "analytics_health"

    def __init__(
        self,
        config: AnalyticsConfig,
        alerts: AlertPublisher,
        metrics: Metrics,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self._alerts = alerts
        self._metrics = metrics
        self._clock_ms = clock_ms
        self._evidence = Evidence(confidence=config.confidence)
        self._records = _Series()  # "valid", "invalid", "schema"
        self._declared = _Series()  # (tenant, event) and (tenant, None) for tenant totals
        self._tenants = {t for t, _ in config.bounds}
        self._started_ms = clock_ms()
        self._holding_since: int | None = None  # the ingestion condition, when it began
        self.firing: dict[tuple[str, ...], int] = {}  # alert key -> started (ms)
        for (tenant, event), bound in config.bounds.items():
            per_s = _ms(bound.per) / 1000
            for side, value in (("min", bound.min), ("max", bound.max)):
                if value is not None:
                    metrics.analytics_rate_bound.labels(
                        tenant_id=tenant, event_name=event, bound=side
                    ).set(value / per_s)

    def observe(self, result: IngestResult) -> None:
        """One decoded batch (after the PII guard): its valid events and rejections."""
        now = self._clock_ms()
        schema = sum(1 for r in result.rejections if r.reason in SCHEMA_REASONS)
        self._records.add(
            now,
            Counter(
                {
                    "valid": len(result.events),
                    "invalid": len(result.rejections),
                    "schema": schema,
                }
            ),
        )
        if not self._tenants:
            return
        declared: Counter[Any] = Counter()
        tenants = self._tenants
        for e in result.events:
            tenant = getattr(e, "tenant_id", "")
            if tenant in tenants:
                declared[(tenant, None)] += 1
        for i in result.by_type().get(ANALYTICS, ()):
            ev: Any = result.events[i]
            key = (ev.tenant_id, ev.event_name)
            if key in self.config.bounds:
                declared[key] += 1
                self._metrics.analytics_declared_events.labels(
                    tenant_id=key[0], event_name=key[1]
                ).inc()
        for (tenant, event), n in declared.items():
            if event is None:
                self._metrics.analytics_declared_tenant_events.labels(tenant_id=tenant).inc(n)
        self._declared.add(now, declared)

    async def tick(self) -> None:
        now = self._clock_ms()
        await self._ingestion(now)
        await self._schema(now)
        await self._rates(now)
        keep = max(
            [_ms(self.config.ingestion.over), _ms(self.config.schema_failures.over)]
            + [_ms(b.per) for b in self.config.bounds.values()]
        )
        self._records.trim(now, keep)
        self._declared.trim(now, keep)

    async def _ingestion(self, now: int) -> None:
        cfg = self.config.ingestion
        over = _ms(cfg.over)
        if now - self._started_ms < over:
            return
        c = self._records.total(now, over)
        n = c["valid"] + c["invalid"]
        decision, bound = self._evidence.share_below(c["valid"], n, cfg.min_success)
        key = (INGESTION,)
        if decision == "fail":
            if self._holding_since is None:
                self._holding_since = now
            if now - self._holding_since >= _ms(cfg.for_):
                share = c["valid"] / n
                await self._fire(
                    key,
                    INGESTION,
                    {},
                    f"only {share:.1%} of incoming records are valid (below {cfg.min_success:.0%})",
                    share,
                    cfg.min_success,
                    now,
                    {
                        "valid": c["valid"],
                        "records": n,
                        "upper_bound": bound,
                        "window_seconds": over / 1000,
                    },
                    started=self._holding_since,
                )
        elif decision == "pass":
            self._holding_since = None
            n_ok = c["valid"] / n if n else 1.0
            await self._resolve(key, INGESTION, {}, n_ok, cfg.min_success, now)

    async def _schema(self, now: int) -> None:
        cfg = self.config.schema_failures
        over = _ms(cfg.over)
        c = self._records.total(now, over)
        n = c["valid"] + c["invalid"]
        decision, bound = self._evidence.share_above(c["schema"], n, cfg.max_share)
        key = (SCHEMA,)
        share = c["schema"] / n if n else 0.0
        if decision == "fail":
            await self._fire(
                key,
                SCHEMA,
                {},
                f"{share:.1%} of incoming records fail schema validation (above "
                f"{cfg.max_share:.0%})",
                share,
                cfg.max_share,
                now,
                {
                    "schema_failures": c["schema"],
                    "records": n,
                    "lower_bound": bound,
                    "window_seconds": over / 1000,
                },
            )
        elif decision == "pass":
            await self._resolve(key, SCHEMA, {}, share, cfg.max_share, now)

    async def _rates(self, now: int) -> None:
        for (tenant, event), bound in self.config.bounds.items():
            per = _ms(bound.per)
            if now - self._started_ms < per:
                continue  # a window not yet fully observed says nothing about a rate
            c = self._declared.total(now, per)
            key = (RATE, tenant, event)
            labels = {"tenant_id": tenant, "event_name": event}
            count = c[(tenant, event)]
            if not c[(tenant, None)]:
                continue  # the tenant has no traffic at all: not judged
            low = bound.min is not None and count < bound.min
            high = bound.max is not None and count > bound.max
            edge = bound.min if low else bound.max if high else None
            limit = float(edge or 0)
            if low or high:
                side = "below its minimum" if low else "above its maximum"
                await self._fire(
                    key,
                    RATE,
                    labels,
                    f"{count} {event} of {tenant} in {bound.per}: {side} ({int(limit)})",
                    float(count),
                    limit,
                    now,
                    {
                        "count": count,
                        "per_seconds": per / 1000,
                        "min": bound.min,
                        "max": bound.max,
                        "tenant_events": c[(tenant, None)],
                    },
                )
            else:
                await self._resolve(key, RATE, labels, float(count), limit, now)

    async def _fire(
        self,
        key: tuple[str, ...],
        name: str,
        labels: dict[str, str],
        summary: str,
        value: float,
        threshold: float,
        now: int,
        evidence: dict[str, Any],
        started: int | None = None,
    ) -> None:
        entry = lookup(name)
        spec = AlertSpec(name, entry.severity, labels, Annotations(summary=summary))
        began = self.firing.setdefault(key, started if started is not None else now)
        await self._alerts.fire(spec, value, threshold, _dt(now), evidence, starts_at=_dt(began))

    async def _resolve(
        self,
        key: tuple[str, ...],
        name: str,
        labels: dict[str, str],
        value: float,
        threshold: float,
        now: int,
    ) -> None:
        began = self.firing.pop(key, None)
        if began is None:
            return
        entry = lookup(name)
        spec = AlertSpec(name, entry.severity, labels, Annotations(summary=f"{name} resolved"))
        await self._alerts.resolve(spec, value, threshold, _dt(now), starts_at=_dt(began))
