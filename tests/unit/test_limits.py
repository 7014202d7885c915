"""The JSON shape limits: exact figures against a walk of the decoded document, and
upper bounds that never let a document over the limits through."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.limits import JsonLimits, measure

leaves = st.none() | st.booleans() | st.integers() | st.text(alphabet='ab[]{},:"\\\n é', max_size=6)
documents = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=40,
)


def walk(value: Any) -> tuple[int, int]:
    """(depth, items) by walking the decoded document: the reference."""
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    else:
        return 0, 0
    figures = [walk(c) for c in children]
    depth = 1 + max((d for d, _ in figures), default=0)
    return depth, len(children) + sum(i for _, i in figures)


@settings(max_examples=500, deadline=None)
@given(documents, st.sampled_from([None, 0, 2]), st.booleans())
def test_measure_equals_a_walk_of_the_document(doc: Any, indent: int | None, ascii_: bool) -> None:
    data = json.dumps(doc, indent=indent, ensure_ascii=ascii_).encode()
    assert measure(data) == walk(doc)


@settings(max_examples=500, deadline=None)
@given(st.lists(documents, min_size=1, max_size=5), st.integers(1, 6), st.integers(1, 30))
def test_the_bounds_never_pass_a_document_over_the_limits(
    docs: list[Any], max_depth: int, max_items: int
) -> None:
    limits = JsonLimits(max_depth, max_items)
    lines = [json.dumps(d).encode() for d in docs]
    over = [walk(d)[0] > max_depth or walk(d)[1] > max_items for d in docs]
    for line, is_over in zip(lines, over, strict=True):
        if limits.fits_document(line):
            assert not is_over
        assert (limits.problem(line) is not None) == is_over


def test_normal_events_pass_the_cheap_bounds() -> None:
    limits = JsonLimits(64, 10_000)
    event = json.dumps({"kind": "http.request", "route": "/v1/{id}", "status": 200}).encode()
    assert limits.fits_document(event)
    assert not limits.fits_document(b"[" + b",".join([event] * 100) + b"]")  # 100 objects
