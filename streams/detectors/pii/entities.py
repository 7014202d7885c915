"""What counts as PII: one entry per entity type -- candidate patterns, validator,
confidence, context keywords, how to mask it.

Patterns use the syntax common to Hyperscan, RE2 and Python ``re`` (no lookaround, no
backreferences), so the engines are interchangeable and comparable. Boundaries that need
lookaround are checked in Python on the (rare) candidates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from streams.detectors.pii import people
from streams.detectors.pii import secrets as sec
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
    #: (text, start, end, pattern index, context?) -> the entity's whole span, or None:
    #: for entities whose pattern finds an anchor (a given name, a street type)
    extend: Callable[[str, int, int, int, bool], tuple[int, int] | None] | None = None
    #: per pattern: a dictionary of literals the engine looks for (Hyperscan compiles each
    #: as its own literal; RE2 and Python re use the pattern, their alternation), or None
    literals: tuple[tuple[str, ...] | None, ...] = ()
    #: JSON keys that count as context (compared as :func:`people.norm_key` reads keys);
    #: None: any key holding a context word
    context_keys: frozenset[str] | None = None
    #: a context word glued to a word by "_" or "." ("name" in "event_name") is none
    context_own_word: bool = False


def _token(
    name: str, *patterns: str, confidence: float = 0.99, context: tuple[str, ...] = ()
) -> Entity:
    """A vendor's token format: recognised by its prefix and length alone."""
    return Entity(name, patterns, v.anything, confidence, 2, context, boundary="word")


def _keyed(name: str, key: str, value: str, validate: Callable[[str], str | None]) -> Entity:
    """A credential recognised by the name before it: ``key = value``, ``"key": "value"``."""
    return Entity(
        name,
        (key + r"[\"']?[ ]*[:=][ ]*[\"']?" + value,),
        validate,
        0.95,
        2,
        caseless=True,
        value_after="=:",
        boundary="word",
    )


def _through_key_block(
    text: str, start: int, end: int, index: int, context: bool
) -> tuple[int, int]:
    """A PEM header: the finding runs to the end of its block (or of the text)."""
    closing = text.find("PRIVATE KEY-----", end)
    return start, closing + len("PRIVATE KEY-----") if closing >= 0 else len(text)


def _not_url_user(
    text: str, start: int, end: int, index: int, context: bool
) -> tuple[int, int] | None:
    """The user of a URL ("postgres://app@db") is no e-mail address."""
    return None if text[max(0, start - 3) : start] == "://" else (start, end)


def _literal_alternation(words: tuple[str, ...]) -> str:
    return "(?:" + "|".join(re.escape(w) for w in words) + ")"


CARD_CONTEXT = ("card", "credit", "debit", "visa", "mastercard", "amex", "cartao", "cartão",
                "karte", "carte", "cc")  # fmt: skip
PHONE_CONTEXT = ("phone", "tel", "mobile", "cell", "celular", "telefone", "telefon", "handy",
                 "téléphone", "portable", "call", "whatsapp", "sms")  # fmt: skip

ADDRESS_CONTEXT = (
    "address", "ship to", "shipping", "deliver", "lives at", "endereço", "endereco", "adresse",
    "anschrift", "dirección", "direccion", "domicilio", "morada",
)  # fmt: skip

