"""What counts as PII: one entry per entity type -- candidate patterns, validator,
confidence, context keywords, how to mask it.

Patterns use the syntax common to Hyperscan, RE2 and Python ``re`` (no lookaround, no
backreferences), so the engines are interchangeable and comparable. Boundaries that need
lookaround are checked in Python on the (rare) candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from streams.detectors.pii import validators as v

Boundary = Literal["none", "number", "word", "ip", "hex"]


@dataclass(frozen=True, slots=True)
class Entity:
    name: str
    patterns: tuple[str, ...]
    validate: Callable[[str], str | None]
    confidence: float
    priority: int  # lower wins when findings overlap
    context: tuple[str, ...] = ()
    boundary: Boundary = "none"
    caseless: bool = False
    #: patterns (by index) that count only with a context keyword nearby
    needs_context: tuple[int, ...] = ()
    #: the part of a match that is the secret (e.g. the value of ``api_key=...``)
    value_after: str | None = None
    checksum: bool = False


CARD_CONTEXT = ("card", "credit", "debit", "visa", "mastercard", "amex", "cartao", "cartão",
                "karte", "carte", "cc")  # fmt: skip
PHONE_CONTEXT = ("phone", "tel", "mobile", "cell", "celular", "telefone", "telefon", "handy",
                 "téléphone", "portable", "call", "whatsapp", "sms")  # fmt: skip

ENTITIES: tuple[Entity, ...] = (
    Entity(
        "PRIVATE_KEY",
        (r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",),
        v.anything,
        0.99,
        0,
    ),
    Entity(
        "CREDIT_CARD",
        (r"\d(?:[ \-]?\d){11,18}",),
        v.card,
        0.9,
        1,
        CARD_CONTEXT,
        boundary="number",
        checksum=True,
    ),
    Entity(
        "US_SSN",
        (r"\d{3}-\d{2}-\d{4}", r"\d{3} \d{2} \d{4}", r"\d{9}"),
        v.ssn,
        0.85,
        1,
        ("ssn", "social security", "social_security"),
        boundary="number",
        needs_context=(2,),
        checksum=True,
    ),
    Entity(
        "BR_CPF",
        (r"\d{3}\.\d{3}\.\d{3}-\d{2}", r"\d{11}"),
        v.cpf,
        0.92,  # two check digits: on a tie with a card number it wins without context
        1,
        ("cpf",),
        boundary="number",
        checksum=True,
    ),
    Entity(
        "BR_CNPJ",
        (r"\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}", r"\d{14}"),
        v.cnpj,
        0.92,
        1,
        ("cnpj",),
        boundary="number",
        checksum=True,
    ),
    Entity(
        "IBAN",
        (r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?",),
        v.iban,
        0.95,
        1,
        ("iban", "bank", "account"),
        boundary="word",
        checksum=True,
    ),
    Entity(
        "AWS_ACCESS_KEY",
        (r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA)[A-Z0-9]{16}",),
        v.aws_key,
        0.95,
        2,
        ("aws", "access key"),
        boundary="word",
    ),
    Entity(
        "JWT",
        (r"eyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*",),
        v.jwt,
        0.95,
        2,
        ("token", "jwt", "authorization"),
        boundary="word",
    ),
    Entity(
        "BEARER_TOKEN",
        (r"[Bb]earer[ ]+[A-Za-z0-9\-._~+/]{16,}=*",),
        v.token,
        0.9,
        3,
        ("authorization",),
        value_after=" ",
    ),
    Entity(
        "API_KEY",
        (
            r"(?:api[_\-]?key|apikey|api[_\-]?token|secret[_\-]?key|client[_\-]?secret|"
            r"access[_\-]?token|auth[_\-]?token|private[_\-]?token)[\"']?[ ]*[:=][ ]*[\"']?"
            r"[A-Za-z0-9_\-./+=]{12,}",
        ),
        v.token,
        0.9,
        3,
        caseless=True,
        value_after="=:",
    ),
    Entity(
        "SENSITIVE_FIELD",
        (
            r"(?:password|passwd|pwd|passphrase|cvv|cvc|pin|secret)[\"']?[ ]*[:=][ ]*[\"']?"
            r"[^ \t\r\n\"',;}]+",
        ),
        v.anything,
        0.9,
        3,
        caseless=True,
        value_after="=:",
        boundary="word",
    ),
    Entity(
        "EMAIL",
        (r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}",),
        v.email,
        0.9,
        4,
        ("email", "e-mail", "mail"),
        boundary="word",
    ),
    Entity(
        "PHONE",
        (
            r"\+\d[\d \-().]{6,20}\d",
            r"00\d[\d \-().]{6,20}\d",
            r"\(?\d{2,5}\)?[ \-.]\d{2,8}(?:[ \-.]\d{2,8}){0,3}",
            r"\(\d{2,5}\)\d{3,5}[ \-.]?\d{3,5}",
            r"0\d{9}",
            r"0\d{10}",
            r"\d{10,11}",
        ),
        v.phone,
        0.75,
        6,
        PHONE_CONTEXT,
        boundary="number",
        needs_context=(5, 6),  # 11 digits could be a CPF; other runs, anything
    ),
    Entity(
        # A bare 10-digit North American number: valid area code and exchange, so epoch
        # seconds (1...) and most IDs fail. Low confidence, but redacted all the same:
        # a number redacted by mistake costs less than a phone number stored.
        "PHONE",
        (r"[2-9]\d{9}",),
        v.nanp_phone,
        0.5,
        6,
        PHONE_CONTEXT,
        boundary="number",
    ),
    Entity("IP_ADDRESS", (r"\d{1,3}(?:\.\d{1,3}){3}",), v.ipv4, 0.75, 5, ("ip",), "ip"),
    Entity(
        "IP_ADDRESS",
        (r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}",),
        v.ipv6,
        0.75,
        5,
        ("ip",),
        "hex",
    ),
)

ENTITY_NAMES: tuple[str, ...] = tuple(sorted({e.name for e in ENTITIES}))
CHECKSUM_ENTITIES = frozenset(e.name for e in ENTITIES if e.checksum)

#: JSON keys whose values are reported whatever they look like (compared lower-case,
#: with "-", " " and "." read as "_")
SENSITIVE_KEYS = frozenset(
    {
        "password", "passwd", "pwd", "pass", "passphrase", "secret", "client_secret",
        "token", "access_token", "refresh_token", "id_token", "auth_token", "api_key",
        "apikey", "api_secret", "private_key", "cpf", "cnpj", "ssn", "social_security",
        "social_security_number", "card_number", "cardnumber", "credit_card", "cc_number",
        "pan", "cvv", "cvc", "cvv2", "security_code", "iban", "account_number", "pin",
        "otp", "mfa_code", "session_id", "cookie", "authorization",
    }
)  # fmt: skip


def is_sensitive_key(key: str) -> bool:
    norm = key.strip().lower().replace("-", "_").replace(" ", "_").replace(".", "_")
    return norm in SENSITIVE_KEYS


# --- masks: what may be shown of a finding -------------------------------------------


def mask(entity: str, value: str) -> str:
    """A preview that identifies the kind and shape, never the value."""
    if entity == "EMAIL" and "@" in value:
        local, _, domain = value.rpartition("@")
        host, _, tld = domain.rpartition(".")
        return f"{local[:1]}***@{host[:1]}***.{tld}"
    if entity == "CREDIT_CARD":
        return "****-****-****-" + v.digits(value)[-4:]
    if entity in ("US_SSN",):
        return "***-**-" + v.digits(value)[-4:]
    if entity in ("BR_CPF", "BR_CNPJ", "PHONE", "IBAN"):
        keep = 2
        out, seen = [], 0
        alnum = sum(c.isalnum() for c in value)
        for c in value:
            if c.isalnum():
                seen += 1
                out.append(c if seen > alnum - keep or (entity == "IBAN" and seen <= 2) else "*")
            else:
                out.append(c)
        return "".join(out)
    if entity == "IP_ADDRESS":
        if "." in value:
            return value.split(".")[0] + ".***.***.***"
        return value.split(":")[0] + ":****:…"
    if entity in ("AWS_ACCESS_KEY", "JWT"):
        return value[:4] + "*" * 8
    if entity == "PRIVATE_KEY":
        return "-----BEGIN PRIVATE KEY-----***"
    return "***"
