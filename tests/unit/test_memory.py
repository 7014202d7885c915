"""The embedded broker's memory in `vigil up`: read from /proc, one warning that says
what to do, with the growth rate once there is a minute of readings."""

from __future__ import annotations

import os

from streams.memory import GB, MB, BrokerMemory, human, resident_bytes, total_memory_bytes


def test_readings_of_this_process() -> None:
    rss, total = resident_bytes(os.getpid()), total_memory_bytes()
    assert rss is not None and total is not None and 0 < rss < total
    assert resident_bytes(2**22 + 12345) is None  # no such process


def test_one_warning_at_the_share_with_the_growth_and_what_to_do() -> None:
    memory = BrokerMemory(total_bytes=24 * GB, warn_share=0.25)
    assert memory.observe(0, 100 * MB) is None
    assert memory.observe(1800, 3 * GB) is None  # below a quarter
    warning = memory.observe(3600, 6 * GB + 100 * MB)
    assert warning is not None
    assert "6.1 GB, 25% of this machine's 24.0 GB" in warning
    assert "grows 6.0 GB an hour (the machine is full in ~3 h)" in warning
    assert "Restart `vigil up`" in warning and "VIGIL_KAFKA_BOOTSTRAP" in warning
    assert memory.observe(3700, 7 * GB) is None  # said once
    assert human(512 * MB) == "512 MB"
