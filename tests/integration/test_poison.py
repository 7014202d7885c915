"""Poison messages cost exactly themselves: an adversarial corpus through the real broker
to a real worker, every message with its expected outcome (the oracle)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.normalize import Pseudonymizer
from streams.broker import EmbeddedBroker
from streams.worker_proc import WorkerProcess, get_json
from tests.conftest import TEST_KEY
from tests.integration.test_worker import metric, wait_for

pytestmark = pytest.mark.integration
NOW_MS = int(time.time() * 1000)
MAX_MESSAGE = 1 << 20  # VIGIL_MAX_MESSAGE_BYTES (the default)
DLQ_MAX = 262_144  # VIGIL_DLQ_MAX_PAYLOAD_BYTES (the default)
PSEUDO = Pseudonymizer(TEST_KEY)
PARTITIONS = 2

#: what happens to one record, or one line of it: ("stored", event_id) or ("dlq", class)
Outcome = tuple[str, str]


@dataclass
class Case:
    name: str
    value: bytes | None
    #: line (0: the whole record) -> outcome
    expect: dict[int, Outcome]
    partition: int = 0
    offset: int = -1
    tenant: str = "acme"


def event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"ok-{n}",
        "ts": NOW_MS - 30_000 + n,
        "tenant_id": "acme",
        "service": "api",
        "kind": "http.request",
        "method": "GET",
        "route": "/v1/things",
        "status": 200,
        "duration_ms": 12.5,
        **extra,
    }


def stored(n: int) -> dict[int, Outcome]:
    return {0: ("stored", f"ok-{n}")}


def dlq(reason: str) -> dict[int, Outcome]:
    return {0: ("dlq", reason)}


def deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


DEEP_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000
TWO_MIB = b'{"pad": "' + b"x" * (2 << 20) + b'"}'  # 2x the broker's default message limit
JUST_OVER = b'{"pad": "' + b"y" * (MAX_MESSAGE - 11 + 1) + b'"}'


def corpus(seed: int) -> list[Case]:
    """The adversarial messages, each with its expected outcome, among valid events."""
    no_id = {k: v for k, v in event(0).items() if k != "event_id"}
    no_id_bytes = orjson.dumps({**no_id, "route": "/no-id"})
    bad_ndjson_lines = [
        orjson.dumps(event(900)),
        b"{oops",
        orjson.dumps(event(901)),
        orjson.dumps(event(902, kind="mystery")),
        deep_array(100),
        orjson.dumps({**no_id, "route": "/no-id-line"}),
    ]
    duplicate = orjson.dumps(event(903))[:-1] + b',"tenant_id":"globex","status":503}'
    duplicate_bad = orjson.dumps(event(904))[:-1] + b',"status":"x"}'
    analytics = {**event(905), "kind": "analytics", "event_name": "big.number"}
    big_number = orjson.dumps({**analytics, "properties": {"n": 1}}).replace(
        b'"n":1', b'"n":' + str(10**30).encode()
    )
    many_items = orjson.dumps({**analytics, "event_id": "x", "properties": {"a": [0] * 20_000}})
    adversarial = [
        Case("2 MiB message", TWO_MIB, dlq("too_large")),
        Case("just over the size limit", JUST_OVER, dlq("too_large")),
        Case("5000-deep array", deep_array(5000), dlq("too_deep")),
        Case("5000 openers, unclosed", b"[" * 5000, dlq("too_deep")),
        Case("3000-deep object", DEEP_OBJECT, dlq("too_deep")),
        Case("20,000 items", many_items, dlq("too_many_items")),
        Case("invalid UTF-8", orjson.dumps(event(906)).replace(b"GET", b"G\xffT"), dlq("not_json")),
        Case("NaN", orjson.dumps(event(907)).replace(b"12.5", b"NaN"), dlq("not_json")),
        Case("Infinity", orjson.dumps(event(908)).replace(b"12.5", b"Infinity"), dlq("not_json")),
        Case(
            "huge integer field",
            orjson.dumps(event(909, status=1)).replace(
                b'"status":1', b'"status":' + str(10**30).encode()
            ),
            dlq("schema_violation"),
        ),
        Case("huge integer in properties", big_number, stored(905)),
        Case("empty message", b"", dlq("not_json")),
        Case("null value", None, dlq("not_json")),
        Case("whitespace", b" \n\t ", dlq("not_json")),
        Case("duplicate keys: the last wins", duplicate, stored(903), tenant="globex"),
        Case("duplicate keys: the last is invalid", duplicate_bad, dlq("schema_violation")),
        Case("no event_id", no_id_bytes, {0: ("stored", PSEUDO.event_id(no_id_bytes))}),
        Case(
            "NDJSON with bad lines",
            b"\n".join(bad_ndjson_lines),
            {
                1: ("stored", "ok-900"),
                2: ("dlq", "not_json"),
                3: ("stored", "ok-901"),
                4: ("dlq", "unknown_kind"),
                5: ("dlq", "too_deep"),
                6: ("stored", PSEUDO.event_id(bad_ndjson_lines[5])),
            },
        ),
    ]
    valid = [Case(f"valid {n}", orjson.dumps(event(n)), stored(n)) for n in range(300)]
    rng = random.Random(seed)
    cases = valid + adversarial
    rng.shuffle(cases)
    for i, case in enumerate(cases):
        case.partition = i % PARTITIONS
    return cases


async def send_all(bootstrap: str, topic: str, cases: list[Case]) -> None:
    """Produce every case in one go (so they share fetched batches); note offsets."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_request_size=8 << 20,
        max_batch_size=4 << 20,
        enable_idempotence=False,
    )
    await producer.start()
    try:
        deliveries = [
            await producer.send(topic, c.value, key=c.tenant.encode(), partition=c.partition)
            for c in cases
        ]
        for case, delivery in zip(cases, deliveries, strict=True):
            case.offset = (await delivery).offset
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, expected: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + 90
        while len(out) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
        for records in (await consumer.getmany(timeout_ms=1500)).values():
            out.extend(records)  # anything beyond the expected count
    finally:
        await consumer.stop()
    return out


