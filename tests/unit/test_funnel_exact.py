"""The funnel engine equals ClickHouse's own ``windowFunnel`` (the pinned chDB engine).

Hypothesis generates journeys with repeats, skipped steps, steps out of order, equal
timestamps, property conditions that fail, arrivals out of order and late events, and
windows straddling hours; the engine is fed them in arrival order with ticks in between.
Every journey's final level must equal ``windowFunnel`` over the stored (non-late) events
of its span, for ``ordered`` (plain) and ``strict`` (``'strict_order'``) funnels; for
ordered funnels the person's level (all their events) must equal the largest of their
journeys' levels. The cohort counters must equal the same sums taken over the rows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.detectors.funnel.engine import ALL_TENANTS, FunnelPartition
from streams.detectors.funnel.journey import Person, journeys, point, scan
from streams.detectors.funnel.rules import FunnelConfig
from streams.detectors.latency.sketch import gamma_for

HOUR = 3_600_000
BASE = 1_700_000_000_000 - 1_700_000_000_000 % HOUR + HOUR - 40  # straddles an hour


def config(order: str, window_ms: int, grace_ms: int) -> FunnelConfig:
    return FunnelConfig.model_validate(
        {
            "grace_seconds": 0,
            "definitions": [
                {
                    "name": "f",
                    "window": window_ms / 1000,
                    "order": order,
                    "steps": [
                        {"event": "A"},
                        {"event": "B", "where": {"plan": "pro"}, "alert_below": 0.5},
                        {"event": "C", "alert_below": 0.5},
                        {"event": "D", "alert_below": 0.5},
                    ],
                }
            ],
        }
    ).model_copy(update={"grace_seconds": 0})


def reference(client: Any, sql: str) -> list[list[Any]]:
    """Rows of ``sql`` on the session's chDB engine (one engine per process)."""
    return [list(r) for r in client.query(sql).result_rows]


def values(events: list[tuple[int, int, str, str]]) -> str:
    rows = ", ".join(
        f"('p{p}', {BASE + t}, '{name}', '{orjson.dumps({'plan': plan}).decode()}')"
        for p, t, name, plan in events
    )
    return f"values('person String, t UInt64, event_name String, properties String', {rows})"


events_st = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.integers(0, 90),
        st.sampled_from(["A", "A", "B", "C", "D"]),
        st.sampled_from(["pro", "pro", "free"]),
    ),
    min_size=4,
    max_size=40,
)


