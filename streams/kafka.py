"""Plain aiokafka clients (producer, consumer, admin) configured from Settings.

Used by the CLI commands that are not the worker: produce, demo, alerts; and by tests
and benchmarks. Idempotent producers are off: the embedded broker refuses InitProducerId.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from streams.errors import BrokerUnavailable
from streams.settings import Settings


def client_options(settings: Settings) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        opts["ssl_context"] = ssl.create_default_context(cafile=cafile)
    if settings.kafka_security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        password = settings.kafka_sasl_password
        opts["sasl_plain_password"] = password.get_secret_value() if password else None
    return opts


def unreachable(settings: Settings, exc: Exception) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}); check "
        "VIGIL_KAFKA_BOOTSTRAP, VIGIL_KAFKA_SECURITY_PROTOCOL and that the broker is up "
        "(`vigil up` starts an embedded one)"
    )


async def start_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    options: dict[str, Any] = {
        **client_options(settings),
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
        "max_request_size": settings.max_message_bytes * 4,
        "enable_idempotence": False,
        **overrides,
    }
    producer = AIOKafkaProducer(**options)
    await _start(producer, settings)
    return producer


async def start_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(*topics, **client_options(settings), **overrides)
    await _start(consumer, settings)
    return consumer


async def _start(client: AIOKafkaProducer | AIOKafkaConsumer, settings: Settings) -> None:
    try:
        await client.start()
    except KafkaConnectionError as exc:
        await client.stop()
        raise unreachable(settings, exc) from exc


async def ensure_topics(
    settings: Settings, names: list[str], partitions: int | None = None
) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        raise unreachable(settings, exc) from exc
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            n, partitions or settings.topic_partitions, settings.topic_replication
                        )
                        for n in missing
                    ]
                )
    finally:
        await admin.close()
