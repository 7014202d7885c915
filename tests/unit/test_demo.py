from __future__ import annotations

import orjson

from schemas.normalize import Pseudonymizer
from streams.demo import FUNNEL, PII_SAMPLE, DemoTraffic
from streams.ingest import Ingestor

NOW_MS = 1_767_323_045_678


class Rec:
    def __init__(self, value: bytes, offset: int) -> None:
        self.value, self.offset = value, offset
        self.topic, self.partition, self.timestamp = "vigil.events", 0, NOW_MS


def run(seed: int, n: int, elapsed_s: float) -> list[tuple[bytes, bytes | None]]:
    return DemoTraffic(seed=seed, incident_every_s=300).messages(n, NOW_MS, elapsed_s)


def test_seeded_traffic_is_reproducible() -> None:
    assert run(3, 500, 1.0) == run(3, 500, 1.0)
    assert run(3, 500, 1.0) != run(4, 500, 1.0)


def test_background_traffic_is_mostly_valid_multi_tenant_and_keyed() -> None:
    messages = run(7, 4000, 1.0)  # no incident is active at 1 s
    ingestor = Ingestor(Pseudonymizer(b"k"), 1 << 20, 60_000)
    result = ingestor.decode_batch([Rec(v, i) for i, (v, _) in enumerate(messages)], NOW_MS + 1000)
    kinds = {e.kind for e in result.events}
    assert {
        "http.request",
        "analytics",
        "security.webhook_signature",
        "performance.slow_query",
    } <= kinds
    assert len({e.tenant_id for e in result.events}) >= 4
    assert 0.001 < len(result.rejections) / len(messages) < 0.02  # a small malformed share
    funnel = {e.event_name for e in result.events if e.kind == "analytics"}
    assert set(FUNNEL[:3]) <= funnel
    for event, offset in zip(result.events, result.offsets, strict=True):
        key = messages[offset][1]
        # producers key by tenant; webhook calls without a tenant by "webhooks"
        assert key == event.tenant_id.encode() or (
            key == b"webhooks" and event.tenant_id == "_unauthenticated"
        )


def test_incidents_follow_the_schedule() -> None:
    quiet = b"".join(v for v, _ in run(7, 2000, 1.0))
    assert b"tenant_violation" not in quiet and PII_SAMPLE.encode() not in quiet
    traffic = DemoTraffic(seed=7, incident_every_s=300)
    during = [v for t in range(30, 70) for v, _ in traffic.messages(50, NOW_MS, float(t))]
    blob = b"".join(during)
    assert b"tenant_violation" in blob
    assert PII_SAMPLE.encode() in blob
    assert blob.count(b"203.0.113.66") >= 20  # the brute-force burst from one IP
    assert b"webhook_signature" in blob
    assert any(
        orjson.loads(v).get("route") == "/v1/reports" and orjson.loads(v)["duration_ms"] > 1000
        for v in during
        if b'"route":"/v1/reports"' in v
    )
