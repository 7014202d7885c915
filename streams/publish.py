"""Publishing to Kafka that never crashes the worker: retry with backoff, shrink on size.

Everything Vigil publishes (dead letters, alerts) goes through :class:`Publisher`. A send
that fails -- the broker is down, a leader moves, a request times out -- is retried with
exponential backoff while the caller waits, so the stream slows down (backpressure)
instead of losing the record or killing the agent. A record the producer refuses as too
large can never succeed as it is: the caller's ``shrink`` gives a smaller version (the
dead-letter publisher drops the payload and keeps the headers); without one it is
retried like any other failure and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streams.metrics import Metrics

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
#: send(topic, key, value, headers[, partition]) -> awaitable delivery (the producer, or
#: a stand-in; the partition is passed only when a message names one)
Send = Callable[..., Awaitable[Awaitable[Any]]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    partition: int | None = None  # None: the producer's partitioner (by key)


def is_too_large(exc: BaseException) -> bool:
    """The producer or broker refused the record for its size (never succeeds as is)."""
    seen: BaseException | None = exc
    while seen is not None:
        if "MessageSizeTooLarge" in f"{type(seen).__name__} {seen}":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Publisher:
    def __init__(
        self,
        send: Send,
        metrics: Metrics,
        *,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._send = send
        self._metrics = metrics
        self._initial_s = retry_initial_s
        self._max_s = retry_max_s
        self._sleep = sleep

    async def publish(
        self,
        purpose: str,
        messages: Sequence[Message],
        shrink: Callable[[Message], Message | None] | None = None,
    ) -> None:
        """Deliver every message (acknowledged by the broker) before returning.

        ``purpose`` (``dlq``, ``alerts``) labels the retry metric and the log."""
        pending = list(messages)
        delay = self._initial_s
        attempt = 0
        while pending:
            failed = await self._attempt(pending)
            if not failed:
                return
            attempt += 1
            self._metrics.publish_retries.labels(purpose=purpose).inc(len(failed))
            pending = []
            for message, exc in failed:
                smaller = shrink(message) if shrink is not None and is_too_large(exc) else None
                pending.append(smaller if smaller is not None else message)
            first = failed[0][1]
            log.warning(
                "publishing %d %s record(s) to %s failed (attempt %d: %s: %s); retrying in %.1fs",
                len(failed),
                purpose,
                failed[0][0].topic,
                attempt,
                type(first).__name__,
                first,
                delay,
            )
            await self._sleep(delay)
            delay = min(delay * 2, self._max_s)

    async def _attempt(self, messages: list[Message]) -> list[tuple[Message, Exception]]:
        failed: list[tuple[Message, Exception]] = []
        deliveries: list[tuple[Message, Awaitable[Any]]] = []
        for m in messages:
            try:
                if m.partition is None:
                    delivery = await self._send(m.topic, m.key, m.value, m.headers)
                else:
                    delivery = await self._send(m.topic, m.key, m.value, m.headers, m.partition)
                deliveries.append((m, delivery))
            except Exception as exc:
                failed.append((m, exc))
        for m, delivery in deliveries:
            try:
                await delivery
            except Exception as exc:
                failed.append((m, exc))
        return failed
