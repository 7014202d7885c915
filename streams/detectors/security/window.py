"""Exact sliding event-time windows for count correlations, and their alert episodes.

Semantics (README, *Security rules*; ``tests/unit/test_security_window.py`` holds the
brute-force reference they are checked against):

* **Windows.** For every event of a group at event time ``t``, its window is
  ``(t - timespan, t]`` of that group: every event of the group in that span counts
  (``event_count``), or every distinct value of ``field`` among them (``value_count``).
  There are no clock-aligned buckets, so a burst straddling a minute boundary is seen
  whole.
* **Late events.** The partition's watermark is its newest event time minus ``grace``.
  An event older than the watermark when it arrives is *late*: counted, flagged in the
  result and stored with every other event, but not evaluated — exactly as the latency
  windows treat late events, and as the reference does. Every other event, in any order
  within the grace, is evaluated exactly.
* **When a window holds.** ``gt`` / ``gte`` can only become true as events arrive, so
  they are decided at once: the alert fires with the event that makes a window hold.
  ``lt`` / ``lte`` / ``eq`` / ``neq`` are decided when the watermark passes the window's
  end (no event of the window can arrive any more).
* **Episodes.** Windows that hold within ``quiet`` of each other form one episode: it
  fires at its first holding window and resolves ``quiet`` after its last one, once the
  watermark has passed that point (in event time, so a replay decides the same). An
  episode is one row of ``security_detections``: first event of its first holding
  window, last holding window's end, peak count, threshold, group, sample event ids.
  ``quiet`` must be at least ``grace``; then an event arriving out of order can never
  merge or split episodes already decided.

State per group is the events of the last ``timespan + grace`` plus the episode in
progress; a group with neither is forgotten.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field
from typing import Literal

Op = Literal["gt", "gte", "lt", "lte", "eq", "neq"]
IMMEDIATE: frozenset[str] = frozenset({"gt", "gte"})
SAMPLE_IDS = 10


def holds(op: Op, count: int, threshold: int) -> bool:
    if op == "gt":
        return count > threshold
    if op == "gte":
        return count >= threshold
    if op == "lt":
        return count < threshold
    if op == "lte":
        return count <= threshold
    if op == "eq":
        return count == threshold
    return count != threshold


@dataclass(slots=True)
class Episode:
    """One alert episode of one group: from its first holding window to its last."""

    group: tuple[str, ...]
    first_event_ms: int  # first event of the first holding window
    first_hold_ms: int  # end of the first holding window (when it fired)
    last_hold_ms: int  # end of the last holding window
    peak: int
    sample_ids: list[str]

    def extend(self, start_ms: int, end_ms: int, count: int) -> None:
        if end_ms < self.first_hold_ms:
            self.first_hold_ms = end_ms
        self.first_event_ms = min(self.first_event_ms, start_ms)
        self.last_hold_ms = max(self.last_hold_ms, end_ms)
        self.peak = max(self.peak, count)


@dataclass(frozen=True, slots=True)
class Change:
    """An alert transition: ``fire`` when an episode begins, ``resolve`` when it ends."""

    action: Literal["fire", "resolve"]
    at_ms: int
    episode: Episode


@dataclass(slots=True)
class _Group:
    times: list[int] = field(default_factory=list)  # event times, ascending
    ids: list[str] = field(default_factory=list)  # event ids, in the same order
    values: list[str] = field(default_factory=list)  # the counted field (value_count)
    undecided: list[int] = field(default_factory=list)  # window ends (lt/lte/eq/neq)
    active: Episode | None = None
    pending: list[tuple[int, int, int, list[str]]] = field(default_factory=list)

    def idle(self) -> bool:
        return not (self.times or self.active or self.pending or self.undecided)


class SlidingCount:
    """One correlation (``event_count`` or ``value_count``) over every group of one
    partition. ``add`` feeds one matching event; ``advance`` moves the watermark."""

    def __init__(
        self,
        timespan_ms: int,
        op: Op,
        threshold: int,
        quiet_ms: int,
        grace_ms: int,
        distinct: bool = False,
    ) -> None:
        if quiet_ms < grace_ms:
            raise ValueError("the quiet period must be at least the grace period")
        self.span = timespan_ms
        self.op: Op = op
        self.threshold = threshold
        self.quiet = quiet_ms
        self.grace = grace_ms
        self.distinct = distinct
        self.groups: dict[tuple[str, ...], _Group] = {}
        self.max_ts: int | None = None
        self.late = 0

    @property
    def watermark(self) -> int | None:
        return None if self.max_ts is None else self.max_ts - self.grace

    def add(
        self, group: tuple[str, ...], ts_ms: int, event_id: str, value: str = ""
    ) -> tuple[bool, list[Change]]:
        """Feed one event; returns (late, transitions). A late event changes nothing."""
        wm = self.watermark
        if wm is not None and ts_ms < wm:
            self.late += 1
            return True, []
        g = self.groups.get(group)
        if g is None:
            g = self.groups[group] = _Group()
        i = bisect_right(g.times, ts_ms)
        g.times.insert(i, ts_ms)
        g.ids.insert(i, event_id)
        if self.distinct:
            g.values.insert(i, value)
        changes: list[Change] = []
        if self.op in IMMEDIATE:
            # the windows that now count one more: those ending at [ts, ts + span)
            end = bisect_left(g.times, ts_ms + self.span)
            for j in range(i, end):
                if j + 1 < len(g.times) and g.times[j + 1] == g.times[j]:
                    continue  # the window ends at the last event of that instant
                self._judge(group, g, j, changes)
        else:
            insort(g.undecided, ts_ms)
        if self.max_ts is None or ts_ms > self.max_ts:
            self.max_ts = ts_ms
        self._advance_group(group, g, self.max_ts - self.grace, changes)
        return False, changes

    def advance(self, watermark: int | None = None) -> list[Change]:
        """Decide, for every group, what the watermark (default: the partition's) has
        made certain, and forget what it made useless. The worker calls it on its timer:
        the groups an event touches are brought up to date by :meth:`add` itself."""
        changes: list[Change] = []
        wm = self.watermark if watermark is None else watermark
        if wm is None:
            return changes
        for group, g in list(self.groups.items()):
            self._advance_group(group, g, wm, changes)
        return changes

    def _advance_group(
        self, group: tuple[str, ...], g: _Group, watermark: int, changes: list[Change]
    ) -> None:
        while g.undecided and g.undecided[0] < watermark:
            end = g.undecided.pop(0)
            j = bisect_right(g.times, end) - 1
            self._judge(group, g, j, changes)
        self._settle(g, watermark, changes)
        horizon = watermark - self.span  # no future window reaches back past this
        cut = bisect_right(g.times, horizon)
        if g.undecided:
            cut = min(cut, bisect_right(g.times, g.undecided[0] - self.span))
        if cut:
            del g.times[:cut]
            del g.ids[:cut]
            if self.distinct:
                del g.values[:cut]
        if g.idle():
            del self.groups[group]

    def flush(self) -> list[Change]:
        """The end of the input: every window decided, every episode resolved."""
        return self.advance(2**62)

    def _judge(self, group: tuple[str, ...], g: _Group, j: int, changes: list[Change]) -> None:
        end = g.times[j]
        lo = bisect_right(g.times, end - self.span)
        count = len(set(g.values[lo : j + 1])) if self.distinct else j + 1 - lo
        if not holds(self.op, count, self.threshold):
            return
        start = g.times[lo]
        ids = g.ids[lo : j + 1][:SAMPLE_IDS]
        active = g.active
        if active is None:
            g.active = Episode(group, start, end, end, count, ids)
            changes.append(Change("fire", end, g.active))
        elif end <= active.last_hold_ms + self.quiet:
            active.extend(start, end, count)
        else:
            insort(g.pending, (end, start, count, ids))

    def _settle(self, g: _Group, watermark: int, changes: list[Change]) -> None:
        """Close the episode in progress once no window can extend it any more."""
        while g.active is not None:
            active = g.active
            while g.pending and g.pending[0][0] <= active.last_hold_ms + self.quiet:
                end, start, count, _ = g.pending.pop(0)
                active.extend(start, end, count)
            if watermark <= active.last_hold_ms + self.quiet:
                return
            changes.append(Change("resolve", active.last_hold_ms + self.quiet, active))
            g.active = None
            if g.pending:
                end, start, count, ids = g.pending.pop(0)
                g.active = Episode(active.group, start, end, end, count, ids)
                changes.append(Change("fire", end, g.active))

    def memory_groups(self) -> int:
        return len(self.groups)
