"""Alert lifecycle: fingerprint, firing/resolved, dedup of repeats, publish + record.

Detectors call :meth:`AlertPublisher.fire` every time a condition holds and
:meth:`AlertPublisher.resolve` when it clears; the publisher decides what is news:
the first firing, a reminder once the dedup window has passed, and the resolution.
Times are event times passed in by the detector, so a replay produces the same alerts.

Routing labels (``alertname``, ``severity``, ``category``, ``family``, ``tenant_id``,
``auto_rollback``) come from the catalogue and the spec, are part of the fingerprint and
never change for one alert. Escalation is a separate alert, never a label flip:

* the same alert starting to fire ``recurring_count`` times within
  ``recurring_window_s`` raises ``AlertRecurring`` one severity level up (resolved once
  the source is resolved and its last start has left the window);
* an alert resolved more than ``flap_max`` times within ``flap_window_s`` is *held*
  firing with a ``flapping`` annotation instead of resolving (and paging again on the
  next start); it resolves after ``flap_window_s`` without a new start.

Both are judged on event time: the clock is the latest ``at`` the publisher was given.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.alerts import Alert, AlertData, Annotations, Severity, Status, alert_fingerprint
from sinks.clickhouse import ClickHouseWriter
from sinks.sqltext import as_utc
from streams.catalogue import Category, lookup
from streams.incidents import IncidentTracker
from streams.metrics import Metrics
from streams.publish import Message, Publisher, Send

log = logging.getLogger(__name__)

RECURRING = "AlertRecurring"
_UP: dict[Severity, Severity] = {
    "low": "medium",
    "medium": "high",
    "high": "critical",
    "critical": "critical",
}


def routing_labels(
    alertname: str,
    severity: Severity,
    labels: dict[str, str],
    auto_rollback: bool = False,
    category: Category | None = None,
) -> dict[str, str]:
    """The labels Alertmanager routes on, from the catalogue entry of ``alertname``.

    ``tenant_id`` is the alert's tenant, or for a cross-tenant access the tenant whose
    data was reached; alerts about no single tenant (an attacking IP, a provider) have
    none."""
    entry = lookup(alertname)
    routing = {
        "alertname": alertname,
        "severity": severity,
        "category": category or entry.category,
        "family": entry.family,
        "auto_rollback": "true" if auto_rollback else "false",
    }
    tenant = labels.get("tenant_id") or labels.get("resource_tenant_id")
    if tenant:
        routing["tenant_id"] = tenant
    return routing


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """What identifies and describes one alert; ``fingerprint`` keys its lifecycle.

    ``labels`` are the identifying labels the detector chose; :attr:`routing` adds the
    catalogue's routing labels and both make the fingerprint (PagerDuty's
    ``dedup_key``). ``category`` overrides the catalogue's (``AlertRecurring`` takes
    its source's)."""

    alertname: str
    severity: Severity
    labels: dict[str, str]
    annotations: Annotations
    auto_rollback: bool = False
    category: Category | None = None
    #: derived once, when the spec is made (every fire() and resolve() reads both)
    routing: dict[str, str] = field(init=False, repr=False, compare=False)
    fingerprint: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        routing = routing_labels(
            self.alertname, self.severity, self.labels, self.auto_rollback, self.category
        )
        object.__setattr__(self, "routing", routing)
        object.__setattr__(
            self, "fingerprint", alert_fingerprint(self.alertname, {**routing, **self.labels})
        )


@dataclass(slots=True)
class _Active:
    starts_at: datetime
    last_sent_at: datetime
    repeats: int = 0
    spec: AlertSpec | None = None  # None: restored from the alerts table
    #: held firing because it flaps; the time the detector last resolved it, if it did
    held: bool = False
    resolved_at: datetime | None = None
    value: float = 0.0
    threshold: float = 0.0


@dataclass(slots=True)
class _History:
    starts: deque[datetime] = field(default_factory=deque)
    resolves: deque[datetime] = field(default_factory=deque)


