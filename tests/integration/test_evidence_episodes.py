"""The incident evidence document over a real engine: an alert that fired in an earlier
incident too (same fingerprint) is reported with this incident's episode only -- its
start, its resolution, its values -- never the earlier one's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams import evidence
from streams.incidents import Incident, incident_columns
from tests.integration.test_reports import query_of

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
FP = "c" * 32


def transition(ts: datetime, status: str, starts: datetime, value: float) -> list[Any]:
    return ["", ts, f"{status}{ts.isoformat()}", FP, status, "CanaryVerdictFail", "critical",
            {"service": "web", "release": "2.8.0"}, "canary fails", "", "", value, 75.0, starts,
            ts if status == "resolved" else None, '{"failing_intervals": 2}']  # fmt: skip


def test_the_document_reports_this_incidents_episode(ch_client: Any, database: str) -> None:
    first, second = T0, T0 + timedelta(minutes=10)
    ch_client.insert(
        f"{database}.alerts",
        [transition(first, "firing", first, 10.0),
         transition(first + timedelta(minutes=3), "resolved", first, 100.0),
         transition(second, "firing", second, 0.0),
         transition(second + timedelta(minutes=4), "resolved", second, 98.0)],
        column_names=["tenant_id", "ts", "alert_id", "fingerprint", "status", "alertname",
                      "severity", "labels", "summary", "description", "runbook_url", "value",
                      "threshold", "starts_at", "ends_at", "evidence"],
    )  # fmt: skip
    incident = Incident("inc-second", "", "availability", first_breach_at=second,
                        detected_at=second + timedelta(seconds=30), last_active=second,
                        severity="critical", alerts={FP: "CanaryVerdictFail"},
                        resolved_at=second + timedelta(minutes=4), version=3)  # fmt: skip
    cols = incident_columns([incident])
    ch_client.insert(f"{database}.incidents", list(zip(*cols.values(), strict=True)),
                     column_names=list(cols))  # fmt: skip
    doc = evidence.incident(query_of(ch_client), database, "inc-second")
    [alert] = doc.alerts
    assert alert.starts_at == second and alert.ends_at == second + timedelta(minutes=4)
    assert (alert.value_at_incident, alert.value_after_recovery) == (0.0, 98.0)
    assert alert.consecutive_breaches == 2
