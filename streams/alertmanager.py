"""A local Prometheus Alertmanager for ``vigil up`` (and the tests): the shipped
configuration, gossip off, on a loopback port, data under the data dir.

The shipped ``infra/alertmanager/alertmanager.yml`` names production paths
(``/etc/alertmanager/templates``, ``/etc/alertmanager/secrets``); :func:`local_config`
rewrites them to the repository's templates and a secrets directory the caller fills
(``vigil up`` writes placeholders there: the local stack routes and shows alerts but
reaches no one).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from streams.procs import free_port, spawn, stop

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "infra" / "alertmanager"
BINARY = "prometheus-alertmanager"  # Debian's name; upstream's is `alertmanager`


def binary() -> str | None:
    return shutil.which(BINARY) or shutil.which("alertmanager")


def local_config(
    secrets: Path,
    source: Path = SHIPPED / "alertmanager.yml",
    replace: dict[str, str] | None = None,
) -> str:
    text = source.read_text()
    text = text.replace("/etc/alertmanager/templates", str(SHIPPED / "templates"))
    text = text.replace("/etc/alertmanager/secrets", str(secrets))
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return text


class AlertmanagerProcess:
    def __init__(self, config: Path, storage: Path, log: Path, port: int = 0) -> None:
        self.config = config
        self.storage = storage
        self.log = log
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        exe = binary()
        if exe is None:
            raise FileNotFoundError(f"{BINARY} is not installed (Debian: apt-get install {BINARY})")
        self.storage.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(
            [
                exe,
                f"--config.file={self.config}",
                f"--storage.path={self.storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip: parallel stacks never collide
                f"--web.external-url={self.url}",
            ],
            log=self.log,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Alertmanager exited with {self.proc.returncode}; see {self.log}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Alertmanager did not become ready in {timeout_s:g}s; see {self.log}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = stop(self.proc, timeout_s=10)
        self.proc = None
        return code
