"""The security detector's pure core: the state of one partition, events in, alert
transitions and forwarded records out. No I/O here (the adapter, :mod:`.detector`, reads
and writes Kafka and ClickHouse).

Two kinds of partition run the same engine:

* an **events** partition (``spanning=False``): producers key events by tenant, so every
  correlation grouped by ``tenant_id`` — and the built-in cross-tenant rule, which looks
  at one event — is exact here, with the partition's watermark (its newest event time
  minus grace). Events that match a correlation whose groups span tenants (an IP, a
  webhook provider, the whole platform) are not evaluated here: they become
  :class:`Forward` records, a few dozen bytes each, keyed by group;
* a **groups** partition (``spanning=True``) of the internal topic those records go to:
  every record of one group lands in one partition, so the correlations spanning tenants
  are exact there. Its watermark is *aligned*: the smallest of the source partitions'
  watermarks (each forwarded record and each periodic watermark record carries its
  source's newest event time), so a source that lags behind does not make its events
  late here.

Temporal correlations may chain a count correlation (``account_takeover`` = the
``brute_force`` condition, then a successful login): the count correlation's holding
windows are fed to the temporal one as occurrences of that step, in the same engine (a
chained correlation has the same group-by, so the same key and partition).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from sys import intern
from typing import Any

import orjson

from schemas.normalize import normalise_provider
from streams.detectors.security.rules import TEMPORAL, BaseRule, Correlation, SecurityConfig
from streams.detectors.security.window import Change, SlidingCount, SlidingSequence

CROSS_TENANT = "CrossTenantAccess"
CROSS_TENANT_RULE = "cross_tenant"
#: the checkpoint layout (:meth:`SecurityEngine.dump`); a checkpoint of another one is
#: not loaded (the partition starts empty, from its committed offset)
STATE_FORMAT = 3
#: the built-in rule's window: every access is its own holding window
_INSTANT_MS = 1


@dataclass(slots=True)
class Track:
    """One correlation at one threshold: its windows (each group tagged with its IP
    prefix where it has one)."""

    correlation: Correlation | None  # None: the built-in cross-tenant rule
    threshold: int
    counter: SlidingCount


@dataclass(frozen=True, slots=True)
class Forward:
    """A matching event of a correlation whose groups span tenants, on its way to the
    groups partition of its group."""

    correlation: str
    group: tuple[str, ...]
    ts_ms: int
    event_id: str
    value: str  # the counted field (value_count) or the step index (temporal)
    ip_prefix: str | None

    def route(self, partitions: int) -> int:
        """The groups partition of its group: by the group's values alone, so chained
        correlations (same group-by, same values) meet."""
        return zlib.crc32("\x1f".join(self.group).encode()) % partitions


#: forwarded records per message of the groups topic (a message stays far below 1 MiB)
PER_MESSAGE = 2000


def encode_forwards(entries: list[tuple[Forward, int]], source: int, sources: int) -> bytes:
    """The forwards of one batch bound for one groups partition, as one message: each
    with its source's newest event time when it was forwarded (a Kafka record per event
    cost a produce and a consume each: ~10 % of the worker's samples under py-spy)."""
    return orjson.dumps(
        {
            "s": source,
            "n": sources,
            "r": [
                [f.correlation, f.group, f.ts_ms, f.event_id, f.value, f.ip_prefix, m]
                for f, m in entries
            ],
        }
    )


def encode_watermark(source: int, source_max_ts: int, sources: int = 1) -> bytes:
    """``sources``: how many events partitions there are (the groups stage waits for
    each of them)."""
    return orjson.dumps({"s": source, "m": source_max_ts, "n": sources})


Changes = list[tuple[Track, Change]]


@dataclass(frozen=True, slots=True)
class Late:
    """A matching event that arrived behind the watermark: counted, not judged, and
    flagged (a ``security_late_events`` row) so nobody has to guess what was missed."""

    rule: str  # the correlation, or the built-in cross_tenant rule
    group: tuple[str, ...]
    tenant_id: str  # "" in the groups stage (the forwarded record does not carry it)
    ts_ms: int
    event_id: str
    watermark_ms: int


