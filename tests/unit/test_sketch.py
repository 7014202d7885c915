from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.detectors.latency.sketch import ZERO_KEY, Sketch, bucket_indices, gamma_for

ALPHA = 0.01
GAMMA = gamma_for(ALPHA)
QS = (0.5, 0.9, 0.95, 0.99, 0.999)


def sketch_of(values: np.ndarray) -> Sketch:
    s = Sketch()
    s.add_keys(bucket_indices(values, GAMMA).tolist())
    return s


def datasets() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "lognormal": rng.lognormal(4.0, 0.8, 50_000),
        "bimodal": np.concatenate([rng.normal(20, 3, 30_000), rng.normal(900, 80, 10_000)]),
        "heavy_tailed": (rng.pareto(1.2, 50_000) + 1) * 5,
        "tiny_sample": rng.lognormal(3.0, 1.0, 25),
    }


@pytest.mark.parametrize("name", list(datasets()))
def test_quantiles_are_within_the_relative_accuracy_of_numpy(name: str) -> None:
    values = np.abs(datasets()[name]) + 1e-3
    exact = np.percentile(values, [q * 100 for q in QS], method="inverted_cdf")
    estimated = sketch_of(values).quantiles(QS, GAMMA)
    for q, e, x in zip(QS, estimated, exact, strict=True):
        assert abs(e - x) <= ALPHA * x * (1 + 1e-9), (name, q, e, x)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(1e-3, 1e6), min_size=1, max_size=300),
    st.lists(st.floats(1e-3, 1e6), min_size=1, max_size=300),
)
def test_merge_of_two_partitions_equals_the_sketch_of_the_union(
    a: list[float], b: list[float]
) -> None:
    merged = sketch_of(np.array(a))
    merged.merge(sketch_of(np.array(b)))
    union = sketch_of(np.array(a + b))
    assert merged == union and merged.count == union.count == len(a) + len(b)
    exact = np.percentile(np.array(a + b), [95, 99], method="inverted_cdf")
    for e, x in zip(merged.quantiles((0.95, 0.99), GAMMA), exact, strict=True):
        assert abs(e - x) <= ALPHA * x * (1 + 1e-9)


def test_stored_arrays_round_trip_and_zero_durations_are_zero() -> None:
    s = sketch_of(np.array([0.0, 0.0, 5.0, 50.0]))
    keys, counts = s.arrays()
    assert keys[0] == ZERO_KEY and counts[0] == 2 and keys == sorted(keys)
    assert Sketch.from_arrays(keys, counts) == s
    assert s.quantiles((0.25, 0.5, 1.0), GAMMA)[:2] == [0.0, 0.0]
    assert np.isnan(Sketch().quantiles((0.5,), GAMMA)[0])


def test_a_wider_accuracy_uses_fewer_buckets() -> None:
    values = datasets()["lognormal"]
    fine = len(set(bucket_indices(values, gamma_for(0.01)).tolist()))
    coarse = len(set(bucket_indices(values, gamma_for(0.05)).tolist()))
    assert coarse < fine / 3
