"""The canary judge through the real broker, worker and chDB: requests spread over every
partition are judged per minute with counts equal to SQL over the stored events; a bad
release fails and pages with auto_rollback and resolves once fixed; and a worker killed
with -9 half-way leaves the same verdict rows and alerts as an uninterrupted run."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.broker import EmbeddedBroker
from streams.kafka import ensure_topics
from streams.worker_proc import WorkerProcess
from tests.integration.test_worker import wait_for

pytestmark = pytest.mark.integration

MIN = 60_000
NOW_MS = int(time.time() * 1000)
BASE = NOW_MS - NOW_MS % MIN - 40 * MIN  # old enough that every interval can close
MINUTES, PARTITIONS = 24, 4
BAD = range(8, 14)  # the canary release is 50 % slower and fails 3 % of requests
ENV = {
    "VIGIL_FETCH_MAX_RECORDS": "200",
    "VIGIL_WINDOW_TICK_S": "0.2",
    "VIGIL_COMMIT_INTERVAL_S": "0.5",
    "VIGIL_CANARY_LATENESS_S": "5",
    # the input is 40 minutes old: the wall clock must not close intervals early
    "VIGIL_CANARY_IDLE_TIMEOUT_S": "86400",
}


OPERATOR, PD_SECRET = "operator-token-test", "pagerduty-signing-secret-test"


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"{}")


def traffic() -> list[tuple[int, bytes]]:
    """(partition, value): per minute 640 baseline and 80 canary requests of the
    checkout service, spread over every partition in event-time order; then one request
    per partition two minutes on, so every partition's watermark passes the last minute."""
    rng = random.Random(3)
    out: list[tuple[int, int, bytes]] = []
    i = 0
    for minute in range(MINUTES):
        for k in range(720):
            canary = k % 9 == 0
            bad = canary and minute in BAD
            ts = BASE + minute * MIN + rng.randrange(MIN)
            value = {
                "kind": "http.request", "event_id": f"c{i}", "ts": ts,
                "tenant_id": f"t{k % 6}", "service": "checkout", "method": "POST",
                "route": "/v1/pay", "duration_ms": round(rng.lognormvariate(4.6, 0.5)
                                                         * (1.5 if bad else 1.0), 3),
                "status": 503 if bad and rng.random() < 0.03 else 200,
                "release": "5.1.0" if canary else "5.0.4",
                "cohort": "canary" if canary else "baseline",
            }  # fmt: skip
            out.append((ts, i % PARTITIONS, orjson.dumps(value)))
            i += 1
    for p in range(PARTITIONS):
        value = {"kind": "http.request", "event_id": f"end{p}", "ts": BASE + (MINUTES + 2) * MIN,
                 "tenant_id": "t0", "service": "checkout", "method": "GET", "route": "/x",
                 "duration_ms": 1.0, "status": 200}  # fmt: skip
        out.append((BASE + (MINUTES + 2) * MIN, p, orjson.dumps(value)))
    out.sort(key=lambda x: x[0])
    return [(p, v) for _, p, v in out]


async def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=False)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, partition=p) for p, v in records]
        for f in futures:
            await f
    finally:
        await producer.stop()


def verdicts(worker: WorkerProcess, db: str) -> list[Any]:
    return worker.query(
        "SELECT toUnixTimestamp(interval_start), release, verdict, interval_verdict, "
        "cumulative_verdict, score, failing_run, canary_requests, canary_errors, "
        "baseline_requests, canary_keys, "
        f"canary_counts, baseline_counts, metrics FROM {db}.canary_verdicts FINAL ORDER BY ALL"
    )


def canary_alerts(worker: WorkerProcess, db: str) -> list[Any]:
    return worker.query(
        f"SELECT DISTINCT alert_id, status, alertname, labels, starts_at, ends_at FROM {db}.alerts "
        "WHERE alertname LIKE 'Canary%' ORDER BY ALL"
    )


def judged(worker: WorkerProcess, db: str) -> int:
    return int(worker.query(f"SELECT count() FROM {db}.canary_verdicts FINAL")[0][0])


