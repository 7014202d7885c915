"""The web console's pages: server-rendered HTML with inline SVG charts and inline CSS.

No script, no font, no stylesheet from anywhere else: the pages work offline and under a
strict Content-Security-Policy (``default-src 'none'; style-src 'unsafe-inline';
img-src data:``). They refresh themselves (``<meta http-equiv="refresh">``) at the
cache's interval. Every value shown is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from streams.detectors.funnel.rules import duration_text
from streams.views import SECURITY_SERIES

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:center}
header a{color:#cfe1ff;text-decoration:none}header b{font-size:16px}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px;padding:14px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px 14px;
overflow-x:auto}
h2{font-size:15px;margin:2px 0 8px}table{border-collapse:collapse;width:100%}
td,th{padding:3px 6px;border-bottom:1px solid #eef0f3;text-align:left;font-size:13px}
th{color:#5b6475;font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37}.bad{color:#c62828;font-weight:600}.warn{color:#b26a00}.muted{color:#7a8394}
.pill{display:inline-block;padding:0 6px;border-radius:9px;font-size:12px;background:#eef0f3}
.critical{background:#fde2e2}.high{background:#fdebd3}.medium{background:#fff6cc}
.big{font-size:30px;font-weight:700}svg{width:100%;height:auto}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f} %"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def page(title: str, body: str, refresh_s: float, as_of: str = "") -> str:
    refresh = max(1, int(refresh_s))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{refresh}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)} · Vigil</title><style>{_CSS}</style></head><body>"
        '<header><b>Vigil</b><a href="/console">Overview</a>'
        '<a href="/console/security">Security</a>'
        f"<span class=muted>data as of {esc(as_of)} · refreshes every {refresh} s</span>"
        f"</header><main>{body}</main></body></html>"
    )


def section(title: str, inner: str) -> str:
    return f"<section><h2>{esc(title)}</h2>{inner}</section>"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str = "none") -> str:
    if not rows:
        return f"<p class=muted>{esc(empty)}</p>"
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


SECURITY_FIELDS = tuple(SECURITY_SERIES.values())
_COLOURS = ("#2f6fdb", "#e07b00", "#c62828", "#6a3fb5")


def chart(
    points: Sequence[dict[str, Any]],
    fields: Sequence[str],
    *,
    threshold: float | None = None,
    unit: str = "",
    scale: float = 1.0,
    height: int = 150,
) -> str:
    """A time-series line chart as inline SVG: one line per field, a dashed threshold."""
    width, left, bottom = 560, 52, 20
    xs = [int(p["t"]) for p in points]
    values = [
        float(p[f]) * scale
        for p in points
        for f in fields
        if p.get(f) is not None and math.isfinite(float(p[f]))
    ]
    if not xs or not values:
        return "<p class=muted>no data in the last hour</p>"
    top = max([*values, (threshold or 0) * scale]) * 1.1 or 1.0
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1

    def x(t: int) -> float:
        return left + (t - x0) / span * (width - left - 8)

    def y(v: float) -> float:
        return 6 + (1 - v / top) * (height - bottom - 6)

    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - 8}" y2="{y(0):.1f}" stroke="#ccd"/>',
    ]
    for frac in (0.5, 1.0):
        v = top / 1.1 * frac
        parts.append(
            f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#7a8394">{_tick(v)}{esc(unit)}</text>'
            f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - 8}" y2="{y(v):.1f}" '
            'stroke="#eef0f3"/>'
        )
    for t in (x0, x1):
        label = datetime.fromtimestamp(t, tz=UTC).strftime("%H:%M")
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 4}" font-size="10" '
            f'text-anchor="{"start" if t == x0 else "end"}" fill="#7a8394">{label}</text>'
        )
    if threshold is not None:
        ty = y(threshold * scale)
        parts.append(
            f'<line x1="{left}" y1="{ty:.1f}" x2="{width - 8}" y2="{ty:.1f}" '
            'stroke="#c62828" stroke-dasharray="5 4"/>'
        )
    for colour, f in zip(_COLOURS, fields, strict=False):
        pts = " ".join(
            f"{x(int(p['t'])):.1f},{y(float(p[f]) * scale):.1f}"
            for p in points
            if p.get(f) is not None and math.isfinite(float(p[f]))
        )
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{pts}"/>')
    legend = " ".join(
        f'<span style="color:{c}">■ {esc(f)}</span>' for c, f in zip(_COLOURS, fields, strict=False)
    )
    if threshold is not None:
        legend += " <span class=bad>- - threshold</span>"
    parts.append("</svg>")
    return "".join(parts) + f"<div>{legend}</div>"


def _tick(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 else f"{v:.2g}"


def _severity(sev: str) -> str:
    return f'<span class="pill {esc(sev)}">{esc(sev)}</span>'


def _threshold_of(slo: Sequence[dict[str, Any]], sli: str) -> float | None:
    for rule in slo:
        if rule["sli"] == sli and rule["op"] == ">" and rule["threshold"] is not None:
            return float(rule["threshold"])
    return None


def slo_table(slo: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in slo:
        compliance = r["compliance"]
        cls = "muted" if compliance is None else ("ok" if compliance >= 0.99 else "bad")
        streak = r["consecutive_breaches"]
        threshold = r["threshold"]
        rows.append(
            [
                esc(r["rule"]),
                esc(f"{r['sli']} {r['op']} {threshold:g}" if threshold is not None else ""),
                f'<span class="num {cls}">{_pct(compliance, 2)}</span>',
                f'<span class="num {"bad" if streak else "ok"}">{streak}</span>',
                f'<span class="num">{r["keys_failing"]}</span>',
            ]
        )
    return table(["rule", "objective", "compliance 24 h", "consecutive breaches", "keys failing"],
                 rows, "no SLO samples yet")  # fmt: skip


def alerts_table(alerts: Sequence[dict[str, Any]], tenant_links: bool = True) -> str:
    rows = []
    for a in alerts:
        tenant = esc(a["tenant_id"])
        if tenant_links and a["tenant_id"]:
            tenant = f'<a href="/console/tenants/{quote(a["tenant_id"])}">{tenant}</a>'
        status = "bad" if a["status"] == "firing" else "ok"
        rows.append(
            [
                esc(a["time"][11:19]),
                f'<span class="{status}">{esc(a["status"])}</span>',
                _severity(a["severity"]),
                f'<a href="/alerts/{esc(a["fingerprint"])}">{esc(a["alertname"])}</a>',
                tenant,
            ]
        )
    return table(["event time", "status", "severity", "alert", "tenant"], rows, "no alerts")


def whose(incident: dict[str, Any]) -> str:
    """An incident's tenant, or the tenants it spans (a release's incident has none)."""
    return str(incident["tenant_id"]) or ", ".join(incident.get("tenants", ()))


def incidents_table(incidents: Sequence[dict[str, Any]]) -> str:
    rows = [
        [esc(i["incident_id"]), _severity(i["severity"]), esc(i["status"]), esc(whose(i)),
         esc(", ".join(i["alertnames"])), esc(i["detected_at"][11:19])]
        for i in incidents
    ]  # fmt: skip
    return table(["incident", "severity", "status", "tenant", "alerts", "detected"], rows,
                 "no open incidents")  # fmt: skip


def funnels_html(funnels: Sequence[dict[str, Any]]) -> str:
    if not funnels:
        return "<p class=muted>no funnel cohorts yet</p>"
    out = []
    for f in funnels:
        rows = []
        for s in f["steps"]:
            conv, below = s["in_time_conversion"], s["alert_below"]
            small = s["judged"] < s["min_sample"]  # the alert and the score wait for more
            cls = (
                "muted"
                if conv is None or below is None or small
                else ("bad" if conv < below else "ok")
            )
            timely = (
                f'<span class="num {cls}">{_pct(conv)}</span> '
                f"<span class=muted>({s['judged']:,} in "
                f"{duration_text(s['within_s'] * 1000)})</span>"
                if s["within_s"]
                else "<span class=muted>n/a</span>"
            )
            rows.append(
                [esc(s["step"]), f'<span class="num">{s["reached"]:,}</span>',
                 f'<span class="num">{s["pending"]:,}</span>',
                 f'<span class="num">{_pct(s["conversion"])}</span>', timely,
                 esc("" if below is None else f"≥ {100 * below:g} %")]
            )  # fmt: skip
        head = ["step", "reached", "pending", "of previous", "within X, judged now",
                "alert below"]  # fmt: skip
        out.append(f"<p><b>{esc(f['funnel'])}</b> · {f['entered']:,} entered (today and "
                   "yesterday's cohorts)</p>" + table(head, rows))  # fmt: skip
    return "".join(out)


def canary_table(canary: Sequence[dict[str, Any]]) -> str:
    rows = []
    for c in canary:
        cls = {"Pass": "ok", "Fail": "bad", "Marginal": "warn"}.get(c["verdict"], "muted")
        rows.append([esc(c["service"]), esc(c["release"]),
                     f'<span class="{cls}">{esc(c["verdict"])}</span>',
                     f'<span class="num">{c["score"]:g}</span>',
                     f'<span class="num">{c["failing_intervals"]}</span>',
                     esc(c["interval_end"][11:19])])  # fmt: skip
    return table(["service", "release", "verdict", "score", "failing intervals", "as of"], rows,
                 "no canary releases")  # fmt: skip


def pii_html(findings: dict[str, int]) -> str:
    total = sum(findings.values())
    cls = "ok" if total == 0 else "bad"
    rows = [[esc(e), f'<span class="num bad">{n:,}</span>'] for e, n in findings.items()]
    return (
        f'<p><span class="big {cls}">{total:,}</span> findings in 24 h — must be 0; each '
        "was redacted before storage (never stored raw)</p>"
        + table(["entity", "findings"], rows, "none")
    )


def overview_page(doc: dict[str, Any], refresh_s: float) -> str:
    slo = doc["slo"]
    series = doc["series"]
    firing = doc["firing"]
    ingest = doc["ingest"]
    tenants = table(
        ["tenant", "health score"],
        [[f'<a href="/console/tenants/{quote(t["tenant_id"])}">{esc(t["tenant_id"])}</a>',
          f'<span class="num {"ok" if t["score"] >= 90 else "bad"}">{t["score"]:g}</span>']
         for t in doc["tenants"]],
        "no tenant traffic in 24 h",
    )  # fmt: skip
    firing_rows = [[esc(name), f'<span class="num bad">{n}</span>'] for name, n in firing.items()]
    dead = ingest["dead_letters_last_hour"]
    body = "".join(
        [
            section("SLO compliance", slo_table(slo)),
            section("Latency (all tenants, per minute)",
                    chart(series, ["p50_ms", "p95_ms", "p99_ms"],
                          threshold=_threshold_of(slo, "p95_ms"), unit=" ms")),
            section("Error rate (5xx share)",
                    chart(series, ["error_rate"], threshold=_threshold_of(slo, "error_rate"),
                          unit=" %", scale=100)),
            section("Firing now", table(["alert", "firing"], firing_rows, "nothing firing")),
            section("Open incidents", incidents_table(doc["incidents"])),
            section("Canary verdicts", canary_table(doc["canary"])),
            section("PII findings", pii_html(doc["pii_findings"])),
            section("Onboarding funnel", funnels_html(doc["funnels"])),
            section("Tenants", tenants),
            section("Analytics health",
                    f"<p>{ingest['events_last_hour']:,} events stored in the last hour · "
                    f"{sum(dead.values()):,} dead letters</p>"
                    + table(["reason", "dead letters"],
                            [[esc(r), f'<span class="num">{n:,}</span>'] for r, n in dead.items()],
                            "no dead letters in the last hour")),
            section("Recent alerts", alerts_table(doc["alerts"])),
        ]
    )  # fmt: skip
    return page("Overview", body, refresh_s, doc["as_of"])


def tenant_page(doc: dict[str, Any], refresh_s: float) -> str:
    h = doc["health"]
    budget = h["error_budget"]
    parts = table(
        ["part", "value", "weight"],
        [[esc(k), f'<span class="num">{100 * v:.1f} %</span>', esc(w)]
         for k, v, w in ((k, h["parts"][k], w) for k, w in (("slo", "0.4"), ("budget", "0.3"),
                                                            ("security", "0.2"),
                                                            ("funnel", "0.1")))],
    )  # fmt: skip
    score_cls = "ok" if h["score"] >= 90 else "bad"
    body = "".join(
        [
            section(f"Health of {doc['tenant_id']}",
                    f'<p><span class="big {score_cls}">{h["score"]:g}</span> / 100</p>' + parts),
            section("Error budget",
                    f"<p>{_pct(budget['left'])} left of {budget['period_days']:g} days at "
                    f"{100 * budget['objective']:g} % · {budget['errors']:,} 5xx in "
                    f"{budget['requests']:,} requests (burned {budget['burned']:.2f}x)</p>"),
            section("SLO compliance", slo_table(doc["slo"])),
            section("Latency (per minute)",
                    chart(doc["series"], ["p50_ms", "p95_ms", "p99_ms"],
                          threshold=_threshold_of(doc["slo"], "p95_ms"), unit=" ms")),
            section("Error rate (5xx share)",
                    chart(doc["series"], ["error_rate"],
                          threshold=_threshold_of(doc["slo"], "error_rate"), unit=" %", scale=100)),
            section("Onboarding funnel", funnels_html(doc["funnels"])),
            section("PII findings", pii_html(doc["pii_findings"])),
            section("Open incidents", incidents_table(doc["incidents"])),
            section("Recent alerts", alerts_table(doc["alerts"], tenant_links=False)),
        ]
    )  # fmt: skip
    return page(f"Tenant {doc['tenant_id']}", body, refresh_s, doc["as_of"])


def security_page(doc: dict[str, Any], refresh_s: float) -> str:
    crossings = table(
        ["actor tenant", "resource tenant", "target", "blocked", "attempts", "last"],
        [[esc(c["actor_tenant_id"]), esc(c["resource_tenant_id"]), esc(c["target"]),
          '<span class="ok">yes</span>' if c["blocked"] else '<span class="bad">NO</span>',
          f'<span class="num">{c["attempts"]}</span>', esc(c["last"])]
         for c in doc["cross_tenant"]],
        "no cross-tenant access",
    )  # fmt: skip
    rules = table(
        ["rule", "alert", "episodes", "firing", "peak"],
        [[esc(r["rule"]), esc(r["alertname"]), f'<span class="num">{r["episodes"]}</span>',
          f'<span class="num {"bad" if r["firing"] else ""}">{r["firing"]}</span>',
          f'<span class="num">{r["peak"]}</span>'] for r in doc["by_rule"]],
        "no detections",
    )  # fmt: skip
    prefixes = table(
        ["IP prefix", "auth failures (24 h)"],
        [[esc(p["ip_prefix"]), f'<span class="num">{p["auth_failures"]:,}</span>']
         for p in doc["top_ip_prefixes"]],
        "no authentication failures",
    )  # fmt: skip
    body = "".join(
        [
            section("Security events (per minute)", chart(doc["series"], SECURITY_FIELDS)),
            section("Cross-tenant access attempts", crossings),
            section("Detections by rule", rules),
            section("Top attacking IP prefixes", prefixes),
        ]
    )
    return page("Security", body, refresh_s, doc["as_of"])
