"""The Grafana dashboards as code: the checked-in JSON is the generator's output, loads in
Grafana's own dashboard model (grafana-foundation-sdk), every PromQL expression passes
promtool and names only metrics Vigil exports, every ClickHouse panel declares its columns
and expands with the pinned plugin's macros, and the provisioning points at both
datasources. (The SQL runs on the demo's engine in test_demo_incidents.py.)"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard
from prometheus_client import CollectorRegistry

from infra.grafana import dashboards as gen
from streams.metrics import Metrics
from tests.grafana_macros import expand_promql, expand_sql
from tests.unit.test_infra import promtool

GRAFANA = Path(__file__).resolve().parents[2] / "infra" / "grafana"


def panels() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name in sorted(gen.render()):
        doc = json.loads((GRAFANA / "dashboards" / name).read_text())
        out += [(doc["uid"], p) for p in doc["panels"]]
    return out


def test_the_checked_in_dashboards_are_the_generators_output() -> None:
    rendered = gen.render()
    on_disk = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}
    assert on_disk == rendered, "run: python -m infra.grafana.dashboards"
    assert {"vigil-canary.json", "vigil-security.json", "vigil-performance.json",
            "vigil-business.json", "vigil-compliance.json"} == set(rendered)  # fmt: skip


def test_each_dashboard_loads_in_grafanas_dashboard_model() -> None:
    for name, text in gen.render().items():
        raw = json.loads(text)
        model = Dashboard.from_json(raw)
        assert model.uid == raw["uid"] and model.title == raw["title"], name
        loaded = model.panels or []
        assert len(loaded) == len(raw["panels"]) >= 4, name
        for panel, source in zip(loaded, raw["panels"], strict=True):
            assert (panel.title, panel.type_val) == (source["title"], source["type"])  # type: ignore[union-attr]
            assert panel.datasource.uid in ("vigil-clickhouse", "vigil-prometheus")  # type: ignore[union-attr]
            assert len(panel.targets or []) == 1  # type: ignore[union-attr]


def test_promql_passes_promtool_and_names_only_exported_metrics(tmp_path: Path) -> None:
    exported = {m.name for m in Metrics(CollectorRegistry()).registry.collect()}
    exprs = [expand_promql(p["targets"][0]["expr"]) for _, p in panels()
             if p["datasource"]["uid"] == "vigil-prometheus"]  # fmt: skip
    assert len(exprs) >= 6
    used = {re.sub(r"_(bucket|total|sum|count)$", "", m) for e in exprs
            for m in re.findall(r"vigil_\w+", e)}  # fmt: skip
    assert used <= exported, used - exported
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"vigil:dashboard_{i}", "expr": e} for i, e in enumerate(exprs)]}]}  # fmt: skip
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # and promtool does fail on a broken expression (the check can fail)
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "vigil:bad", "expr": "sum(rate(vigil_dlq_messages_total[1m]"}]}]}))  # fmt: skip
    broken = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                            check=False)  # fmt: skip
    assert broken.returncode != 0


def test_every_clickhouse_panel_declares_its_columns_and_expands() -> None:
    sql_panels = [(uid, p) for uid, p in panels() if p["datasource"]["uid"] == "vigil-clickhouse"]
    assert len(sql_panels) >= 14
    start, end = datetime(2026, 12, 6, 10, tzinfo=UTC), datetime(2026, 12, 6, 12, tzinfo=UTC)
    for uid, p in sql_panels:
        assert (uid, p["title"]) in gen.COLUMNS, p["title"]
        sql = p["targets"][0]["rawSql"]
        expanded = expand_sql(sql, start, end, 60, "acme")
        assert "vigil." in expanded and "$" not in expanded
        if p["type"] == "timeseries":
            assert gen.COLUMNS[(uid, p["title"])][0] == "time"
    # the plugin's own forms, as its pkg/macros writes them
    assert expand_sql("$__timeFilter(t)", start, end, 60, "") == (
        f"t >= toDateTime({int(start.timestamp())}) AND t <= toDateTime({int(end.timestamp())})"
    )
    assert expand_sql("$__timeInterval(t)", start, end, 30, "") == (
        "toStartOfInterval(toDateTime(t), INTERVAL 30 second)"
    )


def test_provisioning_names_both_datasources_and_the_pinned_plugin() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/vigil.yaml").read_text())
    by_uid = {d["uid"]: d for d in sources["datasources"]}
    assert by_uid["vigil-clickhouse"]["type"] == gen.PLUGIN
    assert by_uid["vigil-clickhouse"]["jsonData"]["defaultDatabase"] == "vigil"
    assert by_uid["vigil-prometheus"]["type"] == "prometheus"
    text = (GRAFANA / "provisioning/datasources/vigil.yaml").read_text()
    assert f"{gen.PLUGIN} {gen.PLUGIN_VERSION}" in text
    boards = yaml.safe_load((GRAFANA / "provisioning/dashboards/vigil.yaml").read_text())
    assert boards["providers"][0]["type"] == "file"
