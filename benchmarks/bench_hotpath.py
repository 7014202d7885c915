"""Per-stage cost of the ingest hot path, in microseconds per event, in this process.

No broker and no worker: each stage runs alone on the same 20,000 events (median of 5),
so a change to one stage shows up here before it is lost in the noise of the end-to-end
benchmark. Run with `make bench`.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from prometheus_client import CollectorRegistry

from benchmarks.common import http_events, latency_detector
from schemas.events import EVENT_ADAPTER
from schemas.fastpath import decode_fast
from schemas.normalize import Pseudonymizer
from sinks.clickhouse import connect, is_all_default
from sinks.migrate import migrate
from streams.app import tune_gc
from streams.ingest import Ingestor
from streams.metrics import Metrics
from streams.pii.config import PiiConfig
from streams.pii.guard import PiiGuard
from streams.pii.scanner import Scanner
from streams.transport import SourceBatch

N = 20_000


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes


def per_event_us(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) / N * 1e6)
    return statistics.median(times)


def main() -> None:
    tune_gc()  # as the worker does after start-up
    values = http_events(N)
    records = [Record("vigil.events", 0, i, 0, v) for i, v in enumerate(values)]
    ndjson = [
        Record("vigil.events", 0, i, 0, b"\n".join(values[i * 100 : (i + 1) * 100]))
        for i in range(N // 100)
    ]
    ingestor = Ingestor(Pseudonymizer(b"bench"), 1 << 20, 3_600_000)
    now_ms = int(time.time() * 1000)
    result = ingestor.decode_batch(records, now_ms)
    assert len(result.events) == N, result.rejections[:1]
    objects = [orjson.loads(v) for v in values]
    columns = result.columns()
    sent = {k: v for k, v in columns.items() if not is_all_default(v)}  # as the writer does
    block = orjson.dumps(sent)
    client = connect(f"chdb://{tempfile.mkdtemp(prefix='vigil-hotpath-')}", "vigil")
    migrate(client, "vigil", 3650)
    counter = iter(range(10**9))

    def insert() -> None:
        client.raw_insert(
            "vigil.events",
            column_names=list(sent),
            insert_block=block,
            fmt="JSONColumns",
            settings={"insert_deduplication_token": f"t{next(counter)}"},
        )

    registry_metrics = Metrics(CollectorRegistry())
    guard = PiiGuard(Scanner(b"bench"), PiiConfig(), registry_metrics)
    latency = latency_detector(client, registry_metrics)
    batches = iter(range(10**9))

    def detect() -> None:
        """The latency detector on the batch, as the next offsets of a partition."""
        b = next(batches)
        asyncio.run(latency.process(result, SourceBatch("t", 0, b * N, b * N + N - 1, [])))

    stages = [
        ("orjson.loads", lambda: [orjson.loads(v) for v in values]),
        (
            "pydantic validate_python (contract path)",
            lambda: [EVENT_ADAPTER.validate_python(o) for o in objects],
        ),
        ("msgspec fast path (decode_fast)", lambda: [decode_fast(v) for v in values]),
        ("Ingestor.decode_batch, 1 event/message", lambda: ingestor.decode_batch(records, now_ms)),
        ("Ingestor.decode_batch, NDJSON x100", lambda: ingestor.decode_batch(ndjson, now_ms)),
        ("PiiGuard.apply (route of every event)", lambda: guard.apply(result)),
        ("LatencyDetector.process", detect),
        ("event_columns", result.columns),
        ("orjson.dumps of the JSONColumns block", lambda: orjson.dumps(sent)),
        ("chDB INSERT of the block (wall)", insert),
    ]
    print(f"hot path, {N:,} http.request events, median of 5, microseconds per event:")
    for label, fn in stages:
        print(f"  {label:44}: {per_event_us(fn):6.2f} us")
    client.close()


if __name__ == "__main__":
    main()
