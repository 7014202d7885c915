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
* **Transitions.** ``fire`` (page now) comes with the first holding window *seen*; with
  input out of order (the groups stage merges several partitions) an earlier window of
  the same episode may still turn up, so the episode's start is only certain once the
  watermark has passed it: then comes ``open`` (its firing row, whose identity and
  start no longer depend on arrival order). ``resolve`` ends it. Episodes of one group
  found out of order are kept apart or merged exactly as the whole input decides; the
  alert of a group fires once and resolves when its last open episode does.

State per group is the events of the last ``timespan + grace`` plus the episode in
progress; a group with neither is forgotten.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass
from typing import Any, Literal

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

    announced: bool = False  # its ``fire`` was emitted
    opened: bool = False  # its ``open`` was emitted (its start is certain)
    tag: str = ""  # its group's tag when it began (an IP's prefix)

    def extend(
        self, start_ms: int, end_ms: int, count: int, ids: list[str], lo: int, hi: int
    ) -> None:
        """A holding window ``ids[lo..hi]`` (start, end, count) of this episode."""
        if end_ms <= self.first_hold_ms:  # an earlier window, or the first one judged again
            self.first_hold_ms = end_ms
            self.sample_ids = _samples(ids, lo, hi)
        self.first_event_ms = min(self.first_event_ms, start_ms)
        self.last_hold_ms = max(self.last_hold_ms, end_ms)
        self.peak = max(self.peak, count)

    def absorb(self, other: Episode) -> None:
        """``other`` (later) turned out to be part of this episode."""
        self.first_event_ms = min(self.first_event_ms, other.first_event_ms)
        self.last_hold_ms = max(self.last_hold_ms, other.last_hold_ms)
        self.peak = max(self.peak, other.peak)


def _samples(ids: list[str], lo: int, hi: int) -> list[str]:
    """The first ``SAMPLE_IDS`` event ids of ``ids[lo..hi]`` ("" is a chained window, not
    an event), without copying the window."""
    out: list[str] = []
    for k in range(lo, hi + 1):
        if ids[k]:
            out.append(ids[k])
            if len(out) == SAMPLE_IDS:
                break
    return out


@dataclass(frozen=True, slots=True)
class Change:
    """An alert transition. ``fire``: an episode begins (page now); ``open``: its start
    is certain (write its firing row); ``resolve``: it ended (``alert`` False when
    another episode of the group is still firing, so the alert stays up)."""

    action: Literal["fire", "open", "resolve"]
    at_ms: int
    episode: Episode
    alert: bool = True


_EMPTY: Any = ()  # a group's list it never needed (shared; replaced on first write)


