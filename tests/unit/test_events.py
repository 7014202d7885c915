from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.events import EVENT_ADAPTER, KINDS, HttpRequest, TenantViolation

BASE = {"event_id": "e1", "tenant_id": "acme", "service": "api"}


def http(**extra: object) -> dict[str, object]:
    return {
        **BASE,
        "kind": "http.request",
        "ts": "2026-01-02T03:04:05.678Z",
        "method": "GET",
        "route": "/v1/x",
        "status": 200,
        "duration_ms": 12.5,
        **extra,
    }


def test_kinds_cover_the_contract() -> None:
    assert {
        "http.request",
        "security.auth_failure",
        "security.auth_success",
        "security.webhook_signature",
        "security.access_denied",
        "security.tenant_violation",
        "security.input_validation",
        "analytics",
    } <= KINDS


def test_discriminated_by_kind() -> None:
    event = EVENT_ADAPTER.validate_python(http())
    assert isinstance(event, HttpRequest)
    assert event.duration_ms == 12.5
    violation = EVENT_ADAPTER.validate_python(
        {
            **BASE,
            "kind": "security.tenant_violation",
            "ts": 1767322800000,
            "actor_tenant_id": "acme",
            "resource_tenant_id": "globex",
        }
    )
    assert isinstance(violation, TenantViolation)


@pytest.mark.parametrize(
    ("ts", "epoch_ms"),
    [
        ("2026-01-02T03:04:05.678Z", 1767323045678),
        ("2026-01-02T05:04:05.678+02:00", 1767323045678),
        (1767323045678, 1767323045678),
    ],
)
def test_ts_accepts_rfc3339_and_epoch_ms(ts: object, epoch_ms: int) -> None:
    event = EVENT_ADAPTER.validate_python(http(ts=ts))
    assert round(event.ts.timestamp() * 1000) == epoch_ms


@pytest.mark.parametrize("ts", ["2026-01-02T03:04:05", "yesterday", True, None])
def test_ts_rejects_naive_and_garbage(ts: object) -> None:
    with pytest.raises(ValidationError) as info:
        EVENT_ADAPTER.validate_python(http(ts=ts))
    assert any(e["loc"][-1] == "ts" for e in info.value.errors())


def test_models_are_frozen() -> None:
    event = EVENT_ADAPTER.validate_python(http())
    with pytest.raises(ValidationError):
        event.status = 500  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", 99),
        ("status", 600),
        ("duration_ms", -1),
        ("tenant_id", "bad tenant!"),
        ("tenant_id", ""),
    ],
)
def test_field_constraints(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        EVENT_ADAPTER.validate_python(http(**{field: value}))
