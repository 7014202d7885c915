"""Per-stage and per-detector cost of the ingest hot path, in microseconds per event.

No broker and no worker: each stage runs alone on the same 20,000 mixed events (every
kind, log-shaped lines, analytics with and without PII; median of 5),
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
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from benchmarks.common import (
    latency_detector,
    mixed_events,
    ndjson_messages,
    security_detector,
    single_messages,
)
from schemas.events import EVENT_ADAPTER
from schemas.normalize import Pseudonymizer
from sinks.clickhouse import connect, is_all_default
from sinks.migrate import migrate
from streams.app import tune_gc
from streams.detectors.latency.slo import load_rules
from streams.detectors.pii.config import PiiConfig
from streams.detectors.pii.guard import PiiGuard
from streams.detectors.pii.scanner import Scanner
from streams.ingest import Ingestor
from streams.limits import JsonLimits
from streams.metrics import Metrics
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


class Unlimited(JsonLimits):
    """Shape limits that pass everything without looking: what the limits cost."""

    def fits_document(self, data: bytes) -> bool:
        return True


def detectors(client: object, metrics: Metrics) -> list[tuple[str, Callable[[Any], None]]]:
    """Every detector of the pipeline, each fed the batch as the next offsets of a
    partition (a later detector adds itself here: its budget is measured like these)."""
    latency = latency_detector(client, metrics)
    rules = load_rules(None).security
    batches = iter(range(10**9))

    def run_latency(result: Any) -> None:
        b = next(batches)
        asyncio.run(latency.process(result, SourceBatch("t", 0, b * N, b * N + N - 1, [])))

    def run_security(result: Any) -> None:
        # a fresh detector each time: fed the same events again, its windows would
        # recognise them as replayed copies and skip them (cheaper than the real thing)
        security = security_detector(metrics, rules)
        asyncio.run(security.process(result, SourceBatch("t", 0, 0, N - 1, [])))
        asyncio.run(security.tick())

    return [
        ("latency windows + SLOs", run_latency),
        ("security rules (all defaults, both stages)", run_security),
    ]


def main() -> None:
    tune_gc()  # as the worker does after start-up
    envelopes, logs = mixed_events(N)
    values = single_messages(envelopes, logs)
    records = [Record("vigil.events", 0, i, 0, v) for i, v in enumerate(values)]
    ndjson = [
        Record("vigil.events", 0, i, 0, v) for i, v in enumerate(ndjson_messages(envelopes, logs))
    ]
    pseudo = Pseudonymizer(b"bench")
    ingestor = Ingestor(pseudo, 1 << 20, 3_600_000)
    contract_only = Ingestor(pseudo, 1 << 20, 3_600_000, fast_path=False)
    unlimited = Ingestor(pseudo, 1 << 20, 3_600_000, limits=Unlimited(64, 10_000))
    now_ms = int(time.time() * 1000)
    result = ingestor.decode_batch(records, now_ms)
    assert len(result.events) == N, result.rejections[:1]
    objects = [orjson.loads(v) for v in envelopes]
    client = connect(f"chdb://{tempfile.mkdtemp(prefix='vigil-hotpath-')}", "vigil")
    migrate(client, "vigil", 3650)
    registry_metrics = Metrics(CollectorRegistry())
    guard = PiiGuard(Scanner(b"bench"), PiiConfig(), registry_metrics)
    guard.apply(result)  # what the detectors and the columns see: redacted events
    columns = result.columns()
    sent = {k: v for k, v in columns.items() if not is_all_default(v)}  # as the writer does
    block = orjson.dumps(sent)
    counter = iter(range(10**9))

    def insert() -> None:
        client.raw_insert(
            "vigil.events",
            column_names=list(sent),
            insert_block=block,
            fmt="JSONColumns",
            settings={"insert_deduplication_token": f"t{next(counter)}"},
        )

    stages: list[tuple[str, Callable[[], object]]] = [
        ("orjson.loads (reference)", lambda: [orjson.loads(v) for v in values]),
        (
            "pydantic validate_python, envelopes (reference)",
            lambda: [EVENT_ADAPTER.validate_python(o) for o in objects],
        ),
        ("decode, 1 event/message", lambda: ingestor.decode_batch(records, now_ms)),
        ("  the same without shape limits", lambda: unlimited.decode_batch(records, now_ms)),
        ("decode, NDJSON x100", lambda: ingestor.decode_batch(ndjson, now_ms)),
        ("  the same without shape limits", lambda: unlimited.decode_batch(ndjson, now_ms)),
        ("decode, contract path only", lambda: contract_only.decode_batch(records, now_ms)),
        ("PII guard (scan + redact)", lambda: guard.scan(result)),
        *[
            (f"detector: {name}", lambda run=run: run(result))  # type: ignore[misc]
            for name, run in detectors(client, registry_metrics)
        ],
        ("event columns", result.columns),
        ("JSONColumns block (orjson)", lambda: orjson.dumps(sent)),
        ("chDB INSERT of the block (wall)", insert),
    ]
    kinds = len({e.kind for e in result.events})
    print(
        f"hot path, {N:,} mixed events ({kinds} kinds, {len(logs) / N:.0%} log-shaped, "
        "PII in 1 % of analytics), median of 5, microseconds per event:"
    )
    for label, fn in stages:
        print(f"  {label:48}: {per_event_us(fn):6.2f} us", flush=True)
    client.close()


if __name__ == "__main__":
    main()
