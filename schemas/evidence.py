"""The evidence documents the rollout process asks for (``vigil evidence …``).

Three JSON documents, each with a JSON Schema in ``schemas/jsonschema/``:

* **baseline** -- before a canary: the service's latency quantiles, error rate and
  throughput per minute over a window, and their summary;
* **stage** -- one canary stage: per metric the canary's and the baseline's min / max /
  avg over the judged intervals, the threshold, PASS / FAIL; the share of intervals that
  passed (compliance), the failing intervals, and the decision PROCEED / ROLLBACK /
  INCONCLUSIVE;
* **incident** -- detection (first breach, detected, MTTD), the alerts with their
  consecutive breaches, the metrics at the incident and after recovery, the timeline.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True)


class Summary(_Doc):
    min: float | None
    max: float | None
    avg: float | None


class MinuteFigures(_Doc):
    minute: datetime
    requests: int
    errors: int
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


class BaselineEvidence(_Doc):
    document: Literal["vigil.evidence.baseline"] = "vigil.evidence.baseline"
    generated_at: datetime
    service: str
    cohort: str  # "" = every request of the service
    window_start: datetime
    window_end: datetime
    requests: int
    error_rate: float
    throughput_rps: float
    p50_ms: Summary
    p95_ms: Summary
    p99_ms: Summary
    minutes: list[MinuteFigures]
    query: str


class StageMetric(_Doc):
    metric: str
    critical: bool
    canary: Summary
    baseline: Summary
    threshold: str
    high_intervals: int
    result: Literal["PASS", "FAIL"]


class StageEvidence(_Doc):
    document: Literal["vigil.evidence.stage"] = "vigil.evidence.stage"
    generated_at: datetime
    service: str
    release: str
    #: "" for the service as a whole (every tenant); else the tenant judged on its own
    tenant_id: str = ""
    stage_start: datetime
    stage_end: datetime
    intervals: int
    judged_intervals: int
    compliance_rate: float  # share of judged intervals whose verdict was Pass
    breach_count: int  # failing intervals
    max_consecutive_breaches: int
    final_verdict: str
    final_score: float
    canary_requests: int
    baseline_requests: int
    metrics: list[StageMetric]
    decision: Literal["PROCEED", "ROLLBACK", "INCONCLUSIVE"]
    query: str


class IncidentAlert(_Doc):
    alertname: str
    severity: str
    labels: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    value_at_incident: float
    threshold: float
    value_after_recovery: float | None
    consecutive_breaches: int
    summary: str
    evidence_query: str


class IncidentEvidence(_Doc):
    document: Literal["vigil.evidence.incident"] = "vigil.evidence.incident"
    generated_at: datetime
    incident_id: str
    tenant_id: str
    #: the tenants of its alerts (a release's incident: tenant_id "" and every tenant whose
    #: canary failed)
    tenants: list[str] = []
    category: str
    severity: str
    status: str
    first_breach_at: datetime
    detected_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str
    resolved_at: datetime | None
    mttd_s: float | None
    mtta_s: float | None
    mttr_s: float | None
    alerts: list[IncidentAlert]
    timeline: list[dict[str, str]]


DOCUMENTS: dict[str, type[_Doc]] = {
    "evidence.baseline.schema.json": BaselineEvidence,
    "evidence.stage.schema.json": StageEvidence,
    "evidence.incident.schema.json": IncidentEvidence,
}
