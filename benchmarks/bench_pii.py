"""The PII scanner, measured (issues 4 and 18); prints figures, asserts nothing.

1. Scan throughput on realistic analytics payloads (funnel events with UTM parameters,
   devices, free-text comments; 1 % carry PII), MB/s, events/s and µs/event, for the engine
   Vigil uses (Hyperscan, one pass per batch) side by side with RE2 sets and with a
   baseline loop of Python ``re`` patterns doing the same detection.
2. Cost of the pattern database: compile time (no cache), load time (from the cache),
   its size, and the memory a scanner adds to a process.
3. Quality on the labelled corpus (``tests/pii_corpus.py``) and, side by side in this run,
   ``detect-secrets`` on the same secret lines: precision, recall, lines/s.
4. False positives per million events of clean demo traffic (no incidents), through the
   PII guard as the worker runs it.
5. End-to-end ingest of the same events through a worker, scanner on vs off.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.bench_ingest import vigil_end_to_end
from streams.app import tune_gc
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
        tune_gc()  # as the worker does after start-up (the dictionaries out of GC passes)
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
            f"events/s  {elapsed / len(events) * 1e6:6.2f} µs/event  ({found} findings)"
        )
    print(
        f"  hyperscan / python re = {rates['hyperscan'] / rates['re']:.1f}x, "
        f"re2 / python re = {rates['re2'] / rates['re']:.1f}x"
    )


#: the process's peak resident memory (VmHWM: the high-water mark of this process image;
#: ru_maxrss would carry the parent's over from before exec)
_RSS = "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"


def _peak_rss_mb(code: str, home: str | None = None) -> float:
    import subprocess
    import sys

    env = dict(os.environ, HOME=home) if home else None
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{_RSS}"], capture_output=True, text=True, check=True,
        env=env,
    )  # fmt: skip
    return int(out.stdout.split()[-1]) / 1024


def database_cost() -> None:
    """Compile time without a cache, load time from it, database size, and the peak
    memory of a process that builds a scanner (loaded from the cache, and compiling it)
    over one that only imports the libraries the scanner uses."""
    import hyperscan

    from streams.detectors.pii import scanner as module

    module._COMPILED.clear()
    cache = module.Path.home() / ".cache" / "vigil"
    moved = [(p, p.with_suffix(".bench")) for p in cache.glob("pii-*.hsdb")]
    for old, new in moved:
        old.rename(new)
    started = time.perf_counter()
    fresh = Scanner(b"bench")
    compiled_s = time.perf_counter() - started
    module._COMPILED.clear()
    started = time.perf_counter()
    Scanner(b"bench")
    loaded_s = time.perf_counter() - started
    for old, new in moved:
        if new.exists() and not old.exists():
            new.rename(old)
    size = len(hyperscan.dumpb(fresh._engine._db))
    base = _peak_rss_mb("import hyperscan, re2, msgspec, phonenumbers, orjson")
    scanner = "from streams.detectors.pii.scanner import Scanner; Scanner(b'x')"
    loaded = _peak_rss_mb(scanner)
    with tempfile.TemporaryDirectory() as empty_home:  # no cache: it compiles
        compiling = _peak_rss_mb(scanner, empty_home)
    print(
        f"pattern database: {len(module._PATTERNS)} patterns + {len(module._LITERALS):,} "
        f"dictionary literals; compile {compiled_s:.2f} s (no cache), load {loaded_s:.2f} s "
        f"(~/.cache/vigil); database {size / 2**20:.1f} MiB; peak memory of a process "
        f"+{loaded - base:.0f} MiB with a scanner loaded from the cache, +{compiling - base:.0f}"
        " MiB while compiling it"
    )


def secrets_side_by_side() -> None:
    """Vigil and detect-secrets on the same lines: the secret samples of the corpus (vendor
    tokens, key=value secrets, JWTs, private keys, ...) and its hard negatives."""
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    from tests.pii_corpus import VENDOR_SECRETS, negatives, positives

    secret_entities = set(VENDOR_SECRETS) | {"AWS_ACCESS_KEY", "JWT", "PRIVATE_KEY", "BEARER_TOKEN",
                                            "API_KEY"}  # fmt: skip
    samples = [s for s in positives() if s.spans[0][2] in secret_entities]
    lines = [s.text.replace("\n", " ") for s in samples]
    hard = [s.text.replace("\n", " ") for s in negatives()]
    every = lines + hard
    scanner = Scanner(b"bench")
    started = time.perf_counter()
    ours: list[bool] = []
    for i in range(0, len(every), 1000):
        ours += [bool(f) for f in scanner.scan_many([(t, "$", "") for t in every[i : i + 1000]])]
    ours_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/corpus.txt"
        Path(path).write_text("\n".join(every) + "\n")
        with default_settings():  # every plugin and filter of its default configuration
            started = time.perf_counter()
            # per line, as its scan reports them (a baseline file would merge the lines
            # that hold the same secret value)
            flagged = {secret.line_number - 1 for secret in scan_file(path)}
            theirs_s = time.perf_counter() - started
    theirs = [i in flagged for i in range(len(every))]
    print(
        f"secrets side by side: {len(lines):,} secret lines of {len(secret_entities)} kinds, "
        f"{len(hard):,} hard negatives (line level: a line with any finding)"
    )
    for name, found, elapsed in (("vigil", ours, ours_s), ("detect-secrets", theirs, theirs_s)):
        tp = sum(found[: len(lines)])
        fp = sum(found[len(lines) :])
        print(
            f"  {name:15}: recall {tp / len(lines):7.2%}  precision {tp / max(tp + fp, 1):7.2%}"
            f"  ({fp} hard negatives flagged)  {len(every) / elapsed:10,.0f} lines/s"
        )
    by_kind: dict[str, list[int]] = {}
    for sample, mine, other in zip(samples, ours, theirs, strict=False):
        counts = by_kind.setdefault(sample.spans[0][2], [0, 0, 0])
        counts[0] += 1
        counts[1] += mine
        counts[2] += other
    print("  recall by kind (vigil / detect-secrets): " + ", ".join(
        f"{k} {c[1] / c[0]:.0%}/{c[2] / c[0]:.0%}" for k, c in sorted(by_kind.items())
    ))  # fmt: skip


def demo_false_positives(n: int = 200_000) -> None:
    """Findings per million events of clean demo traffic, through the guard."""
    from prometheus_client import CollectorRegistry

    from benchmarks.bench_hotpath import Record
    from schemas.normalize import Pseudonymizer
    from streams.demo import DemoTraffic
    from streams.detectors.pii.config import PiiConfig
    from streams.detectors.pii.guard import PiiGuard
    from streams.ingest import Ingestor
    from streams.metrics import Metrics

    traffic = DemoTraffic(seed=11, incident_every_s=None)
    ingestor = Ingestor(Pseudonymizer(b"bench"), 1 << 20, 3_600_000)
    guard = PiiGuard(Scanner(b"bench"), PiiConfig(), Metrics(CollectorRegistry()))
    now_ms = int(time.time() * 1000)
    events = 0
    found: dict[str, int] = {}
    elapsed = 0.0
    offset = 0
    while events < n:
        values = [v for v, _ in traffic.messages(500, now_ms, elapsed)]
        records = [Record("vigil.events", 0, offset + i, 0, v) for i, v in enumerate(values)]
        offset += len(records)
        result = ingestor.decode_batch(records, now_ms)
        events += len(result.events)
        for d in guard.scan(result)[1]:
            found[d.finding.entity] = found.get(d.finding.entity, 0) + 1
        now_ms += 1000
        elapsed += 1.0
    total = sum(found.values())
    print(
        f"clean demo traffic: {events:,} events, {total} findings = "
        f"{total / events * 1e6:.1f} per million events {found or ''}"
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
    database_cost()
    scan_throughput(events)
    secrets_side_by_side()
    demo_false_positives()
    from tests.pii_corpus import report

    print("labelled corpus (python -m tests.pii_corpus):")
    print(report(Scanner(b"bench")))
    end_to_end(events)


if __name__ == "__main__":
    main()
