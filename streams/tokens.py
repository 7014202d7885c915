"""Per-tenant API tokens for customer-facing status pages.

A token reads ``/api/v1/tenants/<its tenant>/health`` and ``/slo`` and nothing else.

* Format ``vgt_<id>_<secret>``: ``id`` (12 hex) finds the record, ``secret`` is 32 random
  bytes (base64url). The token is shown once, when created.
* Stored only as a keyed hash: HMAC-SHA256 under ``VIGIL_HASH_KEY`` of the whole token,
  in ``api_tokens`` (ReplacingMergeTree by ``version``: creation is version 1, revocation
  version 2). A database dump holds no usable token, and without the key no guess can be
  checked offline.
* Checked in constant time; expired (``expires_at``) and revoked ones are refused with
  their own reason. Workers reload the table at most every ``VIGIL_TOKEN_REFRESH_S``
  (2 s) when a request needs it, so a revocation is effective within seconds everywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sinks.sqltext import as_utc, iso_z
from streams.errors import VigilError

PREFIX = "vgt_"
_TOKEN = re.compile(r"^vgt_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
_TTL = re.compile(r"^(?P<n>\d+)(?P<unit>[smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

Outcome = Literal["ok", "missing", "invalid", "expired", "revoked", "forbidden"]
#: every outcome, for the bounded metric label
OUTCOMES: tuple[Outcome, ...] = ("ok", "missing", "invalid", "expired", "revoked", "forbidden")

TOKEN_COLUMNS = (
    "token_id", "tenant_id", "token_hash", "created_at", "expires_at", "revoked_at",
    "created_by", "version",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_id: str
    tenant_id: str
    token_hash: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str
    version: int

    def public(self) -> dict[str, Any]:
        """What listing shows (never the hash)."""
        return {
            "token_id": self.token_id,
            "tenant_id": self.tenant_id,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "created_by": self.created_by,
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso_z(value)


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def parse_ttl(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``30m``, ``45s``."""
    match = _TTL.match(text.strip())
    if match is None or int(match["n"]) <= 0:
        raise VigilError(f"--ttl {text!r}: say how long, e.g. 90d, 12h, 2w, 30m")
    return timedelta(seconds=int(match["n"]) * _UNIT_S[match["unit"]])


