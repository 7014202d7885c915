"""Exact sliding windows checked against a brute-force reference on the same events."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

import pytest

from streams.detectors.security.window import Change, Op, SlidingCount, SlidingSequence, holds

MIN = 60_000


@dataclass(frozen=True)
class Ev:
    group: tuple[str, ...]
    ts: int
    id: str
    value: str = ""


def on_time(events: list[Ev], grace: int) -> list[Ev]:
    """The events not late on arrival (older than the newest event time minus grace)."""
    newest: int | None = None
    kept: list[Ev] = []
    for e in events:
        if newest is None or e.ts >= newest - grace:
            kept.append(e)
            newest = e.ts if newest is None else max(newest, e.ts)
    return kept


def reference(
    events: list[Ev], span: int, op: Op, threshold: int, quiet: int, grace: int, distinct: bool
) -> set[tuple[tuple[str, ...], int, int, int, int]]:
    """Episodes (group, first event, first hold, last hold, peak) by brute force: late
    events (older than the newest event time minus grace when they arrive) are left out;
    every distinct instant of a group ends a window; holding windows within ``quiet`` of
    each other form one episode."""
    kept = on_time(events, grace)
    out: set[tuple[tuple[str, ...], int, int, int, int]] = set()
    for group in {e.group for e in kept}:
        mine = sorted((e for e in kept if e.group == group), key=lambda e: e.ts)
        holds_at: list[tuple[int, int, int]] = []
        for t in sorted({e.ts for e in mine}):
            inside = [e for e in mine if t - span < e.ts <= t]
            count = len({e.value for e in inside}) if distinct else len(inside)
            if holds(op, count, threshold):
                holds_at.append((t, min(e.ts for e in inside), count))
        episode: list[tuple[int, int, int]] = []
        for hold in [*holds_at, (2**62, 0, 0)]:
            if episode and hold[0] - episode[-1][0] > quiet:
                out.add(
                    (
                        group,
                        min(h[1] for h in episode),
                        episode[0][0],
                        episode[-1][0],
                        max(h[2] for h in episode),
                    )
                )
                episode = []
            episode.append(hold)
    return out


def run(
    events: list[Ev], span: int, op: Op, threshold: int, quiet: int, grace: int, distinct: bool
) -> tuple[set[tuple[tuple[str, ...], int, int, int, int]], list[Change], int]:
    counter = SlidingCount(span, op, threshold, quiet, grace, distinct)
    changes: list[Change] = []
    for k, e in enumerate(events):
        _, c = counter.add(e.group, e.ts, e.id, e.value)
        changes.extend(c)
        if k % 7 == 0:  # the worker's timer, at arbitrary points
            changes.extend(counter.advance())
    changes.extend(counter.flush())
    episodes = {
        (c.episode.group, c.episode.first_event_ms, c.episode.first_hold_ms,
         c.episode.last_hold_ms, c.episode.peak)
        for c in changes
        if c.action == "resolve"
    }  # fmt: skip
    return episodes, changes, counter.late


def traffic(rng: random.Random, groups: int, n: int, grace: int) -> list[Ev]:
    """Bursts and trickles over a few minutes, some straddling minute boundaries, with
    events out of order (some within the grace, some beyond it: late)."""
    events: list[Ev] = []
    t = 10 * MIN
    for i in range(n):
        if rng.random() < 0.05:
            t += rng.randrange(0, 3 * MIN)  # a gap: episodes end
        t += rng.choice([0, 5, 100, 900, 2_000, 7_000])
        ts = t
        r = rng.random()
        if r < 0.15:
            ts = t - rng.randrange(0, grace + 1)  # out of order, in time
        elif r < 0.2:
            ts = t - rng.randrange(grace, 4 * grace + 2)  # most of these are late
        group = (f"g{rng.randrange(groups)}",)
        events.append(Ev(group, ts, f"e{i}", f"u{rng.randrange(12)}"))
    return events


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte", "eq", "neq"])
@pytest.mark.parametrize("distinct", [False, True])
def test_episodes_equal_the_brute_force_reference(op: Op, distinct: bool) -> None:
    rng = random.Random(f"{op}{distinct}")
    total_events = total_episodes = total_late = 0
    for _ in range(40):
        grace = rng.choice([0, 1_000, 10_000])
        quiet = grace + rng.choice([0, 30_000, MIN])
        span = rng.choice([MIN, 5 * MIN, 10_000])
        threshold = rng.choice([2, 3, 5, 8])
        events = traffic(rng, rng.choice([1, 3, 20]), rng.randrange(20, 300), grace)
        got, changes, late = run(events, span, op, threshold, quiet, grace, distinct)
        want = reference(events, span, op, threshold, quiet, grace, distinct)
        assert got == want, (op, distinct, span, threshold, quiet, grace)
        fires = [c for c in changes if c.action == "fire"]
        assert len(fires) == len(want)  # one fire and one resolve per episode
        for c in changes:
            if c.action == "resolve":
                assert c.at_ms == c.episode.last_hold_ms + quiet
        total_events += len(events)
        total_episodes += len(want)
        total_late += late
    assert total_episodes > 20 and total_late > 0  # the generator exercises both


def test_a_burst_straddling_a_minute_boundary_is_seen_whole() -> None:
    """51 failed logins between 12:00:30 and 12:01:29: no clock-aligned minute holds
    more than 30, the sliding window holds all 51 and fires on the 51st event."""
    counter = SlidingCount(MIN, "gt", 50, quiet_ms=5 * MIN, grace_ms=10_000)
    base = 12 * 60 * MIN
    fired: list[Change] = []
    for i in range(51):
        _, changes = counter.add(("203.0.113.0/24",), base + 30_000 + i * 1_180, f"e{i}")
        fired.extend(changes)
    assert [(c.action, c.at_ms, c.episode.peak) for c in fired] == [
        ("fire", base + 30_000 + 50 * 1_180, 51)
    ]
    assert len(fired[0].episode.sample_ids) == 10


def merged(order: list[tuple[str, Ev]], quiet: int) -> list[tuple[Any, ...]]:
    """Feed events of two sources in ``order`` with the groups stage's aligned watermark
    (the slower source's newest time); every transition as it was at that moment."""
    counter = SlidingCount(MIN, "gt", 50, quiet_ms=quiet, grace_ms=0)
    newest = {"a": -(2**62), "b": -(2**62)}
    seen: list[tuple[Any, ...]] = []

    def note(changes: list[Change]) -> None:
        for c in changes:
            e = c.episode
            snapshot: tuple[Any, ...] = (e.first_event_ms, e.first_hold_ms, e.sample_ids)
            if c.action == "resolve":  # (an open episode's end and peak are still moving)
                snapshot += (e.last_hold_ms, e.peak)
            seen.append((c.action, c.alert, c.at_ms if c.action != "fire" else None, snapshot))

    for source, ev in order:
        newest[source] = max(newest[source], ev.ts)
        note(counter.add(ev.group, ev.ts, ev.id, watermark=min(newest.values()))[1])
    note(counter.flush())
    return [s if s[0] != "fire" else s[:3] for s in seen]  # what fired: not its snapshot


@pytest.mark.parametrize("gap_s", [0, 400])
def test_out_of_order_sources_give_the_rows_of_the_ordered_input(gap_s: int) -> None:
    """The groups stage merges partitions: one partition's half of a burst may arrive
    whole before the other's (the aligned watermark keeps neither late). The alert fires
    with the first holding window *seen*, but the episode's firing row (``open``) waits
    until the watermark has passed its start, so rows are the same in any arrival order;
    two episodes found in reverse order stay two, and the alert resolves with the last."""
    quiet = 5 * MIN
    burst = [Ev(("ip",), k * 500, f"e{k:03}", "") for k in range(161)]  # 2/s for 80 s
    later = [Ev(("ip",), gap_s * 1000 + k * 500, f"f{k:03}", "") for k in range(161)]
    events = burst + (later if gap_s else [])
    ordered = [("ab"[k % 2], ev) for k, ev in enumerate(events)]
    # source a (even) holds alone at 50 s; both together already at 25 s
    a_first = [x for x in ordered if x[0] == "a"] + [x for x in ordered if x[0] == "b"]
    # the first burst all from b, the second all from a, and a's partition read first
    b_late = [("a", ev) for ev in events if ev.id[0] == "f"] + [
        ("b", ev) for ev in events if ev.id[0] == "e"
    ]
    want = merged(ordered, quiet)
    opened = [s for s in want if s[0] == "open"]
    assert [s[3][1] for s in opened] == ([25_000] if not gap_s else [25_000, gap_s * 1000 + 25_000])

    def rows(seen: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return sorted((s[0], s[2], s[3]) for s in seen if s[0] != "fire")

    for order in (a_first, b_late):
        got = merged(order, quiet)
        assert rows(got) == rows(want)
        fires = [s for s in got if s[0] == "fire"]
        resolves = [s for s in got if s[0] == "resolve"]
        # at most one page per episode, and the alert stays up until the last one ends
        assert 1 <= len(fires) <= len(opened) and resolves[-1][1] is True
        assert 1 <= sum(1 for s in resolves if s[1]) <= len(fires)
    in_order = [s[0] for s in want if s[0] != "open"]
    assert in_order == ["fire", "resolve"] * len(opened)


def test_counts_exactly_at_the_threshold() -> None:
    gt = SlidingCount(MIN, "gt", 5, quiet_ms=MIN, grace_ms=0)
    gte = SlidingCount(MIN, "gte", 5, quiet_ms=MIN, grace_ms=0)
    out_gt: list[Change] = []
    out_gte: list[Change] = []
    for i in range(5):
        out_gt.extend(gt.add(("p",), i * 1000, f"e{i}")[1])
        out_gte.extend(gte.add(("p",), i * 1000, f"e{i}")[1])
    assert out_gt == [] and [c.action for c in out_gte] == ["fire"]
    # the window is (t - 60 s, t]: an event exactly 60 s later no longer sees the first
    assert gt.add(("p",), 60_000, "e5")[1] == []


def test_idle_groups_are_forgotten() -> None:
    counter = SlidingCount(MIN, "gt", 50, quiet_ms=MIN, grace_ms=1_000)
    for i in range(1_000):
        counter.add((f"ip{i}",), i, f"e{i}")
    assert counter.memory_groups() == 1_000
    counter.add(("other",), 10 * MIN, "x")
    counter.advance()
    assert counter.memory_groups() == 1


def chain_start(inside: list[Ev], steps: int, ordered: bool) -> int | None:
    """The earliest first-step time over every choice of one occurrence per step (in step
    order when ordered), by enumeration; None when no choice exists."""
    per_step = [[e.ts for e in inside if e.value == str(k)] for k in range(steps)]
    best: int | None = None
    for choice in itertools.product(*per_step):
        if ordered and any(a > b for a, b in itertools.pairwise(choice)):
            continue
        start = choice[0] if ordered else min(choice)
        best = start if best is None else min(best, start)
    return best


def reference_sequence(
    events: list[Ev], span: int, steps: int, ordered: bool, quiet: int, grace: int
) -> set[tuple[tuple[str, ...], int, int, int, int]]:
    kept = on_time(events, grace)
    out: set[tuple[tuple[str, ...], int, int, int, int]] = set()
    for group in {e.group for e in kept}:
        mine = [e for e in kept if e.group == group]
        holds_at: list[tuple[int, int]] = []
        for t in sorted({e.ts for e in mine}):
            start = chain_start([e for e in mine if t - span < e.ts <= t], steps, ordered)
            if start is not None:
                holds_at.append((t, start))
        episode: list[tuple[int, int]] = []
        for hold in [*holds_at, (2**62, 0)]:
            if episode and hold[0] - episode[-1][0] > quiet:
                first = min(h[1] for h in episode)
                out.add((group, first, episode[0][0], episode[-1][0], steps))
                episode = []
            episode.append(hold)
    return out


@pytest.mark.parametrize("ordered", [True, False])
def test_temporal_episodes_equal_the_brute_force_reference(ordered: bool) -> None:
    rng = random.Random(f"temporal{ordered}")
    total_episodes = 0
    for _ in range(60):
        grace = rng.choice([0, 1_000, 10_000])
        quiet = grace + rng.choice([0, 30_000, MIN])
        span = rng.choice([MIN, 10 * MIN, 10_000])
        steps = rng.choice([2, 3])
        events = [
            Ev(e.group, e.ts, e.id, str(rng.randrange(steps)))
            for e in traffic(rng, rng.choice([1, 3, 20]), rng.randrange(10, 120), grace)
        ]
        counter = SlidingSequence(span, steps, ordered, quiet, grace)
        changes: list[Change] = []
        for k, e in enumerate(events):
            changes.extend(counter.add(e.group, e.ts, e.id, e.value)[1])
            if k % 5 == 0:
                changes.extend(counter.advance())
        changes.extend(counter.flush())
        got = {
            (c.episode.group, c.episode.first_event_ms, c.episode.first_hold_ms,
             c.episode.last_hold_ms, c.episode.peak)
            for c in changes if c.action == "resolve"
        }  # fmt: skip
        want = reference_sequence(events, span, steps, ordered, quiet, grace)
        assert got == want, (ordered, span, steps, quiet, grace)
        total_episodes += len(want)
    assert total_episodes > 20


def test_an_ordered_sequence_needs_its_steps_in_order() -> None:
    """A success before the burst is not a takeover; one after it (within the span) is."""
    seq = SlidingSequence(10 * MIN, 2, True, quiet_ms=MIN, grace_ms=0)
    assert seq.add(("ip",), 1_000, "ok-before", "1")[1] == []
    assert seq.add(("ip",), 2_000, "burst", "0")[1] == []
    fired = seq.add(("ip",), 9 * MIN, "ok-after", "1")[1]
    assert [(c.action, c.episode.first_event_ms) for c in fired] == [("fire", 2_000)]
    late_success = SlidingSequence(10 * MIN, 2, True, quiet_ms=MIN, grace_ms=0)
    late_success.add(("ip",), 0, "burst", "0")
    assert late_success.add(("ip",), 10 * MIN, "too-late", "1")[1] == []  # (t - 10 min, t]
