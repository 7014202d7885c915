"""The security detector: base rules select events, correlations count them in exact
sliding windows (:mod:`.window`), episodes become alerts and ``security_detections`` rows.

State is per correlation and group, for the whole worker: a group that spans tenants
(an IP, a webhook provider, a platform-wide count) sees the events of every partition
the worker reads, ordered by one watermark (newest event time minus grace), so with one
worker — the embedded stack — every rule is exact. With several workers, rules grouped
by tenant stay exact (producers key by tenant); rules grouped across tenants see only
their worker's share until the matching events are repartitioned by group (README,
*Security rules*, limits).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from schemas.alerts import Annotations
from schemas.normalize import normalise_provider
from sinks.clickhouse import ClickHouseWriter
from sinks.sqltext import dt as _dt
from sinks.sqltext import sql_string as _sql
from sinks.sqltext import sql_time as _sql_time
from streams.alerting import AlertPublisher, AlertSpec
from streams.catalogue import lookup
from streams.detectors.security.rules import BaseRule, Correlation, SecurityConfig
from streams.detectors.security.window import Change, Episode, SlidingCount
from streams.ingest import IngestResult
from streams.metrics import Metrics
from streams.transport import SourceBatch

log = logging.getLogger(__name__)

CROSS_TENANT = "CrossTenantAccess"
#: the built-in rule's window: every access is its own holding window
_INSTANT_MS = 1


@dataclass(slots=True)
class _Track:
    """One correlation at one threshold: the windows and what labels its groups show."""

    correlation: Correlation | None  # None: the built-in cross-tenant rule
    threshold: int
    counter: SlidingCount
    extra: dict[tuple[str, ...], dict[str, str]] = field(default_factory=dict)


class SecurityDetector:
    name = "security"

    def __init__(
        self,
        config: SecurityConfig,
        alerts: AlertPublisher,
        writer: ClickHouseWriter | None,
        metrics: Metrics,
        database: str,
    ) -> None:
        self.config = config
        self._alerts = alerts
        self._writer = writer
        self._metrics = metrics
        self._database = database
        self._grace_ms = config.grace_seconds * 1000
        self._by_kind: dict[str, list[tuple[BaseRule, list[Correlation]]]] = {}
        for rule in config.rules:
            users = [c for c in config.correlations if rule.name in c.rules]
            if users:
                self._by_kind.setdefault(rule.kind, []).append((rule, users))
        self._tracks: dict[tuple[str, int], _Track] = {}
        self.late_events = 0

    # --- input --------------------------------------------------------------------------

    async def process(self, result: IngestResult, source: SourceBatch) -> None:
        changes: list[tuple[_Track, Change]] = []
        by_kind = self._by_kind
        cross = self.config.cross_tenant
        for event, ts in zip(result.events, result.ts_ms, strict=True):
            kind = event.kind
            if cross and _crosses(kind, event):
                self._cross_tenant(event, ts, changes)
            for rule, users in by_kind.get(kind, ()):
                if not rule.matches(event):
                    continue
                for corr in users:
                    self._feed(corr, event, ts, changes)
        await self._publish(changes)

    def _feed(
        self, corr: Correlation, event: Any, ts: int, out: list[tuple[_Track, Change]]
    ) -> None:
        values: list[str] = []
        for name in corr.group_by:
            value = getattr(event, name, None)
            if value is None:
                return  # cannot be grouped (no IP on this event): not counted
            values.append(normalise_provider(value) if name == "provider" else str(value))
        group = tuple(values)
        tenant = event.tenant_id if "tenant_id" in corr.group_by else None
        threshold = self.config.threshold(corr, tenant, values[0] if values else "")
        if threshold is None:
            return
        track = self._track(corr, threshold)
        counted = ""
        if corr.condition.field:
            counted = str(getattr(event, corr.condition.field, None) or "")
            if not counted:
                return
        late, changes = track.counter.add(group, ts, event.event_id, counted)
        if late:
            self.late_events += 1
            self._metrics.security_late_events.inc()
            return
        if "ip_hash" in corr.group_by and getattr(event, "ip_prefix", None):
            track.extra.setdefault(group, {})["ip_prefix"] = event.ip_prefix
        out.extend((track, c) for c in changes)

    def _cross_tenant(self, event: Any, ts: int, out: list[tuple[_Track, Change]]) -> None:
        where = getattr(event, "model", None) or getattr(event, "route", None) or ""
        blocked = bool(getattr(event, "blocked", False))
        group = (
            str(event.actor_tenant_id),
            str(event.resource_tenant_id),
            str(where),
            "true" if blocked else "false",
        )
        key = (CROSS_TENANT, 0)
        track = self._tracks.get(key)
        if track is None:
            counter = SlidingCount(_INSTANT_MS, "gte", 1, self.config.quiet_ms, self._grace_ms)
            track = self._tracks[key] = _Track(None, 1, counter)
        late, changes = track.counter.add(group, ts, event.event_id)
        if late:
            self.late_events += 1
            self._metrics.security_late_events.inc()
        out.extend((track, c) for c in changes)

    def _track(self, corr: Correlation, threshold: int) -> _Track:
        key = (corr.name, threshold)
        track = self._tracks.get(key)
        if track is None:
            counter = SlidingCount(
                corr.timespan_ms,
                corr.condition.op,
                threshold,
                self.config.quiet_ms,
                self._grace_ms,
                distinct=corr.type == "value_count",
            )
            track = self._tracks[key] = _Track(corr, threshold, counter)
        return track

    # --- time -----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Advance every window to the newest watermark any correlation has seen, so
        quiet groups resolve and ``lt``-type windows are decided."""
        marks = [t.counter.watermark for t in self._tracks.values()]
        known = [m for m in marks if m is not None]
        if not known:
            return
        wm = max(known)
        changes: list[tuple[_Track, Change]] = []
        for track in self._tracks.values():
            changes.extend((track, c) for c in track.counter.advance(wm))
        self._metrics.security_active_groups.set(self.active_groups())
        await self._publish(changes)

    def active_groups(self) -> int:
        return sum(t.counter.memory_groups() for t in self._tracks.values())

    # --- output ---------------------------------------------------------------------------

    async def _publish(self, changes: list[tuple[_Track, Change]]) -> None:
        if not changes:
            return
        rows: list[dict[str, Any]] = []
        for track, change in changes:
            spec, threshold, window_s = self._spec(track, change.episode)
            episode = change.episode
            at = _dt(change.at_ms)
            starts = _dt(episode.first_hold_ms)
            if change.action == "fire":
                evidence = {
                    "window_seconds": window_s,
                    "count": episode.peak,
                    "threshold": threshold,
                    "group": dict(spec.labels),
                    "sample_event_ids": episode.sample_ids,
                    "first_event": _dt(episode.first_event_ms).isoformat(),
                    "query": self._query(track, episode),
                }
                await self._alerts.fire(
                    spec, episode.peak, threshold, at, evidence, starts_at=starts
                )
            else:
                await self._alerts.resolve(spec, episode.peak, threshold, at, starts_at=starts)
            rows.append(self._row(track, change, spec, threshold, window_s))
        if self._writer is not None and rows:
            columns = {name: [r[name] for r in rows] for name in rows[0]}
            await self._writer.add({"security_detections": columns})

    def _spec(self, track: _Track, episode: Episode) -> tuple[AlertSpec, int, float]:
        corr = track.correlation
        if corr is None:
            actor, resource, where, blocked = episode.group
            labels = {
                "actor_tenant_id": actor,
                "resource_tenant_id": resource,
                "target": where,
                "blocked": blocked,
                "tenant_id": resource,
            }
            crossed = "" if blocked == "true" else " — NOT blocked: data crossed tenants"
            summary = f"{actor} accessed {resource}'s {where or 'data'}{crossed}"
            entry = lookup(CROSS_TENANT)
            note = Annotations(
                summary=summary,
                description=(
                    f"{episode.peak} cross-tenant access(es) in one burst; every attempt is "
                    "an isolation failure upstream even when blocked."
                ),
            )
            return AlertSpec(CROSS_TENANT, entry.severity, labels, note), 0, 0.0
        entry = lookup(corr.alertname)
        labels = dict(zip(corr.group_by, episode.group, strict=True))
        labels |= track.extra.get(episode.group, {})
        labels["rule"] = corr.name
        shown = ", ".join(f"{k}={v}" for k, v in labels.items() if k != "rule") or "all"
        what = "distinct " + str(corr.condition.field) if corr.condition.field else "events"
        note = Annotations(
            summary=f"{corr.alertname}: {episode.peak} {what} in {corr.timespan} ({shown})",
            description=(
                f"{corr.name}: {corr.condition.op} {track.threshold} {what} within "
                f"{corr.timespan} per {', '.join(corr.group_by) or 'platform'}; peak "
                f"{episode.peak}."
            ),
        )
        return (
            AlertSpec(corr.alertname, entry.severity, labels, note),
            track.threshold,
            corr.timespan_ms / 1000,
        )

    def _row(
        self, track: _Track, change: Change, spec: AlertSpec, threshold: int, window_s: float
    ) -> dict[str, Any]:
        episode = change.episode
        ident = f"{spec.fingerprint}|{episode.first_hold_ms}"
        return {
            "episode_id": hashlib.sha256(ident.encode()).hexdigest()[:32],
            "alertname": spec.alertname,
            "rule": track.correlation.name if track.correlation else "cross_tenant",
            "status": "firing" if change.action == "fire" else "resolved",
            "tenant_id": spec.labels.get("tenant_id", ""),
            "group_key": "|".join(episode.group),
            "labels": dict(spec.labels),
            "first_event": episode.first_event_ms / 1000,
            "first_hold": episode.first_hold_ms / 1000,
            "last_hold": episode.last_hold_ms / 1000,
            "resolved_at": change.at_ms / 1000 if change.action == "resolve" else 0,
            "peak": episode.peak,
            "threshold": threshold,
            "window_s": window_s,
            "sample_event_ids": list(episode.sample_ids),
            "fingerprint": spec.fingerprint,
            "version": 1 if change.action == "fire" else 2,
        }

    def _query(self, track: _Track, episode: Episode) -> str:
        """SQL over the stored events behind an episode."""
        start = _sql_time(episode.first_event_ms)
        end = _sql_time(episode.last_hold_ms)
        corr = track.correlation
        if corr is None:
            return (
                f"SELECT ts, tenant_id, kind, event_id FROM {self._database}.events "
                f"WHERE event_id IN ({', '.join(_sql(i) for i in episode.sample_ids)})"
            )
        kinds = sorted({r.kind for r in self.config.rules if r.name in corr.rules})
        where = [f"kind IN ({', '.join(_sql(k) for k in kinds)})"]
        where += [
            f"{name} = {_sql(value)}"
            for name, value in zip(corr.group_by, episode.group, strict=True)
            if name in _EVENT_COLUMNS
        ]
        return (
            f"SELECT ts, tenant_id, kind, event_id FROM {self._database}.events "
            f"WHERE {' AND '.join(where)} AND ts BETWEEN {start} AND {end} ORDER BY ts"
        )


#: grouping fields that are columns of the events table
_EVENT_COLUMNS = frozenset(
    {"tenant_id", "ip_hash", "route", "service", "user_id_hash", "endpoint", "attack_type"}
)


def _crosses(kind: str, event: Any) -> bool:
    """A tenant violation, or a request whose actor and resource tenants differ."""
    if kind == "security.tenant_violation":
        return True
    if kind != "http.request":
        return False
    actor, resource = event.actor_tenant_id, event.resource_tenant_id
    return bool(actor and resource and actor != resource)
