"""Funnels through the real broker, worker and chDB: every journey's level equals the
engine's own windowFunnel over the stored events, the cohort rows equal SQL over the
journey rows, a collapse pages and resolves — and a worker killed with -9 in the middle
leaves the same funnel_progress, cohorts and alerts as an uninterrupted run (it rebuilds
its open journeys from ClickHouse)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.broker import EmbeddedBroker
from streams.detectors.latency.slo import load_rules
from streams.worker_proc import WorkerProcess
from tests.integration.kafka_helpers import produce
from tests.integration.test_worker import wait_for

pytestmark = pytest.mark.integration

MIN = 60_000
NOW_MS = int(time.time() * 1000)
# 30 hours ago: the journeys' 24-hour windows can all close before "now" (the worker
# refuses events from the future)
BASE = NOW_MS - NOW_MS % (60 * MIN) - 30 * 60 * MIN
TENANTS = ["t0", "t1", "t2", "t3"]
STEPS = [s.event for s in load_rules(None).funnels.definitions[0].steps]
RATES = [0.9, 0.95, 0.9, 1.0, 0.95, 0.97, 0.8]  # healthy, above every shipped threshold
DELAYS = [2 * MIN, 5 * MIN, 10 * MIN, 10_000, 3 * MIN, 10 * MIN, 60 * MIN]
ENV = {
    "VIGIL_FETCH_MAX_RECORDS": "200",
    "VIGIL_WINDOW_TICK_S": "0.2",
    "VIGIL_COMMIT_INTERVAL_S": "0.5",
    "VIGIL_FUNNEL_CHECKPOINT_INTERVAL_S": "0.3",
}


def rules_file(tmp_path: Path) -> Path:
    """The shipped rules, except that an idle partition's watermark never follows the
    wall clock (the input here is 30 hours old: the clock would make all of it late)."""
    text = (Path(__file__).resolve().parents[2] / "streams" / "rules.default.yaml").read_text()
    marker = "  idle_timeout_seconds: 30   # a partition without input"
    assert marker in text
    path = tmp_path / "rules.yaml"
    path.write_text(text.replace(marker, "  idle_timeout_seconds: 86400 #"))
    return path


def traffic() -> tuple[list[bytes], list[bytes], int]:
    """Two hours of registrations (one every 2 s, four tenants), each walking the
    onboarding funnel at healthy rates; t1's e-mail verification collapses (to 10 %)
    from minute 40 to 80. Arrivals are jittered up to 20 s (inside the 60-s grace) and one
    event in 200 arrives 5 minutes late (flagged, not applied). Then one event per tenant
    27 hours on closes every window. Returns values, keys and the number of journeys."""
    rng = random.Random(11)
    timed: list[tuple[int, str, bytes]] = []
    i = 0
    persons = 0
    for n in range(3600):
        at = BASE + n * 2_000
        tenant = TENANTS[n % 4]
        user = f"{tenant}-u{n}"
        persons += 1
        t = at
        for k, name in enumerate(STEPS):
            if k:
                rate = RATES[k - 1]
                if k == 1 and tenant == "t1" and 40 * MIN <= at - BASE < 80 * MIN:
                    rate = 0.1
                if rng.random() >= rate:
                    break
                t += DELAYS[k - 1]
            delay = 5 * MIN if rng.random() < 0.005 else rng.randrange(0, 20_000)
            value = {"event_id": f"e{i}", "ts": t, "tenant_id": tenant, "kind": "analytics",
                     "service": "web", "event_name": name, "user_id": user,
                     "properties": {"plan": "pro"}}  # fmt: skip
            timed.append((t + delay, tenant, orjson.dumps(value)))
            i += 1
    for tenant in TENANTS:
        value = {"event_id": f"e{i}", "ts": BASE + 27 * 60 * MIN, "tenant_id": tenant,
                 "kind": "analytics", "service": "web", "event_name": "page.viewed",
                 "user_id": "x"}  # fmt: skip
        timed.append((BASE + 27 * 60 * MIN, tenant, orjson.dumps(value)))
        i += 1
    timed.sort(key=lambda x: x[0])
    return [v for _, _, v in timed], [k.encode() for _, k, _ in timed], persons


def progress(worker: WorkerProcess, db: str) -> list[Any]:
    return worker.query(
        "SELECT tenant_id, funnel, user_id_hash, entered_at, level, reached_ms, status, "
        f"closes_at FROM {db}.funnel_progress FINAL ORDER BY ALL"
    )


def cohorts(worker: WorkerProcess, db: str) -> list[Any]:
    return worker.query(
        "SELECT funnel, grain, cohort, tenant_id, sum(entered), sumForEach(reached), "
        f"sumForEach(pending), sumForEach(dropped) FROM {db}.funnel_cohorts FINAL "
        "GROUP BY funnel, grain, cohort, tenant_id ORDER BY ALL"
    )


def funnel_alerts(worker: WorkerProcess, db: str) -> tuple[list[Any], list[Any]]:
    resolved = worker.query(
        f"SELECT DISTINCT alert_id, labels, starts_at, ends_at FROM {db}.alerts "
        "WHERE alertname = 'FunnelStageConversionLow' AND status = 'resolved' ORDER BY ALL"
    )
    firing = worker.query(
        f"SELECT DISTINCT labels, starts_at FROM {db}.alerts "
        "WHERE alertname = 'FunnelStageConversionLow' AND status = 'firing' ORDER BY ALL"
    )
    return resolved, firing


def entered(worker: WorkerProcess, db: str) -> int:
    """Persons whose registration was applied (not flagged late): one journey each."""
    return int(
        worker.query(
            f"SELECT uniqExact(user_id_hash) FROM {db}.events WHERE event_name = "
            f"'auth.user_registered' AND event_id NOT IN (SELECT event_id FROM "
            f"{db}.funnel_late_events)"
        )[0][0]
    )


def done(worker: WorkerProcess, db: str, n: int) -> bool:
    if worker.query(f"SELECT count() FROM {db}.events")[0][0] < n:
        return False
    rows = worker.query(
        f"SELECT count(), countIf(status = 'pending') FROM {db}.funnel_progress FINAL"
    )[0]
    return bool(rows[0] == entered(worker, db) and rows[1] == 0)


def test_funnels_equal_windowfunnel_and_survive_kill_9(
    broker: EmbeddedBroker, prefix: str, worker_for: Any, tmp_path: Path
) -> None:
    values, keys, persons = traffic()
    n = len(values)
    env = {**ENV, "VIGIL_RULES_FILE": str(rules_file(tmp_path))}

    ref_prefix = f"{prefix}r"
    asyncio.run(produce(broker.bootstrap, f"{ref_prefix}.events", values, keys))
    reference = worker_for(broker.bootstrap, ref_prefix, VIGIL_CLICKHOUSE_DATABASE="ref", **env)
    reference.start()
    wait_for(lambda: done(reference, "ref", n), timeout_s=240)
    time.sleep(1.5)
    expected = progress(reference, "ref")
    expected_cohorts = cohorts(reference, "ref")
    expected_alerts = funnel_alerts(reference, "ref")

    # exactness on what is stored: each journey's level = windowFunnel over its span's
    # events (those flagged late left out), the funnel's own SQL
    funnel = load_rules(None).funnels.definitions[0]
    late = reference.query("SELECT count() FROM ref.funnel_late_events")[0][0]
    assert late > 0
    mismatched = reference.query(
        f"SELECT p.user_id_hash, p.level, any(w.level) FROM ref.funnel_progress AS p FINAL "
        f"LEFT JOIN (SELECT e.user_id_hash AS user_id_hash, j.entered_at AS entered_at, "
        f"{funnel.level_sql('e.ts')} AS level FROM ref.events AS e "
        "INNER JOIN (SELECT user_id_hash, entered_at, closes_at FROM ref.funnel_progress "
        "FINAL) AS j ON e.user_id_hash = j.user_id_hash "
        f"WHERE {funnel.filter_sql()} AND e.ts >= j.entered_at AND e.ts <= j.closes_at "
        "AND e.event_id NOT IN (SELECT event_id FROM ref.funnel_late_events) "
        "GROUP BY e.user_id_hash, j.entered_at) AS w "
        "ON p.user_id_hash = w.user_id_hash AND p.entered_at = w.entered_at "
        "GROUP BY p.user_id_hash, p.level HAVING p.level != any(w.level)"
    )
    assert not mismatched, mismatched[:5]
    assert persons - 30 < len(expected) < persons  # a few registrations arrived late
    # the cohort rows are the sums over the journey rows
    from_rows = reference.query(
        "SELECT 'onboarding', 'hour', toDateTime(toStartOfHour(entered_at)) AS h, tenant_id, "
        f"count(), sumForEach(arrayMap(k -> toInt64(level >= k), range(1, {len(STEPS) + 1}))) "
        "FROM ref.funnel_progress FINAL GROUP BY tenant_id, h ORDER BY ALL"
    )
    hours = [r[:6] for r in expected_cohorts if r[1] == "hour" and r[3] != "*"]
    assert hours == from_rows
    assert all(sum(r[6]) == 0 for r in expected_cohorts)  # nothing pending at the end
    # time to convert: the sketches of every partition merged in SQL, within the sketch's
    # 1 % of the exact value (each stage's delay is fixed here)
    medians = ", ".join(
        f"vigilQuantile(0.5, sumMap(ttc_keys[{k}], ttc_counts[{k}]), any(gamma))"
        for k in range(1, len(STEPS))
    )
    merged = reference.query(
        f"SELECT {medians} FROM ref.funnel_cohorts FINAL WHERE grain = 'day' AND tenant_id = '*'"
    )[0]
    for value, delay_ms in zip(merged, DELAYS, strict=True):
        assert abs(value - delay_ms / 1000) <= 0.01 * delay_ms / 1000, (merged, DELAYS)
    # the collapse on t1 paged and resolved; no other tenant or stage did
    resolved, firing = expected_alerts
    identity = ("funnel", "stage", "tenant_id")  # the stored labels add the routing ones
    assert resolved and {tuple((k, r[0][k]) for k in identity) for r in firing} == {
        (("funnel", "onboarding"), ("stage", "auth.email_verified"), ("tenant_id", "t1"))
    }
    assert {(r[0]["category"], r[0]["family"], r[0]["severity"]) for r in firing} == {
        ("business", "funnel", "high")
    }
    reference.stop()

    # the same input; the first worker is killed half-way
    half = n // 2
    asyncio.run(produce(broker.bootstrap, f"{prefix}.events", values[:half], keys[:half]))
    first = worker_for(broker.bootstrap, prefix, VIGIL_CLICKHOUSE_DATABASE="crashed", **env)
    first.start()
    wait_for(lambda: first.query("SELECT count() FROM crashed.events")[0][0] >= half)
    wait_for(lambda: first.query("SELECT count() FROM crashed.funnel_checkpoints")[0][0] > 0)
    first.kill()
    asyncio.run(produce(broker.bootstrap, f"{prefix}.events", values[half:], keys[half:]))
    second = worker_for(broker.bootstrap, prefix, VIGIL_CLICKHOUSE_DATABASE="crashed", **env)
    second.start()
    wait_for(lambda: done(second, "crashed", n), timeout_s=240)
    time.sleep(1.5)
    assert progress(second, "crashed") == expected
    assert cohorts(second, "crashed") == expected_cohorts
    assert funnel_alerts(second, "crashed") == expected_alerts
    assert "rebuilt from ClickHouse" in second.log.read_text(errors="replace")
