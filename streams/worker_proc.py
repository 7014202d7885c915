"""`vigil worker` as a child process, reached over its local web port.

Used by ``vigil up``, the integration tests and the benchmarks, so all three drive the
worker exactly as an operator would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from streams.errors import VigilError
from streams.procs import spawn, stop


def get_json(url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            body: dict[str, Any] = json.loads(response.read())
            return body
    except (OSError, ValueError):
        return None


def worker_env(
    bootstrap: str, prefix: str, data_dir: Path, web_port: int, partitions: int, **extra: str
) -> dict[str, str]:
    """Environment of an embedded-mode worker on its own topics, group and data dir."""
    return {
        **os.environ,
        "VIGIL_MODE": "embedded",
        "VIGIL_KAFKA_BOOTSTRAP": bootstrap,
        "VIGIL_TOPIC_PREFIX": prefix,
        "VIGIL_TOPIC_PARTITIONS": str(partitions),
        "VIGIL_CONSUMER_GROUP": f"{prefix}-group",
        "VIGIL_DATA_DIR": str(data_dir),
        "VIGIL_WEB_PORT": str(web_port),
        **extra,
    }


class WorkerProcess:
    def __init__(
        self, env: dict[str, str], web_port: int, log: Path, cwd: Path | None = None
    ) -> None:
        self.env = env
        self.web_port = web_port
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, timeout_s: float = 120.0) -> None:
        self.proc = spawn(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=self.env,
            log=self.log,
            cwd=self.cwd,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            health = get_json(f"{self.base_url}/healthz")
            if health and health.get("ready"):
                return
            self.check_alive()
            time.sleep(0.2)
        raise VigilError(f"worker not ready after {timeout_s:.0f}s; see {self.log}")

    def wait_assigned(self, timeout_s: float = 60.0) -> None:
        """Wait until the consumer group gave this worker partitions."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (self.stats() or {}).get("assigned_partitions"):
                return
            self.check_alive()
            time.sleep(0.1)
        raise VigilError(f"worker got no partitions after {timeout_s:.0f}s; see {self.log}")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise VigilError(f"worker exited with code {self.proc.returncode}; see {self.log}")

    def stats(self) -> dict[str, Any] | None:
        return get_json(f"{self.base_url}/stats")

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=5) as r:  # noqa: S310
            text: str = r.read().decode()
            return text

    def query(self, sql: str) -> list[list[Any]]:
        request = urllib.request.Request(  # noqa: S310 - loopback URL we build
            f"{self.base_url}/query",
            data=json.dumps({"sql": sql}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            rows: list[list[Any]] = json.loads(response.read())["rows"]
            return rows

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM: the worker flushes, commits and exits."""
        if self.proc is None:
            return None
        code = stop(self.proc, timeout_s=timeout_s)
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None
