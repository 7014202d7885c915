"""The console (issue 17), measured; prints figures, asserts nothing.

End to end: the mixed corpus through a worker with no console open (before) and with the
overview, a tenant page, the security page and the overview JSON fetched every second
(after: ten times the console's own refresh), preloaded topic, alternating rounds next to
the bare consumer; medians and ratios. (The console rebuilds each document at most once
per VIGIL_CONSOLE_REFRESH_S, whatever the number of viewers.)
"""

from __future__ import annotations

import os

from benchmarks.bench_ingest import side_by_side
from benchmarks.common import mixed_events, ndjson_messages, single_messages

N = int(os.environ.get("BENCH_EVENTS", "200000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
PAGES = ("/console", "/console/tenants/acme", "/console/security", "/api/v1/views/overview")


def main() -> None:
    envelopes, logs = mixed_events(N)
    events = single_messages(envelopes, logs)
    ndjson = ndjson_messages(envelopes, logs)
    side_by_side(
        [
            ("(b') 1 event/message, no console (before)", "vwb0", events, None, ()),
            ("(b') 1 event/message, console open (after)", "vwb1", events, None, PAGES),
            ("(c') NDJSON x100, no console (before)", "vwc0", ndjson, None, ()),
            ("(c') NDJSON x100, console open (after)", "vwc1", ndjson, None, PAGES),
        ],
        "vw",
        N,
        RUNS,
    )


if __name__ == "__main__":
    main()
