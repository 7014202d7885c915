"""The ClickHouse writer and migrations against a real chDB engine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from schemas.events import EVENT_ADAPTER
from schemas.fastpath import from_model
from schemas.rows import EVENT_COLUMNS, event_columns
from sinks.clickhouse import ClickHouseWriter, redact_url
from sinks.migrate import load_migrations, migrate
from streams.metrics import Metrics

pytestmark = pytest.mark.integration


def rows(n: int, start: int = 0) -> dict[str, list[Any]]:
    events = [
        from_model(
            EVENT_ADAPTER.validate_python(
                {
                    "event_id": f"e{i}",
                    "ts": 1_767_323_045_000 + i,
                    "tenant_id": f"t{i % 3}",
                    "service": "api",
                    "kind": "http.request",
                    "method": "GET",
                    "route": "/x",
                    "status": 200,
                    "duration_ms": float(i),
                }
            )
        )
        for i in range(start, start + n)
    ]
    ts = [1_767_323_045_000 + i for i in range(start, start + n)]
    offsets = list(range(start, start + n))
    return event_columns(events, ts, "vigil.events", [0] * n, offsets, [0] * n)


async def add_events(
    writer: ClickHouseWriter, n: int, start: int = 0, on_written: Callable[[], None] | None = None
) -> None:
    """``rows(n, start)`` into the writer, sourced from the offsets they carry."""
    await writer.add(
        {"events": rows(n, start)},
        source=("vigil.events", 0, start, start + n - 1),
        on_written=on_written,
    )


def count(client: Any, database: str, table: str = "events") -> int:
    return int(client.query(f"SELECT count() FROM {database}.{table}").result_rows[0][0])


@contextlib.asynccontextmanager
async def running(writer: ClickHouseWriter) -> AsyncIterator[None]:
    """The writer's flush timer started, and the writer stopped (flushed) on exit."""
    writer.start()
    try:
        yield
    finally:
        await writer.stop()


