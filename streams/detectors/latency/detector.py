"""Latency and error-rate SLOs: event-time windows, sketches, SLO rules, recovery.

Per partition of the events topic (producers key by tenant, so a tenant's traffic --
and every key of it -- lives in one partition):

* ``process`` adds each ``http.request`` to the pane of its (tenant, service, route,
  cohort -- "" unless the event carries one) in
  its open sample, or -- when the partition's watermark has already passed the sample's
  end -- to a *late* accumulator, counted and stored flagged ``late``;
* ``tick`` (a timer, every ``VIGIL_WINDOW_TICK_S``) closes every sample the watermark
  has passed: pane, sample and tenant-wide rows, SLO verdicts, alert transitions; closes
  rollups (1 min, 5 min) the same way; and writes a *checkpoint* (processed offset,
  watermark, SLO streaks) in the same writer call as the rows;
* the commit gate holds each batch's acknowledgement until a durable checkpoint says no
  open sample needs it, so offsets are committed only behind the oldest open window;
* after a restart (or any rewind of a partition) the checkpoint is loaded: replayed
  records whose sample was already closed are skipped (they are stored), the others
  rebuild the open samples; rollups and the error-budget history are reloaded from the
  sample rows already in ClickHouse. The rows and alerts that follow are the ones an
  uninterrupted run produces.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from schemas.alerts import Annotations
from schemas.fastpath import FAST_STRUCTS
from sinks.clickhouse import ClickHouseWriter
from sinks.sqltext import dt as _dt
from sinks.sqltext import sql_string as _sql
from sinks.sqltext import sql_time as _sql_time
from streams.alerting import AlertPublisher, AlertSpec
from streams.detectors.latency.rows import Rows
from streams.detectors.latency.sketch import Sketch, bucket_indices
from streams.detectors.latency.slo import (
    ALL,
    BudgetTracker,
    Key,
    Sample,
    SloConfig,
    SloEvaluator,
    Transition,
    tenant_key,
    text_key,
)
from streams.detectors.latency.state import OpenSample, PartitionState, Stats
from streams.detectors.latency.windows import (
    NO_WATERMARK,
    Watermark,
    WindowSpec,
    window_end,
    window_start,
)
from streams.gate import CommitGate
from streams.ingest import IngestResult
from streams.metrics import Metrics
from streams.transport import SourceBatch

log = logging.getLogger(__name__)

HTTP_REQUEST = FAST_STRUCTS["http.request"]
#: an event's key as decoded: the cohort is None when the event carries none (normalised
#: to "" by :func:`_key` where the key is kept)
_KEY = attrgetter("tenant_id", "service", "route", "cohort")
_STATUS = attrgetter("status")
_DURATION = attrgetter("duration_ms")
#: closed samples without traffic examined per tick for declared minimums (bounds work
#: after a long gap)
MAX_EMPTY_SAMPLES = 120
MAX_KEY_IDS = 200_000


_RawKey = tuple[str, str, str, str | None]


def _key(raw: _RawKey) -> Key:
    cohort = raw[3]
    return (raw[0], raw[1], raw[2], cohort) if cohort is not None else (raw[0], raw[1], raw[2], "")


class LatencyDetector:
    """See the module docstring. ``clock_ms`` is the wall clock (idle partitions)."""

    name = "latency"

    def __init__(
        self,
        config: SloConfig,
        gamma: float,
        writer: ClickHouseWriter,
        alerts: AlertPublisher,
        gate: CommitGate,
        metrics: Metrics,
        database: str,
        consumer_group: str,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self.spec: WindowSpec = config.windows.spec()
        self.gamma = gamma
        self._writer = writer
        self._alerts = alerts
        self._gate = gate
        self._metrics = metrics
        self._db = database
        self._group = consumer_group
        self._clock_ms = clock_ms
        self._parts: dict[int, PartitionState] = {}
        #: partition → (topic, the query reading the checkpoints of newly assigned ones)
        self._prefetched: dict[int, tuple[str, asyncio.Task[dict[int, tuple[Any, ...]]]]] = {}
        #: decoded key -> id, a per-batch grouping aid (reset when large); ids name keys
        self._key_ids: dict[_RawKey, int] = {}
        self._id_keys: list[Key] = []
        gate.add_holder(self.first_needed_offset)

    # --- the gate's question ------------------------------------------------------

    def first_needed_offset(self, partition: int) -> int | None:
        part = self._parts.get(partition)
        return None if part is None else part.durable_safe

    # --- input ----------------------------------------------------------------------

    async def process(self, result: IngestResult, source: SourceBatch) -> None:
        part = self._parts.get(source.partition)
        if part is None or source.first_offset < part.next_offset:
            part = await self._restore(source.topic, source.partition, source.first_offset)
        part.next_offset = source.last_offset + 1
        part.processed = max(part.processed, source.last_offset)
        part.last_input_wall_ms = self._clock_ms()
        events = result.events
        picked = result.by_type().get(HTTP_REQUEST)
        if picked is None:
            return
        if len(picked) == len(events):  # the common case: every event, no picking
            self._add(part, events, result, None)
        else:
            self._add(part, [events[i] for i in picked], result, picked)

    def _add(
        self,
        part: PartitionState,
        http: Sequence[Any],
        result: IngestResult,
        picked: Sequence[int] | None,
    ) -> None:
        """Vectorised where it can be: the watermark before each event, lateness and the
        replay skip are numpy expressions; events are then grouped by (pane, key), and each
        group's counts, status classes, max and buckets are added in one step."""
        spec = self.spec
        n = len(http)
        keys: list[_RawKey] = list(map(_KEY, http))
        status = np.fromiter(map(_STATUS, http), dtype=np.int64, count=n)
        duration = np.fromiter(map(_DURATION, http), dtype=np.float64, count=n)
        if picked is None:  # every event of the batch
            ts = np.array(result.ts_ms, dtype=np.int64)
            offsets = np.array(result.offsets, dtype=np.int64)
        else:
            ts = np.array([result.ts_ms[i] for i in picked], dtype=np.int64)
            offsets = np.array([result.offsets[i] for i in picked], dtype=np.int64)
        buckets = bucket_indices(duration, self.gamma)
        end = window_end(ts, spec.sample_ms)
        wm = part.wm
        # closed before the restart: already stored
        skip = (offsets <= part.replay_until) & (end <= part.replay_wm)
        seen = np.maximum.accumulate(np.concatenate(([wm.max_ts_ms], ts)))[:-1]
        watermark_before = np.maximum(wm.value_ms, seen - wm.grace_ms)
        late = ~skip & (end <= watermark_before)
        wm.observe(int(ts.max()))
        if late.any():
            self._add_late(part, np.flatnonzero(late), keys, ts, offsets, status, duration, buckets)
        on_time = np.flatnonzero(~skip & ~late)
        if not len(on_time):
            return
        # group by (pane, key) without a Python loop per event: keys get small integer ids
        # (a dict lookup in C via map), then numpy finds the groups
        ids = self._key_ids
        if len(ids) > MAX_KEY_IDS:
            ids.clear()
            self._id_keys.clear()
        kid = list(map(ids.get, keys))
        if None in kid:
            for j, k in enumerate(kid):
                if k is None:
                    key = keys[j]
                    k = ids.get(key)
                    if k is None:
                        k = ids[key] = len(self._id_keys)
                        self._id_keys.append(_key(key))
                    kid[j] = k
        pane_ms = spec.pane_ms
        pane_index = (window_start(ts, pane_ms) // pane_ms)[on_time]
        first_pane = int(pane_index.min())
        n_ids = len(self._id_keys)
        codes = (pane_index - first_pane) * n_ids + np.array(kid, dtype=np.int64)[on_time]
        unique_codes, gid = np.unique(codes, return_inverse=True)
        groups = [
            ((first_pane + c // n_ids) * pane_ms, self._id_keys[c % n_ids])
            for c in unique_codes.tolist()
        ]
        self._add_groups(
            part,
            groups,
            gid.astype(np.int64),
            status[on_time],
            duration[on_time],
            buckets[on_time],
            offsets[on_time],
        )

    def _add_groups(
        self,
        part: PartitionState,
        groups: list[tuple[int, Key]],
        gid: npt.NDArray[np.int64],
        status: npt.NDArray[np.int64],
        duration: npt.NDArray[np.float64],
        buckets: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
    ) -> None:
        n_groups = len(groups)
        classes = np.clip(status // 100, 0, 9)
        per_class = np.bincount(gid * 10 + classes, minlength=n_groups * 10).reshape(n_groups, 10)
        order = np.argsort(gid, kind="stable")
        bounds = np.searchsorted(gid[order], np.arange(n_groups))
        maxes = np.maximum.reduceat(duration[order], bounds)
        first = np.minimum.reduceat(offsets[order], bounds)
        pairs, pair_counts = np.unique(gid * 65_536 + (buckets + 32_768), return_counts=True)
        sample_ms = self.spec.sample_ms
        evaluator = part.evaluator if self.config.overrides else None  # declared minimums
        targets: list[Stats] = []
        for g, (pane, key) in enumerate(groups):
            start = window_start(pane, sample_ms)
            sample = part.samples.get(start)
            if sample is None:
                sample = part.samples[start] = OpenSample()
            sample.min_offset = min(sample.min_offset, int(first[g]))
            key_panes = sample.panes.get(key)
            if key_panes is None:
                key_panes = sample.panes[key] = {}
                if evaluator is not None and evaluator.declares_minimum(key):
                    part.declared.add(key)
            stats = key_panes.get(pane)
            if stats is None:
                stats = key_panes[pane] = Stats()
            c = per_class[g].tolist()
            n = sum(c)
            stats.count += n
            stats.c2xx += c[2]
            stats.c3xx += c[3]
            stats.c4xx += c[4]
            stats.c5xx += c[5]
            stats.max_ms = max(stats.max_ms, float(maxes[g]))
            stats.sketch.count += n
            targets.append(stats)
        # one dict update per (group, bucket) pair: decoded by numpy, looped bare
        bins_of = [stats.sketch.bins for stats in targets]
        for g, bucket, count in zip(
            (pairs >> 16).tolist(),
            ((pairs & 0xFFFF) - 32_768).tolist(),
            pair_counts.tolist(),
            strict=True,
        ):
            bins = bins_of[g]
            bins[bucket] = bins.get(bucket, 0) + count

    def _add_late(
        self,
        part: PartitionState,
        late: npt.NDArray[np.intp],
        keys: list[_RawKey],
        ts: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
        status: npt.NDArray[np.int64],
        duration: npt.NDArray[np.float64],
        buckets: npt.NDArray[np.int64],
    ) -> None:
        """Events whose sample had closed: into the late accumulators (rare)."""
        sample_ms = self.spec.sample_ms
        for j in late.tolist():
            t = int(ts[j])
            slot = (window_start(t, sample_ms), _key(keys[j]))
            stats = part.late.get(slot)
            if stats is None:
                stats = part.late[slot] = Stats()
            stats.add(int(status[j]), float(duration[j]), int(buckets[j]))
            offset = int(offsets[j])
            if part.late_offsets:
                part.late_offsets[1] = max(part.late_offsets[1], offset)
            else:
                part.late_offsets[:] = [offset, offset]
        self._metrics.late_events.inc(len(late))

    # --- closing ----------------------------------------------------------------------

    async def tick(self) -> None:
        """Close what the watermarks have passed, write it with a checkpoint, publish."""
        now = self._clock_ms()
        open_count = 0
        for part in list(self._parts.values()):
            if not part.replaying:
                await self._close(part, now)
            open_count += sum(len(s.panes) for s in part.samples.values())
            if part.wm.value_ms != NO_WATERMARK:
                lag = max(0.0, (now - part.wm.value_ms) / 1000)
                self._metrics.watermark_lag.labels(partition=str(part.partition)).set(lag)
        self._metrics.open_windows.set(open_count)

    async def _close(self, part: PartitionState, now_ms: int) -> None:
        spec = self.spec
        idle = now_ms - part.last_input_wall_ms >= spec.idle_timeout_ms
        if idle and part.wm.max_ts_ms != NO_WATERMARK:
            part.wm.advance_idle(now_ms)
        wm = part.wm.value_ms
        rows = Rows(self.gamma, part.partition)
        transitions: list[Transition] = []
        for start in self._due_samples(part, wm):
            self._close_sample(part, start, rows, transitions)
        for size, windows in part.rollups.items():
            for rstart in sorted(w for w in windows if w + size <= wm):
                for key, stats in sorted(windows.pop(rstart).items()):
                    rows.window(size, rstart, key, stats)
        if part.late:
            first, last = part.late_offsets
            for (start, key), stats in sorted(part.late.items()):
                rows.window(spec.sample_ms, start, key, stats, late=f"{first}-{last}")
            part.late.clear()
            part.late_offsets.clear()
        if (part.processed, wm) == part.last_checkpoint and not rows.windows:
            return
        safe = min((s.min_offset for s in part.samples.values()), default=part.processed + 1)
        rows.checkpoint(
            self._group,
            part,
            safe,
            {"streaks": part.evaluator.dump(), "declared": sorted(map(list, part.declared))},
        )
        part.last_checkpoint = (part.processed, wm)
        for resolution, n in rows.closed.items():
            self._metrics.windows_closed.labels(resolution=str(resolution)).inc(n)
        for status, n in rows.verdict_counts.items():
            self._metrics.slo_samples.labels(status=status).inc(n)

        def durable() -> None:
            part.durable_safe = max(part.durable_safe, safe)
            self._gate.release(part.partition)

        # the alerts first: a checkpoint that records a streak as firing must never be
        # stored without its alert (after kill -9 the restored streak would not fire again)
        for t in transitions:
            await self._publish(t)
        await self._writer.add(rows.tables(), on_written=durable)

    def _due_samples(self, part: PartitionState, wm: int) -> list[int]:
        """Starts of the samples to close now, oldest first: every open sample the
        watermark has passed, plus empty ones when some key declares a minimum."""
        size = self.spec.sample_ms
        due = {s for s in part.samples if s + size <= wm}
        if part.declared and part.closed_through is not None:
            current = window_start(wm, size)  # its end is still ahead of the watermark
            start = max(part.closed_through, current - MAX_EMPTY_SAMPLES * size)
            due.update(range(start, current - size + 1, size))
        return sorted(due)

    def _close_sample(
        self, part: PartitionState, start: int, rows: Rows, transitions: list[Transition]
    ) -> None:
        spec = self.spec
        sample = part.samples.pop(start, None) or OpenSample()
        end = start + spec.sample_ms
        per_key: dict[Key, Stats] = {}
        tenants: dict[str, Stats] = {}
        for key in sorted(sample.panes):
            total = Stats()
            for pane_start, stats in sorted(sample.panes[key].items()):
                rows.window(spec.pane_ms, pane_start, key, stats)
                total.merge(stats)
            per_key[key] = total
            tenant = tenants.get(key[0])
            if tenant is None:
                tenant = tenants[key[0]] = Stats()
            tenant.merge(total)
        for tenant_id, stats in tenants.items():
            per_key[tenant_key(tenant_id)] = stats
        for key in part.declared:
            per_key.setdefault(key, Stats())
        seconds = spec.sample_ms / 1000
        evaluator = part.evaluator
        for key in sorted(per_key):
            stats = per_key[key]
            if stats.count:
                rows.window(spec.sample_ms, start, key, stats)
                for size, windows in part.rollups.items():
                    rstart = window_start(start, size)
                    acc = windows.setdefault(rstart, {}).setdefault(key, Stats())
                    acc.merge(stats)
            verdicts, fired = evaluator.evaluate(
                Sample(
                    key,
                    start,
                    end,
                    stats.count,
                    stats.slis(self.gamma, seconds),
                    {"error_rate": stats.c5xx, "client_error_rate": stats.c4xx},
                    stats.sketch,
                    self.gamma,
                )
            )
            rows.verdicts(verdicts)
            transitions.extend(fired)
            if key[1] == ALL and (
                self.config.availability.burn_alerts or self.config.tenant_windows_s
            ):
                verdicts, fired = evaluator.evaluate_tenant(
                    key[0], start, end, stats.count, part.budget, stats.c5xx
                )
                rows.verdicts(verdicts)
                transitions.extend(fired)
        part.closed_through = max(part.closed_through or end, end)

    # --- alerts -------------------------------------------------------------------------

    async def _publish(self, t: Transition) -> None:
        tenant, service, route, cohort = t.key
        labels = {"tenant_id": tenant}
        if service != ALL:
            labels |= {"service": service, "route": route}
        if cohort:
            labels["cohort"] = cohort
        spec = AlertSpec(
            t.alertname,
            t.severity,
            labels,
            Annotations(summary=f"{t.alertname}: {t.description}", description=t.description),
            auto_rollback=t.auto_rollback,
        )
        at = _dt(t.at_ms)
        if t.action == "resolve":
            await self._alerts.resolve(
                spec, t.value, t.threshold, at, starts_at=_dt(t.starts_at_ms)
            )
            return
        evidence = {
            "samples": [
                {
                    "window_start": _dt(s["window_start_ms"]).isoformat(),
                    "window_end": _dt(s["window_end_ms"]).isoformat(),
                    "value": s["value"],
                    "events": s.get("count"),
                    "breaching_events": s.get("hits"),
                    "lower_bound": s.get("lower_bound"),
                }
                for s in t.evidence
            ],
            "threshold": t.threshold,
            "query": self.evidence_query(t),
        }
        await self._alerts.fire(
            spec,
            t.value,
            t.threshold,
            at,
            evidence,
            starts_at=_dt(t.starts_at_ms),
        )

    def evidence_query(self, t: Transition) -> str:
        """SQL that shows the samples behind ``t`` from ``latency_windows``."""
        tenant, service, route, cohort = t.key
        first = min(s["window_start_ms"] for s in t.evidence) if t.evidence else t.at_ms
        last = max(s["window_end_ms"] for s in t.evidence) if t.evidence else t.at_ms
        return (
            "SELECT window_start, window_end, count, p50_ms, p95_ms, p99_ms, error_rate, "
            f"client_error_rate, throughput_rps FROM {self._db}.latency_windows FINAL "
            f"WHERE tenant_id = {_sql(tenant)} AND service = {_sql(service)} "
            f"AND route = {_sql(route)} AND cohort = {_sql(cohort)} "
            f"AND resolution_s = {self.spec.sample_ms // 1000} "
            f"AND late = 0 AND window_start >= {_sql_time(first)} "
            f"AND window_end <= {_sql_time(last)} ORDER BY window_start"
        )

    # --- recovery -----------------------------------------------------------------------

    async def _restore(self, topic: str, partition: int, first_offset: int) -> PartitionState:
        part = PartitionState(
            topic,
            partition,
            Watermark(self.spec.grace_ms),
            SloEvaluator(self.config),
            BudgetTracker(
                self.config.availability,
                self.config.windows.sample_seconds,
                self.config.tenant_windows_s,
            ),
        )
        part.rollups = {size: {} for size in self.spec.rollups_ms}
        self._parts[partition] = part
        checkpoint = await self._checkpoint(topic, partition)
        part.next_offset = first_offset
        if checkpoint is None:
            return part
        processed, safe, wm, max_ts, closed_through, state = checkpoint
        self._metrics.window_rebuilds.inc()
        part.wm.value_ms, part.wm.max_ts_ms = int(wm), int(max_ts)
        part.processed = part.replay_until = int(processed)
        part.replay_wm = int(wm)
        part.closed_through = int(closed_through) if closed_through >= 0 else None
        part.durable_safe = int(safe)
        part.last_checkpoint = (part.processed, part.wm.value_ms)
        saved = orjson.loads(state)
        part.evaluator.load(saved.get("streaks", {}))
        part.declared = {text_key("\x1f".join(k)) for k in saved.get("declared", [])}
        if part.closed_through is not None:
            await self._reload_history(part, part.closed_through)
        log.info(
            "partition %d: restored windows from checkpoint at offset %d (watermark %s); "
            "re-reading from %d",
            partition,
            processed,
            _dt(int(wm)).isoformat(),
            first_offset,
        )
        return part

    def prefetch(self, topic: str, partitions: Iterable[int]) -> None:
        """Partitions were assigned: start reading their checkpoints now, in one query.

        Restoring waits for the engine, which an INSERT may hold for a while; read one by
        one at each partition's first batch, the checkpoints stalled the start of a burst
        (0.1-0.3 s over four partitions, measured)."""
        todo = sorted(p for p in partitions if p not in self._parts)
        if todo:
            task = asyncio.ensure_future(self._load_checkpoints(topic, todo))
            for p in todo:
                self._prefetched[p] = (topic, task)

    async def _checkpoint(self, topic: str, partition: int) -> tuple[Any, ...] | None:
        """The newest checkpoint of a partition: prefetched at assignment, else read now."""
        prefetched = self._prefetched.pop(partition, None)
        if prefetched is not None and prefetched[0] == topic:
            try:
                return (await prefetched[1]).get(partition)
            except Exception:
                log.warning("prefetching checkpoints failed; reading partition %d's", partition)
        return (await self._load_checkpoints(topic, [partition])).get(partition)

    async def _load_checkpoints(
        self, topic: str, partitions: list[int]
    ) -> dict[int, tuple[Any, ...]]:
        rows = await self._writer.query_rows(
            "SELECT partition, argMax(tuple(processed_offset, safe_offset, watermark_ms, "
            "max_ts_ms, closed_through_ms, state), (processed_offset, watermark_ms)) "
            f"FROM {self._db}.window_checkpoints WHERE consumer_group = {{g:String}} "
            "AND topic = {t:String} AND partition IN {ps:Array(UInt32)} GROUP BY partition",
            {"g": self._group, "t": topic, "ps": partitions},
        )
        return {int(p): tuple(newest) for p, newest in rows}

    async def _reload_history(self, part: PartitionState, closed_through: int) -> None:
        """Rollups still open and the error-budget history, from stored sample rows."""
        sample_s = self.spec.sample_ms // 1000
        starts = [window_start(closed_through, size) for size in self.spec.rollups_ms]
        horizon_ms = part.budget.horizon_samples * self.spec.sample_ms
        since = min([*starts, closed_through - horizon_ms])
        rows = await self._writer.query_rows(
            "SELECT tenant_id, service, route, cohort, toUnixTimestamp64Milli(window_start), "
            "count, c2xx, c3xx, c4xx, c5xx, max_ms, bucket_keys, bucket_counts "
            f"FROM {self._db}.latency_windows FINAL WHERE resolution_s = {{r:UInt32}} "
            "AND late = 0 AND src_partition = {p:UInt32} "
            "AND window_start >= fromUnixTimestamp64Milli({since:Int64}, 'UTC') "
            "AND window_end <= fromUnixTimestamp64Milli({until:Int64}, 'UTC') "
            "ORDER BY window_start, tenant_id, service, route, cohort",
            {"r": sample_s, "p": part.partition, "since": since, "until": closed_through},
        )
        for tenant, service, route, cohort, start, count, c2, c3, c4, c5, mx, keys, counts in rows:
            stats = Stats(count, c2, c3, c4, c5, float(mx), Sketch.from_arrays(keys, counts))
            key = (tenant, service, route, cohort)
            for size, rstart in zip(self.spec.rollups_ms, starts, strict=True):
                if start >= rstart:
                    part.rollups[size].setdefault(rstart, {}).setdefault(key, Stats()).merge(stats)
            if service == ALL and start >= closed_through - horizon_ms:
                part.budget.add(tenant, start + self.spec.sample_ms, count, c5)

    def forget(self, partition: int) -> None:
        """The partition was revoked: drop its state (its next owner, maybe this worker
        again, restores from the checkpoint and re-reads from the committed offset)."""
        self._parts.pop(partition, None)
        self._prefetched.pop(partition, None)
        self._gate.forget(partition)
