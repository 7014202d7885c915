"""The alert path's cost: the publisher's decisions per second (new alerts, suppressed
repeats, fire/resolve cycles with the escalation rules), the forwarder's mapping per
alert, and its memory per firing alert. Asserts nothing.

    python -m benchmarks.bench_alerts
"""

from __future__ import annotations

import asyncio
import statistics
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from schemas.alerts import Alert, Annotations
from streams.alerting import AlertPublisher, AlertSpec
from streams.forward import AlertState
from streams.metrics import Metrics

T0 = datetime(2026, 12, 6, tzinfo=UTC)
N = 20_000


async def _noop(*args: Any) -> Any:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


def specs(n: int) -> list[AlertSpec]:
    note = Annotations(summary="p95 above its SLO")
    return [
        AlertSpec("P95LatencyBreach", "critical",
                  {"tenant_id": f"t{i % 200}", "service": "api", "route": f"/r{i}"}, note)
        for i in range(n)
    ]  # fmt: skip


async def publisher_rates() -> dict[str, float]:
    out: dict[str, list[float]] = {"new": [], "suppressed": [], "cycle": []}
    for _ in range(3):
        pub = AlertPublisher(None, _noop, "a", Metrics(CollectorRegistry()), 300)
        batch = specs(N)
        started = time.perf_counter()
        for s in batch:
            await pub.fire(s, 900, 500, T0)
        out["new"].append(N / (time.perf_counter() - started))
        started = time.perf_counter()
        for s in batch:
            await pub.fire(s, 900, 500, T0 + timedelta(seconds=10))
        out["suppressed"].append(N / (time.perf_counter() - started))
        started = time.perf_counter()
        for k, s in enumerate(batch[:2000]):
            for j in range(3):  # fire/resolve three times: recurring + flapping paths
                at = T0 + timedelta(minutes=20 + 5 * j, seconds=k % 60)
                await pub.fire(s, 900, 500, at)
                await pub.resolve(s, 100, 500, at + timedelta(minutes=1))
        out["cycle"].append(2000 * 6 / (time.perf_counter() - started))
    return {k: statistics.median(v) for k, v in out.items()}


def forwarder_figures(alerts: list[Alert]) -> tuple[float, float]:
    rates = []
    for _ in range(3):
        state = AlertState(900, 60, "http://vigil:6066")
        started = time.perf_counter()
        state.take(alerts, 0.0, T0)
        rates.append(len(alerts) / (time.perf_counter() - started))
    raw = [a.to_json() for a in alerts]
    tracemalloc.start()
    state = AlertState(900, 60, "http://vigil:6066")
    before = tracemalloc.get_traced_memory()[0]
    state.take([Alert.model_validate_json(r) for r in raw], 0.0, T0)  # held: parsed alerts
    per_alert = (tracemalloc.get_traced_memory()[0] - before) / len(alerts)
    tracemalloc.stop()
    return statistics.median(rates), per_alert


def fingerprint_rates() -> tuple[float, float]:
    """Per second: the fingerprint over the identifying labels only (before routing
    labels joined it) and with the catalogue's routing labels (now)."""
    from schemas.alerts import alert_fingerprint

    batch = specs(N)
    old, new = [], []
    for _ in range(5):  # alternating runs
        started = time.perf_counter()
        for s in batch:
            alert_fingerprint(s.alertname, s.labels)
        old.append(N / (time.perf_counter() - started))
        started = time.perf_counter()
        for s in batch:  # a spec derives its routing labels and fingerprint when made
            AlertSpec(s.alertname, s.severity, s.labels, s.annotations)
        new.append(N / (time.perf_counter() - started))
    return statistics.median(old), statistics.median(new)


def main() -> None:
    rates = asyncio.run(publisher_rates())
    old_fp, new_fp = fingerprint_rates()
    sent: list[Alert] = []

    async def collect() -> None:
        async def send(topic: str, key: Any, value: bytes, headers: Any) -> Any:
            sent.append(Alert.model_validate_json(value))
            return await _noop()

        pub = AlertPublisher(None, send, "a", Metrics(CollectorRegistry()), 300)
        for s in specs(5000):
            await pub.fire(s, 900, 500, T0)

    asyncio.run(collect())
    fwd_rate, per_alert = forwarder_figures(sent)
    print("alert path (medians of 3 runs; fingerprints: 5 alternating runs)")
    print(f"  fingerprint, identity labels only {old_fp:>10,.0f} /s (before)")
    print(f"  spec + fingerprint with routing   {new_fp:>10,.0f} /s (now)")
    print(f"  publisher, new firing alerts      {rates['new']:>10,.0f} /s")
    print(f"  publisher, suppressed repeats     {rates['suppressed']:>10,.0f} /s")
    print(f"  publisher, fire/resolve cycles    {rates['cycle']:>10,.0f} transitions/s")
    print(f"  forwarder, alerts mapped          {fwd_rate:>10,.0f} /s")
    print(f"  forwarder, memory per firing alert {per_alert:>9,.0f} bytes")


if __name__ == "__main__":
    main()