ENTITIES: tuple[Entity, ...] = (
    Entity(
        "PRIVATE_KEY",
        (r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",),
        v.anything,
        0.99,
        0,
        extend=_through_key_block,
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
    # --- vendor tokens: published prefixes and lengths, reported without context ----
    _token(
        "GITHUB_TOKEN", r"gh[pousr]_[A-Za-z0-9]{36}", r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}"
    ),
    _token("GITLAB_TOKEN", r"gl(?:pat|dt|rt|ptt|ft|imt|cbt|soat|oas|agent)-[A-Za-z0-9_\-]{20,64}"),
    _token(
        "SLACK_TOKEN",
        r"xox[abposre]-[0-9]{6,}-[0-9A-Za-z\-]{8,}",
        r"xapp-\d-[A-Z0-9]{6,}-\d{6,}-[a-z0-9]{32,}",
    ),
    _token(
        "SLACK_WEBHOOK",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{20,}",
    ),
    _token("STRIPE_KEY", r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,99}"),
    _token("GOOGLE_API_KEY", r"AIza[0-9A-Za-z_\-]{35}"),
    _token("TWILIO_KEY", r"(?:AC|SK)[0-9a-f]{32}", confidence=0.9, context=("twilio",)),
    _token("SENDGRID_KEY", r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"),
    _token("NPM_TOKEN", r"npm_[A-Za-z0-9]{36}"),
    _token("PYPI_TOKEN", r"pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_\-]{50,}"),
    # --- credentials recognised by the name before them -------------------------------
    _keyed(
        "AWS_SECRET_KEY",
        r"(?:aws[_\-. ]?)?secret[_\-. ]?(?:access[_\-. ]?)?key(?:[_\-]?id)?",
        r"[A-Za-z0-9/+]{40}",
        sec.aws_secret,
    ),
    _keyed(
        "AZURE_STORAGE_KEY",
        r"(?:AccountKey|(?:azure[_\-. ]?)?storage[_\-. ]?(?:account[_\-. ]?)?key)",
        r"[A-Za-z0-9+/]{86}==",
        sec.azure_key,
    ),
    Entity(
        "URL_CREDENTIALS",
        (
            r"[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^ \t\r\n/:@\"'<>]+:[^ \t\r\n/@\"'<>]+@"
            r"[A-Za-z0-9.\-\[\]]+",
        ),
        sec.url_password,
        0.95,
        2,
        extend=lambda text, start, end, index, context: sec.url_password_span(text, start, end),
    ),
    Entity(
        # a random-looking value after a secret-like name (entropy thresholds: secrets.py)
        "HIGH_ENTROPY_SECRET",
        (
            _literal_alternation(sec.SECRET_NAME_PARTS)
            + r"[A-Za-z0-9_\-.]*[\"']?[ ]*[:=][ ]*[\"']?[A-Za-z0-9+/_\-.~]{16}",  # end: extend
        ),
        sec.high_entropy,
        0.8,
        3,
        caseless=True,
        value_after="=:",
        extend=lambda text, start, end, index, context: (start, sec.token_end(text, end)),
    ),
    # --- personal data without checksums (rules: people.py) ----------------------------
    Entity(
        "PERSON_NAME",
        (
            _literal_alternation(people.given_literals()),
            _literal_alternation(people.common_given_literals()),
            r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sr|Sra|Srta|Dona|Herr|Frau|Mme|Mlle|Monsieur|Madame|"
            r"Señor|Señora|Señorita|Doña|Sir|Dame)\.?[ ]+[A-Z\x80-\xff]",
            r"(?:[Cc]ustomer|CUSTOMER|[Cc]lient|CLIENT|[Cc]liente|CLIENTE|[Kk]unde|KUNDE|[Kk]undin|"
            r"[Cc]ontact|CONTACT|[Cc]ontato|[Nn]ame|NAME|[Nn]ome|NOME|[Nn]ombre|NOMBRE|[Nn]om|NOM|"
            r"[Pp]atient|[Pp]aciente)[ ]*:?[ ]+"
            r"[A-Z\x80-\xff]",
        ),
        v.anything,
        0.7,
        7,
        people.NAME_CONTEXT,
        extend=people.extend_name,
        context_keys=people.NAME_KEYS,
        context_own_word=True,
        literals=(people.given_literals(), people.common_given_literals(), None, None),
    ),
    Entity(
        "STREET_ADDRESS",
        people.EN_ADDRESS_PATTERNS,
        v.anything,
        0.75,
        5,
        ADDRESS_CONTEXT,
        extend=people.extend_en_address,
    ),
    Entity(
        "STREET_ADDRESS",
        people.ADDRESS_PATTERNS,
        v.anything,
        0.75,
        5,
        ADDRESS_CONTEXT,
        caseless=True,
        extend=people.extend_address,
    ),
    Entity(
        "DATE_OF_BIRTH",
        people.DATE_PATTERNS,
        people.birth_date,
        0.8,
        4,
        people.DOB_CONTEXT,
        boundary="number",
        caseless=True,
        needs_context=tuple(range(len(people.DATE_PATTERNS))),
        extend=people.extend_date,
    ),
    Entity(
        "ID_DOCUMENT",
        people.ID_PATTERNS,
        people.id_document,
        0.8,
        4,
        people.ID_CONTEXT,
        boundary="word",
        needs_context=tuple(range(len(people.ID_PATTERNS))),
    ),
    Entity(
        "EMAIL",
        (r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}",),
        v.email,
        0.9,
        4,
        ("email", "e-mail", "mail"),
        boundary="word",
        extend=_not_url_user,
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
    return people.norm_key(key) in SENSITIVE_KEYS


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
