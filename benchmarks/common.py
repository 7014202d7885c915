"""Helpers shared by the benchmarks: a broker, a worker subprocess, payloads."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

import orjson

from sinks.clickhouse import ClickHouseWriter
from streams.alerting import AlertPublisher
from streams.detectors.latency.detector import LatencyDetector
from streams.detectors.latency.sketch import gamma_for
from streams.detectors.latency.slo import load_rules
from streams.detectors.security.detector import SecurityDetector
from streams.detectors.security.rules import SecurityConfig
from streams.gate import CommitGate
from streams.metrics import Metrics
from streams.procs import free_port
from streams.worker_proc import WorkerProcess, worker_env

ROOT = Path(__file__).resolve().parent.parent


def http_events(n: int, seed: int = 1, tenants: int = 20, routes: int = 50) -> list[bytes]:
    """``n`` http.request events of ~300 bytes with log-normal latencies."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(n):
        tenant = f"tenant-{rng.randrange(tenants):03d}"
        out.append(
            orjson.dumps(
                {
                    "event_id": f"{seed:04d}-{i:012d}-{rng.getrandbits(48):012x}",
                    "ts": now_ms - (n - i) // 100,
                    "tenant_id": tenant,
                    "kind": "http.request",
                    "service": "api",
                    "trace_id": f"{rng.getrandbits(128):032x}",
                    "span_id": f"{rng.getrandbits(64):016x}",
                    "schema_version": 1,
                    "method": "GET",
                    "route": f"/v1/resource-{rng.randrange(routes)}/{{id}}",
                    "status": 200 if rng.random() > 0.02 else 503,
                    "duration_ms": round(rng.lognormvariate(4.0, 0.6), 3),
                    "user_id_hash": f"{rng.getrandbits(128):032x}",
                }
            )
        )
    return out


#: (kind, share) of the mixed corpus's envelope events; log-shaped lines take LOG_SHARE
MIX: tuple[tuple[str, float], ...] = (
    ("http.request", 0.66),
    ("analytics", 0.18),
    ("security.auth_failure", 0.04),
    ("security.auth_success", 0.03),
    ("security.webhook_signature", 0.02),
    ("security.access_denied", 0.012),
    ("security.input_validation", 0.006),
    ("security.tenant_violation", 0.002),
)
LOG_SHARE = 0.05  # lines in the platform's structured-log shape (the contract path)
PII_SHARE = 0.01  # analytics events whose free text holds an e-mail address


#: share of HTTP requests labelled with a release and cohort (10 % of them canary)
CANARIED_SHARE = 0.25