@pytest.mark.parametrize("order", ["ordered", "strict"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=events_st,
    window=st.integers(1, 40),
    grace=st.integers(0, 30),
    arrival=st.randoms(use_true_random=False),
    ticks=st.lists(st.integers(0, 40), max_size=4),
)
def test_levels_equal_windowfunnel(
    ch_client: Any,
    order: str,
    events: list[tuple[int, int, str, str]],
    window: int,
    grace: int,
    arrival: Any,
    ticks: list[int],
) -> None:
    cfg = config(order, window, grace)
    engine = FunnelPartition(cfg, gamma_for(0.01))
    engine.grace_ms = grace
    # arrivals out of order: each event delayed by up to ``jitter``; those delayed more
    # than the grace behind a newer one are late
    jitter = arrival.randint(0, 40)
    delays = [arrival.randint(0, jitter) for _ in events]
    order_of = sorted(range(len(events)), key=lambda i: events[i][1] + delays[i])
    accepted: list[tuple[int, int, str, str]] = []
    rows: list[dict[str, Any]] = []
    for n, i in enumerate(order_of):
        p, t, name, plan = events[i]
        if engine.feed("acme", f"p{p}", name, {"plan": plan}, BASE + t):
            accepted.append(events[i])
        engine.observe(BASE + t)
        if n in ticks:
            engine.advance()
            rows.extend(engine.rows)
            engine.rows.clear()
            assert engine.open_journeys() == sum(p.open_rows() for p in engine.persons.values())
    engine.observe(BASE + 10_000)  # every window closes
    engine.advance()
    rows.extend(engine.rows)
    late = len(events) - len(accepted)
    assert late == len(engine.late)
    assert not engine.persons  # nothing kept once every window closed
    assert engine.open_journeys() == 0

    final: dict[tuple[str, float], dict[str, Any]] = {}
    for r in rows:
        final[(r["user_id_hash"], r["entered_at"])] = r
    assert all(r["status"] != "pending" for r in final.values())
    funnel = cfg.definitions[0]
    level_sql = funnel.level_sql("t").replace("toUnixTimestamp64Milli(t)", "t")
    if not accepted:
        assert not final
        return
    src = values(accepted)
    # the journeys the engine reported are the ones the stored events define
    spans = {
        (f"p{p}", j.entered_ms, j.end_ms)
        for p in range(4)
        for j in journeys(
            sorted(point(BASE + t, 1) for q, t, name, _ in accepted if q == p and name == "A"),
            window,
        )
    }
    assert {(k[0], round(k[1] * 1000)) for k in final} == {(s[0], s[1]) for s in spans}
    if not spans:
        return
    ranges = ", ".join(f"('{p}', {lo}, {hi})" for p, lo, hi in spans)
    got = reference(
        ch_client,
        f"SELECT r.1 AS person, r.2 AS lo, {level_sql} AS level "
        f"FROM {src} AS e, (SELECT arrayJoin([{ranges}]) AS r) AS j "
        "WHERE e.person = r.1 AND e.t >= r.2 AND e.t <= r.3 "
        "AND event_name IN ('A', 'B', 'C', 'D') GROUP BY person, lo",
    )
    expected = {(p, lo): level for p, lo, level in got}
    mine = {(k[0], round(k[1] * 1000)): r["level"] for k, r in final.items()}
    assert mine == expected
    if order == "ordered":
        per_person = reference(
            ch_client,
            f"SELECT person, {level_sql} FROM {src} "
            "WHERE event_name IN ('A', 'B', 'C', 'D') GROUP BY person",
        )
        best: dict[str, int] = defaultdict(int)
        for (p, _), level in mine.items():
            best[p] = max(best[p], level)
        assert {p: lv for p, lv in per_person if lv} == {p: lv for p, lv in best.items() if lv}
    # cohort counters = the sums over the journeys' final rows
    hours: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for r in final.values():
        h = round(r["entered_at"] * 1000) // HOUR * HOUR
        hours[h][0] += 1
        for k in range(r["level"]):
            hours[h][1 + k] += 1
    for h, counts in hours.items():
        c = engine.cohorts[(0, ALL_TENANTS, "hour", h)]
        assert [c.entered, *c.reached] == counts


def test_examples_from_the_readme() -> None:
    """The worked examples of the README's "Funnels" section."""
    w = 10

    def level(events: list[tuple[int, int]], strict: bool = False) -> int:
        pts = sorted(point(t, s) for t, s in events)
        return scan(pts, 3, w, strict).level

    assert level([(0, 1), (5, 2), (10, 3)]) == 3  # the window includes its end
    assert level([(0, 1), (5, 2), (11, 3)]) == 2  # one ms too late
    assert level([(0, 1), (5, 2), (8, 1), (14, 2), (17, 3)]) == 3  # the later chain wins
    assert level([(1, 3), (1, 2), (1, 1)]) == 3  # equal timestamps count in step order
    assert level([(0, 1), (2, 3), (3, 2), (4, 3)]) == 3  # a skip-ahead is ignored...
    assert level([(0, 1), (2, 3), (3, 2), (4, 3)], strict=True) == 1  # ...unless strict
    assert level([(0, 1), (1, 0), (2, 2)], strict=True) == 1  # another funnel event stops it
    person = Person()
    assert person.add(point(5, 1)) and not person.add(point(5, 1))  # a re-read is a no-op
