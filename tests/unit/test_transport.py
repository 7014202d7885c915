"""The batch transport's consumer takes its fetch settings from Vigil's settings."""

from __future__ import annotations

from typing import Any

import pytest

from streams.app import create_app
from streams.settings import load_settings
from streams.transport import BatchConsumer, BatchConsumerThread


@pytest.mark.parametrize("wait_ms", [0, 100, 2500])
async def test_fetch_long_poll_comes_from_settings_not_fausts_default(
    tmp_path: object, wait_ms: int
) -> None:
    settings = load_settings(
        kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path, fetch_max_wait_ms=wait_ms
    )
    app = create_app(settings)
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer)
    thread = consumer._new_consumer_thread()
    assert isinstance(thread, BatchConsumerThread)
    kafka_consumer = thread._create_worker_consumer(app.transport)
    try:
        # Faust alone would have set 1500 ms, whatever the settings say
        assert kafka_consumer._fetch_max_wait_ms == wait_ms
        assert kafka_consumer._max_poll_records == settings.fetch_max_records
    finally:
        await kafka_consumer.stop()


class _Rec:
    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.value = b"{}"
        self.timestamp = 1_767_323_045_678
        self.timestamp_type = 0


class _Stopped:
    def __init__(self) -> None:
        self.stopped = False

    def is_set(self) -> bool:
        return self.stopped


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = _Stopped()


async def test_records_of_a_partition_paused_during_the_fetch_are_fetched_again(
    tmp_path: object,
) -> None:
    """Nothing fetched is lost: a partition that Faust paused while the fetch was in
    flight is sought back to its first record; one paused because the stream's buffer is
    full still gets its records (Faust's own rule). Each batch says how many records of
    its partition remain behind it (from the fetch's high watermark)."""
    from faust.types import TP

    app = create_app(load_settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path))
    consumer = app.consumer
    paused, buffered, active = TP("vigil.events", 0), TP("vigil.events", 1), TP("vigil.events", 2)
    fetcher = _Fetcher()
    rounds = [
        (
            {paused: [_Rec(5), _Rec(6)], buffered: [_Rec(7)], active: [_Rec(9), _Rec(10)]},
            {active},
        )
    ]

    async def wait_next_records(_timeout: float) -> Any:
        if rounds:
            return rounds.pop()
        fetcher._stopped.stopped = True
        return {}, None

    delivered: list[tuple[int, int, int, int | None]] = []
    sought: list[tuple[TP, int]] = []
    highwaters = {active: 15, buffered: 8}  # next offset the broker will write

    async def callback(message: Any) -> None:
        batch = message.value
        delivered.append((message.partition, batch.first_offset, message.offset, batch.lag))

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    async def floor(tp: TP) -> int:
        return -1

    consumer._buffered_partitions.add(buffered)
    consumer._wait_next_records = wait_next_records
    consumer.callback = callback
    consumer.seek = seek
    consumer._floor = floor
    consumer.highwater = highwaters.get
    await consumer._drain_messages(fetcher)
    assert sought == [(paused, 5)]
    assert sorted(delivered) == [(1, 7, 7, 0), (2, 9, 10, 4)]


async def test_stored_floors_are_read_once_per_topic_and_generation(tmp_path: object) -> None:
    """Every partition's floor comes from one query per topic (partitions with nothing
    stored get -1), and a new consumer generation reads them again."""
    from faust.types import TP

    app = create_app(load_settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path))
    consumer = app.consumer
    stored = {"vigil.events": {1: 50}, "other": {0: 7}}
    queries: list[str] = []

    async def provider(topic: str) -> dict[int, int]:
        queries.append(topic)
        return dict(stored[topic])

    app.consumer_hooks.stored_offsets = provider
    app.consumer_generation_id = 3
    floors = [await consumer._floor(TP("vigil.events", p)) for p in (2, 1, 0, 3)]
    assert floors == [-1, 50, -1, -1]
    assert await consumer._floor(TP("other", 0)) == 7
    assert queries == ["vigil.events", "other"]

    stored["vigil.events"] = {1: 80, 2: 10}  # rows written by the previous owner
    app.consumer_generation_id = 4
    assert await consumer._floor(TP("vigil.events", 2)) == 10
    assert await consumer._floor(TP("vigil.events", 1)) == 80
    assert queries == ["vigil.events", "other", "vigil.events"]
