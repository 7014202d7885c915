"""The latency detector inside the real ingest pipeline, with a real chDB engine.

The alert topic is replaced by a recorder (the worker-level tests use the real broker);
everything else -- decoding, windows, the writer, checkpoints, the SQL -- is real.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from schemas.alerts import Alert
from schemas.normalize import Pseudonymizer
from sinks.clickhouse import ClickHouseWriter
from streams.alerting import AlertPublisher
from streams.detectors.latency.detector import LatencyDetector
from streams.detectors.latency.sketch import Sketch, bucket_indices, gamma_for
from streams.detectors.latency.slo import load_rules
from streams.dlq import DeadLetters
from streams.gate import CommitGate
from streams.ingest import Ingestor
from streams.metrics import Metrics
from streams.pipeline import IngestPipeline
from streams.publish import Publisher
from streams.transport import SourceBatch

pytestmark = pytest.mark.integration

NOW_MS = 1_767_323_045_678
BASE = NOW_MS - NOW_MS % 300_000 - 3_600_000  # an hour ago, on a 5-min boundary
GAMMA = gamma_for(0.01)
TOPIC = "vigil.events"


@dataclass(frozen=True)
class Rec:
    value: bytes
    offset: int
    topic: str = TOPIC
    partition: int = 0
    timestamp: int = NOW_MS


class Recorder:
    """Stands in for the producer: keeps what would go to the alerts topic."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        if topic == "vigil.alerts":
            self.alerts.append(Alert.model_validate_json(value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def request(
    ts: int, duration: float, status: int = 200, tenant: str = "acme", route: str = "/v1/reports"
) -> dict[str, Any]:
    return {
        "event_id": f"{ts}-{duration}-{random.random()}",
        "ts": ts,
        "tenant_id": tenant,
        "kind": "http.request",
        "service": "api",
        "method": "GET",
        "route": route,
        "status": status,
        "duration_ms": duration,
    }


class Harness:
    def __init__(self, ch: Any, database: str, metrics: Metrics, rules: Any = None) -> None:
        self.ch = ch
        self.db = database
        self.metrics = metrics
        self.wall_ms = NOW_MS
        self.recorder = Recorder()
        self.writer = ClickHouseWriter(ch, database, metrics, flush_rows=1)
        self.gate = CommitGate()
        alerts = AlertPublisher(self.writer, self.recorder.send, "vigil.alerts", metrics, 300)
        self.detector = LatencyDetector(
            rules or load_rules(None).slo,
            GAMMA,
            self.writer,
            alerts,
            self.gate,
            metrics,
            database,
            "test-group",
            clock_ms=lambda: self.wall_ms,
        )
        pseudo = Pseudonymizer(b"k")
        dead_letters = DeadLetters(
            Publisher(self.recorder.send, metrics), "vigil.events.dlq", pseudo, metrics, 1 << 18
        )
        self.pipeline = IngestPipeline(
            Ingestor(pseudo, 1 << 20, 60_000),
            self.writer,
            dead_letters,
            metrics,
            [self.detector],
            clock_ms=lambda: NOW_MS,
            gate=self.gate,
        )
        self.next_offset = 0
        self.acked: list[int] = []

    async def feed(self, events: Sequence[dict[str, Any]], partition: int = 0) -> int:
        """One fetched batch; returns its last offset."""
        first = self.next_offset
        records = [
            Rec(orjson.dumps(e), first + i, partition=partition) for i, e in enumerate(events)
        ]
        self.next_offset += len(events)
        last = first + len(events) - 1
        batch = SourceBatch(TOPIC, partition, first, last, records)
        await self.pipeline.handle(batch, lambda: self.acked.append(last))
        return last

    async def tick(self) -> None:
        await self.detector.tick()
        await self.writer.flush()

    def rows(self, where: str = "1") -> list[tuple[Any, ...]]:
        return [
            tuple(r)
            for r in self.ch.query(
                "SELECT resolution_s, toUnixTimestamp64Milli(window_start), tenant_id, service, "
                "route, late, count, c5xx, p50_ms, p95_ms, p99_ms, max_ms, bucket_keys, "
                f"bucket_counts FROM {self.db}.latency_windows FINAL WHERE {where} "
                "ORDER BY resolution_s, window_start, tenant_id, service, route, late, window_id"
            ).result_rows
        ]


@pytest.fixture
def harness(ch_client: Any, database: str, metrics: Metrics) -> Harness:
    return Harness(ch_client, database, metrics)


def other(ts: int) -> dict[str, Any]:
    """An event of another kind: not the latency detector's input."""
    return {
        "event_id": f"o{ts}-{random.random()}",
        "ts": ts,
        "tenant_id": "acme",
        "kind": "security.auth_failure",
        "service": "api",
        "reason": "bad password",
    }


@pytest.mark.parametrize("mixed", [False, True], ids=["http-only", "mixed-kinds"])
async def test_out_of_order_events_inside_grace_land_in_their_window(
    harness: Harness, mixed: bool
) -> None:
    """Mixed: an event of another kind, 47 s later, precedes each request in its batch;
    only the requests count, each with its own time."""

    def batch(*requests: dict[str, Any]) -> list[dict[str, Any]]:
        if not mixed:
            return list(requests)
        return [e for r in requests for e in (other(r["ts"] + 47_000), r)]

    await harness.feed(batch(request(BASE + 5_000, 10), request(BASE + 35_000, 20)))
    await harness.feed(batch(request(BASE + 28_000, 30)))  # 7 s behind the newest: in grace
    await harness.feed(batch(request(BASE + 45_000, 40)))  # watermark 35 s: sample 0-30 s done
    await harness.tick()
    rows = harness.rows("resolution_s = 30 AND service != '*'")
    assert [(r[1] - BASE, r[5], r[6], r[11]) for r in rows] == [(0, 0, 2, 30.0)]
    panes = harness.rows("resolution_s = 10")
    assert [(r[1] - BASE, r[6]) for r in panes] == [(0, 1), (20_000, 1)]
    assert harness.metrics.registry.get_sample_value("vigil_late_events_total") == 0


async def test_late_events_are_counted_and_stored_flagged(harness: Harness) -> None:
    await harness.feed([request(BASE + 5_000, 10), request(BASE + 45_000, 20)])
    await harness.tick()
    await harness.feed([request(BASE + 12_000, 99)])  # its sample closed at watermark 35 s
    await harness.tick()
    rows = harness.rows("resolution_s = 30 AND service != '*'")
    assert [(r[1] - BASE, r[5], r[6], r[11]) for r in rows] == [(0, 0, 1, 10.0), (0, 1, 1, 99.0)]
    assert harness.metrics.registry.get_sample_value("vigil_late_events_total") == 1


async def test_an_idle_partition_still_closes_its_windows(harness: Harness) -> None:
    start = NOW_MS - NOW_MS % 30_000
    await harness.feed([request(start + 1_000, 10)])
    await harness.tick()
    assert harness.rows() == []  # watermark = 1 s - grace: nothing complete
    harness.wall_ms = start + 30_000 + 10_000 + 30_000  # idle 30 s past the sample + grace
    await harness.tick()
    assert [
        (r[0], r[1] - start, r[6]) for r in harness.rows("service != '*' AND resolution_s <= 30")
    ] == [
        (10, 0, 1),
        (30, 0, 1),
    ]


async def test_the_analyst_query_returns_the_streams_percentiles(harness: Harness) -> None:
    rng = np.random.default_rng(3)
    first = rng.lognormal(5, 0.7, 600)
    second = rng.lognormal(5.5, 0.5, 400)
    await harness.feed([request(BASE + 1 + i * 40, float(d)) for i, d in enumerate(first)])
    await harness.feed([request(BASE + 30_000 + i * 70, float(d)) for i, d in enumerate(second)])
    await harness.feed([request(BASE + 75_000, 1.0)])
    await harness.tick()
    stream = harness.rows("resolution_s = 30 AND service != '*' AND count > 1")
    assert len(stream) == 2
    db = harness.db
    where = "tenant_id = 'acme' AND route = '/v1/reports' AND resolution_s = 30"
    one = harness.ch.query(
        f"SELECT vigilQuantile(0.95, sumMap(bucket_keys, bucket_counts), any(gamma)), "
        f"vigilQuantile(0.99, sumMap(bucket_keys, bucket_counts), any(gamma)) "
        f"FROM {db}.latency_windows WHERE {where} "
        f"AND window_start = fromUnixTimestamp64Milli({BASE}::Int64, 'UTC')"
    ).result_rows[0]
    assert one == pytest.approx((stream[0][9], stream[0][10]), rel=1e-12)
    both = harness.ch.query(
        f"SELECT vigilQuantile(0.95, sumMap(bucket_keys, bucket_counts), any(gamma)) "
        f"FROM {db}.latency_windows WHERE {where} AND window_start < "
        f"fromUnixTimestamp64Milli({BASE + 60_000}::Int64, 'UTC')"
    ).result_rows[0][0]
    merged = Sketch()
    merged.add_keys(bucket_indices(np.concatenate([first, second]), GAMMA).tolist())
    assert both == pytest.approx(merged.quantiles((0.95,), GAMMA)[0], rel=1e-12)
    exact = np.percentile(np.concatenate([first, second]), 95, method="inverted_cdf")
    assert abs(both - exact) <= 0.01 * exact


def slow_sample(i: int, duration: float, n: int = 30) -> list[dict[str, Any]]:
    return [request(BASE + i * 30_000 + j * 900, duration) for j in range(n)]


async def test_three_breaching_samples_page_once_and_recovery_resolves(harness: Harness) -> None:
    for i in range(5):
        await harness.feed(slow_sample(i, 800.0))
        await harness.tick()
    for i in range(5, 10):
        await harness.feed(slow_sample(i, 50.0))
        await harness.tick()
    await harness.feed([request(BASE + 11 * 30_000, 50.0)])
    await harness.tick()
    p95 = [a for a in harness.recorder.alerts if a.data.alertname == "P95LatencyBreach"]
    route = [a for a in p95 if a.data.labels.get("route") == "/v1/reports"]
    assert [a.data.status for a in route] == ["firing", "resolved"]
    firing, resolved = route
    assert firing.data.severity == "critical" and firing.data.auto_rollback
    assert firing.time.timestamp() * 1000 == BASE + 3 * 30_000  # end of the 3rd sample
    assert firing.data.starts_at.timestamp() * 1000 == BASE
    assert resolved.data.ends_at is not None
    assert resolved.data.ends_at.timestamp() * 1000 == BASE + 8 * 30_000  # 3 good samples
    evidence = firing.data.evidence
    assert [s["value"] for s in evidence["samples"]] == pytest.approx([800.0] * 3, rel=0.01)
    shown = harness.ch.query(evidence["query"]).result_rows
    assert [round(r[4]) for r in shown] == [round(s["value"]) for s in evidence["samples"]]
    stored = harness.ch.query(
        f"SELECT status, count() FROM {harness.db}.alerts WHERE alertname = 'P95LatencyBreach' "
        "AND labels['route'] = '/v1/reports' GROUP BY status ORDER BY status"
    ).result_rows
    assert stored == [("firing", 1), ("resolved", 1)]
    verdicts = harness.ch.query(
        f"SELECT status, count() FROM {harness.db}.slo_samples FINAL "
        "WHERE rule = 'P95LatencyBreach' AND route = '/v1/reports' GROUP BY status ORDER BY status"
    ).result_rows
    assert verdicts == [("pass", 5), ("fail", 5)]
    # every failing sample stored its evidence: events above 500 ms and the lower bound of
    # their share, above the 5 % a p95 allows
    shown_fails = harness.ch.query(
        f"SELECT count, hits, lower_bound FROM {harness.db}.slo_samples FINAL "
        "WHERE rule = 'P95LatencyBreach' AND route = '/v1/reports' AND status = 'fail' "
        "ORDER BY window_start"
    ).result_rows
    assert len(shown_fails) == 5
    assert all(0 < hits <= n and 0.05 < low <= hits / n for n, hits, low in shown_fails)
    assert [s["breaching_events"] for s in evidence["samples"]] == [r[1] for r in shown_fails[:3]]


async def test_offsets_are_acked_only_behind_the_oldest_open_window(harness: Harness) -> None:
    a = await harness.feed([request(BASE + 1_000, 10)])
    b = await harness.feed([request(BASE + 31_000, 10)])
    await harness.writer.flush()
    assert harness.acked == []  # rows written, but no checkpoint yet
    await harness.tick()
    assert harness.acked == []  # both samples are still open: offset 0 is needed
    c = await harness.feed([request(BASE + 41_000, 10)])  # watermark 31 s: sample 0 closes
    await harness.tick()
    assert harness.acked == [a]  # the second sample (offsets 1..) is still open
    await harness.feed([request(BASE + 75_000, 10)])
    await harness.tick()
    assert harness.acked == [a, b, c]


async def recorded_run(
    ch: Any,
    database: str,
    batches: list[list[dict[str, Any]]],
    crash_after: int | None,
    prefetch: bool = False,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Feed ``batches`` with a tick after each; optionally lose the process after batch
    ``crash_after`` and start over from the first unacknowledged offset (with ``prefetch``
    the new process reads its checkpoints at assignment, before its first batch)."""
    first = Harness(ch, database, fresh_metrics())
    for i, events in enumerate(batches):
        await first.feed(events)
        await first.tick()
        if crash_after is not None and i == crash_after:
            break
    else:
        return first.rows(), _alerts(first)
    committed = max(first.acked) + 1 if first.acked else 0
    offsets: list[int] = []
    n = 0
    for events in batches:
        offsets.append(n)
        n += len(events)
    second = Harness(ch, database, fresh_metrics())
    second.recorder.alerts = list(first.recorder.alerts)  # the topic keeps what was sent
    queries: list[str] = []
    query_rows = second.writer.query_rows

    async def counted(sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        queries.append(sql)
        return await query_rows(sql, parameters)

    second.writer.query_rows = counted  # type: ignore[method-assign]
    if prefetch:
        second.detector.prefetch(TOPIC, [0, 3])  # assigned: ours and one with no data
        await asyncio.sleep(0)  # the prefetch task starts
        assert len(queries) == 1  # one query for both partitions, before any batch
    assert committed < first.next_offset  # something is re-read
    for start, events in zip(offsets, batches, strict=True):
        end = start + len(events)
        if end <= committed:
            continue
        second.next_offset = max(start, committed)
        await second.feed(events[max(0, committed - start) :])
        await second.tick()
    assert second.metrics.registry.get_sample_value("vigil_window_rebuilds_total") == 1
    assert sum("window_checkpoints" in q for q in queries) == 1
    return second.rows(), _alerts(second)


def _alerts(h: Harness) -> list[tuple[Any, ...]]:
    return sorted({(a.id, a.data.status, a.data.alertname) for a in h.recorder.alerts})


def fresh_metrics() -> Metrics:
    """A fresh registry per simulated process."""
    return Metrics(CollectorRegistry())


async def test_a_lost_process_rebuilds_exactly_the_same_rows_and_alerts(
    ch_client: Any, database: str
) -> None:
    rng = random.Random(5)
    batches: list[list[dict[str, Any]]] = []
    for i in range(24):  # 8 samples of slow-then-fast traffic, two routes, some disorder
        events = []
        for _ in range(25):
            ts = BASE + i * 10_000 + rng.randrange(10_000) - rng.choice([0, 0, 0, 12_000])
            slow = 3 <= i // 3 <= 6
            events.append(
                request(
                    ts,
                    rng.uniform(600, 900) if slow else rng.uniform(20, 80),
                    route=rng.choice(["/a", "/b"]),
                )
            )
        batches.append(events)
    batches.append([request(BASE + 400_000, 10.0)])
    other = f"{database}_b"
    from sinks.migrate import migrate

    migrate(ch_client, other, 3650)
    expected = await recorded_run(ch_client, other, batches, crash_after=None)
    actual = await recorded_run(ch_client, database, batches, crash_after=13)
    assert len(expected[0]) > 20 and expected[1], "the scenario must produce rows and alerts"
    assert actual == expected
    # the same, with the checkpoints read at assignment instead of at the first batch
    third = f"{database}_c"
    migrate(ch_client, third, 3650)
    assert await recorded_run(ch_client, third, batches, crash_after=13, prefetch=True) == expected


async def test_the_cohort_is_a_key_dimension_only_where_events_carry_one(
    harness: Harness,
) -> None:
    """Requests of one route: without a cohort, from the baseline and from a slow canary.
    Each cohort gets its own windows, verdicts and alert (labelled with the cohort); the
    cohort-less key keeps the row it always had; the tenant row sums all three."""

    def tagged(i: int, duration: float, cohort: str | None, n: int) -> list[dict[str, Any]]:
        out = [request(BASE + i * 30_000 + j * 900, duration) for j in range(n)]
        if cohort:
            for e in out:
                e |= {"cohort": cohort, "release": "2.8.0" if cohort == "canary" else "2.7.3"}
        return out

    for i in range(5):
        await harness.feed(
            tagged(i, 40.0, None, 20) + tagged(i, 50.0, "baseline", 30)
            + tagged(i, 900.0, "canary", 30)
        )  # fmt: skip
        await harness.tick()
    await harness.feed([request(BASE + 6 * 30_000, 50.0)])
    await harness.tick()
    rows = harness.ch.query(
        "SELECT cohort, count(), sum(count), max(p95_ms) "
        f"FROM {harness.db}.latency_windows FINAL WHERE resolution_s = 30 AND service = 'api' "
        "GROUP BY cohort ORDER BY cohort"
    ).result_rows
    assert [(c, n, total) for c, n, total, _ in rows] == [
        ("", 5, 100), ("baseline", 5, 150), ("canary", 5, 150),
    ]  # fmt: skip
    assert rows[2][3] > 800 > rows[1][3]
    tenant = harness.ch.query(
        f"SELECT sum(count) FROM {harness.db}.latency_windows FINAL "
        "WHERE resolution_s = 30 AND service = '*'"
    ).result_rows[0][0]
    assert tenant == 400
    verdicts = harness.ch.query(
        f"SELECT cohort, status, count() FROM {harness.db}.slo_samples FINAL "
        "WHERE rule = 'P95LatencyBreach' AND service = 'api' GROUP BY cohort, status "
        "ORDER BY cohort, status"
    ).result_rows
    assert ("canary", "fail", 5) in verdicts and ("baseline", "pass", 5) in verdicts
    p95 = [
        a.data
        for a in harness.recorder.alerts
        if a.data.alertname == "P95LatencyBreach" and a.data.labels.get("route")
    ]  # the tenant as a whole breaches too (150 of 400 slow); per route only the canary
    assert [(a.labels.get("cohort"), a.status) for a in p95] == [("canary", "firing")]
    assert "cohort = 'canary'" in a_query(p95[0].evidence)


def a_query(evidence: Any) -> str:
    return str((evidence or {}).get("query", ""))
