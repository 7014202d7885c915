"""Incidents: alert transitions grouped into what an on-call engineer works on.

An alert that starts firing joins the open incident that holds one of the trace ids its
evidence names (``evidence.trace_ids``: a PII leak and a cross-tenant read in one request
are one incident, whatever their tenants and categories) or its cause
(``evidence.incident_key``: the canary verdicts of one release, service-wide and per
tenant, are one incident -- the release's, ``tenant_id`` '', its ``tenants`` those
affected); otherwise an open incident of
the same tenant (its routing ``tenant_id``; "" for alerts about an IP or a provider) and
the same category when that incident's alerts were active within ``merge_window_s`` of
the alert's start (they overlap in time); otherwise it opens one. An incident resolves
when every alert in it has resolved. Each change is a row of ``incidents``
(ReplacingMergeTree by ``version``) with a timeline:

* ``first_breach_at`` -- the earliest ``startsAt`` of its alerts (event time: when the
  data first breached);
* ``detected_at`` -- when its first alert was published (wall clock, ``published_at``);
* ``acknowledged_at`` / ``acknowledged_by`` -- ``vigil incidents ack``, or a PagerDuty v3
  webhook ``incident.acknowledged``;
* ``resolved_at`` -- when its last alert's resolution was published (wall clock).

MTTD = detected - first breach, MTTA = acknowledged - detected, MTTR = resolved - first
breach: columns of the row and Prometheus histograms ``vigil_incident_mttd_seconds``,
``_mtta_``, ``_mttr_``. Incidents are tracked by the worker whose detectors raised the
alerts (a tenant's events are keyed to one partition, so to one worker). A worker asked
to acknowledge or resolve an incident it does not track stores the request in
``incident_requests`` when the incident is open; the owner applies the requests of its
open incidents every ``VIGIL_INCIDENT_POLL_S`` (:meth:`IncidentTracker.apply_requests`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from schemas.alerts import Alert
from sinks.sqltext import as_utc

if TYPE_CHECKING:
    from sinks.clickhouse import ClickHouseWriter

SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}
#: trace ids an alert contributes to its incident (evidence lists are already short)
MAX_TRACES_PER_ALERT = 10
#: and an incident keeps at most
MAX_TRACES = 100
#: rows of the incidents table -> awaitable once buffered
Write = Callable[[dict[str, list[Any]]], Awaitable[None]]


class UnknownIncident(KeyError):
    """No open incident with that id in this worker."""


@dataclass(slots=True)
class Incident:
    id: str
    tenant_id: str
    category: str
    first_breach_at: datetime
    detected_at: datetime
    last_active: datetime  # event time of its latest alert activity
    severity: str
    firing: set[str] = field(default_factory=set)  # fingerprints firing now
    alerts: dict[str, str] = field(default_factory=dict)  # fingerprint -> alertname
    trace_ids: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)  # the causes its alerts named (incident_key)
    tenants: set[str] = field(default_factory=set)  # the tenants of its alerts
    acknowledged_at: datetime | None = None
    acknowledged_by: str = ""
    resolved_at: datetime | None = None
    timeline: list[dict[str, str]] = field(default_factory=list)
    version: int = 0

    @property
    def status(self) -> str:
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_at is not None else "open"

    def note(self, at: datetime, what: str) -> None:
        self.timeline.append({"at": at.isoformat(), "what": what})

    def seconds(self) -> tuple[float | None, float | None, float | None]:
        mttd = (self.detected_at - self.first_breach_at).total_seconds()
        mtta = (
            (self.acknowledged_at - self.detected_at).total_seconds()
            if self.acknowledged_at
            else None
        )
        mttr = (
            (self.resolved_at - self.first_breach_at).total_seconds() if self.resolved_at else None
        )
        return mttd, mtta, mttr


def _incident_id(tenant: str, category: str, fingerprint: str, starts: datetime) -> str:
    text = f"{tenant}|{category}|{fingerprint}|{starts.isoformat()}"
    return "inc-" + hashlib.sha256(text.encode()).hexdigest()[:12]


class IncidentTracker:
    def __init__(
        self,
        write: Write | None,
        metrics: Any,
        merge_window_s: float = 1800.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        from datetime import UTC

        self._write = write
        self._metrics = metrics
        self._window = timedelta(seconds=merge_window_s)
        self._clock = clock or (lambda: datetime.now(UTC))
        self.open: dict[str, Incident] = {}
        self._by_alert: dict[str, str] = {}  # fingerprint -> open incident id
        self._by_link: dict[str, str] = {}  # "trace:<id>" or an incident key -> open incident

    def restore(self, incidents: list[Incident]) -> None:
        for incident in incidents:
            if incident.resolved_at is None:
                self.open[incident.id] = incident
                for fp in incident.alerts:
                    self._by_alert[fp] = incident.id
                for link in _links(incident.trace_ids, incident.keys):
                    self._by_link[link] = incident.id

    async def observe(self, alert: Alert) -> Incident | None:
        """One published alert transition; the incident it changed, if any."""
        data = alert.data
        fp = data.fingerprint
        published = data.published_at or self._clock()
        tenant = data.routing.get("tenant_id", data.labels.get("tenant_id", ""))
        category = data.routing.get("category", "")
        incident = self.open.get(self._by_alert.get(fp, ""))
        if data.status == "resolved":
            if incident is None:
                return None
            incident.firing.discard(fp)
            incident.last_active = max(incident.last_active, alert.time)
            incident.note(published, f"{data.alertname} resolved")
            if not incident.firing:
                incident.resolved_at = published
                incident.note(published, "resolved: every alert resolved")
                self._close(incident)
            await self._save(incident)
            return incident
        if incident is not None and fp in incident.firing:
            incident.last_active = max(incident.last_active, alert.time)
            return None  # a reminder: nothing new for the incident
        traces = _traces(data.evidence)
        key = _key(data.evidence)
        shared = ""
        if incident is None:
            for link in _links(traces, [key] if key else []):
                incident = self.open.get(self._by_link.get(link, ""))
                if incident is not None:
                    shared = link.replace("trace:", "trace ", 1)
                    break
        if incident is None:
            incident = self._match(tenant, category, data.starts_at)
        if incident is None:
            owner = "" if key else tenant  # a cause shared by tenants belongs to none of them
            incident = Incident(
                _incident_id(owner, category, fp, data.starts_at),
                owner,
                category,
                first_breach_at=data.starts_at,
                detected_at=published,
                last_active=alert.time,
                severity=data.severity,
            )
            self.open[incident.id] = incident
            incident.note(data.starts_at, f"first breach ({data.alertname})")
            incident.note(published, f"opened: {data.alertname} published")
        elif shared:
            incident.note(published, f"{data.alertname} joined (shared {shared})")
        else:
            incident.note(published, f"{data.alertname} joined")
        for trace in traces:
            if len(incident.trace_ids) < MAX_TRACES and trace not in incident.trace_ids:
                incident.trace_ids.add(trace)
                self._by_link.setdefault("trace:" + trace, incident.id)
        if key and key not in incident.keys and len(incident.keys) < MAX_TRACES:
            incident.keys.add(key)
            self._by_link.setdefault(key, incident.id)
        if tenant:
            incident.tenants.add(tenant)
        self._by_alert[fp] = incident.id
        incident.alerts[fp] = data.alertname
        incident.firing.add(fp)
        incident.first_breach_at = min(incident.first_breach_at, data.starts_at)
        incident.last_active = max(incident.last_active, alert.time)
        if SEVERITY_ORDER[data.severity] > SEVERITY_ORDER[incident.severity]:
            incident.severity = data.severity
        await self._save(incident)
        return incident

    def _match(self, tenant: str, category: str, starts: datetime) -> Incident | None:
        best = None
        for incident in self.open.values():
            if incident.tenant_id != tenant or incident.category != category:
                continue
            if starts - incident.last_active > self._window:
                continue  # not overlapping: a new incident
            if best is None or incident.last_active > best.last_active:
                best = incident
        return best

    def _close(self, incident: Incident) -> None:
        self.open.pop(incident.id, None)
        for fp in incident.alerts:
            if self._by_alert.get(fp) == incident.id:
                del self._by_alert[fp]
        for link in _links(incident.trace_ids, incident.keys):
            if self._by_link.get(link) == incident.id:
                del self._by_link[link]
        mttr = incident.seconds()[2]
        if mttr is not None:
            self._metrics.incident_mttr.observe(max(mttr, 0.0))

    async def acknowledge(self, incident_id: str, by: str, at: datetime | None = None) -> Incident:
        incident = self.open.get(incident_id)
        if incident is None:
            raise UnknownIncident(incident_id)
        if incident.acknowledged_at is None:
            incident.acknowledged_at = at or self._clock()
            incident.acknowledged_by = by
            incident.note(incident.acknowledged_at, f"acknowledged by {by}")
            _, mtta, _ = incident.seconds()
            if mtta is not None:
                self._metrics.incident_mtta.observe(max(mtta, 0.0))
            await self._save(incident)
        return incident

    async def resolve(self, incident_id: str, by: str, at: datetime | None = None) -> Incident:
        """Close an incident by hand (its alerts may still fire: they open a new one)."""
        incident = self.open.get(incident_id)
        if incident is None:
            raise UnknownIncident(incident_id)
        incident.resolved_at = at or self._clock()
        incident.note(incident.resolved_at, f"resolved by {by}")
        self._close(incident)
        await self._save(incident)
        return incident

    async def apply_requests(self, requests: list[tuple[Any, ...]]) -> list[Incident]:
        """(incident_id, action, by, at) rows of ``incident_requests`` that other workers
        received: those of this worker's open incidents are applied, in order; the rest
        (other owners', or done already) are ignored. Idempotent."""
        changed = []
        for incident_id, action, by, at in requests:
            incident = self.open.get(str(incident_id))
            if incident is None:
                continue
            when = as_utc(at) if isinstance(at, datetime) else None
            if action == "ack" and incident.acknowledged_at is None:
                changed.append(await self.acknowledge(incident.id, str(by), when))
            elif action == "resolve":
                changed.append(await self.resolve(incident.id, str(by), when))
        return changed

    def find(self, alertname: str, tenant: str) -> Incident | None:
        """The newest open incident holding ``alertname`` for ``tenant`` (its own, or one
        of the tenants it spans)."""
        found = [
            i
            for i in self.open.values()
            if alertname in i.alerts.values()
            and (not tenant or i.tenant_id == tenant or tenant in i.tenants)
        ]
        return max(found, key=lambda i: i.detected_at) if found else None

    async def _save(self, incident: Incident) -> None:
        incident.version += 1
        if incident.version == 1:
            mttd, _, _ = incident.seconds()
            self._metrics.incident_mttd.observe(max(mttd or 0.0, 0.0))
        if self._write is not None:
            await self._write(incident_columns([incident]))


def incident_columns(incidents: list[Incident]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {name: [] for name in INCIDENT_COLUMNS}
    for i in incidents:
        mttd, mtta, mttr = i.seconds()
        cols["incident_id"].append(i.id)
        cols["tenant_id"].append(i.tenant_id)
        cols["category"].append(i.category)
        cols["status"].append(i.status)
        cols["severity"].append(i.severity)
        cols["first_breach_at"].append(i.first_breach_at)
        cols["detected_at"].append(i.detected_at)
        cols["acknowledged_at"].append(i.acknowledged_at)
        cols["acknowledged_by"].append(i.acknowledged_by)
        cols["resolved_at"].append(i.resolved_at)
        cols["alerts"].append(dict(i.alerts))
        cols["alertnames"].append(sorted(set(i.alerts.values())))
        cols["firing"].append(sorted(i.firing))
        cols["trace_ids"].append(sorted(i.trace_ids))
        cols["incident_keys"].append(sorted(i.keys))
        cols["tenants"].append(sorted(i.tenants))
        cols["mttd_s"].append(mttd)
        cols["mtta_s"].append(mtta)
        cols["mttr_s"].append(mttr)
        cols["timeline"].append(orjson.dumps(i.timeline).decode())
        cols["version"].append(i.version)
    return cols


INCIDENT_COLUMNS = (
    "incident_id", "tenant_id", "category", "status", "severity", "first_breach_at",
    "detected_at", "acknowledged_at", "acknowledged_by", "resolved_at",
    "alerts", "alertnames", "firing", "trace_ids", "incident_keys", "tenants", "mttd_s",
    "mtta_s", "mttr_s", "timeline", "version",
)  # fmt: skip


def incidents_from_rows(rows: list[tuple[Any, ...]]) -> list[Incident]:
    """Incidents from ``SELECT <INCIDENT_COLUMNS> FROM incidents FINAL`` rows (restart)."""

    def utc(v: Any) -> Any:
        return as_utc(v) if isinstance(v, datetime) else v

    out = []
    for row in rows:
        r = dict(zip(INCIDENT_COLUMNS, row, strict=True))
        incident = Incident(
            str(r["incident_id"]), str(r["tenant_id"]), str(r["category"]),
            first_breach_at=utc(r["first_breach_at"]), detected_at=utc(r["detected_at"]),
            last_active=utc(r["detected_at"]), severity=str(r["severity"]),
            firing=set(r["firing"]), trace_ids=set(r["trace_ids"]),
            keys=set(r["incident_keys"]), tenants=set(r["tenants"]),
            acknowledged_at=utc(r["acknowledged_at"]),
            acknowledged_by=str(r["acknowledged_by"]), resolved_at=utc(r["resolved_at"]),
            timeline=orjson.loads(r["timeline"]), version=int(r["version"]),
        )  # fmt: skip
        incident.alerts = {str(k): str(v) for k, v in dict(r["alerts"]).items()}
        out.append(incident)
    return out


#: "[FIRING:2] critical ErrorRateSpike (acme)": the shipped PagerDuty description
_TITLE = re.compile(r"\]\s+(?P<severity>\w+)\s+(?P<alertname>\w+)(?:\s+\((?P<tenant>[^)]+)\))?")


def pagerduty_ack(payload: Any) -> tuple[str, str, str, datetime | None] | None:
    """(alertname, tenant, who, when) of a PagerDuty v3 webhook ``incident.acknowledged``
    event whose title is the shipped configuration's (``vigil.title``); None otherwise."""
    event = payload.get("event") if isinstance(payload, dict) else None
    if not isinstance(event, dict) or event.get("event_type") != "incident.acknowledged":
        return None
    data = event.get("data") or {}
    match = _TITLE.search(str(data.get("title", "")))
    if match is None:
        return None
    agent = event.get("agent") or {}
    who = str(agent.get("summary") or agent.get("id") or "pagerduty")
    when = event.get("occurred_at")
    at = datetime.fromisoformat(str(when).replace("Z", "+00:00")) if when else None
    return match["alertname"], match["tenant"] or "", who, at


def pagerduty_signed(secret: bytes, body: bytes, header: str) -> bool:
    """Whether ``header`` (``X-PagerDuty-Signature``: comma-separated ``v1=<hex>``, more
    than one while a secret is rotated) holds the HMAC-SHA256 of the raw ``body`` under
    ``secret``; compared in constant time."""
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return any(
        hmac.compare_digest(part.strip().removeprefix("v1="), expected)
        for part in header.split(",")
        if part.strip().startswith("v1=")
    )


def _traces(evidence: dict[str, Any]) -> list[str]:
    found = evidence.get("trace_ids") if isinstance(evidence, dict) else None
    if not isinstance(found, list):
        return []
    return [str(t) for t in found if t][:MAX_TRACES_PER_ALERT]


def _key(evidence: dict[str, Any]) -> str:
    found = evidence.get("incident_key") if isinstance(evidence, dict) else None
    return str(found) if found else ""


def _links(traces: Iterable[str], keys: Iterable[str]) -> list[str]:
    """What an incident is found by: its causes' keys, then its traces."""
    return [*keys, *("trace:" + t for t in traces)]


def open_incidents(client: Any, database: str) -> list[Incident]:
    """The open incidents stored by the previous run (newest version of each)."""
    names = ", ".join(INCIDENT_COLUMNS)
    rows = client.query(
        f"SELECT {names} FROM {database}.incidents FINAL WHERE status != 'resolved'"
    ).result_rows
    return incidents_from_rows(rows)


def of_tenant(tenant: str) -> str:
    """SQL condition on ``incidents``: the tenant's own, or one it is among the ``tenants``
    of (a release's incident); ``tenant`` is an SQL expression (a literal or a bound
    parameter)."""
    return f"(tenant_id = {tenant} OR has(tenants, {tenant}))"


STORED_OPEN = "SELECT status FROM {db}.incidents FINAL WHERE incident_id = {{i:String}}"
STORED_MATCH = (
    "SELECT incident_id FROM {db}.incidents FINAL WHERE status != 'resolved' "
    "AND has(alertnames, {{a:String}}) "
    "AND ({{t:String}} = '' OR " + of_tenant("{{t:String}}") + ") "
    "ORDER BY detected_at DESC LIMIT 1"
)


async def request_elsewhere(
    writer: ClickHouseWriter, database: str, incident_id: str, action: str, by: str, at: datetime
) -> bool:
    """Store an acknowledgement or resolution of an open incident this worker does not
    track, for its owner to apply; False when no such open incident is stored."""
    rows = await writer.query_rows(STORED_OPEN.format(db=database), {"i": incident_id})
    if not rows or rows[0][0] == "resolved":
        return False
    await writer.add(
        {
            "incident_requests": {
                "incident_id": [incident_id],
                "action": [action],
                "by": [by],
                "at": [at],
                "received_by": [f"{socket.gethostname()}:{os.getpid()}"],
            }
        }
    )
    await writer.flush()
    return True


async def stored_match(
    writer: ClickHouseWriter, database: str, alertname: str, tenant: str
) -> str | None:
    """The newest stored open incident holding ``alertname`` for ``tenant`` (any worker's)."""
    rows = await writer.query_rows(STORED_MATCH.format(db=database), {"a": alertname, "t": tenant})
    return str(rows[0][0]) if rows else None


async def pending_requests(
    writer: ClickHouseWriter, database: str, ids: list[str]
) -> list[tuple[Any, ...]]:
    """The stored requests for ``ids`` (this worker's open incidents), oldest first."""
    if not ids:
        return []
    return await writer.query_rows(
        f"SELECT incident_id, action, by, at FROM {database}.incident_requests "
        "WHERE incident_id IN {ids:Array(String)} ORDER BY at",
        {"ids": ids},
    )
