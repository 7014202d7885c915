"""The canary stages together, in process: partials from several events partitions,
merged per service by the judge, give exactly the verdict of one comparison over all
the interval's events (brute force); nothing is judged before every partition has
passed the interval; a bad canary fails and pages with auto_rollback, a good one passes."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from schemas.normalize import Pseudonymizer
from streams.alerting import AlertPublisher
from streams.detectors.canary.detector import CanaryConfig, CanaryJudge, CanarySource
from streams.detectors.canary.judge import Cohort, Stage, compare
from streams.detectors.latency.sketch import bucket_indices, gamma_for
from streams.ingest import Ingestor
from streams.metrics import Metrics
from streams.transport import SourceBatch
from tests.unit.test_alerting import Topic
from tests.unit.test_security import Record

GAMMA = gamma_for(0.01)
MIN = 60_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % MIN
PARTS = 3
DEMO_RULES = Path(__file__).resolve().parents[2] / "streams" / "rules.demo.yaml"


def request(
    rng: random.Random, ts: int, cohort: str, slower: float, errors: float
) -> dict[str, Any]:
    return {
        "kind": "http.request", "event_id": f"e{rng.getrandbits(64):016x}", "ts": ts,
        "tenant_id": f"t{rng.randrange(5)}", "service": "checkout", "method": "GET",
        "route": "/pay", "status": 503 if rng.random() < errors else 200,
        "duration_ms": round(rng.lognormvariate(4.8, 0.5) * slower, 3),
        "release": "4.13.0" if cohort == "canary" else "4.12.0", "cohort": cohort,
    }  # fmt: skip


class Harness:
    def __init__(self, config: CanaryConfig) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.topic = Topic()
        alerts = AlertPublisher(None, self.topic.send, "vigil.alerts", self.metrics, 300)
        self.sent: dict[int, list[bytes]] = defaultdict(list)

        async def forward(records: list[tuple[int, bytes]]) -> None:
            for partition, value in records:
                self.sent[partition].append(value)

        self.source = CanarySource(config, GAMMA, forward, 2, self.metrics, clock_ms=lambda: 0)
        self.source.assigned(list(range(PARTS)), PARTS)
        self.judge = CanaryJudge(config, GAMMA, alerts, None, self.metrics, "vigil")
        self.ingestor = Ingestor(Pseudonymizer(b"k"), 1 << 20, 10**13)
        self.offsets = [0] * PARTS
        self.judged = [0, 0]

    async def feed(self, partition: int, events: list[dict[str, Any]]) -> None:
        records = []
        for e in events:
            records.append(Record("vigil.events", partition, self.offsets[partition], 0,
                                  orjson.dumps(e)))  # fmt: skip
            self.offsets[partition] += 1
        result = self.ingestor.decode_batch(records, T0 + 10**9)
        assert not result.rejections
        batch = SourceBatch("vigil.events", partition, records[0].offset, records[-1].offset,
                            records)  # fmt: skip
        await self.source.process(result, batch)

    async def judge_all(self) -> None:
        for p, values in self.sent.items():
            new = values[self.judged[p] :]
            records = [(self.judged[p] + i, v) for i, v in enumerate(new)]
            self.judged[p] = len(values)
            await self.judge.process_records(p, records)

    def alerts(self) -> list[dict[str, Any]]:
        return [a["data"] for a in self.topic.alerts()]


async def test_partials_merged_across_partitions_equal_one_comparison_over_all_events() -> None:
    config = CanaryConfig(lateness_ms=5_000)
    h = Harness(config)
    rng = random.Random(5)
    by_interval: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for minute in range(6):
        slower = 1.4 if minute >= 2 else 1.0
        for p in range(PARTS):
            batch = []
            for k in range(400):
                ts = T0 + minute * MIN + rng.randrange(MIN)
                cohort = "canary" if k % 8 == 0 else "baseline"
                e = request(rng, ts, cohort, slower if cohort == "canary" else 1.0, 0.005)
                batch.append(e)
                by_interval[T0 + minute * MIN][cohort].append(e)
            batch.sort(key=lambda e: e["ts"])
            await h.feed(p, batch)
        if minute == 1:
            # partition 2 has not passed minute 0 yet? It has: every partition moved on
            await h.judge_all()
            assert set(h.judge.judged) == {"checkout"}
    await h.judge_all()
    # the judge saw minutes 0..4 (minute 5 is still open: the watermark is behind it)
    state = h.judge.releases[("checkout", "4.13.0", "")]
    assert state.last_interval == T0 + 4 * MIN
    # brute force: one comparison per interval over every event of every partition
    stage = Stage(config.judge.consecutive)
    total_c, total_b = Cohort(), Cohort()
    verdicts = []
    for minute in range(5):
        groups = by_interval[T0 + minute * MIN]
        cohorts = {}
        for name in ("canary", "baseline"):
            c = Cohort()
            events = groups[name]
            for key in bucket_indices([e["duration_ms"] for e in events], GAMMA):
                c.sketch.add_key(int(key))
            c.requests = len(events)
            c.errors = sum(e["status"] >= 500 for e in events)
            cohorts[name] = c
        total_c.merge(cohorts["canary"])
        total_b.merge(cohorts["baseline"])
        interval = compare(cohorts["canary"], cohorts["baseline"], config.judge)
        cumulative = compare(total_c, total_b, config.judge)
        verdicts.append(stage.observe(interval, cumulative))
        if minute == 4:
            assert state.comparison == interval.as_dict()
    assert state.canary.requests == total_c.requests
    assert state.canary.sketch == total_c.sketch and state.baseline.sketch == total_b.sketch
    assert verdicts[:2] == ["Pass", "Pass"] and verdicts[-1] == "Fail"
    assert state.verdict == verdicts[-1]
    fails = [a for a in h.alerts() if a["alertname"] == "CanaryVerdictFail"]
    assert fails and fails[0]["status"] == "firing" and fails[0]["auto_rollback"]
    assert fails[0]["labels"] == {"service": "checkout", "release": "4.13.0"}
    assert (
        h.metrics.registry.get_sample_value(
            "vigil_canary_score", {"service": "checkout", "release": "4.13.0"}
        )
        == state.score
    )
    current = h.judge.current("checkout", "4.13.0")
    assert current is not None and current["verdict"] == "Fail"


async def test_nothing_is_judged_before_every_partition_passed_the_interval() -> None:
    h = Harness(CanaryConfig(lateness_ms=5_000))
    rng = random.Random(1)
    for p in (0, 1):  # partition 2 is silent (and not idle yet by the wall clock)
        events = [request(rng, T0 + m * MIN + s * 100, "canary" if s % 5 else "baseline",
                          1.0, 0.0) for m in range(3) for s in range(300)]  # fmt: skip
        await h.feed(p, events)
    await h.judge_all()
    assert not h.judge.releases
    # partition 2 idle for the timeout: its progress follows the wall clock
    h.source._clock_ms = lambda: T0 + 10 * MIN
    await h.source.tick()
    await h.judge_all()
    assert h.judge.releases[("checkout", "4.13.0", "")].verdict in ("Pass", "Marginal")
    assert not [a for a in h.alerts() if a["alertname"] == "CanaryVerdictFail"]


async def test_re_sent_partials_replace_and_judged_intervals_are_ignored() -> None:
    config = CanaryConfig(lateness_ms=5_000)
    h = Harness(config)
    rng = random.Random(2)
    events = [request(rng, T0 + m * MIN + s * 150, "canary" if s % 4 == 0 else "baseline",
                      1.0, 0.0) for m in range(3) for s in range(400)]  # fmt: skip
    for p in range(PARTS):
        await h.feed(p, events)
    await h.judge_all()
    before = h.judge.releases[("checkout", "4.13.0", "")]
    requests = before.canary.requests
    # every partial sent again (a source restarted): nothing counts twice
    for p, values in h.sent.items():
        await h.judge.process_records(p, [(10_000 + i, v) for i, v in enumerate(values)])
    assert h.judge.releases[("checkout", "4.13.0", "")].canary.requests == requests


async def test_declared_weight_and_slo_thresholds_are_judged_too() -> None:
    """From the rules file's canary section: a canary receiving 12.5 % of requests where
    40 % was declared fails throughput_share (Marginal: one non-critical metric); an
    absolute p95 threshold below the canary's p95 is a critical failure (Fail)."""
    from streams.detectors.canary.rules import CanaryService
    from streams.detectors.latency.slo import load_rules

    async def verdict(declared: CanaryService) -> tuple[str, dict[str, str]]:
        h = Harness(CanaryConfig(lateness_ms=5_000, services={"checkout": declared}))
        rng = random.Random(8)
        for minute in range(4):
            for p in range(PARTS):
                batch = sorted(
                    (request(rng, T0 + minute * MIN + rng.randrange(MIN),
                             "canary" if k % 8 == 0 else "baseline", 1.0, 0.0)
                     for k in range(400)),
                    key=lambda e: e["ts"],
                )  # fmt: skip
                await h.feed(p, batch)
        await h.judge_all()
        state = h.judge.releases[("checkout", "4.13.0", "")]
        outcomes = {m["metric"]: m["outcome"] for m in state.comparison["metrics"]}
        return state.verdict, outcomes

    fair, outcomes = await verdict(CanaryService(weight=0.125, slo_ms={"p95": 5000}))
    assert fair == "Pass" and outcomes["throughput_share"] == "Pass"
    assert outcomes["slo_p95"] == "Pass"
    starved, outcomes = await verdict(CanaryService(weight=0.4))
    assert outcomes["throughput_share"] == "High" and starved == "Marginal"
    slow, outcomes = await verdict(CanaryService(slo_ms={"p95": 100}))
    assert outcomes["slo_p95"] == "High" and slow == "Fail"
    assert load_rules(DEMO_RULES).canary.services["web"].weight == 0.1  # the demo's
    assert load_rules(None).canary.services == {}


