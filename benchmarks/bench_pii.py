"""The PII scanner, measured (issue 4); prints figures, asserts nothing.

1. Scan throughput on realistic analytics payloads (funnel events with UTM parameters,
   devices, free-text comments; 1 % carry PII), MB/s and events/s, for the engine Vigil
   uses (Hyperscan, one pass per batch) side by side with RE2 sets and with a baseline
   loop of Python ``re`` patterns doing the same detection (same patterns, validators).
2. End-to-end ingest of the same events through a worker, scanner on vs off.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from typing import Any

import orjson

from benchmarks.bench_ingest import vigil_end_to_end
from streams.broker import EmbeddedBroker
from streams.detectors.pii.scanner import Scanner

N = int(os.environ.get("BENCH_PII_EVENTS", "20000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
FUNNEL = (
    "auth.user_registered",
    "auth.email_verified",
    "registration.profile_completed",
    "documents.upload_complete",
)
PII = (
    "reach me at maria.souza@example.com",
    "my card 4111 1111 1111 1111 was charged twice",
    "meu cpf é 529.982.247-25",
    "call +44 20 7946 0958 after 5pm",
)


def payloads(n: int, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        props: dict[str, Any] = {
            "step": rng.randrange(1, 8),
            "plan": rng.choice(["free", "pro", "enterprise"]),
            "utm": {
                "source": rng.choice(["google", "newsletter", "partner"]),
                "campaign": f"spring-{rng.randrange(2024, 2027)}-{rng.randrange(100)}",
            },
            "device": {"os": rng.choice(["ios", "android", "macos"]), "version": "17.4.1"},
            "request_id": f"{rng.getrandbits(64):016x}",
            "duration_ms": rng.randrange(20, 4000),
            "comment": rng.choice(["", "all good", "the upload took a while", "thanks!"]),
        }
        if rng.random() < 0.01:
            props["comment"] = rng.choice(PII)
        out.append(
            {
                "event_id": f"a{i}",
                "ts": int(time.time() * 1000) - (n - i),
                "tenant_id": f"tenant-{i % 20:02d}",
                "kind": "analytics",
                "service": "web",
                "event_name": rng.choice(FUNNEL),
                "properties": props,
            }
        )
    return out


def scan_throughput(events: list[dict[str, Any]]) -> None:
    documents = [(e["properties"], "$.properties") for e in events]
    size = sum(len(orjson.dumps(e["properties"])) for e in events)
    print(
        f"scan: {len(events):,} analytics payloads, {size / len(events):.0f} bytes of "
        "properties on average, 1 % with PII; batches of 1,000 (median of 5)"
    )
    rates: dict[str, float] = {}
    for engine in ("hyperscan", "re2", "re"):
        scanner = Scanner(b"bench", engine)
        found = 0
        times = []
        for _ in range(5):
            started = time.perf_counter()
            found = 0
            for i in range(0, len(documents), 1000):
                found += sum(map(len, scanner.scan_documents(documents[i : i + 1000])))
            times.append(time.perf_counter() - started)
        elapsed = statistics.median(times)
        rates[engine] = len(events) / elapsed
        print(
            f"  {engine:10}: {size / elapsed / 2**20:7.1f} MB/s  {len(events) / elapsed:10,.0f} "
            f"events/s  ({found} findings)"
        )
    print(
        f"  hyperscan / python re = {rates['hyperscan'] / rates['re']:.1f}x, "
        f"re2 / python re = {rates['re2'] / rates['re']:.1f}x"
    )


def end_to_end(events: list[dict[str, Any]]) -> None:
    values = [orjson.dumps(e) for e in events]
    with EmbeddedBroker() as broker:
        for label, env in (("scanner on ", {}), ("scanner off", {"VIGIL_PII_SCAN": "false"})):
            runs = [
                vigil_end_to_end(
                    broker.bootstrap,
                    f"pii{i}{label[-3:].strip()}",
                    values,
                    len(values),
                    True,
                    env=env,
                )
                for i in range(RUNS)
            ]
            rate = statistics.median(runs)
            print(f"end to end, 1 event/message, preloaded, {label}: {rate:9,.0f} events/s")


def main() -> None:
    events = payloads(N)
    scan_throughput(events)
    end_to_end(events)


if __name__ == "__main__":
    main()
