"""The security detector on events decoded by the real ingestor: Sigma-shaped rules,
the platform's thresholds, the built-in cross-tenant rule, overrides, episodes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule

from schemas.normalize import Pseudonymizer, normalise_provider
from streams.alerting import AlertPublisher
from streams.detectors.latency.slo import load_rules
from streams.detectors.security.detector import SecurityDetector
from streams.detectors.security.rules import SecurityConfig
from streams.detectors.security.sigma import to_sigma
from streams.errors import ConfigError
from streams.ingest import Ingestor
from streams.metrics import Metrics
from streams.transport import SourceBatch
from tests.unit.test_alerting import Topic

T0 = 1_780_000_000_000  # event time of the first event (ms)
RAW_IP = "203.0.113.66"
T0_LATER = 1_780_315_205_000  # 2026-06-01T12:00:05Z, after the log line of that test
DEFAULT_RULES = Path(__file__).resolve().parents[2] / "streams" / "rules.default.yaml"


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes


class Harness:
    def __init__(self, metrics: Metrics, config: SecurityConfig | None = None) -> None:
        self.topic = Topic()
        alerts = AlertPublisher(None, self.topic.send, "vigil.alerts", metrics, 300)
        self.detector = SecurityDetector(
            config or load_rules(None).security, alerts, None, metrics, "vigil"
        )
        self.ingestor = Ingestor(Pseudonymizer(b"k"), 1 << 20, 10**12)
        self.offset = 0

    async def feed(self, events: list[dict[str, Any]]) -> None:
        records = []
        for e in events:
            records.append(Record("vigil.events", 0, self.offset, 0, orjson.dumps(e)))
            self.offset += 1
        result = self.ingestor.decode_batch(records, T0 + 10**9)
        assert not result.rejections, result.rejections[:1]
        span = SourceBatch("vigil.events", 0, records[0].offset, records[-1].offset, records)
        await self.detector.process(result, span)

    def alerts(self, name: str | None = None) -> list[dict[str, Any]]:
        out = [a["data"] for a in self.topic.alerts()]
        return [a for a in out if name is None or a["alertname"] == name]


def envelope(kind: str, tenant: str, at_ms: int, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{kind}-{tenant}-{at_ms}-{n}",
        "ts": at_ms,
        "tenant_id": tenant,
        "kind": kind,
        "service": "auth",
        **fields,
    }


def failed_login(
    tenant: str, at_ms: int, n: int, ip: str = RAW_IP, user: str = "u"
) -> dict[str, Any]:
    return envelope("security.auth_failure", tenant, at_ms, n, ip=ip, user_id=user)


def test_the_default_correlations_load_in_pysigma_as_they_are() -> None:
    config = load_rules(None).security
    collection = SigmaCollection.from_yaml(to_sigma(config))
    collection.resolve_rule_references()
    loaded = {r.name: r for r in collection.rules if isinstance(r, SigmaCorrelationRule)}
    assert set(loaded) == {c.name for c in config.correlations}
    for corr in config.correlations:
        rule = loaded[corr.name]
        assert rule.type.name.lower() == corr.type
        assert list(rule.group_by or []) == list(corr.group_by)
        assert rule.timespan.seconds == corr.timespan_ms // 1000
        # temporal correlations: Sigma's implied condition, every step (gte len(rules))
        assert rule.condition.op.name.lower() == corr.op
        assert rule.condition.count == corr.base_threshold
        assert rule.condition.fieldref == corr.counted_field
        assert [r.rule.name for r in rule.rules] == list(corr.rules)  # steps in order


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        ("rules: [{name: x, kind: security.nope}]", "unknown kind 'security.nope'"),
        (
            "rules: [{name: x, kind: http.request, where: {colour: red}}]",
            "rule x: http.request has no field colour",
        ),
        (
            "correlations: [{name: c, alertname: BruteForceAttack, type: event_count,"
            " rules: [missing], timespan: 1m, condition: {gt: 1}}]",
            "correlation c: rules: no base rule named 'missing'",
        ),
        (
            "rules: [{name: x, kind: security.auth_failure}]\n  correlations: [{name: c,"
            " alertname: Invented, type: event_count, rules: [x], timespan: 1m,"
            " condition: {gt: 1}}]",
            "alertname 'Invented' is not in the alert catalogue",
        ),
        (
            "rules: [{name: x, kind: security.auth_failure}]\n  correlations: [{name: c,"
            " alertname: BruteForceAttack, type: event_count, rules: [x], timespan: 1m,"
            " condition: {gt: 1, lt: 5}}]",
            "exactly one of gt, gte",
        ),
        (
            "rules: [{name: x, kind: security.auth_failure}]\n  correlations: [{name: c,"
            " alertname: BruteForceAttack, type: event_count, rules: [x], group-by: [route],"
            " timespan: 1m, condition: {gt: 1}}]",
            "group-by/field 'route' is not a field of security.auth_failure",
        ),
    ],
)
def test_a_bad_security_rule_fails_at_start_naming_it(
    tmp_path: Path, security: str, expected: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(f"security:\n  {security}\n")
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


async def test_a_cross_tenant_access_pages_at_once_and_says_when_data_crossed(
    metrics: Metrics,
) -> None:
    h = Harness(metrics)
    log = {
        "timestamp": "2026-06-01T12:00:00.000Z",
        "level": "critical",
        "category": "security",
        "event_type": "tenant_violation",
        "context": {
            "user_id": 4711,
            "user_company_id": "initech",
            "requested_company_id": "acme",
            "model": "Document",
            "blocked": False,
        },
    }
    await h.feed([log])
    [alert] = h.alerts("CrossTenantAccess")
    assert alert["status"] == "firing" and alert["severity"] == "critical"
    assert alert["labels"]["actor_tenant_id"] == "initech"
    assert alert["labels"]["resource_tenant_id"] == "acme"
    assert alert["labels"]["target"] == "Document" and alert["labels"]["blocked"] == "false"
    assert "NOT blocked" in alert["annotations"]["summary"]
    # an http.request whose actor and resource tenants differ is one too
    await h.feed(
        [
            envelope(
                "http.request", "acme", T0_LATER, 1, method="GET", route="/v1/documents/{id}",
                status=200, duration_ms=12.0, actor_tenant_id="globex",
                resource_tenant_id="acme", trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            )
        ]
    )  # fmt: skip
    targets = {a["labels"]["target"] for a in h.alerts("CrossTenantAccess")}
    assert targets == {"Document", "/v1/documents/{id}"}
    # the request's trace is in the evidence: incidents group its other alerts with it
    traced = [a for a in h.alerts("CrossTenantAccess") if a["labels"]["target"] != "Document"]
    assert traced[0]["evidence"]["trace_ids"] == ["4bf92f3577b34da6a3ce929d0e0e4736"]
    assert alert["evidence"]["trace_ids"] == []


async def test_brute_force_across_tenants_fires_on_the_51st_login_in_a_sliding_minute(
    metrics: Metrics,
) -> None:
    h = Harness(metrics)
    tenants = ("acme", "globex", "initech")
    # 50 failures spread over 59 s, straddling a minute boundary: nothing yet
    first = [failed_login(tenants[i % 3], T0 + 30_000 + i * 1_180, i) for i in range(50)]
    await h.feed(first)
    assert h.alerts("BruteForceAttack") == []
    await h.feed([failed_login("acme", T0 + 30_000 + 50 * 1_180, 50)])
    [alert] = h.alerts("BruteForceAttack")
    assert alert["labels"]["ip_prefix"] == "203.0.113.0/24"
    assert alert["evidence"]["count"] == 51 and alert["evidence"]["threshold"] == 50
    assert len(alert["evidence"]["sample_event_ids"]) == 10
    assert RAW_IP not in orjson.dumps(h.topic.alerts()).decode()  # never the raw IP
    # quiet for 5 minutes of event time: resolved
    await h.feed([failed_login("acme", T0 + 10 * 60_000, 99, ip="198.51.100.7")])
    await h.detector.tick()
    statuses = [a["status"] for a in h.alerts("BruteForceAttack")]
    assert statuses == ["firing", "resolved"]


async def test_webhook_providers_are_normalised_and_have_their_own_thresholds(
    metrics: Metrics,
) -> None:
    assert normalise_provider("VerifyStripeSignatureMiddleware") == "stripe"
    assert normalise_provider("VerifyRetellSignature") == "retell"
    h = Harness(metrics)

    def invalid(middleware: str, at: int) -> dict[str, Any]:
        return {
            "timestamp": f"2026-06-01T12:00:{at:02d}.000Z",
            "level": "warning",
            "category": "security",
            "event_type": "auth_failure",
            "subcategory": "webhook_signature",
            "context": {
                "middleware": middleware,
                "signature_provided": True,
                "ip_address": "192.0.2.9",
            },
        }

    await h.feed([invalid("VerifyStripeSignature", 1), invalid("VerifyStripeSignature", 2)])
    [stripe] = h.alerts("WebhookSignatureFailures")
    assert stripe["labels"]["provider"] == "stripe" and stripe["evidence"]["threshold"] == 1
    # an unnamed provider needs more than 5
    await h.feed([invalid("VerifyAcmeHooks", 10 + i) for i in range(5)])
    assert len(h.alerts("WebhookSignatureFailures")) == 1
    await h.feed([invalid("VerifyAcmeHooks", 20)])
    assert {a["labels"]["provider"] for a in h.alerts("WebhookSignatureFailures")} == {
        "stripe",
        "acmehooks",
    }


async def test_tenant_overrides_change_tenant_grouped_thresholds(
    metrics: Metrics, tmp_path: Path
) -> None:
    text = DEFAULT_RULES.read_text()
    text = text.replace(
        "  overrides: []\n  #  - match: {tenant: acme}\n  #    thresholds: {FailedLoginSpike: 40}",
        "  overrides:\n    - match: {tenant: acme}\n      thresholds: {FailedLoginSpike: 40}",
    )
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    h = Harness(metrics, load_rules(path).security)
    await h.feed(  # both tenants at once, in event-time order (one partition)
        [
            failed_login(tenant, T0 + i * 5_000, i, ip=f"198.51.100.{i}", user=f"u{i}")
            for i in range(30)
            for tenant in ("acme", "globex")
        ]
    )
    fired = {a["labels"]["tenant_id"] for a in h.alerts("FailedLoginSpike")}
    assert fired == {"globex"}  # 30 > 20, but acme's threshold is 40


def login_ok(tenant: str, at_ms: int, n: int, ip: str = RAW_IP) -> dict[str, Any]:
    return envelope("security.auth_success", tenant, at_ms, n, ip=ip, user_id="victim")


async def test_account_takeover_is_a_success_after_a_brute_force_burst_from_that_ip(
    metrics: Metrics,
) -> None:
    h = Harness(metrics)
    await h.feed([login_ok("acme", T0, 0)])  # a success before the burst: not a takeover
    burst = [failed_login("acme", T0 + 1_000 + i * 500, i) for i in range(51)]
    await h.feed(burst)
    assert len(h.alerts("BruteForceAttack")) == 1 and h.alerts("AccountTakeoverSuspected") == []
    # another IP's success is nobody's takeover
    await h.feed([login_ok("acme", T0 + 60_000, 1, ip="198.51.100.8")])
    assert h.alerts("AccountTakeoverSuspected") == []
    await h.feed([login_ok("acme", T0 + 9 * 60_000, 2)])  # within 10 min of the burst
    [alert] = h.alerts("AccountTakeoverSuspected")
    assert alert["severity"] == "critical" and alert["labels"]["ip_prefix"] == "203.0.113.0/24"
    assert alert["labels"]["rule"] == "account_takeover"
    assert "brute_force then login_success" in alert["annotations"]["summary"]
    # the chain starts at the burst's first holding window (the 51st failure)
    first_hold = datetime.fromtimestamp((T0 + 1_000 + 50 * 500) / 1000, UTC)
    assert alert["evidence"]["first_event"] == first_hold.isoformat()
    assert "login_ok" not in str(alert) and RAW_IP not in orjson.dumps(alert).decode()


async def test_a_success_more_than_ten_minutes_after_the_burst_is_no_takeover(
    metrics: Metrics,
) -> None:
    h = Harness(metrics)
    await h.feed([failed_login("acme", T0 + i * 500, i) for i in range(51)])
    hold = T0 + 50 * 500  # the burst's only holding window ends here
    await h.feed([login_ok("acme", hold + 10 * 60_000, 1)])  # (t - 10 min, t] excludes it
    assert h.alerts("AccountTakeoverSuspected") == []


@pytest.mark.parametrize(
    ("correlations", "expected"),
    [
        (
            "[{name: bf, alertname: BruteForceAttack, type: event_count, rules: [x],"
            " group-by: [ip_hash], timespan: 1m, condition: {gt: 5}},"
            " {name: ato, alertname: AccountTakeoverSuspected, type: temporal_ordered,"
            " rules: [bf, x], group-by: [tenant_id], timespan: 10m}]",
            "correlation ato: step 'bf' is grouped by ['ip_hash']",
        ),
        (
            "[{name: ato, alertname: AccountTakeoverSuspected, type: temporal_ordered,"
            " rules: [x], group-by: [ip_hash], timespan: 10m}]",
            "temporal_ordered needs two or more rules",
        ),
        (
            "[{name: ato, alertname: AccountTakeoverSuspected, type: temporal,"
            " rules: [x, x], timespan: 10m, condition: {gt: 1}}]",
            "temporal takes no condition",
        ),
        (
            "[{name: bf, alertname: BruteForceAttack, type: event_count, rules: [x],"
            " timespan: 1m, condition: {lt: 5}}, {name: ato, alertname:"
            " AccountTakeoverSuspected, type: temporal_ordered, rules: [bf, x], timespan: 10m}]",
            "step 'bf' must be an event_count or value_count correlation with a gt/gte",
        ),
    ],
)
def test_a_bad_temporal_correlation_fails_at_start_naming_it(
    tmp_path: Path, correlations: str, expected: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "security:\n  rules: [{name: x, kind: security.auth_failure}]\n"
        f"  correlations: {correlations}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert expected in str(caught.value)


class Captured:
    """The writer's side of the adapter: the rows it is handed, per table."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {}

    async def query_rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        return []  # no checkpoint yet

    async def add(self, tables: dict[str, dict[str, list[Any]]], **_: Any) -> None:
        for table, columns in tables.items():
            names = list(columns)
            for values in zip(*columns.values(), strict=True):
                self.rows.setdefault(table, []).append(dict(zip(names, values, strict=True)))


