"""The msgspec fast path may refuse what the contract accepts, never the reverse."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from benchmarks.common import http_events
from schemas import fastpath
from schemas.events import EVENT_ADAPTER, KIND_MODELS
from schemas.fastpath import (
    FAST_STRUCTS,
    datetime_ms,
    decode_fast,
    decode_lines_fast,
    from_model,
    with_event_id,
)
from schemas.normalize import Pseudonymizer
from schemas.rows import event_columns
from streams.ingest import Ingestor

PSEUDO = Pseudonymizer(b"fast-path-key")


@dataclass(frozen=True)
class Rec:
    value: bytes
    offset: int
    topic: str = "vigil.events"
    partition: int = 0
    timestamp: int = 0


NOW = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


def texts(max_size: int = 80) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet="abcXYZ019_.:-", min_size=1, max_size=max_size),
        st.text(max_size=max_size),
        st.text(alphabet="abcXYZ019_.:-", min_size=1, max_size=max_size),
        st.sampled_from(["", "acme", "acme\n", " acme", "a" * 64, "a" * 65, "é" * 64, "x" * 129]),
    )


@st.composite
def timestamps(draw: st.DrawFn) -> object:
    moment = draw(st.datetimes(min_value=datetime(1999, 1, 1), max_value=datetime(2100, 1, 1)))
    offset = draw(st.sampled_from([None, UTC, UTC, timezone(timedelta(hours=5, minutes=30))]))
    dt = moment.replace(tzinfo=offset)
    forms = ["iso", "z", "ms"] * 3 + ["space", "lower", "digits", "s", "float"]
    form = draw(st.sampled_from(forms))
    aware = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    if form == "ms":
        return int(aware.timestamp() * 1000)
    if form == "s":
        return int(aware.timestamp())
    if form == "float":
        return aware.timestamp() * 1000
    text = dt.isoformat()
    if form == "z" and dt.tzinfo is UTC:
        text = text.replace("+00:00", "Z")
    elif form == "space":
        text = text.replace("T", " ")
    elif form == "lower":
        text = text.replace("T", "t")
    elif form == "digits" and "." in text:
        head, tail = text.split(".", 1)
        text = f"{head}.{tail[:6]}{draw(st.sampled_from(['', '1', '123']))}{tail[6:]}"
    return text


def scalars() -> st.SearchStrategy[object]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.integers(0, 700),
        st.floats(allow_nan=False, allow_infinity=False),
        texts(),
        st.sampled_from(["200", "1.5", "true", 99.0, 200.0, 0, 1]),
    )


TENANT_FIELDS = {"tenant_id", "actor_tenant_id", "resource_tenant_id"}


def plausible(name: str) -> st.SearchStrategy[object]:
    """Mostly valid values for field ``name``, with the boundaries around them."""
    if name in TENANT_FIELDS:
        # mostly valid ids; sometimes a character the pattern refuses
        return st.text(alphabet="abcXYZ019_.:-", min_size=1, max_size=64) | st.text(
            alphabet="ab:- /é\n", min_size=1, max_size=8
        )
    if name == "status":
        return st.integers(90, 610)
    if name == "duration_ms":
        return st.floats(-1, 90_000_000, allow_nan=False) | st.integers(-1, 90_000_000)
    if name == "schema_version":
        return st.sampled_from([1, 1, 1, 1, 0, 2])
    if name in ("valid", "blocked", "signature_provided"):
        return st.booleans() | st.sampled_from([0, 1, "true"])
    if name == "attack_type":
        return st.sampled_from(["sql_injection", "xss", "other"])
    if name == "release":
        return st.sampled_from(["4.12.0", "2026.12.1+b7", "v1-rc.2"]) | st.text(max_size=8)
    if name == "cohort":
        return st.sampled_from(["baseline", "canary", "blue"]) | st.text(max_size=8)
    return st.text(min_size=1, max_size=16)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """Plausible events of every kind, then up to two fields removed or replaced."""
    kind = draw(st.sampled_from(sorted(KIND_MODELS)))
    model = KIND_MODELS[kind]
    obj: dict[str, Any] = {"kind": kind}
    for name in model.model_fields:
        if name == "ts":
            obj[name] = draw(timestamps())
        elif name == "properties":
            obj[name] = draw(st.dictionaries(st.text(max_size=5), scalars(), max_size=3))
        elif name != "kind":
            obj[name] = draw(plausible(name))
    names = sorted(obj)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        name = draw(st.sampled_from(names))
        if draw(st.booleans()):
            obj.pop(name, None)
        else:
            obj[name] = draw(scalars())
    if draw(st.integers(0, 9)) == 0:
        obj[draw(st.sampled_from(["user_id", "ip", "ip_address", "extra"]))] = draw(scalars())
    return obj


@settings(max_examples=1500, deadline=None)
@given(envelopes())
def test_what_the_fast_path_accepts_the_contract_accepts_identically(obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode()
    fast = decode_fast(data)
    event("fast path: " + ("accepted" if fast else "declined"))
    if fast is None:
        return
    struct, ts_ms = fast
    decoded = msgspec.json.decode(data)
    if struct.event_id is msgspec.UNSET:  # type: ignore[attr-defined]
        # no id: both paths take the id the ingestor derives from the bytes
        event("event_id derived")
        struct = with_event_id(struct, PSEUDO.event_id(data))
        decoded["event_id"] = PSEUDO.event_id(data)
    try:
        model = EVENT_ADAPTER.validate_python(decoded)  # the contract path
    except ValidationError as exc:  # pragma: no cover - the failure this test exists for
        raise AssertionError(f"fast path accepted what pydantic refuses: {exc}") from exc
    assert ts_ms == datetime_ms(model.ts)
    assert msgspec.structs.replace(struct, ts=0) == msgspec.structs.replace(from_model(model), ts=0)
    assert event_columns([struct], [ts_ms], "t", [0], [0], [0]) == event_columns(
        [from_model(model)], [ts_ms], "t", [0], [0], [0]
    )


@settings(max_examples=400, deadline=None)
@given(st.lists(envelopes(), min_size=1, max_size=4), st.booleans())
def test_the_ingestor_stores_the_same_with_and_without_its_fast_path(
    objs: list[dict[str, Any]], ndjson: bool
) -> None:
    """Whatever the input -- ids present or derived, one event per message or NDJSON --
    the fast path changes only the speed: the same rows, the same rejections."""
    now_ms = datetime_ms(NOW)
    lines = [json.dumps(o).encode() for o in objs]
    values = [b"\n".join(lines)] if ndjson else lines
    records = [Rec(v, offset=i) for i, v in enumerate(values)]
    fast = Ingestor(PSEUDO, 1 << 20, 10**13).decode_batch(records, now_ms)
    slow = Ingestor(PSEUDO, 1 << 20, 10**13, fast_path=False).decode_batch(records, now_ms)
    assert fast.columns() == slow.columns()
    assert [(r.reason, r.source) for r in fast.rejections] == [
        (r.reason, r.source) for r in slow.rejections
    ]
    event(f"stored {len(fast.events)} of {len(objs)}")


def test_the_fast_path_covers_well_formed_envelopes() -> None:
    values = http_events(200)
    assert all(decode_fast(v) is not None for v in values)
    analytics = {
        "kind": "analytics",
        "event_id": "a1",
        "ts": "2026-01-02T03:04:05.678+01:00",
        "tenant_id": "acme",
        "service": "web",
        "event_name": "auth.user_registered",
        "properties": {"plan": "pro", "steps": [1, 2]},
    }
    fast = decode_fast(orjson.dumps(analytics))
    assert fast is not None
    assert fast[0].kind == "analytics"
    assert fast[1] == datetime_ms(NOW - timedelta(hours=1))


def test_raw_identities_and_lax_input_are_left_to_the_contract() -> None:
    base = orjson.loads(http_events(1)[0])
    for extra in ({"user_id": 42}, {"ip": "203.0.113.9"}, {"ip_address": "::1"}):
        assert decode_fast(orjson.dumps({**base, **extra})) is None
    assert decode_fast(orjson.dumps({**base, "status": "200"})) is None  # pydantic coerces
    assert decode_fast(orjson.dumps({**base, "ts": 1_767_323_045})) is None  # epoch seconds
    assert decode_fast(orjson.dumps({**base, "tenant_id": "acme\n"})) is None
    assert decode_fast(orjson.dumps({**base, "kind": "mystery"})) is None


def test_every_kind_has_a_struct_with_the_model_fields() -> None:
    for kind, model in KIND_MODELS.items():
        fields = set(FAST_STRUCTS[kind].__struct_fields__)
        assert set(model.model_fields) - {"kind"} <= fields


@settings(max_examples=300, deadline=None)
@given(st.lists(envelopes(), min_size=1, max_size=6), st.sampled_from([b"\n", b"\r\n"]))
def test_ndjson_in_one_call_equals_line_by_line(objs: list[dict[str, Any]], sep: bytes) -> None:
    lines = [json.dumps(o).encode() for o in objs]
    fast = decode_lines_fast(sep.join(lines))
    per_line = [decode_fast(line) for line in lines]
    if fast is None:
        return
    assert all(p is not None for p in per_line)
    assert fast[1] == [p[1] for p in per_line if p]
    assert fast[0] == [p[0] for p in per_line if p]


def test_ndjson_with_a_blank_line_is_left_to_the_line_by_line_path() -> None:
    a, b = http_events(2)
    assert decode_lines_fast(a + b"\n" + b + b"\n") is not None
    assert decode_lines_fast(a + b"\n\n" + b) is None  # line numbers would shift


def test_an_escaped_raw_identity_key_is_not_missed() -> None:
    base = http_events(1)[0]
    escaped = base[:-1] + b',"user\\u005fid":"u-1"}'
    assert decode_fast(escaped) is None
    assert decode_lines_fast(escaped + b"\n" + base) is None


def test_pattern_fields_are_checked_after_decoding_with_a_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tenant pattern left msgspec for a per-message check of distinct values against
    a cache of matched ones: a bad id is declined however many good ones were seen, in
    every tenant field, one event or NDJSON, and also after the cache restarted."""
    monkeypatch.setattr(fastpath, "_MATCHED_MAX", 3)
    base = orjson.loads(http_events(1)[0])
    for i in range(10):  # fill the cache past its size, several times
        assert decode_fast(orjson.dumps({**base, "tenant_id": f"t-{i}"})) is not None
    assert len(fastpath._MATCHED["tenant_id"]) <= 3
    good = orjson.dumps(base)
    for field in ("tenant_id", "actor_tenant_id", "resource_tenant_id"):
        for bad_id in ("acme corp", "acme/1", "ac\u00e9me", "acme\n"):
            bad = orjson.dumps({**base, field: bad_id})
            assert decode_fast(bad) is None, (field, bad_id)
            assert decode_lines_fast(good + b"\n" + bad) is None, (field, bad_id)
            with pytest.raises(ValidationError):  # and the contract path says why
                EVENT_ADAPTER.validate_python(orjson.loads(bad))
        assert decode_fast(orjson.dumps({**base, field: "acme-2.eu:x_1"})) is not None


