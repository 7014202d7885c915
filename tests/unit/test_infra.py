"""Deployment files are valid: Prometheus rules pass promtool, manifests are sane."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: `make test` installs Debian's prometheus package"
    return path


def test_prometheus_rules_pass_promtool_unit_tests() -> None:
    for command in (
        ["check", "rules", "vigil-rules.yml"],
        ["test", "rules", "vigil-rules.test.yml"],
    ):
        run = subprocess.run(
            [promtool(), *command],
            cwd=INFRA / "prometheus",
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr


def test_statefulset_is_production_shaped() -> None:
    sts = yaml.safe_load((INFRA / "k8s/base/statefulset.yaml").read_text())
    assert sts["apiVersion"] == "apps/v1" and sts["kind"] == "StatefulSet"
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert {"requests", "limits"} <= set(container["resources"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert sts["spec"]["volumeClaimTemplates"], "local state needs a volume claim"
    mounted = {m["name"] for m in container["volumeMounts"]}
    assert "state" in mounted


def test_kustomizations_reference_existing_files() -> None:
    for kustomization in INFRA.glob("k8s/**/kustomization.yaml"):
        doc = yaml.safe_load(kustomization.read_text())
        for resource in doc.get("resources", []):
            assert (kustomization.parent / resource).exists(), f"{kustomization}: {resource}"


def test_dashboard_queries_only_metrics_the_worker_exports() -> None:
    import json
    import re

    from prometheus_client import CollectorRegistry

    from streams.metrics import Metrics

    exported = {m.name for m in Metrics(CollectorRegistry()).registry.collect()}
    dashboard = json.loads((INFRA / "grafana/vigil-ingest.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {re.sub(r"_(bucket|total)$", "", m) for e in exprs for m in re.findall(r"vigil_\w+", e)}
    assert used and used <= exported, used - exported
