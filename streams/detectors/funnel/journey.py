"""A person's journeys through one funnel, with ClickHouse ``windowFunnel`` semantics.

A person's step events are kept as *points*: ``ts_ms * 64 + step`` (step 1..N the
condition an event matched, one point per matched condition; 0 for an event of the
funnel's names that matches no condition, which only ``strict`` funnels keep). Sorting
the integers sorts by time, then by step: equal timestamps count in step order, as the
engine's ``windowFunnel`` sorts its (timestamp, condition) pairs.

:func:`scan` is the level of one sorted run of points, the same walk as ``windowFunnel``:
a step-1 point starts a chain; a step-``k`` point extends the newest chain that has
reached ``k-1`` if it lies within the window of that chain's start (inclusive); the
level is the deepest step reached. ``strict`` (``'strict_order'``): after the first
step-1 point, a point of no step stops the walk, and so does a step whose predecessor
was never reached (the level is then what was reached before it).

A *journey* groups the chains that can share events: step-1 points no more than a window
apart, spanning from the first of them to the window's end after the last. Its level is
``windowFunnel`` over the events inside that span; for ``ordered`` funnels a person's
level (``windowFunnel`` over all their events) is the largest of their journeys' levels,
since every chain lies inside one journey. A duplicate point changes no level, so
re-reading an event after a restart is harmless.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass

SHIFT = 64  # points are ts_ms * SHIFT + step (steps 0..32)
NOT_REACHED = -1
#: a journey's written row: (level, reached ms per step, status)
Row = tuple[int, tuple[int, ...], str]


def point(ts_ms: int, step: int) -> int:
    return ts_ms * SHIFT + step


@dataclass(frozen=True, slots=True)
class Level:
    level: int
    #: ms at which each step 1..N was first reached in the walk (NOT_REACHED if never)
    reached: tuple[int, ...]


def scan(points: Sequence[int], steps: int, window_ms: int, strict: bool) -> Level:
    """The funnel level of ``points`` (sorted), and when each step was first reached."""
    start = [NOT_REACHED] * steps  # per reached step: the start of the chain that holds it
    reached = [NOT_REACHED] * steps
    level = 0
    started = False
    for p in points:
        ts, step = divmod(p, SHIFT)
        if step == 0:  # a funnel event of no step (strict funnels only)
            if started:
                break
            continue
        k = step - 1
        if k == 0:
            start[0] = ts
            started = True
            if reached[0] == NOT_REACHED:
                reached[0] = ts
                level = max(level, 1)
            continue
        if strict and started and start[k - 1] == NOT_REACHED:
            break
        first = start[k - 1]
        if first != NOT_REACHED and ts <= first + window_ms:
            start[k] = first
            if reached[k] == NOT_REACHED:
                reached[k] = ts
                if step > level:
                    level = step
            if step == steps:
                break
    return Level(level, tuple(reached))


@dataclass(frozen=True, slots=True)
class Journey:
    entered_ms: int  # the first step-1 point
    last_start_ms: int  # the last step-1 point
    window_ms: int
    first: int  # index range of its points in the person's list
    stop: int

    @property
    def end_ms(self) -> int:
        """The last instant an event can belong to it (inclusive)."""
        return self.last_start_ms + self.window_ms


def journeys(points: Sequence[int], window_ms: int) -> list[Journey]:
    """The journeys of one person's sorted points (see the module docstring)."""
    out: list[Journey] = []
    n = len(points)
    i = 0
    while i < n:
        ts, step = divmod(points[i], SHIFT)
        if step != 1:
            i += 1
            continue
        entered = last = ts
        j = i + 1
        while j < n:
            t, s = divmod(points[j], SHIFT)
            if t > last + window_ms:
                break
            if s == 1:
                last = t
            j += 1
        out.append(Journey(entered, last, window_ms, i, j))
        i = j
    return out


class Person:
    """One person's points in one funnel, kept while a journey of theirs can change."""

    __slots__ = ("emitted", "points", "wake")

    def __init__(self) -> None:
        self.points: list[int] = []
        self.wake = -1  # the event time at which the detector looks at it again
        #: entered_ms -> the row last written for that journey (see the detector)
        #: the rows last written for its open journeys: None, (entered_ms, row) for the
        #: usual one journey (a dict costs ~200 bytes more per person), or a dict
        self.emitted: tuple[int, Row] | dict[int, Row] | None = None

    def add(self, p: int) -> bool:
        """Insert a point in order; False if it was already there."""
        pts = self.points
        if not pts or p > pts[-1]:
            pts.append(p)
            return True
        i = bisect_left(pts, p)
        if i < len(pts) and pts[i] == p:
            return False
        insort(pts, p, i, i)
        return True

    def row(self, entered: int) -> Row | None:
        """The row last written for the journey entered at ``entered``."""
        e = self.emitted
        if e is None:
            return None
        if isinstance(e, tuple):
            return e[1] if e[0] == entered else None
        return e.get(entered)

    def set_row(self, entered: int, row: Row | None) -> None:
        """Remember (or, with None, forget) the row of a journey."""
        e = self.emitted
        if row is None:
            if isinstance(e, tuple):
                if e[0] == entered:
                    self.emitted = None
            elif e is not None:
                e.pop(entered, None)
                if not e:
                    self.emitted = None
        elif e is None or (isinstance(e, tuple) and e[0] == entered):
            self.emitted = (entered, row)
        elif isinstance(e, tuple):
            self.emitted = {e[0]: e[1], entered: row}
        else:
            e[entered] = row

    def open_rows(self) -> int:
        e = self.emitted
        return 0 if e is None else 1 if isinstance(e, tuple) else len(e)
