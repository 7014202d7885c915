"""The latency path (issue 3), measured; prints figures, asserts nothing.

1. Throughput with 10,000 distinct (tenant, route) keys, one event per message and NDJSON
   x100, first produce -> last row, next to a bare aiokafka consumer on the same broker
   (the protocol of bench_ingest).
2. Memory per active key: tracemalloc around the detector's state for 10,000 keys.
3. Timeliness: real-time traffic with 2-s samples; how long after a sample's end (+
   grace) its row is stored, and how long after it an alert is on the topic (p50/p99).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
import tracemalloc
from datetime import datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from benchmarks.bench_ingest import ceiling, vigil_end_to_end
from benchmarks.common import latency_detector, worker
from schemas.fastpath import FAST_STRUCTS
from sinks.clickhouse import connect
from sinks.migrate import migrate
from streams.broker import EmbeddedBroker
from streams.ingest import IngestResult
from streams.kafka import start_producer
from streams.metrics import Metrics
from streams.settings import load_settings
from streams.transport import SourceBatch

N = int(os.environ.get("BENCH_EVENTS", "200000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
KEYS = 10_000
PARTITIONS = 4


def keyed_events(n: int, seed: int = 3) -> list[bytes]:
    """``n`` http.request events over 100 tenants x 100 routes = 10,000 keys."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(n):
        k = i % KEYS
        out.append(
            orjson.dumps(
                {
                    "event_id": f"k{i}",
                    "ts": now_ms - (n - i) // 100,
                    "tenant_id": f"tenant-{k // 100:03d}",
                    "kind": "http.request",
                    "service": "api",
                    "method": "GET",
                    "route": f"/v1/route-{k % 100}",
                    "status": 200 if rng.random() > 0.01 else 503,
                    "duration_ms": round(rng.lognormvariate(4.0, 0.6), 3),
                }
            )
        )
    return out


def throughput() -> None:
    events = keyed_events(N)
    ndjson = [b"\n".join(events[i : i + 100]) for i in range(0, N, 100)]
    with EmbeddedBroker() as broker:
        a, _ = ceiling(broker.bootstrap, "lat", events)
        print(f"{'(a) bare aiokafka consumer + orjson decode':56}: {a:9,.0f} events/s")
        for label, prefix, values in [
            ("(b) latency path, 1 event/message", "lat1", events),
            ("(c) latency path, NDJSON x100", "lat2", ndjson),
        ]:
            runs = [
                vigil_end_to_end(broker.bootstrap, f"{prefix}r{i}", values, N) for i in range(RUNS)
            ]
            rate = statistics.median(runs)
            print(f"{label:56}: {rate:9,.0f} events/s  ratio to (a) = {rate / a:.2f}")


def memory_per_key() -> None:
    """Bytes of detector state per (tenant, service, route) key with one open sample."""
    data = Path(tempfile.mkdtemp(prefix="vigil-latmem-"))
    client = connect(f"chdb://{data}", "vigil")
    migrate(client, "vigil", 3650)
    metrics = Metrics(CollectorRegistry())

    async def run() -> tuple[int, int]:
        detector = latency_detector(client, metrics)
        http = FAST_STRUCTS["http.request"]
        now = int(time.time() * 1000)
        rng = random.Random(1)
        per_key = 20
        events = [
            http(
                event_id=f"m{i}",
                ts=now,
                tenant_id=f"t{(i % KEYS) // 100}",
                service="api",
                method="GET",
                route=f"/r{i % 100}",
                status=200,
                duration_ms=rng.lognormvariate(4, 0.6),
            )
            for i in range(KEYS * per_key)
        ]
        n = len(events)
        result = IngestResult("t", events, [now - 5_000] * n, [0] * n, list(range(n)), [0] * n)
        source = SourceBatch("t", 0, 0, n - 1, [])
        await detector.process(IngestResult("t"), SourceBatch("t", 0, 0, -1, []))  # restore
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        await detector.process(result, source)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return after - before, per_key

    used, per_key = asyncio.run(run())
    client.close()
    print(
        f"memory per active key ({per_key} events in one open sample, a = 1 %): "
        f"{used / KEYS:,.0f} bytes ({used / 2**20:.1f} MiB for {KEYS:,} keys)"
    )


