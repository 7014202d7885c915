"""``vigil serve`` over a real engine: the production console needs its bearer token (or
the login cookie), tenant tokens read their own tenant only, and the documents are the
ones the SQL gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams import tokens as tk
from streams.console import CSP
from streams.errors import VigilError
from streams.serve import build
from streams.settings import load_settings

pytestmark = pytest.mark.integration
KEY = "k" * 32
TOKEN = "console-secret-token"
T0 = datetime(2026, 12, 6, 11, 0, tzinfo=UTC)


def fill(ch: Any, db: str) -> None:
    """Ten minutes of tenant rows for acme (2 % 5xx) and globex (none), and a
    cross-tenant access of acme's data by initech, still firing."""
    names = ["tenant_id", "service", "route", "resolution_s", "window_start", "window_end",
             "late", "window_id", "src_partition", "count", "c5xx", "gamma", "bucket_keys",
             "bucket_counts"]  # fmt: skip
    rows = []
    for tenant, errors in (("acme", 20), ("globex", 0)):
        for m in range(10):
            start = T0 + timedelta(minutes=m)
            rows.append([tenant, "*", "*", 60, start, start + timedelta(minutes=1), 0,
                         f"{tenant}{m}", 0, 1000, errors, 1.02, [200], [1000]])  # fmt: skip
    ch.insert(f"{db}.latency_windows", rows, column_names=names)
    ch.insert(
        f"{db}.alerts",
        [["acme", T0, "a1", "f" * 32, "firing", "CrossTenantAccess", "critical",
          {"actor_tenant_id": "initech", "resource_tenant_id": "acme", "target": "Document",
           "blocked": "true"}, "initech accessed acme's Document", "", "", 1.0, 1.0, T0, None,
          "{}"]],
        column_names=["tenant_id", "ts", "alert_id", "fingerprint", "status", "alertname",
                      "severity", "labels", "summary", "description", "runbook_url", "value",
                      "threshold", "starts_at", "ends_at", "evidence"],
    )  # fmt: skip


async def test_serve_answers_only_with_its_token_and_tenants_only_their_own(
    ch_client: Any, database: str
) -> None:
    fill(ch_client, database)
    settings = load_settings(clickhouse_database=database, console_token=TOKEN, hash_key=KEY)
    acme_token, record = tk.mint(KEY.encode(), "acme", timedelta(days=1), "test")
    cols = tk.columns([record])
    ch_client.insert(f"{database}.api_tokens", list(zip(*cols.values(), strict=True)),
                     column_names=list(cols))  # fmt: skip
    async with TestClient(TestServer(build(settings, ch_client))) as client:
        for path in ("/console", "/console/security", "/api/v1/views/overview", "/metrics"):
            assert (await client.get(path)).status == 401, path
        operator = {"Authorization": f"Bearer {TOKEN}"}
        page = await client.get("/console", headers=operator)
        assert page.status == 200 and page.headers["Content-Security-Policy"] == CSP
        overview = await (await client.get("/api/v1/views/overview", headers=operator)).json()
        assert overview["as_of"] == "2026-12-06T11:10:00Z"
        assert sum(p["requests"] for p in overview["series"]) == 20_000
        scores = {t["tenant_id"]: t["score"] for t in overview["tenants"]}
        # acme: 2 % 5xx burns 20x its 0.1 % budget (budget part 0), one detection-free day
        assert scores == {"acme": 70.0, "globex": 100.0}
        # the login form sets the cookie the pages accept
        wrong = await client.post("/console/login", data={"token": "nope"},
                                  allow_redirects=False)  # fmt: skip
        assert wrong.status == 401
        login = await client.post("/console/login", data={"token": TOKEN}, allow_redirects=False)
        assert login.status == 303 and "vigil_token" in login.cookies
        assert (await client.get("/console/tenants/acme")).status == 200  # with the cookie
        client.session.cookie_jar.clear()
        # a tenant token: its own tenant's URLs, nothing else
        tenant = {"Authorization": f"Bearer {acme_token}"}
        health = await client.get("/api/v1/tenants/acme/health", headers=tenant)
        body = await health.text()
        assert health.status == 200 and "initech" not in body and "globex" not in body
        assert "your data was accessed by another tenant" in body
        for path in ("/api/v1/tenants/globex/health", "/console", "/api/v1/views/overview",
                     "/metrics"):  # fmt: skip
            assert (await client.get(path, headers=tenant)).status == 403, path
        slo = await client.get("/api/v1/tenants/acme/slo", headers=operator)  # operators too
        assert slo.status == 200
    with pytest.raises(VigilError, match="VIGIL_CONSOLE_TOKEN"):
        build(load_settings(clickhouse_database=database, hash_key=KEY), ch_client)
