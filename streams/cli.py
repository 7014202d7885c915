"""The ``vigil`` command line. Settings are read once here and passed down."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from streams.errors import VigilError
from streams.settings import Settings, load_settings


def _settings() -> Settings:
    """Settings from the environment; a running `vigil up` fills in where to find it."""
    from streams.embedded import read_stack

    base = load_settings()
    stack = read_stack(base.data_dir)
    overrides: dict[str, Any] = {}
    if stack is not None:  # what the user set explicitly wins over the running stack
        if "kafka_bootstrap" not in base.model_fields_set:
            overrides["kafka_bootstrap"] = stack["kafka_bootstrap"]
        if "web_port" not in base.model_fields_set or base.web_port == 0:  # 0: any port
            overrides["web_port"] = stack["web_port"]
        if "alertmanager_url" not in base.model_fields_set and stack.get("alertmanager_url"):
            overrides["alertmanager_url"] = stack["alertmanager_url"]
    return load_settings(**overrides) if overrides else base


def cmd_up(args: argparse.Namespace) -> int:
    from streams.embedded import run_up

    settings = load_settings()
    if settings.mode != "embedded":
        raise VigilError("`vigil up` runs the embedded stack; unset VIGIL_MODE=production")
    broker_port = args.broker_port if args.broker_port is not None else settings.broker_port
    if args.speed != 1.0 and (args.duration is None or not args.demo):
        raise VigilError("--speed compresses the demo's event time: use it with --demo --for")
    return run_up(
        settings, broker_port, args.rate if args.demo else None, args.duration, args.speed
    )


def cmd_worker(args: argparse.Namespace) -> int:
    import faust

    from streams.app import create_app
    from streams.kafka import ensure_topics

    settings = _settings()
    logging.basicConfig(level=settings.log_level)
    asyncio.run(
        ensure_topics(settings, [settings.events_topic, settings.dlq_topic, settings.alerts_topic])
    )
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower())
    worker.execute_from_commandline()
    return 0


def cmd_forward(args: argparse.Namespace) -> int:
    """The alerts topic delivered to Alertmanager (streams/forward.py)."""
    from streams.forward import run_forwarder

    settings = _settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run_forwarder(settings))
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from streams.kafka import start_producer

    settings = _settings()
    stream = sys.stdin.buffer if args.file == "-" else Path(args.file).open("rb")  # noqa: SIM115

    async def main() -> int:
        producer = await start_producer(settings)
        sent = 0
        try:
            pending = []
            for line in stream:
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                key = _tenant_key(line)
                pending.append(
                    await producer.send(args.topic or settings.events_topic, line, key=key)
                )
                sent += 1
            for fut in pending:
                await fut
        finally:
            await producer.stop()
        return sent

    sent = asyncio.run(main())
    print(f"produced {sent} messages to {args.topic or settings.events_topic}")
    return 0


def _tenant_key(line: bytes) -> bytes | None:
    """Key by tenant when the line says which; the worker dead-letters what it cannot read."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict):
        tenant = obj.get("tenant_id") or (obj.get("context") or {}).get("company_id")
        return str(tenant).encode() if tenant else None
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.demo import run_demo
    from streams.kafka import start_producer

    settings = _settings()

    async def main() -> int:
        # gzip'd record batches: the embedded broker keeps every message in memory, and
        # compressed batches take ~200 bytes a message there instead of ~450
        producer = await start_producer(settings, compression_type="gzip", linger_ms=50)
        try:

            async def send(value: bytes, key: bytes | None) -> None:
                await producer.send(settings.events_topic, value, key=key)

            return await run_demo(
                send,
                args.rate,
                args.duration,
                seed=args.seed,
                incident_every_s=args.incident_every,
                speed=args.speed,
            )
        finally:
            await producer.stop()

    try:
        sent = asyncio.run(main())
    except KeyboardInterrupt:
        return 0
    print(f"demo: sent {sent} messages")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import UTC, date, datetime

    from streams import reports
    from streams.detectors.latency.slo import load_rules
    from streams.query import run_query

    settings = _settings()

    def query(sql: str) -> tuple[list[str], list[list[Any]]]:
        return run_query(settings, sql)

    db = settings.clickhouse_database
    if args.report_command == "tenant":
        objective = load_rules(settings.rules_file).slo.availability.objective
        doc = reports.tenant_month(query, db, args.tenant, args.month, objective)
        text = reports.tenant_markdown(doc)
    else:
        try:
            day = date.fromisoformat(args.date) if args.date else datetime.now(UTC).date()
        except ValueError:
            raise VigilError(f"--date {args.date!r}: a day as YYYY-MM-DD") from None
        doc = reports.daily(query, db, day)
        text = reports.daily_markdown(doc)
    out = json.dumps(doc, indent=2, default=str) if args.format == "json" else text
    if args.out:
        Path(args.out).write_text(out + ("\n" if not out.endswith("\n") else ""))
        print(f"wrote {args.out}")
    else:
        print(out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from streams.serve import serve

    serve(load_settings(), args.host, args.port)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Tenant tokens: through the worker in embedded mode (it owns the engine), else
    straight to ClickHouse."""
    settings = _settings()
    action = args.token_command
    body = {"tenant": getattr(args, "tenant", ""), "ttl": getattr(args, "ttl", ""),
            "by": getattr(args, "by", ""), "token_id": getattr(args, "token_id", "")}  # fmt: skip
    if settings.mode == "embedded":
        answer = _post_worker(settings, f"/admin/tokens/{action}", body)
    else:
        answer = _token_direct(settings, action, body)
    if action == "create":
        print(f"token for {answer['tenant_id']} (shown once; store it now):")
        print(answer["token"])
        print(f"id {answer['token_id']}, expires {answer['expires_at'] or 'never'}")
    elif action == "revoke":
        print(f"{answer['token_id']}: revoked at {answer['revoked_at']}")
    else:
        for t in answer["tokens"]:
            state = "revoked" if t["revoked_at"] else f"expires {t['expires_at'] or 'never'}"
            print(f"{t['token_id']}  {t['tenant_id']:16} created {t['created_at']} by "
                  f"{t['created_by']}  {state}")  # fmt: skip
    return 0


def _post_worker(settings: Settings, path: str, body: dict[str, Any]) -> dict[str, Any]:
    url = f"http://127.0.0.1:{settings.web_port}{path}"
    headers = {"Content-Type": "application/json"}
    if settings.console_token is not None:
        headers["Authorization"] = f"Bearer {settings.console_token.get_secret_value()}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers=headers)  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        raise VigilError(json.loads(exc.read() or b"{}").get("error", str(exc))) from None
    except urllib.error.URLError as exc:
        raise VigilError(f"no worker at {url} ({exc.reason}): is `vigil up` running?") from None


def _token_direct(settings: Settings, action: str, body: dict[str, Any]) -> dict[str, Any]:
    from sinks.clickhouse import connect
    from streams import tokens as tk

    db = settings.clickhouse_database
    client = connect(settings.resolved_clickhouse_url, db)
    try:
        records = []
        if action != "create":
            records = tk.records_from_rows(client.query(tk.select_sql(db)).result_rows)
        answer, store = tk.act(settings.hash_key_bytes, action, body, records)
        if store:
            cols = tk.columns(store)
            client.insert(f"{db}.api_tokens", list(zip(*cols.values(), strict=True)),
                          column_names=list(cols))  # fmt: skip
        return answer
    finally:
        client.close()


def cmd_status(args: argparse.Namespace) -> int:
    """The overview (or a tenant's page) from the console's JSON, drawn with rich."""
    from urllib.parse import quote

    from rich.console import Console
    from rich.live import Live

    from streams.board import fetch, render

    settings = _settings()
    base = (args.url or f"http://127.0.0.1:{settings.web_port}").rstrip("/")
    url = f"{base}/api/v1/views/overview"
    if args.tenant:
        url += f"?tenant={quote(args.tenant)}"
    token = settings.console_token.get_secret_value() if settings.console_token else ""
    doc = fetch(url, token)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    console = Console()
    if not args.follow:
        console.print(render(doc))
        return 0
    with (
        contextlib.suppress(KeyboardInterrupt),
        Live(render(doc), console=console, screen=False, auto_refresh=False) as live,
    ):
        while True:
            time.sleep(settings.console_refresh_s)
            live.update(render(fetch(url, token)), refresh=True)
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from streams.kafka import start_consumer

    settings = _settings()

    async def main() -> None:
        consumer = await start_consumer(
            settings,
            settings.alerts_topic,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        idle_since = time.monotonic()
        try:
            while args.follow or time.monotonic() - idle_since < args.idle_timeout:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        idle_since = time.monotonic()
                        print(_alert_line(record.value, args.json), flush=True)
        finally:
            await consumer.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


def _alert_line(value: bytes, as_json: bool) -> str:
    if as_json:
        return value.decode(errors="replace")
    try:
        alert = orjson.loads(value)
        data = alert["data"]
        labels = ",".join(f"{k}={v}" for k, v in sorted(data["labels"].items()))
        return (
            f"{alert['time']} {data['status'].upper():8} {data['severity']:8} "
            f"{data['alertname']} {{{labels}}} value={data['value']} "
            f"threshold={data['threshold']} :: {data['annotations']['summary']}"
        )
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"(unreadable alert) {value[:200]!r}"


def cmd_query(args: argparse.Namespace) -> int:
    from streams.query import render, run_query

    columns, rows = run_query(_settings(), args.sql)
    print(render(columns, rows, args.format))
    return 0


def cmd_schema_export(args: argparse.Namespace) -> int:
    from schemas.export import export

    for path in export(Path(args.dir)):
        print(path)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from sinks.clickhouse import connect
    from sinks.migrate import migrate

    settings = _settings()
    client = connect(settings.resolved_clickhouse_url, settings.clickhouse_database)
    try:
        applied = migrate(
            client,
            settings.clickhouse_database,
            settings.retention_days,
            settings.aggregate_retention_days,
        )
    finally:
        client.close()
    if not applied:
        print("schema is up to date")
    for m in applied:
        print(f"applied {m.version:03d}_{m.name}")
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    """Print what the rules file's security rules mean elsewhere: SQL or Sigma."""
    from streams.detectors.latency.slo import load_rules

    settings = load_settings()
    security = load_rules(settings.rules_file).security
    if args.rules_command == "sql":
        from streams.detectors.security.sql import rule_sql

        print(rule_sql(security, args.name, settings.clickhouse_database))
    else:
        from streams.detectors.security.sigma import to_sigma

        print(to_sigma(security), end="")
    return 0


def cmd_funnel(args: argparse.Namespace) -> int:
    """The stage table of a funnel (default: the first one in the rules file)."""
    import json

    from streams.detectors.funnel.report import render_table, stage_table
    from streams.detectors.latency.slo import load_rules
    from streams.detectors.latency.windows import parse_seconds
    from streams.query import run_query

    settings = _settings()
    try:
        since_s = parse_seconds(args.since)
    except ValueError as exc:
        raise VigilError(f"--since: {exc}") from None
    table = stage_table(
        load_rules(settings.rules_file).funnels,
        lambda sql: run_query(settings, sql),
        settings.clickhouse_database,
        funnel_name=args.funnel,
        tenant=args.tenant,
        since_s=since_s,
    )
    if args.format == "json":
        print("\n".join(json.dumps(row) for row in table))
    else:
        print(render_table(table))
    return 0


def cmd_incidents(args: argparse.Namespace) -> int:
    """Incidents: list and show from ClickHouse; ack and resolve through the worker."""
    import json
    import urllib.error
    import urllib.request

    from streams.query import render, run_query

    settings = _settings()
    db = settings.clickhouse_database
    if args.incidents_command == "list":
        where = "" if args.all else "WHERE status != 'resolved'"
        if args.tenant:
            from sinks.sqltext import sql_string
            from streams.incidents import of_tenant

            where += (" AND " if where else "WHERE ") + of_tenant(sql_string(args.tenant))
        columns, rows = run_query(
            settings,
            "SELECT incident_id, status, severity, tenant_id, tenants, category, alertnames, "
            "detected_at, round(mttd_s) AS mttd_s, round(mtta_s) AS mtta_s, "
            f"round(mttr_s) AS mttr_s FROM {db}.incidents FINAL {where} "
            "ORDER BY detected_at DESC LIMIT 100",
        )
        print(render(columns, rows, args.format))
        return 0
    if args.incidents_command == "show":
        safe = args.id.replace("'", "")
        columns, rows = run_query(
            settings, f"SELECT * FROM {db}.incidents FINAL WHERE incident_id = '{safe}'"
        )
        if not rows:
            raise VigilError(f"no incident {args.id}")
        record = dict(zip(columns, rows[0], strict=True))
        timeline = json.loads(record.pop("timeline"))
        for key, value in record.items():
            print(f"{key:16} {value}")
        print("timeline:")
        for step in timeline:
            print(f"  {step['at']}  {step['what']}")
        return 0
    url = (
        f"http://127.0.0.1:{settings.web_port}/api/v1/incidents/{args.id}/{args.incidents_command}"
    )
    headers = {"Content-Type": "application/json"}
    if settings.console_token is not None:
        headers["Authorization"] = f"Bearer {settings.console_token.get_secret_value()}"
    request = urllib.request.Request(
        url, data=json.dumps({"by": args.by}).encode(), method="POST", headers=headers,
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise VigilError(json.loads(exc.read() or b"{}").get("error", str(exc))) from None
    except urllib.error.URLError as exc:
        raise VigilError(f"no worker at {url} ({exc.reason}): is `vigil up` running?") from None
    print(f"{answer['incident_id']}: {answer['status']}")
    return 0


def cmd_evidence(args: argparse.Namespace) -> int:
    """The rollout process's evidence documents (streams/evidence.py), as JSON."""
    from datetime import UTC, datetime
    from pathlib import Path

    from streams import evidence
    from streams.query import run_query

    settings = _settings()
    db = settings.clickhouse_database

    def query(sql: str) -> tuple[list[str], list[list[Any]]]:
        return run_query(settings, sql)

    doc: Any
    if args.evidence_command == "baseline":
        until = datetime.now(UTC) if args.until is None else datetime.fromisoformat(args.until)
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        doc = evidence.baseline(query, db, args.service, args.minutes, until, args.cohort)
    elif args.evidence_command == "stage":
        doc = evidence.stage(query, db, args.service, args.release, args.tenant)
    else:
        doc = evidence.incident(query, db, args.id)
        if args.markdown:
            Path(args.markdown).write_text(evidence.postmortem(doc))
    text = doc.model_dump_json(indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def cmd_silence(args: argparse.Namespace) -> int:
    """Silences in Alertmanager (API v2) at VIGIL_ALERTMANAGER_URL."""
    from datetime import timedelta

    from streams import silences
    from streams.detectors.latency.windows import parse_seconds

    url = _settings().alertmanager_url
    if args.silence_command == "add":
        try:
            seconds = parse_seconds(args.duration)
        except ValueError as exc:
            raise VigilError(f"--for: {exc}") from None
        sid = silences.add(url, args.match or [], timedelta(seconds=seconds), args.comment, args.by)
        print(sid)
    elif args.silence_command == "list":
        print(silences.render(silences.list_silences(url)))
    else:
        silences.expire(url, args.id)
        print(f"expired {args.id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the embedded stack (broker, worker, ClickHouse)")
    up.add_argument("--demo", action="store_true", help="also run the demo traffic generator")
    up.add_argument("--rate", type=float, default=500.0, help="demo messages per second")
    up.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="demo event time runs this many times faster than the wall clock (needs --for):"
        " --speed 40 --for 90 replays an hour",
    )
    up.add_argument(
        "--for",
        dest="duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: until Ctrl-C)",
    )
    up.add_argument(
        "--broker-port",
        type=int,
        default=None,
        help="broker port (default: VIGIL_BROKER_PORT, else a free port)",
    )
    up.set_defaults(func=cmd_up)

    sub.add_parser("worker", help="run one Faust worker").set_defaults(func=cmd_worker)

    produce = sub.add_parser("produce", help="send JSON lines to the events topic")
    produce.add_argument("file", help="file of JSON lines, or - for stdin")
    produce.add_argument("--topic", default=None)
    produce.set_defaults(func=cmd_produce)

    demo = sub.add_parser("demo", help="run the demo traffic generator only")
    demo.add_argument("--rate", type=float, default=500.0)
    demo.add_argument("--for", dest="duration", type=float, default=None)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--incident-every",
        type=float,
        default=600.0,
        help="seconds between repetitions of the incident schedule",
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="event time runs this many times faster than the wall clock (needs --for)",
    )
    demo.set_defaults(func=cmd_demo)

    alerts = sub.add_parser("alerts", help="print alerts from the alerts topic")
    alerts.add_argument("--follow", "-f", action="store_true")
    alerts.add_argument("--json", action="store_true", help="print the CloudEvents JSON")
    alerts.add_argument(
        "--idle-timeout",
        type=float,
        default=3.0,
        help="without --follow, stop after this many quiet seconds",
    )
    alerts.set_defaults(func=cmd_alerts)

    query = sub.add_parser("query", help="run a read-only SQL query")
    query.add_argument("sql")
    query.add_argument("--format", choices=["table", "json", "csv"], default="table")
    query.set_defaults(func=cmd_query)

    schema = sub.add_parser("schema", help="contract tools")
    schema_sub = schema.add_subparsers(dest="schema_command", required=True)
    export = schema_sub.add_parser("export", help="write JSON Schemas to DIR")
    export.add_argument("dir")
    export.set_defaults(func=cmd_schema_export)

    sub.add_parser("migrate", help="apply ClickHouse DDL migrations").set_defaults(func=cmd_migrate)

    funnel = sub.add_parser("funnel", help="a funnel's stages: reached, conversion, status")
    funnel.add_argument("--funnel", default=None, help="funnel name (default: the first)")
    funnel.add_argument("--tenant", default=None, help="one tenant (default: all)")
    funnel.add_argument("--since", default="24h", help="journeys entered in the last ... (24h)")
    funnel.add_argument("--format", choices=["table", "json"], default="table")
    funnel.set_defaults(func=cmd_funnel)

    sub.add_parser(
        "forward", help="deliver the alerts topic to Alertmanager (VIGIL_ALERTMANAGER_URL)"
    ).set_defaults(func=cmd_forward)

    ev = sub.add_parser("evidence", help="evidence documents: baseline, stage, incident")
    ev_sub = ev.add_subparsers(dest="evidence_command", required=True)
    base = ev_sub.add_parser("baseline", help="a service's figures before a canary")
    base.add_argument("--service", required=True)
    base.add_argument("--minutes", type=int, default=30)
    base.add_argument("--until", help="end of the window (ISO time; default now)")
    base.add_argument("--cohort", default="", help="only this cohort (default: every request)")
    st = ev_sub.add_parser("stage", help="one canary stage: per metric, decision")
    st.add_argument("--service", required=True)
    st.add_argument("--tenant", default="", help="one tenant's canary (VIGIL_CANARY_PER_TENANT)")
    st.add_argument("--release", required=True)
    inc = ev_sub.add_parser("incident", help="an incident's detection, alerts, timeline")
    inc.add_argument("id")
    inc.add_argument("--markdown", help="also write a post-mortem draft here")
    for p in (base, st, inc):
        p.add_argument("--out", help="write the JSON here (default: stdout)")
        p.set_defaults(func=cmd_evidence)

    incidents = sub.add_parser("incidents", help="incidents: list, show, ack, resolve")
    incidents_sub = incidents.add_subparsers(dest="incidents_command", required=True)
    listing = incidents_sub.add_parser("list", help="open incidents (--all: every one)")
    listing.add_argument("--all", action="store_true")
    listing.add_argument("--tenant")
    listing.add_argument("--format", choices=["table", "json", "csv"], default="table")
    listing.set_defaults(func=cmd_incidents)
    show = incidents_sub.add_parser("show", help="one incident with its timeline")
    show.add_argument("id")
    show.set_defaults(func=cmd_incidents)
    for action, text in (("ack", "acknowledge"), ("resolve", "resolve by hand")):
        cmd = incidents_sub.add_parser(action, help=f"{text} an open incident")
        cmd.add_argument("id")
        cmd.add_argument("--by", required=True, help="who")
        cmd.set_defaults(func=cmd_incidents)

    silence = sub.add_parser("silence", help="silences in Alertmanager (VIGIL_ALERTMANAGER_URL)")
    silence_sub = silence.add_subparsers(dest="silence_command", required=True)
    add = silence_sub.add_parser("add", help="silence the alerts matching every --match")
    add.add_argument("--match", action="append", help="name=value (or !=, =~, !~); repeat")
    add.add_argument("--for", dest="duration", default="2h", help="how long (2h, 30m, 1d)")
    add.add_argument("--comment", required=True, help="why (a deploy, a known incident)")
    add.add_argument("--by", required=True, help="who")
    add.set_defaults(func=cmd_silence)
    silence_sub.add_parser("list", help="every silence, newest end first").set_defaults(
        func=cmd_silence
    )
    expire = silence_sub.add_parser("expire", help="end a silence now")
    expire.add_argument("id")
    expire.set_defaults(func=cmd_silence)

    serve = sub.add_parser(
        "serve",
        help="the console and tenant API as their own process (production: reads "
        "VIGIL_CLICKHOUSE_URL, needs VIGIL_CONSOLE_TOKEN)",
    )
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.set_defaults(func=cmd_serve)

    report = sub.add_parser("report", help="a tenant's monthly SLA report; the daily summary")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    monthly = report_sub.add_parser("tenant", help="calendar-month SLA compliance of a tenant")
    monthly.add_argument("tenant")
    monthly.add_argument("--month", required=True, help="YYYY-MM (UTC calendar month)")
    daily = report_sub.add_parser("daily", help="the operations team's summary of a day")
    daily.add_argument("--date", default="", help="YYYY-MM-DD (default: today, UTC)")
    for cmd in (monthly, daily):
        cmd.add_argument("--format", choices=("markdown", "json"), default="markdown")
        cmd.add_argument("--out", default="", help="write here instead of stdout")
        cmd.set_defaults(func=cmd_report)

    token = sub.add_parser("token", help="per-tenant API tokens: create, list, revoke")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="a token for one tenant (shown once)")
    create.add_argument("--tenant", required=True, help="the tenant it reads")
    create.add_argument("--ttl", default="90d", help="lifetime: 90d, 12h, 2w (default 90d)")
    create.add_argument("--by", default="vigil", help="who asked for it (kept with it)")
    create.set_defaults(func=cmd_token)
    tlist = token_sub.add_parser("list", help="tokens (never their secret or hash)")
    tlist.add_argument("--tenant", default="", help="only this tenant's")
    tlist.set_defaults(func=cmd_token)
    revoke = token_sub.add_parser("revoke", help="revoke a token by its id (effective in "
                                  "VIGIL_TOKEN_REFRESH_S)")  # fmt: skip
    revoke.add_argument("token_id")
    revoke.set_defaults(func=cmd_token)

    status = sub.add_parser("status", help="the console's overview in the terminal")
    status.add_argument("--follow", action="store_true", help="redraw it in place until Ctrl-C")
    status.add_argument("--tenant", default="", help="one tenant's page (health, SLOs, funnel)")
    status.add_argument("--url", default="", help="the console's base URL (default: the "
                        "worker of the running `vigil up`, or VIGIL_PUBLIC_URL)")  # fmt: skip
    status.add_argument("--json", action="store_true", help="print the document as JSON")
    status.set_defaults(func=cmd_status)

    rules = sub.add_parser("rules", help="the security rules as ClickHouse SQL or Sigma")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    sql = rules_sub.add_parser(
        "sql", help="the ClickHouse SQL that finds a rule's events (and its windows)"
    )
    sql.add_argument("name", help="a base rule, a correlation, or cross_tenant")
    sql.set_defaults(func=cmd_rules)
    rules_sub.add_parser(
        "sigma", help="every base rule and correlation as Sigma YAML"
    ).set_defaults(func=cmd_rules)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except VigilError as exc:
        print(f"vigil: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
