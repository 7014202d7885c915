"""Stage isolation: halving finds exactly the events a stage cannot take."""

from __future__ import annotations

from schemas.fastpath import FAST_STRUCTS
from streams.ingest import IngestResult
from streams.pipeline import isolate

AUTH = FAST_STRUCTS["security.auth_success"]


def result(n: int) -> IngestResult:
    events = [AUTH(ts=0, tenant_id="t", service="s", event_id=f"e{i}") for i in range(n)]
    return IngestResult("t", events, [0] * n, [0] * n, list(range(n)), [0] * n)  # type: ignore[arg-type]


def test_halving_isolates_exactly_the_failing_events_and_keeps_order() -> None:
    calls: list[int] = []

    def stage(part: IngestResult) -> list[int]:
        calls.append(len(part.events))
        if {3, 11} & set(part.offsets):
            raise ValueError("bad event")
        return list(part.offsets)

    parts, failed = isolate(result(16), stage)
    assert sorted(failed) == [3, 11] and all(isinstance(e, ValueError) for e in failed.values())
    kept = [o for _, _, out in parts for o in out]
    assert kept == [i for i in range(16) if i not in (3, 11)]
    for positions, part, out in parts:
        assert list(positions) == part.offsets == out
    assert len(calls) <= 2 * 2 * 4 + 1  # about 2 log2(n) calls per failing event


def test_one_call_when_nothing_fails() -> None:
    whole = result(5)
    parts, failed = isolate(whole, lambda part: len(part.events))
    assert failed == {} and len(parts) == 1 and parts[0][1] is whole and parts[0][2] == 5
