"""The demo is realistic and quiet: half an hour of its background traffic (event time, the
default 500 messages/s) raises no security alert, and each scheduled incident raises
exactly its alerts — decoded by the real ingestor, judged by the security detector."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from schemas.normalize import Pseudonymizer
from streams.alerting import AlertPublisher
from streams.demo import DemoTraffic
from streams.detectors.latency.slo import load_rules
from streams.detectors.security.detector import SecurityDetector
from streams.ingest import Ingestor
from streams.metrics import Metrics
from streams.transport import SourceBatch
from tests.unit.test_alerting import Topic

START_MS = 1_780_000_000_000
TICK_S = 0.1


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes


async def replay(
    metrics: Metrics, seconds: int, every_s: float | None, rate: float
) -> Counter[str]:
    """Fire transitions per alert name over ``seconds`` of demo event time."""
    topic = Topic()
    alerts = AlertPublisher(None, topic.send, "vigil.alerts", metrics, 300)
    detector = SecurityDetector(load_rules(None).security, alerts, None, metrics, "vigil")
    ingestor = Ingestor(Pseudonymizer(b"k"), 1 << 20, 10**12)
    traffic = DemoTraffic(seed=11, incident_every_s=every_s)
    offset = 0
    per_tick = rate * TICK_S
    for second in range(seconds):
        first = offset
        records: list[Rec] = []
        for k in range(10):
            elapsed = second + k * TICK_S
            at = START_MS + int(elapsed * 1000)
            for value, _ in traffic.messages(int(per_tick), at, elapsed):
                records.append(Rec("vigil.events", 0, offset, 0, value))
                offset += 1
        result = ingestor.decode_batch(records, START_MS + seconds * 1000 + 60_000)
        await detector.process(result, SourceBatch("vigil.events", 0, first, offset - 1, records))
        if second % 5 == 0:
            await detector.tick()
    return Counter(
        a["data"]["alertname"] for a in topic.alerts() if a["data"]["status"] == "firing"
    )


@pytest.mark.parametrize("rate", [500.0])
async def test_half_an_hour_of_background_traffic_raises_no_security_alert(
    metrics: Metrics, rate: float
) -> None:
    # 30 minutes hold 3 to 30 disjoint windows of every rule (timespans 1-10 minutes);
    # an hour took a minute of the suite's time for little more evidence
    fired = await replay(metrics, 1800, every_s=None, rate=rate)  # no incident
    assert fired == Counter()


async def test_each_incident_cycle_raises_exactly_its_alerts(metrics: Metrics) -> None:
    fired = await replay(metrics, 800, every_s=400, rate=500.0)  # two cycles
    assert fired == Counter(
        {
            "CrossTenantAccess": 2,  # the cross_tenant incident
            "BruteForceAttack": 2,  # the brute_force incident: one IP ...
            "AccountTakeoverSuspected": 2,  # ... that then logs in (account_takeover)
            "FailedLoginSpike": 2,  # ... against globex ...
            "UserEnumeration": 2,  # ... for many users
            "WebhookSignatureFailures": 2,  # the webhook_signature incident (stripe) ...
            "WebhookSignatureMissing": 2,  # ... some of it unsigned
        }
    )
