"""``vigil query``: ask the running worker (embedded) or open the engine directly."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
from typing import Any

from sinks.clickhouse import connect
from streams.errors import ClickHouseUnavailable, QueryRejected
from streams.settings import Settings
from streams.web import check_read_only, jsonable


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[list[Any]]]:
    statement = check_read_only(sql)
    if settings.mode == "embedded":
        try:
            return _via_worker(settings, statement)
        except urllib.error.URLError:
            pass  # no worker running: open the engine ourselves
    try:
        client = connect(settings.resolved_clickhouse_url, settings.clickhouse_database)
    except ClickHouseUnavailable:
        raise
    try:
        result = client.query(statement, settings={"readonly": 1})
    finally:
        client.close()
    rows = [[jsonable(v) for v in row] for row in result.result_rows]
    return list(result.column_names), rows


def _via_worker(settings: Settings, sql: str) -> tuple[list[str], list[list[Any]]]:
    url = f"http://127.0.0.1:{settings.web_port}/query"
    request = urllib.request.Request(
        url,
        data=json.dumps({"sql": sql}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        message = json.loads(exc.read() or b"{}").get("error", str(exc))
        raise QueryRejected(message) from None
    return body["columns"], body["rows"]


def render(columns: list[str], rows: list[list[Any]], fmt: str) -> str:
    if fmt == "json":
        return "\n".join(json.dumps(dict(zip(columns, row, strict=True))) for row in rows)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    cells = [[str(c) for c in columns]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
