from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.normalize import Pseudonymizer
from streams.ingest import REASONS, Ingestor
from streams.limits import JsonLimits

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


DEEP_ARRAY = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000


@pytest.mark.parametrize(
    ("value", "reason", "says"),
    [
        (b"[" * 5000, "too_deep", "depth 5000 is above VIGIL_MAX_JSON_DEPTH=64"),
        (DEEP_ARRAY, "too_deep", "depth 5000"),
        (DEEP_OBJECT, "too_deep", "depth 3000"),
        (
            orjson.dumps(good(properties={"a": list(range(20_000))})),
            "too_many_items",
            "20011 members",
        ),
    ],
)
def test_documents_beyond_the_shape_limits_are_rejected_alone(
    pseudo: Pseudonymizer, value: bytes, reason: str, says: str
) -> None:
    ingestor = Ingestor(pseudo, 1 << 22, 60_000)
    neighbours = [Rec(orjson.dumps(good(i)), offset=i) for i in (1, 3)]
    records = [neighbours[0], Rec(value, offset=2), neighbours[1]]
    result = ingestor.decode_batch(records, NOW_MS)
    assert [e.event_id for e in result.events] == ["e1", "e3"]
    [rejection] = result.rejections
    assert (rejection.reason, rejection.source.offset) == (reason, 2)
    assert says in rejection.message


def test_the_limits_hold_exactly_at_the_boundary(pseudo: Pseudonymizer) -> None:
    ingestor = Ingestor(pseudo, 1 << 20, 60_000, limits=JsonLimits(max_depth=4, max_items=16))

    def nested(depth: int) -> bytes:  # the envelope is level 1, properties level 2
        inner: object = 1
        for _ in range(depth - 2):
            inner = [inner]
        return orjson.dumps(good(kind="analytics", event_name="x", properties={"p": inner}))

    result = ingestor.decode_batch([Rec(nested(4)), Rec(nested(5), offset=1)], NOW_MS)
    assert len(result.events) == 1
    assert [(r.reason, r.source.offset) for r in result.rejections] == [("too_deep", 1)]


def test_ndjson_lines_beyond_the_limits_cost_only_themselves(ingestor: Ingestor) -> None:
    lines = [orjson.dumps(good(i)) for i in range(80)]  # 80 objects: over the depth bound
    lines[40] = b"[" * 100 + b"]" * 100
    result = Ingestor(Pseudonymizer(b"k"), 1 << 20, 60_000).decode_batch(
        [Rec(b"\n".join(lines))], NOW_MS
    )
    assert len(result.events) == 79
    [rejection] = result.rejections
    assert (rejection.reason, rejection.source.line) == ("too_deep", 41)
    assert rejection.value == lines[40]


def test_a_decoder_failure_costs_only_its_record(pseudo: Pseudonymizer) -> None:
    """With the depth limit lifted, msgspec itself gives up on 1,500 levels (RecursionError):
    the record is a processing_error naming the stage, its neighbours are stored."""
    lifted = Ingestor(pseudo, 1 << 20, 60_000, limits=JsonLimits(10**6, 10**7))
    deep = b"[" * 1500 + b"]" * 1500
    records = [Rec(orjson.dumps(good(0))), Rec(deep, offset=1), Rec(orjson.dumps(good(2)), 2)]
    ndjson = Rec(b"\n".join([orjson.dumps(good(3)), deep, orjson.dumps(good(4))]), offset=3)
    result = lifted.decode_batch([*records, ndjson], NOW_MS)
    assert [e.event_id for e in result.events] == ["e0", "e2", "e3", "e4"]
    assert [(r.reason, r.source.offset, r.source.line) for r in result.rejections] == [
        ("processing_error", 1, 0),
        ("processing_error", 3, 2),
    ]
    assert all("decode: RecursionError" in r.message for r in result.rejections)


def test_events_without_an_id_get_a_keyed_id_of_their_bytes(pseudo: Pseudonymizer) -> None:
    ingestor = Ingestor(pseudo, 4096, 60_000)
    no_id = {k: v for k, v in good().items() if k != "event_id"}
    single = orjson.dumps(no_id)
    line_a, line_b = orjson.dumps({**no_id, "status": 201}), orjson.dumps({**no_id, "status": 202})
    log_line = orjson.dumps(
        {
            "timestamp": "2026-01-02T03:04:00Z",
            "category": "security",
            "event_type": "access_denied",
            "context": {"company_id": "acme", "user_id": 7},
        }
    )
    records = [
        Rec(single),
        Rec(single, offset=1),  # a producer's retry: the same bytes
        Rec(line_a + b"\n" + line_b + b"\n", offset=2),
        Rec(line_a + b"\r\n" + log_line, offset=3),  # the contract path (log shape)
    ]
    result = ingestor.decode_batch(records, NOW_MS)
    ids = [e.event_id for e in result.events]
    assert ids == [
        pseudo.event_id(single),
        pseudo.event_id(single),
        pseudo.event_id(line_a),
        pseudo.event_id(line_b),
        pseudo.event_id(line_a),
        pseudo.event_id(log_line),
    ]
    assert len(set(ids)) == 4 and all(len(i) == 32 for i in ids)
    # keyed: another key, other ids; no id is a plain hash of the line
    other = Ingestor(Pseudonymizer(b"other"), 4096, 60_000).decode_batch(records, NOW_MS)
    assert not set(ids) & {e.event_id for e in other.events}


def test_unknown_fields_are_ignored_but_their_shape_is_checked(pseudo: Pseudonymizer) -> None:
    """A field outside the contract is ignored (the contract path stores the event), and
    counts for the shape limits like any other: 100 levels of it are too deep."""
    ingestor = Ingestor(pseudo, 1 << 20, 60_000)
    extra = orjson.dumps(good(1, release="v2", junk={"a": [1, 2]}))
    deep = orjson.dumps(good(2)).replace(b"{", b'{"junk":' + b"[" * 100 + b"]" * 100 + b",", 1)
    result = ingestor.decode_batch([Rec(extra), Rec(deep, offset=1)], NOW_MS)
    assert [e.event_id for e in result.events] == ["e1"]
    assert [(r.reason, r.source.offset) for r in result.rejections] == [("too_deep", 1)]
