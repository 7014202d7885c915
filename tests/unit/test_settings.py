from __future__ import annotations

import pytest

from streams.errors import ConfigError
from streams.settings import DEV_HASH_KEY, load_settings


def test_defaults_are_embedded_and_derive_topic_names() -> None:
    s = load_settings(topic_prefix="acme")
    assert s.mode == "embedded"
    assert (s.events_topic, s.dlq_topic, s.alerts_topic) == (
        "acme.events",
        "acme.events.dlq",
        "acme.alerts",
    )
    assert s.resolved_clickhouse_url.startswith("chdb://")
    assert s.hash_key_bytes == DEV_HASH_KEY.encode()


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_SINK_FLUSH_ROWS", "123")
    monkeypatch.setenv("VIGIL_CLICKHOUSE_URL", "https://u:p@ch:8443/vigil")
    s = load_settings()
    assert s.sink_flush_rows == 123
    assert s.resolved_clickhouse_url == "https://u:p@ch:8443/vigil"


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.sink_flush_rows = 1  # type: ignore[misc]


def test_production_requires_hash_key_and_clickhouse() -> None:
    with pytest.raises(ConfigError, match="VIGIL_HASH_KEY"):
        load_settings(mode="production", clickhouse_url="http://ch:8123")
    with pytest.raises(ConfigError, match="VIGIL_CLICKHOUSE_URL"):
        load_settings(mode="production", hash_key="k" * 32)
    ok = load_settings(mode="production", hash_key="k" * 32, clickhouse_url="http://ch:8123")
    assert ok.hash_key_bytes == b"k" * 32


def test_sasl_requires_credentials() -> None:
    with pytest.raises(ConfigError, match="VIGIL_KAFKA_SASL_USERNAME"):
        load_settings(kafka_security_protocol="SASL_SSL")


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="VIGIL_SINK_FLUSH_ROWS"):
        load_settings(sink_flush_rows=0)


def test_secrets_are_not_printed() -> None:
    s = load_settings(
        hash_key="super-secret-key",
        kafka_sasl_password="pw-123",
        kafka_sasl_username="u",
        kafka_security_protocol="SASL_SSL",
    )
    assert "super-secret-key" not in repr(s)
    assert "pw-123" not in repr(s)
