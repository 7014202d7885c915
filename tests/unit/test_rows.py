from __future__ import annotations

from typing import Any

from schemas.events import EVENT_ADAPTER
from schemas.fastpath import FastEvent, from_model
from schemas.rows import EVENT_COLUMNS, event_columns


def validated(obj: dict[str, Any]) -> FastEvent:
    return from_model(EVENT_ADAPTER.validate_python(obj))


BASE = {"ts": 1_767_323_045_678, "tenant_id": "acme", "service": "api"}


def test_columns_of_a_mixed_batch() -> None:
    events = [
        validated(
            {
                **BASE,
                "event_id": "h",
                "kind": "http.request",
                "method": "GET",
                "route": "/x",
                "status": 503,
                "duration_ms": 12.5,
            }
        ),
        validated(
            {
                **BASE,
                "event_id": "w",
                "kind": "security.webhook_signature",
                "valid": False,
                "provider": "stripe",
            }
        ),
        validated(
            {
                **BASE,
                "event_id": "t",
                "kind": "security.tenant_violation",
                "actor_tenant_id": "acme",
                "resource_tenant_id": "globex",
            }
        ),
    ]
    cols = event_columns(
        events, [1_767_323_045_678] * 3, "vigil.events", [1, 1, 1], [7, 8, 9], [0, 0, 2]
    )
    assert set(cols) == set(EVENT_COLUMNS)
    assert all(len(v) == 3 for v in cols.values())
    assert cols["status"] == [503, 0, 0]
    assert cols["duration_ms"] == [12.5, 0.0, 0.0]
    assert cols["signature_valid"] == [1, 0, 1]  # only the webhook event says otherwise
    assert cols["blocked"] == [0, 0, 1]
    assert cols["provider"] == ["", "stripe", ""]
    assert cols["resource_tenant_id"] == ["", "", "globex"]
    assert cols["ts"] == [1_767_323_045.678] * 3
    assert (cols["src_offset"], cols["src_line"]) == ([7, 8, 9], [0, 0, 2])


def test_columns_of_a_single_kind_batch_fill_the_rest_with_defaults() -> None:
    events = [
        validated({**BASE, "event_id": str(i), "kind": "security.auth_success"}) for i in range(4)
    ]
    cols = event_columns(events, [0] * 4, "t", [0] * 4, list(range(4)), [0] * 4)
    assert cols["route"] == [""] * 4 and cols["signature_valid"] == [1] * 4
    assert cols["event_id"] == ["0", "1", "2", "3"]


def test_interleaved_kinds_are_grouped_with_their_provenance() -> None:
    kinds = ["security.auth_success", "security.access_denied"] * 3
    events = [
        validated({**BASE, "event_id": f"e{i}", "kind": k, "endpoint": f"/p{i}"})
        for i, k in enumerate(kinds)
    ]
    cols = event_columns(
        events, [1_767_323_045_000 + i for i in range(6)], "t", [0] * 6, list(range(6)), [0] * 6
    )
    rows = {
        cols["event_id"][j]: (cols["kind"][j], cols["endpoint"][j], cols["src_offset"][j])
        for j in range(6)
    }
    assert rows == {f"e{i}": (k, f"/p{i}", i) for i, k in enumerate(kinds)}
    by_id = dict(zip(cols["event_id"], cols["ts"], strict=True))
    assert by_id["e5"] == 1_767_323_045.005
