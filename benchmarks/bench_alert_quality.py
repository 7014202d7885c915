"""False pages per simulated day and detection delay of the SLO rules, before and after
statistical decisions (see ``benchmarks/alert_quality.py``; asserts nothing).

    python -m benchmarks.bench_alert_quality [--days N] [--seeds N]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from benchmarks.alert_quality import (
    DemoModel,
    Incident,
    default_rules,
    evaluators,
    replay,
    severity_of,
)
from streams.demo import SPIKE_FACTOR, SPIKE_ROUTE, SPIKE_TENANT
from streams.detectors.latency.slo import ALL

RATES = (500, 100)  # the demo's default, and a quieter stack with small keys
WARMUP_S = 3600  # incidents start after an hour of history (burn-rate windows)


def scenarios() -> list[tuple[str, Incident, str, bool]]:
    """(label, incident, alert expected, judged on the tenant key)."""
    start = WARMUP_S + 20  # 20 s into a sample, like the demo's spike
    out: list[tuple[str, Incident, str, bool]] = [
        (
            f"demo spike x{SPIKE_FACTOR:g} for 120 s, {SPIKE_TENANT} {SPIKE_ROUTE}",
            Incident(SPIKE_TENANT, SPIKE_ROUTE, start, 120, latency_factor=SPIKE_FACTOR),
            "P95LatencyBreach",
            False,
        )
    ]
    for factor in (2.0, 4.0):
        out.append(
            (
                f"latency x{factor:g} for 10 min, {SPIKE_TENANT} {SPIKE_ROUTE}",
                Incident(SPIKE_TENANT, SPIKE_ROUTE, start, 600, latency_factor=factor),
                "P95LatencyBreach",
                False,
            )
        )
    for tenant, route in (("acme", "/v1/reports"), ("hooli", "/v1/auth/login")):
        for share in (0.02, 0.05, 0.2):
            out.append(
                (
                    f"5xx {share:.0%} for 10 min, {tenant} {route}",
                    Incident(tenant, route, start, 600, error_share=share),
                    "ErrorRateSpike",
                    False,
                )
            )
    out.append(
        (
            "5xx 5% on every hooli route for 30 min",
            Incident("hooli", ALL, start, 1800, error_share=0.05),
            "ErrorBudgetBurnFast",
            True,
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=float, default=2.0, help="simulated days per rate")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per incident")
    args = parser.parse_args()
    rules = default_rules()
    severity = severity_of(rules)
    samples = int(args.days * 86_400 / rules.slo.windows.sample_seconds)
    began = time.perf_counter()

    print(f"clean demo traffic, {args.days:g} simulated days per rate, all keys, default rules")
    print("false pages per simulated day (fire transitions):")
    alerts = sorted(severity)
    header = f"  {'rule':<26} {'severity':<9}" + "".join(
        f" {f'{r}/s before':>13} {f'{r}/s after':>12}" for r in RATES
    )
    print(header)
    runs = {
        (rate, name): replay(ev, rules, DemoModel(rate, seed=rate), samples)
        for rate in RATES
        for name, ev in evaluators(rules).items()
    }
    for alert in alerts:
        cells = ""
        for rate in RATES:
            for name, width in (("before", 13), ("after", 12)):
                run = runs[(rate, name)]
                cells += f" {run.pages[alert] / run.days:>{width}.1f}"
        print(f"  {alert:<26} {severity[alert]:<9}{cells}")
    for rate in RATES:
        after = runs[(rate, "after")].statuses
        total = sum(after.values())
        print(
            f"  verdicts at {rate}/s after: "
            + ", ".join(f"{s} {after[s] / total:.1%}" for s in sorted(after))
        )

    print(
        f"\ndetection delay: seconds from the incident's start to the end of the sample that"
        f" fired / samples closed since the one it started in (median of {args.seeds} seeds;"
        f" - = not fired within 40 min):"
    )
    print(
        f"  {'incident':<52} {'alert':<20}"
        + "".join(f" {f'{r}/s before':>13} {f'{r}/s after':>12}" for r in RATES)
    )
    sample_s = rules.slo.windows.sample_seconds
    horizon = int((WARMUP_S + 20 + 2400) / sample_s)
    for label, incident, alert, tenant_wide in scenarios():
        key = (
            (incident.tenant, ALL, ALL, "")
            if tenant_wide
            else next(
                k
                for k, *_ in DemoModel(100, 0).keys
                if k[0] == incident.tenant and k[2] == incident.route
            )
        )
        cells = ""
        for rate in RATES:
            for name, width in (("before", 13), ("after", 12)):
                delays: list[float] = []
                for seed in range(args.seeds):
                    ev = evaluators(rules)[name]
                    run = replay(ev, rules, DemoModel(rate, seed=seed), horizon, (incident,))
                    at = run.first_fire(alert, key, incident.start_s)
                    delays.append(math.inf if at is None else at - incident.start_s)
                d = statistics.median(delays)
                # samples closed from the one the incident started in to the one that fired
                if d == math.inf:
                    text = "-"
                else:
                    n = math.ceil((incident.start_s % sample_s + d) / sample_s - 1e-9)
                    text = f"{d:.0f} s / {n}"
                cells += f" {text:>{width}}"
        print(f"  {label:<52} {alert:<20}{cells}")
    print(f"\n({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
