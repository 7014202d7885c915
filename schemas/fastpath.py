"""The hot-path decoder: msgspec structs derived from the pydantic contract.

The pydantic models in :mod:`schemas.events` are the contract (JSON Schema, error
messages, normalisation of the structured-log shape). Building a frozen pydantic model
costs ~5 µs per event, most of the ingest budget, so well-formed envelopes are decoded
straight from bytes into msgspec structs generated *from those models* -- same fields,
same bounds, same defaults -- in ~1.5 µs.

The fast path is allowed to be stricter than the contract, never looser: whatever it
refuses (lax coercions such as ``"200"`` for an int, epoch seconds, log-shaped events,
raw ``user_id``/``ip`` fields that must be pseudonymised, anything invalid) is decided
again by the pydantic path, which gives the authoritative verdict and error message. A
property test checks that every event the fast path accepts is accepted by pydantic with
the same stored columns.
"""

from __future__ import annotations

import operator
import re
import types
import typing
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, Union, cast, get_args, get_origin

import annotated_types
import msgspec
from pydantic import AwareDatetime
from pydantic.fields import FieldInfo

from schemas.events import KIND_MODELS, Envelope

#: Fields that exist only in raw input and must go through the normaliser (which
#: pseudonymises them); an event carrying one leaves the fast path.
RAW_IDENTITY_FIELDS: tuple[str, ...] = ("user_id", "ip", "ip_address")

#: pydantic reads integer timestamps above this as milliseconds, below as seconds; the
#: fast path takes milliseconds only.
_MS_THRESHOLD = 20_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


#: field name → the pattern its values must match. msgspec would run the regex on every
#: value while decoding (~0.5 µs an event); the decoders check the few distinct values of
#: a message instead, against a cache of values already matched.
PATTERNS: dict[str, re.Pattern[str]] = {}
_MATCHED: dict[str, set[str]] = {}
_MATCHED_MAX = 65_536  # distinct values remembered per field before the cache restarts


def _register_pattern(field: str, pattern: str) -> None:
    compiled = re.compile(pattern)
    if PATTERNS.setdefault(field, compiled) != compiled:
        raise TypeError(f"field {field!r} has different patterns in different kinds")
    _MATCHED.setdefault(field, set())


def _meta(metadata: list[Any], field: str) -> msgspec.Meta | None:
    kwargs: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.MinLen):
            kwargs["min_length"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            kwargs["max_length"] = item.max_length
        elif isinstance(item, annotated_types.Ge):
            kwargs["ge"] = item.ge
        elif isinstance(item, annotated_types.Le):
            kwargs["le"] = item.le
        elif getattr(item, "pattern", None) is not None:
            # pydantic matches with Rust's regex, where ``$`` is the end of the text;
            # Python's ``$`` also matches before a final newline, so anchor with \Z.
            _register_pattern(field, re.sub(r"\$$", r"\\Z", item.pattern))
        else:
            raise TypeError(f"no fast-path equivalent for constraint {item!r}")
    return msgspec.Meta(**kwargs) if kwargs else None


def _fast_type(annotation: Any, metadata: list[Any], field: str) -> Any:
    """The msgspec type accepting (a subset of) what pydantic accepts for ``annotation``
    (patterns excepted: :data:`PATTERNS` are checked after decoding)."""
    if annotation is AwareDatetime:
        # epoch ms, or RFC 3339 text with an offset
        return int | Annotated[datetime, msgspec.Meta(tz=True)]
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        flat = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        return _fast_type(inner, [*metadata, *flat], field)
    if origin in (Union, types.UnionType):
        return Union[tuple(_fast_type(a, metadata, field) for a in get_args(annotation))]  # noqa: UP007
    if annotation is type(None):
        return None
    if origin is Literal or origin is dict:
        return annotation
    if annotation in (str, int, float, bool):
        meta = _meta(metadata, field)
        return Annotated[annotation, meta] if meta else annotation
    raise TypeError(f"no fast-path equivalent for {annotation!r}")


class FastEvent(msgspec.Struct, frozen=True, gc=False):
    """Base of the generated structs; ``kind`` is the tag of the concrete type (a class
    attribute: read for every event by every detector, so never computed per access)."""

    kind: ClassVar[str]


def _struct_for(kind: str, model: type[Envelope]) -> type[FastEvent]:
    required: list[tuple[str, Any]] = []
    optional: list[tuple[str, Any, Any]] = []
    for name, info in model.model_fields.items():
        if name == "kind":
            continue  # the tag
        t = _fast_type(info.annotation, list(info.metadata), name)
        if name == "event_id":  # absent: UNSET, and the ingestor derives one
            optional.append((name, t | msgspec.UnsetType, msgspec.UNSET))
        elif info.is_required():
            required.append((name, t))
        elif info.default_factory is not None:
            optional.append((name, t, msgspec.field(default_factory=info.default_factory)))  # type: ignore[arg-type]
        else:
            optional.append((name, t, info.default))
    sentinels = [(f, Any, msgspec.UNSET) for f in RAW_IDENTITY_FIELDS]
    struct: type[FastEvent] = msgspec.defstruct(  # type: ignore[assignment]
        "Fast" + model.__name__,
        [*required, *optional, *sentinels],
        bases=(FastEvent,),
        tag_field="kind",
        tag=kind,
        frozen=True,
        gc=False,
        # an unknown field sends the event to the contract path (which ignores it), so
        # what the fast path decodes has a known shape (see streams.limits)
        forbid_unknown_fields=True,
    )
    struct.kind = kind
    return struct


#: kind → its generated struct type
FAST_STRUCTS: dict[str, type[FastEvent]] = {
    kind: _struct_for(kind, model) for kind, model in KIND_MODELS.items()
}
ANALYTICS = FAST_STRUCTS["analytics"]  # the one kind with nested content (properties)

#: what msgspec raises on bad input: malformed JSON, or invalid UTF-8 inside a string
DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError)