async def test_a_late_event_is_counted_and_flagged_once_per_rule_it_matches(
    metrics: Metrics,
) -> None:
    """Behind the watermark (newest event time minus the 10 s grace) an event is not
    judged: the metric counts it and a security_late_events row per rule it matches says
    what it would have counted for; events no rule selects are not flagged."""
    h = Harness(metrics)
    writer = Captured()
    h.detector._writer = writer  # type: ignore[assignment]
    await h.feed([failed_login("acme", T0 + 60_000, 0)])
    assert "security_late_events" not in writer.rows
    ok = envelope("http.request", "acme", T0, 2, method="GET", route="/r", status=200,
                  duration_ms=3.0)  # fmt: skip
    crossing = envelope("security.tenant_violation", "acme", T0 + 1, 3,
                        actor_tenant_id="globex", resource_tenant_id="acme", model="Invoice",
                        blocked=True)  # fmt: skip
    await h.feed([failed_login("acme", T0, 1, user="v"), ok, crossing])  # 60 s behind
    late = writer.rows["security_late_events"]
    assert sorted((r["rule"], r["alertname"], r["event_id"]) for r in late) == [
        ("brute_force", "BruteForceAttack", failed_login("acme", T0, 1)["event_id"]),
        ("cross_tenant", "CrossTenantAccess", crossing["event_id"]),
        ("failed_login_spike", "FailedLoginSpike", failed_login("acme", T0, 1)["event_id"]),
        ("user_enumeration", "UserEnumeration", failed_login("acme", T0, 1)["event_id"]),
    ]
    assert {r["watermark"] for r in late} == {(T0 + 60_000 - 10_000) / 1000}
    assert {r["group_key"] for r in late if r["rule"] == "failed_login_spike"} == {"acme"}
    assert RAW_IP not in orjson.dumps(late).decode()
    assert h.detector.late_events == 2  # the failed login and the access: not the request
    assert h.alerts("CrossTenantAccess") == []  # not judged