async def test_per_tenant_verdicts_judge_each_tenant_and_leave_the_service_verdict_alone() -> None:
    """Tenant t0's canary is 60 % slower, the others' are healthy. Per tenant: t0 fails
    (its alert carries tenant_id), no other tenant does; the service-wide verdict, counts
    and sketches are exactly those of a run without per-tenant verdicts."""

    async def run(per_tenant: bool) -> Harness:
        h = Harness(CanaryConfig(lateness_ms=5_000, per_tenant=per_tenant))
        rng = random.Random(13)
        for minute in range(6):
            for p in range(PARTS):
                batch = []
                for k in range(1200):
                    cohort = "canary" if k % 4 == 0 else "baseline"
                    e = request(rng, T0 + minute * MIN + rng.randrange(MIN), cohort, 1.0, 0.002)
                    if cohort == "canary" and e["tenant_id"] == "t0":
                        e["duration_ms"] = round(e["duration_ms"] * 1.6, 3)
                    batch.append(e)
                await h.feed(p, sorted(batch, key=lambda e: e["ts"]))
        await h.judge_all()
        return h

    plain, tenants = await run(False), await run(True)
    whole, same = (
        plain.judge.releases[("checkout", "4.13.0", "")],
        tenants.judge.releases[("checkout", "4.13.0", "")],
    )
    assert (whole.verdict, whole.score, whole.canary.requests) == (
        same.verdict, same.score, same.canary.requests,
    )  # fmt: skip
    assert whole.canary.sketch == same.canary.sketch
    assert whole.baseline.sketch == same.baseline.sketch
    assert set(plain.judge.releases) == {("checkout", "4.13.0", "")}
    verdicts = {k[2]: s.verdict for k, s in tenants.judge.releases.items() if k[2]}
    assert verdicts["t0"] == "Fail" and set(verdicts) == {f"t{i}" for i in range(5)}
    assert all(v != "Fail" for t, v in verdicts.items() if t != "t0"), verdicts
    fails = [a for a in tenants.alerts() if a["alertname"] == "CanaryVerdictFail"]
    tenant_fails = [a["labels"] for a in fails if "tenant_id" in a["labels"]]
    assert tenant_fails and all(labels["tenant_id"] == "t0" for labels in tenant_fails)
    doc = tenants.judge.current("checkout", "4.13.0", "t0")
    assert doc is not None and doc["tenant_id"] == "t0" and doc["verdict"] == "Fail"
    assert tenants.judge.current("checkout", "4.13.0", "t9") is None
    # the score gauge stays per service: no tenant series
    samples = [
        s for m in tenants.metrics.registry.collect() if m.name == "vigil_canary_score"
        for s in m.samples
    ]  # fmt: skip
    assert [s.labels for s in samples] == [{"service": "checkout", "release": "4.13.0"}]
