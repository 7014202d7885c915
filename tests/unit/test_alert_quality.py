"""The demo's traffic replayed in compressed event time through the real SLO evaluator
(benchmarks/alert_quality.py): statistical decisions stop the noise pages and keep the
demo's incidents paging exactly as fast as before."""

from __future__ import annotations

import pytest

from benchmarks.alert_quality import DemoModel, Incident, default_rules, evaluators, replay
from streams.demo import SCHEDULE, SPIKE_FACTOR, SPIKE_ROUTE, SPIKE_TENANT

RULES = default_rules()
SPIKE = next(i for i in SCHEDULE if i.name == "latency_spike")


@pytest.mark.parametrize("rate", [300, 500])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_demo_latency_spike_pages_within_the_same_samples(rate: int, seed: int) -> None:
    incident = Incident(
        SPIKE_TENANT, SPIKE_ROUTE, SPIKE.start_s, SPIKE.duration_s, latency_factor=SPIKE_FACTOR
    )
    key = (SPIKE_TENANT, "api", SPIKE_ROUTE, "")
    fired = {}
    for name, evaluator in evaluators(RULES).items():
        run = replay(evaluator, RULES, DemoModel(rate, seed), 12, (incident,))
        fired[name] = run.first_fire("P95LatencyBreach", key, 0)
    assert fired["before"] is not None
    assert fired["after"] == fired["before"]
    # the third sample, counting the one the spike started in
    assert fired["after"] == 3 * 30  # from 20 s into the first sample: that one and 2 more


def test_clean_demo_traffic_pages_no_one() -> None:
    """Six simulated hours at 100 messages/s (the small keys where one 5xx is already
    "above 1 %"): the point estimate pages ErrorRateSpike; the evidence pages nobody."""
    samples = 6 * 120
    runs = {
        name: replay(ev, RULES, DemoModel(100, seed=4), samples)
        for name, ev in evaluators(RULES).items()
    }
    assert runs["before"].pages["ErrorRateSpike"] > 0
    assert sum(runs["after"].pages.values()) == 0
    assert runs["after"].statuses["insufficient"] > 0


def test_a_real_error_spike_still_pages() -> None:
    incident = Incident("acme", "/v1/reports", 20, 600, error_share=0.2)
    run = replay(evaluators(RULES)["after"], RULES, DemoModel(300, 0), 12, (incident,))
    assert run.first_fire("ErrorRateSpike", ("acme", "api", "/v1/reports", ""), 0) == 3 * 30
