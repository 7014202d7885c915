from __future__ import annotations

import asyncio
import os

from streams.app import use_engine_threads


def niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)  # Linux: of the calling thread


def test_blocking_calls_run_below_the_loops_priority() -> None:
    async def main() -> tuple[int, int]:
        use_engine_threads(asyncio.get_running_loop(), 7)
        return niceness(), await asyncio.to_thread(niceness)

    base = niceness()
    loop_nice, engine_nice = asyncio.run(main())
    assert loop_nice == base  # the loop thread is untouched
    assert engine_nice == min(19, base + 7)


def test_zero_leaves_the_default_executor() -> None:
    async def main() -> int:
        use_engine_threads(asyncio.get_running_loop(), 0)
        return await asyncio.to_thread(niceness)

    assert asyncio.run(main()) == niceness()
