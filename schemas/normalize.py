"""Normalise decoded JSON objects into the event envelope.

Two shapes are accepted:

* the envelope itself (``kind`` present);
* the platform's structured security/performance log shape (Laravel/Monolog):
  ``timestamp, level, category, event_type, subcategory, severity, context{...},
  trace_id, span_id``; ``release`` and ``cohort`` at the top level or in ``context``
  (also ``context.app_version`` and ``context.deployment_cohort``).

Raw identifiers are pseudonymised here, before validation, so nothing downstream ever
sees them: ``user_id`` becomes ``user_id_hash`` (keyed HMAC-SHA256) and an IP address
becomes ``ip_hash`` plus a coarse network prefix (/24 for IPv4, /48 for IPv6).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from schemas.events import UNAUTHENTICATED_TENANT


class NormalisationError(ValueError):
    """The object cannot be mapped to an event; ``reason`` is a DLQ error class."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


#: domain tag of derived event ids, so they can never equal another HMAC of the same key
EVENT_ID_TAG = b"vigil.event_id\x00"


class Pseudonymizer:
    """Keyed HMAC-SHA256 of identifiers, truncated to 128 bits (32 hex chars)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.hash: Callable[[str], str] = lru_cache(maxsize=65_536)(self._hash)

    def _hash(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:32]

    def hash_bytes(self, data: bytes) -> str:
        """HMAC of arbitrary bytes (payloads: not cached, they may be large)."""
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:32]

    def event_id(self, raw: bytes) -> str:
        """The id of an event that arrived without one: keyed HMAC-SHA256 of the bytes of
        its record (of its line, for NDJSON) without surrounding whitespace. The same
        bytes get the same id -- a producer's retry, a replayed line -- and nothing about
        the content can be learnt from it without the key."""
        mac = hmac.new(self._key, EVENT_ID_TAG + raw.strip(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def ip(self, value: str) -> tuple[str, str | None]:
        """Return (hmac, network prefix); the prefix is None when ``value`` is no IP."""
        try:
            addr = ipaddress.ip_address(value.strip())
        except ValueError:
            return self.hash(value), None
        bits = 24 if addr.version == 4 else 48
        net = ipaddress.ip_network(f"{addr}/{bits}", strict=False)
        return self.hash(str(addr)), str(net)


def _pseudonymise_in_place(obj: dict[str, Any], pseudo: Pseudonymizer) -> None:
    user_id = obj.pop("user_id", None)
    if user_id is not None and "user_id_hash" not in obj:
        obj["user_id_hash"] = pseudo.hash(str(user_id))
    for key in ("ip", "ip_address"):
        raw_ip = obj.pop(key, None)
        if raw_ip is not None and "ip_hash" not in obj:
            obj["ip_hash"], obj["ip_prefix"] = pseudo.ip(str(raw_ip))


#: the contract's error code for a webhook whose verification secret is missing, and the
#: spellings log shippers use for it
SECRET_NOT_CONFIGURED = "SECRET_NOT_CONFIGURED"  # noqa: S105 (an error code)
_SECRET_ALIASES = frozenset(
    {SECRET_NOT_CONFIGURED, "WEBHOOK_SECRET_NOT_CONFIGURED", "SECRET_MISSING", "MISSING_SECRET"}
)


def normalise_provider(name: str) -> str:
    """``VerifyStripeSignatureMiddleware`` -> ``stripe``: the webhook provider, without
    the framework's words around it."""
    text = name.strip()
    for word in ("Middleware", "Signature", "Verify", "Webhook", "Handler"):
        text = text.replace(word, "")
    return text.strip("_-. ").lower() or "unknown"


