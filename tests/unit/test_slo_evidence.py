"""SLO verdicts decided on evidence: samples built the way the latency detector builds
them (status classes and a latency sketch), rules from the default rules file."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

from streams.detectors.latency.sketch import bucket_indices, gamma_for
from streams.detectors.latency.slo import (
    ALL,
    BudgetTracker,
    Sample,
    SloEvaluator,
    Streak,
    Transition,
    load_rules,
)
from streams.detectors.latency.state import Stats

KEY = ("hooli", "auth", "/v1/auth/login", "")
S = 30_000
GAMMA = gamma_for(0.01)


def real_sample(
    i: int, n: int, errors: int = 0, slow: int = 0, fast_ms: float = 90.0, slow_ms: float = 2000
) -> Sample:
    """``n`` requests in sample ``i``: ``errors`` of them 5xx, ``slow`` of them at
    ``slow_ms``, the rest at ``fast_ms``."""
    stats = Stats()
    durations = [slow_ms] * slow + [fast_ms] * (n - slow)
    statuses = [500] * errors + [200] * (n - errors)
    for status, duration, bucket in zip(
        statuses, durations, bucket_indices(durations, GAMMA).tolist(), strict=True
    ):
        stats.add(status, duration, bucket)
    return Sample(
        KEY,
        i * S,
        (i + 1) * S,
        stats.count,
        stats.slis(GAMMA, 30),
        {"error_rate": stats.c5xx, "client_error_rate": stats.c4xx},
        stats.sketch,
        GAMMA,
    )


def statuses(evaluator: SloEvaluator, s: Sample, rule: str) -> str:
    verdicts, _ = evaluator.evaluate(s)
    return next(v.status for v in verdicts if v.rule == rule)


def fired_over(evaluator: SloEvaluator, samples: list[Sample]) -> list[Transition]:
    out: list[Transition] = []
    for s in samples:
        out.extend(evaluator.evaluate(s)[1])
    return out


def test_one_error_in_75_three_times_is_not_a_breach() -> None:
    evaluator = SloEvaluator(load_rules(None).slo)
    samples = [real_sample(i, 75, errors=1) for i in range(3)]
    assert fired_over(evaluator, samples) == []
    verdicts, _ = evaluator.evaluate(real_sample(3, 75, errors=1))
    v = next(v for v in verdicts if v.rule == "ErrorRateSpike")
    # observed 1.3 % > 1 %, but 1 of 75 is what a 0.3 % service shows one time in five
    assert v.status == "insufficient" and v.value > 0.01 and v.hits == 1
    assert 0 < v.lower_bound < 0.01


def test_five_errors_in_75_three_times_pages() -> None:
    evaluator = SloEvaluator(load_rules(None).slo)
    fired = fired_over(evaluator, [real_sample(i, 75, errors=5) for i in range(3)])
    assert [(t.alertname, t.at_ms) for t in fired] == [("ErrorRateSpike", 3 * S)]
    t = fired[0]
    assert [e["hits"] for e in t.evidence] == [5, 5, 5]
    assert all(e["count"] == 75 and 0.01 < e["lower_bound"] < 5 / 75 for e in t.evidence)
    assert "5 of 75 events 5xx" in t.description and "at 95% confidence" in t.description


def test_a_20_event_sample_never_decides_a_p99() -> None:
    evaluator = SloEvaluator(load_rules(None).slo)
    for slow in (0, 1, 5, 20):  # from all fast to all 2 s: never a p99 verdict
        s = real_sample(0, 20, slow=slow)
        verdicts, _ = evaluator.evaluate(s)
        p99 = {v.rule: v.status for v in verdicts if v.sli == "p99_ms"}
        assert p99 == {"p99": "insufficient", "P99LatencyElevated": "insufficient"}
    # the p95 of 20 events is their second-largest: 20 is enough for it
    assert statuses(evaluator, real_sample(1, 20, slow=20), "P95LatencyBreach") == "fail"
    assert statuses(evaluator, real_sample(2, 20), "P95LatencyBreach") == "pass"
    # 100 events: a p99 can be decided
    assert statuses(evaluator, real_sample(3, 100, slow=30), "p99") == "fail"


def test_a_p95_breach_needs_evidence_not_the_slowest_events() -> None:
    evaluator = SloEvaluator(load_rules(None).slo)
    # 2 slow events in 30 is above 5 % (the p95 is 2 s) but proves nothing yet
    s = real_sample(0, 30, slow=2)
    assert s.values["p95_ms"] > 500
    assert statuses(evaluator, s, "P95LatencyBreach") == "insufficient"
    # 12 of 30: the breach is shown
    assert statuses(evaluator, real_sample(1, 30, slow=12), "P95LatencyBreach") == "fail"


def test_insufficient_samples_neither_extend_nor_reset_a_streak() -> None:
    rules = load_rules(None).slo
    evaluator = SloEvaluator(rules)

    def bad(i: int) -> Sample:
        return real_sample(i, 75, errors=6)

    def unsure(i: int) -> Sample:
        return real_sample(i, 75, errors=1)

    def good(i: int) -> Sample:
        return real_sample(i, 75)

    fired = fired_over(evaluator, [bad(0), unsure(1), bad(2), unsure(3), unsure(4), bad(5)])
    assert [(t.action, t.at_ms) for t in fired] == [("fire", 6 * S)]
    # the evidence is the three failing samples, not the insufficient ones between
    assert [e["window_start_ms"] for e in fired[0].evidence] == [0, 2 * S, 5 * S]
    # firing: insufficient samples do not resolve it, three passing ones do
    after = fired_over(evaluator, [unsure(6), good(7), unsure(8), good(9), unsure(10), good(11)])
    assert [(t.action, t.at_ms) for t in after] == [("resolve", 12 * S)]
    # and a pass in the middle of a streak resets it
    evaluator = SloEvaluator(rules)
    assert fired_over(evaluator, [bad(0), bad(1), good(2), bad(3), unsure(4), bad(5)]) == []


def test_the_knobs_per_rule_and_per_override(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        """
slo:
  confidence: 0.95
  min_bad_events: 3
  rules:
    - {id: Err, sli: error_rate, op: ">", threshold: 0.01, for: 1, alert: Err,
       min_bad_events: 1, confidence: 0.9}
    - {id: Strict, sli: error_rate, op: ">", threshold: 0.01, for: 1, alert: Strict}
  overrides:
    - match: {tenant: hooli}
      confidence: {Strict: 0.999}
      min_bad_events: {Strict: 10}
