"""Rows stored in ClickHouse, built column by column from validated events.

Column names here must match ``sinks/ddl``; an integration test compares them with
``DESCRIBE TABLE``. Absent per-kind fields are stored as the column default ('' / 0)
so the table has no Nullable columns on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import msgspec

from schemas.fastpath import FAST_STRUCTS, FastEvent, group_by_type


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
    ("release", "release", ""),
    ("cohort", "cohort", ""),
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
    ("properties", "properties", ""),
    ("signature_valid", "valid", 1),
    ("signature_provided", "signature_provided", 1),
    ("blocked", "blocked", 0),
)
SOURCE_COLUMNS: tuple[str, ...] = ("src_topic", "src_partition", "src_offset", "src_line")
EVENT_COLUMNS: tuple[str, ...] = tuple(c for c, _, _ in _EVENT_FIELDS) + SOURCE_COLUMNS
_BOOL_COLUMNS = frozenset({"signature_valid", "signature_provided", "blocked"})


@dataclass(frozen=True, slots=True)
class _Layout:
    """How one kind's struct fills the event columns."""

    kind: str
    #: (column, default if the value may be None, the getter of its struct field)
    present: tuple[tuple[str, Any, Callable[[Any], Any]], ...]
    absent: tuple[tuple[str, Any], ...]  # (column, constant) for fields the kind lacks


def _layout(kind: str, struct: type[FastEvent]) -> _Layout:
    fields = {f.name: f for f in msgspec.structs.fields(struct)}
    present, absent = [], []
    for column, attr, default in _EVENT_FIELDS:
        if column in ("ts", "kind"):
            continue
        if attr in fields:
            nullable = fields[attr].default is None
            present.append((column, default if nullable else None, attrgetter(attr)))
        else:
            absent.append((column, default))
    return _Layout(kind, tuple(present), tuple(absent))


_LAYOUTS: dict[type[FastEvent], _Layout] = {
    struct: _layout(kind, struct) for kind, struct in FAST_STRUCTS.items()
}


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode() if value else ""


def event_columns(
    events: Sequence[FastEvent],
    ts_ms: Sequence[int],
    topic: str,
    partitions: Sequence[int],
    offsets: Sequence[int],
    lines: Sequence[int],
    groups: Mapping[type[FastEvent], Sequence[int]] | None = None,
) -> dict[str, list[Any]]:
    """Column-oriented rows for ``vigil.events``, one per event, with its provenance.

    Rows are grouped by kind (``groups`` from :func:`group_by_type`, if the caller has
    it already) and each column of a kind is one C-level attrgetter map; the provenance
    columns follow the same order. ``ts`` is
    written as float epoch seconds with millisecond precision: the writer sends
    JSONColumns blocks, in which ClickHouse reads a DateTime64 number as seconds."""
    if groups is None:
        groups = group_by_type(events)
    if len(groups) > 1:
        order = [i for positions in groups.values() for i in positions]
        events = [events[i] for i in order]
        ts_ms = [ts_ms[i] for i in order]
        partitions = [partitions[i] for i in order]
        offsets = [offsets[i] for i in order]
        lines = [lines[i] for i in order]
    columns: dict[str, list[Any]] = {c: [] for c in EVENT_COLUMNS}

    def put(column: str, values: list[Any]) -> None:
        if columns[column]:
            columns[column].extend(values)
        else:
            columns[column] = values  # the first (often only) kind: no copy

    start = 0
    for cls, positions in groups.items():
        n = len(positions)
        layout = _LAYOUTS[cls]
        segment = events[start : start + n]
        start += n
        for column, fill, get in layout.present:  # one C-level map per column
            values = list(map(get, segment))
            if fill is not None and None in values:  # the scan is C; the fill is Python
                if values.count(None) == n:  # a field the producer never sets
                    values = [fill] * n
                else:
                    values = [fill if v is None else v for v in values]
            if column == "properties":  # JSON text, already redacted by the PII guard
                values = [_json(v) for v in values]
            if column in _BOOL_COLUMNS:
                values = [int(v) for v in values]
            put(column, values)
        for column, constant in layout.absent:
            put(column, [constant] * n)
        put("kind", [layout.kind] * n)
    columns["ts"] = [t / 1000 for t in ts_ms]
    columns["src_topic"] = [topic] * len(events)
    columns["src_partition"] = list(partitions)
    columns["src_offset"] = list(offsets)
    columns["src_line"] = list(lines)
    return columns
