"""The funnel detector (issue 14), measured; prints figures, asserts nothing.

1. Cost: microseconds per event of the funnel detector (default onboarding funnel) fed
   the mixed corpus (18 % analytics, half of them funnel step events), decoded once
   beforehand by the real ingestor, and ticked once; and fed only funnel step events of
   persons walking the funnel (the worst case: every event moves a journey). The latency
   detector on the mixed events for scale.
2. Memory per open journey at 1,000,000 open journeys: a million persons register within
   a minute and half of them verify their e-mail (1.5 kept step events per journey, with
   the person keys: 64-character HMACs, as the ingestor makes them); tracemalloc of what
   the engine retains once their rows are written, divided by the open journeys.
3. End to end: the mixed corpus through a worker with funnels on and off
   (``VIGIL_FUNNEL_DETECTION``), preloaded topic, next to the bare consumer, in
   alternating rounds (the protocol of bench_ingest): the ratios before and after.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import statistics
import time
import tracemalloc

import orjson
from prometheus_client import CollectorRegistry

from benchmarks.bench_ingest import on_off
from benchmarks.bench_security import decoded, latency_us
from benchmarks.common import mixed_events, send_nowhere, single_messages
from streams.alerting import AlertPublisher
from streams.detectors.funnel.detector import FunnelDetector
from streams.detectors.funnel.engine import FunnelPartition
from streams.detectors.latency.sketch import gamma_for
from streams.detectors.latency.slo import load_rules
from streams.ingest import IngestResult
from streams.metrics import Metrics
from streams.transport import SourceBatch

N = 20_000
E2E_EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
JOURNEYS = int(os.environ.get("BENCH_JOURNEYS", "1000000"))


def funnel_us(result: IngestResult, repeat: int = 7) -> tuple[float, int]:
    """Median microseconds per event of a fresh detector fed ``result`` and ticked once;
    with the journeys it holds open after the tick."""
    config = load_rules(None).funnels
    metrics = Metrics(CollectorRegistry())
    times: list[float] = []
    rows = 0
    n = len(result.events)
    for _ in range(repeat):
        alerts = AlertPublisher(None, send_nowhere, "bench.alerts", metrics, 300)
        detector = FunnelDetector(config, gamma_for(0.01), alerts, None, metrics, "vigil")
        started = time.perf_counter()
        asyncio.run(detector.process(result, SourceBatch("t", 0, 0, n - 1, [])))
        asyncio.run(detector.tick())
        times.append((time.perf_counter() - started) / n * 1e6)
        rows = detector.open_journeys()
    return statistics.median(times), rows


def journey_events(n: int) -> list[bytes]:
    """``n`` funnel step events of persons walking the onboarding funnel (a new person
    every ~5 events, each step a few seconds after the previous), in time order."""
    steps = [s.event for s in load_rules(None).funnels.definitions[0].steps]
    now = int(time.time() * 1000) - n * 10
    timed = []
    person = 0
    while len(timed) < n:
        start = now + len(timed) * 10
        for k, name in enumerate(steps[: 3 + person % 6]):
            timed.append((start + k * 3_000, person, name))
        person += 1
    timed.sort()
    return [
        orjson.dumps(
            {
                "event_id": f"j{i}",
                "ts": ts,
                "tenant_id": f"tenant-{p % 20:03d}",
                "kind": "analytics",
                "service": "web",
                "event_name": name,
                "user_id": f"u{p}",
            }
        )
        for i, (ts, p, name) in enumerate(timed[:n])
    ]


def cost() -> None:
    envelopes, logs = mixed_events(N)
    mixed = decoded(single_messages(envelopes, logs))
    steps = decoded(journey_events(N))
    print(f"1. funnel detector (default onboarding funnel), {N:,} events, median of 7, us/event:")
    us, rows = funnel_us(mixed)
    print(
        f"   mixed corpus (9 % step events)              : {us:6.2f} us  ({rows:,} open journeys)"
    )
    us, rows = funnel_us(steps)
    print(
        f"   funnel step events only (journeys walking)  : {us:6.2f} us  ({rows:,} open journeys)"
    )
    print(
        f"   latency windows + SLOs on the mixed corpus  : {latency_us(mixed):6.2f} us", flush=True
    )


def memory_per_journey() -> None:
    config = load_rules(None).funnels
    now = int(time.time() * 1000) - 120_000
    gc.collect()
    tracemalloc.start()
    engine = FunnelPartition(config, gamma_for(0.01))
    base = tracemalloc.get_traced_memory()[0]
    for i in range(JOURNEYS):
        person = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()  # a 64-char key
        ts = now + i * 60_000 // JOURNEYS
        engine.feed("tenant-01", person, "auth.user_registered", {}, ts)
        engine.observe(ts)
        if i % 2:
            engine.feed("tenant-01", person, "auth.email_verified", {}, ts + 1)
        if i % 100_000 == 99_999:
            engine.advance()  # rows are written (and dropped here) as the worker's ticks do
            engine.rows.clear()
    engine.observe(now + 61_000 + engine.grace_ms)  # every entry certain
    engine.advance()
    engine.rows.clear()
    engine.take_cohort_rows(0)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    journeys = engine.open_journeys()
    print(
        f"2. memory: {journeys:,} open journeys (1.5 kept step events each, 64-char person "
        f"keys): {held / 2**20:,.0f} MiB, {held / journeys:,.0f} bytes per open journey",
        flush=True,
    )


def end_to_end() -> None:
    on_off("funnels", {"VIGIL_FUNNEL_DETECTION": "false"}, "f", E2E_EVENTS, RUNS)


def main() -> None:
    cost()
    memory_per_journey()
    end_to_end()


if __name__ == "__main__":
    main()
