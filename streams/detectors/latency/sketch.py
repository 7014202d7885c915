"""A relative-error, mergeable quantile sketch (logarithmic buckets, DDSketch-style).

A positive value ``x`` falls in bucket ``i = ceil(log(x) / log(gamma))`` with
``gamma = (1 + a) / (1 - a)``: bucket ``i`` covers ``(gamma**(i-1), gamma**i]`` and is
represented by ``2 * gamma**i / (gamma + 1)``, which is within ``a`` (relative) of every
value in it. Quantiles therefore come back within ``a`` of the exact order statistic
(``numpy.percentile(..., method="inverted_cdf")``: the value of rank ``ceil(q * n)``).

* Mergeable: bucket counts add up, so panes merge into samples, samples into rollups,
  partitions and workers into one, and stored buckets into any time range
  (the ``vigilQuantile`` SQL function of ``sinks/ddl/005_latency.sql`` does it in
  ClickHouse).
* Bounded: with a = 1 % one bucket spans 2 %, so 1 ms .. 1 day needs at most ~900
  buckets and a real latency distribution uses ~100.
* Values at or below :data:`MIN_VALUE` (durations of 0) are counted in the zero bucket
  :data:`ZERO_KEY`, reported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

#: Bucket key of values <= MIN_VALUE; sorts before every other key (Int16 minimum).
ZERO_KEY = -32768
MIN_VALUE = 1e-6


def gamma_for(relative_accuracy: float) -> float:
    if not 0 < relative_accuracy < 1:
        raise ValueError("relative accuracy must be in (0, 1)")
    return (1 + relative_accuracy) / (1 - relative_accuracy)


def bucket_indices(values: npt.ArrayLike, gamma: float) -> npt.NDArray[np.int64]:
    """Bucket key of each value, vectorised (one numpy pass for a whole batch)."""
    x = np.asarray(values, dtype=np.float64)
    keys = np.ceil(np.log(np.maximum(x, MIN_VALUE)) / math.log(gamma)).astype(np.int64)
    keys[x <= MIN_VALUE] = ZERO_KEY
    return keys


def bucket_value(key: int, gamma: float) -> float:
    """The representative of bucket ``key`` (within the relative accuracy of its range)."""
    if key == ZERO_KEY:
        return 0.0
    return 2 * gamma**key / (gamma + 1)


def quantile_rank(q: float, n: int) -> int:
    """1-based rank of the ``q`` quantile among ``n`` values (inverted CDF); a tiny
    epsilon keeps ``0.95 * 20`` from rounding up to rank 20."""
    return max(1, math.ceil(q * n - 1e-9))


class Sketch:
    """Bucket counts of one window and key; see the module docstring."""

    __slots__ = ("bins", "count")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.count = 0

    def add_keys(self, keys: Iterable[int]) -> None:
        bins = self.bins
        n = 0
        for k in keys:
            bins[k] = bins.get(k, 0) + 1
            n += 1
        self.count += n

    def add_key(self, key: int) -> None:
        self.bins[key] = self.bins.get(key, 0) + 1
        self.count += 1

    def merge(self, other: Sketch) -> None:
        bins = self.bins
        for k, c in other.bins.items():
            bins[k] = bins.get(k, 0) + c
        self.count += other.count

    def quantiles(self, qs: Sequence[float], gamma: float) -> list[float]:
        """Values at the quantiles ``qs`` (ascending), NaN when empty."""
        if not self.count:
            return [math.nan] * len(qs)
        ranks = [quantile_rank(q, self.count) for q in qs]
        out: list[float] = []
        cumulative = 0
        i = 0
        for key in sorted(self.bins):
            cumulative += self.bins[key]
            while i < len(ranks) and cumulative >= ranks[i]:
                out.append(bucket_value(key, gamma))
                i += 1
            if i == len(ranks):
                break
        return out

    def arrays(self) -> tuple[list[int], list[int]]:
        """(keys ascending, counts): the stored form (ClickHouse parallel arrays)."""
        keys = sorted(self.bins)
        return keys, [self.bins[k] for k in keys]

    @classmethod
    def from_arrays(cls, keys: Sequence[int], counts: Sequence[int]) -> Sketch:
        sketch = cls()
        for k, c in zip(keys, counts, strict=True):
            sketch.bins[int(k)] = sketch.bins.get(int(k), 0) + int(c)
            sketch.count += int(c)
        return sketch

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sketch) and self.bins == other.bins

    def __repr__(self) -> str:
        return f"Sketch(count={self.count}, buckets={len(self.bins)})"
