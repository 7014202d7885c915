"""Event-time windows of our own: pure functions over integer epoch milliseconds.

* A window of size ``s`` is ``[start, start + s)`` with ``start = ts - ts % s``; panes
  (default 10 s) tile samples (30 s), which tile rollups (1 min, 5 min).
* The watermark of a partition is the largest event time seen minus the allowed
  lateness (grace). It moves with every event, in partition order, so whether an event
  is late is a function of the partition's contents -- a replay decides the same way.
* A window is complete once the watermark reaches its end; it is *closed* (rows written)
  by a timer, not by the next event, so a quiet key still gets its rows.
* A partition that has been idle for ``idle_timeout`` lets its watermark follow the wall
  clock (minus grace), so the last windows close when the traffic stops.
* An event whose sample the watermark has already passed is late: it is counted, and
  written flagged ``late``; it never changes a sample that may already be stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import numpy.typing as npt

NO_WATERMARK = -(2**62)
Millis = npt.NDArray[np.int64]


@overload
def window_start(ts_ms: int, size_ms: int) -> int: ...
@overload
def window_start(ts_ms: Millis, size_ms: int) -> Millis: ...
def window_start(ts_ms: Any, size_ms: int) -> Any:
    """Start of the window of ``ts_ms`` (an int, or a numpy array of them)."""
    return ts_ms - ts_ms % size_ms


@overload
def window_end(ts_ms: int, size_ms: int) -> int: ...
@overload
def window_end(ts_ms: Millis, size_ms: int) -> Millis: ...
def window_end(ts_ms: Any, size_ms: int) -> Any:
    return window_start(ts_ms, size_ms) + size_ms


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Sizes in ms: panes tile samples, samples tile every rollup."""

    pane_ms: int = 10_000
    sample_ms: int = 30_000
    rollups_ms: tuple[int, ...] = (60_000, 300_000)
    grace_ms: int = 10_000
    idle_timeout_ms: int = 30_000

    def __post_init__(self) -> None:
        if self.sample_ms % self.pane_ms:
            raise ValueError(f"sample ({self.sample_ms} ms) must be a multiple of the pane")
        for size in self.rollups_ms:
            if size % self.sample_ms:
                raise ValueError(f"rollup ({size} ms) must be a multiple of the sample")
        if self.grace_ms < 0 or self.idle_timeout_ms <= 0:
            raise ValueError("grace must be >= 0 and the idle timeout > 0")


@dataclass(slots=True)
class Watermark:
    """One partition's event-time progress."""

    grace_ms: int
    max_ts_ms: int = NO_WATERMARK
    value_ms: int = NO_WATERMARK  # max(max_ts - grace, idle advances)

    def observe(self, ts_ms: int) -> None:
        if ts_ms > self.max_ts_ms:
            self.max_ts_ms = ts_ms
            if ts_ms - self.grace_ms > self.value_ms:
                self.value_ms = ts_ms - self.grace_ms

    def advance_idle(self, wall_ms: int) -> bool:
        """Let the watermark follow the wall clock (the partition is idle); True if moved."""
        target = wall_ms - self.grace_ms
        if target > self.value_ms:
            self.value_ms = target
            return True
        return False


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_seconds(value: float | str) -> float:
    """``90`` / ``"90s"`` / ``"5m"`` / ``"1h"`` / ``"30d"`` → seconds."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30s, 5m, 1h")
    return float(match.group(1)) * _UNIT_S[match.group(2)]
