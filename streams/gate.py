"""When may a fetched batch be acknowledged (and its offsets committed)?

Two conditions, both required, in offset order per partition:

1. its rows are written (the ClickHouse writer calls back), and
2. no detector still needs its records to rebuild state after a crash: each holder
   reports, per partition, the first offset it may still need (for windows: the oldest
   record of any open window, as recorded by a durable checkpoint).

Faust commits the highest contiguous acknowledged offset, so holding a batch back holds
back the commit: after ``kill -9`` the worker re-reads from the oldest open window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: partition -> first offset still needed, or None when the holder needs nothing there
Holder = Callable[[int], int | None]


@dataclass(slots=True)
class _Entry:
    last_offset: int
    ack: Callable[[], None]
    written: bool = False


class CommitGate:
    def __init__(self) -> None:
        self._queues: dict[int, deque[_Entry]] = {}
        self._holders: list[Holder] = []

    def add_holder(self, holder: Holder) -> None:
        self._holders.append(holder)

    def track(
        self, partition: int, last_offset: int, ack: Callable[[], None]
    ) -> Callable[[], None]:
        """Register a batch in arrival order; the returned callback marks it written."""
        entry = _Entry(last_offset, ack)
        self._queues.setdefault(partition, deque()).append(entry)

        def written() -> None:
            entry.written = True
            self.release(partition)

        return written

    def release(self, partition: int) -> None:
        """Ack every leading batch of ``partition`` that is written and not held."""
        queue = self._queues.get(partition)
        if not queue:
            return
        needed = [n for h in self._holders if (n := h(partition)) is not None]
        floor = min(needed) if needed else None
        while queue and queue[0].written and (floor is None or queue[0].last_offset < floor):
            queue.popleft().ack()

    def forget(self, partition: int) -> None:
        """Drop the queue of a partition this worker no longer owns (it will re-read)."""
        self._queues.pop(partition, None)
