"""``vigil report`` over a real engine: the calendar month takes exactly its own windows
(a window a minute before midnight on the 30th is November's), availability and budget
are the stored counts', and the daily summary counts what that day holds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from streams import reports

pytestmark = pytest.mark.integration


def query_of(ch: Any) -> reports.Query:
    def query(sql: str) -> tuple[list[str], list[list[Any]]]:
        result = ch.query(sql)
        return list(result.column_names), [list(r) for r in result.result_rows]

    return query


def window(tenant: str, start: datetime, count: int, errors: int) -> list[Any]:
    return [tenant, "*", "*", 60, start, start + timedelta(minutes=1), 0,
            f"{tenant}{start.isoformat()}", 0, count, errors, 1.02, [200], [count]]  # fmt: skip


WINDOW_COLUMNS = ["tenant_id", "service", "route", "resolution_s", "window_start", "window_end",
                  "late", "window_id", "src_partition", "count", "c5xx", "gamma",
                  "bucket_keys", "bucket_counts"]  # fmt: skip
SLO_COLUMNS = ["tenant_id", "service", "route", "window_start", "window_end", "rule", "sli",
               "op", "value", "threshold", "status", "count", "src_partition"]  # fmt: skip


def test_a_month_report_takes_its_calendar_month_exactly(ch_client: Any, database: str) -> None:
    december = datetime(2026, 12, 1, tzinfo=UTC)
    last_of_november = december - timedelta(minutes=1)
    ch_client.insert(
        f"{database}.latency_windows",
        [window("acme", december + timedelta(days=d, minutes=m), 1000, 3)
         for d in (0, 5, 30) for m in range(4)]  # 12 windows: 12,000 requests, 36 5xx
        + [window("acme", last_of_november, 5000, 500), window("globex", december, 99, 99)],
        column_names=WINDOW_COLUMNS,
    )  # fmt: skip
    slo_rows = []
    for i, status in enumerate(["pass", "pass", "pass", "fail"]):
        at = december + timedelta(minutes=i)
        slo_rows.append(["acme", "*", "*", at, at + timedelta(seconds=30), "P95LatencyBreach",
                         "p95_ms", ">", 100.0, 500.0, status, 100, 0])  # fmt: skip
    slo_rows.append(["acme", "*", "*", last_of_november, december, "P95LatencyBreach",
                     "p95_ms", ">", 900.0, 500.0, "fail", 100, 0])  # fmt: skip
    ch_client.insert(f"{database}.slo_samples", slo_rows, column_names=SLO_COLUMNS)
    query = query_of(ch_client)
    report = reports.tenant_month(query, database, "acme", "2026-12", 0.999)
    a = report["availability"]
    assert (a["requests"], a["errors"]) == (12_000, 36)
    assert a["availability"] == pytest.approx(1 - 36 / 12_000) and not a["met"]
    assert a["budget_requests"] == pytest.approx(12.0) and a["budget_spent"] == 3.0
    [p95] = report["objectives"]
    assert (p95["pass"], p95["fail"], p95["compliance"]) == (3, 1, 0.75)
    november = reports.tenant_month(query, database, "acme", "2026-11", 0.999)
    assert (november["availability"]["requests"], november["availability"]["errors"]) == (5000, 500)
    text = reports.tenant_markdown(report)
    assert "| P95LatencyBreach | p95_ms > 500 | 3 | 1 | 75.00 % |" in text
    assert "99.700 %" in text and "**no**" in text
    with pytest.raises(Exception, match="YYYY-MM"):
        reports.tenant_month(query, database, "acme", "December", 0.999)


def test_the_daily_summary_counts_that_day(ch_client: Any, database: str) -> None:
    day = datetime(2026, 12, 6, tzinfo=UTC)
    alert_columns = ["tenant_id", "ts", "alert_id", "fingerprint", "status", "alertname",
                     "severity", "labels", "summary", "description", "runbook_url", "value",
                     "threshold", "starts_at", "ends_at", "evidence"]  # fmt: skip

    def alert(i: int, ts: datetime, severity: str, status: str = "firing") -> list[Any]:
        return ["acme", ts, f"a{i}", f"{i:032x}", status, "X", severity, {}, "", "", "", 1.0,
                1.0, ts, None, "{}"]  # fmt: skip

    ch_client.insert(
        f"{database}.alerts",
        [alert(1, day + timedelta(hours=1), "critical"), alert(2, day + timedelta(hours=2), "low"),
         alert(3, day + timedelta(hours=3), "critical", "resolved"),
         alert(4, day - timedelta(minutes=1), "critical")],
        column_names=alert_columns,
    )  # fmt: skip
    ch_client.insert(
        f"{database}.dead_letters",
        [[day + timedelta(hours=h), reason, "m", 10, "h", "vigil.events", 0, h, 0, day]
         for h, reason in ((1, "invalid_json"), (2, "invalid_json"), (3, "schema"))],
        column_names=["ts", "reason", "message", "size_bytes", "value_hmac", "src_topic",
                      "src_partition", "src_offset", "src_line", "src_timestamp"],
    )  # fmt: skip
    summary = reports.daily(query_of(ch_client), database, date(2026, 12, 6))
    assert summary["alerts_by_severity"] == {"critical": 1, "low": 1}
    assert summary["dead_letters"] == {"invalid_json": 2, "schema": 1}
    assert summary["pii_findings"] == {}
    text = reports.daily_markdown(summary)
    assert "critical: 1, low: 1" in text and "- invalid_json: 2" in text
