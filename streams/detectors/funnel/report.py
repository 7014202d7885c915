"""``vigil funnel``: the stage table of a funnel, from ``funnel_progress`` and the alerts.

One row per step: journeys that entered in the period and reached the step, conversion
from the previous step, the expected conversion and alert threshold from the rules file
(the tenant's own with ``--tenant``), the stage's alert status, journeys still pending at
the previous step (they may yet convert), journeys dropped there, and the median time
from the previous step (exact, over the journeys' reached times).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sinks.sqltext import sql_string
from streams.detectors.funnel.rules import Funnel, FunnelConfig
from streams.errors import VigilError

Query = Callable[[str], tuple[list[str], list[list[Any]]]]


def stage_table(
    config: FunnelConfig,
    query: Query,
    database: str,
    *,
    funnel_name: str | None = None,
    tenant: str | None = None,
    since_s: float = 86400,
) -> list[dict[str, Any]]:
    funnel = _pick(config, funnel_name)
    n = len(funnel.steps)
    where = [
        f"funnel = {sql_string(funnel.name)}",
        f"entered_at >= now64(3) - toIntervalMillisecond({int(since_s * 1000)})",
    ]
    if tenant is not None:
        where.append(f"tenant_id = {sql_string(tenant)}")
    steps = f"range(1, {n + 1})"
    medians = ", ".join(
        f"medianExactIf((reached_ms[{k}] - reached_ms[{k - 1}]) / 1000, reached_ms[{k}] >= 0)"
        for k in range(2, n + 1)
    )
    sql = (
        f"SELECT sumForEach(arrayMap(k -> toInt64(level >= k), {steps})), "
        f"sumForEach(arrayMap(k -> toInt64(level = k AND status = 'pending'), {steps})), "
        f"sumForEach(arrayMap(k -> toInt64(level = k AND status = 'dropped'), {steps})), "
        f"[{medians}] FROM {database}.funnel_progress FINAL WHERE {' AND '.join(where)}"
    )
    _, rows = query(sql)
    reached, pending, dropped, ttc = (
        rows[0] if rows and rows[0][0] else ([0] * n,) * 3 + ([None] * (n - 1),)
    )
    firing = _firing(query, database, funnel.name, tenant)
    table: list[dict[str, Any]] = []
    for k, step in enumerate(funnel.steps, start=1):
        row: dict[str, Any] = {
            "funnel": funnel.name,
            "step": k,
            "stage": step.label,
            "event_name": step.event,
            "reached": int(reached[k - 1]),
            "pending": int(pending[k - 1]),
            "dropped": int(dropped[k - 1]),
        }
        if k > 1:
            before = int(reached[k - 2])
            threshold = config.threshold(funnel, k, tenant or "")
            median = ttc[k - 2]
            row.update(
                conversion=round(int(reached[k - 1]) / before, 4) if before else None,
                expected=step.expected,
                threshold=threshold.alert_below if threshold else None,
                # None: observed (the p95 time to convert; see the alert's evidence)
                within_s=None if funnel.auto_within(k) else funnel.within_ms(k) / 1000,
                status="firing" if step.label in firing else "ok",
                p50_time_to_convert_s=None if median is None or median != median else median,
            )
        table.append(row)
    return table


def _pick(config: FunnelConfig, name: str | None) -> Funnel:
    if not config.definitions:
        raise VigilError("the rules file defines no funnel (funnels.definitions)")
    if name is None:
        return config.definitions[0]
    for f in config.definitions:
        if f.name == name:
            return f
    known = ", ".join(f.name for f in config.definitions)
    raise VigilError(f"no funnel {name!r} in the rules file; funnels: {known}")


def _firing(query: Query, database: str, funnel: str, tenant: str | None) -> set[str]:
    """Stages with a FunnelStageConversionLow alert whose latest transition is firing."""
    where = f"alertname = 'FunnelStageConversionLow' AND labels['funnel'] = {sql_string(funnel)}"
    if tenant is not None:
        where += f" AND tenant_id = {sql_string(tenant)}"
    _, rows = query(
        f"SELECT labels['stage'] FROM {database}.alerts WHERE {where} "
        "GROUP BY fingerprint, labels['stage'] HAVING argMax(status, ts) = 'firing'"
    )
    return {str(r[0]) for r in rows}


def render_table(table: list[dict[str, Any]]) -> str:
    def pct(v: Any) -> str:
        return "" if v is None else f"{v:.1%}"

    head = ["step", "stage", "reached", "conversion", "expected", "threshold", "status",
            "pending", "dropped", "p50 ttc"]  # fmt: skip
    cells = [head]
    for r in table:
        ttc = r.get("p50_time_to_convert_s")
        cells.append(
            [
                str(r["step"]),
                r["stage"],
                str(r["reached"]),
                pct(r.get("conversion")),
                pct(r.get("expected")),
                pct(r.get("threshold")),
                r.get("status", ""),
                str(r["pending"]),
                str(r["dropped"]),
                "" if ttc is None else f"{ttc:.0f}s",
            ]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
