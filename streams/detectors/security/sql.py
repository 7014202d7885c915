"""ClickHouse SQL for a security rule over the stored events (``vigil rules sql NAME``).

* a base rule: its events;
* an ``event_count`` / ``value_count`` correlation: every event of its base rules with
  the count (or distinct count) of the window ``(t - timespan, t]`` of its group that it
  ends, and whether that window holds: the engine's exact sliding windows, in SQL
  (window functions over the event time in milliseconds);
* a ``temporal`` correlation: the events of its steps per group, in time order (the
  chain itself is the engine's to find);
* ``cross_tenant``: the built-in rule's events.

Late events are stored like every other, so the SQL sees them too; the engine flags
them in ``security_late_events`` instead of judging them.
"""

from __future__ import annotations

from schemas.rows import EVENT_COLUMNS
from sinks.sqltext import sql_string
from streams.detectors.security.engine import CROSS_TENANT_RULE
from streams.detectors.security.rules import TEMPORAL, BaseRule, Correlation, SecurityConfig
from streams.errors import ConfigError

#: a rule field stored under another column name
_COLUMN_OF = {"valid": "signature_valid"}
_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=", "neq": "!="}
_SHOWN = ("ts", "tenant_id", "kind", "event_id")


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return sql_string(str(value))


def _where(rule: BaseRule) -> str:
    terms = [f"kind = {sql_string(rule.kind)}"]
    for name, wanted in rule.where.items():
        column = _COLUMN_OF.get(name, name)
        if column not in EVENT_COLUMNS:
            raise ConfigError(
                f"rule {rule.name}: field {name} is not a column of the events table, so "
                "no SQL can select on it"
            )
        if isinstance(wanted, tuple):
            terms.append(f"{column} IN ({', '.join(_literal(v) for v in wanted)})")
        else:
            terms.append(f"{column} = {_literal(wanted)}")
    return " AND ".join(terms)


def _selection(config: SecurityConfig, names: tuple[str, ...]) -> str:
    rules = {r.name: r for r in config.rules}
    parts = [f"({_where(rules[n])})" for n in names if n in rules]
    return " OR ".join(parts)


def rule_sql(config: SecurityConfig, name: str, database: str = "vigil") -> str:
    """The SQL of base rule or correlation ``name``; ConfigError names the known ones."""
    events = f"{database}.events"
    base = {r.name: r for r in config.rules}
    correlations = {c.name: c for c in config.correlations}
    if name == CROSS_TENANT_RULE:
        return (
            f"-- {CROSS_TENANT_RULE} (built-in, CrossTenantAccess): every tenant violation and "
            "every request across tenants\n"
            "SELECT ts, kind, actor_tenant_id, resource_tenant_id, "
            "if(model != '', model, route) AS target, blocked, event_id\n"
            f"FROM {events}\n"
            "WHERE kind = 'security.tenant_violation' OR (kind = 'http.request' AND "
            "actor_tenant_id != '' AND resource_tenant_id != '' AND "
            "actor_tenant_id != resource_tenant_id)\n"
            "ORDER BY ts"
        )
    if name in base:
        return (
            f"-- base rule {name}\n"
            f"SELECT {', '.join(_SHOWN)} FROM {events}\n"
            f"WHERE {_where(base[name])}\nORDER BY ts"
        )
    corr = correlations.get(name)
    if corr is None:
        known = sorted([*base, *correlations, CROSS_TENANT_RULE])
        raise ConfigError(f"no security rule {name!r}; known: {', '.join(known)}")
    return _correlation_sql(config, corr, events)


def _correlation_sql(config: SecurityConfig, corr: Correlation, events: str) -> str:
    group = list(corr.group_by)
    for column in group:
        if column not in EVENT_COLUMNS:
            raise ConfigError(
                f"correlation {corr.name}: group-by field {column} is not a column of the "
                "events table"
            )
    steps = [r for r in corr.rules if r not in {c.name for c in config.correlations}]
    chained = [r for r in corr.rules if r not in steps]
    where = _selection(config, tuple(steps))
    groups = ", ".join(group)
    nonempty = "".join(f" AND {c} != ''" for c in group if c != "tenant_id")
    if corr.type in TEMPORAL:
        note = f", chaining {', '.join(chained)} (see its own SQL)" if chained else ""
        return (
            f"-- {corr.name} ({corr.alertname}): {corr.type} of {', '.join(corr.rules)} "
            f"within {corr.timespan} per {groups or 'platform'}{note}\n"
            f"SELECT {groups + ', ' if groups else ''}{', '.join(_SHOWN)} FROM {events}\n"
            f"WHERE ({where}){nonempty}\n"
            f"ORDER BY {groups + ', ' if groups else ''}ts"
        )
    assert corr.condition is not None
    threshold = corr.condition.threshold
    op = _OPS[corr.condition.op]
    counted = corr.counted_field
    measure = f"uniqExact({counted})" if counted else "count()"
    partition = f"PARTITION BY {groups} " if groups else ""
    if counted:
        nonempty += f" AND {counted} != ''"
    per_group = ""
    if corr.thresholds_by_group:
        per_group = (
            f"\n-- thresholds by {group[0]}: "
            + ", ".join(f"{k} {op} {v}" for k, v in corr.thresholds_by_group.items())
            + f" (others {op} {threshold})"
        )
    return (
        f"-- {corr.name} ({corr.alertname}): windows (t - {corr.timespan}, t] per "
        f"{groups or 'platform'}, holding when {measure} {op} {threshold}{per_group}\n"
        f"SELECT {groups + ', ' if groups else ''}ts AS window_end, event_id, in_window, "
        f"in_window {op} {threshold} AS holds\n"
        f"FROM (SELECT {groups + ', ' if groups else ''}ts, event_id, {measure} OVER "
        f"(ORDER BY toUnixTimestamp64Milli(ts) RANGE BETWEEN {corr.timespan_ms - 1} "
        f"PRECEDING AND CURRENT ROW) AS in_window\n"
        f"      FROM {events} WHERE ({where}){nonempty})\n"
        f"ORDER BY {groups + ', ' if groups else ''}window_end"
    ).replace("OVER (ORDER BY", f"OVER ({partition}ORDER BY")
