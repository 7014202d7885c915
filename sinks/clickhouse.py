"""The one ClickHouse writer for every table: buffer, flush on size or time, then ack.

* Rows are buffered per table, column-oriented, and flushed when the buffer reaches
  ``flush_rows`` or ``flush_interval_s`` has passed, with explicit column names, as one
  ``JSONColumns`` block (DateTime64 columns take float epoch seconds or RFC 3339 text).
* Each INSERT carries a deterministic ``insert_deduplication_token`` built from the
  source offset ranges it covers, so retrying the same block never double-inserts.
* A failed INSERT is retried with exponential backoff; the buffer is bounded and
  :meth:`ClickHouseWriter.add` waits when it is full (the stream slows, nothing drops).
* An error the server gives every time for the same rows (a value it cannot parse or
  store: :data:`REJECTING_CODES`) is not retried: the block is halved until the rows it
  refuses are alone; each is handed to the rejection handler (the pipeline dead-letters it
  as ``storage_rejected``) and the rest is written, in order. A bad row never stalls the
  partitions behind it.
* Acknowledgements run only after every table of a flush is written, in the order the
  batches were added, so the consumer commits offsets behind what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import clickhouse_connect
import orjson

from streams.errors import ClickHouseUnavailable
from streams.metrics import Metrics

log = logging.getLogger(__name__)

Columns = dict[str, list[Any]]
Ack = Callable[[], None]
#: (table, the refused row, why) -> dead_letters columns to record it (or None)
RejectionHandler = Callable[[str, dict[str, Any], str], Awaitable[Columns | None]]

#: ClickHouse error codes that mean "these rows, every time": parsing, types and ranges
#: (CANNOT_PARSE_TEXT 6, CANNOT_PARSE_ESCAPE_SEQUENCE 25, CANNOT_PARSE_QUOTED_STRING 26,
#: CANNOT_PARSE_INPUT_ASSERTION_FAILED 27, ATTEMPT_TO_READ_AFTER_EOF 32,
#: CANNOT_READ_ALL_DATA 33, CANNOT_PARSE_DATE 38, CANNOT_PARSE_DATETIME 41,
#: TYPE_MISMATCH 53, ARGUMENT_OUT_OF_BOUND 69, CANNOT_CONVERT_TYPE 70,
#: CANNOT_PARSE_NUMBER 72, INCORRECT_DATA 117, CANNOT_READ_ARRAY_FROM_TEXT 130,
#: TOO_LARGE_STRING_SIZE 131, SIZES_OF_ARRAYS_DONT_MATCH 190,
#: VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE 321, CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN 349).
#: Everything else -- network, timeouts, TOO_MANY_PARTS, memory, a missing table -- is
#: retried: it is about the server, not the rows.
REJECTING_CODES = frozenset(
    {6, 25, 26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 130, 131, 190, 321, 349}
)
_CODE = re.compile(r"Code: (\d+)")
_CODE_NAME = re.compile(r"\(([A-Z][A-Z_]+)\)")


class RowsRejected(Exception):
    """The server refuses these rows whatever the attempt (see :data:`REJECTING_CODES`)."""


def error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def describe(exc: BaseException) -> str:
    """``code NNN NAME`` of a server error, without the data it quotes."""
    code = error_code(exc)
    names = _CODE_NAME.findall(str(exc))
    name = names[-1] if names else type(exc).__name__
    return f"code {code} {name}" if code is not None else name


def connect(url: str, database: str) -> Any:
    """A clickhouse-connect client for ``chdb:///path`` or ``http(s)://…`` URLs."""
    try:
        if url.startswith("chdb:"):
            return clickhouse_connect.get_client(dsn=url)
        return clickhouse_connect.get_client(dsn=url, database=database or None)
    except Exception as exc:
        hint = (
            "is another process (a running `vigil up` or worker) using this data directory?"
            if url.startswith("chdb:")
            else "check VIGIL_CLICKHOUSE_URL, credentials and that the server is up"
        )
        raise ClickHouseUnavailable(
            f"cannot open ClickHouse at {redact_url(url)}: {exc} ({hint})"
        ) from exc


