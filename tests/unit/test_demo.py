from __future__ import annotations

from typing import Any

import orjson

from schemas.normalize import Pseudonymizer
from streams.demo import FUNNEL, ONBOARDING, PII_SAMPLE, DemoTraffic
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
    assert FUNNEL[0] in {e.event_name for e in result.events if e.kind == "analytics"}
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
    during = [v for t in range(300, 700) for v, _ in traffic.messages(10, NOW_MS, t / 10)]
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


FUNNEL_NAMES = (b'"event_name":"auth.', b'"event_name":"registration.', b'"event_name":"documents.')


def walk(traffic: DemoTraffic, ticks: range, n: int) -> list[dict[str, Any]]:
    """The funnel events of ``ticks`` (0.1 s each, ``n`` background messages each)."""
    out = []
    for tick in ticks:
        at = NOW_MS + tick * 100
        for value, _ in traffic.messages(n, at, tick / 10):
            if any(name in value for name in FUNNEL_NAMES):
                ev = orjson.loads(value)
                assert ev["ts"] <= at  # sent when due, never ahead of time
                out.append(ev)
    return out


def test_journeys_walk_every_step_at_the_expected_rates_inside_their_expected_times() -> None:
    """Three simulated hours: every step of the onboarding funnel is reached, each stage
    converts at its expected rate (so the demo stays healthy against every shipped
    threshold), and within the stage's expected time."""
    reached: dict[str, dict[str, int]] = {name: {} for name in FUNNEL}
    for ev in walk(DemoTraffic(seed=3, incident_every_s=None), range(3 * 36_000), 5):
        reached[ev["event_name"]][ev["user_id"]] = ev["ts"]
    first_hour = {u for u, t in reached[FUNNEL[0]].items() if t < NOW_MS + 3_600_000}
    assert len(first_hour) > 500
    for k in range(1, 7):  # approval (expected within 24 h) does not finish in three hours
        name, expected, within_s = ONBOARDING[k]
        before = [u for u in first_hour if u in reached[FUNNEL[k - 1]]]
        after = [u for u in before if u in reached[name]]
        assert abs(len(after) / len(before) - expected) < 0.05, name
        slow = [u for u in after if reached[name][u] - reached[FUNNEL[k - 1]][u] > within_s * 1000]
        assert not slow, name


def test_the_funnel_incident_collapses_one_tenants_email_verification() -> None:
    """From 30 s to 330 s of each round, acme's new users rarely verify their e-mail;
    the other tenants' do as usual."""
    events = walk(DemoTraffic(seed=3, incident_every_s=600), range(300, 3300 + 6000), 20)
    registered: dict[str, set[str]] = {}
    verified = {e["user_id"] for e in events if e["event_name"] == FUNNEL[1]}
    for e in events:
        if e["event_name"] == FUNNEL[0] and e["ts"] < NOW_MS + 330_000:
            registered.setdefault(e["tenant_id"], set()).add(e["user_id"])
    share = {t: len(users & verified) / len(users) for t, users in registered.items()}
    assert len(registered["acme"]) > 30
    assert share["acme"] < 0.25
    assert all(s > 0.75 for t, s in share.items() if t != "acme" and len(registered[t]) > 30)
