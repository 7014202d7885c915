"""The ingest boundary: bytes in, typed events and dead letters out.

Pure and synchronous: no broker, no clock reads (``now_ms`` is passed in). A Kafka
record holds one JSON event or NDJSON (one event per line). Each bad message -- or each
bad line of an NDJSON message -- becomes a :class:`Rejection` carrying the original bytes
and its provenance; the good lines of the same message proceed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from pydantic import ValidationError

from schemas.events import EVENT_ADAPTER, KINDS, TENANTLESS_KINDS
from schemas.fastpath import (
    ANALYTICS,
    DECODE_ERRORS,
    FastEvent,
    datetime_ms,
    decode_fast,
    decode_lines_fast,
    from_model,
    group_by_type,
    missing_ids,
    with_event_id,
)
from schemas.normalize import NormalisationError, Pseudonymizer, normalise
from schemas.rows import Provenance, event_columns
from streams.limits import JsonLimits

log = logging.getLogger(__name__)

DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_ITEMS = 10_000

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
    "too_deep",
    "too_many_items",
    "processing_error",
    "storage_rejected",
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
    """Valid events with their provenance as parallel columns, plus the rejections.

    ``events`` are the hot-path structs of :mod:`schemas.fastpath` (the fields of the
    pydantic models, validated); ``ts_ms`` is their event time in epoch milliseconds."""

    topic: str = ""
    events: list[FastEvent] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    _by_type: dict[type[FastEvent], Sequence[int]] | None = field(
        default=None, repr=False, compare=False
    )

    def by_type(self) -> dict[type[FastEvent], Sequence[int]]:
        """Positions of the events per struct type, computed once per batch for every
        stage that splits by kind (the PII guard's redacted copies keep their type)."""
        if self._by_type is None:
            self._by_type = group_by_type(self.events)
        return self._by_type

    def since(self, offset: int) -> IngestResult:
        """Only what came from records at ``offset`` or later (the rest is stored)."""
        keep = [i for i, o in enumerate(self.offsets) if o >= offset]
        return self.subset(keep, [r for r in self.rejections if r.source.offset >= offset])

    def subset(
        self, positions: Sequence[int], rejections: list[Rejection] | None = None
    ) -> IngestResult:
        """The events at ``positions`` (in that order), with ``rejections`` (none by
        default)."""
        return IngestResult(
            self.topic,
            [self.events[i] for i in positions],
            [self.ts_ms[i] for i in positions],
            [self.partitions[i] for i in positions],
            [self.offsets[i] for i in positions],
            [self.lines[i] for i in positions],
            rejections if rejections is not None else [],
        )

    def without(self, positions: Sequence[int], rejections: Sequence[Rejection]) -> IngestResult:
        """This batch minus the events at ``positions``, plus ``rejections`` (for them)."""
        gone = set(positions)
        keep = [i for i in range(len(self.events)) if i not in gone]
        return self.subset(keep, [*self.rejections, *rejections])

    def mark(self) -> tuple[int, int]:
        """How many events and rejections there are now (see :meth:`rollback`)."""
        return len(self.events), len(self.rejections)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget what was added since ``mark`` (a record whose decoding failed)."""
        n, r = mark
        for column in (self.events, self.ts_ms, self.partitions, self.offsets, self.lines):
            del column[n:]
        del self.rejections[r:]
        self._by_type = None

    def columns(self) -> dict[str, list[Any]]:
        """The valid events as ``vigil.events`` columns."""
        return event_columns(
            self.events,
            self.ts_ms,
            self.topic,
            self.partitions,
            self.offsets,
            self.lines,
            self.by_type(),
        )


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
    """Decode once, normalise, validate; everything else is a :class:`Rejection`.

    Each message (or NDJSON line) first tries the msgspec fast path; what it does not
    take -- log-shaped events, lax input, anything invalid -- is decided by generic JSON +
    the normaliser + pydantic, which name the problem. Before anything decodes a record,
    its size and shape (:class:`streams.limits.JsonLimits`) are checked. Each record is
    decoded in isolation: if decoding it raises anyway, only that record (or NDJSON line)
    is rejected, as ``processing_error`` naming the stage and the exception class."""

    def __init__(
        self,
        pseudonymizer: Pseudonymizer,
        max_message_bytes: int,
        max_future_skew_ms: int,
        retention_ms: int | None = None,
        limits: JsonLimits | None = None,
        *,
        fast_path: bool = True,
    ) -> None:
        self._fast = fast_path  # off: the contract path decides everything (tests, bench)
        self._pseudo = pseudonymizer
        self._max_bytes = max_message_bytes
        self._max_skew_ms = max_future_skew_ms
        self._retention_ms = retention_ms
        self._limits = limits or JsonLimits(DEFAULT_MAX_DEPTH, DEFAULT_MAX_ITEMS)

    def decode_batch(self, records: Sequence[SourceRecord], now_ms: int) -> IngestResult:
        result = IngestResult(topic=records[0].topic if records else "")
        horizon_ms = now_ms + self._max_skew_ms
        oldest_ms = now_ms - self._retention_ms if self._retention_ms is not None else MIN_TS_MS
        window = (max(oldest_ms, MIN_TS_MS), horizon_ms)
        for rec in records:
            mark = result.mark()
            try:
                self._decode_record(rec, window, result)
            except Exception as exc:  # a decoder bug must cost this record alone
                result.rollback(mark)
                log.exception(
                    "decoding %s[%d]@%d raised; dead-lettering the record",
                    rec.topic,
                    rec.partition,
                    rec.offset,
                )
                self._reject(
                    result,
                    "processing_error",
                    f"decode: {type(exc).__name__} while decoding the record",
                    rec.value or b"",
                    rec,
                    0,
                )
        return result

    def _decode_record(
        self, rec: SourceRecord, window: tuple[int, int], result: IngestResult
    ) -> None:
        value = rec.value or b""
        if len(value) > self._max_bytes:
            message = (
                f"message is {len(value)} bytes, above VIGIL_MAX_MESSAGE_BYTES={self._max_bytes}"
            )
            self._reject(result, "too_large", message, value, rec, 0)
            return
        if b"\n" not in value.strip():
            self._decode_line(value, 0, rec, window, result)
            return
        if self._take_fast_lines(value, rec, window, result):
            return
        if _first_line_is_json(value):
            self._decode_ndjson(value, rec, window, result)
            return
        # one document over several lines (pretty-printed), or NDJSON whose first line is bad
        if self._limits.fits_document(value) or self._limits.problem(value) is None:
            try:
                obj = _decode_json(value)
            except DECODE_ERRORS:
                pass
            else:
                self._accept(obj, value, rec, 0, window, result)
                return
        self._decode_ndjson(value, rec, window, result)

    def _decode_ndjson(
        self, value: bytes, rec: SourceRecord, window: tuple[int, int], result: IngestResult
    ) -> None:
        for number, line in enumerate(value.split(b"\n"), start=1):
            if not line.strip():
                continue
            mark = result.mark()
            try:
                self._decode_line(line, number, rec, window, result)
            except Exception as exc:  # this line alone
                result.rollback(mark)
                log.exception(
                    "decoding %s[%d]@%d line %d raised; dead-lettering the line",
                    rec.topic,
                    rec.partition,
                    rec.offset,
                    number,
                )
                self._reject(
                    result,
                    "processing_error",
                    f"decode: {type(exc).__name__} while decoding the line",
                    line,
                    rec,
                    number,
                )

    def _decode_line(
        self,
        line: bytes,
        number: int,
        rec: SourceRecord,
        window: tuple[int, int],
        result: IngestResult,
    ) -> None:
        fast = decode_fast(line) if self._fast else None
        # The fast path's structs refuse unknown fields, so what they decode has a known
        # shape: one level of scalars, within any limit -- except analytics properties.
        if (fast is None or type(fast[0]) is ANALYTICS) and not self._limits.fits_document(line):
            problem = self._limits.problem(line)
            if problem is not None:
                self._reject(result, *problem, line, rec, number)
                return
        if fast is not None and self._take_fast(fast, line, rec, number, window, result):
            return
        try:
            obj = _decode_json(line)
        except DECODE_ERRORS as exc:
            self._reject(result, "not_json", f"not valid JSON: {exc}", line, rec, number)
            return
        self._accept(obj, line, rec, number, window, result)

    def _take_fast(
        self,
        fast: tuple[FastEvent, int],
        data: bytes,
        rec: SourceRecord,
        line: int,
        window: tuple[int, int],
        result: IngestResult,
    ) -> bool:
        """Accept the fast path's ``(event, ts)`` of ``data`` if its time is in
        ``window`` (else the contract path names the problem)."""
        event, ts_ms = fast
        if not window[0] <= ts_ms <= window[1]:
            return False
        if event.event_id is msgspec.UNSET:  # type: ignore[attr-defined]
            event = with_event_id(event, self._pseudo.event_id(data))
        result.events.append(event)
        result.ts_ms.append(ts_ms)
        result.partitions.append(rec.partition)
        result.offsets.append(rec.offset)
        result.lines.append(line)
        return True

    def _take_fast_lines(
        self, data: bytes, rec: SourceRecord, window: tuple[int, int], result: IngestResult
    ) -> bool:
        """Accept the whole NDJSON message ``data`` if every line is fast-path material
        within the shape limits, with its time in ``window`` (one msgspec call)."""
        fast = decode_lines_fast(data) if self._fast else None
        if fast is None:
            return False
        events, stamps = fast
        if not window[0] <= min(stamps) <= max(stamps) <= window[1]:
            return False
        raw: list[bytes] | None = None  # the lines; no blank ones here: event i is line i + 1
        if ANALYTICS in set(map(type, events)):  # the only kind whose shape may vary
            raw = data.split(b"\n")
            fits = self._limits.fits_document
            if not all(fits(raw[i]) for i, e in enumerate(events) if type(e) is ANALYTICS):
                return False  # line by line: the exact check decides for each line
        if missing_ids(events):
            raw = raw or data.split(b"\n")
            events = [
                with_event_id(e, self._pseudo.event_id(raw[i]))
                if e.event_id is msgspec.UNSET  # type: ignore[attr-defined]
                else e
                for i, e in enumerate(events)
            ]
        n = len(events)
        result.events.extend(events)
        result.ts_ms.extend(stamps)
        result.partitions.extend([rec.partition] * n)
        result.offsets.extend([rec.offset] * n)
        result.lines.extend(range(1, n + 1))
        return True

    def _accept(
        self,
        obj: Any,
        raw: bytes,
        rec: SourceRecord,
        line: int,
        window: tuple[int, int],
        result: IngestResult,
    ) -> None:
        """Validate one decoded object; ``window`` = (oldest, newest) acceptable ts in ms."""
        if not isinstance(obj, dict):
            self._reject(
                result,
                "not_object",
                f"expected a JSON object, got {type(obj).__name__}",
                raw,
                rec,
                line,
            )
            return
        if (
            "kind" not in obj
            or obj.get("event_id") is None
            or "user_id" in obj
            or "ip" in obj
            or "ip_address" in obj
            or (not obj.get("tenant_id"))
        ):
            try:
                derived = self._pseudo.event_id(raw)
                obj = normalise(obj, self._pseudo, KINDS, TENANTLESS_KINDS, derived)
            except NormalisationError as exc:
                self._reject(result, exc.reason, str(exc), raw, rec, line)
                return
        elif obj["kind"] not in KINDS:
            self._reject(
                result,
                "unknown_kind",
                f"kind: {obj['kind']!r} is not one of {', '.join(sorted(KINDS))}",
                raw,
                rec,
                line,
            )
            return
        try:
            event = EVENT_ADAPTER.validate_python(obj)
        except ValidationError as exc:
            reason, message = describe_validation_error(exc)
            self._reject(result, reason, message, raw, rec, line)
            return
        ts_ms = datetime_ms(event.ts)
        if not window[0] <= ts_ms <= window[1]:
            if ts_ms > window[1]:
                reason = "future_timestamp"
                problem = "is further in the future than VIGIL_MAX_FUTURE_SKEW_S allows"
            elif ts_ms < MIN_TS_MS:
                reason, problem = "bad_timestamp", "is before 2000-01-01 (epoch seconds as ms?)"
            else:
                reason = "expired_timestamp"
                problem = "is older than VIGIL_RETENTION_DAYS: storage would delete it on arrival"
            self._reject(result, reason, f"ts {event.ts.isoformat()} {problem}", raw, rec, line)
            return
        result.events.append(from_model(event))
        result.ts_ms.append(ts_ms)
        result.partitions.append(rec.partition)
        result.offsets.append(rec.offset)
        result.lines.append(line)

    @staticmethod
    def _reject(
        result: IngestResult, reason: str, message: str, raw: bytes, rec: SourceRecord, line: int
    ) -> None:
        where = f"line {line}: " if line else ""
        result.rejections.append(Rejection(reason, where + message, raw, provenance(rec, line)))


def _first_line_is_json(value: bytes) -> bool:
    """Whether the first non-blank line of ``value`` is a JSON document on its own (NDJSON)
    rather than the start of one document spread over lines."""
    for line in value.split(b"\n", 8):
        if line.strip():
            try:
                _decode_json(line)
            except (*DECODE_ERRORS, RecursionError):
                return False
            return True
    return False


#: Generic JSON decoding for the contract path: the same parser as the fast path, so both
#: read a document identically (integers beyond 64 bits stay exact integers).
_decode_json = msgspec.json.Decoder().decode


def provenance(rec: SourceRecord, line: int) -> Provenance:
    """Where ``rec`` (and its NDJSON ``line``, 0 for a whole message) came from."""
    return Provenance(rec.topic, rec.partition, rec.offset, line, rec.timestamp)
