"""Event times and literals as ClickHouse SQL text, for the queries alerts carry."""

from __future__ import annotations

from datetime import UTC, datetime


def dt(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def as_utc(value: datetime) -> datetime:
    """A time read back from ClickHouse (naive, in UTC) as an aware UTC datetime."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso_z(value: datetime) -> str:
    """An instant as the ISO 8601 text the APIs show (UTC, seconds, ``Z``); a naive value
    is UTC, as ClickHouse hands it back."""
    return as_utc(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sql_time(ms: int) -> str:
    text = dt(ms).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"toDateTime64('{text}', 3, 'UTC')"


def sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
