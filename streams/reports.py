"""``vigil report``: a tenant's calendar-month SLA report and the operations team's daily
summary, from ClickHouse (read-only SQL, through the worker in embedded mode), as JSON
and Markdown.

Calendar month vs rolling budget: the SLA is billed per calendar month (UTC), from the
month's own requests -- availability = 1 - 5xx / requests against the objective, and the
month's budget = (1 - objective) x its requests. The alerting error budget
(ErrorBudgetBurnFast/Slow, the console) is a *rolling* 30 days with the same objective:
a burn on the 30th counts in the rolling window for the next 30 days but only in that
month's report, so the two agree on the objective and differ at month boundaries.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sinks.sqltext import sql_string, sql_time
from streams.errors import VigilError
from streams.evidence import Query, records
from streams.incidents import of_tenant


def _time(value: datetime) -> str:
    return sql_time(int(value.timestamp() * 1000))


def month_bounds(month: str) -> tuple[datetime, datetime]:
    if not re.fullmatch(r"\d{4}-\d{2}", month):
        raise VigilError(f"--month {month!r}: a calendar month as YYYY-MM, e.g. 2026-11")
    year, m = int(month[:4]), int(month[5:])
    if not 1 <= m <= 12:
        raise VigilError(f"--month {month!r}: no such month")
    start = datetime(year, m, 1, tzinfo=UTC)
    end = datetime(year + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
    return start, end


def tenant_month(
    query: Query, database: str, tenant: str, month: str, objective: float
) -> dict[str, Any]:
    """The SLA report of ``tenant`` for ``month`` (YYYY-MM)."""
    start, end = month_bounds(month)
    t = sql_string(tenant)
    span = f"window_start >= {_time(start)} AND window_start < {_time(end)}"
    [volume] = records(
        query,
        f"SELECT sum(count) AS requests, sum(c5xx) AS errors FROM {database}.latency_windows "
        f"FINAL WHERE tenant_id = {t} AND service = '*' AND resolution_s = 60 AND late = 0 "
        f"AND {span}",
    )
    requests, errors = int(volume["requests"] or 0), int(volume["errors"] or 0)
    allowed = (1 - objective) * requests
    objectives = records(
        query,
        "SELECT rule, any(sli) AS sli, any(op) AS op, any(threshold) AS threshold, "
        "countIf(status = 'pass') AS pass, countIf(status = 'fail') AS fail "
        f"FROM {database}.slo_samples FINAL WHERE tenant_id = {t} AND {span} "
        "GROUP BY rule ORDER BY rule",
    )
    for o in objectives:
        decided = o["pass"] + o["fail"]
        o["compliance"] = o["pass"] / decided if decided else None
    incidents = records(
        query,
        "SELECT incident_id, severity, category, status, alertnames, "
        "toString(first_breach_at) AS first_breach_at, toString(resolved_at) AS resolved_at, "
        f"mttd_s, mtta_s, mttr_s FROM {database}.incidents FINAL WHERE {of_tenant(t)} "
        f"AND detected_at >= {_time(start)} AND detected_at < {_time(end)} "
        "ORDER BY first_breach_at",
    )
    alerts = records(
        query,
        f"SELECT severity, count() AS n FROM {database}.alerts WHERE tenant_id = {t} "
        f"AND status = 'firing' AND ts >= {_time(start)} AND ts < {_time(end)} "
        "GROUP BY severity ORDER BY severity",
    )
    availability = 1 - errors / requests if requests else None
    return {
        "tenant_id": tenant,
        "month": month,
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "availability": {
            "objective": objective,
            "requests": requests,
            "errors": errors,
            "availability": availability,
            "met": availability is None or availability >= objective,
            "budget_requests": round(allowed, 3),
            "budget_spent": round(errors / allowed, 4) if allowed else None,
        },
        "objectives": objectives,
        "incidents": incidents,
        "alerts_by_severity": {a["severity"]: int(a["n"]) for a in alerts},
        "note": "calendar month (UTC); the alerting error budget is a rolling 30 days with "
        "the same objective (see the README, Reports)",
    }


def daily(query: Query, database: str, day: date) -> dict[str, Any]:
    """The operations team's summary of one UTC day."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    ts = f"ts >= {_time(start)} AND ts < {_time(end)}"
    alerts = records(
        query,
        f"SELECT severity, count() AS n FROM {database}.alerts WHERE status = 'firing' AND {ts} "
        "GROUP BY severity ORDER BY severity",
    )
    handed_back = records(
        query,
        "SELECT alertname, tenant_id, count() AS n FROM "
        f"{database}.alert_notifications WHERE severity = 'low' AND received_at >= "
        f"{_time(start)} AND received_at < {_time(end)} GROUP BY alertname, tenant_id "
        "ORDER BY n DESC",
    )
    incidents = records(
        query,
        "SELECT countIf(detected_at >= {s} AND detected_at < {e}) AS opened, "
        "countIf(resolved_at >= {s} AND resolved_at < {e}) AS resolved, "
        "countIf(status != 'resolved') AS open_now, avgIf(mttd_s, detected_at >= {s} AND "
        "detected_at < {e}) AS mttd_s, avgIf(mttr_s, resolved_at >= {s} AND resolved_at < {e}) "
        f"AS mttr_s FROM {database}.incidents FINAL".format(s=_time(start), e=_time(end)),
    )
    slo = records(
        query,
        "SELECT rule, countIf(status = 'pass') AS pass, countIf(status = 'fail') AS fail "
        f"FROM {database}.slo_samples FINAL WHERE window_start >= {_time(start)} "
        f"AND window_start < {_time(end)} GROUP BY rule ORDER BY rule",
    )
    for r in slo:
        decided = r["pass"] + r["fail"]
        r["compliance"] = r["pass"] / decided if decided else None
    pii = records(
        query,
        f"SELECT entity, count() AS n FROM {database}.pii_findings WHERE {ts} "
        "GROUP BY entity ORDER BY n DESC",
    )
    dead = records(
        query,
        f"SELECT reason, count() AS n FROM {database}.dead_letters WHERE {ts} "
        "GROUP BY reason ORDER BY n DESC",
    )
    return {
        "date": day.isoformat(),
        "alerts_by_severity": {a["severity"]: int(a["n"]) for a in alerts},
        "low_alerts_handed_back": handed_back,
        "incidents": incidents[0] if incidents else {},
        "slo": slo,
        "pii_findings": {p["entity"]: int(p["n"]) for p in pii},
        "dead_letters": {d["reason"]: int(d["n"]) for d in dead},
    }