class SecurityEngine:
    def __init__(self, config: SecurityConfig, spanning: bool, sources: int = 1) -> None:
        """``sources``: the number of events partitions (a groups partition's watermark
        waits until each has reported)."""
        self.config = config
        self.spanning = spanning
        self.expected_sources = sources
        self.grace_ms = config.grace_seconds * 1000
        self.correlations = {c.name: c for c in config.correlations}
        #: kind -> base rules with (correlation, step) users: step is the index of the
        #: rule in a temporal correlation, None for a count correlation
        self.by_kind: dict[str, list[tuple[BaseRule, list[tuple[Correlation, int | None]]]]] = {}
        for rule in config.rules:
            users: list[tuple[Correlation, int | None]] = []
            for c in config.correlations:
                for step, ref in enumerate(c.rules):
                    if ref == rule.name:
                        users.append((c, step if c.type in TEMPORAL else None))
            if users:
                self.by_kind.setdefault(rule.kind, []).append((rule, users))
        #: kind -> (field, values) when every base rule of the kind selects on that field:
        #: an event with another value matches none of them (one lookup, not every rule;
        #: most http.request events are not 401, 403 or 429)
        self.gates: dict[str, tuple[str, frozenset[Any]]] = {}
        for kind, entries in self.by_kind.items():
            shared = set.intersection(*(set(rule.where) for rule, _ in entries))
            if shared:
                name = min(shared)
                wanted: set[Any] = set()
                for rule, _ in entries:
                    v = rule.where[name]
                    wanted.update(v if isinstance(v, tuple) else (v,))
                self.gates[kind] = (name, frozenset(wanted))
        #: the kinds feed() looks at; every other event only moves the watermark
        self.kinds = frozenset(self.by_kind) | (CROSSING_KINDS if config.cross_tenant else set())
        #: count correlation name -> temporal correlations chaining it, with the step
        self.chained: dict[str, list[tuple[Correlation, int]]] = {}
        for c in config.correlations:
            if c.type in TEMPORAL:
                for step, ref in enumerate(c.rules):
                    if ref in self.correlations:
                        self.chained.setdefault(ref, []).append((c, step))
        self.tracks: dict[tuple[str, int], Track] = {}
        #: newest event time of this partition (events) / of each source (groups)
        self.max_ts: int | None = None
        self.sources: dict[int, int] = {}
        self.late = 0
        #: late matching events since the caller last drained it (not checkpointed: a
        #: replay flags them again, and the table keeps one row per rule and event)
        self.flagged: list[Late] = []
        #: trace ids of recent cross-tenant events (rare; bounded): an alert's evidence
        #: names them so incidents group the request's other alerts with it
        self.traces: dict[str, str] = {}

    # --- watermarks -----------------------------------------------------------------------

    @property
    def watermark(self) -> int | None:
        """Events partition: newest event time minus grace. Groups partition: the
        smallest source watermark (None until a source has reported)."""
        if self.spanning:
            if not self.sources or len(self.sources) < self.expected_sources:
                return None  # a source not heard of yet may still send anything
            return min(self.sources.values()) - self.grace_ms
        return None if self.max_ts is None else self.max_ts - self.grace_ms

    def source_progress(self, source: int, max_ts: int) -> None:
        if max_ts > self.sources.get(source, -(2**62)):
            self.sources[source] = max_ts

    def follow_clock(self, wall_ms: int) -> None:
        """An idle events partition: its watermark follows the wall clock."""
        if self.max_ts is not None and wall_ms > self.max_ts:
            self.max_ts = wall_ms

    # --- events partition -----------------------------------------------------------------

    def feed(
        self,
        event: Any,
        ts: int,
        changes: Changes,
        forwards: list[Forward],
        kind: str | None = None,
    ) -> bool:
        """One event of an events partition (``kind``: its kind, if the caller has it);
        returns True when it is late for security."""
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
        wm = self.max_ts - self.grace_ms
        if ts < wm:
            return self._flag_late(event, ts, wm)
        if kind is None:
            kind = event.kind
        if self.config.cross_tenant and _crosses(kind, event):
            self._cross_tenant(event, ts, wm, changes)
        entries = self.by_kind.get(kind)
        if entries is None:
            return False
        gate = self.gates.get(kind)
        if gate is not None and getattr(event, gate[0], None) not in gate[1]:
            return False
        for rule, users in entries:
            if not rule.matches(event):
                continue
            for corr, step in users:
                values = _group(corr, event)
                if values is None:
                    continue  # cannot be grouped (no IP on this event): not counted
                value = _value(corr, event, step)
                if value is None:
                    continue
                event_id = event.event_id
                if corr.spans_tenants:
                    ip = "ip_hash" in corr.group_by
                    prefix = getattr(event, "ip_prefix", None) if ip else None
                    forwards.append(Forward(corr.name, values, ts, event_id, value, prefix))
                    continue
                self._add(corr, values, event.tenant_id, ts, event_id, value, None, wm, changes)
        return False

    def _flag_late(self, event: Any, ts: int, wm: int) -> bool:
        """A late event: flagged once per rule it matches; True when it matches any."""
        before = len(self.flagged)
        tenant = str(event.tenant_id)
        if self.config.cross_tenant and _crosses(event.kind, event):
            group = _cross_group(event)
            self.flagged.append(Late(CROSS_TENANT_RULE, group, tenant, ts, event.event_id, wm))
        for rule, users in self.by_kind.get(event.kind, ()):
            if not rule.matches(event):
                continue
            for corr, _ in users:
                values = _group(corr, event)
                if values is not None:
                    self.flagged.append(Late(corr.name, values, tenant, ts, event.event_id, wm))
        if len(self.flagged) == before:
            return False
        self.late += 1
        return True

    def _cross_tenant(self, event: Any, ts: int, wm: int, out: Changes) -> None:
        group = _cross_group(event)
        key = (CROSS_TENANT_RULE, 0)
        track = self.tracks.get(key)
        if track is None:
            counter = SlidingCount(_INSTANT_MS, "gte", 1, self.config.quiet_ms, self.grace_ms)
            track = self.tracks[key] = Track(None, 1, counter)
        trace = getattr(event, "trace_id", None)
        if trace:
            if len(self.traces) >= MAX_TRACES:
                del self.traces[next(iter(self.traces))]
            self.traces[event.event_id] = trace
        _, changes = track.counter.add(group, ts, event.event_id, watermark=wm)
        out.extend((track, c) for c in changes)

    # --- groups partition -----------------------------------------------------------------

    def feed_message(self, message: dict[str, Any], changes: Changes) -> int:
        """One message of a groups partition — a batch of forwards
        (:func:`encode_forwards`) or a watermark record (:func:`encode_watermark`);
        returns how many of its records were late here."""
        source = int(message["s"])
        self.expected_sources = max(self.expected_sources, int(message.get("n", 1)))
        if "r" not in message:
            self.source_progress(source, int(message["m"]))
            return 0
        late = 0
        for name, group, ts, event_id, value, prefix, source_max in message["r"]:
            self.source_progress(source, int(source_max))
            late += self._forwarded(name, group, int(ts), event_id, value, prefix, changes)
        return late

    def _forwarded(
        self,
        name: str,
        values: list[str],
        ts: int,
        event_id: str,
        value: str,
        prefix: str | None,
        changes: Changes,
    ) -> bool:
        corr = self.correlations.get(name)
        if corr is None:
            return False  # a correlation removed from the rules since it was forwarded
        known = self.watermark
        wm = -(2**62) if known is None else known  # None: nothing is late or decided yet
        if ts < wm:
            self.late += 1
            if event_id:  # (a chained window's events were flagged where they were late)
                self.flagged.append(Late(corr.name, tuple(values), "", ts, event_id, wm))
            return True
        # one copy of a group's strings for every correlation grouping by them (an IP is
        # a group of brute_force, user_enumeration and account_takeover)
        group = tuple(intern(str(v)) for v in values)
        if prefix:
            prefix = intern(prefix)
        self._add(corr, group, None, ts, event_id, value, prefix, wm, changes)
        return False

    # --- both -----------------------------------------------------------------------------

    def _add(
        self,
        corr: Correlation,
        group: tuple[str, ...],
        tenant: str | None,
        ts: int,
        event_id: str,
        value: str,
        ip_prefix: str | None,
        wm: int,
        out: Changes,
    ) -> None:
        threshold = self.config.threshold(corr, tenant, group[0] if group else "")
        if threshold is None:
            return
        track = self.track(corr, threshold)
        _, changes = track.counter.add(group, ts, event_id, value, wm, ip_prefix or "")
        out.extend((track, c) for c in changes)
        if track.counter.held:
            self._chain(corr, track, tenant, wm, out)

    def _chain(
        self, corr: Correlation, track: Track, tenant: str | None, wm: int, out: Changes
    ) -> None:
        """A chained correlation's holding windows become steps of its temporal users."""
        held = track.counter.held
        assert held is not None
        track.counter.held = []
        for group, end, prefix in held:
            for user, step in self.chained.get(corr.name, ()):
                # a holding window is identified by its end alone (no event id): the same
                # window judged again, whatever the arrival order, is one occurrence
                self._add(user, group, tenant, end, "", str(step), prefix, wm, out)

    def track(self, corr: Correlation, threshold: int) -> Track:
        key = (corr.name, threshold)
        track = self.tracks.get(key)
        if track is None:
            counter: SlidingCount
            if corr.type in TEMPORAL:
                counter = SlidingSequence(
                    corr.timespan_ms,
                    len(corr.rules),
                    corr.type == "temporal_ordered",
                    self.config.quiet_ms,
                    self.grace_ms,
                )
            else:
                counter = SlidingCount(
                    corr.timespan_ms,
                    corr.op,
                    threshold,
                    self.config.quiet_ms,
                    self.grace_ms,
                    distinct=corr.type == "value_count",
                )
            if corr.name in self.chained:
                counter.held = []
            track = self.tracks[key] = Track(corr, threshold, counter)
        return track

    def advance(self, out: Changes) -> None:
        """Decide what the watermark has made certain in every group; forget the rest."""
        wm = self.watermark
        if wm is None:
            return
        for track in list(self.tracks.values()):
            out.extend((track, c) for c in track.counter.advance(wm))
            corr = track.correlation
            if corr is not None and track.counter.held:
                self._chain(corr, track, None, wm, out)

    def active_groups(self) -> int:
        return sum(t.counter.memory_groups() for t in self.tracks.values())

    # --- checkpoints ----------------------------------------------------------------------

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "v": STATE_FORMAT,
                "max_ts": self.max_ts,
                "sources": {str(k): v for k, v in self.sources.items()},
                "late": self.late,
                "tracks": [
                    [
                        name,
                        threshold,
                        t.counter.dump(),
                    ]
                    for (name, threshold), t in self.tracks.items()
                ],
            }
        )

    def load(self, blob: bytes | str) -> None:
        state = orjson.loads(blob)
        if state.get("v") != STATE_FORMAT:
            raise ValueError(
                f"a checkpoint of format {state.get('v', 1)}; this version reads {STATE_FORMAT}"
            )
        self.max_ts = state["max_ts"]
        self.sources = {int(k): int(v) for k, v in state["sources"].items()}
        self.late = state["late"]
        self.tracks = {}
        for name, threshold, counter_state in state["tracks"]:
            if name == CROSS_TENANT_RULE:
                counter = SlidingCount(_INSTANT_MS, "gte", 1, self.config.quiet_ms, self.grace_ms)
                track = self.tracks[(name, threshold)] = Track(None, 1, counter)
            else:
                corr = self.correlations.get(name)
                if corr is None:
                    continue  # removed from the rules: its windows are dropped
                track = self.track(corr, threshold)
            track.counter.load(counter_state)


