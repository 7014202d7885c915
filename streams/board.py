"""The terminal board: the console's overview (or one tenant's page) rendered with rich.

``vigil status`` prints it once (``--follow``: redraws it in place at the console's
refresh interval); ``vigil up`` shows it instead of the scrolling status line when its
stdout is a terminal. It reads the same JSON documents as the web console
(``/api/v1/views/overview[?tenant=T]``), so both always agree.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streams.console import whose
from streams.errors import VigilError

_BARS = "▁▂▃▄▅▆▇█"


def fetch(url: str, token: str = "", timeout_s: float = 10.0) -> dict[str, Any]:
    """One document from the worker (or ``vigil serve``); errors a user can act on."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (http(s) only)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", str(exc))
        raise VigilError(f"{url}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise VigilError(f"no console at {url} ({exc}): is `vigil up` running?") from None


def sparkline(values: Sequence[float | None], width: int = 40) -> str:
    """The last ``width`` values as block characters scaled to their maximum."""
    shown = [v for v in values if v is not None][-width:]
    if not shown:
        return ""
    top = max(shown) or 1.0
    return "".join(_BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1)))] for v in shown)


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _table(title: str, headers: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=True,
                  title_style="bold", pad_edge=False)  # fmt: skip
    for h in headers:
        table.add_column(h, overflow="fold")
    return table


def _slo(slo: Sequence[dict[str, Any]]) -> Table:
    table = _table("SLO compliance (24 h)", ["rule", "objective", "compliance", "breaches"])
    for r in slo:
        if r["compliance"] is None and not r["threshold"]:
            continue
        ok = r["compliance"] is None or r["compliance"] >= 0.99
        threshold = r["threshold"]
        table.add_row(
            r["rule"],
            f"{r['sli']} {r['op']} {threshold:g}" if threshold is not None else "",
            Text(_pct(r["compliance"], 2), style="green" if ok else "bold red"),
            Text(str(r["consecutive_breaches"]),
                 style="bold red" if r["consecutive_breaches"] else "green"),
        )  # fmt: skip
    return table


def _latency(series: Sequence[dict[str, Any]], threshold: float | None) -> Table:
    table = _table("Latency and errors, per minute (last hour)", ["", "now", "last hour"])
    if not series:
        table.add_row("no data", "", "")
        return table
    last = series[-1]
    for name in ("p50_ms", "p95_ms", "p99_ms"):
        values = [p[name] for p in series]
        now = last[name]
        bad = threshold is not None and name == "p95_ms" and now is not None and now > threshold
        table.add_row(
            name.replace("_ms", ""),
            Text("n/a" if now is None else f"{now:,.0f} ms", style="bold red" if bad else ""),
            sparkline(values),
        )
    table.add_row("5xx", _pct(last["error_rate"], 2), sparkline([p["error_rate"] for p in series]))
    table.add_row("req/min", f"{last['requests']:,}", sparkline([p["requests"] for p in series]))
    return table


def render(doc: dict[str, Any], header: str = "") -> RenderableType:
    """The board for an overview document, or a tenant's when it has ``health``."""
    parts: list[RenderableType] = []
    title = f"Vigil · data as of {doc['as_of']}"
    if "health" in doc:
        h = doc["health"]
        style = "green" if h["score"] >= 90 else "bold red"
        parts.append(
            Text.assemble(
                (f"tenant {doc['tenant_id']}  health ", "bold"), (f"{h['score']:g}/100", style),
                f"  (SLO {_pct(h['parts']['slo'])}, error budget left "
                f"{_pct(h['error_budget']['left'])}, security detections 24 h "
                f"{h['security_detections_24h']}, funnel {_pct(h['parts']['funnel'])})",
            )
        )  # fmt: skip
    p95 = next((r["threshold"] for r in doc["slo"] if r["sli"] == "p95_ms"), None)
    parts += [_slo(doc["slo"]), _latency(doc["series"], p95)]
    firing = _table("Firing now", ["alert", "count"])
    for name, n in doc["firing"].items():
        firing.add_row(Text(name, style="bold red"), str(n))
    if not doc["firing"]:
        firing.add_row(Text("nothing firing", style="green"), "")
    parts.append(firing)
    incidents = _table("Open incidents", ["incident", "sev", "status", "tenant", "alerts"])
    for i in doc["incidents"][:8]:
        incidents.add_row(i["incident_id"], i["severity"], i["status"], whose(i),
                          ", ".join(i["alertnames"]))  # fmt: skip
    parts.append(incidents)
    if "canary" in doc:
        canary = _table("Canary verdicts", ["service", "release", "verdict", "score"])
        for c in doc["canary"]:
            shade = {"Pass": "green", "Fail": "bold red", "Marginal": "yellow"}.get(
                c["verdict"], ""
            )
            canary.add_row(c["service"], c["release"], Text(c["verdict"], style=shade),
                           f"{c['score']:g}")  # fmt: skip
        parts.append(canary)
    findings = sum(doc["pii_findings"].values())
    parts.append(
        Text.assemble(
            ("PII findings 24 h (must be 0): ", "bold"),
            (f"{findings:,}", "bold red" if findings else "green"),
            "  " + ", ".join(f"{e} {n}" for e, n in doc["pii_findings"].items()),
        )
    )
    for f in doc["funnels"]:
        heads = ["step", "reached", "of previous", "within X, judged now", "alert below"]
        funnel = _table(f"Funnel {f['funnel']} ({f['entered']:,} entered)", heads)
        for s in f["steps"]:
            timely, below = s["in_time_conversion"], s["alert_below"]
            bad = timely is not None and below is not None and timely < below
            funnel.add_row(s["step"], f"{s['reached']:,}", _pct(s["conversion"]),
                           Text(_pct(timely), style="bold red" if bad else ""),
                           "" if below is None else f"{100 * below:g}%")  # fmt: skip
        parts.append(funnel)
    if "tenants" in doc:
        tenants = _table("Tenants", ["tenant", "health"])
        for t in doc["tenants"]:
            style = "green" if t["score"] >= 90 else "red"
            tenants.add_row(t["tenant_id"], Text(f"{t['score']:g}", style=style))
        parts.append(tenants)
    if header:
        parts.insert(0, Text(header, style="dim"))
    return Panel(Group(*parts), title=title, title_align="left")