def test_a_time_from_year_10000_is_left_to_the_contract() -> None:
    """pydantic refuses epoch milliseconds from 10000-01-01 on; the fast path must not
    accept them (found by the property test above)."""
    from schemas.fastpath import decode_fast

    event = {
        "kind": "security.auth_success",
        "event_id": "0",
        "ts": 253_402_300_800_000,
        "tenant_id": "t",
        "service": "s",
    }
    assert decode_fast(orjson.dumps(event)) is None
    event["ts"] = 253_402_300_799_999
    assert decode_fast(orjson.dumps(event)) is not None


def test_release_and_cohort_are_stored_and_unknown_fields_ignored() -> None:
    """Both are optional on every kind and need no schema-version bump: a worker that
    does not know a field ignores it (checked here with fields this one does not know,
    as an older worker sees release/cohort), on the fast path and the contract's."""
    base = orjson.loads(http_events(1)[0])
    labelled = {**base, "release": "4.12.0", "cohort": "canary"}
    now_ms = datetime_ms(NOW)
    for fast_path in (True, False):
        ingest = Ingestor(PSEUDO, 1 << 20, 10**13, fast_path=fast_path)
        plain = ingest.decode_batch([Rec(orjson.dumps(base), 0)], now_ms).columns()
        stored = ingest.decode_batch([Rec(orjson.dumps(labelled), 0)], now_ms).columns()
        events = stored
        assert (events["release"], events["cohort"]) == (["4.12.0"], ["canary"])
        assert (plain["release"], plain["cohort"]) == ([""], [""])
        newer = {**labelled, "rollout_step": 3, "future": {"nested": True}}
        again = ingest.decode_batch([Rec(orjson.dumps(newer), 0)], now_ms).columns()
        assert again == stored
    assert decode_fast(orjson.dumps(labelled)) is not None  # labelled events stay fast
    assert decode_fast(orjson.dumps({**base, "cohort": "Canary"})) is None  # lower case only
