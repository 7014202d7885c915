"""Helpers shared by the benchmarks: a broker, a worker subprocess, payloads."""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from streams.procs import free_port, spawn, stop

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


class Worker:
    """`vigil worker` in its own process, like production, on a fresh chDB directory."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        partitions: int = 4,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"vigil-bench-{prefix}-"))
        self.port = free_port()
        self.env = {
            **os.environ,
            "VIGIL_MODE": "embedded",
            "VIGIL_KAFKA_BOOTSTRAP": bootstrap,
            "VIGIL_TOPIC_PREFIX": prefix,
            "VIGIL_TOPIC_PARTITIONS": str(partitions),
            "VIGIL_CONSUMER_GROUP": f"{prefix}-group",
            "VIGIL_DATA_DIR": str(self.dir),
            "VIGIL_WEB_PORT": str(self.port),
            "VIGIL_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        self.proc: Any = None

    def start(self, timeout_s: float = 120) -> None:
        self.proc = spawn(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=self.env,
            log=self.dir / "worker.log",
            cwd=ROOT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.get("/healthz").get("ready"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker died; see {self.dir / 'worker.log'}")
            time.sleep(0.2)
        raise RuntimeError("worker not ready")

    def get(self, path: str) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                body: dict[str, Any] = json.loads(r.read())
                return body
        except Exception:
            return {}

    def query(self, sql: str) -> list[list[Any]]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/query",
            data=json.dumps({"sql": sql}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
            rows: list[list[Any]] = json.loads(r.read())["rows"]
            return rows

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout_s=30)
