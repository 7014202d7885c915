"""``vigil up``: the embedded stack on one machine.

Starts the tansu broker on 127.0.0.1, one worker (which owns the chDB engine under
``<data_dir>/clickhouse``), Prometheus Alertmanager with the shipped routing (when
installed; gossip off, data under ``<data_dir>/alertmanager``) and the forwarder that
delivers the alerts topic to it, and optionally the demo generator, each as a child
process in its own session; prints a compact live summary; on Ctrl-C (or after ``--for``)
stops the demo, lets the worker flush and commit, lets the forwarder deliver, then stops
Alertmanager and the broker. Children are also told by the kernel to stop if this
supervisor dies, so nothing is left behind.

The local Alertmanager routes and groups like production but reaches no one: its Slack,
PagerDuty and e-mail secrets are placeholders that point at a closed local port (see
``<data_dir>/alertmanager/secrets``); the low alerts' webhook is this worker's.

The running stack is described in ``<data_dir>/stack.json`` so ``vigil query``,
``vigil alerts`` and ``vigil produce`` in another terminal find it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

from streams.alertmanager import AlertmanagerProcess, binary, local_config
from streams.broker import EmbeddedBroker
from streams.errors import VigilError
from streams.kafka import ensure_topics
from streams.memory import BrokerMemory, human, resident_bytes, total_memory_bytes
from streams.procs import free_port, spawn, stop
from streams.settings import Settings
from streams.worker_proc import WorkerProcess

STACK_FILE = "stack.json"


def stack_file(settings: Settings) -> Path:
    return settings.data_dir / STACK_FILE


def read_stack(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / STACK_FILE
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None  # stale: the supervisor is gone
    return info


def _fmt(n: float) -> str:
    return f"{int(n):,}"


class Stack:
    def __init__(
        self,
        settings: Settings,
        broker_port: int,
        demo_rate: float | None,
        demo_speed: float = 1.0,
        demo_duration_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.logs = settings.data_dir / "logs"
        self.broker = EmbeddedBroker(port=broker_port, log=self.logs / "broker.log")
        self.web_port = _usable_port(settings.web_port)
        self.demo_rate = demo_rate
        self.demo_speed = demo_speed
        self.demo_duration_s = demo_duration_s
        self.worker: WorkerProcess | None = None
        self.demo: Any = None
        self.alertmanager: AlertmanagerProcess | None = None
        self.webhook_token = token_urlsafe(32)
        self.forwarder: Any = None
        self.memory = BrokerMemory(total_memory_bytes(), settings.broker_memory_warn_share)

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.demo_rate and "VIGIL_RULES_FILE" not in env:  # the demo's declared rates
            env["VIGIL_RULES_FILE"] = str(resources.files("streams").joinpath("rules.demo.yaml"))
        if self.demo_rate:  # the demo shows per-tenant canary verdicts too
            env.setdefault("VIGIL_CANARY_PER_TENANT", "true")
        return {
            **env,
            "VIGIL_MODE": "embedded",
            "VIGIL_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "VIGIL_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            "VIGIL_WEB_PORT": str(self.web_port),
            "VIGIL_DATA_DIR": str(self.settings.data_dir.resolve()),
            # the worker reads the low alerts' webhook only from this stack's Alertmanager
            "VIGIL_ALERTMANAGER_WEBHOOK_TOKEN": self.webhook_token,
        }

    def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if read_stack(s.data_dir) is not None:
            raise VigilError(
                f"a stack is already running from {s.data_dir} (see {stack_file(s)}); "
                "stop it first or use another VIGIL_DATA_DIR"
            )
        print(f"vigil: starting broker (tansu) on {self.broker.host}:{self.broker.port} ...")
        self.broker.start()
        broker_settings = s.model_copy(update={"kafka_bootstrap": self.broker.bootstrap})
        asyncio.run(ensure_topics(broker_settings, [s.events_topic, s.dlq_topic, s.alerts_topic]))
        am_url = self.start_alertmanager()
        stack_file(s).write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "kafka_bootstrap": self.broker.bootstrap,
                    "web_port": self.web_port,
                    "alertmanager_url": am_url,
                }
            )
        )
        print(
            f"vigil: starting worker (ClickHouse: {s.resolved_clickhouse_url}; "
            f"web: http://127.0.0.1:{self.web_port}) ..."
        )
        self.worker = WorkerProcess(self.child_env(), self.web_port, self.logs / "worker.log")
        self.worker.start()
        if self.alertmanager is not None:
            print(f"vigil: starting the forwarder (alerts topic -> {self.alertmanager.url}) ...")
            self.forwarder = spawn(
                [sys.executable, "-m", "streams.cli", "forward"],
                env={
                    **self.child_env(),
                    "VIGIL_ALERTMANAGER_URL": self.alertmanager.url,
                    "VIGIL_FORWARD_PORT": str(free_port()),
                    "VIGIL_PUBLIC_URL": f"http://127.0.0.1:{self.web_port}",
                },
                log=self.logs / "forwarder.log",
            )
        if self.demo_rate:
            command = [sys.executable, "-m", "streams.cli", "demo", "--rate", str(self.demo_rate)]
            faster = ""
            if self.demo_speed != 1.0 and self.demo_duration_s is not None:
                command += ["--speed", str(self.demo_speed), "--for", str(self.demo_duration_s)]
                faster = f", event time {self.demo_speed:g}x the wall clock"
            print(f"vigil: starting demo traffic at {self.demo_rate:g} msg/s{faster} ...")
            self.demo = spawn(
                command,
                env=self.child_env(),
                log=self.logs / "demo.log",
            )
        print(
            f'vigil: up. logs in {self.logs}/; try `vigil query "SELECT kind, count() '
            'FROM vigil.events GROUP BY kind"` and `vigil alerts --follow`. Ctrl-C stops.'
        )
        print(
            f"vigil: console at http://127.0.0.1:{self.web_port}/console "
            "(`vigil status` draws it in a terminal)"
        )
        if self.alertmanager is not None:
            print(
                f"vigil: alerts in Alertmanager: {self.alertmanager.url}/#/alerts or "
                f"`amtool --alertmanager.url={self.alertmanager.url} alert query`; "
                "silence one: `vigil silence add --match alertname=NAME --match "
                "tenant_id=T --for 2h --comment why --by you`"
            )

    def start_alertmanager(self) -> str:
        """Alertmanager on a free loopback port with the shipped routing; "" (said once)
        when it is not installed."""
        if binary() is None:
            print(
                "vigil: Alertmanager is not installed, so alerts stay on the alerts topic and "
                "in ClickHouse (Debian/Ubuntu: sudo apt-get install prometheus-alertmanager; "
                "`make run` does it)"
            )
            return ""
        home = self.settings.data_dir.resolve() / "alertmanager"
        secrets = home / "secrets"
        secrets.mkdir(parents=True, exist_ok=True)
        closed = "http://127.0.0.1:9"  # the discard port: nothing listens, nothing leaves
        placeholders = {
            "slack-webhook-url": f"{closed}/slack",
            "pagerduty-security": "local-placeholder",
            "pagerduty-availability": "local-placeholder",
            "pagerduty-performance": "local-placeholder",
            "smtp-password": "local-placeholder",
        }
        (secrets / "vigil-webhook-token").write_text(self.webhook_token)  # this run's
        for name, value in placeholders.items():
            if not (secrets / name).exists():
                (secrets / name).write_text(value)
        config = home / "alertmanager.yml"
        config.write_text(
            local_config(
                secrets,
                replace={
                    "https://events.pagerduty.com/v2/enqueue": f"{closed}/pagerduty",
                    "smtp.example.com:587": "127.0.0.1:9",
                    "http://vigil-worker:6066": f"http://127.0.0.1:{self.web_port}",
                },
            )
        )
        am = AlertmanagerProcess(config, home / "data", self.logs / "alertmanager.log")
        print(f"vigil: starting Alertmanager on {am.url} ...")
        try:
            am.start()
        except (OSError, RuntimeError) as exc:
            print(f"vigil: Alertmanager did not start ({exc}); alerts stay on the topic")
            return ""
        self.alertmanager = am
        return am.url

    def stats(self) -> dict[str, Any] | None:
        return self.worker.stats() if self.worker is not None else None

    def watch(self, duration_s: float | None, interval_s: float = 2.0) -> None:
        """The status line every ``interval_s`` -- on a terminal, as the header of the
        terminal board (streams/board.py), redrawn in place; for logs and pipes, a line."""
        if not sys.stdout.isatty():
            self._watch(duration_s, interval_s, print_line)
            return
        from rich.console import Console
        from rich.live import Live

        from streams.board import fetch, render

        url = f"http://127.0.0.1:{self.web_port}/api/v1/views/overview"
        token = self.settings.console_token
        secret = token.get_secret_value() if token is not None else ""
        board: dict[str, Any] = {"doc": None, "at": 0.0, "error": ""}
        with Live(console=Console(), auto_refresh=False, screen=False) as live:

            def show(line: str) -> None:
                now = time.monotonic()
                if now - board["at"] >= self.settings.console_refresh_s:
                    board["at"] = now
                    try:
                        board["doc"], board["error"] = fetch(url, secret), ""
                    except VigilError as exc:
                        board["error"] = str(exc)
                doc = board["doc"]
                header = line + (f"\n{board['error']}" if board["error"] else "")
                live.update(render(doc, header) if doc else header, refresh=True)

            self._watch(duration_s, interval_s, show)

    def _watch(
        self, duration_s: float | None, interval_s: float, show: Callable[[str], None]
    ) -> None:
        assert self.worker is not None, "start() first"
        started = time.monotonic()
        last = self.stats() or {}
        last_t = time.monotonic()
        while duration_s is None or time.monotonic() - started < duration_s:
            time.sleep(
                min(interval_s, max(0.05, (duration_s or 1e9) - (time.monotonic() - started)))
            )
            self.worker.check_alive()
            now = self.stats()
            if not now:
                continue
            dt = max(time.monotonic() - last_t, 1e-6)
            rate = (now["events"] - last.get("events", 0)) / dt
            if not now.get("assigned_partitions"):
                print(
                    f"[{time.monotonic() - started:6.0f}s] joining the consumer group ...",
                    flush=True,
                )
                continue
            rss = resident_bytes(self.broker.pid) if self.broker.pid else None
            show(
                f"[{time.monotonic() - started:6.0f}s] events/s {rate:8,.0f} | events "
                f"{_fmt(now['events'])} | dlq {_fmt(now['dlq'])} | rows "
                f"{_fmt(now['rows_written'])} | alerts {_fmt(now['alerts'])} | lag "
                f"{_fmt(now['lag'])}" + (f" | broker {human(rss)}" if rss else "")
            )
            warning = self.memory.observe(time.monotonic() - started, rss) if rss else None
            if warning:
                print(warning, flush=True)
            last, last_t = now, time.monotonic()

    def shutdown(self) -> None:
        print("vigil: stopping ...", flush=True)
        if self.demo is not None:
            stop(self.demo, timeout_s=10)
        final = self.stats() if self.worker is not None else None
        if self.worker is not None:
            code = self.worker.stop(timeout_s=60)
            print(f"vigil: worker stopped (exit {code}) after flushing")
        if self.forwarder is not None:
            time.sleep(1.0)  # the worker's last alerts: one more poll of the forwarder
            stop(self.forwarder, timeout_s=15)
        if self.alertmanager is not None:
            self.alertmanager.stop()
        self.broker.stop()
        stack_file(self.settings).unlink(missing_ok=True)
        if final:
            print(
                f"vigil: processed events {_fmt(final['events'])}, dlq {_fmt(final['dlq'])}, "
                f"alerts {_fmt(final['alerts'])}"
            )
        stored = self.stored_totals()
        if stored:
            print(
                "vigil: stored in ClickHouse: "
                + ", ".join(f"{table} {_fmt(n)} rows" for table, n in stored.items())
            )
        print("vigil: stopped.")

    def stored_totals(self) -> dict[str, int]:
        """Row counts per table, read from the engine now that the worker released it."""
        from sinks.clickhouse import connect

        s = self.settings
        try:
            client = connect(s.resolved_clickhouse_url, s.clickhouse_database)
        except VigilError:
            return {}
        try:
            rows = client.query(
                "SELECT table, sum(rows) FROM system.parts WHERE database = {db:String} "
                "AND active GROUP BY table ORDER BY table",
                parameters={"db": s.clickhouse_database},
            ).result_rows
        finally:
            client.close()
        return {str(t): int(n) for t, n in rows if t != "schema_migrations"}


def _usable_port(wanted: int) -> int:
    """``wanted`` if it is free on 127.0.0.1, else any free port (0 means any)."""
    if wanted:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", wanted))
                return wanted
            except OSError:
                print(
                    f"vigil: web port {wanted} is taken; using a free one "
                    "(set VIGIL_WEB_PORT to choose)"
                )
    return free_port()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_up(
    settings: Settings,
    broker_port: int,
    demo_rate: float | None,
    duration_s: float | None,
    demo_speed: float = 1.0,
) -> int:
    stack = Stack(settings, broker_port, demo_rate, demo_speed, duration_s)
    # SIGTERM behaves like Ctrl-C so `kill` of the supervisor also stops cleanly; and
    # SIGINT always does, even when a shell started us in the background with it ignored
    # (`vigil up &` from a script: Python installs no Ctrl-C handler then).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        stack.start()
        stack.watch(duration_s)
    except KeyboardInterrupt:
        pass
    finally:
        stack.shutdown()
    return 0


def print_line(line: str) -> None:
    print(line, flush=True)