async def offsets(bootstrap: str, topic: str, group: str) -> tuple[dict[int, int], dict[int, int]]:
    """(high watermark from a fetch, committed offset of ``group``) per partition. The
    embedded broker answers ListOffsets wrongly, so the high watermark is read from the
    fetch responses of a consumer that reads the partitions to the end."""
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20
    )
    await reader.start()
    try:
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        highwater: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while len(highwater) < PARTITIONS and time.monotonic() < deadline:
            await reader.getmany(timeout_ms=300)
            for tp in tps:
                hw = reader.highwater(tp)
                if hw is not None and await reader.position(tp) >= hw:
                    highwater[tp.partition] = hw
    finally:
        await reader.stop()
    member = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await member.start()
    try:
        member.assign(tps)  # no group join: only reads the group's committed offsets
        committed = {tp.partition: await member.committed(tp) for tp in tps}
    finally:
        await member.stop()
    return highwater, {p: int(o) if o is not None else -1 for p, o in committed.items()}


@dataclass
class Expected:
    stored: Counter[tuple[str, str]] = field(default_factory=Counter)  # (event_id, tenant)
    dead: Counter[tuple[int, int, int, str]] = field(default_factory=Counter)

    def add(self, cases: list[Case]) -> None:
        for case in cases:
            for line, (what, detail) in case.expect.items():
                if what == "stored":
                    self.stored[(detail, case.tenant)] += 1
                else:
                    self.dead[(case.partition, case.offset, line, detail)] += 1


