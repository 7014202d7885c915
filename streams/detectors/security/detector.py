"""The security detector's adapter: partitions, checkpoints, forwarding, alerts and rows.

Two stages, each a set of partitions running :class:`~.engine.SecurityEngine`:

* :class:`SecurityDetector` — fed every batch of the events topic by the pipeline. It
  evaluates the rules grouped by tenant and the built-in cross-tenant rule in place, and
  forwards the matching events of rules grouped across tenants (IP, provider, platform)
  to the internal *groups* topic, keyed by group; each tick it also sends every groups
  partition its partitions' progress (watermark records).
* :class:`SecurityGroups` — fed the groups topic; evaluates the rules grouped across
  tenants with an aligned watermark (the slowest source's). Every event of one group is
  in one partition there, so these rules are exact with any number of workers.

Recovery: each partition's engine state is checkpointed to ClickHouse
(``security_checkpoints``) at most every ``checkpoint_interval_s``, with the last offset
it reflects; the commit gate holds the partition's commits behind the newest durable
checkpoint, so Kafka never waits for a whole window (a 10-minute window costs one small
row, not 10 minutes of re-reading). After a restart (or a rewind) the newest checkpoint
is loaded and records it already reflects are skipped: the episodes, rows and alerts
that follow are those of an uninterrupted run. Forwarded records re-sent after a
restart are recognised by the windows (same event id and time) and count once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.alerts import Annotations
from sinks.clickhouse import ClickHouseWriter
from sinks.sqltext import dt as _dt
from sinks.sqltext import sql_string as _sql
from sinks.sqltext import sql_time as _sql_time
from streams.alerting import AlertPublisher, AlertSpec
from streams.catalogue import lookup
from streams.detectors.security.engine import (
    CROSS_TENANT,
    CROSS_TENANT_RULE,
    PER_MESSAGE,
    Changes,
    Forward,
    SecurityEngine,
    Track,
    encode_forwards,
    encode_watermark,
)
from streams.detectors.security.rules import SecurityConfig
from streams.detectors.security.window import Change, Episode
from streams.gate import CommitGate
from streams.ingest import IngestResult
from streams.metrics import Metrics
from streams.transport import SourceBatch

log = logging.getLogger(__name__)

#: a message for the groups topic: (partition, value); the partition is chosen by the
#: sender (:meth:`Forward.route`, or every partition for a watermark record)
Outgoing = tuple[int, bytes]
#: send messages to the groups topic and wait for the broker's ack
Forwarder = Callable[[list[Outgoing]], Awaitable[None]]


@dataclass(slots=True)
class _Part:
    topic: str
    partition: int
    engine: SecurityEngine
    next_offset: int = -1  # first offset of the next batch, if contiguous
    processed: int = -1  # last offset fed
    replay_until: int = -1  # offsets <= this are in the restored state
    durable_safe: int = -1  # first offset still needed, per the newest durable checkpoint
    checkpointed: int = -2  # processed offset of the newest checkpoint written
    checkpoint_wall: float = 0.0
    last_input_wall_ms: int = 0
    reported_max_ts: int | None = None  # progress last sent to the groups partitions
    #: progress that may be reported: every record forwarded up to it is delivered (the
    #: timer must not announce a time whose forwards are still being sent)
    forwarded_max_ts: int | None = None


class _Stage:
    """What both stages share: partitions restored from checkpoints, ticks, output."""

    name = "security"
    spanning = False

    def __init__(
        self,
        config: SecurityConfig,
        alerts: AlertPublisher,
        writer: ClickHouseWriter | None,
        metrics: Metrics,
        database: str,
        *,
        gate: CommitGate | None = None,
        consumer_group: str = "vigil",
        checkpoint_interval_s: float = 5.0,
        sources: int = 1,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self._sources = sources
        self._alerts = alerts
        self._writer = writer
        self._metrics = metrics
        self._database = database
        self._gate = gate
        self._group = consumer_group
        self._interval_s = checkpoint_interval_s
        self._clock_ms = clock_ms
        self.parts: dict[int, _Part] = {}
        self.late_events = 0
        self._alertname_of = {c.name: c.alertname for c in config.correlations}
        if gate is not None:
            gate.add_holder(self.first_needed_offset)

    # --- the gate's question --------------------------------------------------------------

    def first_needed_offset(self, partition: int) -> int | None:
        part = self.parts.get(partition)
        if part is None or self._writer is None:
            return None
        return part.durable_safe

    # --- partitions -----------------------------------------------------------------------

    async def _part(self, topic: str, partition: int, first_offset: int, last_offset: int) -> _Part:
        part = self.parts.get(partition)
        if part is not None and first_offset < part.next_offset:
            log.info(
                "security: %s[%d] rewound to offset %d (expected %d): restoring",
                topic,
                partition,
                first_offset,
                part.next_offset,
            )
        if part is None or first_offset < part.next_offset:
            part = await self._restore(topic, partition)
        part.next_offset = last_offset + 1
        part.processed = max(part.processed, last_offset)
        part.last_input_wall_ms = self._clock_ms()
        return part

    async def _restore(self, topic: str, partition: int) -> _Part:
        part = _Part(topic, partition, SecurityEngine(self.config, self.spanning, self._sources))
        processed = await self._load_checkpoint(part)
        if processed is None:
            log.info("security: %s[%d] starts empty (no checkpoint)", topic, partition)
        else:
            part.processed = part.replay_until = part.checkpointed = processed
            part.durable_safe = processed + 1
            log.info(
                "security: %s[%d] restored from the checkpoint at offset %d",
                topic,
                partition,
                processed,
            )
        self.parts[partition] = part  # only once restored: a failed read is retried
        return part

    async def _load_checkpoint(self, part: _Part) -> int | None:
        """Load the partition's newest checkpoint into its engine; the offset it reflects,
        or None (no checkpoint, or one of an older layout: the partition starts empty
        from its committed offset)."""
        if self._writer is None:
            return None
        rows = await self._writer.query_rows(
            "SELECT processed_offset, state "
            f"FROM {self._database}.security_checkpoints WHERE consumer_group = "
            "{g:String} AND topic = {t:String} AND partition = {p:UInt32} "
            "ORDER BY processed_offset DESC LIMIT 1",
            {"g": self._group, "t": part.topic, "p": part.partition},
        )
        if not rows:
            return None
        processed, state = rows[0]
        try:
            part.engine.load(state)
        except ValueError as exc:
            log.warning(
                "security: %s[%d] checkpoint at offset %d not loaded (%s)",
                part.topic,
                part.partition,
                processed,
                exc,
            )
            part.engine = SecurityEngine(self.config, self.spanning, self._sources)
            return None
        return int(processed)

    def forget(self, partition: int) -> None:
        """The partition was revoked: its next owner restores it from the checkpoint."""
        self.parts.pop(partition, None)
        if self._gate is not None:
            self._gate.forget(partition)

    # --- time -----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Decide what the watermarks have made certain, publish it, checkpoint."""
        now = self._clock_ms()
        changes: Changes = []
        for part in list(self.parts.values()):
            self._before_advance(part, now)
            part.engine.advance(changes)
        await self._before_publish()
        await self._publish(changes)
        self._metrics.security_active_groups.set(self.active_groups())
        await self._checkpoint()

    def _before_advance(self, part: _Part, now_ms: int) -> None:
        return None

    async def _before_publish(self) -> None:
        return None

    async def _flush(self) -> None:
        """Wait until what the partitions have sent on is delivered."""
        return None

    async def _checkpoint(self, force: bool = False) -> None:
        """A checkpoint of every partition due one: the states are taken first (each
        with the offset it reflects), then everything they sent on is delivered, then
        they are written — a checkpoint never covers a record whose forwards could
        still be lost."""
        if self._writer is None:
            return
        wall = time.monotonic()
        due: list[tuple[_Part, int, str]] = []
        for part in list(self.parts.values()):
            if part.processed == part.checkpointed:
                continue
            if not force and wall - part.checkpoint_wall < self._interval_s:
                continue
            part.checkpointed = part.processed
            part.checkpoint_wall = wall
            due.append((part, part.processed, part.engine.dump().decode()))
        if not due:
            return
        await self._flush()
        for part, processed, state in due:
            row: dict[str, list[Any]] = {
                "consumer_group": [self._group],
                "topic": [part.topic],
                "partition": [part.partition],
                "processed_offset": [processed],
                "state": [state],
            }
            await self._writer.add(
                {"security_checkpoints": row}, on_written=self._durable(part, processed)
            )

    def _durable(self, part: _Part, processed: int) -> Callable[[], None]:
        def durable() -> None:
            part.durable_safe = max(part.durable_safe, processed + 1)
            if self._gate is not None:
                self._gate.release(part.partition)

        return durable

    async def close(self) -> None:
        """On a clean stop: a checkpoint of every partition."""
        await self._checkpoint(force=True)

    def active_groups(self) -> int:
        return sum(p.engine.active_groups() for p in self.parts.values())

    async def _late(self, n: int, engine: SecurityEngine) -> None:
        """Count late events, and flag each (a ``security_late_events`` row per rule)."""
        if n:
            self.late_events += n
            self._metrics.security_late_events.inc(n)
        if not engine.flagged:
            return
        flagged, engine.flagged = engine.flagged, []
        if self._writer is None:
            return
        alertname = self._alertname_of
        rows: dict[str, list[Any]] = {
            "rule": [f.rule for f in flagged],
            "alertname": [alertname.get(f.rule, CROSS_TENANT) for f in flagged],
            "tenant_id": [f.tenant_id for f in flagged],
            "group_key": ["|".join(f.group) for f in flagged],
            "event_id": [f.event_id for f in flagged],
            "ts": [f.ts_ms / 1000 for f in flagged],
            "watermark": [f.watermark_ms / 1000 for f in flagged],
        }
        await self._writer.add({"security_late_events": rows})

    # --- output ---------------------------------------------------------------------------

    def _traces(self, event_ids: list[str]) -> list[str]:
        """The trace ids of the sample events the engines saw cross tenants."""
        found: list[str] = []
        for part in self.parts.values():
            traces = part.engine.traces
            found.extend(traces[i] for i in event_ids if i in traces)
        return list(dict.fromkeys(found))[:10]

    async def _publish(self, changes: Changes) -> None:
        if not changes:
            return
        rows: list[dict[str, Any]] = []
        for track, change in changes:
            spec, threshold, window_s = self._spec(track, change.episode)
            episode = change.episode
            at = _dt(change.at_ms)
            starts = _dt(episode.first_hold_ms)
            if change.action == "open":  # its start is certain: the firing row
                rows.append(self._row(track, change, spec, threshold, window_s))
                continue
            if change.action == "fire":
                evidence = {
                    "window_seconds": window_s,
                    "count": episode.peak,
                    "threshold": threshold,
                    "group": dict(spec.labels),
                    "sample_event_ids": episode.sample_ids,
                    "trace_ids": self._traces(episode.sample_ids),
                    "first_event": _dt(episode.first_event_ms).isoformat(),
                    "query": self._query(track, episode),
                }
                await self._alerts.fire(
                    spec, episode.peak, threshold, at, evidence, starts_at=starts
                )
            else:
                if change.alert:  # (not while another episode of the group is firing)
                    await self._alerts.resolve(spec, episode.peak, threshold, at, starts_at=starts)
                rows.append(self._row(track, change, spec, threshold, window_s))
        if self._writer is not None and rows:
            columns = {name: [r[name] for r in rows] for name in rows[0]}
            await self._writer.add({"security_detections": columns})

    def _spec(self, track: Track, episode: Episode) -> tuple[AlertSpec, int, float]:
        corr = track.correlation
        if corr is None:
            actor, resource, where, blocked = episode.group
            labels = {
                "actor_tenant_id": actor,
                "resource_tenant_id": resource,
                "target": where,
                "blocked": blocked,
                "tenant_id": resource,
            }
            crossed = "" if blocked == "true" else " — NOT blocked: data crossed tenants"
            summary = f"{actor} accessed {resource}'s {where or 'data'}{crossed}"
            entry = lookup(CROSS_TENANT)
            note = Annotations(
                summary=summary,
                description=(
                    f"{episode.peak} cross-tenant access(es) in one burst; every attempt is "
                    "an isolation failure upstream even when blocked."
                ),
            )
            return AlertSpec(CROSS_TENANT, entry.severity, labels, note), 0, 0.0
        entry = lookup(corr.alertname)
        labels = dict(zip(corr.group_by, episode.group, strict=True))
        if episode.tag:
            labels["ip_prefix"] = episode.tag
        labels["rule"] = corr.name
        shown = ", ".join(f"{k}={v}" for k, v in labels.items() if k != "rule") or "all"
        if corr.condition is None:
            steps = " then " if corr.type == "temporal_ordered" else " and "
            summary = f"{corr.alertname}: {steps.join(corr.rules)} within {corr.timespan} ({shown})"
            description = (
                f"{corr.name}: {corr.type} of {', '.join(corr.rules)} within {corr.timespan} "
                f"per {', '.join(corr.group_by) or 'platform'}."
            )
        else:
            field = corr.condition.field
            what = f"distinct {field}" if field else "events"
            summary = f"{corr.alertname}: {episode.peak} {what} in {corr.timespan} ({shown})"
            description = (
                f"{corr.name}: {corr.condition.op} {track.threshold} {what} within "
                f"{corr.timespan} per {', '.join(corr.group_by) or 'platform'}; peak "
                f"{episode.peak}."
            )
        note = Annotations(summary=summary, description=description)
        return (
            AlertSpec(corr.alertname, entry.severity, labels, note),
            track.threshold,
            corr.timespan_ms / 1000,
        )

    def _row(
        self, track: Track, change: Change, spec: AlertSpec, threshold: int, window_s: float
    ) -> dict[str, Any]:
        episode = change.episode
        ident = f"{spec.fingerprint}|{episode.first_hold_ms}"
        return {
            "episode_id": hashlib.sha256(ident.encode()).hexdigest()[:32],
            "alertname": spec.alertname,
            "rule": track.correlation.name if track.correlation else CROSS_TENANT_RULE,
            "status": "resolved" if change.action == "resolve" else "firing",
            "tenant_id": spec.labels.get("tenant_id", ""),
            "group_key": "|".join(episode.group),
            "labels": dict(spec.labels),
            "first_event": episode.first_event_ms / 1000,
            "first_hold": episode.first_hold_ms / 1000,
            "last_hold": episode.last_hold_ms / 1000,
            "resolved_at": change.at_ms / 1000 if change.action == "resolve" else 0,
            "peak": episode.peak,
            "threshold": threshold,
            "window_s": window_s,
            "sample_event_ids": list(episode.sample_ids),
            "fingerprint": spec.fingerprint,
            "version": 2 if change.action == "resolve" else 1,
        }

    def _query(self, track: Track, episode: Episode) -> str:
        """SQL over the stored events behind an episode."""
        corr = track.correlation
        if corr is None or corr.condition is None:
            return (
                f"SELECT ts, tenant_id, kind, event_id FROM {self._database}.events "
                f"WHERE event_id IN ({', '.join(_sql(i) for i in episode.sample_ids)}) "
                "ORDER BY ts"
            )
        start = _sql_time(episode.first_event_ms)
        end = _sql_time(episode.last_hold_ms)
        kinds = sorted({r.kind for r in self.config.rules if r.name in corr.rules})
        where = [f"kind IN ({', '.join(_sql(k) for k in kinds)})"]
        where += [
            f"{name} = {_sql(value)}"
            for name, value in zip(corr.group_by, episode.group, strict=True)
            if name in _EVENT_COLUMNS
        ]
        return (
            f"SELECT ts, tenant_id, kind, event_id FROM {self._database}.events "
            f"WHERE {' AND '.join(where)} AND ts BETWEEN {start} AND {end} ORDER BY ts"
        )


