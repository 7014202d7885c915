"""Rows stored in ClickHouse, built column by column from validated events.

Column names here must match ``sinks/ddl``; an integration test compares them with
``DESCRIBE TABLE``. Absent per-kind fields are stored as the column default ('' / 0)
so the table has no Nullable columns on the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from schemas.events import KIND_MODELS, Event


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where an event came from: Kafka coordinates plus its NDJSON line (0 if none)."""

    topic: str
    partition: int
    offset: int
    line: int
    timestamp_ms: int


#: (column, attribute on the event model, default when the kind has no such field)
_EVENT_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("tenant_id", "tenant_id", ""),
    ("ts", "ts", None),
    ("event_id", "event_id", ""),
    ("kind", "kind", ""),
    ("service", "service", ""),
    ("trace_id", "trace_id", ""),
    ("span_id", "span_id", ""),
    ("schema_version", "schema_version", 1),
    ("method", "method", ""),
    ("route", "route", ""),
    ("status", "status", 0),
    ("duration_ms", "duration_ms", 0.0),
    ("user_id_hash", "user_id_hash", ""),
    ("actor_tenant_id", "actor_tenant_id", ""),
    ("resource_tenant_id", "resource_tenant_id", ""),
    ("ip_hash", "ip_hash", ""),
    ("ip_prefix", "ip_prefix", ""),
    ("endpoint", "endpoint", ""),
    ("provider", "provider", ""),
    ("reason", "reason", ""),
    ("error_code", "error_code", ""),
    ("resource", "resource", ""),
    ("action", "action", ""),
    ("model", "model", ""),
    ("operation", "operation", ""),
    ("attack_type", "attack_type", ""),
    ("field", "field", ""),
    ("event_name", "event_name", ""),
    ("signature_valid", "valid", 1),
    ("blocked", "blocked", 0),
)
_FIELDS_BY_KIND: dict[str, frozenset[str]] = {
    kind: frozenset(model.model_fields) for kind, model in KIND_MODELS.items()
}
SOURCE_COLUMNS: tuple[str, ...] = ("src_topic", "src_partition", "src_offset", "src_line")
EVENT_COLUMNS: tuple[str, ...] = tuple(c for c, _, _ in _EVENT_FIELDS) + SOURCE_COLUMNS


def event_columns(
    events: Sequence[Event],
    ts_ms: Sequence[int],
    topic: str,
    partitions: Sequence[int],
    offsets: Sequence[int],
    lines: Sequence[int],
) -> dict[str, list[Any]]:
    """Column-oriented rows for ``vigil.events``, one per event, with its provenance.

    ``ts`` is written as float epoch seconds with millisecond precision: the writer sends
    JSONColumns blocks, in which ClickHouse reads a DateTime64 number as seconds."""
    # Pydantic keeps field values in __dict__; reading it directly avoids the costly
    # AttributeError path of getattr() for fields a kind does not have.
    # Fields no kind of this batch has are filled with a constant list, not read.
    dicts = [e.__dict__ for e in events]
    n = len(events)
    present = set().union(*(_FIELDS_BY_KIND[k] for k in {d["kind"] for d in dicts}))
    columns: dict[str, list[Any]] = {}
    for column, attr, default in _EVENT_FIELDS:
        if column == "ts":
            columns["ts"] = [t / 1000 for t in ts_ms]
        elif attr not in present:
            columns[column] = [default] * n
        else:
            values = [d.get(attr) for d in dicts]
            if default is not None:
                values = [default if v is None else v for v in values]
            columns[column] = values
    for column, attr in (("signature_valid", "valid"), ("blocked", "blocked")):
        if attr in present:
            columns[column] = [int(v) for v in columns[column]]
    columns["src_topic"] = [topic] * len(events)
    columns["src_partition"] = list(partitions)
    columns["src_offset"] = list(offsets)
    columns["src_line"] = list(lines)
    return columns
