"""Validators that turn pattern candidates into findings (or reject them).

Each takes the candidate text and returns the canonical value to report, or ``None``.
Checksums (Luhn, mod 11, mod 97) and structural checks are what keep digit runs, IDs
and version strings from being reported as PII.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

import orjson
import phonenumbers

_NON_DIGIT = re.compile(r"\D")


def digits(text: str) -> str:
    return _NON_DIGIT.sub("", text)


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _iin_ok(number: str) -> bool:
    """Issuer ranges of the card networks in circulation (prefix and length)."""
    n = len(number)
    p2, p3, p4, p6 = int(number[:2]), int(number[:3]), int(number[:4]), int(number[:6])
    if number[0] == "4":
        return n in (13, 16, 19)  # Visa
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16  # Mastercard
    if p2 in (34, 37):
        return n == 15  # American Express
    if p4 == 6011 or p2 == 65 or 644 <= p3 <= 649 or 622126 <= p6 <= 622925:
        return 16 <= n <= 19  # Discover
    if 3528 <= p4 <= 3589:
        return 16 <= n <= 19  # JCB
    if 300 <= p3 <= 305 or p2 in (36, 38, 39) or p4 == 3095:
        return 14 <= n <= 19  # Diners Club
    if p2 == 62:
        return 16 <= n <= 19  # UnionPay
    if p2 in (50, 56, 57, 58, 63, 67) or p4 == 604:
        return 12 <= n <= 19  # Maestro (0604 included)
    if p2 == 35:
        return 16 <= n <= 19  # JCB, the whole 35 range as issuers use it
    if p4 in (2131, 1800):
        return n == 15  # JCB 15-digit
    return False


def card(text: str) -> str | None:
    number = digits(text)
    if not 12 <= len(number) <= 19 or not luhn_ok(number) or not _iin_ok(number):
        return None
    separators = {c for c in text if not c.isdigit()}
    if len(separators) > 1:
        return None  # "4111-1111 1111.1111" is not how anyone writes a card
    return number


def ssn(text: str) -> str | None:
    number = digits(text)
    if len(number) != 9:
        return None
    area, group, serial = number[:3], number[3:5], number[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return None
    if len({c for c in text if not c.isdigit()}) > 1:
        return None
    return number


def _mod11_digit(body: str, weights: range | list[int]) -> int:
    total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
    rest = total % 11
    return 0 if rest < 2 else 11 - rest


def cpf(text: str) -> str | None:
    number = digits(text)
    if len(number) != 11 or len(set(number)) == 1:
        return None
    if _mod11_digit(number[:9], range(10, 1, -1)) != int(number[9]):
        return None
    if _mod11_digit(number[:10], range(11, 1, -1)) != int(number[10]):
        return None
    return number


_CNPJ_W1 = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
_CNPJ_W2 = [6, *_CNPJ_W1]


def cnpj(text: str) -> str | None:
    number = digits(text)
    if len(number) != 14 or len(set(number)) == 1:
        return None
    if _mod11_digit(number[:12], _CNPJ_W1) != int(number[12]):
        return None
    if _mod11_digit(number[:13], _CNPJ_W2) != int(number[13]):
        return None
    return number


#: IBAN length per country (ISO 13616 registry)
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban(text: str) -> str | None:
    value = text.replace(" ", "").upper()
    if IBAN_LENGTHS.get(value[:2]) != len(value) or not value.isalnum():
        return None
    rearranged = value[4:] + value[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return value if int(number) % 97 == 1 else None


#: regions tried for numbers written without a country code, in order
PHONE_REGIONS: tuple[str, ...] = ("US", "BR", "GB", "DE", "FR")
_IPV4_LIKE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){2,3}$")
_CPF_LIKE = re.compile(r"^\d{3}\.\d{3}\.\d{3}-\d{2}$")
_DATE_LIKE = re.compile(r"^\d{4}[-/.]\d{2}[-/.]\d{2}|^\d{2}[-/.]\d{2}[-/.]\d{4}")


def phone(text: str) -> str | None:
    value = text.strip()
    number = digits(value)
    if _DATE_LIKE.match(value) or ":" in value or _IPV4_LIKE.match(value) or _CPF_LIKE.match(value):
        return None
    if value.startswith("+") or value.startswith("00"):
        if len(number) < 8:
            return None
        international = "+" + number.removeprefix("00") if value.startswith("00") else value
        try:
            parsed = phonenumbers.parse(international, None)
        except phonenumbers.NumberParseException:
            return None
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        return None
    if len(number) < 9 or len(number) > 13:
        return None
    for region in PHONE_REGIONS:
        try:
            parsed = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None


def nanp_phone(text: str) -> str | None:
    """Ten bare digits that form a valid North American number."""
    try:
        parsed = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        return None
    if parsed.country_code == 1 and phonenumbers.is_valid_number(parsed):
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None


def ipv4(text: str) -> str | None:
    parts = text.split(".")
    if len(parts) != 4 or any(len(p) > 1 and p[0] == "0" for p in parts):
        return None
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def ipv6(text: str) -> str | None:
    if text.count(":") < 2:
        return None
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return str(address)


def email(text: str) -> str | None:
    local, _, domain = text.rpartition("@")
    if not local or ".." in text or local[0] == "." or local[-1] == ".":
        return None
    labels = domain.split(".")
    if len(labels) < 2 or not labels[-1].isalpha():
        return None
    return text.lower()


def _b64url_json(segment: str) -> object:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return orjson.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None


def jwt(text: str) -> str | None:
    parts = text.split(".")
    if len(parts) != 3:
        return None
    header = _b64url_json(parts[0])
    if not isinstance(header, dict) or not ("alg" in header or "typ" in header):
        return None
    return text


def token(text: str) -> str | None:
    """A bearer token or API key value: long, and not a plain lower-case word or number."""
    if len(text) < 12:
        return None
    has_digit = any(c.isdigit() for c in text)
    has_alpha = any(c.isalpha() for c in text)
    mixed_case = text != text.lower() and text != text.upper()
    return text if has_alpha and (has_digit or mixed_case) else None


def aws_key(text: str) -> str | None:
    rest = text[4:]
    return text if len(text) == 20 and rest.isalnum() and rest == rest.upper() else None


def anything(text: str) -> str | None:
    return text or None