def redact_url(url: str) -> str:
    """Hide the password of ``scheme://user:password@host`` URLs in messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


@dataclass(slots=True)
class _TableBuffer:
    columns: Columns = field(default_factory=dict)
    rows: int = 0
    # (topic, partition) -> [first offset, last offset] covered by these rows
    ranges: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, columns: Columns) -> _TableBuffer:
        """Rows identified by their content (a part of a split block, a dead letter)."""
        return cls(columns, len(next(iter(columns.values()))) if columns else 0)

    def halves(self) -> tuple[_TableBuffer, _TableBuffer]:
        middle = self.rows // 2
        return (
            _TableBuffer.of({n: v[:middle] for n, v in self.columns.items()}),
            _TableBuffer.of({n: v[middle:] for n, v in self.columns.items()}),
        )

    def row(self) -> dict[str, Any]:
        return {name: values[0] for name, values in self.columns.items()}

    def extend(self, cols: Columns, source: tuple[str, int, int, int] | None) -> None:
        n = len(next(iter(cols.values()))) if cols else 0
        if not self.columns:
            self.columns = {name: list(values) for name, values in cols.items()}
        else:
            if cols.keys() != self.columns.keys():
                raise ValueError(
                    f"column set changed within one table buffer: {sorted(cols)} vs "
                    f"{sorted(self.columns)}"
                )
            for name, values in cols.items():
                self.columns[name].extend(values)
        self.rows += n
        if source is not None:
            topic, partition, first, last = source
            span = self.ranges.setdefault((topic, partition), [first, last])
            span[0], span[1] = min(span[0], first), max(span[1], last)

    def token(self, table: str, block: bytes) -> str:
        """Rows from input offsets are identified by those offsets (their content may
        carry processing times); derived rows with no source (windows, checkpoints) by
        their content, which is deterministic."""
        if not self.ranges:
            return hashlib.sha256(table.encode() + b"|" + block).hexdigest()
        spans = ",".join(f"{t}/{p}:{a}-{b}" for (t, p), (a, b) in sorted(self.ranges.items()))
        text = f"{table}|{spans}|{self.rows}"
        return hashlib.sha256(text.encode()).hexdigest()


def is_all_default(values: list[Any]) -> bool:
    """True when every value is '' or None, or every value is numerically 0 (not bool
    True); the columns Vigil writes declare no DEFAULT other than the type's own."""
    if not values:
        return True
    first = values[0]
    if first is None or first == "" or (first == 0 and not isinstance(first, str)):
        return values.count(first) == len(values)
    return False


#: tables a detector restores its state from although not named ``*checkpoints``: the
#: canary judge's verdict rows hold its failing runs (a Fail restored without its alert
#: row would fire again, later, with another start)
STATE_TABLES = frozenset({"canary_verdicts"})


def _checkpoints_last(item: tuple[str, Any]) -> bool:
    return item[0].endswith("checkpoints") or item[0] in STATE_TABLES


