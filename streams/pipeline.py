"""What the ingest agent does with one fetched batch, kept out of the ``async for``.

decode + validate (:mod:`streams.ingest`) → PII guard → detectors (the seam: each gets
the typed, redacted batch) → rows to the ClickHouse writer, whose flush acks the batch so
its offsets are committed only once everything derived from it is stored.

Error policy: a failure costs exactly the records that cause it.

* The pure stages (decode, PII guard, column building) isolate the failing records --
  per record while decoding, by halving the batch in the later stages -- and dead-letter
  only those, as ``processing_error`` naming the stage and the exception class; the rest
  of the batch goes on, in order.
* A detector that raises is skipped for that batch, never fed it again (detectors treat
  an earlier offset as a rewind); its events are stored and the other detectors run. The
  failure is counted and logged, and ``/healthz`` reports a detector that keeps failing
  (:mod:`streams.health`). Input faults go to the DLQ; detector faults do not.
* Publishing (dead letters, alerts) retries with backoff while the stream waits, and the
  ClickHouse writer retries transient errors and isolates rows the server refuses
  (``storage_rejected``); neither raises into the agent.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import orjson

from schemas.rows import Provenance
from sinks.clickhouse import ClickHouseWriter
from streams.detectors.pii.guard import Detected, PiiAlerts, PiiGuard, finding_columns
from streams.dlq import DeadLetters
from streams.gate import CommitGate
from streams.health import DetectorHealth
from streams.ingest import Ingestor, IngestResult, Rejection, provenance
from streams.metrics import Metrics
from streams.transport import SourceBatch

log = logging.getLogger(__name__)
T = TypeVar("T")


class Detector(Protocol):
    """The seam for detectors: fed every validated batch, in offset order per partition,
    including records re-read after a restart (whose rows are already stored)."""

    name: str

    async def process(self, result: IngestResult, source: SourceBatch) -> None: ...


def isolate(
    result: IngestResult, run: Callable[[IngestResult], T]
) -> tuple[list[tuple[Sequence[int], IngestResult, T]], dict[int, Exception]]:
    """Run ``run`` over ``result``; where it raises, over halves, down to single events.

    Returns, in event order, the parts that succeeded -- (positions in ``result``, the
    part ``run`` saw, its output) -- and the positions whose event alone makes ``run``
    raise, with the exception. Costs one call when nothing fails."""
    done: list[tuple[Sequence[int], IngestResult, T]] = []
    failed: dict[int, Exception] = {}

    def attempt(positions: Sequence[int], part: IngestResult) -> None:
        try:
            out = run(part)
        except Exception as exc:
            if len(positions) == 1:
                failed[positions[0]] = exc
                return
            middle = len(positions) // 2
            for half in (positions[:middle], positions[middle:]):
                attempt(half, result.subset(half))
            return
        done.append((positions, part, out))

    attempt(range(len(result.events)), result)
    return done, failed


class IngestPipeline:
    def __init__(
        self,
        ingestor: Ingestor,
        writer: ClickHouseWriter,
        dead_letters: DeadLetters,
        metrics: Metrics,
        detectors: Sequence[Detector] = (),
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        gate: CommitGate | None = None,
        guard: PiiGuard | None = None,
        pii_alerts: PiiAlerts | None = None,
        health: DetectorHealth | None = None,
        observers: Sequence[Callable[[IngestResult], None]] = (),
    ) -> None:
        """``observers`` see every decoded batch after the PII guard (valid events and
        rejections): counts for the analytics health rules."""
        self._ingestor = ingestor
        self._observers = tuple(observers)
        self._writer = writer
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._detectors = tuple(detectors)
        self._clock_ms = clock_ms
        self._gate = gate or CommitGate()
        self._guard = guard
        self._pii_alerts = pii_alerts
        self.health = health or DetectorHealth(metrics, threshold=3)
        for detector in self._detectors:
            self.health.register(detector.name)
        if pii_alerts is not None:
            self.health.register("pii")
        self._lags: dict[int, int] = {}  # partition → records behind, after its last batch
        self._behind = False  # some partition had a backlog since the writer last caught up

    async def handle_safely(self, batch: SourceBatch, ack: Callable[[], None]) -> None:
        """:meth:`handle`, with a last resort: every stage isolates its own failures, so
        an exception here is a bug in the pipeline itself; the batch's records not yet
        stored are dead-lettered (``processing_error``) instead of crashing the agent."""
        try:
            await self.handle(batch, ack)
        except Exception as exc:
            log.exception(
                "processing failed for %s[%d] offsets %d-%d; dead-lettering %d records",
                batch.topic,
                batch.partition,
                batch.first_offset,
                batch.last_offset,
                len(batch.records),
            )
            message = f"pipeline: {type(exc).__name__} while processing the batch"
            rejections = [
                Rejection("processing_error", message, r.value or b"", provenance(r, 0))
                for r in batch.records
                if r.offset >= batch.stored_until
            ]
            await self._store(batch, {}, rejections, self._clock_ms(), ack)
        self._note_lag(batch)

    def _note_lag(self, batch: SourceBatch) -> None:
        """Export the partition's lag, and tell the writer when the consumer has worked
        off a backlog (every partition's lag back to 0 after some was behind), so the
        burst's last rows are written now."""
        if batch.lag is None:
            return
        self._metrics.consumer_lag.labels(partition=str(batch.partition)).set(batch.lag)
        self._lags[batch.partition] = batch.lag
        if batch.lag:
            self._behind = True
        elif self._behind and not any(self._lags.values()):
            self._behind = False
            self._writer.caught_up()

    def forget(self, partition: int) -> None:
        """A revoked partition no longer counts towards being caught up."""
        self._lags.pop(partition, None)

    async def handle(self, batch: SourceBatch, ack: Callable[[], None]) -> None:
        now_ms = self._clock_ms()
        self._metrics.messages_consumed.inc(len(batch.records))
        self._metrics.bytes_consumed.inc(batch.size_bytes)
        result = self._ingestor.decode_batch(batch.records, now_ms)
        # PII first: everything after this line sees redacted events only
        result, detected = self._guarded(result, batch)
        for observe in self._observers:
            observe(result)
        for detector in self._detectors:
            try:
                await detector.process(result, batch)
            except Exception as exc:
                self.health.failed(detector.name, exc, _where(batch))
            else:
                self.health.succeeded(detector.name)
        if batch.stored_until > batch.first_offset:  # re-read after a restart
            result = result.since(batch.stored_until)
            detected = [d for d in detected if d.offset >= batch.stored_until]
        rows: dict[str, dict[str, list[Any]]] = {}
        result, columns = self._columns(result, batch)
        if columns is not None:
            if self._guard is None:
                del columns["properties"]  # never stored unscanned
            for kind, n in Counter(columns["kind"]).items():
                self._metrics.events_consumed.labels(kind=kind).inc(n)
            self._metrics.last_event_timestamp.set(max(result.ts_ms) / 1000)
            rows["events"] = columns
        if detected:
            rows["pii_findings"] = finding_columns(detected, batch.topic)
        await self._store(batch, rows, result.rejections, now_ms, ack)
        if detected and self._pii_alerts is not None:
            try:
                await self._pii_alerts.report(detected)
            except Exception as exc:
                self.health.failed("pii", exc, _where(batch))
            else:
                self.health.succeeded("pii")

    def _guarded(
        self, result: IngestResult, batch: SourceBatch
    ) -> tuple[IngestResult, list[Detected]]:
        """The PII guard over the batch; events it cannot scan are dead-lettered (their
        content was never checked, so it must not be stored)."""
        if self._guard is None or not result.events:
            return result, []
        parts, failed = isolate(result, self._guard.scan)
        detected: list[Detected] = []
        for positions, _, (redacted, found) in parts:
            for j, event in redacted.items():
                result.events[positions[j]] = event
            detected.extend(found)
        self._guard.count(detected)
        if failed:
            result = self._drop(result, failed, "pii_guard", batch)
        return result, detected

    def _columns(
        self, result: IngestResult, batch: SourceBatch
    ) -> tuple[IngestResult, dict[str, list[Any]] | None]:
        if not result.events:
            return result, None
        parts, failed = isolate(result, IngestResult.columns)
        if not failed:
            return result, parts[0][2]
        result = self._drop(result, failed, "columns", batch)
        columns: dict[str, list[Any]] = {}
        for _, _, part in parts:
            for name, values in part.items():
                columns.setdefault(name, []).extend(values)
        return result, columns or None

    def _drop(
        self, result: IngestResult, failed: dict[int, Exception], stage: str, batch: SourceBatch
    ) -> IngestResult:
        """``result`` without the events at the ``failed`` positions, which become
        ``processing_error`` rejections carrying their original bytes."""
        raw = _RawRecords(batch)
        rejections = []
        for i, exc in sorted(failed.items()):
            offset, line = result.offsets[i], result.lines[i]
            log.error(
                "stage %s raised %s on %s[%d]@%d line %d; dead-lettering that event",
                stage,
                type(exc).__name__,
                batch.topic,
                batch.partition,
                offset,
                line,
                exc_info=exc,
            )
            record = raw.record(offset)
            rejections.append(
                Rejection(
                    "processing_error",
                    f"{stage}: {type(exc).__name__} while processing the event",
                    raw.value(offset, line),
                    provenance(record, line),
                )
            )
        self._metrics.stage_errors.labels(stage=stage).inc(len(failed))
        return result.without(sorted(failed), rejections)

    async def storage_rejected(
        self, table: str, row: dict[str, Any], why: str
    ) -> dict[str, list[Any]]:
        """A row ClickHouse refuses (see the writer): publish it to the dead-letter topic
        (the row as JSON: already redacted) and return its ``dead_letters`` row, with the
        provenance the row carries (events rows do; derived rows have none)."""
        source = Provenance(
            str(row.get("src_topic", "")),
            _int(row.get("src_partition"), 0),
            _int(row.get("src_offset"), -1),
            _int(row.get("src_line"), 0),
            0,
        )
        message = f"ClickHouse refused the row for table {table} ({why})"
        rejection = Rejection("storage_rejected", message, _row_json(row), source)
        return await self._dead_letters.publish([rejection], self._clock_ms())

    async def _store(
        self,
        batch: SourceBatch,
        rows: dict[str, dict[str, list[Any]]],
        rejections: Sequence[Rejection],
        now_ms: int,
        ack: Callable[[], None],
    ) -> None:
        """Dead-letter ``rejections``, then hand every row of the batch to the writer,
        which runs ``ack`` once they are stored."""
        if rejections:
            rows["dead_letters"] = await self._dead_letters.publish(rejections, now_ms)
        written = self._gate.track(batch.partition, batch.last_offset, ack)
        await self._writer.add(rows, source=batch.span, on_written=written)


class _RawRecords:
    """The original bytes of an event of the batch, from its offset and line."""

    def __init__(self, batch: SourceBatch) -> None:
        self._by_offset = {r.offset: r for r in batch.records}

    def record(self, offset: int) -> Any:
        return self._by_offset[offset]

    def value(self, offset: int, line: int) -> bytes:
        value: bytes = self._by_offset[offset].value or b""
        if line == 0:
            return value
        return value.split(b"\n")[line - 1]


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and 0 <= value < 2**63 else default


def _row_json(row: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(row, default=str)
    except TypeError:  # an integer beyond 64 bits, say
        return json.dumps(row, default=str).encode()


def _where(batch: SourceBatch) -> str:
    return f"{batch.topic}[{batch.partition}] offsets {batch.first_offset}-{batch.last_offset}"
