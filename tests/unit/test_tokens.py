"""Tenant tokens: stored only as keyed hashes; a token reads its own tenant; invalid,
expired, revoked and other tenants' tokens are refused with their own reason; a
revocation reaches a worker within its refresh interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams import tokens as tk
from streams.errors import VigilError

KEY = b"k" * 32
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def test_a_token_reads_its_tenant_and_every_refusal_has_its_reason() -> None:
    token, record = tk.mint(KEY, "acme", timedelta(days=90), "alice", now=NOW)
    assert token.startswith("vgt_") and token not in repr(record)
    assert record.token_hash == tk.keyed_hash(KEY, token) and len(record.token_hash) == 64
    assert tk.keyed_hash(b"other key", token) != record.token_hash  # keyed: no offline guess
    old, stale = tk.mint(KEY, "acme", timedelta(seconds=5), "alice", now=NOW - timedelta(hours=1))
    stored = [record, stale]
    clock = [0.0]

    async def load() -> list[tk.TokenRecord]:
        return list(stored)

    store = tk.TokenStore(KEY, load, refresh_s=2.0, clock=lambda: clock[0], now=lambda: NOW)
    assert await store.check(token, "acme") == ("ok", "acme")
    assert await store.check(token, "globex") == ("forbidden", "acme")
    assert await store.check(None, "acme") == ("missing", "")
    assert await store.check("vgt_nonsense", "acme") == ("invalid", "")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert await store.check(forged, "acme") == ("invalid", "")  # right id, wrong secret
    assert await store.check(old, "acme") == ("expired", "acme")
    # revoked: not seen before the refresh interval, seen after it
    stored[0] = tk.revoked(record, now=NOW)
    assert await store.check(token, "acme") == ("ok", "acme")
    clock[0] = 2.5
    assert await store.check(token, "acme") == ("revoked", "acme")
    assert set(tk.REASONS) == set(tk.OUTCOMES)


def test_rows_round_trip_and_listing_never_shows_the_hash() -> None:
    token, record = tk.mint(KEY, "acme", None, "bob", now=NOW)
    cols = tk.columns([record, tk.revoked(record, now=NOW)])
    rows = list(zip(*cols.values(), strict=True))
    back = tk.records_from_rows(rows)
    assert back[0] == record and back[1].revoked_at == NOW and back[1].version == 2
    shown = back[1].public()
    assert record.token_hash not in str(shown) and token not in str(shown)
    assert shown["expires_at"] is None and shown["revoked_at"] == "2026-12-06T12:00:00Z"


def test_bad_input_is_refused_with_what_to_do() -> None:
    assert tk.parse_ttl("90d") == timedelta(days=90)
    assert tk.parse_ttl("2w") == timedelta(weeks=2)
    with pytest.raises(VigilError, match=r"e\.g\. 90d"):
        tk.parse_ttl("soon")
    with pytest.raises(VigilError, match="tenant id"):
        tk.mint(KEY, "acme; DROP TABLE", None, "x")
    assert tk.token_of("Bearer vgt_abc") == "vgt_abc"
    assert tk.token_of("Bearer console-token") is None


def test_the_token_actions_give_the_answer_and_the_rows_to_store() -> None:
    created, store = tk.act(KEY, "create", {"tenant": "acme", "ttl": "1d", "by": "bob"}, [])
    [record] = store
    assert created["token"].startswith("vgt_") and created["token_id"] == record.token_id
    listed, nothing = tk.act(KEY, "list", {"tenant": "acme"}, store)
    assert [t["token_id"] for t in listed["tokens"]] == [record.token_id] and nothing == []
    assert tk.act(KEY, "list", {"tenant": "globex"}, store)[0] == {"tokens": []}
    ended, [row] = tk.act(KEY, "revoke", {"token_id": record.token_id}, store)
    assert row.version == 2 and ended["revoked_at"] is not None
    with pytest.raises(tk.UnknownToken):
        tk.act(KEY, "revoke", {"token_id": "000000000000"}, store)
    with pytest.raises(VigilError, match="create, list or revoke"):
        tk.act(KEY, "rotate", {}, store)
