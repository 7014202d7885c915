"""PII end to end: a real worker, a real broker, a real chDB engine. The raw values are
found, alerted on, and appear nowhere: not in any table, not on the alerts or the
dead-letter topic, not in the worker's log."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from streams.broker import EmbeddedBroker
from tests.integration.kafka_helpers import consume_all, produce
from tests.integration.test_worker import metric, wait_for

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)
RAW = {
    "email": "jane.roe@example.com",
    "card": "4111111111111111",
    "cpf": "529.982.247-25",
    "password": "correct-horse-battery",
    "phone": "+55 11 98765-4321",
    "key_email": "keyholder@example.org",
    "route_email": "ana.silva@example.net",
    "dlq_ssn": "078-05-1120",
}


def analytics(i: int) -> dict[str, Any]:
    return {
        "event_id": f"pii-{i}",
        "ts": NOW_MS - 5_000 + i,
        "tenant_id": "acme",
        "kind": "analytics",
        "service": "web",
        "event_name": "registration.profile_completed",
        "properties": {
            "note": f"please call me back at {RAW['email']}",
            "billing": {"card": int(RAW["card"]), "docs": ["ok", f"cpf {RAW['cpf']}"]},
            "password": RAW["password"],
            "contacts": {RAW["key_email"]: {"phone": RAW["phone"]}},
            "plan": "pro",
        },
    }


def test_pii_is_found_alerted_and_stored_nowhere_raw(
    broker: EmbeddedBroker, prefix: str, worker_for: Any
) -> None:
    worker = worker_for(broker.bootstrap, prefix)
    worker.start()
    http = {
        "event_id": "h1",
        "ts": NOW_MS - 1_000,
        "tenant_id": "acme",
        "kind": "http.request",
        "service": "api",
        "method": "GET",
        "route": f"/v1/search?q={RAW['route_email']}",
        "status": 200,
        "duration_ms": 12.0,
    }
    broken = b'{"kind": "analytics", "note": "ssn ' + RAW["dlq_ssn"].encode() + b'"'  # not JSON
    values = [orjson.dumps(analytics(i)) for i in range(3)] + [orjson.dumps(http), broken]
    asyncio.run(produce(broker.bootstrap, f"{prefix}.events", values))
    wait_for(lambda: worker.query("SELECT count() FROM vigil.events")[0][0] >= 4)
    wait_for(lambda: worker.query("SELECT count() FROM vigil.dead_letters")[0][0] >= 1)

    found = worker.query(
        "SELECT entity, json_path, count() FROM vigil.pii_findings "
        "GROUP BY entity, json_path ORDER BY entity, json_path"
    )
    assert [tuple(r) for r in found] == [
        ("BR_CPF", "$.properties.billing.docs[1]", 3),
        ("CREDIT_CARD", "$.properties.billing.card", 3),
        ("EMAIL", "$.properties.contacts.[#0]#key", 3),
        ("EMAIL", "$.properties.note", 3),
        ("EMAIL", "$.route", 1),
        ("PHONE", "$.properties.contacts.[#0].phone", 3),
        ("SENSITIVE_FIELD", "$.properties.password", 3),
    ]
    stored = orjson.loads(
        worker.query("SELECT properties FROM vigil.events WHERE event_id = 'pii-0'")[0][0]
    )
    assert stored["note"] == "please call me back at [REDACTED:EMAIL]"
    assert stored["billing"] == {
        "card": "[REDACTED:CREDIT_CARD]",
        "docs": ["ok", "cpf [REDACTED:BR_CPF]"],
    }
    assert stored["plan"] == "pro"
    route = worker.query("SELECT route FROM vigil.events WHERE event_id = 'h1'")[0][0]
    assert route == "/v1/search?q=[REDACTED:EMAIL]"

    wait_for(lambda: worker.query("SELECT count() FROM vigil.alerts")[0][0] >= 6)
    alerts = [
        orjson.loads(r.value)
        for r in asyncio.run(consume_all(broker.bootstrap, f"{prefix}.alerts", 6))
    ]
    pii = [a["data"] for a in alerts if a["data"]["alertname"] == "PIILeakageDetected"]
    assert {(a["labels"]["entity"], a["labels"]["json_path"]) for a in pii} >= {
        ("EMAIL", "$.properties.note"),
        ("CREDIT_CARD", "$.properties.billing.card"),
        ("EMAIL", "$.route"),
    }
    assert all(a["severity"] == "critical" and a["auto_rollback"] for a in pii)
    assert all(a["labels"]["tenant_id"] == "acme" for a in pii)
    assert metric(worker.metrics_text(), "vigil_pii_findings_total") == 19

    dlq = asyncio.run(consume_all(broker.bootstrap, f"{prefix}.events.dlq", 1))
    assert len(dlq) == 1
    assert dict(dlq[0].headers)["vigil.pii.redacted"] == b"US_SSN"

    # the raw values, anywhere
    tables = [r[0] for r in worker.query("SELECT name FROM system.tables WHERE database = 'vigil'")]
    dumps = {t: orjson.dumps(worker.query(f"SELECT * FROM vigil.`{t}`")).decode() for t in tables}
    topics = {
        "alerts": b"".join(
            r.value for r in asyncio.run(consume_all(broker.bootstrap, f"{prefix}.alerts", 1))
        ),
        "dlq": b"".join(r.value + b"".join(v for _, v in r.headers) for r in dlq),
    }
    worker.stop()
    log = worker.log.read_text()
    for name, raw in RAW.items():
        for table, dump in dumps.items():
            assert raw not in dump, f"{name} in table {table}"
        for topic, data in topics.items():
            assert raw.encode() not in data, f"{name} on the {topic} topic"
        assert raw not in log, f"{name} in the worker log"
    assert "events" in dumps and "pii_findings" in dumps  # the grep looked where it matters
