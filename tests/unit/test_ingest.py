from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.normalize import Pseudonymizer
from streams.ingest import REASONS, Ingestor

NOW_MS = 1_767_323_045_678  # 2026-01-02T03:04:05.678Z


@dataclass(frozen=True)
class Rec:
    value: bytes | None
    offset: int = 0
    topic: str = "vigil.events"
    partition: int = 0
    timestamp: int = NOW_MS


def good(i: int = 0, **extra: object) -> dict[str, object]:
    return {
        "event_id": f"e{i}",
        "ts": NOW_MS - 1000,
        "tenant_id": "acme",
        "service": "api",
        "kind": "http.request",
        "method": "GET",
        "route": "/x",
        "status": 200,
        "duration_ms": 5.0,
        **extra,
    }


@pytest.fixture
def ingestor(pseudo: Pseudonymizer) -> Ingestor:
    return Ingestor(pseudo, max_message_bytes=4096, max_future_skew_ms=60_000)


@pytest.mark.parametrize(
    ("value", "reason", "says"),
    [
        (b"{not json", "not_json", "not valid JSON"),
        (b"[1, 2]", "not_object", "expected a JSON object, got list"),
        (b"", "not_json", "not valid JSON"),
        (b'{"note": "\x80"}', "not_json", "not valid JSON"),  # invalid UTF-8 in a string
        (orjson.dumps(good(kind="mystery")), "unknown_kind", "'mystery'"),
        (orjson.dumps({**good(), "tenant_id": None}), "missing_tenant", "tenant_id"),
        (orjson.dumps(good(status="two hundred")), "schema_violation", "status"),
        (orjson.dumps(good(ts="not-a-time")), "bad_timestamp", "ts"),
        (orjson.dumps(good(ts=12)), "bad_timestamp", "before 2000"),
        (orjson.dumps(good(ts=NOW_MS + 3_600_000)), "future_timestamp", "future"),
        (b'{"pad": "' + b"x" * 5000 + b'"}', "too_large", "VIGIL_MAX_MESSAGE_BYTES=4096"),
    ],
)
def test_each_bad_input_is_rejected_with_its_reason(
    ingestor: Ingestor, value: bytes, reason: str, says: str
) -> None:
    result = ingestor.decode_batch([Rec(value, offset=7)], NOW_MS)
    assert result.events == []
    [rejection] = result.rejections
    assert rejection.reason == reason
    assert reason in REASONS
    assert says in rejection.message
    assert rejection.value == value  # original bytes untouched
    assert (rejection.source.offset, rejection.source.line) == (7, 0)


def test_error_messages_never_echo_values(ingestor: Ingestor) -> None:
    secret = "4111-1111-1111-1111"
    result = ingestor.decode_batch([Rec(orjson.dumps(good(status=secret)))], NOW_MS)
    assert secret not in result.rejections[0].message


def test_ndjson_bad_lines_go_alone_with_line_numbers(ingestor: Ingestor) -> None:
    lines = [
        orjson.dumps(good(1)),
        b"{broken",
        orjson.dumps(good(2)),
        b"",
        orjson.dumps(good(3, kind="nope")),
    ]
    result = ingestor.decode_batch([Rec(b"\n".join(lines), offset=3)], NOW_MS)
    assert [e.event_id for e in result.events] == ["e1", "e2"]
    assert result.lines == [1, 3]
    assert [(r.reason, r.source.line, r.value) for r in result.rejections] == [
        ("not_json", 2, b"{broken"),
        ("unknown_kind", 5, lines[4]),
    ]
    assert all(r.message.startswith(f"line {r.source.line}:") for r in result.rejections)


def test_provenance_columns_follow_events(ingestor: Ingestor) -> None:
    recs = [Rec(orjson.dumps(good(i)), offset=10 + i, partition=1) for i in range(3)]
    result = ingestor.decode_batch(recs, NOW_MS)
    assert result.offsets == [10, 11, 12]
    assert result.partitions == [1, 1, 1]
    assert result.ts_ms == [NOW_MS - 1000] * 3


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=20,
)
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "event_id": json_values,
        "ts": json_values | st.integers(0, 2 * NOW_MS),
        "tenant_id": json_values,
        "kind": st.sampled_from(["http.request", "analytics", "x"]),
        "service": json_values,
        "status": json_values,
        "event_type": json_values,
        "category": st.sampled_from(["security", "performance"]),
        "context": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values | envelope_like, min_size=1, max_size=8), st.booleans())
def test_every_line_is_accounted_for_and_nothing_raises(
    objs: list[object], as_ndjson: bool
) -> None:
    ingestor = Ingestor(Pseudonymizer(b"k"), 1 << 20, 60_000)
    encoded = [orjson.dumps(o) for o in objs]
    if as_ndjson and len(encoded) > 1:
        records = [Rec(b"\n".join(encoded))]
    else:
        records = [Rec(v, offset=i) for i, v in enumerate(encoded)]
    result = ingestor.decode_batch(records, NOW_MS)
    units = len(objs) if as_ndjson and len(encoded) > 1 else len(records)
    assert len(result.events) + len(result.rejections) == units
    assert all(r.reason in REASONS for r in result.rejections)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    ingestor = Ingestor(Pseudonymizer(b"k"), 1 << 20, 60_000)
    result = ingestor.decode_batch([Rec(value)], NOW_MS)
    assert len(result.events) + len(result.rejections) >= 1


def test_events_older_than_retention_are_rejected_not_lost(pseudo: Pseudonymizer) -> None:
    ingestor = Ingestor(pseudo, 4096, 60_000, retention_ms=86_400_000)
    old = orjson.dumps(good(ts=NOW_MS - 2 * 86_400_000))
    fresh = orjson.dumps(good(ts=NOW_MS - 3_600_000))
    result = ingestor.decode_batch([Rec(old), Rec(fresh, offset=1)], NOW_MS)
    assert [r.reason for r in result.rejections] == ["expired_timestamp"]
    assert "VIGIL_RETENTION_DAYS" in result.rejections[0].message
    assert len(result.events) == 1
