from __future__ import annotations

from prometheus_client import CollectorRegistry

from streams.metrics import Metrics
from streams.web import stats_snapshot


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
