"""The canary judge's adapter: per-partition partials, an exact merge per service, verdicts.

A service's requests land in many partitions of ``vigil.events``, so one partition
cannot judge it. Two stages, like the security detector's:

* :class:`CanarySource` -- fed every batch of the events topic. For ``http.request``
  events that carry a ``cohort`` (the configured canary or baseline name) it keeps, per
  event-time interval (``VIGIL_CANARY_INTERVAL_S``, 1 min) and (service, release,
  cohort), the latency bucket counts, requests and 5xx. When the partition's watermark
  (max event time - ``VIGIL_CANARY_LATENESS_S``) passes an interval's end it sends the
  interval's *partials* to the internal topic ``<prefix>.canary.partials``, to the
  partition of the service (a stable hash), and tells every partition of that topic how
  far it has closed (*progress*). An idle partition's progress follows the wall clock.
  Commits of the events topic wait for the oldest record of any open interval, so after
  ``kill -9`` the open intervals are re-read and re-sent (the judge keeps one partial per
  source partition and key: a re-sent one replaces, never adds).
* :class:`CanaryJudge` -- fed the partials topic. An interval of a service is judged
  once every events partition's progress has passed its end: the partials are merged by
  adding bucket counts (exact), the canary cohort of each release is compared with the
  baseline cohort (every release) for the interval and cumulatively over the stage
  (:mod:`.judge`), and the verdict row goes to ``canary_verdicts`` with the interval's
  bucket counts. Its state (judged-through, failing runs, cumulative counts) is rebuilt
  from those rows after a restart, and the partials topic's commits wait until the rows
  of every interval they fed are stored.

With ``VIGIL_CANARY_PER_TENANT`` the partials are also kept per tenant, and each tenant's
canary is judged against that tenant's own baseline next to the service-wide verdict
(tenant "" in rows and state; the service-wide verdict is the merge of every tenant's, so
it is exactly what it would be without the option).

Alerts: ``CanaryVerdictFail`` (critical, ``auto_rollback``) while the stage verdict is
Fail, ``CanaryVerdictMarginal`` (medium) while Marginal; both resolve on Pass. Per-tenant
verdicts alert with a ``tenant_id`` label.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.alerts import Annotations
from sinks.clickhouse import ClickHouseWriter
from sinks.sqltext import dt as _dt
from sinks.sqltext import iso_z
from sinks.sqltext import sql_string as _sql
from streams.alerting import AlertPublisher, AlertSpec
from streams.detectors.canary.judge import Cohort, Comparison, JudgeConfig, Stage, compare
from streams.detectors.canary.rules import CanaryService
from streams.detectors.latency.detector import HTTP_REQUEST
from streams.detectors.latency.sketch import Sketch, bucket_indices
from streams.detectors.latency.windows import NO_WATERMARK, Watermark
from streams.gate import CommitGate
from streams.ingest import IngestResult
from streams.metrics import Metrics
from streams.transport import SourceBatch

log = logging.getLogger(__name__)
FAIL = "CanaryVerdictFail"
MARGINAL = "CanaryVerdictMarginal"
#: (service, release, cohort, tenant -- "" unless judged per tenant)
Key = tuple[str, str, str, str]
#: publish(records as (partition, value)) -> awaitable once the broker has them
Forward = Callable[[list[tuple[int, bytes]]], Awaitable[None]]


def service_partition(service: str, partitions: int) -> int:
    return zlib.crc32(service.encode()) % partitions


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    interval_ms: int = 60_000
    lateness_ms: int = 30_000
    idle_timeout_ms: int = 30_000
    canary: str = "canary"
    baseline: str = "baseline"
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    #: a release not seen for this many intervals is no longer live (its gauge goes)
    live_intervals: int = 10
    #: what the rules file declares per service (weight, absolute SLO thresholds)
    services: Mapping[str, CanaryService] = field(default_factory=dict)
    #: also judge each tenant's canary against that tenant's baseline
    per_tenant: bool = False


@dataclass(slots=True)
class _Open:
    first_offset: int
    cohorts: dict[Key, Cohort] = field(default_factory=dict)


@dataclass(slots=True)
class _SourcePart:
    watermark: Watermark
    next_offset: int = -1
    open: dict[int, _Open] = field(default_factory=dict)
    sent_through: int = NO_WATERMARK
    last_input_wall_ms: int = 0


class CanarySource:
    name = "canary"

    def __init__(
        self,
        config: CanaryConfig,
        gamma: float,
        forward: Forward,
        judge_partitions: int,
        metrics: Metrics,
        *,
        gate: CommitGate | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self.gamma = gamma
        self._forward = forward
        self.judge_partitions = judge_partitions
        self._metrics = metrics
        self._gate = gate
        self._clock_ms = clock_ms
        self.parts: dict[int, _SourcePart] = {}
        self.total_partitions = 1
        self.late = 0
        if gate is not None:
            gate.add_holder(self.first_needed_offset)

    def assigned(self, partitions: Sequence[int], total: int | None) -> None:
        if total:
            self.total_partitions = total
        now = self._clock_ms()
        for p in partitions:
            self.parts.setdefault(
                p, _SourcePart(Watermark(self.config.lateness_ms), last_input_wall_ms=now)
            )

    def forget(self, partition: int) -> None:
        self.parts.pop(partition, None)

    def first_needed_offset(self, partition: int) -> int | None:
        part = self.parts.get(partition)
        if part is None or not part.open:
            return None
        return min(o.first_offset for o in part.open.values())

    async def process(self, result: IngestResult, source: SourceBatch) -> None:
        part = self.parts.get(source.partition)
        if part is None or source.first_offset < part.next_offset:
            # first batch, or a rewind: start over from here (what was open is re-read)
            part = self.parts[source.partition] = _SourcePart(
                Watermark(self.config.lateness_ms), last_input_wall_ms=self._clock_ms()
            )
        part.next_offset = source.last_offset + 1
        part.last_input_wall_ms = self._clock_ms()
        ts = result.ts_ms
        if not ts:
            return
        cfg = self.config
        names = (cfg.canary, cfg.baseline)
        per_tenant = cfg.per_tenant
        events: list[Any] = result.events
        # only requests, found by the batch's per-type index (no scan of other kinds)
        picked = [i for i in result.by_type().get(HTTP_REQUEST, ()) if events[i].cohort in names]
        if picked:
            keys = bucket_indices([events[i].duration_ms for i in picked], self.gamma)
            late = 0
            start = 0
            for j, i in enumerate(picked):
                if i > start:
                    part.watermark.observe(max(ts[start:i]))
                start = i + 1
                t = ts[i]
                interval = t - t % cfg.interval_ms
                if interval + cfg.interval_ms <= part.watermark.value_ms:
                    late += 1
                    part.watermark.observe(t)
                    continue
                ev = events[i]
                slot = part.open.get(interval)
                if slot is None:
                    slot = part.open[interval] = _Open(result.offsets[i])
                key = (ev.service, ev.release or "", ev.cohort, ev.tenant_id if per_tenant else "")
                cohort = slot.cohorts.get(key)
                if cohort is None:
                    cohort = slot.cohorts[key] = Cohort()
                cohort.sketch.add_key(int(keys[j]))
                cohort.requests += 1
                cohort.errors += ev.status >= 500
                part.watermark.observe(t)
            if late:
                self.late += late
                self._metrics.canary_late.inc(late)
            if start < len(ts):
                part.watermark.observe(max(ts[start:]))
        else:
            part.watermark.observe(max(ts))
        await self._close(source.partition, part)

    async def tick(self) -> None:
        """Idle partitions: their watermark follows the wall clock so the judge never
        waits for a partition without traffic."""
        now = self._clock_ms()
        for partition, part in list(self.parts.items()):
            if now - part.last_input_wall_ms >= self.config.idle_timeout_ms:
                part.watermark.advance_idle(now - self.config.idle_timeout_ms)
            await self._close(partition, part)

    async def _close(self, partition: int, part: _SourcePart) -> None:
        cfg = self.config
        mark = part.watermark.value_ms
        if mark == NO_WATERMARK:
            return
        through = mark - mark % cfg.interval_ms  # intervals ending at or before it close
        records: list[tuple[int, bytes]] = []
        for interval in sorted(i for i in part.open if i + cfg.interval_ms <= through):
            slot = part.open[interval]
            for (service, release, cohort, tenant), c in sorted(slot.cohorts.items()):
                keys, counts = c.sketch.arrays()
                body = {
                    "t": "p", "src": partition, "srcs": self.total_partitions,
                    "service": service, "release": release, "cohort": cohort, "tenant": tenant,
                    "start": interval, "keys": keys, "counts": counts,
                    "n": c.requests, "e": c.errors,
                }  # fmt: skip
                records.append((service_partition(service, self.judge_partitions),
                                orjson.dumps(body)))  # fmt: skip
        if through > part.sent_through:
            progress = orjson.dumps(
                {"t": "w", "src": partition, "srcs": self.total_partitions, "through": through}
            )
            records.extend((p, progress) for p in range(self.judge_partitions))
        if not records:
            return
        await self._forward(records)  # partials before progress, in one ordered publish
        for interval in [i for i in part.open if i + cfg.interval_ms <= through]:
            del part.open[interval]
        part.sent_through = max(part.sent_through, through)
        if self._gate is not None:
            self._gate.release(partition)


@dataclass(slots=True)
class _Release:
    """One (service, canary release, tenant or "") across its stage."""

    stage: Stage
    canary: Cohort = field(default_factory=Cohort)
    baseline: Cohort = field(default_factory=Cohort)
    verdict: str = ""
    score: float = 0.0
    last_interval: int = 0
    started: int = 0
    comparison: dict[str, Any] = field(default_factory=dict)


_Slot = tuple[int, str, str, str]


@dataclass(slots=True)
class _JudgePart:
    #: service -> interval start -> (src, release, cohort, tenant) -> (data, offset)
    pending: dict[str, dict[int, dict[_Slot, tuple[Cohort, int]]]] = field(default_factory=dict)
    progress: dict[int, int] = field(default_factory=dict)
    srcs: int = 1
    next_offset: int = -1
    #: offsets of judged intervals whose rows are not stored yet
    unstored: dict[tuple[str, int], int] = field(default_factory=dict)


class CanaryJudge:
    name = "canary_judge"

    def __init__(
        self,
        config: CanaryConfig,
        gamma: float,
        alerts: AlertPublisher,
        writer: ClickHouseWriter | None,
        metrics: Metrics,
        database: str,
        *,
        gate: CommitGate | None = None,
    ) -> None:
        self.config = config
        self.gamma = gamma
        self._alerts = alerts
        self._writer = writer
        self._metrics = metrics
        self._db = database
        self._gate = gate
        self.parts: dict[int, _JudgePart] = {}
        #: service -> last judged interval start (shared: a service lives in one partition)
        self.judged: dict[str, int] = {}
        #: (service, release, tenant) -> its stage; tenant "" is the service as a whole
        self.releases: dict[tuple[str, str, str], _Release] = {}
        self._restored = False
        if gate is not None:
            gate.add_holder(self.first_needed_offset)

    def first_needed_offset(self, partition: int) -> int | None:
        part = self.parts.get(partition)
        if part is None:
            return None
        needed = [o for by in part.pending.values() for slots in by.values()
                  for _, o in slots.values()]  # fmt: skip
        needed.extend(part.unstored.values())
        return min(needed) if needed else None

    def forget(self, partition: int) -> None:
        self.parts.pop(partition, None)

    def current(self, service: str, release: str, tenant: str = "") -> dict[str, Any] | None:
        """The latest verdict of (service, release[, tenant]) as the rollout API shows it."""
        state = self.releases.get((service, release, tenant))
        if state is None:
            return None
        return self._document(
            service, release, tenant, state.verdict, state.score, state.stage.failing_run,
            state.last_interval, state.started, state.canary.requests,
            state.baseline.requests, state.comparison,
        )  # fmt: skip

    def from_row(
        self, service: str, release: str, tenant: str, row: Sequence[Any]
    ) -> dict[str, Any]:
        """The same document from a ``stored_verdict_sql`` row (another worker's verdict)."""
        verdict, score, run, start, started, cn, bn, metrics = row
        return self._document(
            service, release, tenant, str(verdict), float(score), int(run), int(start),
            int(started), int(cn), int(bn), {"metrics": orjson.loads(metrics)},
        )  # fmt: skip

    def _document(
        self,
        service: str,
        release: str,
        tenant: str,
        verdict: str,
        score: float,
        failing_run: int,
        last_interval: int,
        started: int,
        canary_requests: int,
        baseline_requests: int,
        comparison: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "service": service,
            "release": release,
            **({"tenant_id": tenant} if tenant else {}),
            "verdict": verdict,
            "score": round(score, 1),
            "failing_intervals": failing_run,
            "consecutive_to_fail": self.config.judge.consecutive,
            "interval_start": _iso(last_interval),
            "interval_end": _iso(last_interval + self.config.interval_ms),
            "stage_started": _iso(started),
            "canary_requests": canary_requests,
            "baseline_requests": baseline_requests,
            "last_interval": comparison,
        }

    async def restore(self) -> None:
        """Judged-through, failing runs and cumulative counts from ``canary_verdicts``."""
        self._restored = True
        if self._writer is None:
            return
        client = self._writer.client
        async with self._writer.engine_lock:
            rows = await asyncio.to_thread(
                lambda: (
                    client.query(
                        "SELECT service, release, tenant_id, "
                        "toUnixTimestamp64Milli(interval_start), verdict, "
                        "score, failing_run, canary_keys, canary_counts, canary_requests, "
                        "canary_errors, baseline_keys, baseline_counts, baseline_requests, "
                        f"baseline_errors FROM {self._db}.canary_verdicts FINAL "
                        "ORDER BY service, release, tenant_id, interval_start"
                    ).result_rows
                )
            )
        for (service, release, tenant, start, verdict, score, run, ck, cc, cn, ce, bk, bc, bn,
             be) in rows:  # fmt: skip
            self.judged[service] = max(self.judged.get(service, 0), int(start))
            state = self.releases.get((service, release, tenant))
            if state is None:
                state = self.releases[(service, release, tenant)] = _Release(
                    Stage(self.config.judge.consecutive), started=int(start)
                )
            state.canary.merge(Cohort(Sketch.from_arrays(ck, cc), int(cn), int(ce)))
            state.baseline.merge(Cohort(Sketch.from_arrays(bk, bc), int(bn), int(be)))
            state.verdict, state.score, state.last_interval = str(verdict), float(score), int(start)
            state.stage.failing_run = int(run)
            state.stage.failed = verdict == "Fail"

    async def process(self, source: SourceBatch) -> None:
        await self.process_records(source.partition, [(r.offset, r.value) for r in source.records])

    async def process_records(
        self, partition: int, records: Sequence[tuple[int, bytes | None]]
    ) -> None:
        if not self._restored:
            await self.restore()
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = _JudgePart()
        for offset, value in records:
            if not value or offset < part.next_offset:
                continue
            part.next_offset = offset + 1
            try:
                record = orjson.loads(value)
                part.srcs = int(record["srcs"])
                if record["t"] == "w":
                    src, through = int(record["src"]), int(record["through"])
                    part.progress[src] = max(part.progress.get(src, NO_WATERMARK), through)
                    continue
                service, start = str(record["service"]), int(record["start"])
                if start <= self.judged.get(service, -1):
                    continue  # re-sent after a restart: already judged
                cohort = Cohort(
                    Sketch.from_arrays(record["keys"], record["counts"]),
                    int(record["n"]),
                    int(record["e"]),
                )
                slots = part.pending.setdefault(service, {}).setdefault(start, {})
                slot = (
                    int(record["src"]),
                    str(record["release"]),
                    str(record["cohort"]),
                    str(record.get("tenant", "")),
                )
                slots[slot] = (cohort, offset)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                # only Vigil writes this topic: a bad record is a bug, not input
                log.error("canary partials: bad record at [%d]@%d: %r", partition, offset, exc)
        await self._judge_ready(partition, part)

    async def _judge_ready(self, partition: int, part: _JudgePart) -> None:
        if len(part.progress) < part.srcs:
            return
        closed = min(part.progress.get(s, NO_WATERMARK) for s in range(part.srcs))
        for service in sorted(part.pending):
            intervals = part.pending[service]
            for start in sorted(s for s in intervals if s + self.config.interval_ms <= closed):
                slots = intervals.pop(start)
                await self._judge(partition, part, service, start, slots)
            if not intervals:
                del part.pending[service]

    async def _judge(
        self,
        partition: int,
        part: _JudgePart,
        service: str,
        start: int,
        slots: dict[_Slot, tuple[Cohort, int]],
    ) -> None:
        cfg = self.config
        # (tenant, release, cohort): tenant "" is the service as a whole (every tenant)
        merged: dict[tuple[str, str, str], Cohort] = {}
        for (_, release, cohort, tenant), (data, _) in slots.items():
            merged.setdefault(("", release, cohort), Cohort()).merge(data)
            if tenant:
                merged.setdefault((tenant, release, cohort), Cohort()).merge(data)
        baselines: dict[str, Cohort] = {}  # per tenant: every release of its baseline
        for (tenant, _, cohort), data in merged.items():
            if cohort == cfg.baseline:
                baselines.setdefault(tenant, Cohort()).merge(data)
        self.judged[service] = max(self.judged.get(service, -1), start)
        rows: list[dict[str, Any]] = []
        for (tenant, release, cohort), canary in sorted(merged.items()):
            if cohort != cfg.canary:
                continue
            baseline = baselines.get(tenant) or Cohort()
            state = self.releases.get((service, release, tenant))
            if state is None:
                state = self.releases[(service, release, tenant)] = _Release(
                    Stage(cfg.judge.consecutive), started=start
                )
            state.canary.merge(canary)
            state.baseline.merge(baseline)
            declared = cfg.services.get(service)
            extra: dict[str, Any] = {}
            if declared is not None:
                extra = {"weight": declared.weight, "slo_ms": declared.slo_ms, "gamma": self.gamma}
            interval = compare(canary, baseline, cfg.judge, **extra)
            cumulative = compare(state.canary, state.baseline, cfg.judge, **extra)
            verdict = state.stage.observe(interval, cumulative)
            shown = interval if interval.verdict != "Inconclusive" else cumulative
            state.verdict, state.score, state.last_interval = verdict, shown.score, start
            state.comparison = interval.as_dict()
            self._metrics.canary_verdicts.labels(verdict=verdict).inc()
            rows.append(self._row(service, release, tenant, start, verdict, interval,
                                  cumulative, state, canary, baseline))  # fmt: skip
            await self._alert(service, release, tenant, verdict, state, interval, start)
        self._refresh_gauge(start)
        if not rows:
            return
        first = min(o for _, o in slots.values())
        key = (service, start)
        part.unstored[key] = first
        if self._writer is None:
            part.unstored.pop(key, None)
            return
        columns = {name: [r[name] for r in rows] for name in rows[0]}

        def stored() -> None:
            part.unstored.pop(key, None)
            if self._gate is not None:
                self._gate.release(partition)

        await self._writer.add({"canary_verdicts": columns}, on_written=stored)

    def _row(
        self,
        service: str,
        release: str,
        tenant: str,
        start: int,
        verdict: str,
        interval: Comparison,
        cumulative: Comparison,
        state: _Release,
        canary: Cohort,
        baseline: Cohort,
    ) -> dict[str, Any]:
        ck, cc = canary.sketch.arrays()
        bk, bc = baseline.sketch.arrays()
        return {
            "service": service,
            "release": release,
            "tenant_id": tenant,
            "interval_start": _dt(start),
            "interval_end": _dt(start + self.config.interval_ms),
            "verdict": verdict,
            "interval_verdict": interval.verdict,
            "cumulative_verdict": cumulative.verdict,
            "score": interval.score,
            "cumulative_score": cumulative.score,
            "failing_run": state.stage.failing_run,
            "canary_requests": canary.requests,
            "canary_errors": canary.errors,
            "baseline_requests": baseline.requests,
            "baseline_errors": baseline.errors,
            "canary_keys": ck,
            "canary_counts": cc,
            "baseline_keys": bk,
            "baseline_counts": bc,
            "metrics": orjson.dumps(interval.as_dict()["metrics"]).decode(),
            "cumulative_metrics": orjson.dumps(cumulative.as_dict()["metrics"]).decode(),
        }

    async def _alert(
        self,
        service: str,
        release: str,
        tenant: str,
        verdict: str,
        state: _Release,
        interval: Comparison,
        start: int,
    ) -> None:
        at = _dt(start + self.config.interval_ms)
        labels = {"service": service, "release": release}
        who = ""
        if tenant:
            labels["tenant_id"] = tenant
            who = f" for {tenant}"
        failing = [m["metric"] for m in interval.as_dict()["metrics"] if m["outcome"] == "High"]
        evidence = {
            "verdict": verdict,
            "score": state.score,
            "failing_intervals": state.stage.failing_run,
            "comparison": state.comparison,
            # the release is the cause: its verdicts for the service and each tenant are
            # one incident (streams/incidents.py)
            "incident_key": f"release:{service}/{release}",
            "query": (
                "SELECT interval_start, verdict, score, canary_requests, baseline_requests, "
                f"metrics FROM {self._db}.canary_verdicts FINAL WHERE service = "
                f"{_sql(service)} AND release = {_sql(release)} AND tenant_id = {_sql(tenant)} "
                "ORDER BY interval_start"
            ),
        }
        fail = AlertSpec(
            FAIL, "critical", labels,
            Annotations(summary=f"canary {release} of {service}{who} fails against the baseline "
                        f"({', '.join(failing) or 'cumulative'}): roll back",
                        description=f"score {state.score:.0f}/100 after "
                        f"{state.stage.failing_run} failing intervals"),
            auto_rollback=True,
        )  # fmt: skip
        marginal = AlertSpec(
            MARGINAL, "medium", labels,
            Annotations(summary=f"canary {release} of {service}{who} is marginal "
                        f"({', '.join(failing) or 'score'})"),
        )  # fmt: skip
        if verdict == "Fail":
            await self._alerts.fire(fail, state.score, self.config.judge.marginal_score, at,
                                    evidence)  # fmt: skip
            await self._alerts.resolve(marginal, state.score, self.config.judge.pass_score, at)
        elif verdict == "Marginal":
            await self._alerts.fire(marginal, state.score, self.config.judge.pass_score, at,
                                    evidence)  # fmt: skip
        elif verdict == "Pass":
            await self._alerts.resolve(fail, state.score, self.config.judge.marginal_score, at)
            await self._alerts.resolve(marginal, state.score, self.config.judge.pass_score, at)

    def _refresh_gauge(self, now: int) -> None:
        """``vigil_canary_score{service,release}`` for live releases only (bounded)."""
        horizon = now - self.config.live_intervals * self.config.interval_ms
        gauge = self._metrics.canary_score
        for (service, release, tenant), state in list(self.releases.items()):
            if tenant:
                continue  # the gauge is per service (no tenant label: bounded)
            if state.last_interval < horizon:
                with contextlib.suppress(KeyError):
                    gauge.remove(service, release)
                continue
            if state.verdict and state.verdict != "Inconclusive":
                gauge.labels(service=service, release=release).set(state.score)


def stored_verdict_sql(database: str) -> str:
    """The latest stored verdict of ``{s}`` service, ``{r}`` release, ``{t}`` tenant, as
    :meth:`CanaryJudge.from_row` reads it. Cumulative counts are the stage's sums."""
    return (
        "SELECT argMax(verdict, interval_start), argMax(score, interval_start), "
        "argMax(failing_run, interval_start), toUnixTimestamp64Milli(max(interval_start)), "
        "toUnixTimestamp64Milli(min(interval_start)), sum(canary_requests), "
        "sum(baseline_requests), argMax(metrics, interval_start) "
        f"FROM {database}.canary_verdicts FINAL WHERE service = {{s:String}} "
        "AND release = {r:String} AND tenant_id = {t:String} HAVING count() > 0"
    )


def _iso(ms: int) -> str:
    return iso_z(_dt(ms))
