"""The PII guard: scans every validated batch before anything else sees it, stores only
redacted content, records findings and raises ``PIILeakageDetected``.

Runs in the pipeline right after decoding, so detectors, rows, alerts and logs only
ever see redacted events. What is scanned: every string (keys too) of ``analytics``
``properties``, recursively, and the free-text fields other kinds may fill from user
input (route query strings, endpoints, resources, reasons). A dead-lettered message is
scanned too, and its payload redacted before it goes to the DLQ topic.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import msgspec

from schemas.alerts import Annotations
from schemas.fastpath import FAST_STRUCTS, FastEvent
from streams.alerting import AlertPublisher, AlertSpec
from streams.detectors.pii.config import PiiConfig
from streams.detectors.pii.scanner import Finding, Policy, Scanner
from streams.ingest import IngestResult
from streams.metrics import Metrics

ANALYTICS = FAST_STRUCTS["analytics"]
#: fields of other kinds that may carry user input, scanned as free text
FREE_TEXT_FIELDS: tuple[str, ...] = ("route", "endpoint", "resource", "field", "reason")
_FIELDS_BY_STRUCT: dict[type[FastEvent], tuple[str, ...]] = {
    struct: tuple(f for f in FREE_TEXT_FIELDS if f in struct.__struct_fields__)
    for struct in FAST_STRUCTS.values()
}
_INDEX = re.compile(r"\[\d+\]")


def _holders(
    gathered: list[tuple[str, Sequence[int], list[Any]]], name: str, value: str
) -> list[int]:
    """Positions of the events whose field ``name`` holds ``value``."""
    return [
        positions[j]
        for field_name, positions, values in gathered
        if field_name == name
        for j, v in enumerate(values)
        if v == value
    ]


@dataclass(frozen=True, slots=True)
class Detected:
    """A finding with where it was found; never the value."""

    finding: Finding
    tenant_id: str
    kind: str
    event_name: str
    event_id: str
    ts_ms: int
    partition: int
    offset: int
    line: int
    trace_id: str = ""


class PiiGuard:
    def __init__(self, scanner: Scanner, config: PiiConfig, metrics: Metrics) -> None:
        self.scanner = scanner
        self.config = config
        self._metrics = metrics
        self._policy: Callable[[str], Policy] = config.policy

    def apply(self, result: IngestResult) -> list[Detected]:
        """Scan ``result``, replace affected events by redacted copies (in place) and
        return the findings."""
        redacted, detected = self.scan(result)
        for i, event in redacted.items():
            result.events[i] = event
        self.count(detected)
        return detected

    def count(self, detected: Sequence[Detected]) -> None:
        for d in detected:
            self._metrics.pii_findings.labels(entity=d.finding.entity).inc()

    def scan(self, result: IngestResult) -> tuple[dict[int, FastEvent], list[Detected]]:
        """Scan ``result`` in two engine passes; return the redacted copies of the events
        holding PII (by position) and the findings. ``result`` is left as it is."""
        events = result.events
        documents: list[tuple[Any, str]] = []
        doc_owner: list[int] = []
        # free text repeats (templated routes): each distinct (field, text) is scanned
        # once; a field's values are gathered per struct type without a Python loop per
        # event, and the events holding a text are looked up only if it has findings
        gathered: list[tuple[str, Sequence[int], list[Any]]] = []
        for cls, positions in result.by_type().items():
            group = events if len(positions) == len(events) else [events[i] for i in positions]
            if cls is ANALYTICS:
                for i, e in zip(positions, group, strict=True):
                    props = e.properties  # type: ignore[attr-defined]
                    if props:
                        documents.append((props, "$.properties"))
                        doc_owner.append(i)
            for name in _FIELDS_BY_STRUCT[cls]:
                gathered.append((name, positions, list(map(attrgetter(name), group))))
        texts: dict[tuple[str, str], None] = {}
        for name, _, values in gathered:
            for value in dict.fromkeys(values):
                if value:
                    texts[(name, value)] = None
        changes: dict[int, dict[str, Any]] = {}
        found: dict[int, list[Finding]] = {}
        if documents:
            for i, findings in zip(doc_owner, self.scanner.scan_documents(documents), strict=True):
                if findings:
                    props = events[i].properties  # type: ignore[attr-defined]
                    redacted = self.scanner.redact_json(
                        props, findings, self._policy, "$.properties"
                    )
                    changes.setdefault(i, {})["properties"] = redacted
                    found.setdefault(i, []).extend(findings)
        if texts:
            items = [(value, f"$.{name}", name) for name, value in texts]
            for (name, value), findings in zip(texts, self.scanner.scan_many(items), strict=True):
                if not findings:
                    continue
                redacted = self.scanner.redact_text(value, findings, self._policy) or ""
                for i in _holders(gathered, name, value):
                    changes.setdefault(i, {})[name] = redacted
                    found.setdefault(i, []).extend(findings)
        detected: list[Detected] = []
        copies: dict[int, FastEvent] = {}
        for i, fields in sorted(changes.items()):
            original: Any = events[i]
            copies[i] = msgspec.structs.replace(original, **fields)
            analytics = type(original) is ANALYTICS
            name = original.event_name if analytics else original.kind
            for f in found[i]:
                detected.append(
                    Detected(
                        f,
                        original.tenant_id,
                        original.kind,
                        name,
                        original.event_id,
                        result.ts_ms[i],
                        result.partitions[i],
                        result.offsets[i],
                        result.lines[i],
                        getattr(original, "trace_id", None) or "",
                    )
                )
        return copies, detected

    def redact_payload(self, value: bytes) -> tuple[bytes, list[str]]:
        """A dead-lettered payload with its PII replaced, and the entities found; the
        payload is unchanged when there is none."""
        text = value.decode("utf-8", "replace")
        findings = self.scanner.scan_text(text, "$")
        if not findings:
            return value, []
        redacted = self.scanner.redact_text(text, findings, lambda _: "redact") or ""
        return redacted.encode(), sorted({f.entity for f in findings})


def finding_columns(detected: list[Detected], topic: str) -> dict[str, list[Any]]:
    return {
        "ts": [d.ts_ms / 1000 for d in detected],
        "tenant_id": [d.tenant_id for d in detected],
        "kind": [d.kind for d in detected],
        "event_name": [d.event_name for d in detected],
        "event_id": [d.event_id for d in detected],
        "entity": [d.finding.entity for d in detected],
        "json_path": [d.finding.json_path for d in detected],
        "start": [d.finding.start for d in detected],
        "end": [d.finding.end for d in detected],
        "confidence": [d.finding.confidence for d in detected],
        "preview": [d.finding.preview for d in detected],
        "value_hmac": [d.finding.hmac for d in detected],
        "src_topic": [topic] * len(detected),
        "src_partition": [d.partition for d in detected],
        "src_offset": [d.offset for d in detected],
        "src_line": [d.line for d in detected],
    }


#: (tenant, event name, entity, JSON path with indices as [*]): one alert each
_AlertKey = tuple[str, str, str, str]


@dataclass(slots=True)
class _Track:
    count: int
    first_ms: int
    last_wall: float
    previews: list[str] = field(default_factory=list)
    traces: list[str] = field(default_factory=list)

    def spec(self, key: _AlertKey) -> AlertSpec:
        tenant, event_name, entity, path = key
        since = self.starts_at.isoformat()
        return AlertSpec(
            "PIILeakageDetected",
            "critical",
            {"tenant_id": tenant, "event_name": event_name, "entity": entity, "json_path": path},
            Annotations(
                summary=f"{entity} found in {event_name} at {path} (tenant {tenant})",
                description=(
                    f"{self.count} finding(s) since {since}; stored redacted. Roll the "
                    "producing release back and page its owner."
                ),
            ),
            auto_rollback=True,
        )

    @property
    def starts_at(self) -> datetime:
        return datetime.fromtimestamp(self.first_ms / 1000, tz=UTC)


class PiiAlerts:
    """``PIILeakageDetected`` per (tenant, event, entity, JSON path): fired on the first
    finding (the publisher suppresses repeats inside its dedup window; the running
    count is in the annotations), resolved after a quiet period without findings."""

    def __init__(
        self,
        publisher: AlertPublisher,
        quiet_period_s: float,
        database: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._publisher = publisher
        self._quiet_s = quiet_period_s
        self._db = database
        self._clock = clock
        self._tracks: dict[_AlertKey, _Track] = {}

    async def report(self, detected: list[Detected]) -> None:
        groups: dict[_AlertKey, list[Detected]] = {}
        for d in detected:
            path = _INDEX.sub("[*]", d.finding.json_path)
            groups.setdefault((d.tenant_id, d.event_name, d.finding.entity, path), []).append(d)
        now = self._clock()
        for key, items in groups.items():
            track = self._tracks.get(key)
            if track is None:
                track = self._tracks[key] = _Track(0, min(d.ts_ms for d in items), now)
            track.count += len(items)
            track.last_wall = now
            track.previews = (track.previews + [d.finding.preview for d in items])[-3:]
            traces = [d.trace_id for d in items if d.trace_id]
            track.traces = list(dict.fromkeys(track.traces + traces))[-5:]
            tenant, _, entity, _ = key
            evidence = {
                "count": track.count,
                "previews": track.previews,
                "hmacs": sorted({d.finding.hmac for d in items})[:5],
                "trace_ids": track.traces,  # the incident of a request's other alerts
                "query": (
                    "SELECT ts, event_id, entity, json_path, preview "
                    f"FROM {self._db}.pii_findings WHERE tenant_id = '{tenant}' "
                    f"AND entity = '{entity}' ORDER BY ts DESC LIMIT 50"
                ),
            }
            await self._publisher.fire(
                track.spec(key),
                float(track.count),
                0.0,
                datetime.fromtimestamp(now, tz=UTC),
                evidence,
                starts_at=track.starts_at,
            )

    async def tick(self) -> None:
        """Resolve the alerts whose quiet period has passed."""
        now = self._clock()
        for key, track in list(self._tracks.items()):
            if now - track.last_wall >= self._quiet_s:
                del self._tracks[key]
                await self._publisher.resolve(
                    track.spec(key),
                    float(track.count),
                    0.0,
                    datetime.fromtimestamp(now, tz=UTC),
                    starts_at=track.starts_at,
                )
