"""Event envelope and per-kind models (the input contract of ``vigil.events``).

Every model is frozen. ``ts`` accepts RFC 3339 strings (with an offset or ``Z``) or epoch
milliseconds. Raw user ids and IP addresses never reach these models: the normaliser
replaces them by keyed HMACs (``user_id_hash``, ``ip_hash``) and a network prefix.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

UNAUTHENTICATED_TENANT = "_unauthenticated"
SCHEMA_VERSION = 1

TenantId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
ShortText = Annotated[str, Field(max_length=256)]
Hash = Annotated[str, Field(max_length=128)]


#: RFC 3339 text with an offset, or epoch milliseconds. Parsed natively by pydantic-core
#: (integers above 2e10 are read as milliseconds, i.e. every instant after August 1970);
#: text without an offset is refused.
Timestamp = AwareDatetime


class Envelope(BaseModel):
    """Fields every event carries, whatever its kind."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            description=(
                "Unique id of the event. Optional on input: an event without one (or with "
                "null) gets the keyed HMAC-SHA256 of its record's bytes (of its line, for "
                "NDJSON), so a retried or replayed record keeps its id."
            ),
        ),
    ]
    ts: Timestamp
    tenant_id: TenantId
    service: Annotated[str, Field(min_length=1, max_length=128)]
    trace_id: Annotated[str, Field(max_length=64)] | None = None
    span_id: Annotated[str, Field(max_length=32)] | None = None
    schema_version: Annotated[int, Field(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    ip_hash: Hash | None = None
    ip_prefix: Annotated[str, Field(max_length=64)] | None = None
    release: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=64,
                pattern=r"^[A-Za-z0-9_.+:\-]+$",
                description="The producing service's release (version string, e.g. 4.12.0).",
            ),
        ]
        | None
    ) = None
    cohort: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=32,
                pattern=r"^[a-z0-9_\-]+$",
                description=(
                    "The deployment cohort that served the event: `baseline`, `canary`, or "
                    "another name. Only events with a cohort take part in canary comparisons."
                ),
            ),
        ]
        | None
    ) = None


class HttpRequest(Envelope):
    kind: Literal["http.request"]
    method: Annotated[str, Field(min_length=1, max_length=16)]
    route: Annotated[str, Field(min_length=1, max_length=512)]
    status: Annotated[int, Field(ge=100, le=599)]
    duration_ms: Annotated[float, Field(ge=0, le=86_400_000)]
    user_id_hash: Hash | None = None
    actor_tenant_id: TenantId | None = None
    resource_tenant_id: TenantId | None = None


class AuthFailure(Envelope):
    kind: Literal["security.auth_failure"]
    user_id_hash: Hash | None = None
    endpoint: ShortText | None = None
    reason: ShortText | None = None


class AuthSuccess(Envelope):
    kind: Literal["security.auth_success"]
    user_id_hash: Hash | None = None
    endpoint: ShortText | None = None


class WebhookSignature(Envelope):
    kind: Literal["security.webhook_signature"]
    provider: ShortText = "unknown"
    endpoint: ShortText | None = None
    valid: bool
    signature_provided: bool = True
    error_code: ShortText | None = None


class AccessDenied(Envelope):
    kind: Literal["security.access_denied"]
    user_id_hash: Hash | None = None
    endpoint: ShortText | None = None
    resource: ShortText | None = None
    action: ShortText | None = None


class TenantViolation(Envelope):
    kind: Literal["security.tenant_violation"]
    actor_tenant_id: TenantId
    resource_tenant_id: TenantId
    user_id_hash: Hash | None = None
    model: ShortText | None = None
    operation: ShortText | None = None
    endpoint: ShortText | None = None
    blocked: bool = True


class InputValidation(Envelope):
    kind: Literal["security.input_validation"]
    attack_type: Literal["sql_injection", "xss", "path_traversal", "command_injection", "other"]
    field: ShortText | None = None
    endpoint: ShortText | None = None
    blocked: bool = True


class SlowQuery(Envelope):
    """A slow database query reported by the application (structured log shape)."""

    kind: Literal["performance.slow_query"]
    duration_ms: Annotated[float, Field(ge=0, le=86_400_000)]
    model: ShortText | None = None
    operation: ShortText | None = None
    endpoint: ShortText | None = None
    user_id_hash: Hash | None = None


class Analytics(Envelope):
    kind: Literal["analytics"]
    event_name: Annotated[str, Field(min_length=1, max_length=128)]
    user_id_hash: Hash | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


Event = Annotated[
    HttpRequest
    | AuthFailure
    | AuthSuccess
    | WebhookSignature
    | AccessDenied
    | TenantViolation
    | InputValidation
    | SlowQuery
    | Analytics,
    Field(discriminator="kind"),
]

EVENT_MODELS: tuple[type[Envelope], ...] = (
    HttpRequest,
    AuthFailure,
    AuthSuccess,
    WebhookSignature,
    AccessDenied,
    TenantViolation,
    InputValidation,
    SlowQuery,
    Analytics,
)
#: kind → its model
KIND_MODELS: dict[str, type[Envelope]] = {
    m.model_fields["kind"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in EVENT_MODELS
}
KINDS: frozenset[str] = frozenset(KIND_MODELS)
#: Kinds that may legitimately arrive without a tenant (unsigned webhook call, failed
#: login for an unknown user); they are filed under :data:`UNAUTHENTICATED_TENANT`.
TENANTLESS_KINDS: frozenset[str] = frozenset(
    {"security.auth_failure", "security.webhook_signature", "security.input_validation"}
)

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
