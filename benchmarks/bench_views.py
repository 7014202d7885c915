"""The console (issue 17), measured; prints figures, asserts nothing.

1. End to end: the mixed corpus through a worker with no console open (before) and with
   the overview, a tenant page, the security page and the overview JSON fetched every
   second (after: ten times the console's own refresh), preloaded topic, alternating
   rounds next to the bare consumer; medians and ratios. (The console rebuilds each
   document at most once per VIGIL_CONSOLE_REFRESH_S, whatever the number of viewers.)
"""

from __future__ import annotations

import asyncio
import os
import statistics

from benchmarks.bench_ingest import bare_consumer, prepare_ceiling, vigil_end_to_end
from benchmarks.common import mixed_events, ndjson_messages, single_messages
from streams.broker import EmbeddedBroker

N = int(os.environ.get("BENCH_EVENTS", "200000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
PAGES = ("/console", "/console/tenants/acme", "/console/security", "/api/v1/views/overview")


def main() -> None:
    envelopes, logs = mixed_events(N)
    events = single_messages(envelopes, logs)
    ndjson = ndjson_messages(envelopes, logs)
    cases = [
        ("(b') 1 event/message, no console (before)", "vwb0", events, ()),
        ("(b') 1 event/message, console open (after)", "vwb1", events, PAGES),
        ("(c') NDJSON x100, no console (before)", "vwc0", ndjson, ()),
        ("(c') NDJSON x100, console open (after)", "vwc1", ndjson, PAGES),
    ]
    print(f"1. end to end, {N:,} mixed events, preloaded topic, {RUNS} rounds, medians:")
    with EmbeddedBroker() as broker:
        raw = prepare_ceiling(broker.bootstrap, "vwbench", events)
        bare: list[float] = []
        runs: dict[str, list[float]] = {label: [] for label, *_ in cases}
        for r in range(RUNS):
            bare.append(asyncio.run(bare_consumer(broker.bootstrap, raw, N, f"vw-bare-{r}")))
            for label, prefix, values, viewers in cases:
                runs[label].append(
                    vigil_end_to_end(
                        broker.bootstrap, f"{prefix}r{r}", values, N, True, viewers=viewers
                    )
                )
    a = statistics.median(bare)
    print(f"   {'(a) bare aiokafka consumer + orjson decode':48}: {a:9,.0f} events/s")
    for label, *_ in cases:
        rate = statistics.median(runs[label])
        spread = ", ".join(f"{x:,.0f}" for x in runs[label])
        print(f"   {label:48}: {rate:9,.0f} events/s  ratio {rate / a:.2f}  (runs: {spread})")


if __name__ == "__main__":
    main()