"""
    )
    rules = load_rules(path).slo
    evaluator = SloEvaluator(rules)
    # 2 of 20: the rule's own knobs (1 bad event, 90 %) decide; the default 3 would not
    verdicts, _ = evaluator.evaluate(real_sample(0, 20, errors=2))
    by_rule = {v.rule: v.status for v in verdicts}
    assert by_rule["Err"] == "fail" and by_rule["Strict"] == "insufficient"
    # hooli's override asks 10 bad events: 9 of 100 is not enough, 12 of 100 is
    assert statuses(evaluator, real_sample(1, 100, errors=9), "Strict") == "insufficient"
    assert statuses(evaluator, real_sample(2, 100, errors=12), "Strict") == "fail"
    other = replace(real_sample(3, 100, errors=9), key=("acme", "api", "/x", ""))
    assert statuses(evaluator, other, "Strict") == "fail"


def test_percentile_verdicts_agree_with_the_sketch_value() -> None:
    """Pass exactly when the stored value is within the threshold; fail only above it."""
    rng = random.Random(5)
    evaluator = SloEvaluator(load_rules(None).slo)
    for i in range(300):
        n = rng.randrange(1, 400)
        s = real_sample(i, n, errors=0, slow=rng.randrange(0, n + 1) // rng.choice([1, 5, 40]))
        verdicts, _ = evaluator.evaluate(s)
        for v in verdicts:
            if v.sli in ("p50_ms", "p95_ms", "p99_ms") and v.status != "insufficient":
                assert (v.status == "pass") == (v.value <= v.threshold), v
            if v.status == "fail":
                assert v.value > v.threshold and v.lower_bound > 0


def test_burn_rates_need_evidence_on_both_windows() -> None:
    config = load_rules(None).slo
    evaluator = SloEvaluator(config)
    budget = BudgetTracker(config.availability, 30, config.tenant_windows_s)
    # a small tenant at 0.3 % errors: 1 error in 100 every third sample burns 3.3x on
    # average, but single samples with one error would show 10x "burns"
    statuses_seen: set[str] = set()
    fired: list[Transition] = []
    for i in range(240):
        verdicts, t = evaluator.evaluate_tenant(
            "hooli", i * S, (i + 1) * S, 100, budget, errors=1 if i % 3 == 0 else 0
        )
        statuses_seen |= {v.status for v in verdicts}
        fired.extend(t)
    assert fired == []
    # a real outage: 20 % errors for 10 minutes fires the fast burn alert
    for i in range(240, 260):
        _, t = evaluator.evaluate_tenant("hooli", i * S, (i + 1) * S, 100, budget, errors=20)
        fired.extend(t)
    fast = [x for x in fired if x.action == "fire" and x.alertname == "ErrorBudgetBurnFast"]
    assert len(fast) == 1 and "requests failed over 1h" in fast[0].description


def test_streak_evidence_survives_a_checkpoint_and_old_checkpoints_load() -> None:
    evaluator = SloEvaluator(load_rules(None).slo)
    fired_over(evaluator, [real_sample(i, 75, errors=6) for i in range(2)])
    restored = SloEvaluator(load_rules(None).slo)
    restored.load(evaluator.dump())
    assert restored.streaks == evaluator.streaks
    (streak,) = restored.streaks.values()
    assert [e[3:5] for e in streak.evidence] == [(75, 6), (75, 6)]
    old = Streak.load([2, 0, False, 0, [[0, S, 0.08], [S, 2 * S, 0.08]]])
    assert old.breaches == 2 and math.isnan(old.evidence[0][5])
    assert ALL == "*"
