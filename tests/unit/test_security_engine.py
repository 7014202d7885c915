"""The security engine's state survives a checkpoint exactly, forwarded copies count
once, and the groups stage's watermark waits for its slowest source."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import pytest

from schemas.normalize import Pseudonymizer
from streams.demo import DemoTraffic
from streams.detectors.latency.slo import load_rules
from streams.detectors.security.engine import (
    Changes,
    Forward,
    SecurityEngine,
    encode_forwards,
    encode_watermark,
)
from streams.detectors.security.rules import SecurityConfig
from streams.ingest import Ingestor
from tests.unit.test_demo_security import Rec

START_MS = 1_780_000_000_000
PARTITIONS = 3


def demo_events(seconds: int) -> list[tuple[Any, int, int]]:
    """(event, event time, partition by tenant key) of the demo with its incidents."""
    traffic = DemoTraffic(seed=5, incident_every_s=400)
    ingestor = Ingestor(Pseudonymizer(b"k"), 1 << 20, 10**12)
    out: list[tuple[Any, int, int]] = []
    for tick in range(seconds * 10):
        at = START_MS + tick * 100
        pairs = traffic.messages(10, at, tick / 10)
        records = [Rec("e", 0, i, 0, v) for i, (v, _) in enumerate(pairs)]
        result = ingestor.decode_batch(records, at + 60_000)
        for event, ts in zip(result.events, result.ts_ms, strict=True):
            out.append((event, ts, zlib.crc32(event.tenant_id.encode()) % PARTITIONS))
    return out


def forward(f: Forward, source: int, source_max: int) -> bytes:
    """One forward as the events stage sends it: a message of one record."""
    return encode_forwards([(f, source_max)], source, 1)


def reload(engine: SecurityEngine, config: SecurityConfig) -> SecurityEngine:
    fresh = SecurityEngine(config, engine.spanning, engine.expected_sources)
    fresh.load(engine.dump())
    return fresh


def run(
    events: list[tuple[Any, int, int]], config: SecurityConfig, split: int | None = None
) -> list[tuple[Any, ...]]:
    """Both stages in process; at ``split`` every engine is checkpointed and restored,
    and the forwards of the 100 events before it are delivered a second time (what an
    events partition re-sends after a restart)."""
    sources = {p: SecurityEngine(config, spanning=False) for p in range(PARTITIONS)}
    groups = SecurityEngine(config, spanning=True, sources=PARTITIONS)
    sent: list[bytes] = []
    out: list[tuple[Any, ...]] = []
    for k, (event, ts, p) in enumerate(events):
        changes: Changes = []
        if k == split:
            sources = {q: reload(e, config) for q, e in sources.items()}
            groups = reload(groups, config)
            for record in sent[-100:]:
                groups.feed_message(orjson.loads(record), changes)
        forwards: list[Forward] = []
        sources[p].feed(event, ts, changes, forwards)
        for f in forwards:
            record = forward(f, p, ts if sources[p].max_ts is None else sources[p].max_ts)
            sent.append(record)
            groups.feed_message(orjson.loads(record), changes)
        if k % 500 == 0:
            for q, e in sources.items():
                if e.max_ts is not None:
                    groups.feed_message(orjson.loads(encode_watermark(q, e.max_ts)), changes)
                e.advance(changes)
            groups.advance(changes)
        out.extend(
            (
                c.action,
                c.at_ms,
                track.correlation.name if track.correlation else "cross_tenant",
                c.episode.group,
                c.episode.peak,
                c.episode.first_event_ms,
                c.episode.last_hold_ms if c.action == "resolve" else None,
            )
            for track, c in changes
        )
    return out


@pytest.fixture(scope="module")
def events() -> list[tuple[Any, int, int]]:
    return demo_events(480)


def test_a_checkpoint_anywhere_continues_exactly(events: list[tuple[Any, int, int]]) -> None:
    config = load_rules(None).security
    whole = run(events, config)
    fired = {name for action, _, name, *_ in whole if action == "fire"}
    # the demo's incidents, in both stages (tenant-grouped here, IP/provider-grouped there)
    assert {"brute_force", "account_takeover", "user_enumeration", "cross_tenant"} <= fired
    assert {"failed_login_spike", "webhook_signature_failures"} <= fired
    assert any(action == "resolve" for action, *_ in whole)
    for split in (len(events) // 7, len(events) // 3, len(events) * 2 // 3):
        assert run(events, config, split) == whole, split


def test_the_groups_watermark_waits_for_the_slowest_source() -> None:
    config = load_rules(None).security
    groups = SecurityEngine(config, spanning=True, sources=2)
    changes: Changes = []

    def login(source: int, source_max: int, ts: int, n: int) -> bool:
        f = Forward("brute_force", ("iphash",), ts, f"e{n}", "", "203.0.113.0/24")
        return bool(groups.feed_message(orjson.loads(forward(f, source, source_max)), changes))

    assert not login(0, 100_000, 100_000, 0)
    assert not login(1, 50_000, 45_000, 1)  # 55 s behind source 0: source 1 is slower
    assert groups.watermark == 50_000 - config.grace_seconds * 1000
    assert login(1, 50_000, 30_000, 2)  # behind the slowest source's watermark: late
    groups.feed_message(orjson.loads(encode_watermark(1, 200_000)), changes)
    assert groups.watermark == 100_000 - config.grace_seconds * 1000


def test_a_forwarded_copy_counts_once() -> None:
    config = load_rules(None).security
    groups = SecurityEngine(config, spanning=True)
    changes: Changes = []
    for n in range(50):
        f = Forward("brute_force", ("iphash",), 1_000 + n, f"e{n}", "", None)
        record = orjson.loads(forward(f, 0, 1_000 + n))
        groups.feed_message(record, changes)
        groups.feed_message(record, changes)  # delivered twice
    assert changes == []  # 50 distinct failures: not more than 50
    f = Forward("brute_force", ("iphash",), 2_000, "e50", "", None)
    groups.feed_message(orjson.loads(forward(f, 0, 2_000)), changes)
    assert [c.action for _, c in changes] == ["fire"] and changes[0][1].episode.peak == 51