def _cross_group(event: Any) -> tuple[str, ...]:
    """The built-in rule's group: actor tenant, resource tenant, model or route, blocked."""
    where = getattr(event, "model", None) or getattr(event, "route", None) or ""
    blocked = bool(getattr(event, "blocked", False))
    return (
        str(event.actor_tenant_id),
        str(event.resource_tenant_id),
        str(where),
        "true" if blocked else "false",
    )


def _group(corr: Correlation, event: Any) -> tuple[str, ...] | None:
    values: list[str] = []
    for name in corr.group_by:
        value = getattr(event, name, None)
        if value is None:
            return None
        values.append(normalise_provider(value) if name == "provider" else str(value))
    return tuple(values)


def _value(corr: Correlation, event: Any, step: int | None) -> str | None:
    if step is not None:
        return str(step)
    counted = corr.counted_field
    if not counted:
        return ""
    value = getattr(event, counted, None)
    return str(value) if value else None


#: the kinds the built-in cross-tenant rule looks at (:func:`_crosses`)
CROSSING_KINDS = frozenset({"security.tenant_violation", "http.request"})
MAX_TRACES = 4096


def _crosses(kind: str, event: Any) -> bool:
    """A tenant violation, or a request whose actor and resource tenants differ."""
    if kind == "security.tenant_violation":
        return True
    if kind != "http.request":
        return False
    actor, resource = event.actor_tenant_id, event.resource_tenant_id
    return bool(actor and resource and actor != resource)
