"""Shared fixtures: a real tansu broker per session, fresh names and a fresh chDB dir."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from schemas.normalize import Pseudonymizer
from streams.broker import EmbeddedBroker
from streams.metrics import Metrics
from streams.procs import free_port
from streams.settings import Settings, load_settings
from streams.worker_proc import WorkerProcess, worker_env

ROOT = Path(__file__).resolve().parent.parent
TEST_KEY = b"test-hash-key"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def pseudo() -> Pseudonymizer:
    return Pseudonymizer(TEST_KEY)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log=log) as running:
        yield running


@pytest.fixture
def prefix() -> str:
    """A fresh topic prefix (and consumer group) per test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings_for(tmp_path: Path):  # type: ignore[no-untyped-def]
    def build(bootstrap: str, prefix: str, **overrides: object) -> Settings:
        return load_settings(
            kafka_bootstrap=bootstrap,
            topic_prefix=prefix,
            consumer_group=f"{prefix}-group",
            data_dir=tmp_path / "vigil",
            hash_key=TEST_KEY.decode(),
            **overrides,
        )

    return build


@pytest.fixture
def worker_for(tmp_path: Path) -> Iterator[object]:
    """Factory of `vigil worker` subprocesses sharing one data directory per test."""
    started: list[WorkerProcess] = []

    def build(bootstrap: str, prefix: str, **env: str) -> WorkerProcess:
        port = free_port()
        data_dir = tmp_path / "vigil"
        full_env = worker_env(
            bootstrap,
            prefix,
            data_dir,
            port,
            partitions=2,
            VIGIL_HASH_KEY=TEST_KEY.decode(),
            VIGIL_SESSION_TIMEOUT_S="6",
            VIGIL_REBALANCE_TIMEOUT_S="6",
            **env,
        )
        proc = WorkerProcess(full_env, port, data_dir / f"worker-{len(started)}.log", cwd=ROOT)
        started.append(proc)
        return proc

    yield build
    for proc in started:
        proc.stop(timeout_s=30)


@pytest.fixture(scope="session")
def ch_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One real chDB engine per test session (chDB allows one data path per process)."""
    from sinks.clickhouse import connect

    client = connect(f"chdb://{tmp_path_factory.mktemp('chdb')}", "default")
    yield client
    client.close()


@pytest.fixture
def database(ch_client: object) -> str:
    """A fresh, migrated database per test."""
    from sinks.migrate import migrate

    name = f"test_{uuid.uuid4().hex[:12]}"
    migrate(ch_client, name, retention_days=3650)
    return name
