"""The ingest pipeline's error policy, with a real ClickHouse engine behind the writer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from schemas.normalize import Pseudonymizer
from sinks.clickhouse import ClickHouseWriter
from streams.detectors.pii.config import PiiConfig
from streams.detectors.pii.guard import PiiGuard
from streams.detectors.pii.scanner import Finding, Scanner
from streams.dlq import DeadLetters
from streams.health import DetectorHealth
from streams.ingest import Ingestor, IngestResult
from streams.metrics import Metrics
from streams.pipeline import IngestPipeline
from streams.publish import Publisher
from streams.transport import SourceBatch

pytestmark = pytest.mark.integration
NOW_MS = 1_767_323_045_678


@dataclass(frozen=True)
class Rec:
    value: bytes
    offset: int
    topic: str = "vigil.events"
    partition: int = 0
    timestamp: int = NOW_MS


class Dlq:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict[str, str]]] = []

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        self.sent.append((value, {k: v.decode() for k, v in headers}))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class BrokenDetector:
    name = "broken"

    async def process(self, result: IngestResult, source: SourceBatch) -> None:
        raise RuntimeError("detector bug")


class CountingDetector:
    name = "counting"

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def process(self, result: IngestResult, source: SourceBatch) -> None:
        self.seen.extend(result.offsets)


class FaultyScanner(Scanner):
    """The real scanner, except that it raises on any text holding ``POISON``: a fault
    in the PII stage that only some events trigger."""

    def scan_many(self, items: list[tuple[str, str, str]]) -> list[list[Finding]]:
        if any("POISON" in text for text, _, _ in items):
            raise ValueError("scanner bug")
        return super().scan_many(items)


def batch(
    n: int, partition: int = 0, first: int = 0, lag: int | None = None, **fields: Any
) -> SourceBatch:
    records = [
        Rec(
            orjson.dumps(
                {
                    "event_id": f"e{i}",
                    "ts": NOW_MS - 1000,
                    "tenant_id": "acme",
                    "service": "api",
                    "kind": "security.auth_success",
                    **fields.get(f"at{i}", {}),
                }
            ),
            offset=i,
            partition=partition,
        )
        for i in range(first, first + n)
    ]
    return SourceBatch("vigil.events", partition, first, first + n - 1, records, lag=lag)


def pipeline(
    ch_client: Any,
    database: str,
    metrics: Metrics,
    dlq: Dlq,
    detectors: list[Any],
    guard: PiiGuard | None = None,
    **writer_options: Any,
) -> tuple[IngestPipeline, ClickHouseWriter]:
    pseudo = Pseudonymizer(b"k")
    writer = ClickHouseWriter(ch_client, database, metrics, **{"flush_rows": 1, **writer_options})
    dead_letters = DeadLetters(
        Publisher(dlq.send, metrics), "vigil.events.dlq", pseudo, metrics, 1 << 18
    )
    pipe = IngestPipeline(
        Ingestor(pseudo, 1 << 20, 60_000),
        writer,
        dead_letters,
        metrics,
        detectors,
        clock_ms=lambda: NOW_MS,
        guard=guard,
        health=DetectorHealth(metrics, threshold=2),
    )
    writer.on_rejected(pipe.storage_rejected)
    return pipe, writer


def count(ch_client: Any, sql: str) -> Any:
    return ch_client.query(sql).result_rows[0][0]


async def test_a_failing_detector_costs_no_event_and_is_reported(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    """Detector faults are not input faults: the events are stored, nothing goes to the
    DLQ, the other detectors still see every batch, and a detector failing twice in a
    row (the threshold here) makes /healthz say ``degraded``."""
    dlq, counting = Dlq(), CountingDetector()
    pipe, writer = pipeline(ch_client, database, metrics, dlq, [BrokenDetector(), counting])
    acked: list[int] = []
    await pipe.handle_safely(batch(5), lambda: acked.append(1))
    assert pipe.health.report()["status"] == "ok"  # one failure may be a bad input
    await pipe.handle_safely(batch(3, first=5), lambda: acked.append(2))
    await writer.flush()
    assert acked == [1, 2] and dlq.sent == []
    assert count(ch_client, f"SELECT count() FROM {database}.events") == 8
    assert count(ch_client, f"SELECT count() FROM {database}.dead_letters") == 0
    assert counting.seen == list(range(8))
    assert (
        metrics.registry.get_sample_value("vigil_detector_errors_total", {"detector": "broken"})
        == 2
    )
    report = pipe.health.report()
    assert report["status"] == "degraded"
    assert report["detectors"]["broken"]["consecutive_failures"] == 2
    assert "RuntimeError: detector bug" in report["detectors"]["broken"]["last_error"]
    assert report["detectors"]["counting"]["ok"]


async def test_a_pii_stage_failure_costs_exactly_the_events_that_cause_it(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    guard = PiiGuard(FaultyScanner(b"k", "re"), PiiConfig(), metrics)
    dlq = Dlq()
    pipe, writer = pipeline(ch_client, database, metrics, dlq, [], guard=guard)
    poison = {"endpoint": "/v1/POISON"}
    pii = {"endpoint": "/v1/login?email=jane.roe@example.com"}
    await pipe.handle_safely(batch(40, at7=poison, at23=poison, at30=pii), lambda: None)
    await writer.flush()
    assert count(ch_client, f"SELECT count() FROM {database}.events") == 38
    assert sorted(int(h["vigil.source.offset"]) for _, h in dlq.sent) == [7, 23]
    assert {h["vigil.error.class"] for _, h in dlq.sent} == {"processing_error"}
    assert all(
        h["vigil.error.message"] == "pii_guard: ValueError while processing the event"
        for _, h in dlq.sent
    )
    # the halves that did scan still redacted and reported what they found
    endpoint = count(ch_client, f"SELECT endpoint FROM {database}.events WHERE event_id = 'e30'")
    assert endpoint == "/v1/login?email=[REDACTED:EMAIL]"
    assert count(ch_client, f"SELECT count() FROM {database}.pii_findings") == 1
    assert (
        metrics.registry.get_sample_value("vigil_stage_errors_total", {"stage": "pii_guard"}) == 2
    )


async def test_a_row_clickhouse_refuses_is_dead_lettered_alone(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    """A deterministic server error (here CANNOT_PARSE_DATETIME) is not retried forever:
    the block is halved until the refused row is alone; it is dead-lettered as
    storage_rejected with its provenance and the other rows are written."""
    dlq = Dlq()
    _, writer = pipeline(ch_client, database, metrics, dlq, [], flush_rows=10_000)
    good = batch(50)
    rows = pipe_rows(good)
    rows["ts"][17] = "not a time"
    written: list[bool] = []
    await writer.add({"events": rows}, source=good.span, on_written=lambda: written.append(True))
    await writer.flush()
    assert written == [True]
    assert count(ch_client, f"SELECT count() FROM {database}.events") == 49
    stored = ch_client.query(
        f"SELECT reason, src_offset, message FROM {database}.dead_letters"
    ).result_rows
    assert [(r, o) for r, o, _ in stored] == [("storage_rejected", 17)]
    assert "code 41 CANNOT_PARSE_DATETIME" in stored[0][2]
    [(value, headers)] = dlq.sent
    assert headers["vigil.error.class"] == "storage_rejected"
    assert orjson.loads(value)["event_id"] == "e17"
    assert (
        metrics.registry.get_sample_value("vigil_sink_rows_rejected_total", {"table": "events"})
        == 1
    )
    # the stored offsets move past the refused row: a restart does not re-read it
    assert count(ch_client, f"SELECT max(next_offset) FROM {database}.ingest_offsets") == 50


def pipe_rows(source: SourceBatch) -> dict[str, list[Any]]:
    result = Ingestor(Pseudonymizer(b"k"), 1 << 20, 60_000).decode_batch(source.records, NOW_MS)
    return result.columns()


async def test_transient_storage_errors_are_retried_until_they_pass(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    """A missing table (UNKNOWN_TABLE) is about the server, not the rows: retried with
    backoff, nothing dead-lettered, written once the table exists."""
    dlq = Dlq()
    _, writer = pipeline(
        ch_client, database, metrics, dlq, [], retry_initial_s=0.05, retry_max_s=0.1
    )
    ch_client.command(f"RENAME TABLE {database}.events TO {database}.events_away")
    rows = pipe_rows(batch(5))
    flushing = asyncio.create_task(writer.add({"events": rows}, source=batch(5).span))
    await flushing
    flush = asyncio.create_task(writer.flush())
    await asyncio.sleep(0.5)
    assert not flush.done()
    ch_client.command(f"RENAME TABLE {database}.events_away TO {database}.events")
    await asyncio.wait_for(flush, timeout=30)
    assert count(ch_client, f"SELECT count() FROM {database}.events") == 5
    assert dlq.sent == []
    failures = metrics.registry.get_sample_value(
        "vigil_sink_insert_failures_total", {"table": "events"}
    )
    assert failures is not None and failures >= 2


async def test_healthy_pipeline_stores_and_counts_by_kind(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    dlq = Dlq()
    pipe, writer = pipeline(ch_client, database, metrics, dlq, [])
    acked: list[bool] = []
    await pipe.handle_safely(batch(7), lambda: acked.append(True))
    await writer.flush()
    assert acked == [True] and dlq.sent == []
    assert ch_client.query(f"SELECT count() FROM {database}.events").result_rows[0][0] == 7
    assert (
        metrics.registry.get_sample_value(
            "vigil_events_consumed_total", {"kind": "security.auth_success"}
        )
        == 7
    )
    assert (
        metrics.registry.get_sample_value("vigil_last_event_timestamp_seconds")
        == (NOW_MS - 1000) / 1000
    )


def stored(ch_client: Any, database: str) -> int:
    return int(ch_client.query(f"SELECT count() FROM {database}.events").result_rows[0][0])


@contextlib.asynccontextmanager
async def lingering(
    ch_client: Any, database: str, metrics: Metrics
) -> AsyncIterator[IngestPipeline]:
    """A running pipeline whose writer would hold rows for 10 minutes unless told."""
    pipe, writer = pipeline(
        ch_client,
        database,
        metrics,
        Dlq(),
        [],
        flush_rows=100_000,
        flush_interval_s=600,
        linger_s=600,
    )
    writer.start()
    try:
        yield pipe
    finally:
        await writer.stop()


async def test_the_end_of_a_backlog_is_written_without_lingering(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    """Rows keep being batched while the input trickles (lag 0, never behind) or while
    some partition is still behind; the batch that brings every partition back to lag 0
    after a backlog is written at once, not after the (here 10-minute) linger."""
    async with lingering(ch_client, database, metrics) as pipe:
        written = asyncio.Event()
        await pipe.handle_safely(batch(3, partition=0, first=0, lag=0), lambda: None)  # trickle
        await pipe.handle_safely(batch(4, partition=0, first=3, lag=9), lambda: None)  # behind
        await pipe.handle_safely(batch(5, partition=1, first=0, lag=0), lambda: None)
        await asyncio.sleep(0.3)
        assert stored(ch_client, database) == 0  # partition 0 is still behind
        await pipe.handle_safely(batch(9, partition=0, first=7, lag=0), written.set)
        await asyncio.wait_for(written.wait(), timeout=30)  # long before the linger
        assert stored(ch_client, database) == 21

        # caught up again: a trickle is batched as before
        await pipe.handle_safely(batch(2, partition=1, first=5, lag=0), lambda: None)
        await asyncio.sleep(0.3)
        assert stored(ch_client, database) == 21


async def test_a_revoked_partition_does_not_hold_back_the_end_of_a_backlog(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    async with lingering(ch_client, database, metrics) as pipe:
        written = asyncio.Event()
        await pipe.handle_safely(batch(4, partition=2, first=0, lag=50), lambda: None)
        await pipe.handle_safely(batch(4, partition=0, first=0, lag=3), lambda: None)
        pipe.forget(2)  # revoked while behind: another worker reads the rest
        await pipe.handle_safely(batch(3, partition=0, first=4, lag=0), written.set)
        await asyncio.wait_for(written.wait(), timeout=30)
        assert stored(ch_client, database) == 11


def _valid_line(draw: st.DrawFn, i: int) -> bytes:
    event = {
        "event_id": f"h{i}",
        "ts": NOW_MS - 5000,
        "tenant_id": draw(st.sampled_from(["acme", "bad tenant", ""])),
        "service": "api",
        "kind": draw(st.sampled_from(["security.auth_success", "analytics", "nope"])),
        "event_name": "x",
    }
    if draw(st.booleans()):
        del event["event_id"]
    return orjson.dumps(event)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, events good and bad, and NDJSON mixing them with blank lines."""
    pieces = draw(
        st.lists(
            st.one_of(
                st.binary(max_size=40),
                st.builds(lambda i: i, st.integers(0, 10**6)).map(str).map(str.encode),
                st.sampled_from([b"", b"{}", b"[" * 80, b'{"a":' * 70, b"\xff\xfe", b"NaN"]),
                st.integers(0, 10**6).map(lambda i: _valid_line(draw, i)),
            ),
            min_size=1,
            max_size=5,
        )
    )
    separator = draw(st.sampled_from([b"\n", b"\r\n", b"\n\n", b" \n"]))
    return separator.join(pieces)


