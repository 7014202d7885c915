"""The funnel detector on events decoded by the real ingestor, with explicit timestamps:
timely stage alerts (fire within X + minutes of a collapse, resolve on recovery, counts
equal to a brute-force count), pending versus dropped, late events, overrides."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from schemas.normalize import Pseudonymizer
from streams.alerting import AlertPublisher
from streams.detectors.funnel.detector import FunnelDetector
from streams.detectors.funnel.rules import FunnelConfig
from streams.detectors.latency.sketch import gamma_for
from streams.detectors.latency.slo import load_rules
from streams.ingest import Ingestor
from streams.metrics import Metrics
from streams.transport import SourceBatch
from tests.unit.test_alerting import Topic
from tests.unit.test_security import Record

MIN = 60_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % (60 * MIN)
REG, EMAIL, PROFILE = (
    "auth.user_registered",
    "auth.email_verified",
    "registration.profile_completed",
)


class Capturing(FunnelDetector):
    """The detector, keeping the journey and cohort rows it writes (no ClickHouse here)."""

    rows: list[dict[str, Any]]
    cohort_rows: list[dict[str, Any]]

    async def _write(self, part: Any) -> None:
        self.rows.extend(part.engine.rows)
        self.cohort_rows.extend(part.engine.take_cohort_rows(part.engine.watermark))
        await super()._write(part)


class Harness:
    def __init__(self, config: FunnelConfig | None = None) -> None:
        self.topic = Topic()
        metrics = Metrics(CollectorRegistry())
        alerts = AlertPublisher(None, self.topic.send, "vigil.alerts", metrics, 300)
        self.detector = Capturing(
            config or load_rules(None).funnels, gamma_for(0.01), alerts, None, metrics, "vigil"
        )
        self.rows = self.detector.rows = []
        self.cohorts = self.detector.cohort_rows = []
        self.ingestor = Ingestor(Pseudonymizer(b"k"), 1 << 20, 10**12)
        self.offset = 0

    async def feed(self, events: list[dict[str, Any]], tick: bool = True) -> None:
        records = []
        for e in events:
            records.append(Record("vigil.events", 0, self.offset, 0, orjson.dumps(e)))
            self.offset += 1
        result = self.ingestor.decode_batch(records, T0 + 10**10)
        assert not result.rejections, result.rejections[:1]
        span = SourceBatch("vigil.events", 0, records[0].offset, records[-1].offset, records)
        await self.detector.process(result, span)
        if tick:
            await self.tick()

    async def tick(self) -> None:
        await self.detector.tick()

    def alerts(self) -> list[dict[str, Any]]:
        return [a["data"] for a in self.topic.alerts()]


def step(name: str, user: str, at_ms: int, tenant: str = "acme", **props: Any) -> dict[str, Any]:
    return {
        "event_id": f"{name}-{user}-{at_ms}",
        "ts": at_ms,
        "tenant_id": tenant,
        "kind": "analytics",
        "service": "web",
        "event_name": name,
        "user_id": user,
        "properties": props,
    }


#: the rest of the onboarding funnel: (event, probability, delay after the previous step)
REST = (
    (PROFILE, 0.95, 5 * MIN),
    ("documents.upload_requested", 0.9, 10 * MIN),
    ("documents.presigned_url_generated", 1.0, 10_000),
    ("documents.upload_complete", 0.95, 3 * MIN),
    ("documents.status_submitted", 0.97, 10 * MIN),
    ("documents.status_approved", 0.8, 60 * MIN),
)


def traffic(minutes: int, healthy: Any, seed: int = 3) -> tuple[list[dict[str, Any]], list[Any]]:
    """A registration every 10 s; each verifies its e-mail 2 min later with the
    probability ``healthy(minute)``, then walks the rest of the funnel at healthy rates.
    Returns the events in time order and the (registered, verified) times."""
    rng = random.Random(seed)
    events, journeys = [], []
    for i in range(minutes * 6):
        at = T0 + i * 10_000
        user = f"u{i}"
        events.append(step(REG, user, at))
        verified = at + 2 * MIN if rng.random() < healthy((at - T0) // MIN) else None
        journeys.append((at, verified))
        if verified is None:
            continue
        events.append(step(EMAIL, user, verified))
        t = verified
        for name, p, delay in REST:
            if rng.random() >= p:
                break
            t += delay
            events.append(step(name, user, t))
    events.sort(key=lambda e: e["ts"])
    return events, journeys


async def run(h: Harness, events: list[dict[str, Any]], batch: int = 30) -> None:
    for i in range(0, len(events), batch):
        await h.feed(events[i : i + batch])


async def test_a_collapse_fires_within_x_plus_minutes_and_resolves_on_recovery() -> None:
    """E-mail verification collapses for one tenant from minute 40 to 70 (90 % -> 10 %).
    X = 10 min, period 30 min: the alert fires once enough of the judged period is
    collapsed, well before any 24-hour window closes, and resolves after recovery."""
    events, journeys = traffic(130, lambda m: 0.1 if 40 <= m < 70 else 0.9)
    h = Harness()
    await run(h, events)
    alerts = [a for a in h.alerts() if a["alertname"] == "FunnelStageConversionLow"]
    assert alerts, "no alert"
    fired = alerts[0]
    assert fired["status"] == "firing" and fired["severity"] == "high"
    assert fired["labels"] == {
        "tenant_id": "acme",
        "funnel": "onboarding",
        "stage": "auth.email_verified",
    }
    fired_min = (_ms(fired["startsAt"]) - T0) / MIN
    assert 50 < fired_min <= 65, fired_min  # collapse at 40 + X 10 + a few judged minutes
    ev = fired["evidence"]
    assert ev["threshold"] == 0.8 and ev["within_seconds"] == 600
    # the counts are those of a brute-force count over the journeys
    since, until = (_ms(t) for t in ev["period"])
    n = [j for j in journeys if since <= j[0] < until]
    good = [j for j in n if j[1] is not None and j[1] - j[0] <= 10 * MIN]
    assert (ev["reached_previous"], ev["converted_within"]) == (len(n), len(good))
    assert "funnel_progress FINAL" in ev["query"] and "reached_ms[2]" in ev["query"]
    resolved = [a for a in alerts if a["status"] == "resolved"]
    assert resolved, "never resolved after recovery"
    assert (_ms(resolved[0]["endsAt"]) - T0) / MIN > 70 + 10
    # the other stages were never judged (nobody reached them): no other alert
    assert {a["labels"]["stage"] for a in alerts} == {"auth.email_verified"}


async def test_a_healthy_funnel_never_fires() -> None:
    events, _ = traffic(120, lambda m: 0.9, seed=5)
    h = Harness()
    await run(h, events)
    assert not h.alerts()


async def test_a_tenant_override_changes_its_threshold() -> None:
    rules = load_rules(None).funnels
    override = {
        "match": {"tenant": "acme"},
        "funnel": "onboarding",
        "stages": {EMAIL: {"alert_below": 0.05, "severity": "medium"}},
    }
    config = FunnelConfig.model_validate({**rules.model_dump(), "overrides": [override]})
    events, _ = traffic(100, lambda m: 0.1 if 40 <= m < 70 else 0.9)
    h = Harness(config)
    await run(h, events)
    assert not h.alerts()  # 10 % is above acme's own 5 %


async def test_pending_is_never_dropped_and_late_events_are_flagged() -> None:
    h = Harness()
    await h.feed([step(REG, "a", T0), step(REG, "b", T0 + 1000), step(EMAIL, "a", T0 + 5000)])
    await h.feed([step(PROFILE, "zz", T0 + 3 * MIN)])  # moves the watermark past entry
    await h.tick()
    by_user = {r["user_id_hash"]: r for r in h.rows}
    assert len(by_user) == 2
    assert {r["status"] for r in by_user.values()} == {"pending"}
    assert sorted(r["level"] for r in by_user.values()) == [1, 2]
    # a step event older than the watermark (newest - 60 s grace) is late: flagged
    await h.feed([step(EMAIL, "b", T0 + 2000)])
    assert h.detector.late_events == 1
    # 24 h later the windows have closed: dropped (b), still level 2 (a)
    h.rows.clear()
    await h.feed([step(REG, "later", T0 + 25 * 60 * MIN)])
    await h.tick()
    final = {r["user_id_hash"]: r for r in h.rows if r["entered_at"] * 1000 < T0 + MIN}
    assert {r["status"] for r in final.values()} == {"dropped"}
    assert sorted(r["level"] for r in final.values()) == [1, 2]
    # the cohort hour of T0: 2 entered, 1 reached step 2, nothing pending any more
    hour = [r for r in h.cohorts if r["tenant_id"] == "acme" and r["grain"] == "hour"]
    cohort = [r for r in hour if r["cohort"] * 1000 == T0][-1]
    assert cohort["entered"] == 2 and cohort["reached"][:3] == [2, 1, 0]
    assert sum(cohort["pending"]) == 0 and cohort["dropped"][:2] == [1, 1]


def test_the_overall_rule_is_off_by_default_and_the_expected_rates_say_why() -> None:
    funnel = load_rules(None).funnels.definitions[0]
    assert not funnel.overall.enabled
    product = 1.0
    for s in funnel.steps[1:]:
        assert s.expected is not None and s.alert_below is not None
        assert s.expected > s.alert_below  # a healthy stage stays above its threshold
        product *= s.expected
    assert product < funnel.overall.alert_below  # ~38 %: the overall rule would always page


def test_a_bad_funnel_definition_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="longer than the funnel's window"):
        FunnelConfig.model_validate(
            {
                "definitions": [
                    {
                        "name": "f",
                        "window": "1h",
                        "steps": [{"event": "a"}, {"event": "b", "within": "2h"}],
                    }
                ]
            }
        )
    with pytest.raises(ValueError, match="unknown stage"):
        FunnelConfig.model_validate(
            {
                "definitions": [{"name": "f", "steps": [{"event": "a"}, {"event": "b"}]}],
                "overrides": [{"match": {"tenant": "t"}, "funnel": "f", "stages": {"c": {}}}],
            }
        )


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def test_a_stage_without_within_is_judged_within_its_observed_p95() -> None:
    """No `within`: X is the p95 time to convert of the journeys that reached the previous
    step one window earlier (their windows all closed). Conversions take 1-3 minutes, so
    X is ~3 minutes (the sketch bucket's edge above the p95), and a collapse at minute 150
    pages a few minutes later with counts a brute-force count reproduces with that X."""
    config = FunnelConfig.model_validate(
        {
            "period": "30m",
            "definitions": [
                {
                    "name": "quick",
                    "window": "1h",
                    "steps": [{"event": REG}, {"event": EMAIL, "alert_below": 0.8}],
                }
            ],
        }
    )
    rng = random.Random(9)
    events, journeys = [], []
    for i in range(4 * 360):
        at = T0 + i * 10_000
        rate = 0.1 if 150 <= (at - T0) // MIN < 180 else 0.9
        done = at + rng.randint(60_000, 180_000) if rng.random() < rate else None
        events.append(step(REG, f"u{i}", at))
        if done is not None:
            events.append(step(EMAIL, f"u{i}", done))
        journeys.append((at, done))
    events.sort(key=lambda e: e["ts"])
    h = Harness(config)
    await run(h, events)
    fired = [a for a in h.alerts() if a["status"] == "firing"]
    assert fired, "no alert"
    ev = fired[0]["evidence"]
    x_ms = ev["within_seconds"] * 1000
    assert 170_000 < x_ms < 184_000  # the p95 of U(1 min, 3 min) is 174 s, within 2 %
    assert ev["within_observed"]["p95_of_conversions"] >= 20
    assert 150 < (_ms(fired[0]["startsAt"]) - T0) / MIN < 175
    since, until = (_ms(t) for t in ev["period"])
    n = [j for j in journeys if since <= j[0] < until]
    good = [j for j in n if j[1] is not None and j[1] - j[0] <= x_ms]
    assert (ev["reached_previous"], ev["converted_within"]) == (len(n), len(good))
    assert f"<= {int(x_ms)}" in ev["query"]


async def test_the_console_judges_a_stage_as_its_alert_does(ch_client: Any, database: str) -> None:
    """The console's "within X, judged now" and the tenant health's funnel part
    (streams/views.in_time) are the alert's numbers: the journey rows the detector wrote,
    stored in the real engine, give at the alert's mark exactly the counts in its
    evidence, and at every other minute the brute-force count over the journeys."""
    from datetime import UTC, datetime

    from streams.views import in_time, view_config

    events, journeys = traffic(130, lambda m: 0.1 if 40 <= m < 70 else 0.9)
    h = Harness()
    await run(h, events)
    fired = next(a for a in h.alerts() if a["alertname"] == "FunnelStageConversionLow")
    ev = fired["evidence"]
    latest: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in h.rows:
        latest[(r["user_id_hash"], r["entered_at"])] = r
    rows = list(latest.values())
    ch_client.insert(  # times as the writer sends them
        f"{database}.funnel_progress",
        [[datetime.fromtimestamp(v, UTC) if k.endswith("_at") else v for k, v in r.items()]
         for r in rows],
        column_names=list(rows[0]),
    )  # fmt: skip

    async def query(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in ch_client.query(sql, parameters=params).result_rows]

    settings = type("S", (), {"clickhouse_database": database})()
    cfg = view_config(settings, load_rules(None))
    until = _ms(ev["period"][1])
    at = datetime.fromtimestamp((until + 10 * MIN) / 1000, UTC)  # the alert's mark
    stages = (await in_time(query, cfg, at, "acme"))[("acme", "onboarding")]
    assert stages[1] == (ev["reached_previous"], ev["converted_within"])
    for minute in (45, 60, 75, 100):  # and at other marks: the brute-force count
        mark = T0 + minute * MIN
        lo, hi = mark - 10 * MIN - 30 * MIN, mark - 10 * MIN
        n = [j for j in journeys if lo <= j[0] < hi]
        good = [j for j in n if j[1] is not None and j[1] - j[0] <= 10 * MIN]
        at = datetime.fromtimestamp(mark / 1000, UTC)
        counts = (await in_time(query, cfg, at, None))[("acme", "onboarding")]
        assert counts[1] == (len(n), len(good)), minute
