"""`make run`'s demo, as a user watches it: its scheduled incidents become alerts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from streams.demo import PII_NAME, PII_SAMPLE, PII_TOKEN
from tests.integration.test_cli import vigil

pytestmark = pytest.mark.integration


SECURITY = {
    "CrossTenantAccess",
    "BruteForceAttack",
    "AccountTakeoverSuspected",
    "FailedLoginSpike",
    "UserEnumeration",
    "WebhookSignatureFailures",
    "WebhookSignatureMissing",
}
#: acme's e-mail verification collapses from 30 s: judged once its 10 minutes have passed
FUNNEL = {"FunnelStageConversionLow"}
#: the web service's canary release goes bad from 150 s (for 300 s): judged per minute
CANARY = {"CanaryVerdictFail"}


def alertmanager_view(
    stack: dict[str, object], found: list[dict[str, object]]
) -> tuple[set[tuple[str, str]], dict[str, set[str]], dict[str, Any]]:
    """What the running stack's Alertmanager shows (amtool, as a user would), the
    evidence page behind a P95LatencyBreach's generatorURL, and the webhook receiver's
    answers to requests that do not come from the stack's Alertmanager."""
    url = str(stack["alertmanager_url"])
    assert url.startswith("http://127.0.0.1:")
    fingerprint = found[0]["data"]["fingerprint"]  # type: ignore[index]
    deadline = time.monotonic() + 30
    alerts: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        shown = subprocess.run(
            ["amtool", f"--alertmanager.url={url}", "alert", "query", "-o", "json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        alerts = json.loads(shown.stdout)
        if any(a["annotations"].get("fingerprint") == fingerprint for a in alerts):  # type: ignore[attr-defined]
            break
        time.sleep(1)
    in_am = {(a["labels"]["alertname"], a["labels"].get("tenant_id", "")) for a in alerts}  # type: ignore[index,attr-defined]
    receivers: dict[str, set[str]] = {}
    for a in alerts:
        name = a["labels"]["alertname"]  # type: ignore[index]
        receivers.setdefault(name, set()).update(r["name"] for r in a["receivers"])  # type: ignore[attr-defined]
    generator = next(
        a["generatorURL"] for a in alerts
        if a["annotations"].get("fingerprint") == fingerprint  # type: ignore[attr-defined]
    )  # fmt: skip
    with urllib.request.urlopen(str(generator), timeout=10) as r:  # noqa: S310
        evidence = json.loads(r.read())
    hook = {
        "version": "4", "receiver": "daily-report", "status": "firing", "groupKey": "{}:{}",
        "alerts": [{"status": "firing", "labels": {"alertname": "Forged", "severity": "low"},
                    "annotations": {"summary": "a forged alert", "fingerprint": "e" * 32},
                    "startsAt": "2026-12-06T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": "abc"}],
    }  # fmt: skip
    for auth in ({}, {"Authorization": "Bearer not-the-token"}):  # not from its Alertmanager
        request = urllib.request.Request(
            f"http://127.0.0.1:{stack['web_port']}/alertmanager/webhook",
            data=json.dumps(hook).encode(), headers={"Content-Type": "application/json", **auth},
        )  # fmt: skip
        try:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310
            pytest.fail("the webhook read a notification without the stack's token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 403, exc
    return in_am, receivers, evidence


def hand_back_a_low_alert(stack: dict[str, object]) -> None:
    """A low alert posted to the stack's Alertmanager: routed to the daily-report webhook
    (after its 30-s group wait), which bears the stack's token to the worker."""
    low = [{"labels": {"alertname": "Example", "severity": "low"},
            "annotations": {"summary": "a low alert", "fingerprint": "f" * 32}}]  # fmt: skip
    request = urllib.request.Request(  # noqa: S310
        f"{stack['alertmanager_url']}/api/v2/alerts", data=json.dumps(low).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
        assert r.status == 200


def run_dashboard_sql(base: str) -> dict[tuple[str, str], tuple[int, Any]]:
    """Every ClickHouse panel of infra/grafana/dashboards, macros expanded as the pinned
    plugin expands them (last 3 hours, 60-s interval, tenant acme), on the demo's engine
    through the worker's read-only /query: (status, answer) per (dashboard, panel)."""
    from datetime import UTC, datetime, timedelta

    from infra.grafana import dashboards as grafana
    from tests.grafana_macros import expand_sql

    end = datetime.now(UTC) + timedelta(minutes=5)
    start = end - timedelta(hours=3)
    out: dict[tuple[str, str], tuple[int, Any]] = {}
    for text in grafana.render().values():
        doc = json.loads(text)
        for panel in doc["panels"]:
            target = panel["targets"][0]
            if "rawSql" not in target:
                continue
            sql = expand_sql(target["rawSql"], start, end, 60, "acme")
            key = (doc["uid"], panel["title"])
            # the columns from DESCRIBE (they do not depend on rows), the rows from the query
            described = post_query(base, f"DESCRIBE ({sql})")
            answer = post_query(base, sql)
            if described[0] != 200 or answer[0] != 200:
                out[key] = (described[0] if described[0] != 200 else answer[0], (described, answer))
                continue
            names = [row[0] for row in described[1]["rows"]]
            out[key] = (200, {"columns": names, "rows": answer[1]["rows"]})
    return out


def post_query(base: str, sql: str) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310
        base + "/query", data=json.dumps({"sql": sql}).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as r:  # noqa: S310
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def call(base: str, path: str, token: str, post: bool = False) -> tuple[int, str]:
    """(status, body) of a request bearing ``token`` (none when empty)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(  # noqa: S310
        base + path, headers={**headers, "Content-Type": "application/json"},
        data=b"{}" if post else None, method="POST" if post else "GET",
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as r:  # noqa: S310
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_demo_incidents_page_and_pii_is_stored_nowhere_raw(tmp_path: Path) -> None:
    """The demo in compressed event time (10x: its first incident round in about a
    minute), through the real broker and worker. The spike on acme /v1/reports (from
    20 s, for 120 s) breaches p95 > 500 ms for three 30-s samples: a critical
    P95LatencyBreach with auto_rollback, visible with `vigil alerts` while the stack runs
    and in ClickHouse after it stops. The planted PII (from 40 s) raises
    PIILeakageDetected (an e-mail address, a customer's name and a GitHub token in one
    support ticket), and none of those raw values is in a table, on a topic or in a
    log. Each security incident raises its alerts; acme's e-mail verification collapse
    (from 30 s) raises FunnelStageConversionLow once its 10 minutes have passed, and
    `vigil funnel` shows the stage firing; nothing else fires."""
    env = {"VIGIL_DATA_DIR": str(tmp_path / ".vigil"), "VIGIL_WEB_PORT": "0"}
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "up",
            "--demo",
            "--rate",
            "300",
            "--speed",
            "10",
            "--for",
            "100",
        ],
        env={**os.environ, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    found: list[dict[str, object]] = []
    pii: list[dict[str, object]] = []
    funnel: list[dict[str, object]] = []
    names: set[str] = set()
    recurring: set[str] = set()  # the alerts an AlertRecurring escalated
    topics = ""
    handed_back = False
    try:
        deadline = time.monotonic() + 150
        while (
            time.monotonic() < deadline
            and not (found and names >= SECURITY | FUNNEL | CANARY)
            and up.poll() is None
        ):
            time.sleep(5)
            if not (tmp_path / ".vigil" / "stack.json").exists():
                continue
            if not handed_back:
                hand_back_a_low_alert(json.loads((tmp_path / ".vigil" / "stack.json").read_text()))
                handed_back = True
            shown = vigil("alerts", "--json", "--idle-timeout", "1", env=env, cwd=tmp_path)
            topics = shown.stdout
            for line in shown.stdout.splitlines():
                alert = json.loads(line)
                data = alert["data"]
                names.add(data["alertname"])
                if data["alertname"] == "AlertRecurring":
                    recurring.add(data["labels"]["source_alertname"])
                if data["alertname"] == "PIILeakageDetected":
                    pii.append(data)
                if data["alertname"] == "FunnelStageConversionLow":
                    funnel.append(data)
                if (
                    data["alertname"] == "P95LatencyBreach"
                    and data["labels"].get("route") == "/v1/reports"
                ):
                    found.append(alert)
        stack = json.loads((tmp_path / ".vigil" / "stack.json").read_text())
        in_am, receivers, evidence = alertmanager_view(stack, found)
        url = f"http://127.0.0.1:{stack['web_port']}/api/v1/canary?service=web&release=2.8.0"
        with urllib.request.urlopen(url, timeout=10) as r:
            canary = json.loads(r.read())
        with urllib.request.urlopen(url + "&tenant=acme", timeout=10) as r:  # noqa: S310
            canary_acme = json.loads(r.read())
        unknown = vigil("incidents", "ack", "inc-nope", "--by", "test", env=env, cwd=tmp_path)
        hook = urllib.request.Request(  # a PagerDuty v3 event that is no acknowledgement
            f"http://127.0.0.1:{stack['web_port']}/pagerduty/webhook",
            data=json.dumps({"event": {"event_type": "incident.triggered"}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(hook, timeout=10) as r:  # noqa: S310
            pagerduty = json.loads(r.read())
        # the console, its JSON and the terminal board, from the worker that owns the engine
        base = f"http://127.0.0.1:{stack['web_port']}"
        pages: dict[str, tuple[str, str]] = {}
        for path in ("/console", "/console/security", "/console/tenants/acme"):
            with urllib.request.urlopen(base + path, timeout=60) as r:  # noqa: S310
                pages[path] = (r.headers.get("Content-Security-Policy", ""), r.read().decode())
        with urllib.request.urlopen(base + "/api/v1/views/overview", timeout=60) as r:  # noqa: S310
            overview = json.loads(r.read())
        with urllib.request.urlopen(base + "/api/v1/views/security", timeout=60) as r:  # noqa: S310
            security_view = json.loads(r.read())
        acme_url = base + "/api/v1/views/overview?tenant=acme"
        with urllib.request.urlopen(acme_url, timeout=60) as r:  # noqa: S310
            acme_view = json.loads(r.read())
        board_text = vigil("status", "--tenant", "acme", env=env, cwd=tmp_path)
        grafana_sql = run_dashboard_sql(base)
        from tests.browser import open_console

        in_browser = open_console(base)  # Debian's headless Chromium
        # the tenant-scoped API and its tokens
        made = {}
        for tenant, ttl in (("acme", "90d"), ("globex", "90d"), ("hooli", "1s")):
            created = vigil("token", "create", "--tenant", tenant, "--ttl", ttl, "--by", "test",
                            env=env, cwd=tmp_path)  # fmt: skip
            assert created.returncode == 0, created.stderr
            made[tenant] = created.stdout.splitlines()[1].strip()
        acme_token = made["acme"]
        tenant_api = {
            doc: call(base, f"/api/v1/tenants/acme/{doc}", acme_token) for doc in ("health", "slo")
        }
        fp = "f" * 32
        refused = {
            path: call(base, path, acme_token, post)[0]
            for path, post in (
                ("/api/v1/tenants/globex/health", False), ("/api/v1/tenants/globex/slo", False),
                ("/console", False), ("/console/security", False),
                ("/console/tenants/acme", False), ("/api/v1/views/overview?tenant=acme", False),
                ("/api/v1/views/security", False), ("/api/v1/canary?service=web&release=2.8.0",
                                                    False),
                ("/metrics", False), ("/healthz", False), ("/stats", False),
                (f"/alerts/{fp}", False), ("/query", True), ("/api/v1/incidents/x/ack", True),
                ("/admin/tokens/list", True), ("/pagerduty/webhook", True),
                ("/alertmanager/webhook", True),
            )
        }  # fmt: skip
        invalid = call(base, "/api/v1/tenants/acme/health", "vgt_" + "0" * 12 + "_" + "A" * 43)
        missing = call(base, "/api/v1/tenants/acme/health", "")
        time.sleep(1.2)
        expired = call(base, "/api/v1/tenants/hooli/health", made["hooli"])
        listed = vigil("token", "list", "--tenant", "globex", env=env, cwd=tmp_path)
        globex_before = call(base, "/api/v1/tenants/globex/health", made["globex"])[0]
        vigil("token", "revoke", listed.stdout.split()[0], env=env, cwd=tmp_path)
        revoked_after = time.monotonic()
        revoked = call(base, "/api/v1/tenants/globex/health", made["globex"])
        while revoked[0] == 200 and time.monotonic() - revoked_after < 10:
            time.sleep(0.5)
            revoked = call(base, "/api/v1/tenants/globex/health", made["globex"])
        revoked_in = time.monotonic() - revoked_after
        counted = call(base, "/metrics", "")[1]
        stored_tokens = vigil("query", "SELECT * FROM vigil.api_tokens", "--format", "json",
                              env=env, cwd=tmp_path).stdout  # fmt: skip
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=120)
    assert found, output
    # the console: every page under its CSP (nothing loaded from elsewhere), with data
    from streams.console import CSP

    assert all(csp == CSP for csp, _ in pages.values()), pages.keys()
    assert "SLO compliance" in pages["/console"][1] and "<polyline" in pages["/console"][1]
    assert "Health of acme" in pages["/console/tenants/acme"][1]
    assert "initech" in pages["/console/security"][1]
    assert overview["series"] and overview["series"][-1]["p95_ms"] > 0
    assert set(overview["firing"]) & names, (overview["firing"], names)
    # acme's e-mail verification collapse shows on its page as its alert judges it
    verified = acme_view["funnels"][0]["steps"][1]
    assert verified["judged"] >= 30 and verified["in_time_conversion"] < 0.8, verified
    assert acme_view["health"]["parts"]["funnel"] < 1
    acme_score = {t["tenant_id"]: t["score"] for t in overview["tenants"]}["acme"]
    assert 0 <= acme_score < 100  # acme's latency incident and cross-tenant read cost it
    assert sum(overview["pii_findings"].values()) >= 1  # the demo's PII leak, redacted
    crossing = security_view["cross_tenant"][0]
    assert (crossing["actor_tenant_id"], crossing["resource_tenant_id"]) == ("initech", "acme")
    assert security_view["top_ip_prefixes"][0]["ip_prefix"].startswith("203.0.113.")
    assert len(security_view["series"]) == 60  # the brute force shows in its chart
    assert max(m["auth_failures"] for m in security_view["series"]) >= 50
    assert board_text.returncode == 0, board_text.stderr
    # in a real browser: every page renders with its charts, nothing fetched from elsewhere,
    # no console error (the CSP would report a blocked script or style there)
    for name, page in in_browser.items():
        assert page.title.endswith("· Vigil") and page.sections, (name, page)
        assert page.errors == [] and page.external == [], (name, page)
    assert in_browser["overview"].charts >= 4 and in_browser["tenant"].charts >= 4
    assert in_browser["security"].charts >= 1
    assert "Cross-tenant access attempts" in in_browser["security"].sections
    # every ClickHouse panel of the Grafana dashboards runs on the demo's engine and
    # returns the columns it declares; the key time series have data
    from infra.grafana.dashboards import COLUMNS

    assert len(grafana_sql) == len(COLUMNS) >= 14
    for key, (status, answer) in grafana_sql.items():
        assert status == 200, (key, answer)
        assert tuple(answer["columns"]) == COLUMNS[key], (key, answer["columns"])
    for key in (("vigil-performance", "Latency of ${tenant}"),
                ("vigil-canary", "p95 by cohort"), ("vigil-security", "Detections by rule"),
                ("vigil-business", "Requests per tenant")):  # fmt: skip
        assert grafana_sql[key][1]["rows"], key
    # tenant tokens: acme reads its own health and SLOs, and nothing else, ever
    assert {doc: status for doc, (status, _) in tenant_api.items()} == {"health": 200, "slo": 200}
    health_doc = json.loads(tenant_api["health"][1])
    assert health_doc["tenant_id"] == "acme" and 0 <= health_doc["score"] <= 100
    assert json.loads(tenant_api["slo"][1])["objectives"]
    for _, text in tenant_api.values():  # initech read acme's documents: never named here
        assert not {"initech", "globex", "hooli", "umbrella"} & set(re.findall(r"\w+", text))
    assert all(status == 403 for status in refused.values()), refused
    assert (invalid[0], json.loads(invalid[1])["reason"]) == (401, "invalid")
    assert (missing[0], json.loads(missing[1])["reason"]) == (401, "missing")
    assert (expired[0], json.loads(expired[1])["reason"]) == (401, "expired")
    assert globex_before == 200 and json.loads(revoked[1])["reason"] == "revoked", revoked
    assert revoked_in < 5, revoked_in  # VIGIL_TOKEN_REFRESH_S = 2
    forbidden = re.search(r'vigil_tenant_api_requests_total\{outcome="forbidden"\} (\S+)', counted)
    assert forbidden and float(forbidden.group(1)) >= len(refused)
    assert not any(token in stored_tokens for token in made.values())  # only keyed hashes
    assert '"token_hash"' in stored_tokens
    assert "tenant acme  health" in board_text.stdout and "SLO compliance" in board_text.stdout
    # the demo's criticals are in the local Alertmanager, routed to their receivers
    assert ("P95LatencyBreach", "acme") in in_am, in_am
    assert {"critical", "pagerduty-performance", "slack-rollup"} <= receivers["P95LatencyBreach"]
    assert "pagerduty-security" in receivers["CrossTenantAccess"]
    # its generatorURL opens the alert's transitions and evidence on the worker
    assert evidence["transitions"][-1]["alertname"] == "P95LatencyBreach"
    assert "latency_windows" in evidence["transitions"][-1]["evidence"]
    # the bad canary opened an incident with its timeline and time to detect
    assert unknown.returncode != 0 and "no open incident inc-nope" in unknown.stderr
    assert pagerduty["acknowledged"] is None
    listed = vigil("incidents", "list", "--all", "--format", "json", env=env, cwd=tmp_path)
    incidents = [json.loads(line) for line in listed.stdout.splitlines()]
    canary_incidents = [i for i in incidents if "CanaryVerdictFail" in i["alertnames"]]
    assert canary_incidents, incidents
    shown = vigil("incidents", "show", canary_incidents[0]["incident_id"], env=env, cwd=tmp_path)
    assert "opened: CanaryVerdict" in shown.stdout, shown.stdout  # Marginal, then Fail
    assert "first breach (CanaryVerdict" in shown.stdout, shown.stdout
    assert canary_incidents[0]["mttd_s"] is not None
    # one bad release is one incident, not one per tenant: its tenants' verdicts join it
    assert any(len(i["tenants"]) >= 2 for i in canary_incidents), canary_incidents
    # the evidence documents, valid against their JSON Schemas
    import jsonschema

    schemas = Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"
    stage = vigil("evidence", "stage", "--service", "web", "--release", "2.8.0", env=env,
                  cwd=tmp_path)  # fmt: skip
    assert stage.returncode == 0, stage.stderr
    stage_doc = json.loads(stage.stdout)
    jsonschema.validate(stage_doc, json.loads((schemas / "evidence.stage.schema.json").read_text()))
    assert stage_doc["decision"] == "ROLLBACK" and stage_doc["breach_count"] >= 2
    assert {m["metric"] for m in stage_doc["metrics"]} >= {"p50", "p95", "p99", "error_rate"}
    declared = {m["metric"]: m["threshold"] for m in stage_doc["metrics"]}["slo_p95"]
    assert declared.startswith("canary p95 <= 500 ms"), declared  # rules.demo.yaml
    draft = tmp_path / "postmortem.md"
    doc = vigil("evidence", "incident", canary_incidents[0]["incident_id"], "--markdown",
                str(draft), env=env, cwd=tmp_path)  # fmt: skip
    assert doc.returncode == 0, doc.stderr
    incident_doc = json.loads(doc.stdout)
    jsonschema.validate(
        incident_doc, json.loads((schemas / "evidence.incident.schema.json").read_text())
    )
    assert {a["alertname"] for a in incident_doc["alerts"]} >= {"CanaryVerdictFail"}
    assert incident_doc["mttd_s"] is not None and incident_doc["timeline"]
    assert "# Post-mortem draft" in draft.read_text() and "CanaryVerdictFail" in draft.read_text()
    base = vigil("evidence", "baseline", "--service", "web", "--cohort", "baseline",
                 "--minutes", "1440", env=env, cwd=tmp_path)  # fmt: skip
    assert base.returncode == 0, base.stderr
    base_doc = json.loads(base.stdout)
    jsonschema.validate(
        base_doc, json.loads((schemas / "evidence.baseline.schema.json").read_text())
    )
    assert base_doc["requests"] > 1000 and 0 < base_doc["p50_ms"]["avg"] < base_doc["p99_ms"]["avg"]
    notified = vigil(
        "query", "SELECT count() AS n FROM vigil.alert_notifications WHERE receiver = "
        "'daily-report' AND severity = 'low' AND fingerprint = '" + "f" * 32 + "'",
        "--format", "json", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert json.loads(notified.stdout)["n"] == 1  # Alertmanager handed it back, with the token
    forged = vigil("query", "SELECT count() AS n FROM vigil.alert_notifications WHERE "
                   "alertname = 'Forged'", "--format", "json", env=env, cwd=tmp_path)  # fmt: skip
    assert json.loads(forged.stdout)["n"] == 0
    # ... and the daily report lists it with the day's alerts, incidents and dead letters
    daily = vigil("report", "daily", "--format", "json", env=env, cwd=tmp_path)
    assert daily.returncode == 0, daily.stderr
    summary = json.loads(daily.stdout)
    assert {"alertname": "Example", "tenant_id": "", "n": 1} in summary["low_alerts_handed_back"]
    assert summary["dead_letters"] and summary["incidents"]["opened"] >= 1
    monthly = vigil("report", "tenant", "acme", "--month", time.strftime("%Y-%m", time.gmtime()),
                    env=env, cwd=tmp_path)  # fmt: skip
    assert monthly.returncode == 0 and "# SLA report: acme" in monthly.stdout, monthly.stderr
    # every security incident of the round raised its alerts, and nothing else fired
    assert names >= SECURITY | FUNNEL | CANARY, (names, output)
    allowed = {"P95LatencyBreach", "PIILeakageDetected", "CanaryVerdictMarginal"}
    # the demo's incidents come back every round (its event time runs 10x ahead), so one of
    # them may start three times in 30 minutes: AlertRecurring, but only for those
    assert names - {"AlertRecurring"} <= SECURITY | FUNNEL | CANARY | allowed, names
    assert recurring <= SECURITY | FUNNEL | CANARY | allowed, recurring
    assert ("AlertRecurring" in names) == bool(recurring), (names, recurring)
    # the rollout API gives the judge's verdict on the bad release
    assert canary["service"] == "web" and canary["release"] == "2.8.0"
    assert canary["verdict"] in ("Fail", "Marginal", "Pass"), canary
    assert {m["metric"] for m in canary["last_interval"]["metrics"]} >= {"p50", "p95", "p99",
                                                                         "error_rate"}  # fmt: skip
    assert canary["canary_requests"] > 0 and canary["baseline_requests"] > 0
    # and per tenant (the demo turns VIGIL_CANARY_PER_TENANT on): acme's own share of it
    assert canary_acme["tenant_id"] == "acme" and "tenant_id" not in canary
    assert 0 < canary_acme["canary_requests"] < canary["canary_requests"]
    # the funnel incident: acme's e-mail verification, and no other tenant or stage
    assert {(f["labels"]["tenant_id"], f["labels"]["stage"]) for f in funnel} == {  # type: ignore[index]
        ("acme", "auth.email_verified")
    }
    data = found[0]["data"]
    assert isinstance(data, dict)
    assert data["status"] == "firing" and data["severity"] == "critical"
    assert data["auto_rollback"] is True
    assert data["labels"] == {"tenant_id": "acme", "service": "api", "route": "/v1/reports"}
    assert len(data["evidence"]["samples"]) == 3
    assert all(s["value"] > 500 for s in data["evidence"]["samples"])

    table = vigil(
        "funnel", "--tenant", "acme", "--since", "2h", "--format", "json", env=env, cwd=tmp_path
    )
    assert table.returncode == 0, table.stderr
    stages = [json.loads(line) for line in table.stdout.splitlines()]
    assert [s["event_name"] for s in stages][:2] == ["auth.user_registered", "auth.email_verified"]
    assert stages[1]["status"] == "firing" and stages[1]["threshold"] == 0.8
    assert stages[1]["conversion"] < 0.8 and stages[0]["reached"] > 100
    other = vigil("funnel", "--tenant", "globex", "--format", "json", env=env, cwd=tmp_path)
    assert all(json.loads(line).get("status", "ok") == "ok" for line in other.stdout.splitlines())

    verdicts = vigil(
        "query", "SELECT tenant_id, verdict, toUnixTimestamp(interval_end) - (SELECT "
        "toUnixTimestamp(min(ts)) FROM vigil.events WHERE cohort != '') AS end_s FROM "
        "vigil.canary_verdicts FINAL WHERE service = 'web' AND release = '2.8.0' "
        "ORDER BY interval_start, tenant_id",
        "--format", "json", env=env, cwd=tmp_path,
    )  # fmt: skip
    every = [json.loads(line) for line in verdicts.stdout.splitlines()]
    rows = [r for r in every if r["tenant_id"] == ""]  # the service as a whole
    # the stage document is the service's, not a mix with the tenants' verdicts
    assert stage_doc["tenant_id"] == "" and stage_doc["intervals"] == len(rows), stage_doc
    assert {r["tenant_id"] for r in every} > {""}  # and per tenant
    # healthy before the bad release (150 s): never Fail; Fail while it is bad
    assert rows and all(r["verdict"] != "Fail" for r in every if r["end_s"] <= 150), every
    assert any(r["verdict"] == "Fail" and 150 < r["end_s"] <= 600 for r in rows), rows
    stored = vigil(
        "query",
        "SELECT count() AS n FROM vigil.alerts WHERE alertname = 'P95LatencyBreach' "
        "AND labels['route'] = '/v1/reports' AND status = 'firing'",
        "--format",
        "json",
        env=env,
        cwd=tmp_path,
    )
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["n"] >= 1

    assert pii, output
    assert {
        "tenant_id": "umbrella",
        "event_name": "support.ticket_opened",
        "entity": "EMAIL",
        "json_path": "$.properties.message",
    } in [p["labels"] for p in pii]
    # the ticket's note: a customer's name and a GitHub token, each its own alert
    assert {(p["labels"]["entity"], p["labels"]["json_path"]) for p in pii} >= {
        ("PERSON_NAME", "$.properties.note"), ("GITHUB_TOKEN", "$.properties.note"),
    }  # fmt: skip
    raws = (PII_SAMPLE.split()[-1], PII_NAME, PII_TOKEN)  # the e-mail address, name, token
    attacker = "203.0.113.66"  # the brute-force IP: only its hash and /24 are kept
    assert not any(raw in topics or raw in output for raw in raws) and attacker not in topics
    for log in (tmp_path / ".vigil").rglob("*.log"):
        text = log.read_text(errors="replace")
        assert not any(raw in text for raw in raws) and attacker not in text, log
    tables = vigil(
        "query",
        "SELECT name FROM system.tables WHERE database = 'vigil'",
        "--format",
        "csv",
        env=env,
        cwd=tmp_path,
    ).stdout.split()[1:]  # below the header
    assert "pii_findings" in tables and "events" in tables
    for table in tables:
        dump = vigil(
            "query", f"SELECT * FROM vigil.`{table}`", "--format", "csv", env=env, cwd=tmp_path
        )
        assert dump.returncode == 0, dump.stderr
        assert not any(raw in dump.stdout for raw in raws), table
        assert attacker not in dump.stdout, table
    episodes = vigil(
        "query",
        "SELECT alertname, count() AS n FROM vigil.security_detections FINAL "
        "GROUP BY alertname ORDER BY alertname",
        "--format",
        "csv",
        env=env,
        cwd=tmp_path,
    ).stdout
    for name in SECURITY:  # one episode row per alert, at least
        assert f"\n{name}," in episodes, episodes
    redacted = vigil(
        "query",
        "SELECT count() AS n FROM vigil.events WHERE properties LIKE '%[REDACTED:EMAIL]%'",
        "--format",
        "json",
        env=env,
        cwd=tmp_path,
    )
    assert json.loads(redacted.stdout)["n"] >= 1

    # The engine's episodes equal what SQL over the stored events finds — the SQL that
    # `vigil rules sql brute_force` prints: every failed login ends a window (t - 60 s, t]
    # of its IP; the windows counting more than 50 hold, and holding windows within the
    # quiet period (5 min) form one episode.
    windows = vigil("rules", "sql", "brute_force", env=env, cwd=tmp_path).stdout
    assert "RANGE BETWEEN 59999 PRECEDING AND CURRENT ROW" in windows
    holds = vigil(
        "query",
        "SELECT ip_hash, toUnixTimestamp64Milli(window_end) AS t, in_window AS c "
        f"FROM ({windows}\n) WHERE holds ORDER BY ip_hash, t",
        "--format",
        "csv",
        env=env,
        cwd=tmp_path,
    )
    assert holds.returncode == 0, holds.stderr
    expected: list[tuple[str, int, int, int]] = []  # (ip_hash, first hold, last hold, peak)
    for line in holds.stdout.strip().splitlines()[1:]:
        ip, t, c = line.replace('"', "").split(",")
        if expected and expected[-1][0] == ip and int(t) - expected[-1][2] <= 300_000:
            first = expected[-1]
            expected[-1] = (ip, first[1], int(t), max(first[3], int(c)))
        else:
            expected.append((ip, int(t), int(t), int(c)))
    rows = vigil(
        "query",
        "SELECT group_key, toUnixTimestamp64Milli(first_hold), "
        "toUnixTimestamp64Milli(last_hold), peak, status FROM vigil.security_detections FINAL "
        "WHERE alertname = 'BruteForceAttack' ORDER BY group_key, first_hold",
        "--format",
        "csv",
        env=env,
        cwd=tmp_path,
    ).stdout
    got = [line.replace('"', "").split(",") for line in rows.strip().splitlines()[1:]]
    assert expected and len(got) == len(expected), (got, expected)
    for (ip, first, last, peak, status), want in zip(got, expected, strict=True):
        assert (ip, int(first)) == want[:2]
        if status == "resolved":  # a firing row was written at its first holding window
            assert (int(last), int(peak)) == want[2:]
