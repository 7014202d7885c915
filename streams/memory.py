"""The embedded broker's memory, as ``vigil up`` reports it.

tansu's ``memory://`` storage keeps every message it was ever sent and never trims it
(measured: ~450 bytes per uncompressed demo message, ~200 gzip-compressed). At the demo's
default 500 messages/s that is ~0.5 GB an hour (measured with `vigil up --demo`: 19 MB
after 6 s, 54 MB after 264 s), so a working day fits a laptop, but a
week does not: ``vigil up`` shows the broker's resident memory in its live view and says
what to do when it reaches ``VIGIL_BROKER_MEMORY_WARN_SHARE`` of the machine's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GB = 1 << 30
MB = 1 << 20


def resident_bytes(pid: int) -> int | None:
    """VmRSS of process ``pid`` (Linux), or None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def total_memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def human(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / MB:.0f} MB"


@dataclass
class BrokerMemory:
    """Follows the broker's resident memory; says once when it crosses the share."""

    total_bytes: int | None
    warn_share: float
    first: tuple[float, int] | None = None  # (seconds, bytes) of the first reading
    warned: bool = False

    def observe(self, at_s: float, rss: int) -> str | None:
        """Record a reading; returns the warning to print, the first time it applies."""
        if self.first is None:
            self.first = (at_s, rss)
        if self.warned or not self.total_bytes or rss < self.warn_share * self.total_bytes:
            return None
        self.warned = True
        return (
            f"vigil: warning: the embedded broker holds {human(rss)}, "
            f"{rss / self.total_bytes:.0%} of this machine's {human(self.total_bytes)}"
            f"{self._growth(at_s, rss)}: it keeps every message in memory and never trims "
            "it. Restart `vigil up` to start empty, lower the demo's --rate, or run against "
            "a real Kafka (VIGIL_KAFKA_BOOTSTRAP) for long runs."
        )

    def _growth(self, at_s: float, rss: int) -> str:
        if self.first is None or at_s - self.first[0] < 60:
            return ""
        per_hour = (rss - self.first[1]) / (at_s - self.first[0]) * 3600
        if per_hour <= 0 or not self.total_bytes:
            return ""
        left_h = (self.total_bytes - rss) / per_hour
        return f" and grows {human(per_hour)} an hour (the machine is full in ~{left_h:.0f} h)"