class FlakyClient:
    """The real client, but the first ``failures`` inserts raise (ClickHouse down)."""

    def __init__(self, client: Any, failures: int) -> None:
        self._client = client
        self.failures = failures
        self.attempts = 0

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("ClickHouse is down")
        return self._client.raw_insert(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_migrations_are_idempotent_and_recorded(ch_client: Any, database: str) -> None:
    assert migrate(ch_client, database, 3650) == []
    versions = [
        r[0]
        for r in ch_client.query(
            f"SELECT version FROM {database}.schema_migrations ORDER BY version"
        ).result_rows
    ]
    assert versions == [m.version for m in load_migrations(database, 3650)]


def test_event_columns_match_the_table(ch_client: Any, database: str) -> None:
    described = {r[0] for r in ch_client.query(f"DESCRIBE TABLE {database}.events").result_rows}
    assert set(EVENT_COLUMNS) <= described
    assert described - set(EVENT_COLUMNS) == {"ingested_at"}


def test_tables_are_tenant_first_with_ttl(ch_client: Any, database: str) -> None:
    ddl = ch_client.query(f"SHOW CREATE TABLE {database}.events").result_rows[0][0]
    assert "ORDER BY (tenant_id" in ddl
    assert "TTL" in ddl and "PARTITION BY toDate(ts)" in ddl


async def test_flush_on_size_then_ack_in_order(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    writer = ClickHouseWriter(
        ch_client, database, metrics, flush_rows=100, flush_interval_s=60, linger_s=60
    )
    async with running(writer):
        acked: list[int] = []
        await add_events(writer, 60, on_written=lambda: acked.append(1))
        await asyncio.sleep(0.3)
        assert acked == [] and count(ch_client, database) == 0  # below size, timer far away
        await add_events(writer, 60, 60, on_written=lambda: acked.append(2))
        for _ in range(100):
            if acked:
                break
            await asyncio.sleep(0.05)
        assert acked == [1, 2]
        assert count(ch_client, database) == 120
        assert (
            metrics.registry.get_sample_value("vigil_sink_rows_written_total", {"table": "events"})
            == 120
        )


async def test_flush_on_time(ch_client: Any, database: str, metrics: Metrics) -> None:
    writer = ClickHouseWriter(ch_client, database, metrics, flush_rows=10_000, flush_interval_s=0.2)
    async with running(writer):
        done = asyncio.Event()
        await add_events(writer, 5, on_written=done.set)
        await asyncio.wait_for(done.wait(), timeout=30)
        assert count(ch_client, database) == 5


async def test_flush_when_input_pauses(ch_client: Any, database: str, metrics: Metrics) -> None:
    writer = ClickHouseWriter(
        ch_client, database, metrics, flush_rows=10_000, flush_interval_s=60, linger_s=0.3
    )
    async with running(writer):
        done = asyncio.Event()
        for i in range(3):  # a short burst, then nothing
            await add_events(writer, 10, 10 * i, on_written=done.set if i == 2 else None)
        await asyncio.sleep(0.1)
        assert count(ch_client, database) == 0  # still lingering
        await asyncio.wait_for(done.wait(), timeout=30)  # long before the 60 s interval
        assert count(ch_client, database) == 30


async def test_caught_up_flushes_what_is_buffered_at_once(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    writer = ClickHouseWriter(
        ch_client, database, metrics, flush_rows=10_000, flush_interval_s=600, linger_s=600
    )
    async with running(writer):
        writer.caught_up()  # nothing buffered: no effect on the rows added next
        await add_events(writer, 10)
        await asyncio.sleep(0.3)
        assert count(ch_client, database) == 0
        done = asyncio.Event()
        await add_events(writer, 5, 10, on_written=done.set)
        writer.caught_up()
        await asyncio.wait_for(done.wait(), timeout=30)  # not the 10-minute linger
        assert count(ch_client, database) == 15
        await add_events(writer, 3, 15)
        await asyncio.sleep(0.3)
        assert count(ch_client, database) == 15  # the next rows linger again


async def test_retries_until_clickhouse_is_back(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    flaky = FlakyClient(ch_client, failures=3)
    writer = ClickHouseWriter(
        flaky,
        database,
        metrics,
        flush_rows=1,
        flush_interval_s=60,
        retry_initial_s=0.01,
        retry_max_s=0.05,
    )
    async with running(writer):
        done = asyncio.Event()
        await add_events(writer, 10, on_written=done.set)
        await asyncio.wait_for(done.wait(), timeout=30)
        assert flaky.attempts == 4
        assert count(ch_client, database) == 10
        assert (
            metrics.registry.get_sample_value(
                "vigil_sink_insert_failures_total", {"table": "events"}
            )
            == 3
        )


async def test_full_buffer_applies_backpressure(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    flaky = FlakyClient(ch_client, failures=10**9)
    writer = ClickHouseWriter(
        flaky,
        database,
        metrics,
        flush_rows=1_000,
        flush_interval_s=60,
        max_buffer_rows=50,
        retry_initial_s=0.01,
        retry_max_s=0.02,
    )
    async with running(writer):
        await add_events(writer, 50)
        blocked = asyncio.create_task(add_events(writer, 10, 50))
        await asyncio.sleep(0.3)
        assert not blocked.done()  # the stream waits instead of dropping
        flaky.failures = 0  # ClickHouse is back
        await writer.flush()
        await asyncio.wait_for(blocked, timeout=30)
    assert count(ch_client, database) == 60


async def test_same_block_replayed_is_deduplicated(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    for _ in range(2):  # e.g. a retry after an ambiguous timeout, or a replay
        writer = ClickHouseWriter(ch_client, database, metrics, flush_rows=10_000)
        await writer.add({"events": rows(30)}, source=("vigil.events", 1, 100, 129))
        await writer.flush()
    assert count(ch_client, database) == 30


async def test_stored_offsets_follow_the_rows(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    writer = ClickHouseWriter(ch_client, database, metrics)
    await add_events(writer, 30)
    await writer.flush()
    assert await writer.stored_offsets("vigil.events") == {0: 30}
    assert await writer.stored_offsets("other.topic") == {}


def test_passwords_are_redacted_in_messages() -> None:
    assert redact_url("https://bob:s3cret@ch:8443/vigil") == "https://bob:***@ch:8443/vigil"
    assert redact_url("chdb:///tmp/x") == "chdb:///tmp/x"


async def test_a_flush_writes_checkpoint_tables_last(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    """A checkpoint buffered before the rows it stands for (a firing streak before its
    alert) is still inserted after them: a kill between two INSERTs never leaves a
    checkpoint whose rows are missing."""
    written: list[str] = []

    class Recording(ClickHouseWriter):
        async def _write(self, table: str, buf: Any) -> None:
            written.append(table)
            await super()._write(table, buf)

    writer = Recording(ch_client, database, metrics, flush_rows=10_000, flush_interval_s=30)
    await writer.add(
        {
            "security_checkpoints": {
                "consumer_group": ["g"],
                "topic": ["t"],
                "partition": [0],
                "processed_offset": [1],
                "state": ["{}"],
            }
        }
    )
    await writer.add({"security_late_events": {"rule": ["r"], "event_id": ["e"], "ts": [1.0]}})
    await writer.flush()
    assert written == ["security_late_events", "security_checkpoints"]
    assert (
        ch_client.query(f"SELECT count() FROM {database}.security_checkpoints").result_rows[0][0]
        == 1
    )
    await writer.stop()
