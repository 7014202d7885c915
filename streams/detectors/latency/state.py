"""What the latency detector keeps per key and per partition: window statistics (count,
status classes, max, sketch), open samples and a partition's window state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from streams.detectors.latency.sketch import Sketch
from streams.detectors.latency.slo import BudgetTracker, Key, SloEvaluator
from streams.detectors.latency.windows import NO_WATERMARK, Watermark

QUANTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass(slots=True)
class Stats:
    """Count, status classes, max and latency sketch of one window and key."""

    count: int = 0
    c2xx: int = 0
    c3xx: int = 0
    c4xx: int = 0
    c5xx: int = 0
    max_ms: float = 0.0
    sketch: Sketch = field(default_factory=Sketch)

    def add(self, status: int, duration_ms: float, bucket: int) -> None:
        self.count += 1
        cls = status // 100
        if cls == 2:
            self.c2xx += 1
        elif cls == 5:
            self.c5xx += 1
        elif cls == 4:
            self.c4xx += 1
        elif cls == 3:
            self.c3xx += 1
        if duration_ms > self.max_ms:
            self.max_ms = duration_ms
        self.sketch.add_key(bucket)

    def merge(self, other: Stats) -> None:
        self.count += other.count
        self.c2xx += other.c2xx
        self.c3xx += other.c3xx
        self.c4xx += other.c4xx
        self.c5xx += other.c5xx
        self.max_ms = max(self.max_ms, other.max_ms)
        self.sketch.merge(other.sketch)

    def slis(self, gamma: float, seconds: float) -> dict[str, float]:
        p50, p90, p95, p99 = self.sketch.quantiles(QUANTILES, gamma)
        n = self.count
        return {
            "p50_ms": p50,
            "p90_ms": p90,
            "p95_ms": p95,
            "p99_ms": p99,
            "max_ms": self.max_ms if n else math.nan,
            "error_rate": self.c5xx / n if n else math.nan,
            "client_error_rate": self.c4xx / n if n else math.nan,
            "throughput_rps": n / seconds,
        }


@dataclass(slots=True)
class OpenSample:
    panes: dict[Key, dict[int, Stats]] = field(default_factory=dict)
    min_offset: int = 2**62


@dataclass(slots=True)
class PartitionState:
    topic: str
    partition: int
    wm: Watermark
    evaluator: SloEvaluator
    budget: BudgetTracker
    next_offset: int = -1  # first offset of the next batch, if contiguous
    processed: int = -1  # last offset fed (P)
    replay_until: int = -1  # offsets <= this were processed before the restore
    replay_wm: int = NO_WATERMARK  # samples ending <= this were closed before it
    closed_through: int | None = None  # end of the last closed sample
    samples: dict[int, OpenSample] = field(default_factory=dict)
    late: dict[tuple[int, Key], Stats] = field(default_factory=dict)
    late_offsets: list[int] = field(default_factory=list)  # [first, last] of late events
    rollups: dict[int, dict[int, dict[Key, Stats]]] = field(default_factory=dict)
    declared: set[Key] = field(default_factory=set)
    durable_safe: int = -1  # first offset still needed, per the last durable checkpoint
    last_input_wall_ms: int = 0
    last_checkpoint: tuple[int, int] = (-2, NO_WATERMARK)

    @property
    def replaying(self) -> bool:
        return self.next_offset <= self.replay_until
