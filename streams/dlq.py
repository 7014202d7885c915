"""Dead-letter records: the original bytes untouched, provenance in headers.

Headers (all UTF-8): ``vigil.error.class`` (one of :data:`streams.ingest.REASONS`),
``vigil.error.message`` (which field, what was wrong; never the offending value),
``vigil.source.topic``, ``vigil.source.partition``, ``vigil.source.offset``,
``vigil.source.line`` (NDJSON line, 0 for a whole message), ``vigil.source.timestamp``
(ms) and ``vigil.dlq.timestamp`` (ms, when it was dead-lettered).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from schemas.normalize import Pseudonymizer
from streams.ingest import Rejection

MAX_MESSAGE_HEADER_CHARS = 1000


def dlq_headers(rejection: Rejection, now_ms: int) -> list[tuple[str, bytes]]:
    src = rejection.source
    return [
        ("vigil.error.class", rejection.reason.encode()),
        ("vigil.error.message", rejection.message[:MAX_MESSAGE_HEADER_CHARS].encode()),
        ("vigil.source.topic", src.topic.encode()),
        ("vigil.source.partition", str(src.partition).encode()),
        ("vigil.source.offset", str(src.offset).encode()),
        ("vigil.source.line", str(src.line).encode()),
        ("vigil.source.timestamp", str(src.timestamp_ms).encode()),
        ("vigil.dlq.timestamp", str(now_ms).encode()),
    ]


def dead_letter_columns(
    rejections: Sequence[Rejection], now_ms: int, pseudo: Pseudonymizer
) -> dict[str, list[Any]]:
    """Rows for ``vigil.dead_letters``: no payload bytes, only size and a keyed HMAC."""
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    return {
        "ts": [now] * len(rejections),
        "reason": [r.reason for r in rejections],
        "message": [r.message[:MAX_MESSAGE_HEADER_CHARS] for r in rejections],
        "size_bytes": [len(r.value) for r in rejections],
        "value_hmac": [pseudo.hash(r.value.hex()) for r in rejections],
        "src_topic": [r.source.topic for r in rejections],
        "src_partition": [r.source.partition for r in rejections],
        "src_offset": [r.source.offset for r in rejections],
        "src_line": [r.source.line for r in rejections],
        "src_timestamp": [
            datetime.fromtimestamp(max(r.source.timestamp_ms, 0) / 1000, tz=UTC) for r in rejections
        ],
    }