def mixed_events(n: int, seed: int = 1, tenants: int = 20) -> tuple[list[bytes], list[bytes]]:
    """``n`` events as production sends them: (envelopes, log-shaped lines).

    Mostly ``http.request``, analytics with properties (1 % of them holding PII),
    security events of every kind, and 5 % structured-log lines, which the fast path
    leaves to the contract path. Log lines are returned apart so NDJSON messages can be
    homogeneous, as a shipper's and an SDK's are."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    envelopes: list[bytes] = []
    logs: list[bytes] = []
    http = iter(http_events(n, seed, tenants))
    for i in range(n):
        tenant = f"tenant-{rng.randrange(tenants):03d}"
        ts = now_ms - (n - i) // 100
        if rng.random() < LOG_SHARE:
            logs.append(orjson.dumps(_log_line(rng, tenant, ts)))
            continue
        kind = rng.choices(kinds, weights)[0]
        if kind == "http.request":
            request = orjson.loads(next(http))
            request["ts"] = ts  # on the corpus's clock, with every other kind
            if rng.random() < CANARIED_SHARE:  # a service under a canary rollout
                canary = rng.random() < 0.1
                request["release"] = "3.1.0" if canary else "3.0.9"
                request["cohort"] = "canary" if canary else "baseline"
            envelopes.append(orjson.dumps(request))
            continue
        event: dict[str, object] = {
            "event_id": f"{seed:04d}-{i:012d}-{rng.getrandbits(48):012x}",
            "ts": ts,
            "tenant_id": tenant,
            "kind": kind,
            "service": "web" if kind == "analytics" else "auth",
            "trace_id": f"{rng.getrandbits(128):032x}",
            "span_id": f"{rng.getrandbits(64):016x}",
            "schema_version": 1,
            **_kind_fields(rng, kind, tenant),
        }
        if kind not in ("security.webhook_signature", "security.input_validation"):
            event["user_id_hash"] = f"{rng.getrandbits(128):032x}"
        envelopes.append(orjson.dumps(event))
    return envelopes, logs


def _kind_fields(rng: random.Random, kind: str, tenant: str) -> dict[str, object]:
    if kind == "analytics":
        message = (
            "call me at jane.roe@example.com"
            if rng.random() < PII_SHARE
            else rng.choice(["loved the new report", "export is slow", "all good"])
        )
        return {
            "event_name": rng.choice(["auth.user_registered", "documents.upload_complete"]),
            "properties": {
                "plan": rng.choice(["free", "pro", "enterprise"]),
                "step": rng.randrange(8),
                "feedback": message,
            },
        }
    if kind in ("security.auth_failure", "security.auth_success"):
        # from a pool of 5,000 client IPs and 20,000 users (pseudonymised by the ingestor):
        # the security rules grouped by IP and distinct users have groups to keep
        login: dict[str, object] = {
            "endpoint": "/v1/auth/login",
            "ip": f"198.18.{rng.randrange(20)}.{rng.randrange(250)}",
            "user_id": f"user-{rng.randrange(20_000)}",
        }
        if kind == "security.auth_failure":
            login["reason"] = "bad_password"
        return login
    if kind == "security.webhook_signature":
        return {"provider": "stripe", "endpoint": "/webhooks/stripe", "valid": rng.random() > 0.1}
    if kind == "security.access_denied":
        return {"endpoint": "/v1/documents/1", "resource": "Document", "action": "view"}
    if kind == "security.input_validation":
        return {"attack_type": "sql_injection", "field": "q", "endpoint": "/v1/search"}
    return {"actor_tenant_id": tenant, "resource_tenant_id": "tenant-999", "blocked": True}


def _log_line(rng: random.Random, tenant: str, ts_ms: int) -> dict[str, object]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000))
    if rng.random() < 0.7:
        category, event_type = "performance", "slow_query"
        context: dict[str, object] = {
            "query_time_ms": round(rng.lognormvariate(6.5, 0.4), 1),
            "model": "Document",
            "company_id": tenant,
        }
    else:
        category, event_type = "security", "access_denied"
        context = {"company_id": tenant, "user_id": rng.randrange(10_000), "model": "Invoice"}
    return {
        "timestamp": f"{stamp}.{ts_ms % 1000:03d}Z",
        "level": "warning",
        "category": category,
        "event_type": event_type,
        "severity": "medium",
        "context": context,
        "trace_id": f"{rng.getrandbits(128):032x}",
        "span_id": f"{rng.getrandbits(64):016x}",
    }


def _interleave(major: list[bytes], minor: list[bytes]) -> list[bytes]:
    """Both lists (each in event-time order, drawn from one sequence) merged back into
    that order: ``minor``'s k-th item after ``major``'s share of the way."""
    out: list[bytes] = []
    step = len(major) / len(minor) if minor else 0.0
    k = 0
    for i, item in enumerate(major):
        while k < len(minor) and k * step <= i:
            out.append(minor[k])
            k += 1
        out.append(item)
    out.extend(minor[k:])
    return out


def ndjson_messages(envelopes: list[bytes], logs: list[bytes], per: int = 100) -> list[bytes]:
    """NDJSON messages of ``per`` lines, envelopes and log lines in messages of their own,
    the messages in event-time order (as SDKs and a shipper send them, interleaved)."""
    chunks = [b"\n".join(envelopes[i : i + per]) for i in range(0, len(envelopes), per)]
    log_chunks = [b"\n".join(logs[i : i + per]) for i in range(0, len(logs), per)]
    return _interleave(chunks, log_chunks)


def single_messages(envelopes: list[bytes], logs: list[bytes]) -> list[bytes]:
    """One event per message, the kinds interleaved in event-time order (a stream is
    mostly in order; the detectors' out-of-order handling has its own tests)."""
    return _interleave(envelopes, logs)


def worker(
    bootstrap: str, prefix: str, partitions: int = 4, extra_env: dict[str, str] | None = None
) -> WorkerProcess:
    """`vigil worker` in its own process, like production, on a fresh chDB directory."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"vigil-bench-{prefix}-"))
    port = free_port()
    env = worker_env(
        bootstrap,
        prefix,
        data_dir,
        port,
        partitions,
        VIGIL_LOG_LEVEL="WARNING",
        **(extra_env or {}),
    )
    return WorkerProcess(env, port, data_dir / "worker.log", cwd=ROOT)


async def send_nowhere(*_: object) -> asyncio.Future[None]:
    """A producer's send that completes at once (alerts of in-process benchmarks)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


def latency_detector(client: object, metrics: Metrics) -> LatencyDetector:
    """The latency detector with the default rules over an open chDB client, alone: its
    alerts go nowhere (a send that completes at once)."""

    writer = ClickHouseWriter(client, "vigil", metrics)
    alerts = AlertPublisher(None, send_nowhere, "alerts", metrics, 300)
    return LatencyDetector(
        load_rules(None).slo, gamma_for(0.01), writer, alerts, CommitGate(), metrics, "vigil", "b"
    )


def security_detector(metrics: Metrics, config: SecurityConfig | None = None) -> SecurityDetector:
    """The security detector with every default rule (or ``config``), both stages in
    process (the groups stage through the loopback forwarder), no ClickHouse; alerts go
    nowhere."""

    alerts = AlertPublisher(None, send_nowhere, "bench.alerts", metrics, 300)
    rules = config if config is not None else load_rules(None).security
    return SecurityDetector(rules, alerts, None, metrics, "vigil")
