"""Small aiokafka helpers for integration tests (the broker is real)."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def produce(
    bootstrap: str, topic: str, values: list[bytes], keys: list[bytes | None] | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=False)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, v, key=(keys[i] if keys else None))
            for i, v in enumerate(values)
        ]
        for f in futures:
            await f
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0
) -> list[Any]:
    """Read ``topic`` from the beginning until ``expected`` records (or the timeout)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
        # linger briefly to catch anything beyond the expected count
        extra = await consumer.getmany(timeout_ms=1000)
        for records in extra.values():
            out.extend(records)
    finally:
        await consumer.stop()
    return out
