"""Analytics health rules on batches decoded by the real ingestor, on an explicit clock."""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from schemas.normalize import Pseudonymizer
from streams.alerting import AlertPublisher
from streams.detectors.analytics.health import AnalyticsConfig, AnalyticsHealth
from streams.ingest import Ingestor
from streams.metrics import Metrics
from tests.unit.test_alerting import Topic
from tests.unit.test_security import Record

T0 = 1_780_000_000_000
MIN = 60_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def good(tenant: str = "acme", name: str = "page.viewed") -> bytes:
    return orjson.dumps(
        {
            "event_id": "e",
            "ts": T0,
            "tenant_id": tenant,
            "kind": "analytics",
            "service": "web",
            "event_name": name,
            "user_id": "u",
        }
    )


SCHEMA_BAD = orjson.dumps({"event_id": "e", "ts": T0, "tenant_id": "acme", "kind": "nope"})
NOT_JSON = b"{not json"


class Harness:
    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.topic = Topic()
        self.clock = Clock()
        self.metrics = Metrics(CollectorRegistry())
        alerts = AlertPublisher(None, self.topic.send, "vigil.alerts", self.metrics, 60)
        cfg = AnalyticsConfig.model_validate(config or {})
        self.health = AnalyticsHealth(cfg, alerts, self.metrics, clock_ms=self.clock)
        self.ingestor = Ingestor(Pseudonymizer(b"k"), 1 << 20, 10**12)

    async def minute(self, values: list[bytes]) -> None:
        """One minute: the batch arrives, then the rules are judged every 10 s."""
        records = [Record("vigil.events", 0, i, 0, v) for i, v in enumerate(values)]
        self.health.observe(self.ingestor.decode_batch(records, T0 + 10**9))
        for _ in range(6):
            self.clock.now += 10_000
            await self.health.tick()

    def alerts(self) -> list[tuple[str, str, float]]:
        return [
            (a["data"]["alertname"], a["data"]["status"], (_ms(a["time"]) - T0) / MIN)
            for a in self.topic.alerts()
        ]


async def test_ingestion_failure_fires_after_holding_5_minutes_and_resolves() -> None:
    h = Harness()
    for _ in range(6):
        await h.minute([good()] * 100)
    assert not h.alerts()
    for _ in range(12):  # 10 % of the records invalid (JSON that is not an event)
        await h.minute([good()] * 90 + [NOT_JSON] * 10)
    fired = [a for a in h.alerts() if a[0] == "AnalyticsIngestionFailure"]
    assert fired and fired[0][1] == "firing"
    # held for 5 minutes after the trailing 5-minute share first fell below 95 %
    assert 6 + 5 < fired[0][2] <= 6 + 5 + 5
    assert not [a for a in h.alerts() if a[0] == "SchemaValidationFailures"]  # not schema
    for _ in range(8):
        await h.minute([good()] * 100)
    assert h.alerts()[-1][:2] == ("AnalyticsIngestionFailure", "resolved")


async def test_a_small_sample_never_fires() -> None:
    """4 records a minute, one invalid every other minute: 10-15 % of a 5-minute window
    is invalid, but 2-3 of 20 records is no evidence of a rate above 5 %."""
    h = Harness()
    for m in range(20):
        await h.minute([good()] * 4 if m % 2 else [good()] * 3 + [NOT_JSON])
    assert not [a for a in h.alerts() if a[0] == "AnalyticsIngestionFailure"]


async def test_schema_validation_failures_above_2_percent_over_an_hour() -> None:
    h = Harness()
    for _ in range(30):  # 3 % of records fail schema validation
        await h.minute([good()] * 97 + [SCHEMA_BAD] * 3)
    names = {a[0] for a in h.alerts()}
    assert "SchemaValidationFailures" in names
    assert "AnalyticsIngestionFailure" not in names  # 97 % valid is above 95 %
    h2 = Harness()
    for _ in range(30):  # 1 %: within the limit
        await h2.minute([good()] * 99 + [SCHEMA_BAD])
    assert not h2.alerts()


async def test_declared_rate_bounds_judged_only_while_the_tenant_has_traffic() -> None:
    config = {
        "overrides": [
            {"match": {"tenant": "acme"},
             "rates": {"auth.user_registered": {"per": "5m", "min": 20, "max": 500}}}
        ]
    }  # fmt: skip
    h = Harness(config)
    for _ in range(6):  # 10 registrations a minute: 50 in 5 minutes, within bounds
        await h.minute([good(name="auth.user_registered")] * 10 + [good()] * 50)
    assert not h.alerts()
    for _ in range(6):  # registrations stop, the tenant's other traffic goes on
        await h.minute([good()] * 50)
    low = [a for a in h.alerts() if a[0] == "AnalyticsEventRateAbnormal"]
    assert low and low[0][1] == "firing"
    data = h.topic.alerts()[0]["data"]
    assert data["labels"] == {"tenant_id": "acme", "event_name": "auth.user_registered"}
    assert data["evidence"]["min"] == 20 and data["evidence"]["count"] < 20
    for _ in range(6):
        await h.minute([good(name="auth.user_registered")] * 10 + [good()] * 50)
    assert h.alerts()[-1][:2] == ("AnalyticsEventRateAbnormal", "resolved")
    # a tenant with no traffic at all is not an abnormal rate
    quiet = Harness(config)
    for _ in range(12):
        await quiet.minute([good(tenant="globex")] * 50)
    assert not quiet.alerts()
    text = h.metrics.registry.get_sample_value(
        "vigil_analytics_rate_bound_per_second",
        {"tenant_id": "acme", "event_name": "auth.user_registered", "bound": "min"},
    )
    assert text is not None and abs(text - 20 / 300) < 1e-9


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
