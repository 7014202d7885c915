"""Versioned DDL migrations: ``sinks/ddl/NNN_name.sql`` applied once each, in order.

Applied versions are recorded in ``<database>.schema_migrations``; every statement is
also written ``IF NOT EXISTS`` so a half-applied migration can simply be run again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from streams.errors import VigilError

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(
    database: str, retention_days: int, aggregate_retention_days: int = 400
) -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("sinks").joinpath("ddl").iterdir():
        match = _NAME.match(entry.name)
        if not match:
            continue
        text = entry.read_text(encoding="utf-8")
        text = (
            text.replace("{database}", database)
            .replace("{retention_days}", str(retention_days))
            .replace("{aggregate_retention_days}", str(aggregate_retention_days))
        )
        body = "\n".join(ln for ln in text.splitlines() if not ln.strip().startswith("--"))
        statements = tuple(s.strip() for s in body.split(";") if s.strip())
        found.append(Migration(int(match.group(1)), match.group(2), statements))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise VigilError(f"duplicate migration versions in sinks/ddl: {versions}")
    return found


def migrate(
    client: Any, database: str, retention_days: int, aggregate_retention_days: int = 400
) -> list[Migration]:
    """Apply pending migrations; return the ones applied by this call."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version"
    )
    done = {
        int(row[0])
        for row in client.query(f"SELECT version FROM {database}.schema_migrations").result_rows
    }
    applied = []
    for migration in load_migrations(database, retention_days, aggregate_retention_days):
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            f"{database}.schema_migrations",
            [[migration.version, migration.name]],
            column_names=["version", "name"],
        )
        applied.append(migration)
    return applied
