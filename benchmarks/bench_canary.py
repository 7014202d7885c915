"""The canary judge (issue 16), measured; prints figures, asserts nothing.

1. Cost: microseconds per event of the canary source stage fed the mixed corpus (25 %
   of HTTP requests cohort-labelled), decoded once beforehand by the real ingestor; and
   fed only cohort-labelled requests (its worst case); the latency detector for scale.
   The judge: milliseconds to merge and judge one service's minute from 12 partitions.
2. Memory per open key (service, release, cohort, interval) with realistic sketches
   (~100 buckets), by tracemalloc, at 10,000 open keys.
3. End to end: the mixed corpus through a worker with canary analysis on and off
   (``VIGIL_CANARY_DETECTION``), alternating rounds (the protocol of bench_ingest).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import tracemalloc

import orjson
from prometheus_client import CollectorRegistry

from benchmarks.bench_ingest import on_off
from benchmarks.bench_security import decoded, latency_us
from benchmarks.common import mixed_events, send_nowhere
from streams.alerting import AlertPublisher
from streams.detectors.canary.detector import CanaryConfig, CanaryJudge, CanarySource
from streams.detectors.latency.sketch import gamma_for
from streams.ingest import IngestResult
from streams.metrics import Metrics
from streams.transport import SourceBatch

N = 20_000
E2E_EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
GAMMA = gamma_for(0.01)


async def _nowhere(records: list[tuple[int, bytes]]) -> None:
    return None


def source_us(result: IngestResult, repeat: int = 7) -> float:
    n = len(result.events)
    times = []
    for _ in range(repeat):
        source = CanarySource(CanaryConfig(), GAMMA, _nowhere, 12, Metrics(CollectorRegistry()))
        source.assigned([0], 12)
        started = time.perf_counter()
        asyncio.run(source.process(result, SourceBatch("t", 0, 0, n - 1, [])))
        times.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(times)


def labelled(n: int) -> list[bytes]:
    rng = random.Random(2)
    now = int(time.time() * 1000) - n
    return [
        orjson.dumps({
            "kind": "http.request", "event_id": f"b{i}", "ts": now + i, "tenant_id": "t1",
            "service": f"svc{i % 5}", "method": "GET", "route": "/r", "status": 200,
            "duration_ms": round(rng.lognormvariate(4.5, 0.6), 3),
            "release": "2.0.0" if i % 10 == 0 else "1.9.9",
            "cohort": "canary" if i % 10 == 0 else "baseline",
        })
        for i in range(n)
    ]  # fmt: skip


def judge_ms(repeat: int = 5) -> float:
    """One service's minute from 12 partitions: 12 partials per cohort, then progress."""
    rng = random.Random(4)
    minute = 1_780_000_000_000 - 1_780_000_000_000 % 60_000
    records: list[tuple[int, bytes]] = []
    offset = 0
    for src in range(12):
        for cohort, n in (("canary", 40), ("baseline", 400)):
            keys = sorted({int(rng.lognormvariate(5.5, 0.3)) for _ in range(120)})
            body = {"t": "p", "src": src, "srcs": 12, "service": "web", "release": "2.0.0",
                    "cohort": cohort, "start": minute, "keys": keys,
                    "counts": [max(1, n // len(keys))] * len(keys), "n": n, "e": 1}  # fmt: skip
            records.append((offset, orjson.dumps(body)))
            offset += 1
    for src in range(12):
        records.append((offset, orjson.dumps(
            {"t": "w", "src": src, "srcs": 12, "through": minute + 60_000})))  # fmt: skip
        offset += 1
    times = []
    for _ in range(repeat):
        metrics = Metrics(CollectorRegistry())
        alerts = AlertPublisher(None, send_nowhere, "a", metrics, 300)
        judge = CanaryJudge(CanaryConfig(), GAMMA, alerts, None, metrics, "vigil")
        judge._restored = True
        started = time.perf_counter()
        asyncio.run(judge.process_records(0, records))
        times.append((time.perf_counter() - started) * 1000)
        assert judge.releases, "judged"
    return statistics.median(times)


def memory_per_key(keys: int = 10_000) -> float:
    rng = random.Random(5)
    source = CanarySource(CanaryConfig(), GAMMA, _nowhere, 12, Metrics(CollectorRegistry()))
    source.assigned([0], 12)
    now = int(time.time() * 1000)
    values = [
        orjson.dumps({
            "kind": "http.request", "event_id": f"m{i}", "ts": now, "tenant_id": "t1",
            "service": f"svc{i % keys}", "method": "GET", "route": "/r", "status": 200,
            "duration_ms": round(rng.lognormvariate(4.5, 0.8), 3), "release": "1.0.0",
            "cohort": "baseline",
        })
        for i in range(keys * 100)
    ]  # fmt: skip
    result = decoded(values)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    asyncio.run(source.process(result, SourceBatch("t", 0, 0, len(values) - 1, [])))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / keys


def main() -> None:
    envelopes, _ = mixed_events(N)
    mixed = decoded(envelopes)
    worst = decoded(labelled(N))
    print("1. cost, medians of 7 runs:")
    print(f"   canary source, mixed corpus           : {source_us(mixed):6.2f} µs/event")
    print(f"   canary source, only labelled requests : {source_us(worst):6.2f} µs/event")
    print(f"   latency detector, mixed corpus        : {latency_us(mixed):6.2f} µs/event")
    print(f"   judge, one service-minute from 12 partitions: {judge_ms():6.2f} ms")
    print(f"2. memory per open (service, release, cohort, minute) key, ~100 buckets: "
          f"{memory_per_key():,.0f} bytes")  # fmt: skip
    on_off("canary analysis", {"VIGIL_CANARY_DETECTION": "false"}, "cn", E2E_EVENTS, RUNS)


if __name__ == "__main__":
    main()
