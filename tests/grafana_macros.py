"""Grafana's and the ClickHouse plugin's macros, expanded as the pinned plugin version
(infra/grafana/dashboards.py PLUGIN_VERSION; its pkg/macros) expands them, so a panel's
SQL can run on chDB in the tests; and Grafana's own variables for PromQL."""

from __future__ import annotations

import re
from datetime import datetime

_MACRO = re.compile(r"\$__(timeFilter_ms|timeFilter|timeInterval_ms|timeInterval)\(([^()]*)\)")


def expand_sql(sql: str, start: datetime, end: datetime, interval_s: int, tenant: str) -> str:
    def datetime_s(t: datetime) -> str:
        return f"toDateTime({int(t.timestamp())})"

    def datetime_ms(t: datetime) -> str:
        return f"fromUnixTimestamp64Milli({int(t.timestamp() * 1000)})"

    def one(match: re.Match[str]) -> str:
        name, col = match.group(1), match.group(2).strip()
        if name == "timeFilter":
            return f"{col} >= {datetime_s(start)} AND {col} <= {datetime_s(end)}"
        if name == "timeFilter_ms":
            return f"{col} >= {datetime_ms(start)} AND {col} <= {datetime_ms(end)}"
        if name == "timeInterval":
            return f"toStartOfInterval(toDateTime({col}), INTERVAL {max(interval_s, 1)} second)"
        return (
            f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {max(interval_s, 1) * 1000} "
            "millisecond)"
        )

    out = _MACRO.sub(one, sql)
    out = out.replace("$__fromTime_ms", datetime_ms(start)).replace(
        "$__toTime_ms", datetime_ms(end)
    )
    out = out.replace("$__fromTime", datetime_s(start)).replace("$__toTime", datetime_s(end))
    out = out.replace("$__interval_s", str(max(interval_s, 1)))
    out = out.replace("${tenant}", tenant).replace("$tenant", tenant)
    assert "$" not in out, f"a macro or variable left unexpanded: {out}"
    return out


def expand_promql(expr: str) -> str:
    """Grafana's interval variables as a dashboard would send them."""
    for var, value in (("$__rate_interval", "1m"), ("$__interval", "30s"), ("$__range", "6h")):
        expr = expr.replace(var, value)
    return expr