_example = iter(range(10**9))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(records(), min_size=1, max_size=6))
async def test_every_record_and_line_is_stored_or_dead_lettered_exactly_once(
    ch_client: Any, database: str, values: list[bytes]
) -> None:
    """Conservation, whatever the bytes: each record ends up as one stored row or one
    dead letter (line 0), or -- read as NDJSON -- each of its non-blank lines does, once."""
    metrics = Metrics(CollectorRegistry())
    partition = next(_example)
    dlq = Dlq()
    pipe, writer = pipeline(ch_client, database, metrics, dlq, [])
    recs = [Rec(v, offset=i, partition=partition) for i, v in enumerate(values)]
    source = SourceBatch("vigil.events", partition, 0, len(recs) - 1, recs)
    await pipe.handle_safely(source, lambda: None)
    await writer.flush()
    units = ch_client.query(
        f"SELECT src_offset, src_line FROM {database}.events WHERE src_partition = {partition} "
        f"UNION ALL SELECT src_offset, src_line FROM {database}.dead_letters "
        f"WHERE src_partition = {partition}"
    ).result_rows
    assert len(units) == len(set(units)), "a record or line was counted twice"
    assert (
        len(dlq.sent)
        == ch_client.query(
            f"SELECT count() FROM {database}.dead_letters WHERE src_partition = {partition}"
        ).result_rows[0][0]
    )
    for offset, value in enumerate(values):
        lines = sorted(line for o, line in units if o == offset)
        blank = [n for n, text in enumerate(value.split(b"\n"), start=1) if not text.strip()]
        non_blank = [n for n in range(1, value.count(b"\n") + 2) if n not in blank]
        assert lines == [0] or lines == non_blank, (value, lines)
