"""Dead letters: redacted, bounded, always published, always recorded.

Each rejected message (or NDJSON line) goes to the dead-letter topic and is recorded in
``vigil.dead_letters``. The payload is the original bytes, except that

* PII is redacted first (header ``vigil.pii.redacted`` names the entities), and
* it is cut to ``VIGIL_DLQ_MAX_PAYLOAD_BYTES`` (header ``vigil.payload.truncated: true``):
  the broker refuses records over its limit (1 MiB by default), and the embedded one does
  not report it, so this setting is the authority. Only a window of the payload a little
  larger than the cut is scanned, and the cut piece is scanned again.

Headers (all UTF-8): ``vigil.error.class`` (one of :data:`streams.ingest.REASONS`),
``vigil.error.message`` (which field, what was wrong; never the offending value),
``vigil.source.topic``, ``vigil.source.partition``, ``vigil.source.offset``,
``vigil.source.line`` (NDJSON line, 0 for a whole message), ``vigil.source.timestamp``
(ms), ``vigil.dlq.timestamp`` (ms, when it was dead-lettered), ``vigil.payload.size``
(bytes of the original), ``vigil.payload.hmac`` (keyed HMAC of the original bytes, also
stored as ``dead_letters.value_hmac``) and ``vigil.payload.truncated``.

Publishing goes through :class:`streams.publish.Publisher`: retried with backoff while
the stream waits, never raising; a record the producer still refuses as too large is
sent with an empty payload and its headers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.normalize import Pseudonymizer
from streams.ingest import Rejection
from streams.metrics import Metrics
from streams.publish import Message, Publisher

log = logging.getLogger(__name__)

MAX_MESSAGE_HEADER_CHARS = 1000
#: bytes beyond the cut that are scanned too, so a value the cut splits is still seen whole
SCAN_MARGIN_BYTES = 4096

#: payload -> (redacted payload, entities found); the PII guard's, when scanning is on
Redact = Callable[[bytes], tuple[bytes, list[str]]]


def dlq_headers(rejection: Rejection, now_ms: int) -> list[tuple[str, bytes]]:
    src = rejection.source
    return [
        ("vigil.error.class", rejection.reason.encode()),
        ("vigil.error.message", rejection.message[:MAX_MESSAGE_HEADER_CHARS].encode()),
        ("vigil.source.topic", src.topic.encode()),
        ("vigil.source.partition", str(src.partition).encode()),
        ("vigil.source.offset", str(src.offset).encode()),
        ("vigil.source.line", str(src.line).encode()),
        ("vigil.source.timestamp", str(src.timestamp_ms).encode()),
        ("vigil.dlq.timestamp", str(now_ms).encode()),
    ]


@dataclass(frozen=True, slots=True)
class Payload:
    value: bytes
    truncated: bool
    entities: list[str]


def bounded_payload(value: bytes, max_bytes: int, redact: Redact | None) -> Payload:
    """``value`` redacted, then cut to ``max_bytes``."""
    window = value[: max_bytes + SCAN_MARGIN_BYTES]
    entities: set[str] = set()
    if redact is not None:
        window, found = redact(window)
        entities.update(found)
    truncated = len(window) < len(value) or len(window) > max_bytes
    if len(window) > max_bytes:
        window = window[:max_bytes]
        if redact is not None:  # what the cut left of a value may still be recognisable
            window, found = redact(window)
            entities.update(found)
    return Payload(window, truncated, sorted(entities))


class DeadLetters:
    """Publishes rejections to the dead-letter topic and builds their table rows."""

    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        pseudo: Pseudonymizer,
        metrics: Metrics,
        max_payload_bytes: int,
        redact: Redact | None = None,
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._pseudo = pseudo
        self._metrics = metrics
        self._max_bytes = max_payload_bytes
        self._redact = redact

    def message(self, rejection: Rejection, now_ms: int) -> Message:
        headers = dlq_headers(rejection, now_ms)
        try:
            payload = bounded_payload(rejection.value, self._max_bytes, self._redact)
        except Exception:  # unscanned bytes must not leave: send the headers alone
            log.exception("redacting a dead letter failed; publishing it without payload")
            payload = Payload(b"", True, [])
            headers.append(("vigil.payload.withheld", b"redaction failed"))
        headers += [
            ("vigil.payload.size", str(len(rejection.value)).encode()),
            ("vigil.payload.hmac", self._pseudo.hash_bytes(rejection.value).encode()),
            ("vigil.payload.truncated", b"true" if payload.truncated else b"false"),
        ]
        if payload.entities:
            headers.append(("vigil.pii.redacted", ",".join(payload.entities).encode()))
        return Message(self._topic, None, payload.value, headers)

    async def publish(self, rejections: Sequence[Rejection], now_ms: int) -> dict[str, list[Any]]:
        """Publish every rejection (waiting for the broker), then return their rows."""
        for rejection in rejections:
            self._metrics.events_invalid.labels(reason=rejection.reason).inc()
        messages = [self.message(r, now_ms) for r in rejections]
        await self._publisher.publish("dlq", messages, shrink=_without_payload)
        self._metrics.dlq_messages.inc(len(rejections))
        return dead_letter_columns(rejections, now_ms, self._pseudo)


def _without_payload(message: Message) -> Message | None:
    """The producer refused even the cut payload: send the headers alone."""
    if not message.value:
        return None
    headers = [(k, v) for k, v in message.headers if k != "vigil.payload.truncated"]
    return Message(
        message.topic, message.key, b"", [*headers, ("vigil.payload.truncated", b"true")]
    )


def dead_letter_columns(
    rejections: Sequence[Rejection], now_ms: int, pseudo: Pseudonymizer
) -> dict[str, list[Any]]:
    """Rows for ``vigil.dead_letters``: no payload bytes, only size and a keyed HMAC."""
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    return {
        "ts": [now] * len(rejections),
        "reason": [r.reason for r in rejections],
        "message": [r.message[:MAX_MESSAGE_HEADER_CHARS] for r in rejections],
        "size_bytes": [len(r.value) for r in rejections],
        "value_hmac": [pseudo.hash_bytes(r.value) for r in rejections],
        "src_topic": [r.source.topic for r in rejections],
        "src_partition": [r.source.partition for r in rejections],
        "src_offset": [r.source.offset for r in rejections],
        "src_line": [r.source.line for r in rejections],
        "src_timestamp": [
            datetime.fromtimestamp(max(r.source.timestamp_ms, 0) / 1000, tz=UTC) for r in rejections
        ],
    }
