"""A Faust transport whose consumer hands whole fetched batches to the agent.

Faust's stock drain loop turns every Kafka record into a ``ConsumerMessage`` and awaits
``wait_first(callback(message), suspend_flow.wait())`` for each one: two tasks and a
stream iteration per record, which caps a worker at a few percent of what the broker
delivers. :class:`BatchConsumer` keeps Faust's fetcher thread, rebalancing, flow control,
acking and offset commits, but delivers **one message per fetched partition batch**:

* the message's ``value`` is a :class:`SourceBatch` (the raw records, still bytes);
* its ``offset`` is the batch's last offset, and the offsets before it are registered as
  a gap, so acking the one message lets Faust commit the whole range. Acks must
  therefore arrive in offset order per partition -- the ClickHouse writer guarantees it.

Records whose rows are already stored (``ingest_offsets`` in ClickHouse, filled in the
same INSERT as the rows) are marked (``stored_until``) after a restart and counted: the
pipeline does not write them twice, but detectors still see them, since the windows
they belong to must be rebuilt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage

FloorProvider = Callable[[str], Awaitable[dict[int, int]]]


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """Contiguous records of one partition, as fetched."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    records: Sequence[Any]
    size_bytes: int = 0  # sum of the records' value sizes
    stored_until: int = -1  # records with a lower offset already have their rows stored
    lag: int | None = None  # records of the partition left behind this batch (None: unknown)

    @property
    def span(self) -> tuple[str, int, int, int]:
        """(topic, partition, first offset, last offset): the writer's dedup scope."""
        return (self.topic, self.partition, self.first_offset, self.last_offset)


class ConsumerHooks:
    """What the batch consumer needs from the worker; set on the app before start."""

    def __init__(
        self,
        stored_offsets: FloorProvider | None = None,
        on_skipped: Callable[[int], None] | None = None,
    ) -> None:
        self.stored_offsets = stored_offsets
        self.on_skipped = on_skipped


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    """Faust's consumer thread, with the fetch long-poll of the app's
    ``fetch_max_wait_ms`` attribute (Vigil's setting).

    aiokafka keeps one fetch request in flight per broker: while the broker holds a fetch
    for partitions that are caught up, a partition the worker has just drained cannot be
    fetched again. Faust hard-codes a 1.5 s hold, which left the last records of a burst
    waiting up to that long behind a fetch for partitions that had nothing.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = wait_ms  # read by start()
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """See the module docstring."""

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    #: per consumer generation: topic → partition → next offset whose rows are stored
    _floors: dict[str, dict[int, int]] | None = None
    _floor_generation: int | None = None

    def _hooks(self) -> ConsumerHooks:
        hooks = getattr(self.app, "consumer_hooks", None)
        return hooks if isinstance(hooks, ConsumerHooks) else ConsumerHooks()

    async def _floor(self, tp: TP) -> int:
        """Next offset of ``tp`` whose rows are stored, read once per topic and consumer
        generation at its first batch: one query answers for every partition (a partition
        with nothing stored has none), so partitions first fetched later in a burst do not
        each wait for the engine behind the INSERTs already running."""
        generation = self.app.consumer_generation_id
        if self._floors is None or self._floor_generation != generation:
            self._floors, self._floor_generation = {}, generation
        stored = self._floors.get(tp.topic)
        if stored is None:
            provider = self._hooks().stored_offsets
            stored = await provider(tp.topic) if provider is not None else {}
            self._floors[tp.topic] = stored
        return stored.get(tp.partition, -1)

    def _batch_message(self, tp: TP, batch: SourceBatch, last: Any) -> ConsumerMessage:
        timestamp = last.timestamp / 1000.0 if last.timestamp is not None else None
        return ConsumerMessage(
            tp.topic,
            tp.partition,
            batch.last_offset,
            timestamp,
            last.timestamp_type,
            None,
            None,
            batch,
            None,
            0,
            batch.size_bytes,
            tp,
            generation_id=self.app.consumer_generation_id,
        )

    def _paused_meanwhile(self, tp: TP, active: set[TP] | None) -> bool:
        """Faust's rule: records of a partition that left the active set are delivered
        only if it left because the stream's buffer was full."""
        return active is not None and tp not in active and tp not in self._buffered_partitions

    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
        consumer_stopped = cast(Any, self)._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        read_offset = self._read_offset
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(1.0)
                if not records or self.should_stop:
                    await asyncio.sleep(0)
                    continue
                if not self.flow_active:
                    # a rebalance began while fetching: drop, and re-read from committed
                    await self.perform_seek()
                    continue
                generation = self.app.consumer_generation_id
                hooks = self._hooks()
                for tp, recs in records.items():
                    if generation != self.app.consumer_generation_id:
                        break
                    next_offset = read_offset[tp]  # next offset expected (Faust seeks set it)
                    if next_offset is not None:
                        recs = [r for r in recs if r.offset >= next_offset]
                    if not recs:
                        continue
                    if self._paused_meanwhile(tp, active):
                        # fetched, but Faust paused the partition while the fetch was in
                        # flight: deliver nothing and fetch these records again later
                        await self.seek(tp, recs[0].offset)
                        continue
                    floor = await self._floor(tp)
                    first, last = recs[0].offset, recs[-1].offset
                    if floor > first and hooks.on_skipped is not None:
                        hooks.on_skipped(sum(1 for r in recs if r.offset < floor))
                    size = sum(len(r.value or b"") for r in recs)
                    highwater = self.highwater(tp)
                    lag = None if highwater is None else max(0, highwater - last - 1)
                    batch = SourceBatch(tp.topic, tp.partition, first, last, recs, size, floor, lag)
                    if last > first:
                        await self._add_gap(tp, first, last - 1)
                    await self.wait_first(
                        callback(self._batch_message(tp, batch, recs[-1])),
                        self.suspend_flow.wait(),
                    )
                    read_offset[tp] = last + 1
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise


class BatchTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer = BatchConsumer
