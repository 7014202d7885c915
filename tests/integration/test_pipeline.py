"""The ingest pipeline's error policy, with a real ClickHouse engine behind the writer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from schemas.normalize import Pseudonymizer
from sinks.clickhouse import ClickHouseWriter
from streams.ingest import Ingestor, IngestResult
from streams.metrics import Metrics
from streams.pipeline import IngestPipeline
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
    async def process(self, result: IngestResult, source: SourceBatch) -> None:
        raise RuntimeError("detector bug")


def batch(n: int, partition: int = 0, first: int = 0, lag: int | None = None) -> SourceBatch:
    records = [
        Rec(
            orjson.dumps(
                {
                    "event_id": f"e{i}",
                    "ts": NOW_MS - 1000,
                    "tenant_id": "acme",
                    "service": "api",
                    "kind": "security.auth_success",
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
    **writer_options: Any,
) -> tuple[IngestPipeline, ClickHouseWriter]:
    pseudo = Pseudonymizer(b"k")
    writer = ClickHouseWriter(ch_client, database, metrics, **{"flush_rows": 1, **writer_options})
    pipe = IngestPipeline(
        Ingestor(pseudo, 1 << 20, 60_000),
        writer,
        dlq.send,
        "vigil.events.dlq",
        metrics,
        pseudo,
        detectors,
        clock_ms=lambda: NOW_MS,
    )
    return pipe, writer


async def test_a_failing_stage_dead_letters_the_batch_and_acks(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    dlq = Dlq()
    pipe, writer = pipeline(ch_client, database, metrics, dlq, [BrokenDetector()])
    acked: list[bool] = []
    await pipe.handle_safely(batch(5), lambda: acked.append(True))
    await writer.flush()
    assert acked == [True]
    assert len(dlq.sent) == 5
    assert {h["vigil.error.class"] for _, h in dlq.sent} == {"processing_error"}
    assert all("RuntimeError" in h["vigil.error.message"] for _, h in dlq.sent)
    stored = ch_client.query(
        f"SELECT reason, count() FROM {database}.dead_letters GROUP BY reason"
    ).result_rows
    assert stored == [("processing_error", 5)]
    assert (
        metrics.registry.get_sample_value(
            "vigil_events_invalid_total", {"reason": "processing_error"}
        )
        == 5
    )


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