def keyed_hash(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def mint(
    key: bytes, tenant: str, ttl: timedelta | None, by: str, now: datetime | None = None
) -> tuple[str, TokenRecord]:
    """A new token (shown once) and the record to store."""
    if not tenant or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", tenant):
        raise VigilError(f"--tenant {tenant!r}: a tenant id (letters, digits, _ . : -)")
    created = (now or datetime.now(UTC)).replace(microsecond=0)
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    record = TokenRecord(
        token_id, tenant, keyed_hash(key, token), created,
        created + ttl if ttl is not None else None, None, by, 1,
    )  # fmt: skip
    return token, record


def revoked(record: TokenRecord, now: datetime | None = None) -> TokenRecord:
    return TokenRecord(
        record.token_id, record.tenant_id, record.token_hash, record.created_at,
        record.expires_at, (now or datetime.now(UTC)).replace(microsecond=0),
        record.created_by, record.version + 1,
    )  # fmt: skip


def columns(records: Sequence[TokenRecord]) -> dict[str, list[Any]]:
    return {name: [getattr(r, name) for r in records] for name in TOKEN_COLUMNS}


def records_from_rows(rows: Sequence[Sequence[Any]]) -> list[TokenRecord]:
    """From ``SELECT <TOKEN_COLUMNS> FROM api_tokens FINAL`` rows."""
    out = []
    for row in rows:
        r = dict(zip(TOKEN_COLUMNS, row, strict=True))
        created = _utc(r["created_at"])
        assert created is not None
        out.append(
            TokenRecord(
                str(r["token_id"]), str(r["tenant_id"]), str(r["token_hash"]), created,
                _utc(r["expires_at"]), _utc(r["revoked_at"]), str(r["created_by"]),
                int(r["version"]),
            )
        )  # fmt: skip
    return out


class UnknownToken(VigilError):
    """No token with that id."""


def select_sql(database: str) -> str:
    """Every token's newest row, oldest first (as :func:`records_from_rows` reads it)."""
    return f"SELECT {', '.join(TOKEN_COLUMNS)} FROM {database}.api_tokens FINAL ORDER BY created_at"


def act(
    key: bytes, action: str, body: dict[str, Any], records: Sequence[TokenRecord]
) -> tuple[dict[str, Any], list[TokenRecord]]:
    """``vigil token <action>`` wherever it runs (the worker in embedded mode, straight to
    ClickHouse in production): (the answer, the rows to store). ``records``: the stored
    tokens (unused by ``create``). VigilError on bad input, UnknownToken for an unknown id."""
    if action == "create":
        ttl = parse_ttl(str(body["ttl"])) if body.get("ttl") else None
        token, record = mint(key, str(body.get("tenant", "")), ttl, str(body.get("by") or "vigil"))
        return {"token": token, **record.public()}, [record]
    if action == "revoke":
        found = [r for r in records if r.token_id == body.get("token_id")]
        if not found:
            raise UnknownToken(f"no token {body.get('token_id')}")
        ended = revoked(found[0])
        return ended.public(), [ended]
    if action == "list":
        tenant = body.get("tenant") or ""
        return {"tokens": [r.public() for r in records
                           if not tenant or r.tenant_id == tenant]}, []  # fmt: skip
    raise VigilError(f"unknown token action {action!r}: create, list or revoke")


def token_of(authorization: str) -> str | None:
    """The bearer token of an ``Authorization`` header when it is a tenant token."""
    if not authorization.lower().startswith("bearer "):
        return None
    token = authorization[7:].strip()
    return token if token.startswith(PREFIX) else None


class TokenStore:
    """The worker's view of ``api_tokens``, reloaded at most every ``refresh_s`` when a
    check needs it (one reload at a time)."""

    def __init__(
        self,
        key: bytes,
        load: Callable[[], Awaitable[list[TokenRecord]]],
        refresh_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._key = key
        self._load = load
        self.refresh_s = refresh_s
        self._clock = clock
        self._now = now
        self._records: dict[str, TokenRecord] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def _fresh(self) -> None:
        if self._loaded_at is not None and self._clock() - self._loaded_at < self.refresh_s:
            return
        async with self._lock:
            if self._loaded_at is not None and self._clock() - self._loaded_at < self.refresh_s:
                return
            self._records = {r.token_id: r for r in await self._load()}
            self._loaded_at = self._clock()

    async def check(self, token: str | None, tenant: str) -> tuple[Outcome, str]:
        """(outcome, the token's tenant or ""): ``ok`` only for a valid, live token of
        ``tenant``; ``forbidden`` for a valid token of another tenant."""
        if not token:
            return "missing", ""
        match = _TOKEN.match(token)
        if match is None:
            return "invalid", ""
        await self._fresh()
        record = self._records.get(match["id"])
        if record is None or not hmac.compare_digest(
            record.token_hash, keyed_hash(self._key, token)
        ):
            return "invalid", ""
        if record.revoked_at is not None:
            return "revoked", record.tenant_id
        if record.expires_at is not None and record.expires_at <= self._now():
            return "expired", record.tenant_id
        if record.tenant_id != tenant:
            return "forbidden", record.tenant_id
        return "ok", record.tenant_id


REASONS: dict[Outcome, str] = {
    "missing": "a tenant token is required: Authorization: Bearer vgt_...",
    "invalid": "this token is not valid (mistyped, or never issued here)",
    "expired": "this token has expired: ask for a new one (vigil token create)",
    "revoked": "this token was revoked",
    "forbidden": "this token is for another tenant",
    "ok": "",
}
