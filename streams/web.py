"""Worker web views: ``/metrics``, ``/healthz``, ``/stats``, ``/alerts/<fingerprint>``,
``/alertmanager/webhook`` and (embedded mode) ``/query``.

``/query`` runs one read-only statement against the engine the worker owns (chDB allows
a single process per data directory) with ClickHouse's ``readonly=1`` setting; it is only
registered in embedded mode, where the web port is bound to 127.0.0.1.

``/alerts/<fingerprint>`` is every alert's ``generatorURL``: its recorded transitions
with their evidence (JSON; HTML for a browser). ``/alertmanager/webhook`` is the webhook
receiver of the shipped Alertmanager configuration (payload version 4; bearer token
``VIGIL_ALERTMANAGER_WEBHOOK_TOKEN``, see :func:`webhook_refusal`): it records each
notified alert in ``alert_notifications`` (the daily report's low alerts) and answers
200 only once the rows are stored, so Alertmanager retries otherwise.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from faust.web import View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from streams.console_http import operator_denied
from streams.detectors.canary.detector import stored_verdict_sql
from streams.errors import QueryRejected, VigilError
from streams.incidents import (
    UnknownIncident,
    pagerduty_ack,
    pagerduty_signed,
    request_elsewhere,
    stored_match,
)
from streams.metrics import Metrics
from streams.settings import Settings
from streams.views import bearer_ok

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from streams.app import VigilApp

_READ_ONLY = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)


def check_read_only(sql: str) -> str:
    """The statement to run, without its whole-line ``--`` comments (``vigil rules sql``
    prints one on top); QueryRejected unless it is one read-only statement."""
    lines = [ln for ln in sql.splitlines() if not ln.lstrip().startswith("--")]
    statement = "\n".join(lines).strip().rstrip(";").strip()
    if ";" in statement:
        raise QueryRejected("only one statement per query")
    if not _READ_ONLY.match(statement):
        raise QueryRejected(
            "only read-only statements (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) "
            "are accepted; use `vigil migrate` for DDL"
        )
    return statement


#: summary figure → the metric whose samples it totals
STATS: dict[str, str] = {
    "messages": "vigil_messages_consumed_total",
    "events": "vigil_events_consumed_total",
    "invalid": "vigil_events_invalid_total",
    "dlq": "vigil_dlq_messages_total",
    "rows_written": "vigil_sink_rows_written_total",
    "alerts": "vigil_alerts_published_total",
    "lag": "vigil_consumer_lag_messages",
}


def inbound_refusal(
    settings: Settings,
    secret: SecretStr | None,
    variable: str,
    presented: str,
    verify: Callable[[str, str], bool],
    what: str,
    header: str,
) -> str | None:
    """Why a request from a system outside Vigil (PagerDuty, Alertmanager) is refused
    (None: read it). With its secret set (``variable``), what it presents in ``header``
    must ``verify`` against it; without, production refuses every request (anyone who
    reaches the port could write through it) and embedded mode, the local stack, reads
    them."""
    if secret is not None and secret.get_secret_value():
        if presented and verify(secret.get_secret_value(), presented):
            return None
        return f"invalid {what}" if presented else f"missing {header}"
    if settings.mode == "production":
        return f"{variable} is not set: every request is refused in production"
    return None


def pagerduty_refusal(settings: Settings, body: bytes, signature: str) -> str | None:
    """A PagerDuty v3 webhook: the v1 HMAC-SHA256 of ``body`` under
    ``VIGIL_PAGERDUTY_WEBHOOK_SECRET`` in ``X-PagerDuty-Signature``."""
    return inbound_refusal(
        settings, settings.pagerduty_webhook_secret, "VIGIL_PAGERDUTY_WEBHOOK_SECRET",
        signature, lambda secret, given: pagerduty_signed(secret.encode(), body, given),
        "signature", "X-PagerDuty-Signature",
    )  # fmt: skip


def webhook_refusal(settings: Settings, authorization: str) -> str | None:
    """Alertmanager's webhook (the daily report's low alerts): bearer
    ``VIGIL_ALERTMANAGER_WEBHOOK_TOKEN``."""
    return inbound_refusal(
        settings, settings.alertmanager_webhook_token, "VIGIL_ALERTMANAGER_WEBHOOK_TOKEN",
        authorization, lambda token, given: bearer_ok(token, given, ""),
        "token", "Authorization: Bearer <token>",
    )  # fmt: skip


def credentials(request: Any) -> tuple[str, str]:
    """The bearer header and the console cookie of a request."""
    return request.headers.get("Authorization", ""), request.cookies.get("vigil_token", "")


def stats_snapshot(metrics: Metrics) -> dict[str, float]:
    """Totals for the live summary of `vigil up` (sums over bounded labels), from one
    pass over the registry."""
    totals: dict[str, float] = dict.fromkeys(STATS.values(), 0.0)
    for metric in metrics.registry.collect():
        for sample in metric.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return {figure: totals[name] for figure, name in STATS.items()}


def register_views(app: VigilApp, settings: Settings, metrics: Metrics) -> None:
    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(
            generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    @app.page("/healthz")  # type: ignore[untyped-decorator]
    async def health_view(web: Any, request: Any) -> Any:
        """200 once ready. A detector that keeps failing makes the status ``degraded``
        (still 200: ingest and storage go on, and a restart would not fix it)."""
        ready = app.runtime.ready.is_set()
        return web.json(
            {"ready": ready, **app.runtime.health.report()}, status=200 if ready else 503
        )

    @app.page("/stats")  # type: ignore[untyped-decorator]
    async def stats_view(web: Any, request: Any) -> Any:
        try:
            assigned = len(app.consumer.assignment())
        except Exception:  # consumer not started yet
            assigned = 0
        return web.json({**stats_snapshot(metrics), "assigned_partitions": assigned})

    class AlertView(View):  # type: ignore[misc]
        async def get(self, request: Any, fingerprint: str) -> Any:
            if not re.fullmatch(r"[0-9a-f]{32}", fingerprint):
                return self.json({"error": "not an alert fingerprint (32 hex)"}, status=400)
            writer = app.runtime.writer
            if writer is None:
                return self.json({"error": "worker is still starting"}, status=503)
            async with writer.engine_lock:
                result = await asyncio.to_thread(
                    writer.client.query,
                    "SELECT ts, status, alertname, severity, labels, summary, description, "
                    "runbook_url, value, threshold, starts_at, ends_at, evidence "
                    f"FROM {settings.clickhouse_database}.alerts "
                    "WHERE fingerprint = {fp:String} ORDER BY ts DESC LIMIT 50",
                    parameters={"fp": fingerprint},
                )
            rows = [
                {name: jsonable(v) for name, v in zip(result.column_names, row, strict=True)}
                for row in result.result_rows
            ]
            if not rows:
                return self.json({"error": f"no alert {fingerprint} recorded"}, status=404)
            body = {"fingerprint": fingerprint, "transitions": rows}
            if "text/html" in request.headers.get("Accept", ""):
                return self.html(alert_page(body))
            return self.json(body)

    app.page("/alerts/{fingerprint}")(AlertView)

    class WebhookView(View):  # type: ignore[misc]
        async def post(self, request: Any) -> Any:
            refused = webhook_refusal(settings, request.headers.get("Authorization", ""))
            if refused is not None:
                metrics.webhook_rejected.inc()
                log.warning("Alertmanager webhook refused: %s", refused)
                return self.json({"error": "forbidden", "reason": refused}, status=403)
            try:
                payload = await request.json()
                columns = notification_columns(payload, datetime.now(UTC))
            except (ValueError, KeyError, TypeError) as exc:
                metrics.webhook_rejected.inc()
                return self.json({"error": f"not an Alertmanager webhook v4: {exc}"}, status=400)
            writer = app.runtime.writer
            if writer is None:
                return self.json({"error": "worker is still starting"}, status=503)
            await writer.add({"alert_notifications": columns})
            await writer.flush()  # answer only once stored: Alertmanager retries otherwise
            metrics.webhook_alerts.inc(len(columns["fingerprint"]))
            return self.json({"recorded": len(columns["fingerprint"])})

    app.page("/alertmanager/webhook")(WebhookView)

    class CanaryView(View):  # type: ignore[misc]
        """``GET /api/v1/canary?service=S&release=R[&tenant=T]``: the current verdict (the
        shape is documented in the README, "Canary analysis"); rollout tools poll it."""

        async def get(self, request: Any) -> Any:
            service = request.query.get("service", "")
            release = request.query.get("release", "")
            tenant = request.query.get("tenant", "")
            if not service or not release:
                return self.json(
                    {"error": "query parameters service and release are required"}, status=400
                )
            judge = app.runtime.canary_judge
            if judge is None:
                return self.json({"error": "canary analysis is off"}, status=404)
            if tenant and not judge.config.per_tenant:
                return self.json(
                    {"error": "per-tenant verdicts are off (VIGIL_CANARY_PER_TENANT=false)"},
                    status=404,
                )
            current = judge.current(service, release, tenant)
            if current is None:
                current = await stored_verdict(judge, service, release, tenant)
            if current is None:
                who = f" for {tenant}" if tenant else ""
                return self.json(
                    {"error": f"no verdict for {service} {release}{who} yet", "verdict": "Nodata"},
                    status=404,
                )
            return self.json(current)

    async def stored_verdict(
        judge: Any, service: str, release: str, tenant: str
    ) -> dict[str, Any] | None:
        """The latest stored verdict (another worker judges this service)."""
        writer = app.runtime.writer
        if writer is None:
            return None
        rows = await writer.query_rows(
            stored_verdict_sql(settings.clickhouse_database),
            {"s": service, "r": release, "t": tenant},
        )
        return judge.from_row(service, release, tenant, rows[0]) if rows else None

    app.page("/api/v1/canary")(CanaryView)

    class IncidentActionView(View):  # type: ignore[misc]
        """``POST /api/v1/incidents/{id}/ack`` or ``/resolve`` with ``{"by": NAME}``."""

        async def post(self, request: Any, incident_id: str, action: str) -> Any:
            refused = operator_denied(settings, metrics, *credentials(request))
            if refused is not None:
                return self.json(refused.json, status=refused.status)
            tracker = app.runtime.incidents
            if tracker is None:
                return self.json({"error": "worker is still starting"}, status=503)
            try:
                body = await request.json()
            except ValueError:
                body = {}
            by = str(body.get("by") or "").strip()
            if not by:
                return self.json({"error": 'say who: {"by": "NAME"}'}, status=400)
            try:
                if action == "ack":
                    incident = await tracker.acknowledge(incident_id, by)
                elif action == "resolve":
                    incident = await tracker.resolve(incident_id, by)
                else:
                    return self.json({"error": "action is ack or resolve"}, status=404)
            except UnknownIncident:
                # another worker's? its owner applies the stored request on its next poll
                writer = app.runtime.writer
                queued = writer is not None and await request_elsewhere(
                    writer, settings.clickhouse_database, incident_id, action, by,
                    datetime.now(UTC),
                )  # fmt: skip
                if not queued:
                    return self.json({"error": f"no open incident {incident_id}"}, status=404)
                return self.json(
                    {
                        "incident_id": incident_id,
                        "status": "requested",
                        "detail": f"tracked by another worker, which applies the {action} "
                        f"within {settings.incident_poll_s:g} s",
                    },
                    status=202,
                )
            return self.json({"incident_id": incident.id, "status": incident.status})

    app.page("/api/v1/incidents/{incident_id}/{action}")(IncidentActionView)

    class PagerDutyView(View):  # type: ignore[misc]
        """PagerDuty v3 webhooks: ``incident.acknowledged`` acknowledges the open incident
        holding the alert its title names (the shipped ``vigil.title``)."""

        async def post(self, request: Any) -> Any:
            tracker = app.runtime.incidents
            body = await request.read()
            refused = pagerduty_refusal(
                settings, body, request.headers.get("X-PagerDuty-Signature", "")
            )
            if refused is not None:
                log.warning("PagerDuty webhook refused: %s", refused)
                return self.json({"error": "forbidden", "reason": refused}, status=403)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:
                return self.json({"error": "not JSON"}, status=400)
            ack = pagerduty_ack(payload)
            if ack is None or tracker is None:
                return self.json({"acknowledged": None, "reason": "not an acknowledgement"})
            alertname, tenant, who, when = ack
            incident = tracker.find(alertname, tenant)
            if incident is not None:
                await tracker.acknowledge(incident.id, f"{who} (PagerDuty)", when)
                return self.json({"acknowledged": incident.id})
            writer = app.runtime.writer
            found = writer is not None and await stored_match(
                writer, settings.clickhouse_database, alertname, tenant
            )
            if not found or writer is None:
                return self.json({"acknowledged": None, "reason": "no open incident matches"})
            await request_elsewhere(
                writer, settings.clickhouse_database, found, "ack", f"{who} (PagerDuty)",
                when or datetime.now(UTC),
            )  # fmt: skip
            return self.json({"acknowledged": found, "applied_by": "its owner worker"})

    app.page("/pagerduty/webhook")(PagerDutyView)

    register_console(app, settings)

    if settings.mode != "embedded":
        return

    class QueryView(View):  # type: ignore[misc]
        async def post(self, request: Any) -> Any:
            body = await request.json()
            try:
                sql = check_read_only(str(body.get("sql", "")))
            except QueryRejected as exc:
                return self.json({"error": str(exc)}, status=400)
            writer = app.runtime.writer
            if writer is None:
                return self.json({"error": "worker is still starting"}, status=503)
            try:
                async with writer.engine_lock:
                    result = await asyncio.to_thread(
                        writer.client.query, sql, settings={"readonly": 1}
                    )
            except Exception as exc:
                return self.json({"error": str(exc)}, status=400)
            rows = [[jsonable(v) for v in row] for row in result.result_rows]
            return self.json({"columns": list(result.column_names), "rows": rows})

    app.page("/query")(QueryView)


def jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def _ts(value: Any) -> datetime | None:
    if not value or str(value).startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def notification_columns(payload: Any, now: datetime) -> dict[str, list[Any]]:
    """Rows of ``alert_notifications`` from an Alertmanager webhook (version 4)."""
    if not isinstance(payload, dict) or str(payload.get("version")) != "4":
        raise ValueError('expected a JSON object with version "4"')
    alerts = payload["alerts"]
    if not isinstance(alerts, list):
        raise TypeError("alerts must be a list")
    cols: dict[str, list[Any]] = {
        name: []
        for name in (
            "received_at", "receiver", "group_key", "status", "alertname", "severity",
            "tenant_id", "fingerprint", "am_fingerprint", "labels", "summary", "starts_at",
            "ends_at",
        )
    }  # fmt: skip
    for alert in alerts:
        labels = {str(k): str(v) for k, v in dict(alert.get("labels", {})).items()}
        notes = dict(alert.get("annotations", {}))
        starts = _ts(alert.get("startsAt"))
        if starts is None:
            raise ValueError("an alert without startsAt")
        cols["received_at"].append(now)
        cols["receiver"].append(str(payload.get("receiver", "")))
        cols["group_key"].append(str(payload.get("groupKey", "")))
        cols["status"].append(str(alert.get("status", payload.get("status", ""))))
        cols["alertname"].append(labels.get("alertname", ""))
        cols["severity"].append(labels.get("severity", ""))
        cols["tenant_id"].append(labels.get("tenant_id", ""))
        cols["fingerprint"].append(str(notes.get("fingerprint", "")))
        cols["am_fingerprint"].append(str(alert.get("fingerprint", "")))
        cols["labels"].append(labels)
        cols["summary"].append(str(notes.get("summary", "")))
        cols["starts_at"].append(starts)
        cols["ends_at"].append(_ts(alert.get("endsAt")))
    return cols


def alert_page(body: dict[str, Any]) -> str:
    """A plain HTML view of one alert's transitions and evidence (no scripts)."""
    rows = []
    for t in body["transitions"]:
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(t.get(k, '')))}</td>"
                for k in ("ts", "status", "severity", "value", "threshold", "summary")
            )
            + f"<td><pre>{html.escape(str(t.get('evidence', '')))}</pre></td></tr>"
        )
    first = body["transitions"][0]
    return (
        "<!doctype html><meta charset=utf-8>"
        f"<title>{html.escape(str(first['alertname']))}</title>"
        f"<h1>{html.escape(str(first['alertname']))}</h1>"
        f"<p>{html.escape(str(first['summary']))}</p>"
        f"<p>runbook: {html.escape(str(first['runbook_url']))}</p>"
        "<table border=1><tr><th>time</th><th>status</th><th>severity</th><th>value</th>"
        "<th>threshold</th><th>summary</th><th>evidence</th></tr>" + "".join(rows) + "</table>"
    )