def test_an_adversarial_corpus_costs_exactly_its_bad_records(
    broker: EmbeddedBroker, prefix: str, worker_for: Any
) -> None:
    worker: WorkerProcess = worker_for(broker.bootstrap, prefix, VIGIL_COMMIT_INTERVAL_S="0.5")
    worker.start()
    topic = f"{prefix}.events"
    expected = Expected()

    # first each poison pill alone in its batch, then everything interleaved
    alone = [
        Case("2 MiB alone", TWO_MIB, dlq("too_large")),
        Case("5000-deep alone", deep_array(5000), dlq("too_deep")),
    ]
    for case in alone:
        asyncio.run(send_all(broker.bootstrap, topic, [case]))
        expected.add([case])
        dead_so_far = sum(expected.dead.values())
        wait_for(lambda: dead_letter_count(worker) >= dead_so_far)  # noqa: B023
    cases = corpus(seed=11)
    asyncio.run(send_all(broker.bootstrap, topic, cases))
    expected.add(cases)
    wait_for(
        lambda: (
            scalar(worker, "SELECT count() FROM vigil.events") >= sum(expected.stored.values())
            and dead_letter_count(worker) >= sum(expected.dead.values())
        )
    )
    time.sleep(2)  # anything extra would have arrived by now

    # rows: exactly the expected events, each once
    rows = worker.query("SELECT event_id, tenant_id FROM vigil.events")
    assert Counter((e, t) for e, t in rows) == expected.stored
    # dead letters, in the table and on the topic: exactly the expected ones, classified
    table = worker.query(
        "SELECT src_partition, src_offset, src_line, reason FROM vigil.dead_letters"
    )
    assert Counter(tuple(r) for r in table) == expected.dead
    n_dead = sum(expected.dead.values())
    messages = asyncio.run(read_topic(broker.bootstrap, f"{prefix}.events.dlq", n_dead))
    headers = [{k: v.decode() for k, v in m.headers} for m in messages]
    on_topic = Counter(
        (
            int(h["vigil.source.partition"]),
            int(h["vigil.source.offset"]),
            int(h["vigil.source.line"]),
            h["vigil.error.class"],
        )
        for h in headers
    )
    assert on_topic == expected.dead
    assert all(len(m.value) <= DLQ_MAX for m in messages)
    big = [h for h in headers if h["vigil.payload.size"] == str(len(TWO_MIB))]
    assert len(big) == 2 and all(h["vigil.payload.truncated"] == "true" for h in big)
    assert all(
        h["vigil.payload.truncated"] == "false"
        for h in headers
        if h not in big and int(h["vigil.payload.size"]) <= DLQ_MAX
    )

    # the agent never restarted and nothing needed the last-resort handler
    log = worker.log.read_text(errors="replace")
    assert "Traceback" not in log and "crashed" not in log.lower(), log[-3000:]
    text = worker.metrics_text()
    assert metric(text, "vigil_stage_errors_total") == 0
    assert metric(text, "vigil_detector_errors_total") == 0  # input faults are not theirs
    health = get_json(f"{worker.base_url}/healthz")
    assert health is not None and health["status"] == "ok", health
    assert set(health["detectors"]) >= {"latency", "pii"}
    assert metric(text, "vigil_dlq_messages_total") == n_dead

    # offsets committed past every poison pill, up to the fetch high watermark
    group = f"{prefix}-group"

    def committed_to_the_end() -> bool:
        high, committed = asyncio.run(offsets(broker.bootstrap, topic, group))
        return len(high) == PARTITIONS and committed == high

    wait_for(committed_to_the_end, timeout_s=30)


def scalar(worker: WorkerProcess, sql: str) -> Any:
    return worker.query(sql)[0][0]


def dead_letter_count(worker: WorkerProcess) -> int:
    return int(scalar(worker, "SELECT count() FROM vigil.dead_letters"))


def test_the_corpus_oracle_is_consistent() -> None:
    """Every case says what becomes of each of its lines, and NDJSON cases cover every
    line (a guard on the oracle itself)."""
    for case in corpus(seed=11):
        if case.value and b"\n" in case.value.strip():
            assert sorted(case.expect) == list(range(1, case.value.count(b"\n") + 2))
        else:
            assert list(case.expect) == [0], case.name
    assert json.loads(JUST_OVER) and len(JUST_OVER) == MAX_MESSAGE + 1
