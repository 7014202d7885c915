"""The ingest boundary: bytes in, typed events and dead letters out.

Pure and synchronous: no broker, no clock reads (``now_ms`` is passed in). A Kafka
record holds one JSON event or NDJSON (one event per line). Each bad message -- or each
bad line of an NDJSON message -- becomes a :class:`Rejection` carrying the original bytes
and its provenance; the good lines of the same message proceed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from schemas.events import EVENT_ADAPTER, KINDS, TENANTLESS_KINDS, Event
from schemas.normalize import NormalisationError, Pseudonymizer, normalise
from schemas.rows import Provenance

#: The DLQ error classes (header ``vigil.error.class``); a bounded metric label too.
REASONS: tuple[str, ...] = (
    "too_large",
    "not_json",
    "not_object",
    "schema_violation",
    "unknown_kind",
    "missing_tenant",
    "bad_timestamp",
    "future_timestamp",
    "expired_timestamp",
    "processing_error",
)


MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z


class SourceRecord(Protocol):
    """What the consumer hands over: aiokafka's ConsumerRecord satisfies it."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    message: str
    value: bytes
    source: Provenance


@dataclass(slots=True)
class IngestResult:
    """Valid events with their provenance as parallel columns, plus the rejections."""

    topic: str = ""
    events: list[Event] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def provenance(self, i: int) -> Provenance:
        return Provenance(self.topic, self.partitions[i], self.offsets[i], self.lines[i], 0)


def describe_validation_error(exc: ValidationError) -> tuple[str, str]:
    """(reason, message) naming fields and problems; input values are never echoed."""
    parts = []
    reason = "schema_violation"
    for err in exc.errors(include_input=False, include_url=False)[:5]:
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0] in KINDS:  # discriminated-union tag, not a field
            loc = loc[1:]
        name = ".".join(loc) or "event"
        if name == "ts":
            reason = "bad_timestamp"
        parts.append(f"{name}: {err['msg']}")
    return reason, "; ".join(parts)


class Ingestor:
    """Decode once, normalise, validate; everything else is a :class:`Rejection`."""

    def __init__(
        self,
        pseudonymizer: Pseudonymizer,
        max_message_bytes: int,
        max_future_skew_ms: int,
        retention_ms: int | None = None,
    ) -> None:
        self._pseudo = pseudonymizer
        self._max_bytes = max_message_bytes
        self._max_skew_ms = max_future_skew_ms
        self._retention_ms = retention_ms

    def decode_batch(self, records: Sequence[SourceRecord], now_ms: int) -> IngestResult:
        result = IngestResult(topic=records[0].topic if records else "")
        horizon_ms = now_ms + self._max_skew_ms
        self._oldest_ms = (
            now_ms - self._retention_ms if self._retention_ms is not None else MIN_TS_MS
        )
        for rec in records:
            value = rec.value or b""
            source = Provenance(rec.topic, rec.partition, rec.offset, 0, rec.timestamp)
            if len(value) > self._max_bytes:
                result.rejections.append(
                    Rejection(
                        "too_large",
                        f"message is {len(value)} bytes, above VIGIL_MAX_MESSAGE_BYTES="
                        f"{self._max_bytes}",
                        value,
                        source,
                    )
                )
                continue
            try:
                obj = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                if b"\n" in value.strip():
                    self._decode_ndjson(value, source, horizon_ms, result)
                else:
                    result.rejections.append(
                        Rejection("not_json", f"not valid JSON: {exc}", value, source)
                    )
                continue
            self._accept(obj, value, source, horizon_ms, result)
        return result

    def _decode_ndjson(
        self, value: bytes, source: Provenance, horizon_ms: int, result: IngestResult
    ) -> None:
        for number, line in enumerate(value.split(b"\n"), start=1):
            if not line.strip():
                continue
            line_source = Provenance(
                source.topic, source.partition, source.offset, number, source.timestamp_ms
            )
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                result.rejections.append(
                    Rejection(
                        "not_json", f"line {number}: not valid JSON: {exc}", line, line_source
                    )
                )
                continue
            self._accept(obj, line, line_source, horizon_ms, result)

    def _accept(
        self,
        obj: Any,
        raw: bytes,
        source: Provenance,
        horizon_ms: int,
        result: IngestResult,
    ) -> None:
        where = f"line {source.line}: " if source.line else ""
        if not isinstance(obj, dict):
            result.rejections.append(
                Rejection(
                    "not_object",
                    f"{where}expected a JSON object, got {type(obj).__name__}",
                    raw,
                    source,
                )
            )
            return
        try:
            event = EVENT_ADAPTER.validate_python(
                normalise(obj, self._pseudo, KINDS, TENANTLESS_KINDS)
            )
        except NormalisationError as exc:
            result.rejections.append(Rejection(exc.reason, f"{where}{exc}", raw, source))
            return
        except ValidationError as exc:
            reason, message = describe_validation_error(exc)
            result.rejections.append(Rejection(reason, f"{where}{message}", raw, source))
            return
        ts_ms = int(event.ts.timestamp() * 1000)
        if ts_ms > horizon_ms or ts_ms < self._oldest_ms:
            if ts_ms > horizon_ms:
                reason = "future_timestamp"
                problem = "is further in the future than VIGIL_MAX_FUTURE_SKEW_S allows"
            elif ts_ms < MIN_TS_MS:
                reason, problem = "bad_timestamp", "is before 2000-01-01 (epoch seconds as ms?)"
            else:
                reason = "expired_timestamp"
                problem = "is older than VIGIL_RETENTION_DAYS: storage would delete it on arrival"
            result.rejections.append(
                Rejection(reason, f"{where}ts {event.ts.isoformat()} {problem}", raw, source)
            )
            return
        result.events.append(event)
        result.ts_ms.append(ts_ms)
        result.partitions.append(source.partition)
        result.offsets.append(source.offset)
        result.lines.append(source.line)