def test_canary_verdicts_equal_sql_and_survive_kill_9(
    broker: EmbeddedBroker, prefix: str, settings_for: Any, worker_for: Any
) -> None:
    records = traffic()
    for name in (f"{prefix}r", prefix):
        settings = settings_for(broker.bootstrap, name)
        asyncio.run(ensure_topics(settings, [settings.events_topic], partitions=PARTITIONS))

    asyncio.run(produce(broker.bootstrap, f"{prefix}r.events", records))
    reference = worker_for(broker.bootstrap, f"{prefix}r", VIGIL_CLICKHOUSE_DATABASE="ref",
                           VIGIL_CONSOLE_TOKEN=OPERATOR, VIGIL_PAGERDUTY_WEBHOOK_SECRET=PD_SECRET,
                           **ENV)  # fmt: skip
    reference.start()
    wait_for(lambda: judged(reference, "ref") >= MINUTES, timeout_s=180)
    time.sleep(1.5)
    expected = verdicts(reference, "ref")
    expected_alerts = canary_alerts(reference, "ref")
    assert len(expected) == MINUTES
    # exact: the requests and errors of every judged minute, merged over the four
    # partitions, are SQL's counts over the stored events
    by_sql = reference.query(
        "SELECT toUnixTimestamp(toStartOfMinute(ts)) AS m, countIf(cohort = 'canary'), "
        "countIf(cohort = 'canary' AND status >= 500), countIf(cohort = 'baseline') "
        "FROM ref.events WHERE cohort != '' GROUP BY m ORDER BY m"
    )
    assert [[r[0], r[7], r[8], r[9]] for r in expected] == [list(r) for r in by_sql]
    assert all(sum(r[11]) == r[7] and sum(r[12]) == r[9] for r in expected)
    # the bad release failed (two failing minutes in a row), and healthy minutes passed
    stage = {(r[0] - expected[0][0]) // 60: r[2] for r in expected}
    assert all(stage[m] in ("Pass", "Inconclusive") for m in range(0, BAD.start)), stage
    assert "Fail" in {stage[m] for m in BAD}, stage
    assert stage[MINUTES - 1] == "Pass", stage
    statuses = [(a[1], a[2]) for a in expected_alerts]
    assert ("firing", "CanaryVerdictFail") in statuses
    assert ("resolved", "CanaryVerdictFail") in statuses
    assert all(a[3]["auto_rollback"] == "true" for a in expected_alerts if a[2].endswith("Fail"))
    # who may change an incident: the operator token, and PagerDuty's signed webhook
    ack = f"{reference.base_url}/api/v1/incidents/inc-nope/ack"
    assert post(ack, b'{"by": "mallory"}', {})[0] == 401
    assert post(ack, b'{"by": "alice"}', {"Authorization": f"Bearer {OPERATOR}"})[0] == 404
    hook, event = f"{reference.base_url}/pagerduty/webhook", b'{"event": {}}'
    signature = "v1=" + hmac.new(PD_SECRET.encode(), event, hashlib.sha256).hexdigest()
    assert post(hook, event, {})[0] == 403
    assert post(hook, event, {"X-PagerDuty-Signature": "v1=" + "0" * 64})[0] == 403
    assert post(hook, event, {"X-PagerDuty-Signature": signature}) == (
        200,
        {"acknowledged": None, "reason": "not an acknowledgement"},
    )
    reference.stop()

    half = len(records) // 2
    asyncio.run(produce(broker.bootstrap, f"{prefix}.events", records[:half]))
    first = worker_for(broker.bootstrap, prefix, VIGIL_CLICKHOUSE_DATABASE="crashed", **ENV)
    first.start()
    wait_for(lambda: judged(first, "crashed") >= 4, timeout_s=120)
    first.kill()
    asyncio.run(produce(broker.bootstrap, f"{prefix}.events", records[half:]))
    second = worker_for(broker.bootstrap, prefix, VIGIL_CLICKHOUSE_DATABASE="crashed", **ENV)
    second.start()
    wait_for(lambda: judged(second, "crashed") >= MINUTES, timeout_s=180)
    time.sleep(1.5)
    assert verdicts(second, "crashed") == expected
    assert canary_alerts(second, "crashed") == expected_alerts
