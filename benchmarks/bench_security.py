"""The security detector (issue 13), measured; prints figures, asserts nothing.

1. Rule evaluation: microseconds per event of the security detector with every default
   rule (events stage and groups stage in process, the forwarded records encoded and
   decoded as over Kafka) on the mixed corpus, decoded once beforehand by the real
   ingestor, in event-time order. Next to it, the latency detector on the same events,
   for scale.
2. Memory per active group: 100,000 distinct IPs failing a login each, within a minute
   (each IP a group of brute_force and of user_enumeration); tracemalloc of what the
   detector retains, divided by its active groups.
3. End to end: the mixed corpus through a worker with the security rules on and off
   (``VIGIL_SECURITY_DETECTION``), preloaded topic, next to the bare consumer, in
   alternating rounds (the protocol of bench_ingest): the mixed-kind ratios before and
   after the detector, measured side by side.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import tempfile
import time
import tracemalloc

import orjson
from prometheus_client import CollectorRegistry

from benchmarks.bench_hotpath import Record
from benchmarks.bench_ingest import on_off
from benchmarks.common import (
    latency_detector,
    mixed_events,
    security_detector,
    single_messages,
)
from schemas.normalize import Pseudonymizer
from sinks.clickhouse import connect
from sinks.migrate import migrate
from streams.detectors.latency.slo import load_rules
from streams.ingest import Ingestor, IngestResult
from streams.metrics import Metrics
from streams.transport import SourceBatch

N = 20_000
E2E_EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
IPS = 100_000


def decoded(values: list[bytes], first_offset: int = 0) -> IngestResult:
    records = [Record("vigil.events", 0, first_offset + i, 0, v) for i, v in enumerate(values)]
    ingestor = Ingestor(Pseudonymizer(b"bench"), 1 << 20, 3_600_000)
    result = ingestor.decode_batch(records, int(time.time() * 1000))
    assert not result.rejections, result.rejections[:1]
    return result


def per_event_us(result: IngestResult, repeat: int = 7) -> tuple[float, int, int]:
    """Median microseconds per event of a fresh detector fed ``result`` and ticked once;
    with the late events and the messages sent to the groups stage."""
    rules = load_rules(None).security
    metrics = Metrics(CollectorRegistry())
    times: list[float] = []
    late = forwarded = 0
    n = len(result.events)
    for _ in range(repeat):
        detector = security_detector(metrics, rules)
        assert detector.groups is not None
        started = time.perf_counter()
        asyncio.run(detector.process(result, SourceBatch("t", 0, 0, n - 1, [])))
        asyncio.run(detector.tick())
        times.append((time.perf_counter() - started) / n * 1e6)
        late = detector.late_events
        forwarded = sum(p.processed + 1 for p in detector.groups.parts.values())
    return statistics.median(times), late, forwarded


def latency_us(result: IngestResult, repeat: int = 7) -> float:
    client = connect(f"chdb://{tempfile.mkdtemp(prefix='vigil-secbench-')}", "vigil")
    migrate(client, "vigil", 3650)
    detector = latency_detector(client, Metrics(CollectorRegistry()))
    n = len(result.events)
    times = []
    for b in range(repeat):
        started = time.perf_counter()
        asyncio.run(detector.process(result, SourceBatch("t", 0, b * n, b * n + n - 1, [])))
        times.append((time.perf_counter() - started) / n * 1e6)
    client.close()
    return statistics.median(times)


def rule_cost() -> None:
    envelopes, logs = mixed_events(N)
    ordered = decoded(single_messages(envelopes, logs))
    kinds = {e.kind for e in ordered.events}
    print(
        f"1. rule evaluation, {N:,} mixed events ({len(kinds)} kinds, 11 % security, "
        "every default rule), median of 7, microseconds per event:"
    )
    us, late, forwarded = per_event_us(ordered)
    print(
        f"   security rules, both stages                : {us:6.2f} us  ({forwarded:,} "
        f"messages to the groups stage, {late:,} late)",
        flush=True,
    )
    print(f"   latency windows + SLOs (for scale)         : {latency_us(ordered):6.2f} us")


def memory_per_group() -> None:
    now_ms = int(time.time() * 1000)
    values = [
        orjson.dumps(
            {
                "event_id": f"ip-{i}",
                "ts": now_ms - 60_000 + i * 60_000 // IPS,
                "tenant_id": f"tenant-{i % 50:02d}",
                "kind": "security.auth_failure",
                "service": "auth",
                "ip": f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}",
                "user_id": f"user-{i}",
            }
        )
        for i in range(IPS)
    ]
    rules = load_rules(None).security
    metrics = Metrics(CollectorRegistry())
    gc.collect()
    tracemalloc.start()
    detector = security_detector(metrics, rules)
    base = tracemalloc.get_traced_memory()[0]
    for chunk in range(0, IPS, 10_000):  # decoded and dropped batch by batch, as a worker
        result = decoded(values[chunk : chunk + 10_000], chunk)
        batch = SourceBatch("t", 0, chunk, chunk + len(result.events) - 1, [])
        asyncio.run(detector.process(result, batch))
        del result
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    groups = detector.active_groups()
    print(
        f"2. memory: {IPS:,} distinct IPs failing a login within a minute -> {groups:,} active "
        f"groups (brute_force and user_enumeration per IP, failed_login_spike per tenant): "
        f"{held / 2**20:,.1f} MiB, {held / groups:,.0f} bytes per active group, "
        f"{held / IPS:,.0f} bytes per IP",
        flush=True,
    )


def end_to_end() -> None:
    on_off("security", {"VIGIL_SECURITY_DETECTION": "false"}, "s", E2E_EVENTS, RUNS)


def main() -> None:
    rule_cost()
    memory_per_group()
    end_to_end()


if __name__ == "__main__":
    main()
