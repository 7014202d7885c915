"""The `vigil` commands as a user runs them, in subprocesses, against real parts."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.alerts import Annotations, alert_fingerprint
from sinks.clickhouse import ClickHouseWriter
from streams.alerting import AlertPublisher, AlertSpec
from streams.broker import EmbeddedBroker
from streams.kafka import start_producer
from streams.metrics import Metrics
from streams.settings import Settings
from tests.conftest import ROOT
from tests.integration.kafka_helpers import consume_all

pytestmark = pytest.mark.integration


def vigil(
    *args: str,
    env: dict[str, str],
    timeout: float = 120,
    stdin: bytes | None = None,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env={**os.environ, **env},
        cwd=cwd,
        input=stdin.decode() if stdin else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_readme_quick_start(tmp_path: Path) -> None:
    """README: `vigil up --demo --for 20` runs the stack, then rows are in ClickHouse."""
    env = {"VIGIL_DATA_DIR": str(tmp_path / ".vigil"), "VIGIL_WEB_PORT": "0"}
    up = vigil("up", "--demo", "--rate", "300", "--for", "20", env=env, timeout=240, cwd=tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "events/s" in up.stdout  # the live summary
    assert re.search(r"\| broker \d+ MB", up.stdout)  # the embedded broker's memory
    assert "vigil: stopped." in up.stdout
    assert not (tmp_path / ".vigil" / "stack.json").exists()

    # the worker released the engine: `vigil query` opens it directly now
    query = vigil(
        "query", "SELECT count() AS n FROM vigil.events", "--format", "json", env=env, cwd=tmp_path
    )
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)["n"] > 1000
    dead = vigil(
        "query",
        "SELECT count() AS n FROM vigil.dead_letters",
        "--format",
        "json",
        env=env,
        cwd=tmp_path,
    )
    assert json.loads(dead.stdout)["n"] > 0  # the demo sends some malformed messages

    # nothing left behind: the broker's port is free again
    port = next(
        int(line.split(":")[-1].split()[0])
        for line in up.stdout.splitlines()
        if "starting broker" in line
    )
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_produce_and_query_through_the_worker(
    broker: EmbeddedBroker, prefix: str, worker_for: Any, tmp_path: Path
) -> None:
    worker = worker_for(broker.bootstrap, prefix)
    worker.start()
    env = {**worker.env}
    lines = b"\n".join(
        orjson.dumps(
            {
                "event_id": f"p{i}",
                "ts": int(time.time() * 1000),
                "tenant_id": "acme",
                "service": "api",
                "kind": "security.auth_success",
            }
        )
        for i in range(25)
    )
    produced = vigil("produce", "-", env=env, stdin=lines)
    assert produced.returncode == 0, produced.stderr
    assert "produced 25 messages" in produced.stdout

    for _ in range(200):
        out = vigil("query", "SELECT count() FROM vigil.events", "--format", "csv", env=env)
        if out.stdout.strip().endswith("25"):
            break
    assert out.stdout.strip().splitlines() == ["count()", "25"]

    table = vigil("query", "SELECT kind, count() AS n FROM vigil.events GROUP BY kind", env=env)
    assert "security.auth_success" in table.stdout and "25" in table.stdout
    refused = vigil("query", "DROP TABLE vigil.events", env=env)
    assert refused.returncode == 2
    assert "read-only" in refused.stderr


def test_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: nothing answers
        out = vigil(
            "produce",
            "-",
            env={"VIGIL_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "VIGIL_DATA_DIR": str(tmp_path)},
            stdin=b"{}\n",
        )
    assert out.returncode == 2
    assert "cannot reach Kafka" in out.stderr and "VIGIL_KAFKA_BOOTSTRAP" in out.stderr


def test_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    out = vigil("migrate", env={"VIGIL_SINK_FLUSH_ROWS": "zero", "VIGIL_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2
    assert "VIGIL_SINK_FLUSH_ROWS" in out.stderr


def test_migrate_command(tmp_path: Path) -> None:
    env = {"VIGIL_DATA_DIR": str(tmp_path)}
    first = vigil("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 001_events" in first.stdout
    assert "schema is up to date" in vigil("migrate", env=env).stdout


async def test_alerts_reach_topic_table_and_cli(
    broker: EmbeddedBroker,
    prefix: str,
    settings_for: Any,
    ch_client: Any,
    database: str,
    metrics: Metrics,
) -> None:
    settings: Settings = settings_for(broker.bootstrap, prefix)
    producer = await start_producer(settings)

    async def send(
        topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        return await producer.send(topic, value, key=key, headers=headers)

    writer = ClickHouseWriter(ch_client, database, metrics)
    publisher = AlertPublisher(writer, send, settings.alerts_topic, metrics, 300)
    labels = {"tenant_id": "acme", "route": "/v1/reports"}
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    spec = AlertSpec(
        "P95LatencyBreach",
        "critical",
        labels,
        Annotations(summary="P95 812 ms > 500 ms for 3 samples"),
    )
    await publisher.fire(spec, 812, 500, at=at)
    await publisher.resolve(spec, 300, 500, at=at.replace(minute=9))
    await producer.stop()
    await writer.flush()  # alert rows are buffered with the other rows

    records = await consume_all(broker.bootstrap, settings.alerts_topic, 2)
    fingerprint = spec.fingerprint
    routing = {"severity": "critical", "category": "performance", "family": "latency"}
    assert fingerprint == alert_fingerprint(
        "P95LatencyBreach",
        {**labels, **routing, "alertname": "P95LatencyBreach", "auto_rollback": "false"},
    )
    assert [r.key for r in records] == [fingerprint.encode()] * 2
    stored = ch_client.query(
        f"SELECT status, alertname, labels['tenant_id'], ends_at IS NULL "
        f"FROM {database}.alerts ORDER BY ts"
    ).result_rows
    assert stored == [
        ("firing", "P95LatencyBreach", "acme", 1),
        ("resolved", "P95LatencyBreach", "acme", 0),
    ]

    env = {
        "VIGIL_KAFKA_BOOTSTRAP": broker.bootstrap,
        "VIGIL_TOPIC_PREFIX": prefix,
        "VIGIL_DATA_DIR": str(settings.data_dir),
    }
    out = await asyncio.to_thread(vigil, "alerts", "--idle-timeout", "3", env=env)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2, out.stdout + out.stderr
    assert "FIRING" in lines[0] and "P95LatencyBreach" in lines[0] and "tenant_id=acme" in lines[0]
    assert "RESOLVED" in lines[1]


def test_unreachable_clickhouse_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        out = vigil(
            "migrate",
            env={
                "VIGIL_CLICKHOUSE_URL": f"http://vigil:hunter2@127.0.0.1:{port}/vigil",
                "VIGIL_DATA_DIR": str(tmp_path),
            },
        )
    assert out.returncode == 2
    assert "cannot open ClickHouse" in out.stderr and "VIGIL_CLICKHOUSE_URL" in out.stderr
    assert "hunter2" not in out.stderr  # the password is redacted


def test_ctrl_c_stops_the_stack_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "VIGIL_DATA_DIR": str(tmp_path / ".vigil"), "VIGIL_WEB_PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "up", "--demo", "--rate", "200"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if "events/s" in line and "events 0 " not in line:  # traffic is flowing
            break
    stack = json.loads((tmp_path / ".vigil" / "stack.json").read_text())
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "worker stopped (exit 0) after flushing" in output
    assert "vigil: stopped." in output
    assert not (tmp_path / ".vigil" / "stack.json").exists()
    host, port = stack["kafka_bootstrap"].split(":")
    with socket.socket() as sock:
        assert sock.connect_ex((host, int(port))) != 0  # the broker is gone
    stored = vigil(
        "query",
        "SELECT count() AS n FROM vigil.events",
        "--format",
        "json",
        env={"VIGIL_DATA_DIR": str(tmp_path / ".vigil")},
    )
    assert json.loads(stored.stdout)["n"] > 0