class ClickHouseWriter:
    """Buffered, retrying, backpressuring writer; see the module docstring."""

    def __init__(
        self,
        client: Any,
        database: str,
        metrics: Metrics,
        *,
        flush_rows: int = 10_000,
        flush_interval_s: float = 1.0,
        linger_s: float = 0.2,
        max_buffer_rows: int = 100_000,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 30.0,
    ) -> None:
        self._client = client
        self._db = database
        self._metrics = metrics
        self._flush_rows = flush_rows
        self._flush_interval_s = flush_interval_s
        self._linger_s = linger_s
        self._first_add_at = 0.0
        self._last_add_at = 0.0
        self._flush_now = False  # set by caught_up(): the end of a backlog
        self._max_buffer_rows = max_buffer_rows
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._buffers: dict[str, _TableBuffer] = {}
        self._acks: list[Ack] = []
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._space = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._on_rejected: RejectionHandler | None = None
        # The engine is driven from one worker thread at a time (chDB is in-process).
        self.engine_lock = asyncio.Lock()

    @property
    def client(self) -> Any:
        return self._client

    def on_rejected(self, handler: RejectionHandler) -> None:
        """Where rows the server refuses go (the pipeline dead-letters them)."""
        self._on_rejected = handler

    @property
    def buffered_rows(self) -> int:
        return sum(b.rows for b in self._buffers.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ch-flush")

    async def stop(self) -> None:
        """Flush what is buffered (retrying) and stop the timer task."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

    async def add(
        self,
        rows: dict[str, Columns],
        *,
        source: tuple[str, int, int, int] | None = None,
        on_written: Ack | None = None,
    ) -> None:
        """Buffer rows for several tables at once; ``on_written`` runs after they land.

        ``source`` is (topic, partition, first offset, last offset) of the input batch
        these rows came from; it feeds the deduplication token. Waits while the buffer
        holds ``max_buffer_rows`` rows or more (backpressure).
        """
        async with self._space:
            await self._space.wait_for(lambda: self.buffered_rows < self._max_buffer_rows)
        now = asyncio.get_running_loop().time()
        was_empty = not self._pending
        if was_empty:
            self._first_add_at = now
        self._last_add_at = now
        for table, cols in rows.items():
            if cols and len(next(iter(cols.values()))):
                self._buffers.setdefault(table, _TableBuffer()).extend(cols, source)
        if on_written is not None:
            self._acks.append(on_written)
        for table, buf in self._buffers.items():
            self._metrics.sink_rows_buffered.labels(table=table).set(buf.rows)
        if was_empty or self.buffered_rows >= self._flush_rows:
            self._wake.set()  # arm the timers, or flush now

    def caught_up(self) -> None:
        """The input has just caught up with a backlog: flush what is buffered now.

        Without this, the last rows of a burst would wait ``linger_s`` for input that is
        not coming. The caller (the pipeline) says so only when the consumer was behind
        and no longer is -- a steady trickle never is, and keeps its batching."""
        if self._pending:
            self._flush_now = True
            self._wake.set()

    async def _run(self) -> None:
        """Flush on size (``add`` wakes us), ``flush_interval_s`` after the first buffered
        row, ``linger_s`` after the last one once input pauses -- so a burst's tail does
        not wait for the interval while a steady trickle is still batched -- or at once
        when the input has caught up with a backlog (:meth:`caught_up`)."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            timeout = max(0.0, self._due_at() - loop.time()) if self._pending else None
            if timeout != 0.0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            self._wake.clear()
            if self._pending and (
                self.buffered_rows >= self._flush_rows
                or not self.buffered_rows  # only acks of batches whose rows are stored
                or loop.time() >= self._due_at()
            ):
                await self.flush()

    @property
    def _pending(self) -> bool:
        return bool(self._buffers or self._acks)

    def _due_at(self) -> float:
        if self._flush_now:
            return self._first_add_at
        return min(self._first_add_at + self._flush_interval_s, self._last_add_at + self._linger_s)

    async def flush(self) -> None:
        """Write every buffered table, then run the acks of the batches it held."""
        async with self._flush_lock:
            buffers, self._buffers = self._buffers, {}
            acks, self._acks = self._acks, []
            self._flush_now = False
            # checkpoint tables last: a checkpoint records state whose rows (windows,
            # alerts, detections) were buffered with it or before; written first, a kill
            # between the INSERTs would restore a state whose rows were never stored
            for table, buf in sorted(buffers.items(), key=_checkpoints_last):
                await self._write(table, buf)
                self._metrics.sink_rows_buffered.labels(table=table).set(0)
            for ack in acks:
                ack()
        async with self._space:
            self._space.notify_all()

    async def _write(self, table: str, buf: _TableBuffer) -> None:
        """Insert ``buf``; rows the server refuses are isolated by halving, in order."""
        try:
            await self._insert_with_retry(table, buf)
        except RowsRejected as exc:
            if buf.rows <= 1:
                await self._reject(table, buf, str(exc))
                return
            log.warning(
                "ClickHouse refused a block of %d rows for %s.%s (%s); isolating the rows",
                buf.rows,
                self._db,
                table,
                exc,
            )
            for half in buf.halves():
                await self._write(table, half)

    async def _reject(self, table: str, buf: _TableBuffer, why: str) -> None:
        self._metrics.sink_rows_rejected.labels(table=table).inc(buf.rows)
        log.error("ClickHouse refused a row of %s.%s (%s); dead-lettering it", self._db, table, why)
        if self._on_rejected is None or table == "dead_letters" or not buf.rows:
            return
        try:
            dead = await self._on_rejected(table, buf.row(), why)
        except Exception:
            log.exception("dead-lettering a row refused by ClickHouse failed")
            return
        if dead:  # recorded before the rows after it are written (offset order)
            await self._write("dead_letters", _TableBuffer.of(dead))

    async def _insert_with_retry(self, table: str, buf: _TableBuffer) -> None:
        # Columns whose every value is the type's default ('' / 0 / NULL) are left out:
        # ClickHouse fills them in for free, and most per-kind columns are empty for any
        # one kind. JSONColumns: orjson serialises the block in C and ClickHouse parses it
        # in C++, outside the GIL -- 10x less Python time per row than the Native encoder.
        sent = {n: v for n, v in buf.columns.items() if not is_all_default(v)}
        names = list(sent)
        try:
            block = orjson.dumps(sent)
        except TypeError as exc:  # a value JSON cannot carry (an integer beyond 64 bits)
            raise RowsRejected(f"not encodable: {exc}") from exc
        token = buf.token(table, block)
        delay = self._retry_initial_s
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                async with self.engine_lock:
                    await asyncio.to_thread(
                        self._client.raw_insert,
                        f"{self._db}.{table}",
                        column_names=names,
                        insert_block=block,
                        fmt="JSONColumns",
                        settings={
                            "insert_deduplication_token": token,
                            "date_time_input_format": "best_effort",
                        },
                    )
            except Exception as exc:
                if error_code(exc) in REJECTING_CODES:
                    raise RowsRejected(describe(exc)) from exc
                self._metrics.sink_insert_failures.labels(table=table).inc()
                log.warning(
                    "insert into %s.%s failed (attempt %d, %d rows): %s; retrying in %.1fs",
                    self._db,
                    table,
                    attempt,
                    buf.rows,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            self._metrics.sink_insert_duration.labels(table=table).observe(
                time.perf_counter() - started
            )
            self._metrics.sink_rows_written.labels(table=table).inc(buf.rows)
            return

    async def query_rows(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run a read query on the engine (serialised with inserts, off the loop)."""
        async with self.engine_lock:
            result = await asyncio.to_thread(self._client.query, sql, parameters=parameters)
        return [tuple(r) for r in result.result_rows]

    async def stored_offsets(self, topic: str) -> dict[int, int]:
        """Next offset per partition of ``topic`` whose results are already stored."""
        async with self.engine_lock:
            result = await asyncio.to_thread(
                self._client.query,
                f"SELECT partition, max(next_offset) FROM {self._db}.ingest_offsets "
                "WHERE topic = {topic:String} GROUP BY partition",
                parameters={"topic": topic},
            )
        return {int(p): int(o) for p, o in result.result_rows}
