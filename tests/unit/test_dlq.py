"""Dead letters always publish: bounded, redacted payloads, retried deliveries."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from prometheus_client import CollectorRegistry

from schemas.normalize import Pseudonymizer
from schemas.rows import Provenance
from streams.detectors.pii.scanner import Scanner
from streams.dlq import DeadLetters, bounded_payload
from streams.ingest import Rejection
from streams.metrics import Metrics
from streams.publish import Message, Publisher

KEY = b"dlq-key"
EMAIL = b"jane.roe@example.com"


class Broker:
    """A stand-in for the producer: refuses records over ``limit`` bytes at send time
    (like aiokafka's max_request_size) and fails the first ``outages`` deliveries."""

    def __init__(self, limit: int = 1 << 20, outages: int = 0) -> None:
        self.limit = limit
        self.outages = outages
        self.delivered: list[tuple[bytes, dict[str, str]]] = []
        self.attempts = 0

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        self.attempts += 1
        if len(value) > self.limit:
            raise MessageSizeTooLargeError(f"{len(value)} bytes")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.outages:
            self.outages -= 1
            done.set_exception(KafkaConnectionError("broker down"))
        else:
            self.delivered.append((value, {k: v.decode() for k, v in headers}))
            done.set_result(None)
        return done


def rejection(value: bytes, reason: str = "too_large", offset: int = 3) -> Rejection:
    return Rejection(reason, "message is large", value, Provenance("t", 0, offset, 0, 1))


def dead_letters(broker: Broker, metrics: Metrics, max_bytes: int = 4096) -> DeadLetters:
    scanner = Scanner(KEY, "re")

    def redact(value: bytes) -> tuple[bytes, list[str]]:
        text = value.decode("utf-8", "replace")
        found = scanner.scan_text(text)
        if not found:
            return value, []
        return (scanner.redact_text(text, found, lambda _: "redact") or "").encode(), ["EMAIL"]

    publisher = Publisher(broker.send, metrics, retry_initial_s=0.001, retry_max_s=0.002)
    return DeadLetters(publisher, "dlq", Pseudonymizer(KEY), metrics, max_bytes, redact)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


async def test_a_large_payload_is_redacted_cut_and_described(metrics: Metrics) -> None:
    original = b"x" * 100 + b" " + EMAIL + b" " + b"y" * (2 << 20)  # 2 MiB, PII early on
    broker = Broker(limit=1 << 20)
    columns = await dead_letters(broker, metrics).publish([rejection(original)], 5)
    [(value, headers)] = broker.delivered
    assert len(value) == 4096 and EMAIL not in value and b"[REDACTED:EMAIL]" in value
    assert headers["vigil.payload.truncated"] == "true"
    assert headers["vigil.payload.size"] == str(len(original))
    assert headers["vigil.payload.hmac"] == Pseudonymizer(KEY).hash_bytes(original)
    assert headers["vigil.pii.redacted"] == "EMAIL"
    assert columns["value_hmac"] == [headers["vigil.payload.hmac"]]
    assert columns["size_bytes"] == [len(original)]


def test_a_value_split_by_the_cut_is_still_redacted() -> None:
    scanner = Scanner(KEY, "re")

    def redact(value: bytes) -> tuple[bytes, list[str]]:
        text = value.decode()
        found = scanner.scan_text(text)
        redacted = scanner.redact_text(text, found, lambda _: "redact") or ""
        return redacted.encode(), sorted({f.entity for f in found})

    value = b"a" * 89 + b" " + EMAIL + b" " + b"b" * 50  # the cut at 100 falls inside the address
    payload = bounded_payload(value, 100, redact)
    assert payload.truncated and len(payload.value) == 100
    assert b"jane.roe" not in payload.value and payload.entities == ["EMAIL"]
    small = bounded_payload(b"hello", 100, redact)
    assert (small.value, small.truncated) == (b"hello", False)


async def test_failed_deliveries_are_retried_until_the_broker_takes_them(
    metrics: Metrics,
) -> None:
    broker = Broker(outages=3)
    await dead_letters(broker, metrics).publish([rejection(b"a"), rejection(b"b", offset=4)], 5)
    assert sorted(v for v, _ in broker.delivered) == [b"a", b"b"]
    assert metrics.registry.get_sample_value("vigil_publish_retries_total", {"purpose": "dlq"}) == 3
    assert metrics.registry.get_sample_value("vigil_dlq_messages_total") == 2


async def test_a_record_still_too_large_goes_out_without_its_payload(metrics: Metrics) -> None:
    broker = Broker(limit=1000)  # below the configured cut: the settings were wrong
    await dead_letters(broker, metrics, max_bytes=4096).publish([rejection(b"z" * 9000)], 5)
    [(value, headers)] = broker.delivered
    assert value == b"" and headers["vigil.payload.truncated"] == "true"
    assert headers["vigil.error.class"] == "too_large"


async def test_the_publisher_keeps_the_order_of_its_calls(metrics: Metrics) -> None:
    broker = Broker(outages=1)
    publisher = Publisher(broker.send, metrics, retry_initial_s=0.001)
    await publisher.publish("alerts", [Message("a", b"k", b"first", [])])
    await publisher.publish("alerts", [Message("a", b"k", b"second", [])])
    assert [v for v, _ in broker.delivered] == [b"first", b"second"]
