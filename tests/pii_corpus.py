"""A labelled PII evaluation corpus, generated with Faker in five locales, and a
corpus of hard negatives. ``python -m tests.pii_corpus`` prints precision and recall per
entity (the figures in the README come from it).

Each positive is a text with the exact spans of the PII embedded in it: free text
(sentences of the locale, with or without a context word before the value) or a JSON
field value. Phone numbers are labelled only when ``phonenumbers`` considers them valid
for the locale's country (Faker also produces numbers no network would route).
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
from collections import Counter
from dataclasses import dataclass

import orjson
import phonenumbers
from faker import Faker

LOCALES = {"en_US": "US", "pt_BR": "BR", "de_DE": "DE", "fr_FR": "FR", "en_GB": "GB"}


@dataclass(frozen=True)
class Sample:
    text: str
    spans: tuple[tuple[int, int, str], ...]  # (start, end, entity)
    locale: str


CONTEXT = {
    "EMAIL": ["email:", "e-mail", "mail me at"],
    "CREDIT_CARD": ["card", "credit card", "cartão"],
    "US_SSN": ["SSN", "social security number"],
    "BR_CPF": ["CPF", "meu cpf é"],
    "BR_CNPJ": ["CNPJ"],
    "PHONE": ["phone", "tel.", "celular", "Handy"],
    "IBAN": ["IBAN", "bank account"],
    "IP_ADDRESS": ["ip", "from ip"],
    "AWS_ACCESS_KEY": ["aws key"],
    "JWT": ["token"],
    "BEARER_TOKEN": ["Authorization:"],
    "API_KEY": [""],
    "PRIVATE_KEY": [""],
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _group(digits: str, sep: str, size: int = 4) -> str:
    return sep.join(digits[i : i + size] for i in range(0, len(digits), size))


def _value(entity: str, fake: Faker, rng: random.Random, region: str) -> tuple[str, str] | None:
    """(text to embed, the part of it that is the finding)."""
    if entity == "EMAIL":
        v = rng.choice([fake.email, fake.free_email, fake.company_email])()
        return v, v
    if entity == "CREDIT_CARD":
        number = fake.credit_card_number()
        v = rng.choice([number, _group(number, " "), _group(number, "-")])
        return v, v
    if entity == "US_SSN":
        v = _SEEDED["en_US"].ssn()
        return v, v
    if entity == "BR_CPF":
        v = _SEEDED["pt_BR"].cpf()
        v = v if rng.random() < 0.6 else v.replace(".", "").replace("-", "")
        return v, v
    if entity == "BR_CNPJ":
        v = _SEEDED["pt_BR"].cnpj()
        v = v if rng.random() < 0.7 else "".join(c for c in v if c.isdigit())
        return v, v
    if entity == "PHONE":
        for _ in range(20):
            raw = fake.phone_number().split("x")[0].strip()
            try:
                if phonenumbers.is_valid_number(phonenumbers.parse(raw, region)):
                    return raw, raw
            except phonenumbers.NumberParseException:
                continue
        return None
    if entity == "IBAN":
        v = fake.iban()
        v = v if rng.random() < 0.5 else _group(v, " ")
        return v, v
    if entity == "IP_ADDRESS":
        v = rng.choice([fake.ipv4_public, fake.ipv4, fake.ipv6])()
        return v, v
    if entity == "AWS_ACCESS_KEY":
        v = "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
        return v, v
    if entity == "JWT":
        header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
        payload = _b64(orjson.dumps({"sub": fake.uuid4(), "name": fake.name()}))
        v = f"{header}.{payload}.{_b64(rng.randbytes(32))}"
        return v, v
    if entity == "BEARER_TOKEN":
        token = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(32))
        return f"Bearer {token}", token
    if entity == "API_KEY":
        key = "sk_" + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(24))
        name = rng.choice(["api_key", "apiKey", "API-KEY", "client_secret", "access_token"])
        return f"{name}={key}", key
    if entity == "PRIVATE_KEY":
        body = base64.b64encode(rng.randbytes(96)).decode()
        v = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
        return v, v
    raise ValueError(entity)


ENTITIES = tuple(CONTEXT)
_SEEDED: dict[str, Faker] = {}


def positives(per_entity_locale: int = 40, seed: int = 1) -> list[Sample]:
    rng = random.Random(seed)
    for name in ("en_US", "pt_BR"):  # US SSNs and Brazilian documents in every locale
        _SEEDED[name] = Faker(name)
        _SEEDED[name].seed_instance(seed + 100)
    out: list[Sample] = []
    for locale, region in LOCALES.items():
        fake = Faker(locale)
        fake.seed_instance(seed)
        for entity in ENTITIES:
            for i in range(per_entity_locale):
                made = _value(entity, fake, rng, region)
                if made is None:
                    continue
                embedded, secret = made
                context = rng.choice(CONTEXT[entity]) if rng.random() < 0.5 else ""
                if i % 2:  # free text
                    before = f"{fake.sentence()} {context} ".replace("  ", " ").lstrip()
                    after = f" {fake.sentence()}"
                    text = before + embedded + after
                    start = len(before) + embedded.index(secret)
                else:  # a JSON document, the value in a field
                    key = rng.choice(["contact", "info", "value", "detail", "note"])
                    doc = {"id": i, key: f"{context} {embedded}".strip(), "lang": locale}
                    text = orjson.dumps(doc).decode()
                    embedded = orjson.dumps(embedded).decode()[1:-1]  # as escaped in JSON
                    secret = orjson.dumps(secret).decode()[1:-1]
                    start = text.index(embedded) + embedded.index(secret)
                out.append(Sample(text, ((start, start + len(secret), entity),), locale))
    return out


def _wrong_cpf(rng: random.Random) -> str:
    """Eleven digits whose check digits are wrong (formatted or not)."""
    from streams.detectors.pii.validators import cpf

    while True:
        body = "".join(rng.choice(string.digits) for _ in range(9))
        check = f"{rng.randrange(100):02d}"
        if cpf(body + check) is None:
            return rng.choice([f"{body[:3]}.{body[3:6]}.{body[6:]}-{check}", body + check])


def _luhn_invalid(rng: random.Random) -> str:
    from streams.detectors.pii.validators import luhn_ok

    while True:
        n = "".join(rng.choice(string.digits) for _ in range(rng.randrange(13, 20)))
        if not luhn_ok(n):
            return n


def negatives(count: int = 3000, seed: int = 2) -> list[Sample]:
    """Strings that look like PII to a naive matcher and are not."""
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    makers = [
        lambda: str(fake.uuid4()),
        lambda: f"ORD-{rng.randrange(2019, 2027)}-{rng.randrange(10**6):06d}",
        lambda: f"order #{rng.randrange(10**6, 10**9)}",
        lambda: fake.iso8601(),
        lambda: str(rng.randrange(1_600_000_000_000, 1_800_000_000_000)),
        lambda: str(rng.randrange(1_600_000_000, 1_800_000_000)),  # epoch seconds
        lambda: f"v{rng.randrange(10)}.{rng.randrange(30)}.{rng.randrange(100)}",
        lambda: f"release {rng.randrange(10)}.{rng.randrange(30)}.{rng.randrange(100)}",
        lambda: _luhn_invalid(rng),
        lambda: _wrong_cpf(rng),
        lambda: rng.randbytes(rng.randrange(8, 20)).hex(),
        lambda: hashlib.sha1(rng.randbytes(8), usedforsecurity=False).hexdigest(),
        lambda: hashlib.sha256(rng.randbytes(8)).hexdigest(),
        lambda: f"${rng.randrange(1, 99_999):,}.{rng.randrange(100):02d}",
        lambda: f"R$ {rng.randrange(1, 9_999)},{rng.randrange(100):02d}",
        lambda: f"{rng.randrange(1, 99_999):,}.{rng.randrange(100):02d} EUR".replace(",", "."),
        lambda: fake.date(),
        lambda: fake.time(),
        lambda: f"usr_{rng.randbytes(8).hex()}",
        lambda: f"{rng.randrange(10**5, 10**6)}-{rng.randrange(10**3, 10**4)}",
        lambda: f"build {rng.randrange(10**7, 10**8)}",
        lambda: (
            f"{rng.randrange(1, 300)} items at {rng.randrange(1, 100)}.{rng.randrange(100):02d}"
        ),
        lambda: fake.sentence(),
    ]
    out: list[Sample] = []
    for i in range(count):
        value = makers[i % len(makers)]()
        text = (
            f"{fake.sentence()} {value} {fake.sentence()}"
            if i % 2
            else orjson.dumps({"ref": value, "n": i}).decode()
        )
        out.append(Sample(text, (), "en_US"))
    return out


def evaluate(scan: object, samples: list[Sample]) -> dict[str, tuple[int, int, int]]:
    """Per entity: (true positives, false positives, false negatives), exact spans."""
    counts: dict[str, Counter[str]] = {}
    for sample in samples:
        found = {(f.start, f.end, f.entity) for f in scan.scan_text(sample.text)}  # type: ignore[attr-defined]
        expected = set(sample.spans)
        for start, end, entity in found:
            c = counts.setdefault(entity, Counter())
            c["tp" if (start, end, entity) in expected else "fp"] += 1
        for span in expected - found:
            counts.setdefault(span[2], Counter())["fn"] += 1
    return {e: (c["tp"], c["fp"], c["fn"]) for e, c in sorted(counts.items())}


def report(scan: object) -> str:
    table = evaluate(scan, positives() + negatives())
    lines = ["| entity | TP | FP | FN | precision | recall |", "|---|---:|---:|---:|---:|---:|"]
    for entity, (tp, fp, fn) in table.items():
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        lines.append(f"| {entity} | {tp} | {fp} | {fn} | {p:.2%} | {r:.2%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    from streams.detectors.pii.scanner import Scanner

    print(report(Scanner(b"corpus")))
