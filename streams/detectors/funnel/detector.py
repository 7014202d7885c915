"""The funnel detector's adapter: partitions, restarts, rows and the timely stage alerts.

Per partition of the events topic (producers key by tenant, so a tenant's persons live in
one partition) a :class:`~.engine.FunnelPartition` follows the journeys. Each tick writes
the journeys and cohorts that changed, judges the stages at the event-time marks the
watermark passed (``FunnelStageConversionLow``), and — at most every
``checkpoint_interval_s`` — a small checkpoint: the offset its state reflects, the
watermark, the last judged mark and the firing alerts.

Journeys live for hours or days, so they are not rebuilt by replaying Kafka: after a
restart (or a rewind) the partition's open journeys are rebuilt from ClickHouse — the
stored step events up to the checkpoint's offset, minus those flagged late — and the
cohort and conversion counters from the stored journey rows; records up to that offset
are then skipped, later ones continue as before. Reaching a step is idempotent (a
re-read event is a duplicate point), and the rows carry the same content, so the table
ends as an uninterrupted run leaves it. Commits are held behind the newest durable
checkpoint (the commit gate), which is what makes "stored up to the offset" true.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.alerts import Annotations
from schemas.fastpath import FAST_STRUCTS
from sinks.clickhouse import ClickHouseWriter
from sinks.sqltext import dt as _dt
from sinks.sqltext import sql_string as _sql
from streams.alerting import AlertPublisher, AlertSpec
from streams.detectors.funnel.engine import DAY_MS, NO_TIME, FunnelPartition, Judged
from streams.detectors.funnel.rules import FunnelConfig, duration_text, stage_conditions
from streams.gate import CommitGate
from streams.ingest import IngestResult
from streams.metrics import Metrics
from streams.stats import Evidence
from streams.transport import SourceBatch

log = logging.getLogger(__name__)

ANALYTICS = FAST_STRUCTS["analytics"]
ALERT = "FunnelStageConversionLow"
STATE_FORMAT = 1
OVERALL = "overall"


@dataclass(slots=True)
class _Part:
    topic: str
    partition: int
    engine: FunnelPartition
    next_offset: int = -1
    processed: int = -1
    replay_until: int = -1  # offsets <= this are in the restored state
    durable_safe: int = -1
    checkpointed: int = -2
    checkpoint_wall: float = 0.0
    last_input_wall_ms: int = 0
    #: the earliest event time the open state depends on, as of the last checkpoint
    floor: int = NO_TIME
    #: (funnel index, tenant, stage) -> when the firing episode started (event ms)
    firing: dict[tuple[int, str, int], int] = field(default_factory=dict)


class FunnelDetector:
    """See the module docstring. ``clock_ms`` is the wall clock (idle partitions)."""

    name = "funnels"

    def __init__(
        self,
        config: FunnelConfig,
        gamma: float,
        alerts: AlertPublisher,
        writer: ClickHouseWriter | None,
        metrics: Metrics,
        database: str,
        *,
        gate: CommitGate | None = None,
        consumer_group: str = "vigil",
        checkpoint_interval_s: float = 5.0,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self.gamma = gamma
        self._alerts = alerts
        self._writer = writer
        self._metrics = metrics
        self._db = database
        self._gate = gate
        self._group = consumer_group
        self._interval_s = checkpoint_interval_s
        self._clock_ms = clock_ms
        self._evidence = Evidence(confidence=config.confidence)
        self.parts: dict[int, _Part] = {}
        self.late_events = 0
        if gate is not None:
            gate.add_holder(self.first_needed_offset)

    def first_needed_offset(self, partition: int) -> int | None:
        part = self.parts.get(partition)
        if part is None or self._writer is None:
            return None
        return part.durable_safe

    def forget(self, partition: int) -> None:
        self.parts.pop(partition, None)

    # --- input ------------------------------------------------------------------------

    async def process(self, result: IngestResult, source: SourceBatch) -> None:
        part = self.parts.get(source.partition)
        if part is None or source.first_offset < part.next_offset:
            part = await self._restore(source.topic, source.partition)
        part.next_offset = source.last_offset + 1
        part.processed = max(part.processed, source.last_offset)
        part.last_input_wall_ms = self._clock_ms()
        engine = part.engine
        ts = result.ts_ms
        if not ts:
            return
        picked = result.by_type().get(ANALYTICS)
        if picked:
            names = self.config.step_events
            events = result.events
            offsets = result.offsets
            skip = part.replay_until
            start = 0
            for i in picked:
                ev: Any = events[i]
                if ev.event_name not in names or offsets[i] <= skip:
                    continue
                if i > start:  # the events before it move the watermark first
                    engine.observe(max(ts[start:i]))
                engine.feed(
                    ev.tenant_id,
                    ev.user_id_hash,
                    ev.event_name,
                    ev.properties,
                    ts[i],
                    event_id=ev.event_id,
                    offset=offsets[i],
                )
                engine.observe(ts[i])
                start = i + 1
            if start < len(ts):
                engine.observe(max(ts[start:]))
        else:
            engine.observe(max(ts))
        if engine.late:
            await self._flag_late(part)

    async def _flag_late(self, part: _Part) -> None:
        late, part.engine.late = part.engine.late, []
        self.late_events += len(late)
        self._metrics.funnel_late_events.inc(len(late))
        if self._writer is None:
            return
        await self._writer.add(
            {
                "funnel_late_events": {
                    "tenant_id": [x.tenant_id for x in late],
                    "event_id": [x.event_id for x in late],
                    "event_name": [x.event_name for x in late],
                    "ts": [x.ts_ms / 1000 for x in late],
                    "watermark": [x.watermark_ms / 1000 for x in late],
                    "src_partition": [part.partition] * len(late),
                    "src_offset": [x.offset for x in late],
                }
            }
        )

    # --- the tick -----------------------------------------------------------------------

    async def tick(self) -> None:
        now = self._clock_ms()
        idle_ms = self.config.idle_timeout_seconds * 1000
        persons = journeys = 0
        for part in list(self.parts.values()):
            engine = part.engine
            if now - part.last_input_wall_ms >= idle_ms and engine.watermark != NO_TIME:
                engine.advance_idle(now)  # an idle partition follows the clock
            judged = engine.advance()
            await self._write(part)
            await self._judge(part, judged)
            persons += len(engine.persons)
            journeys += engine.open_journeys()
        self._metrics.funnel_persons.set(persons)
        self._metrics.funnel_open_journeys.set(journeys)
        await self._checkpoint()

    async def _write(self, part: _Part) -> None:
        engine = part.engine
        rows, engine.rows = engine.rows, []
        cohorts = engine.take_cohort_rows(engine.watermark)
        if part.floor != NO_TIME:  # as of the last checkpoint (a walk over every person)
            engine.forget_cohorts(part.floor)
        if self._writer is None or not (rows or cohorts):
            return
        out: dict[str, dict[str, list[Any]]] = {}
        if rows:
            for r in rows:
                r["src_partition"] = part.partition
            out["funnel_progress"] = {k: [r[k] for r in rows] for k in rows[0]}
        if cohorts:
            for r in cohorts:
                r["src_partition"] = part.partition
            out["funnel_cohorts"] = {k: [r[k] for r in cohorts] for k in cohorts[0]}
        await self._writer.add(out)

    async def _judge(self, part: _Part, judged: Sequence[Judged]) -> None:
        funnels = self.config.definitions
        shown: dict[tuple[str, str], tuple[int, int]] = {}
        for j in judged:
            funnel = funnels[j.funnel]
            n_steps = len(funnel.steps)
            threshold = self.config.threshold(funnel, j.stage, j.tenant)
            if threshold is None:
                continue
            stage = OVERALL if j.stage == n_steps + 1 else funnel.steps[j.stage - 1].label
            seen = shown.get((funnel.name, stage), (0, 0))
            shown[(funnel.name, stage)] = (seen[0] + j.n, seen[1] + j.converted)
            key = (j.funnel, j.tenant, j.stage)
            if j.n < threshold.min_sample:
                continue  # too few to judge: the alert neither fires nor resolves
            decision, bound = self._evidence.share_below(j.converted, j.n, threshold.alert_below)
            spec = self._spec(funnel.name, stage, j, threshold.severity, threshold.alert_below)
            at = _dt(j.mark_ms)
            value = j.converted / j.n
            if decision == "fail":
                starts = part.firing.setdefault(key, j.mark_ms)
                await self._alerts.fire(
                    spec,
                    value,
                    threshold.alert_below,
                    at,
                    self._evidence_of(funnel.name, stage, j, threshold.alert_below, bound),
                    starts_at=_dt(starts),
                )
            elif decision == "pass" and key in part.firing:
                starts = part.firing.pop(key)
                await self._alerts.resolve(
                    spec, value, threshold.alert_below, at, starts_at=_dt(starts)
                )
        for (name, stage), (n, good) in shown.items():
            if n:
                self._metrics.funnel_stage_conversion.labels(funnel=name, stage=stage).set(good / n)

    def _spec(self, funnel: str, stage: str, j: Judged, severity: Any, limit: float) -> AlertSpec:
        labels = {"tenant_id": j.tenant, "funnel": funnel, "stage": stage}
        within = duration_text(j.within_ms) + (" (its observed p95)" if j.basis else "")
        note = Annotations(
            summary=f"{funnel} {stage} conversion of {j.tenant} below {limit:.0%}",
            description=(
                f"Of {j.n} journeys of {j.tenant} that reached the step before {stage} "
                f"between {_dt(j.since_ms).isoformat()} and {_dt(j.until_ms).isoformat()}, "
                f"{j.converted} ({j.converted / j.n:.1%}) reached {stage} within {within} "
                f"(threshold {limit:.0%})."
            ),
        )
        return AlertSpec(ALERT, severity, labels, note)

    def _evidence_of(
        self, funnel: str, stage: str, j: Judged, limit: float, bound: float
    ) -> dict[str, Any]:
        basis: dict[str, Any] = {}
        if j.basis is not None:  # X observed: where from
            since, until, converted = j.basis
            basis = {
                "within_observed": {
                    "p95_of_conversions": converted,
                    "previous_step_reached": [_dt(since).isoformat(), _dt(until).isoformat()],
                }
            }
        return {
            **basis,
            "funnel": funnel,
            "stage": stage,
            "reached_previous": j.n,
            "converted_within": j.converted,
            "conversion": j.converted / j.n,
            "upper_bound": bound,
            "threshold": limit,
            "within_seconds": j.within_ms / 1000,
            "period": [_dt(j.since_ms).isoformat(), _dt(j.until_ms).isoformat()],
            "query": self.stage_sql(funnel, j),
        }

    def stage_sql(self, funnel: str, j: Judged) -> str:
        """SQL over ``funnel_progress`` that reproduces a judged stage's counts."""
        n_steps = len(self.config.definitions[j.funnel].steps)
        prev, cur = (1, n_steps) if j.stage == n_steps + 1 else (j.stage - 1, j.stage)
        judged, converted = stage_conditions(prev, cur, j.since_ms, j.until_ms, j.within_ms)
        return (
            f"SELECT count() AS reached_previous, countIf({converted}) AS converted_within "
            f"FROM {self._db}.funnel_progress FINAL WHERE tenant_id = {_sql(j.tenant)} "
            f"AND funnel = {_sql(funnel)} AND {judged}"
        )

    # --- checkpoints and restarts -------------------------------------------------------

    async def _checkpoint(self, force: bool = False) -> None:
        if self._writer is None:
            return
        wall = time.monotonic()
        for part in list(self.parts.values()):
            if part.processed == part.checkpointed:
                continue
            if not force and wall - part.checkpoint_wall < self._interval_s:
                continue
            part.checkpointed = part.processed
            part.checkpoint_wall = wall
            engine = part.engine
            part.floor = engine.open_floor()
            state = {
                "format": STATE_FORMAT,
                "max_ts": engine.max_ts,
                "watermark": engine.watermark,
                "evaluated": engine.evaluated_ms,
                "first": engine.first_watermark,
                "floor": part.floor,
                "firing": [[fi, t, s, at] for (fi, t, s), at in part.firing.items()],
            }
            row: dict[str, list[Any]] = {
                "consumer_group": [self._group],
                "topic": [part.topic],
                "partition": [part.partition],
                "processed_offset": [part.processed],
                "state": [orjson.dumps(state).decode()],
            }
            await self._writer.add(
                {"funnel_checkpoints": row}, on_written=self._durable(part, part.processed)
            )

    def _durable(self, part: _Part, processed: int) -> Callable[[], None]:
        def durable() -> None:
            part.durable_safe = max(part.durable_safe, processed + 1)
            if self._gate is not None:
                self._gate.release(part.partition)

        return durable

    async def close(self) -> None:
        await self._checkpoint(force=True)

    async def _restore(self, topic: str, partition: int) -> _Part:
        part = _Part(topic, partition, FunnelPartition(self.config, self.gamma))
        if self._writer is not None:
            rows = await self._writer.query_rows(
                "SELECT processed_offset, state "
                f"FROM {self._db}.funnel_checkpoints FINAL WHERE consumer_group = "
                "{g:String} AND topic = {t:String} AND partition = {p:UInt32} "
                "ORDER BY processed_offset DESC LIMIT 1",
                {"g": self._group, "t": topic, "p": partition},
            )
            if rows:
                processed, raw = rows[0]
                state = orjson.loads(raw)
                if state.get("format") == STATE_FORMAT:
                    await self._rebuild(part, int(processed), state)
                else:
                    log.warning("funnels: %s[%d] checkpoint of another layout", topic, partition)
        self.parts[partition] = part
        return part

    async def _rebuild(self, part: _Part, processed: int, state: dict[str, Any]) -> None:
        assert self._writer is not None
        engine = part.engine
        started = time.monotonic()
        floor = int(state["floor"])
        watermark = int(state["watermark"])
        names = sorted(self.config.step_events)
        events = await self._writer.query_rows(
            "SELECT tenant_id, user_id_hash, event_name, properties, "
            f"toUnixTimestamp64Milli(ts) FROM {self._db}.events "
            "WHERE src_topic = {t:String} AND src_partition = {p:UInt32} "
            "AND src_offset <= {o:Int64} AND kind = 'analytics' "
            "AND event_name IN {names:Array(String)} AND user_id_hash != '' "
            "AND ts >= fromUnixTimestamp64Milli({floor:Int64}) AND event_id NOT IN ("
            f"SELECT event_id FROM {self._db}.funnel_late_events WHERE src_partition = "
            "{p:UInt32} AND ts >= fromUnixTimestamp64Milli({floor:Int64})) "
            "ORDER BY src_offset, src_line",
            {"t": part.topic, "p": part.partition, "o": processed, "names": names, "floor": floor},
        )
        for tenant, person, name, props, ts in events:
            engine.feed(
                tenant, person, name, orjson.loads(props or "{}"), int(ts), check_late=False
            )
        # the counters: the stored rows of every journey that can still move them
        horizon = max((f.window_ms for f in self.config.definitions), default=0)
        since = min(
            floor - floor % DAY_MS,
            watermark - 2 * horizon - self.config.period_ms - 2 * self.config.every_ms,
        )
        stored = await self._writer.query_rows(
            "SELECT tenant_id, funnel, user_id_hash, toUnixTimestamp64Milli(entered_at), "
            "level, reached_ms, toString(status), toUnixTimestamp64Milli(closes_at) "
            f"FROM {self._db}.funnel_progress FINAL WHERE src_partition = {{p:UInt32}} "
            "AND entered_at >= fromUnixTimestamp64Milli({since:Int64})",
            {"p": part.partition, "since": since},
        )
        index = {f.name: i for i, f in enumerate(self.config.definitions)}
        for tenant, name, person, entered, level, reached, status, closes in stored:
            fi = index.get(name)
            if fi is None:
                continue
            summary = (int(level), tuple(int(x) for x in reached), str(status))
            engine.load_summary(fi, tenant, int(entered), summary)
            if int(closes) >= watermark:  # open at the checkpoint: the engine will see it
                engine.prior[(tenant, fi, person, int(entered))] = summary
        engine.max_ts = int(state["max_ts"])
        engine.watermark = watermark
        engine.evaluated_ms = int(state["evaluated"])
        engine.first_watermark = int(state.get("first", state["watermark"]))
        engine.settle()
        part.firing = {(int(f), str(t), int(s)): int(at) for f, t, s, at in state["firing"]}
        part.processed = part.replay_until = part.checkpointed = processed
        part.durable_safe = processed + 1
        log.info(
            "funnels: %s[%d] rebuilt from ClickHouse at offset %d: %d step events, %d "
            "journey rows, %d persons open (%.2fs)",
            part.topic,
            part.partition,
            processed,
            len(events),
            len(stored),
            len(engine.persons),
            time.monotonic() - started,
        )

    def open_journeys(self) -> int:
        return sum(p.engine.open_journeys() for p in self.parts.values())
