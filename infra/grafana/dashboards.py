"""Vigil's Grafana dashboards, as code: ``python -m infra.grafana.dashboards`` writes
``infra/grafana/dashboards/*.json`` (a test keeps them equal to this file's output).

Panels read Prometheus (Vigil's own metrics; they carry no tenant label, so the
``tenant`` variable applies to the ClickHouse panels only) and ClickHouse through the
``grafana-clickhouse-datasource`` plugin (PLUGIN_VERSION, raw SQL with its macros
``$__timeFilter``, ``$__timeFilter_ms``, ``$__timeInterval``). Each ClickHouse panel
declares the columns it expects (COLUMNS); the tests run every panel's SQL, macros
expanded as that plugin version expands them, on an engine filled by the demo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLUGIN = "grafana-clickhouse-datasource"
PLUGIN_VERSION = "4.20.0"
CLICKHOUSE = {"type": PLUGIN, "uid": "vigil-clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "vigil-prometheus"}
OUT = Path(__file__).resolve().parent / "dashboards"

#: (dashboard uid, panel title) -> the columns its SQL returns, in order
COLUMNS: dict[tuple[str, str], tuple[str, ...]] = {}

TENANT_VAR = {
    "name": "tenant",
    "label": "tenant",
    "type": "query",
    "datasource": CLICKHOUSE,
    "query": "SELECT DISTINCT tenant_id FROM vigil.latency_windows WHERE service = '*' "
    "ORDER BY tenant_id",
    "refresh": 2,
    "current": {"text": "acme", "value": "acme"},
}


Panel = tuple[str, str, dict[str, Any]]  # title, panel type, target


def _ch(uid: str, title: str, kind: str, sql: str, columns: tuple[str, ...]) -> Panel:
    """A ClickHouse panel; a time series panel gets the plugin's time-series format, any
    other (table, stat) its table format."""
    COLUMNS[(uid, title)] = columns
    series = kind == "timeseries"
    return (
        title,
        kind,
        {
            "refId": "A",
            "datasource": CLICKHOUSE,
            "editorType": "sql",
            "format": 0 if series else 1,  # plugin: 0 time series, 1 table
            "queryType": "timeseries" if series else "table",
            "rawSql": " ".join(sql.split()),
        },
    )


def _panel(
    pid: int, title: str, kind: str, target: dict[str, Any], x: int, y: int, w: int = 12
) -> dict[str, Any]:
    return {
        "id": pid,
        "title": title,
        "type": kind,
        "datasource": target["datasource"],
        "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "targets": [target],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }


def _pr(title: str, expr: str, legend: str = "") -> Panel:
    """A Prometheus time series panel."""
    return title, "timeseries", {"refId": "A", "datasource": PROMETHEUS, "expr": expr,
                                 "legendFormat": legend}  # fmt: skip


def _dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    """``panels``: (title, panel type, target) in reading order, two per row."""
    built = []
    for i, (ptitle, kind, target) in enumerate(panels):
        built.append(_panel(i + 1, ptitle, kind, target, x=(i % 2) * 12, y=(i // 2) * 8))
    return {
        "uid": uid,
        "title": title,
        "tags": ["vigil"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [TENANT_VAR]},
        "panels": built,
    }


def canary() -> dict[str, Any]:
    uid = "vigil-canary"
    return _dashboard(uid, "Vigil · canary (real time)", [
        _ch(uid, "Canary score per release", "timeseries", """
            SELECT interval_end AS time, concat(service, ' ', release) AS release, score
            FROM vigil.canary_verdicts FINAL
            WHERE $__timeFilter(interval_end) AND tenant_id = '' ORDER BY time""",
            ("time", "release", "score")),
        _ch(uid, "Latest verdicts", "table", """
            SELECT service, release, argMax(verdict, interval_start) AS verdict,
                   argMax(score, interval_start) AS score,
                   argMax(failing_run, interval_start) AS failing_intervals,
                   max(interval_end) AS as_of
            FROM vigil.canary_verdicts FINAL
            WHERE $__timeFilter(interval_end) AND tenant_id = ''
            GROUP BY service, release ORDER BY as_of DESC""",
            ("service", "release", "verdict", "score", "failing_intervals", "as_of")),
        _ch(uid, "p95 by cohort", "timeseries", """
            SELECT $__timeInterval(window_start) AS time, cohort,
                   vigilQuantile(0.95, sumMap(bucket_keys, bucket_counts), any(gamma)) AS p95_ms
            FROM vigil.latency_windows FINAL
            WHERE $__timeFilter(window_start) AND resolution_s = 30 AND late = 0
              AND cohort != ''
            GROUP BY time, cohort ORDER BY time""",
            ("time", "cohort", "p95_ms")),
        _pr("Score gauge (live releases)", "vigil_canary_score", "{{service}} {{release}}"),
        _pr("Verdicts per minute",
            "sum by (verdict) (rate(vigil_canary_verdicts_total[$__rate_interval])) * 60",
            "{{verdict}}"),
    ])  # fmt: skip


def security() -> dict[str, Any]:
    uid = "vigil-security"
    return _dashboard(uid, "Vigil · security", [
        _ch(uid, "Cross-tenant access", "table", """
            SELECT labels['actor_tenant_id'] AS actor, labels['resource_tenant_id'] AS resource,
                   labels['target'] AS target, labels['blocked'] AS blocked,
                   count() AS attempts, max(first_event) AS last
            FROM vigil.security_detections FINAL
            WHERE alertname = 'CrossTenantAccess' AND $__timeFilter_ms(first_hold)
            GROUP BY actor, resource, target, blocked ORDER BY last DESC""",
            ("actor", "resource", "target", "blocked", "attempts", "last")),
        _ch(uid, "Detections by rule", "timeseries", """
            SELECT $__timeInterval(first_hold) AS time, rule, count() AS detections
            FROM vigil.security_detections FINAL WHERE $__timeFilter_ms(first_hold)
            GROUP BY time, rule ORDER BY time""",
            ("time", "rule", "detections")),
        _ch(uid, "Top attacking IP prefixes", "table", """
            SELECT ip_prefix, count() AS auth_failures, uniqExact(tenant_id) AS tenants
            FROM vigil.events
            WHERE kind = 'security.auth_failure' AND ip_prefix != '' AND $__timeFilter_ms(ts)
            GROUP BY ip_prefix ORDER BY auth_failures DESC LIMIT 20""",
            ("ip_prefix", "auth_failures", "tenants")),
        _pr("Late security events",
            "sum(rate(vigil_security_late_events_total[$__rate_interval]))", "late"),
    ])  # fmt: skip


def performance() -> dict[str, Any]:
    uid = "vigil-performance"
    return _dashboard(uid, "Vigil · performance", [
        _ch(uid, "Latency of ${tenant}", "timeseries", """
            SELECT $__timeInterval(window_start) AS time,
                   vigilQuantile(0.5, sumMap(bucket_keys, bucket_counts), any(gamma)) AS p50_ms,
                   vigilQuantile(0.95, sumMap(bucket_keys, bucket_counts), any(gamma)) AS p95_ms,
                   vigilQuantile(0.99, sumMap(bucket_keys, bucket_counts), any(gamma)) AS p99_ms
            FROM vigil.latency_windows FINAL
            WHERE $__timeFilter(window_start) AND resolution_s = 60 AND service = '*'
              AND late = 0 AND tenant_id = '${tenant}'
            GROUP BY time ORDER BY time""",
            ("time", "p50_ms", "p95_ms", "p99_ms")),
        _ch(uid, "5xx share of ${tenant}", "timeseries", """
            SELECT $__timeInterval(window_start) AS time, sum(c5xx) / sum(count) AS error_rate
            FROM vigil.latency_windows FINAL
            WHERE $__timeFilter(window_start) AND resolution_s = 60 AND service = '*'
              AND late = 0 AND tenant_id = '${tenant}'
            GROUP BY time ORDER BY time""",
            ("time", "error_rate")),
        _ch(uid, "SLO compliance of ${tenant}", "table", """
            SELECT rule, countIf(status = 'pass') AS passed, countIf(status = 'fail') AS failed,
                   passed / greatest(passed + failed, 1) AS compliance
            FROM vigil.slo_samples FINAL
            WHERE $__timeFilter(window_start) AND tenant_id = '${tenant}'
            GROUP BY rule ORDER BY compliance""",
            ("rule", "passed", "failed", "compliance")),
        _pr("Events consumed per second",
            "sum(rate(vigil_events_consumed_total[$__rate_interval]))", "events/s"),
        _pr("Insert latency p99 by table",
            "histogram_quantile(0.99, sum by (le, table) "
            "(rate(vigil_sink_insert_duration_seconds_bucket[$__rate_interval])))",
            "{{table}}"),
    ])  # fmt: skip


def business() -> dict[str, Any]:
    uid = "vigil-business"
    return _dashboard(uid, "Vigil · tenant health", [
        _ch(uid, "Requests per tenant", "timeseries", """
            SELECT $__timeInterval(window_start) AS time, tenant_id, sum(count) AS requests
            FROM vigil.latency_windows FINAL
            WHERE $__timeFilter(window_start) AND resolution_s = 60 AND service = '*'
              AND late = 0
            GROUP BY time, tenant_id ORDER BY time""",
            ("time", "tenant_id", "requests")),
        _ch(uid, "Error budget left (rolling 30 days, 99.9 %)", "table", """
            SELECT tenant_id, sum(count) AS requests, sum(c5xx) AS errors,
                   greatest(0, 1 - (errors / greatest(requests, 1)) / (1 - 0.999)) AS budget_left
            FROM vigil.latency_windows FINAL
            WHERE resolution_s = 60 AND service = '*' AND late = 0
              AND window_start >= $__toTime - INTERVAL 30 DAY AND window_start < $__toTime
            GROUP BY tenant_id ORDER BY budget_left""",
            ("tenant_id", "requests", "errors", "budget_left")),
        _ch(uid, "Onboarding funnel of ${tenant}", "table", """
            SELECT funnel, sum(entered) AS entered, sumForEach(reached) AS reached_per_step,
                   sumForEach(dropped) AS dropped_per_step
            FROM vigil.funnel_cohorts FINAL
            WHERE grain = 'day' AND tenant_id = '${tenant}'
              AND cohort >= toStartOfDay($__fromTime) AND cohort <= $__toTime
            GROUP BY funnel""",
            ("funnel", "entered", "reached_per_step", "dropped_per_step")),
        _ch(uid, "Open incidents of ${tenant}", "stat", """
            SELECT count() AS open_incidents FROM vigil.incidents FINAL
            WHERE status != 'resolved'
              AND (tenant_id = '${tenant}' OR has(tenants, '${tenant}'))""",
            ("open_incidents",)),
    ])  # fmt: skip


def compliance() -> dict[str, Any]:
    uid = "vigil-compliance"
    return _dashboard(uid, "Vigil · compliance", [
        _ch(uid, "PII findings by entity (must be 0)", "timeseries", """
            SELECT $__timeInterval(ts) AS time, entity, count() AS findings
            FROM vigil.pii_findings WHERE $__timeFilter_ms(ts)
            GROUP BY time, entity ORDER BY time""",
            ("time", "entity", "findings")),
        _ch(uid, "Dead letters by reason", "table", """
            SELECT reason, count() AS dead_letters, max(ts) AS last
            FROM vigil.dead_letters WHERE $__timeFilter_ms(ts)
            GROUP BY reason ORDER BY dead_letters DESC""",
            ("reason", "dead_letters", "last")),
        _ch(uid, "Retention: oldest and newest stored event", "table", """
            SELECT min(ts) AS oldest, max(ts) AS newest,
                   dateDiff('day', min(ts), max(ts)) AS days_kept, count() AS events
            FROM vigil.events""",
            ("oldest", "newest", "days_kept", "events")),
        _pr("PII findings per minute",
            "sum by (entity) (rate(vigil_pii_findings_total[$__rate_interval])) * 60",
            "{{entity}}"),
        _pr("Dead letters per minute",
            "sum(rate(vigil_dlq_messages_total[$__rate_interval])) * 60", "dead letters"),
    ])  # fmt: skip


DASHBOARDS = (canary, security, performance, business, compliance)


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    COLUMNS.clear()
    out = {}
    for build in DASHBOARDS:
        doc = build()
        out[f"{doc['uid']}.json"] = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return out


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
