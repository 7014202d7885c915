"""The shipped Alertmanager policy (infra/alertmanager) is valid, and routes every alert
of the catalogue to the receivers the platform's policy names: checked with the real
amtool (Debian prometheus-alertmanager, installed by `make tools`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from streams.catalogue import CATALOGUE

INFRA = Path(__file__).resolve().parents[2] / "infra" / "alertmanager"
PAGERDUTY = {
    "security": "pagerduty-security",
    "compliance": "pagerduty-security",
    "availability": "pagerduty-availability",
    "business": "pagerduty-availability",
    "performance": "pagerduty-performance",
}


def amtool() -> str:
    path = shutil.which("amtool")
    assert path, "amtool missing: `make test` installs Debian's prometheus-alertmanager"
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped file, its templates read from the repository instead of /etc."""
    text = (INFRA / "alertmanager.yml").read_text()
    here = tmp_path_factory.mktemp("am") / "alertmanager.yml"
    here.write_text(
        text.replace("/etc/alertmanager/templates/*.tmpl", str(INFRA / "templates" / "*.tmpl"))
    )
    return here


def expected(severity: str, category: str) -> list[str]:
    """The platform's policy: critical pages PagerDuty (key by category) and goes to Slack
    and e-mail; high to Slack and e-mail; medium to Slack; low to the daily report; critical
    and high also to the cross-tenant Slack roll-up."""
    if severity == "critical":
        return ["slack-rollup", PAGERDUTY[category], "critical"]
    if severity == "high":
        return ["slack-rollup", "high"]
    return ["slack-medium"] if severity == "medium" else ["daily-report"]


def test_the_shipped_configuration_passes_amtool(config: Path) -> None:
    run = subprocess.run(
        [amtool(), "check-config", str(config)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "8 receivers" in run.stdout and "4 inhibit rules" in run.stdout


@pytest.mark.parametrize("severity", ["critical", "high", "medium", "low"])
def test_every_catalogue_alert_reaches_its_receivers(config: Path, severity: str) -> None:
    """Every alert of the catalogue at its own severity, and every category at each
    severity (a rules file's own alerts and stage severities vary)."""
    cases = {(e.name, e.category, e.family) for e in CATALOGUE.values() if e.severity == severity}
    cases |= {("AnyAlert", c, "f") for c in PAGERDUTY}
    for name, category, family in sorted(cases):
        want = expected(severity, category)
        run = subprocess.run(
            [
                amtool(),
                "config",
                "routes",
                "test",
                f"--config.file={config}",
                f"--verify.receivers={','.join(want)}",
                f"severity={severity}",
                f"category={category}",
                f"family={family}",
                f"alertname={name}",
                "tenant_id=acme",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, (name, severity, category, want, run.stdout)
