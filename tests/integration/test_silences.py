"""`vigil silence` against the real Alertmanager (Debian prometheus-alertmanager) running
the shipped configuration, gossip off, on a free loopback port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.procs import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager")
    assert binary, "prometheus-alertmanager missing: `make test` installs it"
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        (ROOT / "infra/alertmanager/alertmanager.yml")
        .read_text()
        .replace("/etc/alertmanager/templates", str(ROOT / "infra/alertmanager/templates"))
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1):  # noqa: S310
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("Alertmanager did not become ready")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def vigil(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIGIL_ALERTMANAGER_URL": url, "VIGIL_DATA_DIR": "/nonexistent"}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "silence", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip


def test_add_list_and_expire_a_silence(alertmanager: str) -> None:
    added = vigil(
        alertmanager, "add", "--match", "alertname=P95LatencyBreach", "--match",
        "tenant_id=acme", "--for", "2h", "--comment", "deploy 4.2", "--by", "oncall",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    sid = added.stdout.strip()
    with urllib.request.urlopen(f"{alertmanager}/api/v2/silence/{sid}") as r:  # noqa: S310
        stored = json.loads(r.read())
    assert stored["status"]["state"] == "active"
    assert {(m["name"], m["value"], m["isEqual"]) for m in stored["matchers"]} == {
        ("alertname", "P95LatencyBreach", True),
        ("tenant_id", "acme", True),
    }
    assert stored["createdBy"] == "oncall" and stored["comment"] == "deploy 4.2"
    listed = vigil(alertmanager, "list")
    assert sid in listed.stdout and "active" in listed.stdout and "tenant_id=acme" in listed.stdout
    expired = vigil(alertmanager, "expire", sid)
    assert expired.returncode == 0, expired.stderr
    assert "expired" in vigil(alertmanager, "list").stdout


def test_errors_a_user_can_act_on(alertmanager: str) -> None:
    bad = vigil(alertmanager, "add", "--match", "nonsense", "--comment", "x", "--by", "y")
    assert bad.returncode == 2 and "name=value" in bad.stderr
    down = vigil(f"http://127.0.0.1:{free_port()}", "list")
    assert down.returncode == 2 and "VIGIL_ALERTMANAGER_URL" in down.stderr
