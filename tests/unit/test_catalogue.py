"""One alert catalogue: every alert Vigil can emit is in it, with a runbook."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.alerts import Annotations
from streams.alerting import AlertPublisher, AlertSpec
from streams.catalogue import CATALOGUE, UnknownAlert, lookup
from streams.detectors.latency.slo import load_rules
from streams.metrics import Metrics
from tests.unit.test_alerting import Topic

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks"
T0 = datetime(2026, 1, 2, tzinfo=UTC)


def test_every_entry_has_a_runbook_that_names_it() -> None:
    for name, entry in CATALOGUE.items():
        path = ROOT / entry.runbook_path
        assert path.is_file(), f"{name}: no runbook at {entry.runbook_path}"
        text = path.read_text()
        assert "**What it means.**" in text and "vigil query" in text, path
        if not entry.runbook:  # its own runbook: titled with its name and severity
            assert text.startswith(f"# {name} ({entry.severity}"), path
    # and no runbook is orphaned
    used = {Path(e.runbook_path).name for e in CATALOGUE.values()} | {"SloRule.md"}
    assert {p.name for p in RUNBOOKS.glob("*.md")} <= used


def test_the_default_rules_alerts_are_catalogued_with_their_severity() -> None:
    rules = load_rules(None)
    for rule in rules.slo.rules:
        if rule.alert is not None:
            assert lookup(rule.alert).severity == rule.severity, rule.alert
            assert lookup(rule.alert).runbook == "", f"{rule.alert} needs a runbook of its own"
    for burn in rules.slo.availability.burn_alerts:
        assert lookup(burn.alert).severity == burn.severity


def emitted_names() -> set[str]:
    """The alert names the code passes to AlertSpec as literals."""
    names: set[str] = set()
    for path in (ROOT / "streams").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", "")) == "AlertSpec"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(str(node.args[0].value))
    return names


def test_every_alert_the_code_emits_is_catalogued() -> None:
    names = emitted_names()
    assert "PIILeakageDetected" in names  # the scan finds literal names
    assert names <= set(CATALOGUE), names - set(CATALOGUE)


async def test_the_publisher_refuses_an_uncatalogued_alert_and_links_runbooks(
    metrics: Metrics,
) -> None:
    topic = Topic()
    publisher = AlertPublisher(
        None, topic.send, "vigil.alerts", metrics, 300, runbook_base="https://wiki/runbooks/"
    )
    with pytest.raises(UnknownAlert, match="not in the alert catalogue"):
        await publisher.fire(AlertSpec("Made", "high", {}, Annotations(summary="s")), 1, 0, T0)
    assert topic.sent == []
    spec = AlertSpec("ErrorRateSpike", "critical", {"tenant_id": "a"}, Annotations(summary="s"))
    alert = await publisher.fire(spec, 0.05, 0.01, T0)
    assert alert is not None
    assert alert.data.annotations.runbook_url == "https://wiki/runbooks/ErrorRateSpike.md"
    # without a base URL: the path in the repository
    plain = AlertPublisher(None, topic.send, "vigil.alerts", metrics, 300)
    other = AlertSpec("P95LatencyBreach", "critical", {"tenant_id": "a"}, Annotations(summary="s"))
    alert = await plain.fire(other, 900, 500, T0)
    assert alert is not None
    assert alert.data.annotations.runbook_url == "docs/runbooks/P95LatencyBreach.md"


def test_a_rules_files_own_alert_joins_the_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "slo:\n  rules:\n    - {id: Slow, sli: p50_ms, op: '>', threshold: 300, for: 2,"
        " alert: CheckoutSlow, severity: medium}\n"
    )
    load_rules(path)
    entry = lookup("CheckoutSlow")
    assert entry.severity == "medium" and entry.runbook_path == "docs/runbooks/SloRule.md"


def test_the_readme_table_lists_the_catalogue() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, entry in CATALOGUE.items():
        if entry.runbook:  # registered from a rules file by another test
            continue
        row = (
            f"| `{name}` | {entry.severity} | {entry.category} | [runbook]({entry.runbook_path}) |"
        )
        assert row in readme, row