class AlertPublisher:
    def __init__(
        self,
        writer: ClickHouseWriter | None,
        send: Send | Publisher,
        topic: str,
        metrics: Metrics,
        dedup_window_s: float,
        runbook_base: str = "",
        *,
        recurring_count: int = 3,
        recurring_window_s: float = 1800.0,
        flap_max: int = 3,
        flap_window_s: float = 3600.0,
        clock: Callable[[], datetime] | None = None,
        incidents: IncidentTracker | None = None,
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
        self._history: dict[str, _History] = {}
        self._recurring_count = recurring_count
        self._recurring_window = timedelta(seconds=recurring_window_s)
        self._flap_max = flap_max
        self._flap_window = timedelta(seconds=flap_window_s)
        #: open AlertRecurring alerts: source fingerprint -> its spec
        self._recurring: dict[str, AlertSpec] = {}
        self._held: set[str] = set()
        self._clock: datetime | None = None
        self._next_sweep: datetime | None = None
        self._wall = clock or (lambda: datetime.now(UTC))
        self.incidents = incidents

    def is_firing(self, spec: AlertSpec) -> bool:
        return spec.fingerprint in self._active

    def is_held(self, spec: AlertSpec) -> bool:
        state = self._active.get(spec.fingerprint)
        return state is not None and state.held

    def restore(self, firing: dict[str, tuple[datetime, datetime]]) -> None:
        """Alerts firing before a restart (fingerprint -> (starts_at, last sent)), read
        from the alerts table: their resolution still goes out, and their reminders
        keep the dedup window."""
        for fingerprint, (starts_at, sent_at) in firing.items():
            self._active.setdefault(fingerprint, _Active(starts_at, sent_at))

    async def fire(
        self,
        spec: AlertSpec,
        value: float,
        threshold: float,
        at: datetime,
        evidence: dict[str, Any] | None = None,
        *,
        starts_at: datetime | None = None,
    ) -> Alert | None:
        """Publish a firing alert unless the same one went out within the dedup window.

        ``starts_at`` defaults to ``at`` (the condition began with this call); detectors
        that need several observations pass the time of the first one. An alert the
        catalogue lacks raises :class:`~streams.catalogue.UnknownAlert`."""
        lookup(spec.alertname)
        fingerprint = spec.fingerprint
        state = self._active.get(fingerprint)
        if state is not None:
            state.spec, state.value, state.threshold = spec, value, threshold
            state.resolved_at = None  # a held alert's condition is back
        if state is not None and (at - state.last_sent_at).total_seconds() < self._window_s:
            state.repeats += 1
            self._metrics.alerts_suppressed.inc()
            await self._advance(at)
            return None
        started = state is None
        if state is None:
            state = self._active[fingerprint] = _Active(
                starts_at=starts_at or at, last_sent_at=at, spec=spec, value=value,
                threshold=threshold,
            )  # fmt: skip
        else:
            state.last_sent_at = at
        evidence = {**(evidence or {}), "suppressed_repeats": state.repeats}
        alert = await self._emit(
            spec, "firing", value, threshold, state.starts_at, at, evidence, held=state.held
        )
        if started and spec.alertname != RECURRING:
            await self._count_start(spec, fingerprint, at)
        await self._advance(at)
        return alert

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
        fingerprint = spec.fingerprint
        state = self._active.get(fingerprint)
        if state is None and starts_at is None:
            await self._advance(at)
            return None
        if state is not None and spec.alertname != RECURRING:
            history = self._history.setdefault(fingerprint, _History())
            _prune(history.resolves, at - self._flap_window)
            history.resolves.append(at)
            if state.held or len(history.resolves) > self._flap_max:
                # flapping: held firing (no resolution, no new page on the next start)
                state.resolved_at = at
                state.spec, state.value, state.threshold = spec, value, threshold
                if not state.held:
                    state.held = True
                    self._held.add(fingerprint)
                    self._metrics.alerts_held.inc()
                    await self._emit(
                        spec, "firing", value, threshold, state.starts_at, at,
                        {"suppressed_repeats": state.repeats}, held=True,
                    )  # fmt: skip
                await self._advance(at)
                return None
        self._active.pop(fingerprint, None)
        began = starts_at if starts_at is not None else state.starts_at if state else None
        assert began is not None
        alert = await self._emit(spec, "resolved", value, threshold, began, at, {})
        await self._advance(at)
        return alert

    async def _count_start(self, spec: AlertSpec, fingerprint: str, at: datetime) -> None:
        history = self._history.setdefault(fingerprint, _History())
        _prune(history.starts, at - self._recurring_window)
        history.starts.append(at)
        if len(history.starts) < self._recurring_count:
            return
        minutes = self._recurring_window.total_seconds() / 60
        labels = {"source_alertname": spec.alertname, "source_fingerprint": fingerprint}
        if "tenant_id" in spec.routing:
            labels["tenant_id"] = spec.routing["tenant_id"]
        recurring = AlertSpec(
            RECURRING,
            _UP[spec.severity],
            labels,
            Annotations(
                summary=f"{spec.alertname} started firing {len(history.starts)} times in "
                f"{minutes:g} minutes: {spec.annotations.summary}",
                description=f"Escalated from {spec.severity}: the condition keeps coming "
                "back. Find the cause rather than acknowledging each page.",
            ),
            category=lookup(spec.alertname).category,
        )
        self._recurring[fingerprint] = recurring
        await self.fire(
            recurring,
            float(len(history.starts)),
            float(self._recurring_count),
            at,
            {"starts": [t.isoformat() for t in history.starts]},
            starts_at=history.starts[0],
        )

    async def _advance(self, at: datetime) -> None:
        """Event time moved to ``at``: release held alerts quiet for a flap window,
        resolve AlertRecurring whose source has calmed down, remind held alerts."""
        if self._clock is not None and at <= self._clock:
            return
        self._clock = at
        for fingerprint in sorted(self._held):
            state = self._active[fingerprint]
            spec = state.spec
            assert spec is not None  # held only after a resolve() that set it
            if state.resolved_at is not None and at - state.resolved_at >= self._flap_window:
                del self._active[fingerprint]
                self._held.discard(fingerprint)
                self._history.pop(fingerprint, None)
                await self._emit(
                    spec, "resolved", state.value, state.threshold, state.starts_at,
                    state.resolved_at + self._flap_window, {},
                )  # fmt: skip
            elif (at - state.last_sent_at).total_seconds() >= self._window_s:
                state.last_sent_at = at
                await self._emit(
                    spec, "firing", state.value, state.threshold, state.starts_at, at,
                    {"suppressed_repeats": state.repeats}, held=True,
                )  # fmt: skip
        for source, recurring in list(self._recurring.items()):
            history = self._history.get(source)
            last = history.starts[-1] if history and history.starts else None
            if source in self._active or (last is not None and at - last < self._recurring_window):
                continue
            del self._recurring[source]
            await self.resolve(recurring, 0.0, float(self._recurring_count), at)
        if self._next_sweep is None or at >= self._next_sweep:
            self._sweep(at)

    def _sweep(self, at: datetime) -> None:
        """Forget start/resolve histories that have left both windows (bounded memory
        however many distinct alerts went by)."""
        horizon = at - max(self._recurring_window, self._flap_window)
        for fingerprint, history in list(self._history.items()):
            _prune(history.starts, horizon)
            _prune(history.resolves, horizon)
            if not history.starts and not history.resolves and fingerprint not in self._active:
                del self._history[fingerprint]
        self._next_sweep = at + min(self._recurring_window, self._flap_window)

    async def _emit(
        self,
        spec: AlertSpec,
        status: Status,
        value: float,
        threshold: float,
        starts_at: datetime,
        at: datetime,
        evidence: dict[str, Any],
        *,
        held: bool = False,
    ) -> Alert:
        annotations = spec.annotations
        update: dict[str, str] = {}
        if not annotations.runbook_url:
            update["runbook_url"] = lookup(spec.alertname).runbook_url(self._runbook_base)
        if held:
            update["flapping"] = (
                f"resolved more than {self._flap_max} times in "
                f"{self._flap_window.total_seconds() / 60:g} minutes: held firing until "
                f"quiet for {self._flap_window.total_seconds() / 60:g} minutes"
            )
        if update:
            annotations = annotations.model_copy(update=update)
        data = AlertData(
            fingerprint=spec.fingerprint,
            status=status,
            alertname=spec.alertname,
            severity=spec.severity,
            labels=spec.labels,
            routing=spec.routing,
            annotations=annotations,
            value=value,
            threshold=threshold,
            starts_at=starts_at,
            ends_at=at if status == "resolved" else None,
            evidence=evidence,
            auto_rollback=spec.auto_rollback,
            published_at=self._wall(),
        )
        alert = Alert.build(data, at)
        await self._publish(alert)
        return alert

    async def _publish(self, alert: Alert) -> None:
        data = alert.data
        message = Message(self._topic, data.fingerprint.encode(), alert.to_json(), [])
        await self._publisher.publish("alerts", [message])
        self._metrics.alerts_published.labels(severity=data.severity, status=data.status).inc()
        if self.incidents is not None:
            try:
                await self.incidents.observe(alert)
            except Exception:  # an incident's bookkeeping never costs the alert
                log.exception("incident tracking failed for %s", data.alertname)
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
        "labels": [{**a.data.routing, **a.data.labels} for a in alerts],
        "summary": [a.data.annotations.summary for a in alerts],
        "description": [a.data.annotations.description for a in alerts],
        "runbook_url": [a.data.annotations.runbook_url for a in alerts],
        "value": [a.data.value for a in alerts],
        "threshold": [a.data.threshold for a in alerts],
        "starts_at": [a.data.starts_at for a in alerts],
        "ends_at": [a.data.ends_at for a in alerts],
        "evidence": [orjson.dumps(a.data.evidence).decode() for a in alerts],
        "published_at": [a.data.published_at for a in alerts],
    }


def _prune(times: deque[datetime], before: datetime) -> None:
    while times and times[0] <= before:
        times.popleft()


def firing_alerts(client: Any, database: str) -> dict[str, tuple[datetime, datetime]]:
    """Fingerprints whose latest recorded transition is a firing one, with when they
    started and when they were last sent: the publisher's set after a restart."""
    rows = client.query(
        f"SELECT fingerprint, argMax(starts_at, ts), max(ts) FROM {database}.alerts "
        "GROUP BY fingerprint HAVING argMax(status, ts) = 'firing'"
    ).result_rows
    return {str(fp): (as_utc(starts), as_utc(sent)) for fp, starts, sent in rows}
