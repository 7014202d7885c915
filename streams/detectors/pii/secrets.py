"""Credentials: vendor token formats and high-entropy values next to secret-like names.

The token formats are the vendors' published prefixes and lengths (facts); a vendor token is
reported wherever it appears, without context. Generic secrets -- a value after a name such
as ``webhook_secret`` or ``DB_PASSWORD`` -- are reported only when the value looks random:
Shannon entropy over its characters, with thresholds per alphabet:

* hex (``[0-9a-f]``, at least 20 characters): at least 3.0 bits per character (a random hex
  string scores ~3.4 at 20 characters, ~3.8 at 64; ``deadbeefdeadbeef...`` or ``0000...``
  do not);
* base64 / base64url and other token alphabets (at least 16 characters, letters and digits
  both present): at least ``min(4.0, 0.85 * log2(length))`` bits per character -- a random
  20-character token scores ~4.0, 40 characters ~4.8; words, paths and repeated patterns
  score lower (``my-long-config-name`` 3.4, ``aaaaaaaaaaaaaaaaaaaa`` 0).
"""

from __future__ import annotations

import math
import re
from collections import Counter

HEX_MIN_LENGTH = 20
HEX_MIN_BITS = 3.0
TOKEN_MIN_LENGTH = 16
TOKEN_MAX_BITS = 4.0
TOKEN_LENGTH_FACTOR = 0.85

_HEX = re.compile(r"[0-9a-fA-F]+")
_TOKEN = re.compile(r"[A-Za-z0-9+/=_\-.~]+")

#: parts of a name that make its value a secret candidate (``stripe_secret``,
#: ``GH_TOKEN``, ``db-password``, ``signingKey``); compared lower-case
#: (the same list finds them in free text: ``HIGH_ENTROPY_SECRET``'s pattern)
SECRET_NAME_PARTS = (
    "secret", "token", "passw", "pwd", "credential", "apikey", "api_key", "api-key",
    "accesskey", "access_key", "access-key", "privatekey", "private_key", "private-key",
    "signingkey", "signing_key", "signing-key", "auth_key", "authkey", "auth-key",
    "client_key", "encryption_key", "master_key",
)  # fmt: skip


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-.~")


def token_end(text: str, end: int) -> int:
    """The end of the token run that reaches ``end`` (with base64 padding)."""
    while end < len(text) and text[end] in _TOKEN_CHARS:
        end += 1
    while text[end - 1] == ".":  # the full stop after a value is not part of it
        end -= 1
    while end < len(text) and text[end] == "=":
        end += 1
    return end


def shannon_bits(text: str) -> float:
    """Shannon entropy of ``text``'s characters, bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def looks_random(value: str) -> bool:
    """The entropy test above: hex, or a token alphabet with letters and digits."""
    if _HEX.fullmatch(value):
        return len(value) >= HEX_MIN_LENGTH and shannon_bits(value.lower()) >= HEX_MIN_BITS
    if len(value) < TOKEN_MIN_LENGTH or not _TOKEN.fullmatch(value):
        return False
    if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
        return False
    threshold = min(TOKEN_MAX_BITS, TOKEN_LENGTH_FACTOR * math.log2(len(value)))
    return shannon_bits(value) >= threshold


def is_secret_name(key: str) -> bool:
    low = key.lower()
    return any(part in low for part in SECRET_NAME_PARTS)


def high_entropy(text: str) -> str | None:
    value = text.strip("\"' ")
    return value if looks_random(value) else None


def aws_secret(text: str) -> str | None:
    value = text.strip("\"' ")
    if len(value) != 40 or not re.fullmatch(r"[A-Za-z0-9/+]{40}", value):
        return None
    return value if shannon_bits(value) >= 4.0 else None


def azure_key(text: str) -> str | None:
    value = text.strip("\"' ")
    return value if len(value) == 88 and value.endswith("==") else None


#: placeholders written where a password would go in documentation and config templates
_PLACEHOLDER = re.compile(
    r"(?:\*+|x+|\.+|<[^>]*>|\$\{?[A-Za-z_].*|\{\{.*|%\(.*|password|pass|secret)", re.IGNORECASE
)


def url_password(text: str) -> str | None:
    """The password of ``scheme://user:password@host`` (the span the scanner cut out),
    unless it is a placeholder."""
    return None if not text or _PLACEHOLDER.fullmatch(text) else text


def url_password_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The password's span inside a matched ``scheme://user:password@host``."""
    match = text[start:end]
    scheme_end = match.find("://")
    at = match.rfind("@")
    colon = match.find(":", scheme_end + 3, at)
    if scheme_end < 0 or at < 0 or colon < 0:
        return None
    return start + colon + 1, start + at
