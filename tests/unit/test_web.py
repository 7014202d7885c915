from __future__ import annotations

import hashlib
import hmac

from prometheus_client import CollectorRegistry

from streams.incidents import pagerduty_signed
from streams.metrics import Metrics
from streams.settings import Settings
from streams.web import pagerduty_refusal, stats_snapshot, webhook_refusal


def test_stats_sum_every_label_of_each_metric() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.messages_consumed.inc(3)
    metrics.events_consumed.labels(kind="http.request").inc(5)
    metrics.events_consumed.labels(kind="analytics").inc(2)
    metrics.events_invalid.labels(reason="not_json").inc(4)
    metrics.dlq_messages.inc(4)
    metrics.sink_rows_written.labels(table="events").inc(7)
    metrics.sink_rows_written.labels(table="dead_letters").inc(4)
    metrics.alerts_published.labels(severity="critical", status="firing").inc()
    metrics.consumer_lag.labels(partition="0").set(10)
    metrics.consumer_lag.labels(partition="1").set(5)
    assert stats_snapshot(metrics) == {
        "messages": 3,
        "events": 7,
        "invalid": 4,
        "dlq": 4,
        "rows_written": 11,
        "alerts": 1,
        "lag": 15,
    }


def test_pagerduty_webhooks_are_read_only_when_signed_with_the_subscription_secret() -> None:
    """PagerDuty v3 signs the raw body: X-PagerDuty-Signature = comma-separated
    v1=<hex HMAC-SHA256> (two while a secret is rotated); at least one must match."""
    body = b'{"event":{"event_type":"incident.acknowledged","data":{"title":"x"}}}'
    secret = "whsec-test-0123456789"

    def sign(key: str, data: bytes = body) -> str:
        return "v1=" + hmac.new(key.encode(), data, hashlib.sha256).hexdigest()

    assert pagerduty_signed(secret.encode(), body, sign(secret))
    assert pagerduty_signed(secret.encode(), body, f"{sign('old-secret')}, {sign(secret)}")
    assert not pagerduty_signed(secret.encode(), body + b" ", sign(secret))  # tampered
    assert not pagerduty_signed(secret.encode(), body, sign("another"))
    assert not pagerduty_signed(secret.encode(), body, sign(secret).removeprefix("v1="))
    signed = Settings(pagerduty_webhook_secret=secret)
    assert pagerduty_refusal(signed, body, sign(secret)) is None
    assert pagerduty_refusal(signed, body, sign("another")) == "invalid signature"
    assert pagerduty_refusal(signed, body, "") == "missing X-PagerDuty-Signature"
    # without a secret: the local demo reads unsigned events, production refuses them all
    assert pagerduty_refusal(Settings(), body, "") is None
    production = Settings(mode="production", hash_key="k" * 32,
                          clickhouse_url="http://ch:8123")  # fmt: skip
    refusal = pagerduty_refusal(production, body, sign(secret))
    assert refusal is not None and "VIGIL_PAGERDUTY_WEBHOOK_SECRET" in refusal
    production_signed = production.model_copy(
        update={"pagerduty_webhook_secret": signed.pagerduty_webhook_secret}
    )
    assert pagerduty_refusal(production_signed, body, sign(secret)) is None


def test_the_alertmanager_webhook_reads_only_its_alertmanagers_token() -> None:
    with_token = Settings(alertmanager_webhook_token="am-token-0123")
    assert webhook_refusal(with_token, "Bearer am-token-0123") is None
    assert webhook_refusal(with_token, "Bearer other") == "invalid token"
    assert webhook_refusal(with_token, "") == "missing Authorization: Bearer <token>"
    assert webhook_refusal(Settings(), "") is None  # embedded, no token: the local stack
    production = Settings(mode="production", hash_key="k" * 32, clickhouse_url="http://ch:8123")
    refusal = webhook_refusal(production, "Bearer anything")
    assert refusal is not None and "VIGIL_ALERTMANAGER_WEBHOOK_TOKEN" in refusal
