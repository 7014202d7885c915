"""Limits on the shape of one JSON document: nesting depth and number of items.

A hostile or broken producer can send ``[`` x 5000: the decoders recurse per level and
fail, and a document with millions of members costs the worker seconds. The limits are
checked on the bytes, before anything decodes them, so a record that breaks them costs
exactly one dead letter (``too_deep`` / ``too_many_items``) and nothing else.

*Depth* counts containers: ``{}`` is 1, ``{"a": [1]}`` is 2. *Items* are object members
plus array elements, summed over the whole document (``{"a": [1, 2]}`` has 3).

Checking is cheap where it can be. The fast path's structs refuse unknown fields, so an
envelope they decode has a known shape -- one level of scalars -- except the properties
of analytics events; only those, and whatever the fast path declines, are checked.
:meth:`JsonLimits.fits_document` is a sound upper bound computed in C from the brackets
and commas of the bytes (strings included, so it can only over-count): when it passes,
the document is within the limits and nothing more is done -- the case of all normal
traffic. Only when it fails does :meth:`JsonLimits.problem` compute the exact figures,
with strings removed.
"""

from __future__ import annotations

import re

import numpy as np

#: bytes that are neither brackets, commas nor newlines (deleted for the upper bounds)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b"{[,\n")
#: a JSON string, escapes included (unambiguous, so matched in linear time)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SPACE = b" \t\r\n"
_OPEN = (ord("{"), ord("["))
_CLOSE = (ord("}"), ord("]"))


class JsonLimits:
    def __init__(self, max_depth: int, max_items: int) -> None:
        self.max_depth = max_depth
        self.max_items = max_items
        self._small = min(max_depth, max_items)  # this many brackets + commas always fit

    def fits_document(self, data: bytes) -> bool:
        """True only if ``data``, read as one document, is within both limits (its
        openers bound its depth; openers + commas bound its items)."""
        structure = data.translate(None, _NOT_STRUCTURE)
        if len(structure) <= self._small:
            return True
        return (
            len(structure) <= self.max_items
            and len(structure.translate(None, b",\n")) <= self.max_depth
        )

    def problem(self, data: bytes) -> tuple[str, str] | None:
        """Exactly: ``(reason, message)`` if the document ``data`` breaks a limit."""
        depth, items = measure(data)
        if depth > self.max_depth:
            return (
                "too_deep",
                f"nesting depth {depth} is above VIGIL_MAX_JSON_DEPTH={self.max_depth}",
            )
        if items > self.max_items:
            return (
                "too_many_items",
                f"{items} members/elements are above VIGIL_MAX_JSON_ITEMS={self.max_items}",
            )
        return None


def measure(data: bytes) -> tuple[int, int]:
    """(depth, items) of one JSON document, strings ignored. Meant for valid JSON; on
    invalid input the figures are what its brackets and commas say (the decoder names
    the real problem when the record is within the limits)."""
    bare = _STRING.sub(b'""', data).translate(None, _SPACE)
    codes = np.frombuffer(bare, dtype=np.uint8)
    opens = (codes == _OPEN[0]) | (codes == _OPEN[1])
    closes = (codes == _CLOSE[0]) | (codes == _CLOSE[1])
    steps = opens.astype(np.int64) - closes.astype(np.int64)
    depth = int(np.cumsum(steps).max()) if len(steps) else 0
    containers = int(opens.sum())
    empty = bare.count(b"{}") + bare.count(b"[]")
    items = bare.count(b",") + containers - empty
    return max(depth, 0), items
