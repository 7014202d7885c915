"""An acknowledgement sent to a worker that does not track the incident, through the real
engine: stored as a request when the incident is open (refused when it is unknown or
resolved), read back by the owner's poll and applied once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.alerts import Annotations
from sinks.clickhouse import ClickHouseWriter
from streams.alerting import AlertPublisher, AlertSpec
from streams.incidents import (
    IncidentTracker,
    pending_requests,
    request_elsewhere,
    stored_match,
)
from streams.metrics import Metrics
from tests.unit.test_alerting import Topic

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


async def test_the_owner_applies_what_another_worker_received(
    ch_client: Any, database: str, metrics: Metrics
) -> None:
    writer = ClickHouseWriter(ch_client, database, metrics, flush_rows=1)

    async def write(cols: dict[str, list[Any]]) -> None:
        await writer.add({"incidents": cols})
        await writer.flush()

    owner = IncidentTracker(write, metrics, clock=lambda: T0 + timedelta(minutes=1))
    alerts = AlertPublisher(None, Topic().send, "a", metrics, 300, incidents=owner,
                            clock=lambda: T0 + timedelta(minutes=1))  # fmt: skip
    p95 = AlertSpec("P95LatencyBreach", "critical", {"tenant_id": "acme", "service": "api",
                    "route": "/r"}, Annotations(summary="slow"))  # fmt: skip
    await alerts.fire(p95, 900, 500, T0, starts_at=T0)
    (incident_id,) = owner.open
    # the other worker: it does not track the incident, but finds it stored and open
    assert await stored_match(writer, database, "P95LatencyBreach", "acme") == incident_id
    assert await stored_match(writer, database, "P95LatencyBreach", "globex") is None
    assert not await request_elsewhere(writer, database, "inc-nope", "ack", "bob", T0)
    acked_at = T0 + timedelta(minutes=4)
    assert await request_elsewhere(writer, database, incident_id, "ack", "bob", acked_at)
    # the owner's poll
    requests = await pending_requests(writer, database, sorted(owner.open))
    assert [(r[0], r[1], r[2]) for r in requests] == [(incident_id, "ack", "bob")]
    await owner.apply_requests(requests)
    stored = ch_client.query(
        f"SELECT status, acknowledged_by, mtta_s FROM {database}.incidents FINAL"
    ).result_rows
    assert stored == [("acknowledged", "bob", 180.0)]
    await owner.apply_requests(await pending_requests(writer, database, sorted(owner.open)))
    assert owner.open[incident_id].version == 2  # applied once
    await request_elsewhere(writer, database, incident_id, "resolve", "bob", acked_at)
    await owner.apply_requests(await pending_requests(writer, database, sorted(owner.open)))
    assert not owner.open
    # a resolved incident takes no more requests
    assert not await request_elsewhere(writer, database, incident_id, "ack", "eve", acked_at)
    await writer.stop()
