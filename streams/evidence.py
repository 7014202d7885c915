"""``vigil evidence baseline|stage|incident``: the rollout process's documents, from
ClickHouse (models and JSON Schemas: :mod:`schemas.evidence`), and a Markdown
post-mortem draft for an incident."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.evidence import (
    BaselineEvidence,
    IncidentAlert,
    IncidentEvidence,
    MinuteFigures,
    StageEvidence,
    StageMetric,
    Summary,
)
from sinks.sqltext import as_utc, sql_string, sql_time
from streams.errors import VigilError

#: run one read-only statement -> (column names, rows)
Query = Callable[[str], tuple[list[str], list[list[Any]]]]

THRESHOLDS = {
    "p50": "canary share above the baseline's p50 bucket (+1) exceeds the baseline's by "
    ">= 0.1, p < alpha",
    "p95": "canary share above the baseline's p95 bucket (+1) exceeds the baseline's by "
    ">= 0.01, p < alpha",
    "p99": "canary share above the baseline's p99 bucket (+1) exceeds the baseline's by "
    ">= 0.002, p < alpha",
    "error_rate": "canary 5xx rate >= baseline + 0.5 pp and >= 1.5x, p < alpha",
    "throughput_share": "canary share of requests within 50 % of its declared weight",
}


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00").replace(" ", "T")))


def _summary(values: list[float]) -> Summary:
    if not values:
        return Summary(min=None, max=None, avg=None)
    return Summary(min=min(values), max=max(values), avg=sum(values) / len(values))


def records(query: Query, sql: str) -> list[dict[str, Any]]:
    """The rows of ``sql`` as dicts by column name."""
    columns, rows = query(sql)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def baseline(
    query: Query,
    database: str,
    service: str,
    minutes: int,
    until: datetime,
    cohort: str = "",
) -> BaselineEvidence:
    start = until - timedelta(minutes=minutes)
    where = (
        f"kind = 'http.request' AND service = {sql_string(service)} "
        f"AND ts >= {sql_time(int(start.timestamp() * 1000))} "
        f"AND ts < {sql_time(int(until.timestamp() * 1000))}"
    )
    if cohort:
        where += f" AND cohort = {sql_string(cohort)}"
    sql = (
        "SELECT toStartOfMinute(ts) AS minute, count() AS requests, "
        "countIf(status >= 500) AS errors, quantileExact(0.5)(duration_ms) AS p50, "
        "quantileExact(0.95)(duration_ms) AS p95, quantileExact(0.99)(duration_ms) AS p99 "
        f"FROM {database}.events WHERE {where} GROUP BY minute ORDER BY minute"
    )
    rows = records(query, sql)
    if not rows:
        raise VigilError(f"no http.request events of {service!r} in the last {minutes} minutes")
    per_minute = [
        MinuteFigures(
            minute=_time(r["minute"]), requests=int(r["requests"]), errors=int(r["errors"]),
            error_rate=int(r["errors"]) / int(r["requests"]), p50_ms=float(r["p50"]),
            p95_ms=float(r["p95"]), p99_ms=float(r["p99"]),
        )
        for r in rows
    ]  # fmt: skip
    requests = sum(m.requests for m in per_minute)
    errors = sum(m.errors for m in per_minute)
    return BaselineEvidence(
        generated_at=datetime.now(UTC), service=service, cohort=cohort,
        window_start=start, window_end=until, requests=requests,
        error_rate=errors / requests, throughput_rps=requests / (minutes * 60),
        p50_ms=_summary([m.p50_ms for m in per_minute]),
        p95_ms=_summary([m.p95_ms for m in per_minute]),
        p99_ms=_summary([m.p99_ms for m in per_minute]),
        minutes=per_minute, query=sql,
    )  # fmt: skip


def _threshold(metric: str, baseline: list[float]) -> str:
    """What fails ``metric``; a declared quantile threshold (``slo_<q>``, whose baseline
    column holds the threshold itself) names its milliseconds."""
    if metric.startswith("slo_") and baseline:
        return f"canary {metric[4:]} <= {max(baseline):g} ms (the rules file's canary slo_ms)"
    return THRESHOLDS.get(metric, "")


def stage(
    query: Query, database: str, service: str, release: str, tenant: str = ""
) -> StageEvidence:
    """The stage of the service as a whole (``tenant`` ""), or of one tenant's canary
    (VIGIL_CANARY_PER_TENANT): the verdict rows of exactly that scope."""
    sql = (
        "SELECT interval_start, interval_end, verdict, interval_verdict, score, failing_run, "
        "canary_requests, baseline_requests, metrics, cumulative_metrics "
        f"FROM {database}.canary_verdicts FINAL WHERE service = {sql_string(service)} "
        f"AND release = {sql_string(release)} AND tenant_id = {sql_string(tenant)} "
        "ORDER BY interval_start"
    )
    rows = records(query, sql)
    if not rows:
        who = f" of tenant {tenant}" if tenant else ""
        raise VigilError(f"no canary verdicts for {service} {release}{who}")
    per_metric: dict[str, dict[str, Any]] = {}
    for r in rows:
        for m in json.loads(r["metrics"]):
            if m["outcome"] == "Nodata":
                continue
            slot = per_metric.setdefault(
                m["metric"], {"canary": [], "baseline": [], "high": 0, "critical": m["critical"]}
            )
            slot["canary"].append(float(m["canary"]))
            slot["baseline"].append(float(m["baseline"]))
            slot["high"] += m["outcome"] == "High"
    final = {m["metric"]: m for m in json.loads(rows[-1]["cumulative_metrics"])}
    metrics = [
        StageMetric(
            metric=name, critical=bool(slot["critical"]), canary=_summary(slot["canary"]),
            baseline=_summary(slot["baseline"]), threshold=_threshold(name, slot["baseline"]),
            high_intervals=int(slot["high"]),
            result="FAIL" if final.get(name, {}).get("outcome") == "High" else "PASS",
        )
        for name, slot in per_metric.items()
    ]  # fmt: skip
    judged = [r for r in rows if r["verdict"] != "Inconclusive"]
    passed = sum(1 for r in judged if r["verdict"] == "Pass")
    breaches = sum(1 for r in judged if r["interval_verdict"] == "Fail")
    verdicts = [r["verdict"] for r in rows]
    decision = (
        "ROLLBACK"
        if "Fail" in verdicts
        else "PROCEED"
        if verdicts[-1] == "Pass"
        else "INCONCLUSIVE"
    )
    return StageEvidence(
        generated_at=datetime.now(UTC), service=service, release=release, tenant_id=tenant,
        stage_start=_time(rows[0]["interval_start"]), stage_end=_time(rows[-1]["interval_end"]),
        intervals=len(rows), judged_intervals=len(judged),
        compliance_rate=passed / len(judged) if judged else 0.0, breach_count=breaches,
        max_consecutive_breaches=max(int(r["failing_run"]) for r in rows),
        final_verdict=str(rows[-1]["verdict"]), final_score=float(rows[-1]["score"]),
        canary_requests=sum(int(r["canary_requests"]) for r in rows),
        baseline_requests=sum(int(r["baseline_requests"]) for r in rows),
        metrics=metrics, decision=decision, query=sql,
    )  # fmt: skip


def incident(query: Query, database: str, incident_id: str) -> IncidentEvidence:
    found = records(
        query,
        f"SELECT * FROM {database}.incidents FINAL WHERE incident_id = {sql_string(incident_id)}",
    )
    if not found:
        raise VigilError(f"no incident {incident_id}")
    inc = found[0]
    alerts_map = inc["alerts"] if isinstance(inc["alerts"], dict) else {}
    fingerprints = ", ".join(sql_string(fp) for fp in alerts_map) or "''"
    transitions = records(
        query,
        "SELECT fingerprint, status, alertname, severity, labels, summary, value, threshold, "
        f"starts_at, ends_at, evidence FROM {database}.alerts WHERE fingerprint IN "
        f"({fingerprints}) ORDER BY ts",
    )
    alerts: list[IncidentAlert] = []
    # an alert (a fingerprint) may fire in several incidents over time: this incident's
    # episode is its first firing that started at or after the incident's first breach,
    # and the resolutions of that episode (they carry its start)
    breach = _time(inc["first_breach_at"])
    for fp in alerts_map:
        mine = [t for t in transitions if t["fingerprint"] == fp]
        firing = [t for t in mine if t["status"] == "firing" and _time(t["starts_at"]) >= breach]
        if not firing:
            continue
        first = firing[0]
        episode = _time(first["starts_at"])
        resolved = [
            t for t in mine if t["status"] == "resolved" and _time(t["starts_at"]) == episode
        ]
        evidence = json.loads(first["evidence"] or "{}")
        samples = evidence.get("samples")
        breaches = (
            len(samples)
            if isinstance(samples, list)
            else int(evidence.get("failing_intervals", 0) or 1)
        )
        alerts.append(
            IncidentAlert(
                alertname=str(first["alertname"]), severity=str(first["severity"]),
                labels={str(k): str(v) for k, v in dict(first["labels"]).items()},
                starts_at=_time(first["starts_at"]),
                ends_at=_time(resolved[-1]["ends_at"]) if resolved else None,
                value_at_incident=float(first["value"]), threshold=float(first["threshold"]),
                value_after_recovery=float(resolved[-1]["value"]) if resolved else None,
                consecutive_breaches=breaches, summary=str(first["summary"]),
                evidence_query=str(evidence.get("query", "")),
            )
        )  # fmt: skip

    def maybe(v: Any) -> datetime | None:
        return None if v in (None, "") else _time(v)

    return IncidentEvidence(
        generated_at=datetime.now(UTC), incident_id=incident_id,
        tenant_id=str(inc["tenant_id"]), tenants=list(inc.get("tenants") or []),
        category=str(inc["category"]),
        severity=str(inc["severity"]), status=str(inc["status"]),
        first_breach_at=_time(inc["first_breach_at"]), detected_at=_time(inc["detected_at"]),
        acknowledged_at=maybe(inc["acknowledged_at"]),
        acknowledged_by=str(inc["acknowledged_by"]), resolved_at=maybe(inc["resolved_at"]),
        mttd_s=inc["mttd_s"], mtta_s=inc["mtta_s"], mttr_s=inc["mttr_s"], alerts=alerts,
        timeline=json.loads(inc["timeline"]),
    )  # fmt: skip


def postmortem(doc: IncidentEvidence) -> str:
    """A Markdown post-mortem draft: the facts filled in, the analysis left to people."""

    def fmt(s: float | None) -> str:
        return "—" if s is None else f"{s / 60:.1f} min"

    lines = [
        f"# Post-mortem draft: {doc.incident_id} ({doc.severity}, {doc.category})",
        "",
        f"*Tenant:* {doc.tenant_id or ', '.join(doc.tenants) or '(none)'} · *status:* {doc.status}",
        "",
        "## Summary",
        "",
        "_What happened, who was affected, for how long (fill in)._",
        "",
        "## Detection",
        "",
        f"- First breach (event time): {doc.first_breach_at.isoformat()}",
        f"- Detected (first alert published): {doc.detected_at.isoformat()} — "
        f"MTTD {fmt(doc.mttd_s)}",
        f"- Acknowledged: {doc.acknowledged_at.isoformat() if doc.acknowledged_at else '—'}"
        f"{' by ' + doc.acknowledged_by if doc.acknowledged_by else ''} — MTTA {fmt(doc.mtta_s)}",
        f"- Resolved: {doc.resolved_at.isoformat() if doc.resolved_at else '—'} — "
        f"MTTR {fmt(doc.mttr_s)}",
        "",
        "## Alerts",
        "",
        "| alert | severity | at the incident | threshold | after recovery | breaches |",
        "|---|---|---:|---:|---:|---:|",
    ]
    routing = {"alertname", "severity", "category", "family", "auto_rollback"}
    for a in doc.alerts:
        after = "—" if a.value_after_recovery is None else f"{a.value_after_recovery:g}"
        labels = ", ".join(f"{k}={v}" for k, v in a.labels.items() if k not in routing)
        lines.append(
            f"| {a.alertname} ({labels}) | {a.severity} | {a.value_at_incident:g} | "
            f"{a.threshold:g} | {after} | {a.consecutive_breaches} |"
        )
    lines += ["", "## Timeline", ""]
    lines += [f"- {t['at']} — {t['what']}" for t in doc.timeline]
    lines += [
        "", "## Evidence queries", "",
        *[f"```sql\n{a.evidence_query}\n```" for a in doc.alerts if a.evidence_query],
        "", "## Root cause", "", "_Fill in._", "", "## Actions", "",
        "- [ ] _Fill in: owner, due date._", "",
    ]  # fmt: skip
    return "\n".join(lines)
