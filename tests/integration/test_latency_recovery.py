"""kill -9 of a worker mid-stream: the restarted worker rebuilds its open windows by
re-reading, and ClickHouse and the alerts topic end up exactly as after an
uninterrupted run of the same input (real broker, real chDB, workers in subprocesses)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import orjson
import pytest

from streams.broker import EmbeddedBroker
from streams.worker_proc import WorkerProcess
from tests.integration.kafka_helpers import consume_all, produce
from tests.integration.test_worker import metric, wait_for

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)
BASE = NOW_MS - NOW_MS % 300_000 - 3_600_000
TENANTS = ["t0", "t1", "t2", "t3"]
ENV = {
    "VIGIL_FETCH_MAX_RECORDS": "100",
    "VIGIL_WINDOW_TICK_S": "0.2",
    "VIGIL_COMMIT_INTERVAL_S": "0.5",
}


def traffic() -> tuple[list[bytes], list[bytes]]:
    """Ten minutes of requests from four tenants, a little out of order; tenant t1's
    /slow route is slow from minute 3 to 7. Then one event per tenant far ahead, which
    moves every partition's watermark past all of it."""
    rng = random.Random(11)
    values, keys = [], []
    for i in range(6000):
        tenant = TENANTS[i % 4]
        ts = BASE + i * 100 - rng.choice([0, 0, 0, 4_000])
        route = "/slow" if tenant == "t1" and i % 8 == 1 else "/r"
        slow = route == "/slow" and BASE + 180_000 <= ts < BASE + 420_000
        event = {
            "event_id": f"e{i}",
            "ts": ts,
            "tenant_id": tenant,
            "kind": "http.request",
            "service": "api",
            "method": "GET",
            "route": route,
            "status": 503 if rng.random() < 0.002 else 200,
            "duration_ms": round(
                rng.uniform(700, 900) if slow else rng.lognormvariate(3.5, 0.4), 3
            ),
        }
        values.append(orjson.dumps(event))
        keys.append(tenant.encode())
    for j, tenant in enumerate(TENANTS):
        values.append(
            orjson.dumps(
                {
                    "event_id": f"end-{tenant}",
                    "ts": BASE + 1_800_000 + j,
                    "tenant_id": tenant,
                    "kind": "http.request",
                    "service": "api",
                    "method": "GET",
                    "route": "/r",
                    "status": 200,
                    "duration_ms": 1.0,
                }
            )
        )
        keys.append(tenant.encode())
    return values, keys


def done(worker: WorkerProcess, db: str, n: int) -> bool:
    """Every event stored and every partition checkpointed through its last offset."""
    if worker.query(f"SELECT count() FROM {db}.events")[0][0] < n:
        return False
    behind = worker.query(
        f"SELECT count() FROM (SELECT src_partition AS p, max(src_offset) AS last FROM {db}.events "
        "GROUP BY p) AS e LEFT JOIN (SELECT partition AS p, max(processed_offset) AS done "
        f"FROM {db}.window_checkpoints GROUP BY p) AS c ON e.p = c.p WHERE c.done < e.last"
    )[0][0]
    return behind == 0


def snapshot(worker: WorkerProcess, db: str) -> dict[str, list[Any]]:
    windows = worker.query(
        "SELECT resolution_s, toUnixTimestamp64Milli(window_start), tenant_id, service, "
        "route, late, count, c2xx, c5xx, p50_ms, p95_ms, p99_ms, max_ms, bucket_keys, "
        f"bucket_counts, window_id FROM {db}.latency_windows FINAL ORDER BY ALL"
    )
    verdicts = worker.query(
        "SELECT tenant_id, service, route, toUnixTimestamp64Milli(window_start), rule, status, "
        f"value FROM {db}.slo_samples FINAL ORDER BY ALL"
    )
    alerts = worker.query(
        f"SELECT DISTINCT alert_id, status, alertname, labels FROM {db}.alerts ORDER BY ALL"
    )
    return {"windows": windows, "verdicts": verdicts, "alerts": alerts}


def topic_alerts(bootstrap: str, topic: str, expected: int) -> set[tuple[str, str]]:
    records = asyncio.run(consume_all(bootstrap, topic, expected, timeout_s=20))
    return {(orjson.loads(r.value)["id"], orjson.loads(r.value)["type"]) for r in records}


def test_kill_9_then_restart_gives_the_rows_and_alerts_of_an_uninterrupted_run(
    broker: EmbeddedBroker, prefix: str, worker_for: Any
) -> None:
    values, keys = traffic()
    n = len(values)
    half = 3000

    # The reference: one worker, never interrupted.
    ref_prefix = f"{prefix}r"
    asyncio.run(produce(broker.bootstrap, f"{ref_prefix}.events", values, keys))
    reference = worker_for(
        broker.bootstrap, ref_prefix, VIGIL_CLICKHOUSE_DATABASE="reference", **ENV
    )
    reference.start()
    wait_for(lambda: done(reference, "reference", n), timeout_s=180)
    expected = snapshot(reference, "reference")
    reference.stop()
    assert len(expected["windows"]) > 100
    assert {a[2] for a in expected["alerts"]} >= {"P95LatencyBreach"}

    # The same input; the first worker is killed while windows are open.
    asyncio.run(produce(broker.bootstrap, f"{prefix}.events", values[:half], keys[:half]))
    first = worker_for(broker.bootstrap, prefix, VIGIL_CLICKHOUSE_DATABASE="crashed", **ENV)
    first.start()
    wait_for(lambda: first.query("SELECT count() FROM crashed.latency_windows")[0][0] > 0)
    # a checkpoint is its own INSERT, after the windows': wait for one, or a kill between
    # the two leaves nothing to rebuild from (a fresh start, not the case under test)
    wait_for(lambda: first.query("SELECT count() FROM crashed.window_checkpoints")[0][0] > 0)
    wait_for(lambda: first.query("SELECT count() FROM crashed.events")[0][0] >= half)
    first.kill()
    asyncio.run(produce(broker.bootstrap, f"{prefix}.events", values[half:], keys[half:]))
    second = worker_for(broker.bootstrap, prefix, VIGIL_CLICKHOUSE_DATABASE="crashed", **ENV)
    second.start()
    wait_for(lambda: done(second, "crashed", n), timeout_s=180)
    actual = snapshot(second, "crashed")
    assert metric(second.metrics_text(), "vigil_window_rebuilds_total") >= 1

    assert actual["windows"] == expected["windows"]
    assert actual["verdicts"] == expected["verdicts"]
    assert actual["alerts"] == expected["alerts"]
    n_alerts = len(expected["alerts"])
    assert topic_alerts(broker.bootstrap, f"{prefix}.alerts", n_alerts) == topic_alerts(
        broker.bootstrap, f"{ref_prefix}.alerts", n_alerts
    )
    assert second.query("SELECT count() FROM crashed.events")[0][0] == n