#: grouping fields that are columns of the events table
_EVENT_COLUMNS = frozenset(
    {"tenant_id", "ip_hash", "route", "service", "user_id_hash", "endpoint", "attack_type"}
)


class SecurityDetector(_Stage):
    """The events stage (see the module docstring). Without a ``forward`` (unit tests,
    benchmarks) the rules grouped across tenants are evaluated by ``groups`` in process,
    through :func:`loopback`."""

    def __init__(
        self,
        config: SecurityConfig,
        alerts: AlertPublisher,
        writer: ClickHouseWriter | None,
        metrics: Metrics,
        database: str,
        *,
        forward: Forwarder | None = None,
        group_partitions: int = 1,
        gate: CommitGate | None = None,
        consumer_group: str = "vigil",
        checkpoint_interval_s: float = 5.0,
        idle_timeout_s: float = 30.0,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        super().__init__(
            config,
            alerts,
            writer,
            metrics,
            database,
            gate=gate,
            consumer_group=consumer_group,
            checkpoint_interval_s=checkpoint_interval_s,
            clock_ms=clock_ms,
        )
        self.groups: SecurityGroups | None = None
        self._sender: OrderedSender | None = None
        self._assigned: dict[int, int] = {}  # partition -> wall time of its assignment
        if forward is None:
            self.groups = SecurityGroups(
                config, alerts, writer, metrics, database, consumer_group=consumer_group,
                checkpoint_interval_s=checkpoint_interval_s,
            )  # fmt: skip
            forward = loopback(self.groups, group_partitions)
            self._send: Forwarder = forward  # in process: delivered before process returns
        else:
            self._sender = OrderedSender(forward)
            self._send = self._sender.submit
        self._forward = forward
        self._group_partitions = group_partitions
        self._idle_ms = int(idle_timeout_s * 1000)

    async def process(self, result: IngestResult, source: SourceBatch) -> None:
        part = await self._part(
            source.topic, source.partition, source.first_offset, source.last_offset
        )
        engine = part.engine
        changes: Changes = []
        forwards: list[Forward] = []
        late = 0
        skip = part.replay_until
        #: groups partition -> forwards bound for it, each with the partition's progress
        bound: dict[int, list[tuple[Forward, int]]] = {}
        kinds = engine.kinds
        start = engine.max_ts
        top = -(2**62) if start is None else start
        for event, ts, offset in zip(result.events, result.ts_ms, result.offsets, strict=True):
            if offset <= skip:
                continue  # reflected in the restored state
            if ts > top:
                top = ts
            kind = event.kind
            if kind not in kinds:
                continue  # no rule looks at it: it only moves the watermark (top)
            engine.max_ts = top
            if engine.feed(event, ts, changes, forwards, kind):
                late += 1
            if forwards:
                for f in forwards:
                    bound.setdefault(f.route(self._group_partitions), []).append((f, top))
                forwards.clear()
        out: list[Outgoing] = []
        for target, entries in sorted(bound.items()):
            for k in range(0, len(entries), PER_MESSAGE):
                chunk = entries[k : k + PER_MESSAGE]
                out.append((target, encode_forwards(chunk, part.partition, self._sources)))
        if start is not None or top > -(2**62):
            engine.max_ts = top
        await self._late(late, engine)
        reached = engine.max_ts
        if out:
            await self._send(out)  # in order; the progress reported below goes after it
        if reached is not None and (
            part.forwarded_max_ts is None or reached > part.forwarded_max_ts
        ):
            part.forwarded_max_ts = reached
        await self._publish(changes)

    def _before_advance(self, part: _Part, now_ms: int) -> None:
        if now_ms - part.last_input_wall_ms >= self._idle_ms:
            part.engine.follow_clock(now_ms)  # nothing in flight: idle for a while
            part.forwarded_max_ts = part.engine.max_ts

    def assigned(self, partitions: Sequence[int], total: int | None = None) -> None:
        """Partitions assigned to this worker: one that stays empty for the idle timeout
        reports the wall clock to the groups partitions (which wait for every source)."""
        now = self._clock_ms()
        for p in partitions:
            self._assigned.setdefault(p, now)
        self._sources = max(self._sources, total or 0, *(p + 1 for p in partitions))

    def forget(self, partition: int) -> None:
        self._assigned.pop(partition, None)
        super().forget(partition)

    async def _before_publish(self) -> None:
        """Tell every groups partition how far each events partition has come."""
        out: list[Outgoing] = []
        now = self._clock_ms()
        for p, since in self._assigned.items():
            if p not in self.parts and now - since >= self._idle_ms:
                record = encode_watermark(p, now, self._sources)
                out.extend((g, record) for g in range(self._group_partitions))
        for part in self.parts.values():
            max_ts = part.forwarded_max_ts
            if max_ts is None or max_ts == part.reported_max_ts:
                continue
            part.reported_max_ts = max_ts
            record = encode_watermark(part.partition, max_ts, self._sources)
            out.extend((g, record) for g in range(self._group_partitions))
        if out:
            await self._send(out)

    async def _flush(self) -> None:
        if self._sender is not None:
            await self._sender.flush()

    async def tick(self) -> None:
        await super().tick()
        if self.groups is not None:
            await self.groups.tick()

    async def close(self) -> None:
        await super().close()
        if self.groups is not None:
            await self.groups.close()

    def active_groups(self) -> int:
        own = super().active_groups()
        return own + (self.groups.active_groups() if self.groups is not None else 0)


class SecurityGroups(_Stage):
    """The groups stage: rules grouped across tenants, over the forwarded records."""

    spanning = True

    async def process(self, source: SourceBatch) -> None:
        await self.process_records(
            source.topic,
            source.partition,
            source.first_offset,
            source.last_offset,
            [(r.offset, r.value) for r in source.records],
        )

    async def process_records(
        self,
        topic: str,
        partition: int,
        first_offset: int,
        last_offset: int,
        records: Sequence[tuple[int, bytes | None]],
    ) -> None:
        part = await self._part(topic, partition, first_offset, last_offset)
        engine = part.engine
        changes: Changes = []
        late = 0
        for offset, value in records:
            if offset <= part.replay_until or not value:
                continue
            try:
                late += engine.feed_message(orjson.loads(value), changes)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                # only Vigil writes this topic: a bad record is a bug, not input
                log.error(
                    "security groups: bad record at %s[%d]@%d: %r", topic, partition, offset, exc
                )
        await self._late(late, engine)
        await self._publish(changes)


class OrderedSender:
    """Records for the groups topic, delivered in submission order without holding up
    the batch that produced them: each submission is sent (and acknowledged) after the
    previous one, in the background, so the ingest loop does not wait a broker round
    trip per batch. ``flush`` waits
    for everything submitted so far (checkpoints do, so they only cover delivered
    records); more than ``max_pending`` submissions in flight make ``submit`` wait."""

    def __init__(self, forward: Forwarder, max_pending: int = 32) -> None:
        self._forward = forward
        self._max = max_pending
        self._tail: asyncio.Future[None] | None = None
        self._pending = 0

    async def submit(self, records: list[Outgoing]) -> None:
        if self._pending >= self._max and self._tail is not None:
            await asyncio.shield(self._tail)
        self._pending += 1
        self._tail = asyncio.ensure_future(self._after(self._tail, records))

    async def _after(self, previous: asyncio.Future[None] | None, records: list[Outgoing]) -> None:
        # (the publisher retries until the broker takes the records: it raises only on a
        # bug, which must not stop the records queued behind, so neither does this)
        try:
            if previous is not None:
                await previous
            await self._forward(records)
        except Exception:
            log.exception("security: forwarding %d record(s) failed", len(records))
        finally:
            self._pending -= 1

    async def flush(self) -> None:
        if self._tail is not None:
            await asyncio.shield(self._tail)


def loopback(groups: SecurityGroups, partitions: int, topic: str = "loopback") -> Forwarder:
    """A forwarder that hands the records straight to ``groups`` (no broker), numbered
    like a topic's offsets."""
    offsets = [0] * partitions

    async def forward(records: list[Outgoing]) -> None:
        by_partition: dict[int, list[tuple[int, bytes | None]]] = {}
        for p, value in records:
            by_partition.setdefault(p, []).append((offsets[p], value))
            offsets[p] += 1
        for p, batch in sorted(by_partition.items()):
            await groups.process_records(topic, p, batch[0][0], batch[-1][0], batch)

    return forward
