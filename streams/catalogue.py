"""The alert catalogue: every alert Vigil emits, in one place.

Each entry gives the alert's severity, category, family (alerts of one family inhibit
each other in Alertmanager: the more severe silences the less severe for the same
labels), the labels that identify one alert, a summary template and its runbook
(``docs/runbooks/<AlertName>.md``). Detectors, the publisher (which refuses an alert the
catalogue lacks and links the runbook), the Alertmanager configuration, the runbooks
and the dashboards all read it; ``grep -r AlertName`` leads from here to the rule, the
code, the tests and the runbook.

SLO rules in a user's rules file may name alerts of their own: :func:`register_rule_alert`
adds them at start, with the generic SLO runbook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.alerts import Severity

Category = Literal["security", "availability", "performance", "business", "compliance"]
RUNBOOKS = "docs/runbooks"


class UnknownAlert(ValueError):
    """An alert name the catalogue lacks: a programming or configuration error."""


@dataclass(frozen=True, slots=True)
class AlertDef:
    name: str
    severity: Severity
    category: Category
    family: str
    labels: tuple[str, ...]
    summary: str  # str.format template over the labels
    runbook: str = ""  # file name under docs/runbooks; "" = <name>.md

    @property
    def runbook_path(self) -> str:
        return f"{RUNBOOKS}/{self.runbook or self.name + '.md'}"

    def runbook_url(self, base: str) -> str:
        """``base`` (a wiki or the repository's docs/runbooks URL) + the runbook file."""
        name = self.runbook or self.name + ".md"
        return base.rstrip("/") + "/" + name if base else self.runbook_path


_LAT = ("tenant_id", "service", "route")
_T = ("tenant_id",)

_ENTRIES: tuple[AlertDef, ...] = (
    # --- SLOs (streams/detectors/latency/slo.py; rules in streams/rules.default.yaml) ---
    AlertDef("P95LatencyBreach", "critical", "performance", "latency", _LAT,
             "p95 latency above its SLO on {tenant_id} {route}"),
    AlertDef("P99LatencyElevated", "high", "performance", "latency", _LAT,
             "p99 latency elevated on {tenant_id} {route}"),
    AlertDef("ErrorRateSpike", "critical", "availability", "errors", _LAT,
             "5xx rate above 1 % on {tenant_id} {route}"),
    AlertDef("ClientErrorRateElevated", "medium", "availability", "client_errors", _LAT,
             "4xx rate elevated on {tenant_id} {route}"),
    AlertDef("ThroughputDrop", "high", "availability", "throughput", _LAT,
             "throughput below the declared minimum on {tenant_id} {route}"),
    AlertDef("TenantErrorRateHigh", "high", "availability", "errors", _T,
             "5xx share of {tenant_id} above 5 % over 5 minutes"),
    AlertDef("ErrorBudgetBurnFast", "critical", "availability", "budget", _T,
             "error budget of {tenant_id} burning fast"),
    AlertDef("ErrorBudgetBurnSlow", "high", "availability", "budget", _T,
             "error budget of {tenant_id} burning"),
    # --- PII (streams/detectors/pii/guard.py) -------------------------------------------
    AlertDef("PIILeakageDetected", "critical", "compliance", "pii",
             ("tenant_id", "event_name", "entity", "json_path"),
             "{entity} found in {event_name} at {json_path} (tenant {tenant_id})"),
    # --- security (streams/detectors/security; rules in streams/rules.default.yaml) ------
    AlertDef("CrossTenantAccess", "critical", "security", "isolation",
             ("actor_tenant_id", "resource_tenant_id", "target", "blocked"),
             "{actor_tenant_id} accessed {resource_tenant_id}'s {target}"),
    AlertDef("BruteForceAttack", "critical", "security", "auth", ("ip_hash", "rule"),
             "failed logins from one IP ({ip_prefix}) above 50 a minute"),
    AlertDef("AccountTakeoverSuspected", "critical", "security", "auth", ("ip_hash", "rule"),
             "login succeeded from {ip_prefix} after a brute-force burst from it"),
    AlertDef("FailedLoginSpike", "high", "security", "auth", ("tenant_id", "rule"),
             "failed logins of {tenant_id} above 20 in 5 minutes"),
    AlertDef("UserEnumeration", "medium", "security", "auth", ("ip_hash", "rule"),
             "failed logins for many distinct users from one IP ({ip_prefix})"),
    AlertDef("WebhookSignatureFailures", "critical", "security", "webhook",
             ("provider", "rule"), "invalid webhook signatures from {provider}"),
    AlertDef("WebhookSignatureMissing", "critical", "security", "webhook", ("rule",),
             "unsigned webhook calls above 3 a minute"),
    AlertDef("WebhookSecretNotConfigured", "critical", "security", "webhook",
             ("provider", "rule"), "webhook secret of {provider} not configured"),
    AlertDef("SQLInjectionAttempt", "critical", "security", "injection",
             ("tenant_id", "rule"), "SQL injection attempt against {tenant_id}"),
    AlertDef("XSSAttempts", "high", "security", "injection", ("rule",),
             "XSS attempts above 5 a minute"),
    AlertDef("InputValidationFailures", "medium", "security", "injection", ("rule",),
             "input validation failures above 20 a minute"),
    AlertDef("UnauthorizedSpike", "high", "security", "http_denials", ("route", "rule"),
             "HTTP 401 on {route} above 10 a minute"),
    AlertDef("ForbiddenSpike", "medium", "security", "http_denials", ("rule",),
             "HTTP 403 above 15 a minute"),
    AlertDef("RateLimitedSpike", "medium", "security", "http_denials", ("rule",),
             "HTTP 429 above 10 a minute"),
    AlertDef("PolicyViolations", "high", "security", "policy", ("tenant_id", "rule"),
             "access-policy denials of {tenant_id} above 5 a minute"),
    # --- funnels (streams/detectors/funnel; funnels in streams/rules.default.yaml) ------
    # severity per stage from the funnel definition; the catalogue's is the default
    AlertDef("FunnelStageConversionLow", "high", "business", "funnel",
             ("tenant_id", "funnel", "stage"),
             "{funnel} conversion into {stage} of {tenant_id} below its threshold"),
    # --- analytics health (streams/detectors/analytics/health.py; infra/prometheus) ----
    AlertDef("AnalyticsIngestionFailure", "high", "availability", "ingestion", (),
             "fewer than 95 % of incoming records are valid"),
    AlertDef("SchemaValidationFailures", "medium", "availability", "ingestion", (),
             "more than 2 % of incoming records fail schema validation"),
    AlertDef("AnalyticsEventRateAbnormal", "medium", "business", "event_rate",
             ("tenant_id", "event_name"),
             "{event_name} rate of {tenant_id} outside its declared bounds"),
    # --- canary analysis (streams/detectors/canary) -------------------------------------
    AlertDef("CanaryVerdictFail", "critical", "availability", "canary", ("service", "release"),
             "canary {release} of {service} fails against the baseline: roll back"),
    AlertDef("CanaryVerdictMarginal", "medium", "availability", "canary",
             ("service", "release"), "canary {release} of {service} is marginal"),
    # --- escalation (streams/alerting.py): one level above its source, its category ----
    AlertDef("AlertRecurring", "high", "availability", "recurring",
             ("source_alertname", "source_fingerprint"),
             "{source_alertname} keeps starting to fire"),
)  # fmt: skip

CATALOGUE: dict[str, AlertDef] = {entry.name: entry for entry in _ENTRIES}


def lookup(name: str) -> AlertDef:
    """The catalogue entry of ``name``; :class:`UnknownAlert` names what to do."""
    entry = CATALOGUE.get(name)
    if entry is None:
        raise UnknownAlert(
            f"alert {name!r} is not in the alert catalogue (streams/catalogue.py): add it "
            "there with its severity, category, family, labels and runbook"
        )
    return entry


def register_rule_alert(name: str, severity: Severity, labels: tuple[str, ...]) -> AlertDef:
    """An SLO rule's own alert (a user's rules file), catalogued at start with the
    generic SLO runbook; a shipped name keeps its entry."""
    entry = CATALOGUE.get(name)
    if entry is None:
        entry = CATALOGUE[name] = AlertDef(
            name,
            severity,
            "performance",
            name,
            labels,
            f"{name} on {{tenant_id}}",
            runbook="SloRule.md",
        )
    return entry