def timeliness(seconds: float = 40.0, rate: float = 2000.0) -> None:
    """Real-time traffic, 2-s samples and 1-s grace: delays to storage and to alerts."""
    rules = Path(tempfile.mkdtemp(prefix="vigil-latrules-")) / "rules.yaml"
    rules.write_text(
        "slo:\n  windows: {pane_seconds: 1, sample_seconds: 2, rollup_seconds: [10],\n"
        "            grace_seconds: 1, idle_timeout_seconds: 5}\n  min_events: 5\n"
        "  resolve_after: 1\n  rules:\n"
        "    - {id: P95LatencyBreach, sli: p95_ms, op: '>', threshold: 500, for: 1,\n"
        "       alert: P95LatencyBreach, severity: critical}\n"
    )
    grace_ms = 1000
    with EmbeddedBroker() as broker:
        proc = worker(
            broker.bootstrap,
            "late",
            PARTITIONS,
            {"VIGIL_RULES_FILE": str(rules), "VIGIL_WINDOW_TICK_S": "0.1"},
        )
        proc.start()
        proc.wait_assigned()
        received: list[tuple[float, int]] = []

        async def traffic() -> None:
            settings = load_settings(kafka_bootstrap=broker.bootstrap)
            producer = await start_producer(settings, linger_ms=5)
            consumer = AIOKafkaConsumer(
                "late.alerts", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
            )
            await consumer.start()

            async def collect() -> None:
                async for record in consumer:
                    alert = orjson.loads(record.value)
                    if alert["type"] == "io.vigil.alert.firing":
                        ends = datetime.fromisoformat(alert["time"]).timestamp() * 1000
                        received.append((time.time(), int(ends)))

            collector = asyncio.create_task(collect())
            rng = random.Random(2)
            started = time.time()
            i = 0
            while time.time() - started < seconds:
                now_ms = int(time.time() * 1000)
                for _ in range(int(rate / 20)):
                    route = f"/r{rng.randrange(20)}"
                    # every route is slow in one 2-s sample out of five, staggered
                    slow = (now_ms // 2000 + int(route[2:])) % 5 == 0
                    value = orjson.dumps(
                        {
                            "event_id": f"t{i}",
                            "ts": now_ms,
                            "tenant_id": "acme",
                            "kind": "http.request",
                            "service": "api",
                            "method": "GET",
                            "route": route,
                            "status": 200,
                            "duration_ms": rng.uniform(600, 900) if slow else 40.0,
                        }
                    )
                    await producer.send("late.events", value, key=b"acme")
                    i += 1
                await asyncio.sleep(0.05)
            await producer.stop()
            await asyncio.sleep(4)
            collector.cancel()
            await consumer.stop()

        asyncio.run(traffic())
        rows = proc.query(
            "SELECT quantiles(0.5, 0.99)(toUnixTimestamp64Milli(written_at) - "
            f"toUnixTimestamp64Milli(window_end) - {grace_ms}), count() FROM vigil.latency_windows "
            "WHERE resolution_s = 2 AND late = 0"
        )
        proc.stop()
    (p50, p99), n = rows[0]
    print(f"sample end + grace -> row stored: p50 {p50:,.0f} ms, p99 {p99:,.0f} ms ({n} rows)")
    delays = sorted(at * 1000 - ends - grace_ms for at, ends in received)
    if delays:
        p50a = delays[len(delays) // 2]
        p99a = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        print(
            f"sample end + grace -> alert on the topic: p50 {p50a:,.0f} ms, p99 {p99a:,.0f} ms "
            f"({len(delays)} alerts)"
        )
    else:
        print("no alert arrived (unexpected: every route breaches once every 10 s)")


def main() -> None:
    print(f"latency path: {N:,} events over {KEYS:,} (tenant, route) keys; {PARTITIONS} partitions")
    throughput()
    memory_per_key()
    timeliness()


if __name__ == "__main__":
    main()
