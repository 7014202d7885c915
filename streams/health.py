"""Which detectors are failing, for ``/healthz``.

A detector that raises is skipped for that batch (or window tick), counted in
``vigil_detector_errors_total{detector}`` and logged with the batch's offsets; the events
are stored regardless. One failure can be a bad input the detector did not expect; a
detector failing ``threshold`` times in a row is broken, and ``/healthz`` says so (status
``degraded``, with its last error) until it succeeds again. The worker keeps ingesting:
restarting it would not fix a bug, and storage must not stop because of a detector.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from streams.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _State:
    consecutive_failures: int = 0
    failures: int = 0
    last_error: str = ""
    last_failure_at: float = 0.0


class DetectorHealth:
    def __init__(self, metrics: Metrics, threshold: int) -> None:
        self._metrics = metrics
        self._threshold = threshold
        self._states: dict[str, _State] = {}

    def register(self, name: str) -> None:
        self._states.setdefault(name, _State())

    def succeeded(self, name: str) -> None:
        state = self._states.get(name)
        if state is not None and state.consecutive_failures:
            log.info("detector %s works again after %d failures", name, state.consecutive_failures)
            state.consecutive_failures = 0

    def failed(self, name: str, exc: BaseException, where: str) -> None:
        """Count and log one failure of detector ``name`` (``where``: batch offsets or
        ``tick``)."""
        state = self._states.setdefault(name, _State())
        state.consecutive_failures += 1
        state.failures += 1
        state.last_error = f"{type(exc).__name__}: {exc}"[:300]
        state.last_failure_at = time.time()
        self._metrics.detector_errors.labels(detector=name).inc()
        log.error(
            "detector %s failed on %s (%d in a row); the events are stored anyway",
            name,
            where,
            state.consecutive_failures,
            exc_info=exc,
        )

    def failing(self) -> list[str]:
        return sorted(
            n for n, s in self._states.items() if s.consecutive_failures >= self._threshold
        )

    def report(self) -> dict[str, Any]:
        """``/healthz``'s view: ``degraded`` while some detector keeps failing."""
        return {
            "status": "degraded" if self.failing() else "ok",
            "detectors": {
                name: {
                    "ok": s.consecutive_failures < self._threshold,
                    "consecutive_failures": s.consecutive_failures,
                    "failures": s.failures,
                    "last_error": s.last_error,
                }
                for name, s in sorted(self._states.items())
            },
        }
