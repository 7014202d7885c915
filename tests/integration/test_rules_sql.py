"""`vigil rules sql` on the real engine: every shipped rule's SQL runs against the events
table, and a correlation's windows count and hold as the detector's do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.detectors.latency.slo import load_rules
from streams.detectors.security.sql import rule_sql

pytestmark = pytest.mark.integration
T0 = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)


def test_every_rule_sql_runs_and_a_burst_straddling_a_minute_holds_on_its_51st_login(
    ch_client: Any, database: str
) -> None:
    config = load_rules(None).security
    names = [r.name for r in config.rules] + [c.name for c in config.correlations]
    for name in [*names, "cross_tenant"]:
        ch_client.query(rule_sql(config, name, database))  # valid SQL on the real engine
    # 51 failed logins from one IP, 1.18 s apart from 12:00:30 (no clock-aligned minute
    # holds more than 30 of them), and one from another IP
    rows = [
        ["acme", T0 + timedelta(milliseconds=i * 1180), f"e{i}", "security.auth_failure", "ip1"]
        for i in range(51)
    ] + [["acme", T0, "other", "security.auth_failure", "ip2"]]
    ch_client.insert(
        f"{database}.events", rows, column_names=["tenant_id", "ts", "event_id", "kind", "ip_hash"]
    )
    result = ch_client.query(
        f"SELECT ip_hash, event_id, in_window FROM ({rule_sql(config, 'brute_force', database)}"
        "\n) WHERE holds"
    ).result_rows
    assert result == [("ip1", "e50", 51)]
    counts = ch_client.query(
        f"SELECT max(in_window) FROM ({rule_sql(config, 'brute_force', database)}\n)"
    ).result_rows
    assert counts == [(51,)]
