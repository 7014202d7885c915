"""What the ingest agent does with one fetched batch, kept out of the ``async for``.

decode + validate (:mod:`streams.ingest`) → dead letters to the DLQ topic → detectors
(the seam: each gets the typed batch) → rows to the ClickHouse writer, whose flush acks
the batch so its offsets are committed only once everything derived from it is stored.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from schemas.normalize import Pseudonymizer
from sinks.clickhouse import ClickHouseWriter
from streams.alerting import Send
from streams.dlq import dead_letter_columns, dlq_headers
from streams.gate import CommitGate
from streams.ingest import Ingestor, IngestResult, Rejection, provenance
from streams.metrics import Metrics
from streams.pii.guard import PiiAlerts, PiiGuard, finding_columns
from streams.transport import SourceBatch

log = logging.getLogger(__name__)


class Detector(Protocol):
    """The seam for detectors: fed every validated batch, in offset order per partition,
    including records re-read after a restart (whose rows are already stored)."""

    async def process(self, result: IngestResult, source: SourceBatch) -> None: ...


class IngestPipeline:
    def __init__(
        self,
        ingestor: Ingestor,
        writer: ClickHouseWriter,
        send: Send,
        dlq_topic: str,
        metrics: Metrics,
        pseudonymizer: Pseudonymizer,
        detectors: Sequence[Detector] = (),
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        gate: CommitGate | None = None,
        guard: PiiGuard | None = None,
        pii_alerts: PiiAlerts | None = None,
    ) -> None:
        self._ingestor = ingestor
        self._writer = writer
        self._send = send
        self._dlq_topic = dlq_topic
        self._metrics = metrics
        self._pseudo = pseudonymizer
        self._detectors = tuple(detectors)
        self._clock_ms = clock_ms
        self._gate = gate or CommitGate()
        self._guard = guard
        self._pii_alerts = pii_alerts
        self._lags: dict[int, int] = {}  # partition → records behind, after its last batch
        self._behind = False  # some partition had a backlog since the writer last caught up

    async def handle_safely(self, batch: SourceBatch, ack: Callable[[], None]) -> None:
        """:meth:`handle`, with one error policy: an unexpected failure dead-letters the
        batch's records (class ``processing_error``) instead of crashing the worker."""
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
            message = f"{type(exc).__name__} while processing the batch; see the worker log"
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
        detected = self._guard.apply(result) if self._guard is not None else []
        for detector in self._detectors:
            await detector.process(result, batch)
        if batch.stored_until > batch.first_offset:  # re-read after a restart
            result = result.since(batch.stored_until)
            detected = [d for d in detected if d.offset >= batch.stored_until]
        rows: dict[str, dict[str, list[Any]]] = {}
        if result.events:
            columns = result.columns()
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
            await self._pii_alerts.report(detected)

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
            await self._dead_letter(rejections, now_ms)
            rows["dead_letters"] = dead_letter_columns(rejections, now_ms, self._pseudo)
        written = self._gate.track(batch.partition, batch.last_offset, ack)
        await self._writer.add(rows, source=batch.span, on_written=written)

    async def _dead_letter(self, rejections: Sequence[Rejection], now_ms: int) -> None:
        deliveries = []
        for rejection in rejections:
            self._metrics.events_invalid.labels(reason=rejection.reason).inc()
            value, headers = rejection.value, dlq_headers(rejection, now_ms)
            if self._guard is not None:  # the original bytes, unless they hold PII
                value, entities = self._guard.redact_payload(value)
                if entities:
                    headers.append(("vigil.pii.redacted", ",".join(entities).encode()))
            deliveries.append(await self._send(self._dlq_topic, None, value, headers))
        for delivery in deliveries:
            await delivery
        self._metrics.dlq_messages.inc(len(rejections))
