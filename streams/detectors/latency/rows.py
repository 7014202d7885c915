"""Rows of one tick for ``latency_windows``, ``slo_samples`` and ``window_checkpoints``:
the stored form of what the detector closed."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

import orjson

from streams.detectors.latency.slo import Key, Verdict
from streams.detectors.latency.state import PartitionState, Stats


class Rows:
    """Rows of one tick for latency_windows, slo_samples and window_checkpoints."""

    def __init__(self, gamma: float, partition: int) -> None:
        self.gamma = gamma
        self.partition = partition
        self.windows: list[tuple[Any, ...]] = []
        self.slo: list[Verdict] = []
        self.ckpt: list[tuple[Any, ...]] = []
        self.closed: dict[int, int] = {}
        self.verdict_counts: dict[str, int] = {}

    def window(self, size_ms: int, start: int, key: Key, stats: Stats, late: str = "") -> None:
        tenant, service, route, cohort = key
        resolution = size_ms // 1000
        ident = f"{resolution}|{start}|{tenant}|{service}|{route}|{self.partition}|{late}"
        if cohort:  # ids of keys without a cohort stay what they were
            ident += f"|{cohort}"
        window_id = hashlib.sha256(ident.encode()).hexdigest()[:32]
        slis = stats.slis(self.gamma, size_ms / 1000)
        keys, counts = stats.sketch.arrays()
        self.windows.append(
            (
                tenant,
                service,
                route,
                cohort,
                resolution,
                start / 1000,
                (start + size_ms) / 1000,
                1 if late else 0,
                window_id,
                self.partition,
                stats.count,
                stats.c2xx,
                stats.c3xx,
                stats.c4xx,
                stats.c5xx,
                _num(slis["error_rate"]),
                _num(slis["client_error_rate"]),
                slis["throughput_rps"],
                _num(slis["p50_ms"]),
                _num(slis["p90_ms"]),
                _num(slis["p95_ms"]),
                _num(slis["p99_ms"]),
                stats.max_ms,
                self.gamma,
                keys,
                counts,
            )
        )
        self.closed[resolution] = self.closed.get(resolution, 0) + 1

    def verdicts(self, verdicts: Iterable[Verdict]) -> None:
        for v in verdicts:
            self.slo.append(v)
            self.verdict_counts[v.status] = self.verdict_counts.get(v.status, 0) + 1

    def checkpoint(
        self, group: str, part: PartitionState, safe: int, state: dict[str, Any]
    ) -> None:
        self.ckpt.append(
            (
                group,
                part.topic,
                part.partition,
                part.processed,
                safe,
                part.wm.value_ms,
                part.wm.max_ts_ms,
                part.closed_through if part.closed_through is not None else -1,
                orjson.dumps(state).decode(),
            )
        )

    def tables(self) -> dict[str, dict[str, list[Any]]]:
        out: dict[str, dict[str, list[Any]]] = {}
        if self.windows:
            out["latency_windows"] = dict(
                zip(WINDOW_COLUMNS, map(list, zip(*self.windows, strict=True)), strict=True)
            )
        if self.slo:
            out["slo_samples"] = {
                "tenant_id": [v.key[0] for v in self.slo],
                "service": [v.key[1] for v in self.slo],
                "route": [v.key[2] for v in self.slo],
                "cohort": [v.key[3] for v in self.slo],
                "window_start": [v.start_ms / 1000 for v in self.slo],
                "window_end": [v.end_ms / 1000 for v in self.slo],
                "rule": [v.rule for v in self.slo],
                "sli": [v.sli for v in self.slo],
                "op": [v.op for v in self.slo],
                "value": [_num(v.value) for v in self.slo],
                "threshold": [v.threshold for v in self.slo],
                "status": [v.status for v in self.slo],
                "count": [v.count for v in self.slo],
                "hits": [v.hits for v in self.slo],
                "lower_bound": [_num(v.lower_bound) for v in self.slo],
                "src_partition": [self.partition] * len(self.slo),
            }
        if self.ckpt:
            out["window_checkpoints"] = dict(
                zip(CHECKPOINT_COLUMNS, map(list, zip(*self.ckpt, strict=True)), strict=True)
            )
        return out


WINDOW_COLUMNS = (
    "tenant_id",
    "service",
    "route",
    "cohort",
    "resolution_s",
    "window_start",
    "window_end",
    "late",
    "window_id",
    "src_partition",
    "count",
    "c2xx",
    "c3xx",
    "c4xx",
    "c5xx",
    "error_rate",
    "client_error_rate",
    "throughput_rps",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "gamma",
    "bucket_keys",
    "bucket_counts",
)
CHECKPOINT_COLUMNS = (
    "consumer_group",
    "topic",
    "partition",
    "processed_offset",
    "safe_offset",
    "watermark_ms",
    "max_ts_ms",
    "closed_through_ms",
    "state",
)


def _num(value: float) -> float:
    """NaN (no data) is stored as 0; ``count`` tells the two apart."""
    return 0.0 if math.isnan(value) else value