def test_rules_sql_prints_the_windows_of_a_correlation_and_names_what_it_cannot() -> None:
    from streams.detectors.security.sql import rule_sql
    from streams.web import check_read_only

    config = load_rules(None).security
    brute = rule_sql(config, "brute_force", "analytics")
    assert "count() OVER (PARTITION BY ip_hash ORDER BY toUnixTimestamp64Milli(ts) RANGE " \
        "BETWEEN 59999 PRECEDING AND CURRENT ROW)" in brute  # fmt: skip
    assert "in_window > 50 AS holds" in brute and "FROM analytics.events" in brute
    users = rule_sql(config, "user_enumeration")
    assert "uniqExact(user_id_hash) OVER (PARTITION BY ip_hash" in users
    assert "299999 PRECEDING" in users and "in_window > 10" in users
    webhooks = rule_sql(config, "webhook_signature_failures")
    assert "signature_valid = 0" in webhooks and "stripe > 1" in webhooks
    platform = rule_sql(config, "forbidden_spike")  # no group-by: one window over all
    assert "count() OVER (ORDER BY" in platform and "status = 403" in platform
    assert "actor_tenant_id != resource_tenant_id" in rule_sql(config, "cross_tenant")
    with pytest.raises(ConfigError, match=r"no security rule 'nope'; known: .*brute_force"):
        rule_sql(config, "nope")
    # `vigil query "$(vigil rules sql NAME)"` is accepted: one read-only statement
    names = [r.name for r in config.rules] + [c.name for c in config.correlations]
    for name in [*names, "cross_tenant"]:
        assert check_read_only(rule_sql(config, name)).startswith("SELECT")
