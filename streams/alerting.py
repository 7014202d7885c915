"""Alert lifecycle: fingerprint, firing/resolved, dedup of repeats, publish + record.

Detectors call :meth:`AlertPublisher.fire` every time a condition holds and
:meth:`AlertPublisher.resolve` when it clears; the publisher decides what is news:
the first firing, a reminder once the dedup window has passed, and the resolution.
Times are event times passed in by the detector, so a replay produces the same alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from schemas.alerts import Alert, AlertData, Annotations, Severity, Status, alert_fingerprint
from sinks.clickhouse import ClickHouseWriter
from streams.catalogue import lookup
from streams.metrics import Metrics
from streams.publish import Message, Publisher, Send


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """What identifies and describes one alert; ``fingerprint`` keys its lifecycle."""

    alertname: str
    severity: Severity
    labels: dict[str, str]
    annotations: Annotations

    @property
    def fingerprint(self) -> str:
        return alert_fingerprint(self.alertname, self.labels)


@dataclass(slots=True)
class _Active:
    starts_at: datetime
    last_sent_at: datetime
    repeats: int = 0


class AlertPublisher:
    def __init__(
        self,
        writer: ClickHouseWriter | None,
        send: Send | Publisher,
        topic: str,
        metrics: Metrics,
        dedup_window_s: float,
        runbook_base: str = "",
    ) -> None:
        """``send`` is the producer's send (wrapped in a :class:`Publisher` with default
        retries) or a configured :class:`Publisher`: an alert is retried with backoff
        until the broker has it; publishing never raises into the detector."""
        self._writer = writer
        self._publisher = send if isinstance(send, Publisher) else Publisher(send, metrics)
        self._topic = topic
        self._metrics = metrics
        self._window_s = dedup_window_s
        self._runbook_base = runbook_base
        self._active: dict[str, _Active] = {}

    def is_firing(self, spec: AlertSpec) -> bool:
        return spec.fingerprint in self._active

    async def fire(
        self,
        spec: AlertSpec,
        value: float,
        threshold: float,
        at: datetime,
        evidence: dict[str, Any] | None = None,
        *,
        auto_rollback: bool = False,
        starts_at: datetime | None = None,
    ) -> Alert | None:
        """Publish a firing alert unless the same one went out within the dedup window.

        ``starts_at`` defaults to ``at`` (the condition began with this call); detectors
        that need several observations pass the time of the first one. An alert the
        catalogue lacks raises :class:`~streams.catalogue.UnknownAlert`."""
        lookup(spec.alertname)
        state = self._active.get(spec.fingerprint)
        if state is not None and (at - state.last_sent_at).total_seconds() < self._window_s:
            state.repeats += 1
            self._metrics.alerts_suppressed.inc()
            return None
        if state is None:
            state = self._active[spec.fingerprint] = _Active(
                starts_at=starts_at or at, last_sent_at=at
            )
        else:
            state.last_sent_at = at
        evidence = {**(evidence or {}), "suppressed_repeats": state.repeats}
        return await self._emit(
            spec, "firing", value, threshold, state.starts_at, at, evidence, auto_rollback
        )

    async def resolve(
        self,
        spec: AlertSpec,
        value: float,
        threshold: float,
        at: datetime,
        *,
        starts_at: datetime | None = None,
    ) -> Alert | None:
        """Publish the resolution of a firing alert (``endsAt`` = ``at``). An alert this
        process does not know is resolved only when the caller says when it started (a
        detector whose state survived a restart); otherwise there is nothing to resolve.
        The caller's ``starts_at`` wins: a detector may have learnt since the page that
        the condition began earlier (input out of order)."""
        lookup(spec.alertname)
        state = self._active.pop(spec.fingerprint, None)
        if state is None and starts_at is None:
            return None
        began = starts_at if starts_at is not None else state.starts_at if state else None
        assert began is not None
        return await self._emit(spec, "resolved", value, threshold, began, at, {})

    async def _emit(
        self,
        spec: AlertSpec,
        status: Status,
        value: float,
        threshold: float,
        starts_at: datetime,
        at: datetime,
        evidence: dict[str, Any],
        auto_rollback: bool = False,
    ) -> Alert:
        annotations = spec.annotations
        if not annotations.runbook_url:
            url = lookup(spec.alertname).runbook_url(self._runbook_base)
            annotations = annotations.model_copy(update={"runbook_url": url})
        data = AlertData(
            fingerprint=spec.fingerprint,
            status=status,
            alertname=spec.alertname,
            severity=spec.severity,
            labels=spec.labels,
            annotations=annotations,
            value=value,
            threshold=threshold,
            starts_at=starts_at,
            ends_at=at if status == "resolved" else None,
            evidence=evidence,
            auto_rollback=auto_rollback,
        )
        alert = Alert.build(data, at)
        await self._publish(alert)
        return alert

    async def _publish(self, alert: Alert) -> None:
        data = alert.data
        message = Message(self._topic, data.fingerprint.encode(), alert.to_json(), [])
        await self._publisher.publish("alerts", [message])
        self._metrics.alerts_published.labels(severity=data.severity, status=data.status).inc()
        if self._writer is not None:
            # buffered with the other rows: an alert storm (a PII incident across many
            # tenants) must not turn into one synchronous INSERT per alert on the hot path
            await self._writer.add({"alerts": alert_columns([alert])})


def alert_columns(alerts: list[Alert]) -> dict[str, list[Any]]:
    return {
        "tenant_id": [a.data.labels.get("tenant_id", "") for a in alerts],
        "ts": [a.time for a in alerts],
        "alert_id": [a.id for a in alerts],
        "fingerprint": [a.data.fingerprint for a in alerts],
        "status": [a.data.status for a in alerts],
        "alertname": [a.data.alertname for a in alerts],
        "severity": [a.data.severity for a in alerts],
        "labels": [a.data.labels for a in alerts],
        "summary": [a.data.annotations.summary for a in alerts],
        "description": [a.data.annotations.description for a in alerts],
        "runbook_url": [a.data.annotations.runbook_url for a in alerts],
        "value": [a.data.value for a in alerts],
        "threshold": [a.data.threshold for a in alerts],
        "starts_at": [a.data.starts_at for a in alerts],
        "ends_at": [a.data.ends_at for a in alerts],
        "evidence": [orjson.dumps(a.data.evidence).decode() for a in alerts],
    }
