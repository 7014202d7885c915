"""The security rules as Sigma (SigmaHQ specification v2) documents: base rules become
detection rules, correlations become correlation rules, so other Sigma tooling (pySigma
and its backends) can read what Vigil evaluates. Vigil's extensions do not travel:
``thresholds_by_group`` (per-provider thresholds) and the built-in cross-tenant rule,
which compares two fields of one event."""

from __future__ import annotations

from typing import Any

import yaml

from streams.detectors.security.rules import SecurityConfig

LOGSOURCE = {"product": "vigil"}


def to_sigma(config: SecurityConfig) -> str:
    """A multi-document Sigma YAML of every base rule and correlation."""
    docs: list[dict[str, Any]] = []
    for rule in config.rules:
        selection: dict[str, Any] = {"kind": rule.kind}
        for name, value in rule.where.items():
            selection[name] = list(value) if isinstance(value, tuple) else value
        docs.append(
            {
                "title": f"Vigil base rule {rule.name}",
                "name": rule.name,
                "status": "stable",
                "logsource": {**LOGSOURCE, "service": rule.kind},
                "detection": {"selection": selection, "condition": "selection"},
            }
        )
    for corr in config.correlations:
        body: dict[str, Any] = {
            "type": corr.type,
            "rules": list(corr.rules),
            "timespan": _timespan(corr.timespan),
        }
        if corr.condition is not None:
            body["condition"] = {corr.condition.op: corr.condition.threshold}
            if corr.condition.field:
                body["condition"]["field"] = corr.condition.field
        if corr.group_by:
            body["group-by"] = list(corr.group_by)
        docs.append(
            {
                "title": f"{corr.alertname} ({corr.name})",
                "name": corr.name,
                "status": "stable",
                "correlation": body,
                "level": _level(corr.alertname),
            }
        )
    return yaml.safe_dump_all(docs, sort_keys=False)


def _timespan(value: str | float) -> str:
    if isinstance(value, str):
        return value
    seconds = int(value)
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def _level(alertname: str) -> str:
    from streams.catalogue import lookup

    return {"critical": "critical", "high": "high", "medium": "medium", "low": "low"}[
        lookup(alertname).severity
    ]
