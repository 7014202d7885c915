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
from streams.gate import CommitGate
from streams.latency import LatencyDetector
from streams.metrics import Metrics
from streams.procs import free_port
from streams.sketch import gamma_for
from streams.slo import load_rules
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


def latency_detector(client: object, metrics: Metrics) -> LatencyDetector:
    """The latency detector with the default rules over an open chDB client, alone: its
    alerts go nowhere (a send that completes at once)."""

    async def send(*_: object) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    writer = ClickHouseWriter(client, "vigil", metrics)
    alerts = AlertPublisher(None, send, "alerts", metrics, 300)
    return LatencyDetector(
        load_rules(None).slo, gamma_for(0.01), writer, alerts, CommitGate(), metrics, "vigil", "b"
    )
