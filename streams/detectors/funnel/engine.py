"""One partition's funnels: persons, journeys, cohorts and stage conversions (no I/O).

Per event of a funnel's step names (``analytics``, with a person): an event older than
the partition's watermark (newest event time seen before it, minus the grace) is *late*:
counted and flagged, never applied (the shared policy). Others become points of the
person (:mod:`.journey`). :meth:`FunnelPartition.advance` — the detector's tick — then
re-derives the changed persons' journeys and yields:

* a ``funnel_progress`` row per journey whose entry is certain (entered at or before the
  watermark: no earlier step-1 event can be accepted any more) each time its level,
  reached times or status change: ``pending`` while its window is open, ``converted`` at
  the last step, ``dropped`` once its window closed short of it — a person inside the
  window is never reported dropped;
* cohort counters (entry hour and day, per tenant and ``*``) kept equal to the sum of the
  journeys' latest rows, and rows for the cohorts that changed;
* stage-conversion counters per entry-minute of the previous step, for the timely alerts:
  among journeys that reached step ``k-1`` in the judged period, those that reached step
  ``k`` within the stage's time ``X``. They are judged at fixed event-time marks once the
  watermark has passed them, so a replay judges the same counts at the same marks.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from streams.detectors.funnel.journey import NOT_REACHED, SHIFT, Person, journeys, point, scan
from streams.detectors.funnel.rules import FunnelConfig
from streams.detectors.latency.sketch import Sketch
from streams.detectors.latency.windows import NO_WATERMARK, Watermark

HOUR_MS = 3_600_000
#: conversions a stage without a configured X needs in its basis period to observe one
AUTO_MIN = 20
DAY_MS = 86_400_000
GRAINS = (("hour", HOUR_MS), ("day", DAY_MS))
ALL_TENANTS = "*"
NO_TIME = NO_WATERMARK
#: (funnel index, tenant, person)
PersonKey = tuple[int, str, str]
#: a journey's row: (level, reached ms per step, status)
Summary = tuple[int, tuple[int, ...], str]
#: (funnel index, tenant, stage 2..N+1) -> minute -> [reached the previous step, converted
#: within X, {delay bucket: conversions} (stages whose X is observed)]
ConvKey = tuple[int, str, int]


@dataclass(slots=True)
class Cohort:
    entered: int = 0
    reached: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # open journeys at level k (index k-1)
    dropped: list[int] = field(default_factory=list)  # closed journeys at level k < N
    #: per stage 2..N (index k-2): time-to-convert sketch buckets (key -> count)
    ttc: list[dict[int, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Late:
    tenant_id: str
    event_id: str
    event_name: str
    ts_ms: int
    offset: int
    watermark_ms: int


@dataclass(frozen=True, slots=True)
class Judged:
    """One stage judged at one mark: counts over the period ending ``X`` before it."""

    funnel: int
    tenant: str
    stage: int  # 2..N; N+1 = overall (step 1 -> N within the window)
    mark_ms: int
    since_ms: int  # previous step reached in [since, until)
    until_ms: int
    within_ms: int
    n: int
    converted: int
    #: an X observed, not configured: the p95 time to convert of the journeys that reached
    #: the previous step in [basis[0], basis[1]) (one window earlier), and how many
    basis: tuple[int, int, int] | None = None


class FunnelPartition:
    def __init__(self, config: FunnelConfig, gamma: float) -> None:
        self.config = config
        self.funnels = config.definitions
        self.gamma = gamma
        self._log_gamma = math.log(gamma)
        #: the partition's event-time progress (the shared watermark: newest - grace)
        self.clock = Watermark(config.grace_seconds * 1000)
        self.persons: dict[PersonKey, Person] = {}
        self._dirty: set[PersonKey] = set()
        self._silent = False
        self.open_count = 0  # journeys written and not closed
        self._due: list[tuple[int, PersonKey]] = []  # (time a person needs a look, key)
        self.cohorts: dict[tuple[int, str, str, int], Cohort] = {}
        self._cohorts_dirty: set[tuple[int, str, str, int]] = set()
        self.conv: dict[ConvKey, dict[int, list[Any]]] = {}
        self.evaluated_ms = NO_TIME  # the last judged mark
        self.first_watermark = NO_TIME  # marks are judged from the first one after it
        #: step lookups: event name -> [(funnel index, [(step number, Step)])]
        self._by_name: dict[str, list[tuple[int, list[tuple[int, Any]]]]] = {}
        for fi, f in enumerate(self.funnels):
            for name in f.event_names:
                steps = [(i + 1, s) for i, s in enumerate(f.steps) if s.event == name]
                self._by_name.setdefault(name, []).append((fi, steps))
        #: per funnel, the stages that raise an alert (2..N; N+1 = overall)
        self.judged: list[tuple[int, ...]] = [
            tuple(k for k in range(2, len(f.steps) + 1) if f.steps[k - 1].alert_below is not None)
            + ((len(f.steps) + 1,) if f.overall.enabled else ())
            for f in self.funnels
        ]
        self.late: list[Late] = []
        self.rows: list[dict[str, Any]] = []  # funnel_progress rows since the last take
        #: journeys rebuilt after a restart: their rows as stored (tenant, funnel, person,
        #: entered) -> summary; consulted the first time the journey is seen again
        self.prior: dict[tuple[str, int, str, int], Summary] = {}

    # --- input ----------------------------------------------------------------------------

    def feed(
        self,
        tenant: str,
        person: str | None,
        event_name: str,
        properties: dict[str, Any],
        ts_ms: int,
        *,
        check_late: bool = True,
        event_id: str = "",
        offset: int = -1,
    ) -> bool:
        """One analytics event (in offset order; :meth:`observe` its time after). False
        if it was late (and flagged)."""
        entries = self._by_name.get(event_name)
        if entries is None or not person:
            return True
        if check_late and ts_ms < self.watermark:
            self.late.append(Late(tenant, event_id, event_name, ts_ms, offset, self.watermark))
            return False
        for fi, steps in entries:
            funnel = self.funnels[fi]
            matched = [n for n, s in steps if s.matches(properties)]
            if not matched:
                if funnel.order != "strict":
                    continue
                matched = [0]
            key = (fi, tenant, person)
            p = self.persons.get(key)
            if p is None:
                p = self.persons[key] = Person()
            changed = False
            for n in matched:
                changed |= p.add(point(ts_ms, n))
            if changed:
                self._dirty.add(key)
        return True

    def observe(self, ts_ms: int) -> None:
        clock = self.clock
        clock.observe(ts_ms)
        if self.first_watermark == NO_TIME:
            self.first_watermark = clock.value_ms

    def advance_idle(self, wall_ms: int) -> None:
        """Let the watermark follow the wall clock (an idle partition)."""
        if self.clock.advance_idle(wall_ms) and self.first_watermark == NO_TIME:
            self.first_watermark = self.clock.value_ms

    @property
    def watermark(self) -> int:
        return self.clock.value_ms

    @watermark.setter
    def watermark(self, value: int) -> None:
        self.clock.value_ms = value

    @property
    def max_ts(self) -> int:
        return self.clock.max_ts_ms

    @max_ts.setter
    def max_ts(self, value: int) -> None:
        self.clock.max_ts_ms = value

    @property
    def grace_ms(self) -> int:
        return self.clock.grace_ms

    @grace_ms.setter
    def grace_ms(self, value: int) -> None:
        self.clock.grace_ms = value

    # --- the tick ----------------------------------------------------------------------

    def advance(self) -> list[Judged]:
        """Bring journeys, cohorts and conversions up to the watermark; the stages judged
        at the marks it passed."""
        w = self.watermark
        due = self._due
        while due and due[0][0] < w:
            _, key = heapq.heappop(due)
            self._dirty.add(key)
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            self._update(key, w)
        return self._judge(w)

    def settle(self) -> None:
        """After a rebuild from stored events: journeys already closed at the watermark
        had their final rows written before the restart; they are let go without rows
        (only their events after the reload's floor were read back)."""
        dirty, self._dirty = self._dirty, set()
        self._silent = True
        try:
            for key in dirty:
                self._update(key, self.watermark)
        finally:
            self._silent = False

    def _update(self, key: PersonKey, w: int) -> None:
        p = self.persons.get(key)
        if p is None:
            return
        self.open_count -= p.open_rows()
        self._update_person(key, p, w)
        if key in self.persons:
            self.open_count += p.open_rows()

    def _update_person(self, key: PersonKey, p: Person, w: int) -> None:
        fi, tenant, person = key
        funnel = self.funnels[fi]
        n_steps = len(funnel.steps)
        strict = funnel.order == "strict"
        window = funnel.window_ms
        pts = p.points
        spans: list[tuple[int, int, bool]] = []  # (first, stop, still needed) per journey
        wake = NO_TIME
        for j in journeys(pts, window):
            end = j.end_ms
            closed = end < w
            if j.entered_ms > w:  # entry not certain yet: wait for the watermark
                spans.append((j.first, j.stop, True))
                wake = max(wake, j.entered_ms)
                continue
            if closed and self._silent:
                spans.append((j.first, j.stop, False))
                continue
            lvl = scan(pts[j.first : j.stop], n_steps, window, strict)
            status = "converted" if lvl.level == n_steps else "dropped" if closed else "pending"
            summary: Summary = (lvl.level, lvl.reached, status)
            before = p.row(j.entered_ms)
            if before is None and self.prior:
                before = self.prior.pop((tenant, fi, person, j.entered_ms), None)
            if before != summary:
                self._account(fi, tenant, j.entered_ms, before, -1)
                self._account(fi, tenant, j.entered_ms, summary, +1)
                self.rows.append(
                    {
                        "tenant_id": tenant,
                        "funnel": funnel.name,
                        "user_id_hash": person,
                        "entered_at": j.entered_ms / 1000,
                        "level": lvl.level,
                        "reached_ms": list(lvl.reached),
                        "status": status,
                        "closes_at": end / 1000,
                        "version": w,
                    }
                )
            spans.append((j.first, j.stop, not closed))
            if closed:
                p.set_row(j.entered_ms, None)
            else:
                p.set_row(j.entered_ms, summary)
                wake = max(wake, end)
        # keep the open journeys' points, and the points outside every journey that a
        # step-1 event at or after the watermark could still take in
        kept: list[int] = []
        at = 0
        for first, stop, keep in spans:
            kept.extend(q for q in pts[at:first] if q // SHIFT >= w)
            if keep:
                kept.extend(pts[first:stop])
            at = stop
        kept.extend(q for q in pts[at:] if q // SHIFT >= w)
        if not kept:
            del self.persons[key]
            return
        p.points = kept
        if kept[-1] // SHIFT > wake:
            wake = kept[-1] // SHIFT
        if wake != p.wake:
            p.wake = wake
            heapq.heappush(self._due, (wake, key))

    # --- counters -------------------------------------------------------------------------

    def _account(
        self, fi: int, tenant: str, entered: int, summary: Summary | None, sign: int
    ) -> None:
        if summary is None:
            return
        level, reached, status = summary
        funnel = self.funnels[fi]
        n = len(funnel.steps)
        for grain, size in GRAINS:
            start = entered - entered % size
            for who in (tenant, ALL_TENANTS):
                ckey = (fi, who, grain, start)
                c = self.cohorts.get(ckey)
                if c is None:
                    c = self.cohorts[ckey] = Cohort(
                        0, [0] * n, [0] * n, [0] * n, [{} for _ in range(n - 1)]
                    )
                c.entered += sign
                for k in range(level):
                    c.reached[k] += sign
                if level:
                    if status == "pending":
                        c.pending[level - 1] += sign
                    elif status == "dropped":
                        c.dropped[level - 1] += sign
                for k in range(1, level):
                    delay = reached[k] - reached[k - 1]
                    b = self._bucket(delay / 1000)
                    ttc = c.ttc[k - 1]
                    ttc[b] = ttc.get(b, 0) + sign
                    if not ttc[b]:
                        del ttc[b]
                self._cohorts_dirty.add(ckey)
        every = self.config.every_ms
        for stage in self.judged[fi]:
            if stage == n + 1:
                prev, cur, within = reached[0], reached[n - 1], funnel.window_ms
            else:
                prev, cur = reached[stage - 2], reached[stage - 1]
                within = funnel.within_ms(stage)
            if prev == NOT_REACHED:
                continue
            minutes = self.conv.setdefault((fi, tenant, stage), {})
            m = prev - prev % every
            counts = minutes.get(m)
            if counts is None:
                counts = minutes[m] = [0, 0, {}]
            counts[0] += sign
            if cur != NOT_REACHED:
                if stage <= n and funnel.auto_within(stage):
                    # X is observed later: keep the delays (sketch buckets, decrementable)
                    hist = counts[2]
                    b = self._bucket((cur - prev) / 1000)
                    hist[b] = hist.get(b, 0) + sign
                    if not hist[b]:
                        del hist[b]
                elif cur - prev <= within:
                    counts[1] += sign
            if not counts[0]:
                del minutes[m]

    def _bucket(self, seconds: float) -> int:
        if seconds <= 0.001:
            return -32768
        return math.ceil(math.log(seconds) / self._log_gamma)

    def take_cohort_rows(self, version: int) -> list[dict[str, Any]]:
        rows = []
        for ckey in sorted(self._cohorts_dirty, key=repr):
            fi, who, grain, start = ckey
            c = self.cohorts.get(ckey)
            if c is None:
                continue
            sketches = [_sketch(t) for t in c.ttc]
            quantiles = [sk.quantiles((0.5, 0.95), self.gamma) for sk in sketches]
            stored = [sk.arrays() for sk in sketches]
            rows.append(
                {
                    "funnel": self.funnels[fi].name,
                    "grain": grain,
                    "cohort": start / 1000,
                    "tenant_id": who,
                    "entered": c.entered,
                    "reached": list(c.reached),
                    "pending": list(c.pending),
                    "dropped": list(c.dropped),
                    # an empty sketch (nobody converted yet) reads 0
                    "ttc_p50_s": [0.0 if math.isnan(q[0]) else q[0] for q in quantiles],
                    "ttc_p95_s": [0.0 if math.isnan(q[1]) else q[1] for q in quantiles],
                    "ttc_keys": [keys for keys, _ in stored],
                    "ttc_counts": [counts for _, counts in stored],
                    "gamma": self.gamma,
                    "version": version,
                }
            )
        self._cohorts_dirty.clear()
        return rows

    def forget_cohorts(self, before_ms: int) -> None:
        """Drop cohorts no open journey can change any more (their rows are written)."""
        for ckey in [k for k in self.cohorts if k[3] + DAY_MS < before_ms]:
            if ckey not in self._cohorts_dirty:
                del self.cohorts[ckey]

    # --- judging ----------------------------------------------------------------------------

    def _judge(self, w: int) -> list[Judged]:
        """Every mark (a multiple of ``evaluate_every``) the watermark has passed since
        the last tick, each judged over counts that can no longer change (every journey
        that reached the previous step before ``mark - X`` has been written, and nothing
        accepted now can convert it within ``X``). Marks with nothing to judge are
        skipped; a replay judges the same counts at the same marks."""
        every = self.config.every_ms
        period = self.config.period_ms
        if self.first_watermark == NO_TIME:
            return []
        last = w - w % every
        if self.evaluated_ms == NO_TIME:
            first = self.first_watermark - self.first_watermark % every + every
        else:
            first = self.evaluated_ms + every
        if last < first:
            return []
        out: list[Judged] = []
        for (fi, tenant, stage), minutes in self.conv.items():
            if not minutes:
                continue
            funnel = self.funnels[fi]
            if stage <= len(funnel.steps) and funnel.auto_within(stage):
                out.extend(self._judge_auto(fi, tenant, stage, minutes, first, last))
                continue
            within = funnel.window_ms if stage == len(funnel.steps) + 1 else funnel.within_ms(stage)
            keys = sorted(minutes)
            cum_n = [0]
            cum_good = [0]
            for m in keys:
                cum_n.append(cum_n[-1] + minutes[m][0])
                cum_good.append(cum_good[-1] + minutes[m][1])
            # a mark sees minutes in [until - period, until), until = mark - X (whole
            # minutes): only marks whose range holds one of these minutes
            lo = keys[0] + within + every
            lo -= lo % every
            hi = keys[-1] + within + period + 2 * every
            mark = max(first, lo - 2 * every)
            mark -= mark % every
            stop = min(last, hi)
            while mark <= stop:
                since, until = judged_period(mark, within, every, period)
                a = bisect_left(keys, since)
                b = bisect_left(keys, until)
                n = cum_n[b] - cum_n[a]
                if n:
                    good = cum_good[b] - cum_good[a]
                    out.append(Judged(fi, tenant, stage, mark, since, until, within, n, good))
                mark += every
        out.sort(key=lambda j: (j.mark_ms, j.funnel, j.tenant, j.stage))
        self.evaluated_ms = last
        self._trim_conv()
        return out

    def _judge_auto(
        self,
        fi: int,
        tenant: str,
        stage: int,
        minutes: dict[int, list[Any]],
        first: int,
        last: int,
    ) -> list[Judged]:
        """A stage without a configured X: at each mark, X is the p95 time to convert of
        the journeys that reached the previous step in the period one window earlier
        (every one of their windows has closed: the figure is final), rounded up to its
        sketch bucket's upper edge so that "within X" is exact on the same buckets; the
        current period is then judged within that X. Too few conversions in the basis
        (fewer than ``AUTO_MIN``): the mark is not judged."""
        funnel = self.funnels[fi]
        every = self.config.every_ms
        period = self.config.period_ms
        window = funnel.window_ms
        keys = sorted(minutes)
        out: list[Judged] = []
        mark = max(first, keys[0] + every)
        mark -= mark % every
        stop = min(last, keys[-1] + window + period + 2 * every)
        while mark <= stop:
            b_until = mark - window
            b_until -= b_until % every
            basis: dict[int, int] = {}
            for m in keys[bisect_left(keys, b_until - period) : bisect_left(keys, b_until)]:
                for b, c in minutes[m][2].items():
                    basis[b] = basis.get(b, 0) + c
            converted = sum(basis.values())
            if converted >= AUTO_MIN:
                rank = math.ceil(0.95 * converted)
                seen = 0
                edge = 0
                for b in sorted(basis):
                    seen += basis[b]
                    if seen >= rank:
                        edge = b
                        break
                within = min(window, self._edge_ms(edge))
                since, until = judged_period(mark, within, every, period)
                n = good = 0
                for m in keys[bisect_left(keys, since) : bisect_left(keys, until)]:
                    n += minutes[m][0]
                    good += sum(c for b, c in minutes[m][2].items() if b <= edge)
                if n:
                    out.append(
                        Judged(
                            fi,
                            tenant,
                            stage,
                            mark,
                            since,
                            until,
                            within,
                            n,
                            good,
                            (b_until - period, b_until, converted),
                        )
                    )
            mark += every
        return out

    def _edge_ms(self, bucket: int) -> int:
        """The upper edge of a delay bucket, in whole ms: a delay of ``d`` ms falls in a
        bucket <= ``bucket`` exactly when ``d <= _edge_ms(bucket)``."""
        if bucket == -32768:
            return 1
        return math.floor(self.gamma**bucket * 1000)

    def _trim_conv(self) -> None:
        """Forget the minutes no later mark can see."""
        for key in list(self.conv):
            fi, _, stage = key
            funnel = self.funnels[fi]
            within = (
                funnel.window_ms
                if stage == len(funnel.steps) + 1 or funnel.auto_within(stage)
                else funnel.within_ms(stage)
            )
            floor = self.evaluated_ms - within - self.config.period_ms - 2 * self.config.every_ms
            minutes = self.conv[key]
            for m in [m for m in minutes if m < floor]:
                del minutes[m]
            if not minutes:
                del self.conv[key]

    # --- recovery ---------------------------------------------------------------------------

    def open_floor(self) -> int:
        """The earliest event time the open state depends on (for the restart's reload)."""
        floor = self.watermark
        for p in self.persons.values():
            if p.points:
                floor = min(floor, p.points[0] // SHIFT)
        return floor

    def load_summary(self, fi: int, tenant: str, entered: int, summary: Summary) -> None:
        """A stored journey row (after a restart): counted in the cohorts and conversions
        as the engine had counted it."""
        self._account(fi, tenant, entered, summary, +1)
        self._cohorts_dirty.clear()

    def open_journeys(self) -> int:
        """Journeys written and still open (kept as a count: the gauge reads it per tick)."""
        return self.open_count


def judged_period(mark_ms: int, within_ms: int, every_ms: int, period_ms: int) -> tuple[int, int]:
    """[since, until) of the previous-step times a stage is judged over at ``mark_ms``:
    the period ending ``within_ms`` before the mark, in whole marks."""
    until = mark_ms - within_ms
    until -= until % every_ms
    return until - period_ms, until


def _sketch(bins: dict[int, int]) -> Sketch:
    """A read-only view of a cohort's time-to-convert buckets as the shared sketch (the
    engine keeps plain dicts: a journey's contribution is taken back when it moves)."""
    sketch = Sketch()
    sketch.bins = bins
    sketch.count = sum(bins.values())
    return sketch
