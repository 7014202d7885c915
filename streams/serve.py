"""``vigil serve``: the console, its JSON and the tenant-scoped API as their own process,
reading ClickHouse (``VIGIL_CLICKHOUSE_URL``) -- in production pages never load the
ingest workers. It needs ``VIGIL_CONSOLE_TOKEN`` (it refuses to start without one): the
pages and operator JSON answer only ``Authorization: Bearer <token>`` or the cookie set
by ``POST /console/login``; tenant tokens read their tenant's URLs as on the worker.
Queries run with ``readonly=1``, one at a time (the views are cached anyway).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sinks.clickhouse import connect
from streams import tokens as tk
from streams.console_http import ConsoleHttp, Reply
from streams.detectors.latency.slo import load_rules
from streams.errors import VigilError
from streams.metrics import Metrics
from streams.settings import Settings
from streams.views import Console, view_config
from streams.web import tenant_token_guard

log = logging.getLogger(__name__)


def build(settings: Settings, client: Any) -> web.Application:
    """The aiohttp application over an open ClickHouse client."""
    token = settings.console_token
    if token is None or not token.get_secret_value():
        raise VigilError(
            "vigil serve needs VIGIL_CONSOLE_TOKEN (the bearer token of its pages): set it "
            "to a long random string"
        )
    metrics = Metrics(CollectorRegistry())
    lock = asyncio.Lock()

    async def run(sql: str, parameters: dict[str, Any]) -> Sequence[Sequence[Any]]:
        async with lock:
            result = await asyncio.to_thread(
                client.query, sql, parameters=parameters, settings={"readonly": 1}
            )
        return [tuple(r) for r in result.result_rows]

    async def load() -> list[tk.TokenRecord]:
        return tk.records_from_rows(await run(tk.select_sql(settings.clickhouse_database), {}))

    console = Console(
        run, view_config(settings, load_rules(settings.rules_file)), settings.console_refresh_s
    )
    http = ConsoleHttp(
        console, tk.TokenStore(settings.hash_key_bytes, load, settings.token_refresh_s),
        settings, metrics,
    )  # fmt: skip

    def respond(reply: Reply) -> web.Response:
        if reply.html is not None:
            return web.Response(text=reply.html, status=reply.status, headers=reply.headers,
                                content_type="text/html")  # fmt: skip
        return web.json_response(reply.json, status=reply.status, headers=reply.headers)

    def creds(request: web.Request) -> tuple[str, str]:
        return request.headers.get("Authorization", ""), request.cookies.get("vigil_token", "")

    async def page(request: web.Request) -> web.Response:
        return respond(await http.page(request.match_info.get("which", ""), *creds(request)))

    async def tenant_page(request: web.Request) -> web.Response:
        return respond(await http.tenant_page(request.match_info["tenant_id"], *creds(request)))

    async def views(request: web.Request) -> web.Response:
        which, tenant = request.match_info["which"], request.query.get("tenant", "")
        return respond(await http.views(which, tenant, *creds(request)))

    async def tenant_api(request: web.Request) -> web.Response:
        info = request.match_info
        auth = request.headers.get("Authorization", "")
        return respond(await http.tenant_api(info["tenant_id"], info["doc"], auth))

    async def login(request: web.Request) -> web.Response:
        """A form post of the console token sets the cookie the pages accept."""
        form = await request.post()
        given = str(form.get("token", ""))
        if http.operator_denied(f"Bearer {given}", "") is not None:
            return web.json_response({"error": "wrong console token"}, status=401)
        response = web.HTTPSeeOther("/console")
        response.set_cookie("vigil_token", given, httponly=True, samesite="Strict",
                            secure=request.secure)  # fmt: skip
        raise response

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    async def metrics_view(request: web.Request) -> web.Response:
        refused = http.operator_denied(*creds(request))
        if refused is not None:
            return respond(refused)
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})  # fmt: skip

    app = web.Application(middlewares=[tenant_token_guard(metrics)])
    app.router.add_get("/console", page)
    app.router.add_get("/console/tenants/{tenant_id}", tenant_page)
    app.router.add_get("/console/{which}", page)
    app.router.add_post("/console/login", login)
    app.router.add_get("/api/v1/views/{which}", views)
    app.router.add_get("/api/v1/tenants/{tenant_id}/{doc}", tenant_api)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    return app


def serve(settings: Settings, host: str, port: int) -> None:
    client = connect(settings.resolved_clickhouse_url, settings.clickhouse_database)
    try:
        app = build(settings, client)
        print(f"vigil: console at http://{host}:{port}/console (bearer token required)",
              flush=True)  # fmt: skip
        web.run_app(app, host=host, port=port, print=None, access_log=None)
    finally:
        client.close()