def _error_code(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return SECRET_NOT_CONFIGURED if text.upper() in _SECRET_ALIASES else text


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _log_to_envelope(log: dict[str, Any], derived_id: str) -> dict[str, Any]:
    category = str(log.get("category", "")).lower()
    event_type = str(log.get("event_type", "")).lower()
    subcategory = str(log.get("subcategory", "") or "").lower()
    ctx = log.get("context") or {}
    if not isinstance(ctx, dict):
        raise NormalisationError("schema_violation", "context: must be a JSON object")

    out: dict[str, Any] = {
        "event_id": log.get("event_id") or derived_id,
        "ts": log.get("timestamp"),
        "service": str(log.get("service") or log.get("channel") or "monolog"),
        "trace_id": _str_or_none(log.get("trace_id")),
        "span_id": _str_or_none(log.get("span_id")),
        "schema_version": 1,
    }
    release = log.get("release", ctx.get("release", ctx.get("app_version")))
    if release is not None:
        out["release"] = str(release)
    cohort = log.get("cohort", ctx.get("cohort", ctx.get("deployment_cohort")))
    if cohort is not None:
        out["cohort"] = str(cohort).lower()
    tenant = ctx.get("company_id", ctx.get("tenant_id", ctx.get("user_company_id")))
    if tenant is not None:
        out["tenant_id"] = str(tenant)
    for key in ("user_id", "ip_address", "endpoint"):
        if ctx.get(key) is not None:
            out[key] = ctx[key]

    if category == "security" and event_type == "tenant_violation":
        out.update(
            kind="security.tenant_violation",
            tenant_id=str(ctx.get("user_company_id", tenant)),
            actor_tenant_id=_str_or_none(ctx.get("user_company_id")),
            resource_tenant_id=_str_or_none(ctx.get("requested_company_id")),
            model=_str_or_none(ctx.get("model")),
            operation=_str_or_none(ctx.get("operation")),
            blocked=bool(ctx.get("blocked", True)),
        )
    elif category == "security" and event_type == "auth_failure":
        if subcategory == "webhook_signature":
            out.update(
                kind="security.webhook_signature",
                provider=normalise_provider(
                    str(ctx.get("provider") or ctx.get("middleware") or "unknown")
                ),
                valid=False,
                signature_provided=bool(ctx.get("signature_provided", False)),
                error_code=_error_code(ctx.get("error_code")),
            )
        else:
            out.update(kind="security.auth_failure", reason=_str_or_none(ctx.get("reason")))
            if "user_id" not in out and ctx.get("email"):
                out["user_id"] = str(ctx["email"]).lower()
    elif category == "security" and event_type in {"auth_success", "login_success"}:
        out["kind"] = "security.auth_success"
    elif category == "security" and event_type == "access_denied":
        out.update(
            kind="security.access_denied",
            resource=_str_or_none(ctx.get("resource") or ctx.get("model")),
            action=_str_or_none(ctx.get("action") or ctx.get("operation")),
        )
    elif category == "security" and event_type in {
        "sql_injection_attempt",
        "xss_attempt",
        "input_validation",
    }:
        attack = {"sql_injection_attempt": "sql_injection", "xss_attempt": "xss"}.get(
            event_type, str(ctx.get("attack_type", "other"))
        )
        out.update(
            kind="security.input_validation",
            attack_type=attack,
            field=_str_or_none(ctx.get("field")),
            blocked=bool(ctx.get("blocked", True)),
        )
    elif category == "performance" and event_type == "slow_query":
        out.update(
            kind="performance.slow_query",
            duration_ms=ctx.get("query_time_ms"),
            model=_str_or_none(ctx.get("model")),
            operation=_str_or_none(ctx.get("operation")),
        )
    elif category == "performance" and event_type in {"http_request", "request_completed"}:
        out.update(
            kind="http.request",
            method=ctx.get("method"),
            route=ctx.get("route") or ctx.get("endpoint"),
            status=ctx.get("status"),
            duration_ms=ctx.get("duration_ms"),
        )
    else:
        raise NormalisationError(
            "unknown_kind",
            f"structured log category={category!r} event_type={event_type!r} "
            f"subcategory={subcategory!r} has no mapping to an event kind",
        )
    return out


def is_log_shape(obj: dict[str, Any]) -> bool:
    return "kind" not in obj and "event_type" in obj and "category" in obj


def normalise(
    obj: dict[str, Any],
    pseudo: Pseudonymizer,
    kinds: frozenset[str],
    tenantless: frozenset[str],
    derived_id: str,
) -> dict[str, Any]:
    """Return an envelope-shaped dict ready for validation, or raise NormalisationError.

    ``obj`` may be modified in place (it is a freshly decoded object owned by the caller).
    ``derived_id`` (:meth:`Pseudonymizer.event_id` of the raw bytes) becomes the
    ``event_id`` of an event that has none, in either shape.
    """
    if is_log_shape(obj):
        obj = _log_to_envelope(obj, derived_id)
    elif obj.get("event_id") is None:
        obj["event_id"] = derived_id
    kind = obj.get("kind")
    if kind is None:
        raise NormalisationError(
            "schema_violation", "kind: field required (or send the structured log shape)"
        )
    if kind not in kinds:
        raise NormalisationError(
            "unknown_kind", f"kind: {kind!r} is not one of {', '.join(sorted(kinds))}"
        )
    if not obj.get("tenant_id"):
        if kind in tenantless:
            obj["tenant_id"] = UNAUTHENTICATED_TENANT
        else:
            raise NormalisationError(
                "missing_tenant",
                f"tenant_id: required for kind {kind!r} (only "
                f"{', '.join(sorted(tenantless))} may omit it)",
            )
    _pseudonymise_in_place(obj, pseudo)
    return obj
