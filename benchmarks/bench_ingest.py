"""Ingest throughput, measured side by side on one embedded broker.

The corpus is production-like (:func:`benchmarks.common.mixed_events`): every event kind,
5 % structured-log lines, analytics with PII in 1 % of them, so each detector is
measured on the traffic it will see.

(a) the ceiling: a bare aiokafka consumer that only reads and orjson-decodes the events;
(b) Vigil end to end, one event per Kafka message: first produce → last row visible in
    ClickHouse, with the worker in its own process as in production;
(c) the same with NDJSON messages of 100 events each.
Prints events/s and the ratios b/a and c/a. Run with `make bench`; BENCH_EVENTS=N to
change the event count (default 200,000).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
import urllib.request
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from benchmarks.common import mixed_events, ndjson_messages, single_messages, worker
from streams.broker import EmbeddedBroker
from streams.kafka import ensure_topics, start_producer
from streams.settings import load_settings

N = int(os.environ.get("BENCH_EVENTS", "200000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))  # the machine is shared: report the median
PARTITIONS = 4
BATCH_BYTES = 256 << 10  # the benchmark producer's record batches (see produce)


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> float:
    """Send ``values`` as fast as one Python producer can: whole record batches, round
    robin over the partitions (per-message ``send`` would make the producer, not Vigil,
    the bottleneck of the end-to-end figures).

    Batches of 256 KiB: with 1-MiB batches the first records reached any consumer only
    ~100 ms after the first send (the first 4 MiB travel and are stored together), which
    the "first produce" clock of (b) and (c) counted against Vigil; with 256 KiB they
    arrive after ~20 ms and the whole topic is produced as fast or faster (200k NDJSON
    events: 0.49-0.58 s vs 0.60-0.62 s; one event per message: 0.87-1.01 s vs
    0.87-1.41 s). Smaller batches (64 KiB) slow the producer down."""
    settings = load_settings(kafka_bootstrap=bootstrap)
    producer = await start_producer(settings, linger_ms=10, max_batch_size=BATCH_BYTES)
    started = time.perf_counter()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        deliveries = []
        batch = producer.create_batch()
        for value in values:
            if batch.append(key=None, value=value, timestamp=None) is None:
                partition = partitions[len(deliveries) % len(partitions)]
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=None, value=value, timestamp=None)
        if batch.record_count():
            partition = partitions[len(deliveries) % len(partitions)]
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        for delivery in deliveries:
            await delivery
    finally:
        await producer.stop()
    return time.perf_counter() - started


def _spread(runs: list[float]) -> str:
    return f"(runs: {', '.join(f'{r:,.0f}' for r in runs)})"


async def bare_consumer(bootstrap: str, topic: str, expected: int, group: str) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    seen, started = 0, None
    try:
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            if started is None and batch:
                started = time.perf_counter()
            for records in batch.values():
                for r in records:
                    orjson.loads(r.value)
                    seen += 1
    finally:
        await consumer.stop()
    assert started is not None
    return expected / (time.perf_counter() - started)


def prepare_ceiling(bootstrap: str, name: str, values: list[bytes]) -> str:
    """A fresh topic holding ``values`` for the bare consumer to read (once per run)."""
    settings = load_settings(kafka_bootstrap=bootstrap)
    topic = f"{name}.raw"
    asyncio.run(ensure_topics(settings, [topic], PARTITIONS))
    asyncio.run(produce(bootstrap, topic, values))
    return topic


def ceiling(bootstrap: str, name: str, values: list[bytes]) -> tuple[float, list[float]]:
    """(median, runs) of the bare consumer reading ``values`` from a fresh topic."""
    topic = prepare_ceiling(bootstrap, name, values)
    runs = [
        asyncio.run(bare_consumer(bootstrap, topic, len(values), f"{name}-bare-{i}"))
        for i in range(RUNS)
    ]
    return statistics.median(runs), runs


def vigil_end_to_end(
    bootstrap: str,
    prefix: str,
    values: list[bytes],
    events: int,
    preload: bool = False,
    workers: int = 1,
    env: dict[str, str] | None = None,
    viewers: tuple[str, ...] = (),
) -> float:
    """Events/s until the last row is visible in ClickHouse.

    Without ``preload`` the clock starts at the first produce (the workers are already
    waiting); with it the topic is filled first and the clock starts when a worker has
    consumed its first message, which compares like with like against the bare consumer.
    With several workers (one consumer group) each owns its own chDB directory, so rows are
    counted across them; in production they would share one ClickHouse server.
    ``viewers``: paths of the first worker's web port fetched every second meanwhile, as
    open consoles would (their refresh is 10 s: this is ten times more often).
    """
    procs = [worker(bootstrap, prefix, PARTITIONS, env) for _ in range(workers)]
    if preload:
        settings = load_settings(kafka_bootstrap=bootstrap)
        asyncio.run(ensure_topics(settings, [f"{prefix}.events"], PARTITIONS))
        asyncio.run(produce(bootstrap, f"{prefix}.events", values))
    for proc in procs:
        proc.start()
    done = threading.Event()
    watcher = threading.Thread(target=_view, args=(procs[0], viewers, done), daemon=True)
    if viewers:
        watcher.start()
    try:
        if preload:
            while not any((p.stats() or {}).get("messages") for p in procs):
                time.sleep(0.02)
            started = time.perf_counter()
        else:
            for proc in procs:
                proc.wait_assigned()  # group joined: the clock measures processing only
            started = time.perf_counter()
            asyncio.run(produce(bootstrap, f"{prefix}.events", values))
        while sum(p.query("SELECT count() FROM vigil.events")[0][0] for p in procs) < events:
            time.sleep(0.1)
        return events / (time.perf_counter() - started)
    finally:
        done.set()
        if viewers:
            watcher.join()
        for proc in procs:
            proc.stop()


def _view(proc: Any, paths: tuple[str, ...], done: threading.Event) -> None:
    """Fetch every path once a second until ``done`` (errors while starting are fine)."""
    while not done.wait(1.0):
        for path in paths:
            try:
                with urllib.request.urlopen(proc.base_url + path, timeout=30) as r:  # noqa: S310
                    r.read()
            except OSError:
                pass


CASES = [
    # label, topic prefix, NDJSON?, preloaded?, ratio name
    ("(b)  vigil, 1 event/message, first produce -> last row", "bench1", False, False, "b/a"),
    ("(c)  vigil, NDJSON x100, first produce -> last row", "bench2", True, False, "c/a"),
    ("(b') vigil, 1 event/message, preloaded topic", "bench3", False, True, "b'/a"),
    ("(c') vigil, NDJSON x100, preloaded topic", "bench4", True, True, "c'/a"),
]
SCALE_OUT = [
    ('(b") 2 workers, 1 event/message, preloaded topic', "bench5", False, 'b"/a'),
    ('(c") 2 workers, NDJSON x100, preloaded topic', "bench6", True, 'c"/a'),
]


#: (label, topic prefix, messages, worker env or None, paths viewed meanwhile)
Case = tuple[str, str, list[bytes], dict[str, str] | None, tuple[str, ...]]


def on_off(what: str, off_env: dict[str, str], tag: str, n: int, rounds: int) -> None:
    """A detector's end-to-end cost: the mixed corpus (one event per message, and NDJSON
    x100) through a worker with ``off_env`` (before) and without (after), preloaded topic,
    next to the bare consumer, in ``rounds`` alternating rounds; medians and ratios."""
    envelopes, logs = mixed_events(n)
    events = single_messages(envelopes, logs)
    ndjson = ndjson_messages(envelopes, logs)
    side_by_side(
        [
            (f"(b') 1 event/message, {what} off (before)", f"{tag}b0", events, off_env, ()),
            (f"(b') 1 event/message, {what} on (after)", f"{tag}b1", events, None, ()),
            (f"(c') NDJSON x100, {what} off (before)", f"{tag}c0", ndjson, off_env, ()),
            (f"(c') NDJSON x100, {what} on (after)", f"{tag}c1", ndjson, None, ()),
        ],
        tag,
        n,
        rounds,
    )


def side_by_side(cases: list[Case], tag: str, n: int, rounds: int) -> None:
    """Every case end to end on one broker, alternating with the bare consumer in each
    round (the machines are noisy: compare within a run); medians and ratios."""
    print(
        f"3. end to end, {n:,} mixed events, preloaded topic, {rounds} rounds of "
        "(a) and every case in turn, medians:"
    )
    with EmbeddedBroker() as broker:
        raw = prepare_ceiling(broker.bootstrap, f"{tag}bench", cases[0][2])
        bare: list[float] = []
        runs: dict[str, list[float]] = {label: [] for label, *_ in cases}
        for r in range(rounds):
            bare.append(asyncio.run(bare_consumer(broker.bootstrap, raw, n, f"{tag}-bare-{r}")))
            for label, prefix, values, env, viewers in cases:
                runs[label].append(
                    vigil_end_to_end(
                        broker.bootstrap, f"{prefix}r{r}", values, n, True, env=env, viewers=viewers
                    )
                )
    a = statistics.median(bare)
    print(f"   {'(a) bare aiokafka consumer + orjson decode':48}: {a:9,.0f} events/s")
    for label, *_ in cases:
        rate = statistics.median(runs[label])
        spread = ", ".join(f"{x:,.0f}" for x in runs[label])
        print(f"   {label:48}: {rate:9,.0f} events/s  ratio {rate / a:.2f}  (runs: {spread})")


def _report(label: str, runs: list[float], ratio: str | None = None, a: float = 0.0) -> None:
    rate = statistics.median(runs)
    shown = f"  {ratio} = {rate / a:.2f}" if ratio else ""
    print(f"{label:62}: {rate:9,.0f} events/s{shown}  {_spread(runs)}", flush=True)


def main() -> None:
    envelopes, logs = mixed_events(N)
    events = single_messages(envelopes, logs)
    size = sum(map(len, events)) / len(events)
    ndjson = ndjson_messages(envelopes, logs)
    print(
        f"events: {N:,} mixed ({len(logs) / N:.0%} log-shaped, the rest every kind of "
        f"envelope; PII in 1 % of analytics) of {size:.0f} bytes on average; "
        f"{PARTITIONS} partitions; {os.cpu_count()} cores; {RUNS} rounds, each measuring (a) "
        "and every case in turn"
    )
    with EmbeddedBroker() as broker:
        raw = prepare_ceiling(broker.bootstrap, "bench", events)
        # The machine is shared and its speed drifts over minutes: each round measures the
        # ceiling and every case back to back, so the ratios compare neighbouring runs.
        ceiling_runs: list[float] = []
        case_runs: dict[str, list[float]] = {label: [] for label, *_ in CASES}
        for r in range(RUNS):
            ceiling_runs.append(
                asyncio.run(bare_consumer(broker.bootstrap, raw, N, f"bench-bare-{r}"))
            )
            for label, prefix, is_ndjson, preload, _ in CASES:
                values = ndjson if is_ndjson else events
                case_runs[label].append(
                    vigil_end_to_end(broker.bootstrap, f"{prefix}r{r}", values, N, preload)
                )
        a = statistics.median(ceiling_runs)
        _report("(a)  bare aiokafka consumer + orjson decode, preloaded topic", ceiling_runs)
        for label, _, _, _, ratio in CASES:
            _report(label, case_runs[label], ratio, a)
        # Scaling out: two workers in one consumer group on the same 2-core machine.
        for label, prefix, is_ndjson, ratio in SCALE_OUT:
            values = ndjson if is_ndjson else events
            runs = [
                vigil_end_to_end(broker.bootstrap, f"{prefix}r{i}", values, N, True, workers=2)
                for i in range(RUNS)
            ]
            _report(label, runs, ratio, a)


if __name__ == "__main__":
    main()
