"""The console's documents and pages without an engine: the health score's formula, the
cache (one build per interval whatever the number of viewers), the token check, the
pages' escaping and charts, and the terminal board."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console as RichConsole

from streams import board, console
from streams.detectors.funnel.rules import FunnelConfig
from streams.views import (
    Console,
    ViewCache,
    ViewConfig,
    bearer_ok,
    health,
    healths,
    security_series,
)

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CFG = ViewConfig(
    database="vigil",
    slo_rules={"P95LatencyBreach": ("p95_ms", ">", 500.0)},
    objective=0.999,
    funnels=FunnelConfig.model_validate(
        {
            "definitions": [
                {
                    "name": "onboarding",
                    "steps": [
                        {"event": "a"},
                        {"event": "b", "alert_below": 0.8, "within": "10m"},
                        {"event": "c", "alert_below": 0.5, "within": "30m"},
                    ],
                }
            ]
        }
    ),
)


class FakeEngine:
    """Answers each query by the first table it names; counts the queries."""

    def __init__(self, answers: dict[str, Sequence[Sequence[Any]]]) -> None:
        self.answers = answers
        self.queries = 0

    async def run(self, sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        self.queries += 1
        table = re.search(r"FROM vigil\.(\w+)", sql)
        return self.answers.get(table.group(1) if table else "", [])


async def test_the_health_score_follows_its_documented_formula() -> None:
    engine = FakeEngine(
        {
            "slo_samples": [("acme", 90, 10)],  # 90 % of the decided samples pass
            # 0.05 % 5xx: half the 0.1 % budget burned
            "latency_windows": [("acme", 100_000, 50), ("globex", 1000, 0)],
            "security_detections": [("acme", 1)],  # one detection: 1 / (1 + 1)
            # judged as the stage alerts judge: stage b 40 of 50 within X (80 %) against
            # 0.8 -> 1.0; stage c 10 of 40 (25 %) against 0.5 -> 0.5
            "funnel_progress": [("acme", [0, 50, 40], [0, 40, 10])],
        }
    )
    h = await health(engine.run, CFG, AT, "acme")
    assert h["parts"] == {"slo": 0.9, "budget": 0.5, "security": 0.5, "funnel": 0.5}
    assert h["score"] == round(100 * (0.4 * 0.9 + 0.3 * 0.5 + 0.2 * 0.5 + 0.1 * 0.5), 1)
    assert h["error_budget"]["burned"] == 0.5
    # every tenant from the same four queries; a quiet one scores 100
    queries = engine.queries
    assert {t: d["score"] for t, d in (await healths(engine.run, CFG, AT)).items()} == {
        "acme": h["score"], "globex": 100.0,
    }  # fmt: skip
    assert engine.queries - queries == 4
    # a stage with fewer than 30 judged journeys does not count yet
    engine.answers["funnel_progress"] = [("acme", [0, 29, 20], [0, 2, 0])]
    assert (await health(engine.run, CFG, AT, "acme"))["parts"]["funnel"] == 1.0


async def test_views_are_built_once_per_interval_whatever_the_viewers() -> None:
    now = [0.0]
    cache = ViewCache(10.0, clock=lambda: now[0])
    built = []

    async def build() -> dict[str, Any]:
        built.append(now[0])
        return {"n": len(built)}

    for _ in range(50):
        assert await cache.get("overview", build) == {"n": 1}
    now[0] = 10.5
    assert await cache.get("overview", build) == {"n": 2}
    assert await cache.get("tenant:acme", build) == {"n": 3}  # per document
    assert cache.builds == 3


async def test_a_console_document_costs_its_queries_once() -> None:
    engine = FakeEngine({})
    service = Console(engine.run, CFG, 60.0)
    await service.security()
    first = engine.queries
    assert first > 0
    for _ in range(20):
        await service.security()
    assert engine.queries == first


async def test_the_security_page_charts_every_minute_of_the_hour_by_kind() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    t0 = int(AT.timestamp()) - 3600  # the first minute of the hour before AT

    async def run(sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        seen.append((sql, params))
        return [(t0 + 60, "security.auth_failure", 7), (t0 + 60, "security.tenant_violation", 1),
                (t0 + 600, "security.auth_failure", 2)]  # fmt: skip

    series = await security_series(run, "vigil", AT)
    assert len(series) == 60 and series[0]["t"] == t0 and series[-1]["t"] == t0 + 59 * 60
    assert series[1] == {"t": t0 + 60, "auth_failures": 7, "access_denied": 0,
                         "tenant_violations": 1, "webhook_signature_failures": 0}  # fmt: skip
    assert series[10]["auth_failures"] == 2 and sum(s["auth_failures"] for s in series) == 9
    sql, params = seen[0]
    assert "signature_valid = 1" in sql and params["at"] == AT  # failed signatures only
    doc = {"as_of": "x", "series": series, "cross_tenant": [], "by_rule": [],
           "top_ip_prefixes": []}  # fmt: skip
    html = console.security_page(doc, 10)
    polylines = re.findall(r'<polyline[^>]*points="([^"]+)"', html)
    assert [len(p.split()) for p in polylines] == [60, 60, 60, 60]


def test_the_token_is_checked_from_the_header_or_the_cookie() -> None:
    assert bearer_ok("s3cret", "Bearer s3cret", "")
    assert bearer_ok("s3cret", "", "s3cret")
    assert not bearer_ok("s3cret", "Bearer wrong", "s3cret")  # the header wins
    assert not bearer_ok("s3cret", "", "")
    assert not bearer_ok("s3cret", "Basic s3cret", "")


def _overview(tenant: str) -> dict[str, Any]:
    series = [
        {"t": 1_796_000_000 + 60 * i, "requests": 100 + i, "error_rate": 0.001 * i,
         "p50_ms": 50.0, "p95_ms": 200.0 + 50 * i, "p99_ms": 400.0 + 60 * i}
        for i in range(12)
    ]  # fmt: skip
    return {
        "as_of": "2026-12-06T12:00:00Z",
        "series": series,
        "slo": [
            {
                "rule": "P95LatencyBreach",
                "sli": "p95_ms",
                "op": ">",
                "threshold": 500.0,
                "compliance": 0.97,
                "pass": 97,
                "fail": 3,
                "keys_failing": 1,
                "consecutive_breaches": 3,
            }
        ],
        "firing": {"P95LatencyBreach": 1},
        "alerts": [
            {
                "time": "2026-12-06T11:59:00Z",
                "status": "firing",
                "severity": "critical",
                "alertname": "P95LatencyBreach",
                "tenant_id": tenant,
                "summary": "s",
                "fingerprint": "f" * 32,
            }
        ],
        "incidents": [],
        "canary": [
            {
                "service": "web",
                "release": "2.8.0",
                "verdict": "Fail",
                "score": 0.0,
                "failing_intervals": 2,
                "interval_end": "2026-12-06T11:59:00Z",
            }
        ],
        "pii_findings": {"EMAIL": 2},
        "funnels": [],
        "ingest": {"events_last_hour": 10, "dead_letters_last_hour": {"schema": 1}},
        "tenants": [{"tenant_id": tenant, "score": 42.0}],
    }


def test_pages_escape_what_they_show_and_draw_their_charts_inline() -> None:
    hostile = "<script>alert(1)</script>"
    html = console.overview_page(_overview(hostile), 10)
    assert hostile not in html and "&lt;script&gt;" in html
    assert "<script" not in html.replace("&lt;script", "")  # no script of its own either
    assert 'http-equiv="refresh" content="10"' in html
    # the latency chart: three lines of 12 points and the dashed p95 threshold
    polylines = re.findall(r'<polyline[^>]*points="([^"]+)"', html)
    assert [len(p.split()) for p in polylines[:3]] == [12, 12, 12]
    assert "stroke-dasharray" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # offline
    assert "2</span> findings" in html and 'class="big bad"' in html


def test_the_terminal_board_shows_the_same_document() -> None:
    out = RichConsole(width=100, record=True, force_terminal=False)
    out.print(board.render(_overview("acme")))
    text = out.export_text()
    for expected in ("SLO compliance", "P95LatencyBreach", "97.00%", "web", "Fail",
                     "PII findings 24 h (must be 0): 2", "acme"):  # fmt: skip
        assert expected in text, expected
    assert board.sparkline([1.0, 2.0, None, 4.0]) == "▂▄█"


async def test_a_tenants_funnel_override_is_its_threshold_on_the_console_too() -> None:
    """The rules file lowers acme's e-mail verification threshold to 5 % (and its minimum
    sample to 10): acme's page and health use them, other tenants keep the funnel's."""
    from streams.detectors.latency.slo import load_rules
    from streams.views import funnels, stage_rule, view_config

    rules = load_rules(None)
    lower = {"auth.email_verified": {"alert_below": 0.05, "min_sample": 10}}
    override = {"match": {"tenant": "acme"}, "funnel": "onboarding", "stages": lower}
    funnel_cfg = FunnelConfig.model_validate(
        {**rules.funnels.model_dump(), "overrides": [override]}
    )
    settings = type("S", (), {"clickhouse_database": "vigil"})()
    cfg = view_config(settings, rules.model_copy(update={"funnels": funnel_cfg}))
    assert stage_rule(cfg, "onboarding", "acme", 1) == (0.05, 10)
    assert stage_rule(cfg, "onboarding", "globex", 1) == (0.8, 30)
    assert stage_rule(cfg, "onboarding", None, 2) == (0.85, 30)
    # 4 of 20 verified in time: 20 % -- below the funnel's 80 %, above acme's 5 %
    steps = [0, 20] + [0] * 6
    good = [0, 4] + [0] * 6
    engine = FakeEngine({"funnel_progress": [("acme", steps, good)],
                         "latency_windows": [("acme", 1000, 0), ("globex", 1000, 0)],
                         "funnel_cohorts": [("onboarding", 40, [40, 10] + [0] * 6,
                                             [20, 5] + [0] * 6, [0] * 8)]})  # fmt: skip
    (acme,) = await funnels(engine.run, cfg, AT, "acme")
    verified = acme["steps"][1]
    assert (verified["alert_below"], verified["min_sample"]) == (0.05, 10)
    assert (verified["judged"], verified["in_time_conversion"]) == (20, 0.2)
    assert (await health(engine.run, cfg, AT, "acme"))["parts"]["funnel"] == 1.0
    engine.answers["funnel_progress"] = [("globex", steps, good)]
    globex = (await health(engine.run, cfg, AT, "globex"))["parts"]["funnel"]
    assert globex == 1.0  # 20 judged: below globex's minimum sample of 30
    engine.answers["funnel_progress"] = [("globex", [0, 40] + [0] * 6, [0, 8] + [0] * 6)]
    globex = (await health(engine.run, cfg, AT, "globex"))["parts"]["funnel"]
    assert globex == 0.25  # 20 % against 80 %