def register_console(app: VigilApp, settings: Settings) -> None:
    """The console, its JSON and the tenant-scoped API on the worker's web port (embedded
    mode serves them from the engine the worker owns; see streams/console_http.py)."""
    from streams import tokens as tk
    from streams.console_http import ConsoleHttp, Reply
    from streams.views import Console, view_config

    state: dict[str, ConsoleHttp] = {}

    def handlers() -> ConsoleHttp | None:
        if "h" not in state:
            writer = app.runtime.writer
            if writer is None:
                return None

            async def load() -> list[tk.TokenRecord]:
                rows = await writer.query_rows(tk.select_sql(settings.clickhouse_database), {})
                return tk.records_from_rows(rows)

            console = Console(
                writer.query_rows,
                view_config(settings, app.runtime.rules),
                settings.console_refresh_s,
            )
            tokens = tk.TokenStore(settings.hash_key_bytes, load, settings.token_refresh_s)
            state["h"] = ConsoleHttp(console, tokens, settings, app.runtime.metrics)
        return state["h"]

    def respond(view: Any, reply: Reply) -> Any:
        if reply.html is not None:
            return view.html(reply.html, status=reply.status, headers=reply.headers)
        return view.json(reply.json, status=reply.status, headers=reply.headers)

    starting = Reply(503, {"error": "worker is still starting"})

    class ConsoleView(View):  # type: ignore[misc]
        async def get(self, request: Any, which: str = "") -> Any:
            h = handlers()
            return respond(self, starting if h is None else
                           await h.page(which, *credentials(request)))  # fmt: skip

    class ConsoleTenantView(View):  # type: ignore[misc]
        async def get(self, request: Any, tenant_id: str) -> Any:
            h = handlers()
            return respond(self, starting if h is None else
                           await h.tenant_page(tenant_id, *credentials(request)))  # fmt: skip

    class ViewsApi(View):  # type: ignore[misc]
        async def get(self, request: Any, which: str) -> Any:
            h = handlers()
            tenant_id = request.query.get("tenant", "")
            return respond(self, starting if h is None else
                           await h.views(which, tenant_id, *credentials(request)))  # fmt: skip

    class TenantApi(View):  # type: ignore[misc]
        """``GET /api/v1/tenants/{id}/health`` and ``/slo`` (streams/tokens.py)."""

        async def get(self, request: Any, tenant_id: str, doc: str) -> Any:
            h = handlers()
            auth = request.headers.get("Authorization", "")
            return respond(self, starting if h is None else
                           await h.tenant_api(tenant_id, doc, auth))  # fmt: skip

    class TokenAdmin(View):  # type: ignore[misc]
        """``vigil token`` in embedded mode (the worker owns the engine): create, list,
        revoke. Local only, like /query; the console token is needed when one is set."""

        async def post(self, request: Any, action: str = "") -> Any:
            h = handlers()
            if h is None:
                return respond(self, starting)
            refused = h.operator_denied(*credentials(request))
            if refused is not None:
                return respond(self, refused)
            writer = app.runtime.writer
            if writer is None or settings.mode != "embedded":
                return self.json({"error": "embedded mode only: use vigil token with "
                                  "VIGIL_CLICKHOUSE_URL"}, status=404)  # fmt: skip
            body = await request.json()
            records: list[tk.TokenRecord] = []
            if action != "create":
                rows = await writer.query_rows(tk.select_sql(settings.clickhouse_database), {})
                records = tk.records_from_rows(rows)
            try:
                answer, store = tk.act(settings.hash_key_bytes, action, body, records)
            except tk.UnknownToken as exc:
                return self.json({"error": str(exc)}, status=404)
            except VigilError as exc:
                return self.json({"error": str(exc)}, status=400)
            if store:
                await writer.add({"api_tokens": tk.columns(store)})
                await writer.flush()
            return self.json(answer)

    app.page("/api/v1/tenants/{tenant_id}/{doc}")(TenantApi)
    app.page("/admin/tokens/{action}")(TokenAdmin)
    app.page("/console")(ConsoleView)
    app.page("/console/{which}")(ConsoleView)
    app.page("/console/tenants/{tenant_id}")(ConsoleTenantView)
    app.page("/api/v1/views/{which}")(ViewsApi)


_TENANT_URL = re.compile(r"^/api/v1/tenants/(?P<tenant>[^/]+)/(?P<doc>health|slo)$")


def tenant_token_guard(metrics: Metrics) -> Any:
    """aiohttp middleware: a request bearing a tenant token (``vgt_``) reaches only the
    tenant-scoped URLs (which check the token's tenant); anything else is 403."""
    from aiohttp import web

    from streams.tokens import token_of

    @web.middleware
    async def guard(request: Any, handler: Any) -> Any:
        if token_of(request.headers.get("Authorization", "")) is not None and not (
            _TENANT_URL.match(request.path)
        ):
            metrics.tenant_api.labels(outcome="forbidden").inc()
            return web.json_response(
                {"error": "a tenant token reads only /api/v1/tenants/<its tenant>/health "
                 "and /slo"},
                status=403,
            )  # fmt: skip
        return await handler(request)

    return guard
