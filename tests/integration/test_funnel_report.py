"""`vigil funnel`'s stage table, over journey rows and alerts in a real chDB engine."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.detectors.funnel.report import render_table, stage_table
from streams.detectors.funnel.rules import FunnelConfig

pytestmark = pytest.mark.integration

CONFIG = FunnelConfig.model_validate(
    {
        "definitions": [
            {
                "name": "signup",
                "steps": [
                    {"event": "a"},
                    {"event": "b", "expected": 0.9, "alert_below": 0.8, "within": "10m"},
                    {"event": "c", "expected": 0.5, "alert_below": 0.3},
                ],
            }
        ],
        "overrides": [
            {"match": {"tenant": "acme"}, "funnel": "signup", "stages": {"b": {"alert_below": 0.6}}}
        ],
    }
)


def test_the_stage_table_counts_journeys_and_shows_firing_stages(
    ch_client: Any, database: str
) -> None:
    now = int(time.time() * 1000) - 3_600_000
    # (tenant, level, status, seconds from a to b, from b to c)
    journeys = [
        ("acme", 3, "converted", 60, 120),
        ("acme", 2, "pending", 30, None),
        ("acme", 2, "dropped", 90, None),
        ("acme", 1, "pending", None, None),
        ("globex", 3, "converted", 10, 20),
        ("globex", 1, "dropped", None, None),
    ]
    rows = []
    for i, (tenant, level, status, ab, bc) in enumerate(journeys):
        reached = [now, -1, -1]
        if ab is not None:
            reached[1] = now + ab * 1000
        if bc is not None:
            reached[2] = reached[1] + bc * 1000
        entered = datetime.fromtimestamp(now / 1000, UTC)
        rows.append([tenant, "signup", f"p{i}", entered, level, reached, status,
                     entered + timedelta(days=1), 0, 1])  # fmt: skip
    ch_client.insert(
        f"{database}.funnel_progress",
        rows,
        column_names=["tenant_id", "funnel", "user_id_hash", "entered_at", "level",
                      "reached_ms", "status", "closes_at", "src_partition", "version"],
    )  # fmt: skip
    ch_client.command(
        f"INSERT INTO {database}.alerts (tenant_id, ts, alert_id, fingerprint, status, "
        "alertname, labels) VALUES ('acme', now64(), 'x1', 'f1', 'firing', "
        "'FunnelStageConversionLow', {'funnel': 'signup', 'stage': 'c', 'tenant_id': 'acme'})"
    )

    def query(sql: str) -> tuple[list[str], list[list[Any]]]:
        result = ch_client.query(sql)
        return list(result.column_names), [list(r) for r in result.result_rows]

    everyone = stage_table(CONFIG, query, database)
    assert [r["reached"] for r in everyone] == [6, 4, 2]
    b, c = everyone[1], everyone[2]
    assert b["conversion"] == round(4 / 6, 4) and b["threshold"] == 0.8
    assert b["pending"] == 1 and b["dropped"] == 1  # at level 2: one open, one closed
    # quantileExact: of an even count, the upper middle value (10 30 [60] 90)
    assert b["p50_time_to_convert_s"] == 60.0
    assert c["p50_time_to_convert_s"] == 120.0 and c["status"] == "firing"
    assert everyone[0]["pending"] == 1 and everyone[0]["dropped"] == 1

    acme = stage_table(CONFIG, query, database, tenant="acme")
    assert [r["reached"] for r in acme] == [4, 3, 1]
    assert acme[1]["threshold"] == 0.6  # acme's own
    assert acme[1]["status"] == "ok" and acme[2]["status"] == "firing"
    assert stage_table(CONFIG, query, database, tenant="globex")[2]["status"] == "ok"
    text = render_table(everyone)
    assert "66.7%" in text and "firing" in text and "b" in text.splitlines()[3]