_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
    typing.Union[tuple(FAST_STRUCTS.values())]  # noqa: UP007
)


def decode_fast(data: bytes) -> tuple[FastEvent, int] | None:
    """(event, ts in epoch ms) if ``data`` is one well-formed envelope the fast path
    covers; ``None`` means "ask the pydantic path", never "invalid". An event that came
    without ``event_id`` has it ``UNSET`` (see :func:`missing_ids`)."""
    try:
        event = _decoder.decode(data)
    except (*DECODE_ERRORS, RecursionError):
        return None
    if _has_raw_identity(event) or not _pattern_fields_match(event):
        return None
    ts_ms = _ts_ms(event.ts)
    return None if ts_ms is None else (event, ts_ms)


def decode_lines_fast(data: bytes) -> tuple[list[FastEvent], list[int]] | None:
    """(events, their ts in epoch ms), line by line, if EVERY line of the NDJSON message
    ``data`` is an envelope the fast path covers (so event i is line i + 1); else
    ``None`` and the caller goes line by line."""
    try:
        events = _decoder.decode_lines(data)
    except (*DECODE_ERRORS, RecursionError):
        return None
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if len(events) != lines:  # a blank line was skipped: line numbers would shift
        return None
    if any(map(_has_raw_identity, events)):
        return None
    if not _patterns_match(events):
        return None
    stamps: list[Any] = [e.ts for e in events]
    try:
        if min(stamps) > _MS_THRESHOLD:  # all epoch ms: the common case, checked in C
            return events, stamps
    except TypeError:  # RFC 3339 text somewhere (a datetime)
        pass
    stamps = [_ts_ms(ts) for ts in stamps]
    if None in stamps:
        return None
    return events, stamps


def missing_ids(events: Sequence[FastEvent]) -> bool:
    """Whether any event came without ``event_id`` (the ingestor derives those)."""
    return msgspec.UNSET in map(_EVENT_ID, events)


def with_event_id(event: FastEvent, event_id: str) -> FastEvent:
    return msgspec.structs.replace(event, event_id=event_id)


_EVENT_ID = operator.attrgetter("event_id")


def group_by_type(events: Sequence[FastEvent]) -> dict[type[FastEvent], Sequence[int]]:
    """Struct type → the positions of its events, in order of first appearance; a batch
    of one type (the common case) gets ``range(n)`` without a loop per event."""
    types = list(map(type, events))
    present = dict.fromkeys(types)
    if len(present) <= 1:
        return {cls: range(len(types)) for cls in present}
    groups: dict[type[FastEvent], list[int]] = {cls: [] for cls in present}
    for i, cls in enumerate(types):
        groups[cls].append(i)
    return dict(groups)


def _pattern_fields_match(event: FastEvent) -> bool:
    """:func:`_patterns_match` for one event, without building sets when cached."""
    for field in PATTERNS:
        value = getattr(event, field, None)
        if value is not None and value not in _MATCHED[field] and not _learn(field, {value}):
            return False
    return True


def _patterns_match(events: Sequence[FastEvent]) -> bool:
    """Every value of a :data:`PATTERNS` field matches (None: the field is absent)."""
    for field in PATTERNS:
        values: set[str | None] = {getattr(e, field, None) for e in events}
        values.discard(None)
        if not _learn(field, cast(set[str], values)):
            return False
    return True


def _learn(field: str, values: set[str]) -> bool:
    """Whether all ``values`` match ``field``'s pattern; remembers those that do."""
    matched = _MATCHED[field]
    new = values - matched
    if not new:
        return True
    if not all(map(PATTERNS[field].search, new)):
        return False
    if len(matched) + len(new) > _MATCHED_MAX:
        matched.clear()
    matched |= new
    return True


def _has_raw_identity(event: Any) -> bool:
    """A raw ``user_id`` / ``ip`` / ``ip_address`` (escaped keys included: msgspec reads
    them as the same field) means the normaliser must pseudonymise it."""
    return (
        event.user_id is not msgspec.UNSET
        or event.ip is not msgspec.UNSET
        or event.ip_address is not msgspec.UNSET
    )


#: 10000-01-01T00:00:00Z in epoch ms: pydantic refuses datetimes from there on
_MS_LIMIT = 253_402_300_800_000


def _ts_ms(ts: int | datetime) -> int | None:
    """Epoch ms, or None where the contract path must decide (epoch seconds, or a time
    pydantic refuses)."""
    if isinstance(ts, int):
        return ts if _MS_THRESHOLD < ts < _MS_LIMIT else None
    return datetime_ms(ts)


def datetime_ms(ts: datetime) -> int:
    """Epoch milliseconds of an aware datetime, exactly (no float rounding)."""
    return (ts - _EPOCH) // _MS


def from_model(event: Envelope) -> FastEvent:
    """The struct for an event the pydantic path validated (already checked: no
    re-validation)."""
    values = dict(event.__dict__)
    kind = values.pop("kind")
    return FAST_STRUCTS[kind](**values)
