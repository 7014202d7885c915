"""Worker web views: ``/metrics``, ``/healthz``, ``/stats`` and (embedded mode) ``/query``.

``/query`` runs one read-only statement against the engine the worker owns (chDB allows
a single process per data directory) with ClickHouse's ``readonly=1`` setting; it is only
registered in embedded mode, where the web port is bound to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from faust.web import View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.errors import QueryRejected
from streams.metrics import Metrics
from streams.settings import Settings

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