class _Group:
    """One group's state. ``values`` exists for value_count, ``undecided`` for
    lt/lte/eq/neq, ``episodes`` once a window held: the rest share an empty tuple (at
    100,000 IPs the empty lists were a third of the memory). A plain class: a new IP
    makes one, and a dataclass's generated ``__init__`` with list factories was a
    visible share of the groups stage."""

    __slots__ = ("advanced_to", "episodes", "ids", "tag", "times", "undecided", "values")

    def __init__(
        self,
        times: list[int],
        ids: list[str],
        values: list[str] = _EMPTY,
        undecided: list[int] = _EMPTY,
        episodes: list[Episode] = _EMPTY,
        tag: str = "",
    ) -> None:
        self.times = times  # event times, ascending
        self.ids = ids  # event ids, in the same order
        self.values = values  # the counted field (value_count)
        self.undecided = undecided  # window ends (lt/lte/eq/neq)
        #: open episodes by start, more than ``quiet`` apart; the first is the one firing
        self.episodes = episodes
        self.tag = tag  # shown with the group's episodes (an IP's prefix)
        self.advanced_to: int | None = None  # the watermark it was last brought up to

    def idle(self) -> bool:
        return not (self.times or self.episodes or self.undecided)


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
        #: (group, window end, the group's tag) of every holding window judged, when a
        #: temporal correlation chains this one (the caller drains it)
        self.held: list[tuple[tuple[str, ...], int, str]] | None = None

    @property
    def watermark(self) -> int | None:
        return None if self.max_ts is None else self.max_ts - self.grace

    def add(
        self,
        group: tuple[str, ...],
        ts_ms: int,
        event_id: str,
        value: str = "",
        watermark: int | None = None,
        tag: str = "",
    ) -> tuple[bool, list[Change]]:
        """Feed one event; returns (late, transitions). A late event changes nothing; an
        event already in its window (same id and time: a replayed copy) is ignored.

        ``watermark``: the caller's (an aligned watermark over several inputs) instead of
        this counter's own (its newest event time minus grace)."""
        wm = self.watermark if watermark is None else watermark
        if wm is not None and ts_ms < wm:
            self.late += 1
            return True, []
        g = self.groups.get(group)
        if g is None:
            g = self.groups[group] = _Group(
                [],
                [],
                [] if self.distinct else _EMPTY,
                _EMPTY if self.op in IMMEDIATE else [],
            )
        if tag:
            g.tag = tag
        i = bisect_right(g.times, ts_ms)
        k = i - 1
        while k >= 0 and g.times[k] == ts_ms:
            if g.ids[k] == event_id and (not self.distinct or g.values[k] == value):
                return False, []  # a duplicate (at-least-once delivery upstream)
            if g.ids[k] > event_id:
                i = k  # events of one instant in id order: samples do not depend on arrival
            k -= 1
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
        wm_now = self.max_ts - self.grace if watermark is None else watermark
        if wm_now != g.advanced_to:
            # (with the watermark where this group last stood, the event changed nothing
            # the watermark decides: its windows end at or after it)
            self._advance_group(group, g, wm_now, changes)
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
        g.advanced_to = watermark
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

    def _measure(self, g: _Group, lo: int, j: int) -> tuple[int, int]:
        """The window ``lo..j``'s count, and the position of its first counted event."""
        if self.distinct:
            return len(set(g.values[lo : j + 1])), lo
        return j + 1 - lo, lo

    def _judge(self, group: tuple[str, ...], g: _Group, j: int, changes: list[Change]) -> None:
        end = g.times[j]
        lo = bisect_right(g.times, end - self.span)
        count, first = self._measure(g, lo, j)
        if not holds(self.op, count, self.threshold):
            return
        if self.held is not None:
            self.held.append((group, end, g.tag))
        start = g.times[first]
        quiet = self.quiet
        touching = [
            e for e in g.episodes if e.first_hold_ms - quiet <= end <= e.last_hold_ms + quiet
        ]
        if not touching:
            episode = Episode(group, start, end, end, count, _samples(g.ids, first, j))
            episode.tag = g.tag
            if not g.episodes:
                g.episodes = []
            g.episodes.append(episode)
            g.episodes.sort(key=lambda e: e.first_hold_ms)
            if g.episodes[0] is episode:  # the first (or an earlier one found late)
                episode.announced = True
                changes.append(Change("fire", end, episode))
            return
        keep = touching[0]
        keep.extend(start, end, count, g.ids, first, j)
        for other in touching[1:]:  # this window bridges them: one episode after all
            keep.absorb(other)
            g.episodes.remove(other)
            if other.announced and not keep.announced:
                keep.announced = True
                changes.append(Change("fire", end, keep))

    def _settle(self, g: _Group, watermark: int, changes: list[Change]) -> None:
        """Open the episodes whose start is certain; close those no window can extend."""
        for episode in g.episodes:
            if episode.opened:
                continue
            if watermark <= episode.first_hold_ms:
                break  # later episodes start later still
            episode.opened = True
            changes.append(Change("open", episode.first_hold_ms, episode))
        while g.episodes:
            head = g.episodes[0]
            if watermark <= head.last_hold_ms + self.quiet:
                return
            g.episodes.pop(0)
            rest = g.episodes[0] if g.episodes else None
            if not head.opened:  # (the watermark is past its start too)
                head.opened = True
                changes.append(Change("open", head.first_hold_ms, head))
            still = rest is not None and rest.announced
            changes.append(Change("resolve", head.last_hold_ms + self.quiet, head, not still))
            if rest is not None and not rest.announced:
                rest.announced = True
                changes.append(Change("fire", rest.first_hold_ms, rest))

    def memory_groups(self) -> int:
        return len(self.groups)

    # --- checkpoints ------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Everything needed to continue exactly (JSON-serialisable)."""
        return {
            "max_ts": self.max_ts,
            "late": self.late,
            "groups": [
                [
                    list(key),
                    g.times,
                    g.ids,
                    g.values,
                    g.undecided,
                    [_dump_episode(e) for e in g.episodes],
                    g.tag,
                ]
                for key, g in self.groups.items()
            ],
        }

    def load(self, state: dict[str, Any]) -> None:
        self.max_ts = state["max_ts"]
        self.late = state["late"]
        self.groups = {}
        for key, times, ids, values, undecided, episodes, tag in state["groups"]:
            group = tuple(key)
            self.groups[group] = _Group(
                times,
                ids,
                values if self.distinct else _EMPTY,
                _EMPTY if self.op in IMMEDIATE else undecided,
                [_load_episode(group, e) for e in episodes] or _EMPTY,
                tag,
            )


def _dump_episode(e: Episode) -> list[Any]:
    return [
        e.first_event_ms,
        e.first_hold_ms,
        e.last_hold_ms,
        e.peak,
        e.sample_ids,
        e.announced,
        e.opened,
        e.tag,
    ]


def _load_episode(group: tuple[str, ...], saved: list[Any]) -> Episode:
    first_event, first_hold, last_hold, peak, ids, announced, opened, tag = saved
    return Episode(
        group, first_event, first_hold, last_hold, peak, list(ids), announced, opened, tag
    )


class SlidingSequence(SlidingCount):
    """A ``temporal`` or ``temporal_ordered`` correlation: a window holds when it contains
    an occurrence of every step (each a base rule's event, or a holding window of a
    chained correlation). Ordered: occurrences t1 <= t2 <= ... <= tn in step order.
    ``add``'s ``value`` is the step's index (as text)."""

    def __init__(
        self, timespan_ms: int, steps: int, ordered: bool, quiet_ms: int, grace_ms: int
    ) -> None:
        super().__init__(timespan_ms, "gte", steps, quiet_ms, grace_ms, distinct=True)
        self.steps = steps
        self.ordered = ordered

    def _measure(self, g: _Group, lo: int, j: int) -> tuple[int, int]:
        """Steps present (unordered) or matched in order, and the earliest first step of a
        complete chain (it only moves earlier as events arrive, whatever their order)."""
        values = g.values
        if not self.ordered:
            return len(set(values[lo : j + 1])), lo
        # greedy from the start: the earliest occurrence of each step at or after the
        # previous step's instant; a chain exists iff this one does, and its first step
        # is the earliest possible
        k = lo
        first = lo
        for step in range(self.steps):
            want = str(step)
            while k <= j and values[k] != want:
                k += 1
            if k > j:
                return step, lo  # steps matched so far: below the threshold
            if step == 0:
                first = k
            k = bisect_left(g.times, g.times[k], lo, j + 1)  # ties: the same instant counts
        return self.steps, first
