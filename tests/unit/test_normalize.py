from __future__ import annotations

import pytest

from schemas.events import EVENT_ADAPTER, KINDS, TENANTLESS_KINDS, UNAUTHENTICATED_TENANT
from schemas.normalize import NormalisationError, Pseudonymizer, normalise


def run(obj: dict[str, object], pseudo: Pseudonymizer) -> object:
    return EVENT_ADAPTER.validate_python(
        normalise(obj, pseudo, KINDS, TENANTLESS_KINDS, derived_id="derived-id")
    )


def log(event_type: str, context: dict[str, object], **extra: object) -> dict[str, object]:
    return {
        "timestamp": "2026-03-01T10:00:00.000000Z",
        "level": "warning",
        "category": "security",
        "event_type": event_type,
        "severity": "high",
        "context": context,
        "trace_id": "abc",
        "span_id": "def",
        **extra,
    }


def test_tenant_violation_log(pseudo: Pseudonymizer) -> None:
    event = run(
        log(
            "tenant_violation",
            {
                "user_id": "user-8675309",
                "user_company_id": 7,
                "requested_company_id": 9,
                "model": "Document",
                "operation": "view",
                "blocked": True,
                "endpoint": "/v1/documents/1",
            },
        ),
        pseudo,
    )
    assert event.kind == "security.tenant_violation"  # type: ignore[attr-defined]
    assert (event.tenant_id, event.actor_tenant_id, event.resource_tenant_id) == ("7", "7", "9")  # type: ignore[attr-defined]
    assert event.user_id_hash == pseudo.hash("user-8675309")  # type: ignore[attr-defined]
    assert "8675309" not in event.model_dump_json()  # type: ignore[attr-defined]


def test_webhook_signature_without_tenant_is_unauthenticated(pseudo: Pseudonymizer) -> None:
    event = run(
        log(
            "auth_failure",
            {
                "middleware": "VerifyStripeSignature",
                "endpoint": "/webhooks/stripe",
                "ip_address": "203.0.113.9",
                "signature_provided": False,
                "error_code": "NO_SIG",
            },
            subcategory="webhook_signature",
        ),
        pseudo,
    )
    assert event.kind == "security.webhook_signature"  # type: ignore[attr-defined]
    assert event.tenant_id == UNAUTHENTICATED_TENANT  # type: ignore[attr-defined]
    assert event.valid is False and event.signature_provided is False  # type: ignore[attr-defined]
    assert event.ip_prefix == "203.0.113.0/24"  # type: ignore[attr-defined]
    assert event.ip_hash == pseudo.hash("203.0.113.9")  # type: ignore[attr-defined]
    assert "203.0.113.9" not in event.model_dump_json()  # type: ignore[attr-defined]


def test_slow_query_log(pseudo: Pseudonymizer) -> None:
    event = run(
        {
            **log(
                "slow_query", {"query_time_ms": 1234.5, "model": "Invoice", "company_id": "acme"}
            ),
            "category": "performance",
        },
        pseudo,
    )
    assert event.kind == "performance.slow_query"  # type: ignore[attr-defined]
    assert event.duration_ms == 1234.5  # type: ignore[attr-defined]
    assert event.tenant_id == "acme"  # type: ignore[attr-defined]


def test_an_event_without_id_takes_the_derived_one_in_both_shapes(pseudo: Pseudonymizer) -> None:
    def event_id(obj: dict[str, object]) -> object:
        return normalise(obj, pseudo, KINDS, TENANTLESS_KINDS, derived_id="d1")["event_id"]

    assert event_id(log("access_denied", {"company_id": "a", "user_id": 1})) == "d1"
    assert event_id(log("access_denied", {"company_id": "a"}, event_id="own")) == "own"
    envelope = {"ts": 1, "kind": "security.auth_success", "tenant_id": "a", "service": "s"}
    assert event_id(dict(envelope)) == "d1"
    assert event_id({**envelope, "event_id": None}) == "d1"  # null is no id either
    assert event_id({**envelope, "event_id": "own"}) == "own"


def test_derived_ids_are_keyed_hmacs_of_the_stripped_bytes() -> None:
    line = b'{"kind": "analytics", "user_id": 42}'
    a, b = Pseudonymizer(b"key-a"), Pseudonymizer(b"key-b")
    assert a.event_id(line) == a.event_id(b"  " + line + b"\r\n")  # same bytes, same id
    assert a.event_id(line) != a.event_id(line.replace(b"42", b"43"))
    assert a.event_id(line) != b.event_id(line)  # keyed: unguessable without the key
    assert len(a.event_id(line)) == 32 and a.event_id(line) != a.hash_bytes(line)


def test_envelope_user_id_is_pseudonymised(pseudo: Pseudonymizer) -> None:
    event = run(
        {
            "event_id": "1",
            "ts": 1767322800000,
            "tenant_id": "acme",
            "service": "api",
            "kind": "security.auth_success",
            "user_id": "alice@example.com",
        },
        pseudo,
    )
    assert event.user_id_hash == pseudo.hash("alice@example.com")  # type: ignore[attr-defined]
    assert "alice" not in event.model_dump_json()  # type: ignore[attr-defined]


def test_hmac_depends_on_key() -> None:
    assert Pseudonymizer(b"k1").hash("x") != Pseudonymizer(b"k2").hash("x")
    assert len(Pseudonymizer(b"k1").hash("x")) == 32


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (log("mystery", {}), "unknown_kind"),
        ({"event_id": "1", "ts": 1, "kind": "nope", "tenant_id": "a"}, "unknown_kind"),
        ({"event_id": "1", "ts": 1, "kind": "http.request"}, "missing_tenant"),
        ({"event_id": "1", "ts": 1, "tenant_id": "a"}, "schema_violation"),
        ({**log("tenant_violation", {}), "context": [1]}, "schema_violation"),
    ],
)
def test_normalisation_errors(obj: dict[str, object], reason: str, pseudo: Pseudonymizer) -> None:
    with pytest.raises(NormalisationError) as info:
        normalise(obj, pseudo, KINDS, TENANTLESS_KINDS, derived_id="d")
    assert info.value.reason == reason


def test_release_and_cohort_come_from_the_log_shape_too(pseudo: Pseudonymizer) -> None:
    top = run(log("auth_failure", {"company_id": 7}, release="4.12.0", cohort="Canary"), pseudo)
    assert (top.release, top.cohort) == ("4.12.0", "canary")  # type: ignore[attr-defined]
    ctx = run(
        log("auth_failure", {"company_id": 7, "app_version": "4.11.2",
                             "deployment_cohort": "baseline"}),
        pseudo,
    )  # fmt: skip
    assert (ctx.release, ctx.cohort) == ("4.11.2", "baseline")  # type: ignore[attr-defined]
    plain = run(log("auth_failure", {"company_id": 7}), pseudo)
    assert (plain.release, plain.cohort) == (None, None)  # type: ignore[attr-defined]