def _pct(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * float(value):.{digits}f} %"


def _minutes(seconds: Any) -> str:
    return "" if seconds is None else f"{float(seconds) / 60:.0f} min"


def tenant_markdown(r: dict[str, Any]) -> str:
    a = r["availability"]
    lines = [
        f"# SLA report: {r['tenant_id']}, {r['month']}",
        "",
        f"Calendar month {r['period']['start'][:10]} to {r['period']['end'][:10]} (UTC).",
        "",
        "## Availability",
        "",
        "| objective | requests | 5xx | availability | met | budget spent |",
        "|---|---|---|---|---|---|",
        f"| {_pct(a['objective'], 2)} | {a['requests']:,} | {a['errors']:,} | "
        f"{_pct(a['availability'], 3)} | {'yes' if a['met'] else '**no**'} | "
        f"{_pct(a['budget_spent'], 1)} |",
        "",
        "## Objectives (share of 30-s samples that passed)",
        "",
        "| rule | objective | passed | failed | compliance |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {o['rule']} | {o['sli']} {o['op']} {float(o['threshold']):g} | {o['pass']} | "
        f"{o['fail']} | {_pct(o['compliance'])} |"
        for o in r["objectives"]
    ]
    lines += ["", "## Incidents", ""]
    if not r["incidents"]:
        lines.append("None.")
    else:
        lines += ["| incident | severity | alerts | first breach | resolved | MTTR |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {i['incident_id']} | {i['severity']} | {', '.join(i['alertnames'])} | "
            f"{i['first_breach_at']} | {i['resolved_at'] or 'open'} | "
            f"{_minutes(i['mttr_s'])} |"
            for i in r["incidents"]
        ]
    lines += ["", f"_{r['note']}._", ""]
    return "\n".join(lines)


def daily_markdown(r: dict[str, Any]) -> str:
    inc = r["incidents"]
    lines = [f"# Daily operations summary, {r['date']} (UTC)", "", "## Alerts", ""]
    lines.append(", ".join(f"{s}: {n}" for s, n in r["alerts_by_severity"].items()) or "None.")
    lines += ["", "Low alerts Alertmanager handed back (no page):", ""]
    lines += [f"- {h['alertname']} ({h['tenant_id'] or 'no tenant'}): {h['n']}"
              for h in r["low_alerts_handed_back"]] or ["- none"]  # fmt: skip
    lines += ["", "## Incidents", "",
              f"opened {inc.get('opened', 0)}, resolved {inc.get('resolved', 0)}, "
              f"open now {inc.get('open_now', 0)}", "", "## SLO compliance", "",
              "| rule | passed | failed | compliance |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {s['rule']} | {s['pass']} | {s['fail']} | {_pct(s['compliance'])} |"
              for s in r["slo"]]  # fmt: skip
    lines += ["", "## PII findings (must be 0)", ""]
    lines.append(", ".join(f"{e}: {n}" for e, n in r["pii_findings"].items()) or "0")
    lines += ["", "## Dead letters by reason", ""]
    lines += [f"- {k}: {n}" for k, n in r["dead_letters"].items()] or ["- none"]
    return "\n".join(lines) + "\n"
