"""The PII scanner: validators, masks, redaction, quality on the labelled corpus."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.detectors.pii import validators as v
from streams.detectors.pii.entities import CHECKSUM_ENTITIES, mask
from streams.detectors.pii.scanner import Scanner
from tests.pii_corpus import (
    ENTITIES,
    LOCALES,
    PERSONAL,
    VENDOR_SECRETS,
    breakdown,
    evaluate,
    negatives,
    positives,
)

KEY = b"test-key"
SHARED = Scanner(KEY)


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return SHARED


def test_checksums() -> None:
    assert v.card("4111 1111 1111 1111") == "4111111111111111"
    assert v.card("4111 1111 1111 1112") is None  # Luhn
    assert v.card("9111111111111119") is None  # no issuer starts with 9
    assert v.cpf("529.982.247-25") == "52998224725"
    assert v.cpf("529.982.247-26") is None
    assert v.cpf("111.111.111-11") is None  # all digits equal
    assert v.cnpj("11.222.333/0001-81") == "11222333000181"
    assert v.cnpj("11.222.333/0001-82") is None
    assert v.iban("DE89 3704 0044 0532 0130 00") == "DE89370400440532013000"
    assert v.iban("DE89 3704 0044 0532 0130 01") is None
    assert v.iban("DE89 3704 0044 0532 0130") is None  # wrong length for DE
    assert v.ssn("078-05-1120") == "078051120"
    for bad in ("000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000"):
        assert v.ssn(bad) is None, bad


def test_structural_validators() -> None:
    assert v.phone("+55 11 98765-4321") == "+5511987654321"
    assert v.phone("2024-01-15") is None and v.phone("10.0.0.1") is None
    assert v.ipv4("203.0.113.66") and v.ipv4("256.1.1.1") is None and v.ipv4("01.2.3.4") is None
    assert v.ipv6("2001:db8::1") and v.ipv6("10:30:00") is None
    assert v.jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig") is not None
    assert v.jwt("eyJub3QiOiJhIGhlYWRlciJ9.e30.x") is None  # no alg/typ in the header
    assert v.email("jane.roe@example.com") and v.email("a..b@example.com") is None


@pytest.mark.parametrize(
    ("entity", "value"),
    [
        ("EMAIL", "jane.roe@example.com"),
        ("CREDIT_CARD", "4111111111114242"),
        ("US_SSN", "078-05-1120"),
        ("BR_CPF", "529.982.247-25"),
        ("PHONE", "+5511987654321"),
        ("IBAN", "DE89370400440532013000"),
        ("AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
        ("SENSITIVE_FIELD", "hunter2"),
    ],
)
def test_masks_never_show_the_value(entity: str, value: str) -> None:
    preview = mask(entity, value)
    assert value not in preview and preview
    assert sum(c.isalnum() for c in preview) <= 8
    if entity == "CREDIT_CARD":
        assert preview == "****-****-****-4242"
    if entity == "EMAIL":
        assert preview == "j***@e***.com"


def test_findings_carry_no_raw_value(scanner: Scanner) -> None:
    text = "card 4111 1111 1111 1111, mail jane.roe@example.com"
    findings = scanner.scan_text(text, "$.note")
    assert [f.entity for f in findings] == ["CREDIT_CARD", "EMAIL"]
    for f in findings:
        dumped = json.dumps(f.__repr__())
        assert "4111 1111" not in dumped and "jane.roe" not in dumped
        assert len(f.hmac) == 32 and f.json_path == "$.note"
    other = Scanner(b"another-key").scan_text(text)
    assert [f.hmac for f in other] != [f.hmac for f in findings]  # keyed, not a plain hash


def test_json_keys_values_numbers_and_sensitive_fields(scanner: Scanner) -> None:
    doc = {
        "user": {"password": "hunter2", "contact": ["x", "call +44 20 7946 0958"]},
        "jane.roe@example.com": "key that is an email",
        "card": 4111111111111111,
    }
    findings = scanner.scan_json(doc, "$.properties")
    paths = {(f.entity, f.json_path) for f in findings}
    assert ("SENSITIVE_FIELD", "$.properties.user.password") in paths
    assert ("PHONE", "$.properties.user.contact[1]") in paths
    assert ("EMAIL", "$.properties.[#1]#key") in paths  # the key is PII: its position only
    assert ("CREDIT_CARD", "$.properties.card") in paths
    redacted = scanner.redact_json(doc, findings, path="$.properties")
    assert redacted == {
        "user": {
            "password": "[REDACTED:SENSITIVE_FIELD]",
            "contact": ["x", "call [REDACTED:PHONE]"],
        },
        "[REDACTED:EMAIL]": "key that is an email",
        "card": "[REDACTED:CREDIT_CARD]",
    }


def test_policies_hash_and_drop_field(scanner: Scanner) -> None:
    doc = {"a": "mail jane.roe@example.com", "b": "card 4111111111111111", "c": "ok"}
    findings = scanner.scan_json(doc)
    policy = {"EMAIL": "hash", "CREDIT_CARD": "drop-field"}
    out = scanner.redact_json(doc, findings, lambda e: policy.get(e, "redact"))  # type: ignore[arg-type,return-value]
    assert set(out) == {"a", "c"}
    assert out["a"].startswith("mail [HMAC:") and "jane" not in out["a"]


json_leaf = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "jane.roe@example.com",
            "4111 1111 1111 1111",
            "529.982.247-25",
            "078-05-1120",
            "+55 11 98765-4321",
            "AKIAIOSFODNN7EXAMPLE",
            "DE89 3704 0044 0532 0130 00",
            "203.0.113.66",
        ]
    ),
    st.integers(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        json_leaf,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.text(max_size=10) | st.sampled_from(["password", "jane.roe@example.com"]),
                children,
                max_size=4,
            )
        ),
        max_leaves=12,
    ),
    st.lists(st.sampled_from(["", "call ", " now", "id=", "; "]), min_size=2, max_size=2),
)
def test_redacted_output_never_contains_a_found_value(value: Any, glue: list[str]) -> None:
    scanner = SHARED
    doc = {"note": f"{glue[0]}{json.dumps(value)}{glue[1]}", "value": value}
    findings = scanner.scan_json(doc)
    redacted = json.dumps(scanner.redact_json(doc, findings), ensure_ascii=False)
    # values of 3 characters or fewer ("0", "ab") occur anywhere, also as JSON escapes
    # ("\u001f" found in the note is how a 1-character key elsewhere is written), and so
    # does JSON punctuation ("[[]]" found after "password" in the note is also the shape
    # of an empty list elsewhere); none of them is a leak
    originals = {
        o
        for o in _originals(doc, findings)
        if len(_unescaped(o)) > 3 and not set(o) <= _JSON_PUNCTUATION
    }
    for original in originals:
        assert original not in redacted, original


_JSON_PUNCTUATION = set('[]{},:" ')


def _unescaped(text: str) -> str:
    """``text`` read as the inside of a JSON string, when it is one ("\\u001f" -> 1 char)."""
    try:
        value = json.loads(f'"{text}"')
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def _originals(doc: Any, findings: list[Any]) -> set[str]:
    """The raw text of each finding, looked up by path (the test may see it; nothing else)."""
    from streams.detectors.pii.scanner import _walk

    texts = {p: t for p, t, _, _ in _walk(doc, "$", "")}
    return {texts[f.json_path][f.start : f.end] for f in findings if f.json_path in texts}


@pytest.fixture(scope="module")
def corpus() -> list[Any]:
    return positives() + negatives()


def test_precision_and_recall_on_the_labelled_corpus(scanner: Scanner, corpus: list[Any]) -> None:
    """Issue 18's targets: >= 98 % recall on vendor secrets, >= 90 % on names, addresses and
    dates of birth in context (names from Faker, not from the scanner's dictionaries),
    >= 99 % precision on the hard negatives."""
    table = evaluate(scanner, corpus)
    assert set(table) == set(ENTITIES)
    for entity, (tp, fp, fn) in table.items():
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        if entity in CHECKSUM_ENTITIES:
            targets = (0.99, 0.99)
        elif entity in VENDOR_SECRETS:
            targets = (0.98, 0.98)
        elif entity in PERSONAL:
            targets = (0.95, 0.85)  # recall in context: below
        elif entity == "PHONE":
            targets = (0.97, 0.95)  # bare 11-digit national numbers without context: README
        else:
            targets = (0.97, 0.97)
        assert precision >= targets[0], (entity, precision)
        assert recall >= targets[1], (entity, recall)
    parts = breakdown(scanner, corpus)
    for entity in PERSONAL:
        hits = sum(c["tp"] for (e, _, ctx), c in parts.items() if e == entity and ctx)
        missed = sum(c["fn"] for (e, _, ctx), c in parts.items() if e == entity and ctx)
        assert hits / (hits + missed) >= 0.90, (entity, hits, missed)
        for locale in LOCALES:
            c = parts.get((entity, locale, True))
            assert c is not None and c["tp"] / (c["tp"] + c["fn"]) >= 0.85, (entity, locale, c)
    hard = negatives()
    flagged = [s.text for s in hard if evaluate(scanner, [s])]
    assert len(flagged) / len(hard) <= 0.01, flagged[:10]


def test_the_hard_negatives_of_issue_18_are_no_findings(scanner: Scanner) -> None:
    """Each fix adds its false alarm here."""
    for text in (
        "release 4.12.0.1", "deployed build 1.0.0.123", "Mozilla/5.0 Chrome/120.0.0.0 Safari",
        "Mark Complete", "June Release Notes", "Will Open", "Paris Office", "Grace Period",
        "San Francisco", "Ave Maria", "Frank Discussion", "Customer Success Team",
        "postgres://app@db.internal/main", "postgres://app:${DB_PASSWORD}@db/main",
        "pk_live_51Hx2fJKl0aBcDeFgHiJkLmN", "token=expired", "cache_key=user:123:profile",
        "12 items at the Park", "8.054.70 EUR Walk", "created 2024-01-05 by the nightly job",
        "Monitoring 5 hosts", "Frau Kind", "ORD-2022-106861 Mrs. ORD-2022",
    ):  # fmt: skip
        assert scanner.scan_text(text) == [], text
    document = {
        "event_name": "June Launch", "file_name": "Mark Report.pdf", "app_version": "4.12.0.1",
        "user_id_hash": "4111111111111111", "trace_id": "4111111111111111aa",
        "event_id": "0d9f6c1e-3c4a-4b8e-9f6b-2a1d3c4e5f60", "name": "checkout",
        "auth_method": "oauth2", "token_count": 3,
    }  # fmt: skip
    assert scanner.scan_json(document) == []
    # and what the same keys and shapes hold when they are PII
    found = scanner.scan_json({"first_name": "Janet", "webhook_secret": "a8Fj29dkLq0pZx7Yv3Nw",
                               "ip": "10.1.2.3", "street": "9170 Susan Creek"})  # fmt: skip
    assert {(f.json_path, f.entity) for f in found} == {
        ("$.first_name", "PERSON_NAME"), ("$.webhook_secret", "HIGH_ENTROPY_SECRET"),
        ("$.ip", "IP_ADDRESS"), ("$.street", "STREET_ADDRESS"),
    }  # fmt: skip


def test_issue_18_examples_are_found_and_url_encoded_text_too(scanner: Scanner) -> None:
    cases = {
        "Customer Janet Phillips called about her order": ("PERSON_NAME", "Janet Phillips"),
        "ship to 9170 Susan Creek today": ("STREET_ADDRESS", "9170 Susan Creek"),
        "DOB: 03/14/1985": ("DATE_OF_BIRTH", "03/14/1985"),
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": (
            "AWS_SECRET_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        "use xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx": (
            "SLACK_TOKEN", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
        "key AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q": (
            "GOOGLE_API_KEY", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
        "/v1/search?q=Janet+Phillips&page=2": ("PERSON_NAME", "Janet+Phillips"),
        "/v1/users?email=maria%40example.com": ("EMAIL", "maria%40example.com"),
        "redis://cache:Sup3rS3cretPw@cache.internal:6379": ("URL_CREDENTIALS", "Sup3rS3cretPw"),
        "Passport no. K55266786": ("ID_DOCUMENT", "K55266786"),
        "Rua das Flores, 120 apto 3": ("STREET_ADDRESS", "Rua das Flores, 120 apto 3"),
        "Sra. Ana Julia Leão": ("PERSON_NAME", "Ana Julia Leão"),
    }  # fmt: skip
    for text, (entity, value) in cases.items():
        found = [(f.entity, text[f.start : f.end]) for f in scanner.scan_text(text)]
        assert (entity, value) in found, (text, found)
    # the redacted route keeps its shape and loses the name
    text = "/v1/search?q=Janet+Phillips&page=2"
    redacted = scanner.redact_text(text, scanner.scan_text(text), lambda _: "redact")
    assert redacted == "/v1/search?q=[REDACTED:PERSON_NAME]&page=2"


def test_the_engines_agree(scanner: Scanner) -> None:
    sample = positives(per_entity_locale=4) + negatives(200)
    expected = evaluate(scanner, sample)
    for engine in ("re2", "re"):
        assert evaluate(Scanner(KEY, engine), sample) == expected, engine


def test_the_rules_file_sets_policies_and_rejects_unknown_entities(tmp_path: Any) -> None:
    from streams.detectors.latency.slo import load_rules
    from streams.errors import ConfigError

    assert load_rules(None).pii.policy("EMAIL") == "redact"  # the default
    path = tmp_path / "rules.yaml"
    path.write_text("pii:\n  policies: {EMAIL: hash, PHONE: drop-field}\n  quiet_period: 2m\n")
    pii = load_rules(path).pii
    assert (pii.policy("EMAIL"), pii.policy("PHONE"), pii.policy("IBAN")) == (
        "hash",
        "drop-field",
        "redact",
    )
    assert pii.quiet_period_s == 120
    path.write_text("pii:\n  policies: {E_MAIL: hash}\n")
    with pytest.raises(ConfigError, match="unknown entities"):
        load_rules(path)


async def test_pii_alerts_deduplicate_count_and_resolve_after_quiet() -> None:
    import asyncio

    from prometheus_client import CollectorRegistry

    from schemas.alerts import Alert
    from streams.alerting import AlertPublisher
    from streams.detectors.pii.guard import Detected, PiiAlerts
    from streams.metrics import Metrics

    sent: list[Alert] = []

    async def send(topic: str, key: bytes | None, value: bytes, headers: Any) -> Any:
        sent.append(Alert.model_validate_json(value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    now = [1_000.0]
    publisher = AlertPublisher(None, send, "alerts", Metrics(CollectorRegistry()), 300)
    alerts = PiiAlerts(publisher, quiet_period_s=600, database="vigil", clock=lambda: now[0])
    finding = SHARED.scan_text("mail jane.roe@example.com", "$.properties.items[3].note")[0]

    def seen(offset: int) -> Detected:
        return Detected(
            finding, "acme", "analytics", "signup", f"e{offset}", 1, 0, offset, 0, f"t{offset}"
        )

    await alerts.report([seen(1), seen(2)])
    now[0] += 60
    await alerts.report([seen(3)])  # inside the dedup window: suppressed
    assert [a.data.status for a in sent] == ["firing"]
    first = sent[0].data
    assert first.labels == {
        "tenant_id": "acme",
        "event_name": "signup",
        "entity": "EMAIL",
        "json_path": "$.properties.items[*].note",
    }
    assert first.severity == "critical" and first.auto_rollback
    assert first.annotations.description.startswith("2 finding(s)")
    assert first.evidence["trace_ids"] == ["t1", "t2"]  # incidents group by them
    assert "jane" not in sent[0].model_dump_json()
    now[0] += 400  # past the dedup window: a reminder with the running count
    await alerts.report([seen(4)])
    assert sent[-1].data.annotations.description.startswith("4 finding(s)")
    await alerts.tick()
    assert sent[-1].data.status == "firing"  # not quiet long enough
    now[0] += 601
    await alerts.tick()
    assert sent[-1].data.status == "resolved" and sent[-1].data.ends_at is not None


def test_the_guard_redacts_exactly_the_events_holding_pii_in_a_mixed_batch() -> None:
    """Free text is gathered per kind and field; a text found in several events redacts
    all of them (and only them), whatever their kind, next to analytics properties."""
    from prometheus_client import CollectorRegistry

    from schemas.events import EVENT_ADAPTER
    from schemas.fastpath import from_model
    from streams.detectors.pii.config import PiiConfig
    from streams.detectors.pii.guard import PiiGuard
    from streams.ingest import IngestResult
    from streams.metrics import Metrics

    email = "jane.roe@example.com"
    base = {"ts": 1_767_323_045_000, "tenant_id": "acme", "service": "api"}
    http = {"kind": "http.request", "method": "GET", "status": 200, "duration_ms": 1.0}
    raw = [
        {**http, "event_id": "e0", "route": "/v1/users/{id}"},
        {"kind": "security.auth_failure", "event_id": "e1", "reason": f"unknown user {email}"},
        {**http, "event_id": "e2", "route": f"/v1/invite?to={email}"},
        {"kind": "analytics", "event_id": "e3", "event_name": "x", "properties": {"a": email}},
        {"kind": "security.auth_failure", "event_id": "e4", "reason": "bad password"},
        {**http, "event_id": "e5", "route": f"/v1/invite?to={email}"},
        {"kind": "analytics", "event_id": "e6", "event_name": "x", "properties": {"a": "ok"}},
    ]
    events = [from_model(EVENT_ADAPTER.validate_python({**base, **r})) for r in raw]
    n = len(events)
    result = IngestResult(
        "vigil.events", list(events), [1_767_323_045_000] * n, [0] * n, list(range(n)), [0] * n
    )
    guard = PiiGuard(SHARED, PiiConfig(), Metrics(CollectorRegistry()))
    detected = guard.apply(result)

    assert [d.event_id for d in detected] == ["e1", "e2", "e3", "e5"]
    assert [d.offset for d in detected] == [1, 2, 3, 5]
    changed = [i for i in range(n) if result.events[i] is not events[i]]
    assert changed == [1, 2, 3, 5]
    assert all(email not in json.dumps(msgspec_to_builtins(e)) for e in result.events)
    assert result.events[0].route == "/v1/users/{id}"  # type: ignore[attr-defined]
    assert result.events[4].reason == "bad password"  # type: ignore[attr-defined]
    assert result.events[2].route == result.events[5].route != events[2].route  # type: ignore[attr-defined]


def msgspec_to_builtins(event: Any) -> Any:
    import msgspec

    return msgspec.to_builtins(event)


#: one vector per credential format (made up, in the published shape) and a near miss that
#: must not be reported: too short, wrong prefix, or a placeholder
VECTORS = {
    "GITHUB_TOKEN": ("ghp_Zx81hQv0LbT3kWm92aPqR7sYc4nD6eFg1HjK", "ghp_Zx81hQv0LbT3kWm9"),
    "GITLAB_TOKEN": ("glpat-Xk3v9QmZ2pL8rT5wN1aB", "glpat-short"),
    "SLACK_TOKEN": ("xoxb-263594206564-2343594206574-FGqddMF8t08v8N7Oq4i57vs1", "xoxb-1-2-x"),
    "SLACK_WEBHOOK": (
        "https://hooks.slack.com/services/T0ABCDEFGH/B0ABCDEFGHIJ/Xk3v9QmZ2pL8rT5wN1aBcDeF",
        "https://hooks.slack.com/services/",
    ),
    "STRIPE_KEY": ("sk_live_51Hx2fJKl0aBcDeFgHiJkLmNoPq", "pk_live_51Hx2fJKl0aBcDeFgHiJkLmNoPq"),
    "GOOGLE_API_KEY": ("AIzaSyD3Xk9vQmZ2pL8rT5wN1aBcDeFgHiJkLmN", "AIzaSyD3Xk9v"),
    "TWILIO_KEY": ("SK0123456789abcdef0123456789abcdef", "SK0123456789abcdef"),
    "SENDGRID_KEY": (
        "SG.Xk3v9QmZ2pL8rT5wN1aBcD.Xk3v9QmZ2pL8rT5wN1aBcDeFgHiJkLmNoPqRsTuVwXy",
        "SG.short.short",
    ),
    "NPM_TOKEN": ("npm_Xk3v9QmZ2pL8rT5wN1aBcDeFgHiJkLmNoPqR", "npm_install"),
    "PYPI_TOKEN": (
        "pypi-AgEIcHlwaS5vcmcCJGI4YmNhMDA1LTBjZDUtNDRkNC1iNWU2LTEyMzQ1Njc4OTBhYgACKlsz",
        "pypi-AgEI",
    ),
    "AWS_SECRET_KEY": (
        "aws_secret_access_key=Xk3v9QmZ2pL8rT5wN1aBcDeFgHiJkLmNoPqRsTuV",
        "aws_secret_access_key=changeme",
    ),
    "AZURE_STORAGE_KEY": (
        "AccountKey=" + "Xk3v9QmZ2pL8rT5wN1aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789abcdEFGH"
        "ijklMNOPqrstUVWXyz012345==;",
        "AccountKey=<your-key>;",
    ),
    "URL_CREDENTIALS": ("amqp://svc:Q8v2LmZx71@mq.internal:5672/", "amqp://svc:${MQ_PASS}@mq"),
    "HIGH_ENTROPY_SECRET": ("WEBHOOK_SECRET=Q8v2LmZx71Rt4Nq9Kb3W",
                            "WEBHOOK_SECRET=aaaaaaaaaaaaaaaaaaaa"),
    "PRIVATE_KEY": ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----",
                    "-----BEGIN PUBLIC KEY-----"),
    "AWS_ACCESS_KEY": ("AKIAQ3EGUFLCF7HQ2VJX", "AKIAQ3EGUF"),
}  # fmt: skip


@pytest.mark.parametrize("entity", sorted(VECTORS))
def test_every_credential_format_has_a_vector_and_a_near_miss(
    scanner: Scanner, entity: str
) -> None:
    vector, near_miss = VECTORS[entity]
    text = f"deploy log: {vector} (rotated)"
    found = {(f.entity, text[f.start : f.end]) for f in scanner.scan_text(text)}
    assert any(e == entity for e, _ in found), (entity, found)
    miss = f"deploy log: {near_miss} (rotated)"
    assert [f.entity for f in scanner.scan_text(miss)] == [], (entity, near_miss)


def test_the_compiled_database_is_cached_by_a_digest_of_its_patterns(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compiled once into ~/.cache/vigil; a scanner made later (as in a new process) loads
    the file and compiles nothing."""
    from streams.detectors.pii import scanner as module

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(module, "_COMPILED", {})
    text = "Customer Janet Phillips, token ghp_Zx81hQv0LbT3kWm92aPqR7sYc4nD6eFg1HjK"
    expected = [(f.entity, f.start, f.end) for f in Scanner(KEY).scan_text(text)]
    cached = list((tmp_path / ".cache" / "vigil").glob("pii-*.hsdb"))
    assert max(c.stat().st_size for c in cached) > 1 << 20  # the patterns and the keys
    monkeypatch.setattr(module, "_COMPILED", {})

    class NoCompiling:
        def compile(self, **_: Any) -> None:
            raise AssertionError("compiled although the cache holds the database")

    monkeypatch.setattr("hyperscan.Database", NoCompiling)
    loaded = Scanner(KEY)  # from the file
    assert [(f.entity, f.start, f.end) for f in loaded.scan_text(text)] == expected
    assert {e for e, _, _ in expected} == {"PERSON_NAME", "GITHUB_TOKEN"}


def test_an_invalid_escape_costs_only_itself(scanner: Scanner) -> None:
    """A byte that is no UTF-8 decodes to U+FFFD alone; the escapes after it still decode
    (they once waited for a four-byte sequence that never came)."""
    text = "/v1/x?q=%ff%6Daria%40example.com"
    found = [(f.entity, text[f.start : f.end]) for f in scanner.scan_text(text)]
    assert found == [("EMAIL", "%6Daria%40example.com")]
