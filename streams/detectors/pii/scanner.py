"""Find PII in strings and JSON values; redact it.

Candidate search is one multi-pattern pass over the text -- Hyperscan by default (all
patterns of every entity compiled into one database), RE2 sets or a loop of Python
``re`` patterns as alternatives (``make bench`` compares them) -- and validators run only
on candidates. A finding never carries the raw value: entity, JSON path, span, confidence,
a masked preview and a keyed HMAC for correlation.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import hmac
import os
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from streams.detectors.pii import people
from streams.detectors.pii.entities import ENTITIES, SENSITIVE_KEYS, Entity, is_sensitive_key, mask
from streams.detectors.pii.secrets import (
    SECRET_NAME_PARTS,
    aws_secret,
    is_secret_name,
    looks_random,
)

Engine = Literal["hyperscan", "re2", "re"]
Policy = Literal["redact", "hash", "drop-field"]
CONTEXT_WINDOW = 40  # characters before a match searched for context keywords
CONTEXT_BONUS = 0.1


@dataclass(frozen=True, slots=True)
class Finding:
    entity: str
    json_path: str
    start: int
    end: int
    confidence: float
    preview: str
    hmac: str


@dataclass(frozen=True, slots=True)
class _Pattern:
    entity: Entity
    index: int  # within the entity's patterns
    regex: str


#: a key in JSON text whose value is looked at as a whole ("Card-Number": ...,
#: "first_name": ..., "webhook_secret": ...), as :func:`is_sensitive_key` and
#: :func:`_key_rule` read keys
_SENSITIVE_KEY_JSON = re.compile(
    '"(?:'
    + "|".join(
        re.escape(k).replace("_", "[_. -]")
        for k in sorted(SENSITIVE_KEYS | people.NAME_KEYS | people.ADDRESS_KEYS | people.ID_KEYS)
    )
    + ')"\\s*:|"[^"\\\\]{0,40}(?:'
    + "|".join(re.escape(part) for part in SECRET_NAME_PARTS)
    + ')[^"\\\\]{0,40}"\\s*:',
    re.IGNORECASE,
)

#: context keywords per entity, matched as whole words ("tel" is not in "hotel" or "tell")
_CONTEXT_RE: dict[str, re.Pattern[str]] = {
    e.name: re.compile(
        (r"(?<![a-z0-9_.])(?:" if e.context_own_word else r"(?<![a-z0-9])(?:")
        + "|".join(re.escape(k) for k in e.context)
        + r")(?![a-z0-9])"
    )
    for e in ENTITIES
    if e.context
}

_PATTERNS: tuple[_Pattern, ...] = tuple(
    _Pattern(e, i, p) for e in ENTITIES for i, p in enumerate(e.patterns)
)
#: Hyperscan ids past the patterns: one literal of a dictionary each -> (pattern id, bytes)
_LITERALS: tuple[tuple[int, bytes], ...] = tuple(
    (pid, word.encode())
    for pid, p in enumerate(_PATTERNS)
    if p.index < len(p.entity.literals)
    for word in (p.entity.literals[p.index] or ())
)
_DICTIONARY_PIDS = frozenset(pid for pid, _ in _LITERALS)

#: (pattern id, start, end) candidates of one text
Candidates = dict[tuple[int, int], list[int]]


_COMPILED: dict[str, bytes] = {}


def _compiled(expressions: list[bytes], ids: list[int], flags: list[int]) -> Any:
    """The Hyperscan database of these patterns: compiled once per process and kept in
    ``~/.cache/vigil`` (the dictionaries take ~2 s to compile; loading takes ~20 ms).
    The file's name is a digest of the patterns and the library version, so any change to
    the patterns compiles afresh; a cache that cannot be written is skipped."""
    import hyperscan

    digest = hashlib.sha256(
        repr((getattr(hyperscan, "__version__", ""), expressions, ids, flags)).encode()
    ).hexdigest()[:24]
    blob = _COMPILED.get(digest)
    try:
        path: Path | None = Path.home() / ".cache" / "vigil" / f"pii-{digest}.hsdb"
    except RuntimeError:  # no home directory: compile, cache nothing
        path = None
    if blob is None and path is not None:
        try:
            if path.stat().st_uid == os.getuid() and not path.stat().st_mode & 0o022:
                blob = path.read_bytes()
        except OSError:
            blob = None
    if blob is not None:
        try:
            db = hyperscan.loadb(blob, hyperscan.HS_MODE_BLOCK)
            _COMPILED[digest] = blob
            return db
        except hyperscan.error:
            blob = None
    db = hyperscan.Database()
    db.compile(expressions=expressions, ids=ids, elements=len(expressions), flags=flags)
    blob = hyperscan.dumpb(db)
    _COMPILED[digest] = blob
    if path is None:
        return db
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(blob)
        partial.chmod(0o644)
        partial.replace(path)
    except OSError:
        pass
    return db


class _HyperscanEngine:
    def __init__(self) -> None:
        import hyperscan

        regexes = [pid for pid in range(len(_PATTERNS)) if pid not in _DICTIONARY_PIDS]
        flags = [
            hyperscan.HS_FLAG_SOM_LEFTMOST
            | (hyperscan.HS_FLAG_CASELESS if _PATTERNS[pid].entity.caseless else 0)
            for pid in regexes
        ]
        # dictionaries: every word its own case-sensitive literal (no start-of-match
        # tracking needed: the start is the end minus the word's length)
        self._base = len(_PATTERNS)
        expressions = [_PATTERNS[pid].regex.encode() for pid in regexes]
        expressions += [re.escape(word) for _, word in _LITERALS]
        self._db = _compiled(
            expressions,
            regexes + list(range(self._base, self._base + len(_LITERALS))),
            flags + [0] * len(_LITERALS),
        )
        self._scratch = hyperscan.Scratch(self._db)
        self._keys = _compiled(
            [_SENSITIVE_KEY_JSON.pattern.encode()], [0], [hyperscan.HS_FLAG_CASELESS]
        )
        self._keys_scratch = hyperscan.Scratch(self._keys)

    def key_hits(self, blobs: list[str]) -> set[int]:
        """Indices of the JSON texts with a sensitive key, in one pass over all of them."""
        data = [b.encode("utf-8", "surrogatepass") for b in blobs]
        starts = []
        position = 0
        for d in data:
            starts.append(position)
            position += len(d) + 1
        hits: set[int] = set()

        def on_match(pid: int, start: int, end: int, flags: int, ctx: object) -> None:
            hits.add(bisect_right(starts, end - 1) - 1)

        self._keys.scan(
            b"\x00".join(data), match_event_handler=on_match, scratch=self._keys_scratch
        )
        return hits

    def candidates(self, data: bytes) -> Candidates:
        found: Candidates = {}
        base = self._base

        def on_match(pid: int, start: int, end: int, flags: int, ctx: object) -> None:
            if pid >= base:
                pid, word = _LITERALS[pid - base]
                start = end - len(word)
            ends = found.get((pid, start))
            if ends is None:
                found[(pid, start)] = [end]
            else:
                ends.append(end)

        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch)
        return found


class _RegexEngine:
    """Python ``re`` (the baseline) or RE2 with a prefilter set."""

    def __init__(self, flavour: Literal["re", "re2"]) -> None:
        module: Any
        options: Any = None
        if flavour == "re2":
            import re2

            module = re2
            options = re2.Options()
            options.case_sensitive = True
            options.max_mem = 256 << 20  # the name dictionaries
            self._set: Any = re2.Set.SearchSet(options)
            for p in _PATTERNS:
                self._set.Add(("(?i)" if p.entity.caseless else "") + p.regex)
            self._set.Compile()
        else:
            module = re
            self._set = None
        self._compiled = [
            module.compile(p.regex.encode(), re.IGNORECASE if p.entity.caseless else 0)
            if flavour == "re"
            else module.compile(("(?i)" if p.entity.caseless else "") + p.regex, options)
            for p in _PATTERNS
        ]
        self._flavour = flavour

    def key_hits(self, blobs: list[str]) -> set[int]:
        return {i for i, b in enumerate(blobs) if _SENSITIVE_KEY_JSON.search(b)}

    def candidates(self, data: bytes) -> Candidates:
        found: Candidates = {}
        if self._set is not None:
            text = data.decode("utf-8", "surrogatepass")
            hits = self._set.Match(text) or []
            for pid in hits:
                for m in self._compiled[pid].finditer(text):
                    start = len(text[: m.start()].encode())
                    for end in _shorter(self._compiled[pid], text, m.start(), m.end(), " "):
                        found.setdefault((pid, start), []).append(
                            start + len(text[m.start() : end].encode())
                        )
            return found
        for pid, regex in enumerate(self._compiled):
            for m in regex.finditer(data):
                ends = _shorter(regex, data, m.start(), m.end(), b" ")
                found.setdefault((pid, m.start()), []).extend(ends)
        return found


def _shorter(regex: Any, text: Any, start: int, end: int, space: Any) -> list[int]:
    """The match's end and the ends of shorter matches from the same start that stop
    before one of its spaces ("ES49 ... 7195 P" is also "ES49 ... 7195"): Hyperscan reports
    every end, the backtracking engines only the greedy one."""
    ends = [end]
    cut = text.rfind(space, start, end)
    while cut > start:
        shorter = regex.match(text, start, cut)
        if shorter is not None and shorter.end() not in ends:
            ends.append(shorter.end())
        cut = text.rfind(space, start, cut)
    return ends


def _engine(name: Engine) -> Any:
    if name == "hyperscan":
        return _HyperscanEngine()
    return _RegexEngine(name)


class Scanner:
    """Stateless after construction; ``key`` keys the HMAC of findings."""

    def __init__(self, key: bytes, engine: Engine = "hyperscan") -> None:
        self._key = key
        self.engine_name = engine
        self._engine = _engine(engine)

    # --- text ---------------------------------------------------------------------

    def scan_text(self, text: str, path: str = "$", key_hint: str = "") -> list[Finding]:
        return self.scan_many([(text, path, key_hint)])[0]

    def scan_many(self, items: list[tuple[str, str, str]]) -> list[list[Finding]]:
        """Findings of each (text, json path, context hint), with ONE engine pass over
        all texts joined by NUL (no pattern matches across a NUL)."""
        out: list[list[Finding]] = [[] for _ in items]
        if not items:
            return out
        # a URL-encoded text is scanned decoded too ("q=Janet+Phillips", "maria%40x.com"),
        # in the same pass; its findings are mapped back onto the encoded text
        variants: dict[int, tuple[int, list[int]]] = {}  # variant index -> (item, origins)
        texts = [text for text, _, _ in items]
        for i, (text, _, _) in enumerate(items):
            decoded = _url_decoded(text)
            if decoded is not None:
                variants[len(texts)] = (i, decoded[1])
                texts.append(decoded[0])
        encoded = [text.encode("utf-8", "surrogatepass") for text in texts]
        starts = []
        position = 0
        for data in encoded:
            starts.append(position)
            position += len(data) + 1
        candidates = self._engine.candidates(b"\x00".join(encoded))
        if not candidates:
            return out
        per_item: dict[int, list[tuple[int, int, list[int]]]] = {}
        for (pid, bstart), ends in candidates.items():
            i = bisect_right(starts, bstart) - 1
            base = starts[i]
            per_item.setdefault(i, []).append((pid, bstart - base, [e - base for e in ends]))
        for i, found in per_item.items():
            if i < len(items):
                text, path, hint = items[i]
                out[i] += self._validate(text, encoded[i], found, path, hint)
                continue
            owner, origins = variants[i]
            _, path, hint = items[owner]
            for f in self._validate(texts[i], encoded[i], found, path, hint):
                start, end = origins[f.start], origins[f.end]
                if not any(start < g.end and g.start < end for g in out[owner]):
                    out[owner].append(dataclasses.replace(f, start=start, end=end))
                    out[owner].sort(key=lambda f: f.start)
        return out

    def _validate(
        self,
        text: str,
        data: bytes,
        found: list[tuple[int, int, list[int]]],
        path: str,
        hint: str,
    ) -> list[Finding]:
        ascii_only = len(data) == len(text)
        lowered = text.lower()
        spans: list[tuple[int, float, int, int, str, str]] = []
        for pid, bstart, ends in found:
            pattern = _PATTERNS[pid]
            entity = pattern.entity
            start = bstart if ascii_only else len(data[:bstart].decode("utf-8", "ignore"))
            for bend in sorted(set(ends), reverse=True):
                if bend - bstart > len(data):
                    continue
                end = (
                    bend - bstart + start
                    if ascii_only
                    else start + len(data[bstart:bend].decode("utf-8", "ignore"))
                )
                hit = self._check(entity, pattern.index, text, lowered, start, end, hint)
                if hit is not None:
                    spans.append((entity.priority, -hit[2], hit[0], hit[1], entity.name, hit[3]))
                    break
        return self._resolve(spans, path)

    def _check(
        self,
        entity: Entity,
        index: int,
        text: str,
        lowered: str,
        start: int,
        end: int,
        key_hint: str,
    ) -> tuple[int, int, float, str] | None:
        if not _boundary_ok(entity.boundary, text, start, end, key_hint):
            return None
        words = _CONTEXT_RE.get(entity.name)
        # search the window in place: a word cut by the window's edge ("ho|tel") is no word
        context = words is not None and bool(
            words.search(lowered, max(0, start - CONTEXT_WINDOW), start)
            or (
                people.norm_key(key_hint) in entity.context_keys
                if entity.context_keys is not None
                else words.search(key_hint)
            )
        )
        if index in entity.needs_context and not context:
            return None
        if entity.extend is not None:
            span = entity.extend(text, start, end, index, context)
            if span is None:
                return None
            start, end = span
        if entity.value_after is not None:  # keep only the secret value
            match = text[start:end]
            cut = min(
                (i for i in (match.find(c) for c in entity.value_after) if i >= 0), default=-1
            )
            offset = cut + 1
            while offset < len(match) and match[offset] in " \"'":
                offset += 1
            start += offset
        value = entity.validate(text[start:end])
        if value is None:
            return None
        confidence = min(1.0, entity.confidence + (CONTEXT_BONUS if context else 0.0))
        return start, end, confidence, value

    def _resolve(
        self, spans: list[tuple[int, float, int, int, str, str]], path: str
    ) -> list[Finding]:
        """Overlapping candidates: the stronger entity (checksums first), then the longer."""
        spans.sort(key=lambda s: (s[0], s[2] - s[3], s[1]))
        taken: list[tuple[int, int]] = []
        findings = []
        for _, neg_conf, start, end, name, value in spans:
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            findings.append(self._finding(name, path, start, end, -neg_conf, value))
        findings.sort(key=lambda f: f.start)
        return findings

    def _finding(
        self, entity: str, path: str, start: int, end: int, confidence: float, value: str
    ) -> Finding:
        digest = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return Finding(
            entity,
            path,
            start,
            end,
            round(confidence, 3),
            mask(entity, value),
            digest.hexdigest()[:32],
        )

    # --- JSON ---------------------------------------------------------------------------

    def scan_json(self, value: Any, path: str = "$") -> list[Finding]:
        """Every string (keys too) of a JSON value, recursively; large integers are read as
        digit strings (a card number sent as a number is still a card number)."""
        return self.scan_documents([(value, path)])[0]

    def scan_documents(self, documents: list[tuple[Any, str]]) -> list[list[Finding]]:
        """:meth:`scan_json` of many documents in one engine pass."""
        items: list[tuple[str, str, str]] = []
        owners: list[int] = []
        out: list[list[Finding]] = [[] for _ in documents]
        # Prefilter: scan each document's JSON text as one string (one engine pass for
        # all of them). Every finding of a decoded string is a finding of the JSON text
        # too (keys and values appear verbatim, delimited by quotes), except behind an
        # escape; so only documents with a finding, a sensitive key or an escape are
        # walked field by field -- the JSON paths and redaction need the walk.
        blobs = [msgspec.json.encode(value).decode() for value, _ in documents]
        found = self.scan_many([(blob, "$", "") for blob in blobs])
        keyed = self._engine.key_hits(blobs)
        for d, (value, path) in enumerate(documents):
            if not found[d] and d not in keyed and "\\" not in blobs[d]:
                continue
            for p, text, hint, sensitive in _walk(value, path, ""):
                if sensitive:
                    out[d].append(self._finding("SENSITIVE_FIELD", p, 0, len(text), 0.99, text))
                    continue
                ruled = _key_rule(hint, text) if hint else None
                if ruled is not None:  # the whole value, by its key
                    start = len(text) - len(text.lstrip())
                    end = len(text.rstrip())
                    out[d].append(self._finding(ruled[0], p, start, end, ruled[1], text[start:end]))
                else:
                    items.append((text, p, hint))
                    owners.append(d)
        for d, findings in zip(owners, self.scan_many(items), strict=True):
            out[d].extend(findings)
        return out

    def redact_json(
        self,
        value: Any,
        findings: list[Finding],
        policy: Callable[[str], Policy] = lambda _: "redact",
        path: str = "$",
    ) -> Any:
        """A copy of ``value`` with every finding replaced (``[REDACTED:ENTITY]``), hashed
        (``[HMAC:…]``) or its field dropped, per entity ``policy``. A value found once is
        PII wherever else it occurs in the document (say glued to a word, where the
        pattern's boundary did not let it match): those occurrences go too."""
        by_path: dict[str, list[Finding]] = {}
        for f in findings:
            by_path.setdefault(f.json_path, []).append(f)
        texts = {p: t for p, t, _, _ in _walk(value, path, "")}
        known: dict[str, Finding] = {}
        for f in findings:
            raw = texts.get(f.json_path, "")[f.start : f.end]
            if len(raw) >= MIN_SWEPT:
                known[raw] = f
        swept = sorted(known.items(), key=lambda kv: -len(kv[0]))
        return _rebuild(value, path, by_path, policy, swept)

    def redact_text(
        self, text: str, findings: list[Finding], policy: Callable[[str], Policy]
    ) -> str | None:
        """``text`` with findings replaced; ``None`` when a policy drops the field."""
        return _replace(text, findings, policy)


def _boundary_ok(kind: str, text: str, start: int, end: int, key_hint: str = "") -> bool:
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if kind == "number":  # not glued to letters or digits, nor continued by .5 / -5
        if before.isalnum() or after.isalnum():
            return False
        if after and after in ".-/" and end + 1 < len(text) and text[end + 1].isalnum():
            return False
        return not (before and before in ".-/" and start >= 2 and text[start - 2].isalnum())
    if kind == "word":
        return not (before.isalnum() or after.isalnum() or before == "_" or after == "_")
    if kind == "ip":
        if before.isdigit() or before == "." or after.isdigit():
            return False
        if after == "." and end + 1 < len(text) and text[end + 1].isdigit():
            return False
        if before == "/" and start >= 2 and text[start - 2].isalpha():
            return False  # a product token's version: "Chrome/120.0.0.0"
        if _VERSION_KEY.search(key_hint):
            return False  # {"app_version": "4.12.0.1"}
        prefix = text[max(0, start - 24) : start].lower()
        return not _VERSION_WORDS.search(prefix)
    if kind == "hex":
        hexish = "0123456789abcdefABCDEF:"
        return not (before in hexish and before) and not (after in hexish and after)
    return True


#: words that make the dotted numbers after them a version, not an IPv4 address
_VERSION_WORDS = re.compile(
    r"(?<![a-z])(?:version|versão|versión|release|rel|ver|build|firmware|fw|sdk|patch|kernel|"
    r"v)[\s:=#\"']*$"
)
_VERSION_KEY = re.compile(r"version|release|build|firmware|sdk|(?<![a-z])ver(?![a-z])")


_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}|[?&][A-Za-z0-9_.\-]+=[^&\s]*\+")
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+|\+")


def _url_decoded(text: str) -> tuple[str, list[int]] | None:
    """``text`` percent-decoded ("+" as a space), with each decoded character's position
    in ``text`` (one more for the end); None when nothing in it is URL-encoded. Plain
    stretches are copied whole; only the escapes are decoded, byte by byte."""
    if ("%" not in text and "+" not in text) or _ENCODED.search(text) is None:
        return None
    out: list[str] = []
    origins: list[int] = []
    at = 0
    for m in _ESCAPES.finditer(text):
        out.append(text[at : m.start()])
        origins.extend(range(at, m.start()))
        at = m.end()
        if m.group() == "+":
            out.append(" ")
            origins.append(m.start())
            continue
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        sequence_at = m.start()  # where the character being decoded began
        for k in range(m.start(), m.end(), 3):
            if not decoder.getstate()[0]:
                sequence_at = k
            produced = decoder.decode(bytes((int(text[k + 1 : k + 3], 16),)))
            for n, char in enumerate(produced):  # an invalid byte: U+FFFD, then this one's
                out.append(char)
                origins.append(sequence_at if n == 0 else k)
            if produced and decoder.getstate()[0]:
                sequence_at = k
        for char in decoder.decode(b"", final=True):  # an incomplete sequence
            out.append(char)
            origins.append(sequence_at)
    out.append(text[at:])
    origins.extend(range(at, len(text) + 1))
    decoded = "".join(out)
    return (decoded, origins) if decoded != text else None


#: Vigil's own identifiers: a hex digest or id under one of these keys is never a finding
_ID_KEYS = frozenset(
    {"event_id", "trace_id", "span_id", "parent_span_id", "request_id", "correlation_id",
     "message_id", "session_hash", "idempotency_key"}
)  # fmt: skip
_ID_VALUE = re.compile(r"[0-9a-fA-F]{8,128}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                       r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")  # fmt: skip


def _own_identifier(key: str, value: str) -> bool:
    norm = people.norm_key(key)
    return (norm.endswith("_hash") or norm in _ID_KEYS) and _ID_VALUE.fullmatch(value) is not None


def _key_rule(key: str, text: str) -> tuple[str, float] | None:
    """(entity, confidence) when a key says what its whole value is: a name under
    ``first_name``, an address under ``street``, a document number under ``passport``,
    a random-looking value under ``webhook_secret`` or ``aws_secret_access_key``."""
    norm = people.norm_key(key)
    if not norm:
        return None
    if norm in people.NAME_KEYS and norm != "name" and people.name_value(text):
        return "PERSON_NAME", 0.85
    if norm in people.ADDRESS_KEYS and people.address_value(text):
        return "STREET_ADDRESS", 0.85
    if norm in people.ID_KEYS and people.id_value(text):
        return "ID_DOCUMENT", 0.85
    if norm not in people.NOT_NAME_KEYS and is_secret_name(norm):
        value = text.strip()
        if "aws" in norm and "secret" in norm and aws_secret(value):
            return "AWS_SECRET_KEY", 0.95
        if looks_random(value):
            return "HIGH_ENTROPY_SECRET", 0.8
    return None


def _walk(value: Any, path: str, hint: str) -> Iterator[tuple[str, str, str, bool]]:
    """(json path, text, context hint, sensitive key?) for every scannable string."""
    if isinstance(value, str):
        yield path, value, hint, False
    elif isinstance(value, dict):
        for n, (k, item) in enumerate(value.items()):
            key = str(k)
            child = f"{path}.{_path_key(key, n)}"
            yield f"{child}#key", key, "", False
            if is_sensitive_key(key):  # every value under it, whatever it looks like
                yield from _sensitive_leaves(item, child)
            elif isinstance(item, str) and _own_identifier(key, item):
                continue
            else:
                yield from _walk(item, child, key.lower())
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]", hint)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**8:
        yield path, str(value), hint, False


_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")
_SECRET_PREFIX = re.compile(r"(?:AKIA|ASIA|eyJ)")


def _sensitive_leaves(value: Any, path: str) -> Iterator[tuple[str, str, str, bool]]:
    if isinstance(value, dict):
        for n, (k, item) in enumerate(value.items()):
            child = f"{path}.{_path_key(str(k), n)}"
            yield f"{child}#key", str(k), "", False
            yield from _sensitive_leaves(item, child)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _sensitive_leaves(item, f"{path}[{i}]")
    elif value is not None and value != "" and not isinstance(value, bool):
        yield path, str(value), "", True


def _path_key(key: str, position: int) -> str:
    """The key as written when it is a plain identifier; otherwise its position (``[#3]``
    = the fourth key), so a key that is itself PII never reaches a path, a label or a
    log line."""
    if _SAFE_KEY.fullmatch(key) and not _SECRET_PREFIX.match(key):
        return key
    return f"[#{position}]"


def _replacement(f: Finding, policy: Policy) -> str:
    if policy == "hash":
        return f"[HMAC:{f.hmac[:16]}]"
    return f"[REDACTED:{f.entity}]"


def _replace(text: str, findings: list[Finding], policy: Callable[[str], Policy]) -> str | None:
    if any(policy(f.entity) == "drop-field" for f in findings):
        return None
    out = text
    for f in sorted(findings, key=lambda f: f.start, reverse=True):
        out = out[: f.start] + _replacement(f, policy(f.entity)) + out[f.end :]
    return out


_DROP = object()


MIN_SWEPT = 4  # shorter found values ("0", "ab") are not swept from the rest of a document


def _sweep(
    text: str, swept: list[tuple[str, Finding]], policy: Callable[[str], Policy]
) -> str | None:
    for raw, f in swept:
        if raw in text:
            chosen = policy(f.entity)
            if chosen == "drop-field":
                return None
            text = text.replace(raw, _replacement(f, chosen))
    return text


def _rebuild(
    value: Any,
    path: str,
    by_path: dict[str, list[Finding]],
    policy: Callable[[str], Policy],
    swept: list[tuple[str, Finding]],
) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for n, (k, item) in enumerate(value.items()):
            key = str(k)
            child = f"{path}.{_path_key(key, n)}"
            new_key: str | None = key
            if f"{child}#key" in by_path:
                new_key = _replace(key, by_path[f"{child}#key"], policy)
            if new_key is not None:
                new_key = _sweep(new_key, swept, policy)
            if new_key is None:
                continue
            new_item = _rebuild(item, child, by_path, policy, swept)
            if new_item is _DROP:
                continue
            out[new_key] = new_item
        return out
    if isinstance(value, list):
        items = [
            _rebuild(item, f"{path}[{i}]", by_path, policy, swept) for i, item in enumerate(value)
        ]
        return [None if item is _DROP else item for item in items]
    found = by_path.get(path)
    if not found:
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            text = str(value)
            cleaned = _sweep(text, swept, policy)
            if cleaned is None:
                return _DROP
            if cleaned != text:
                return cleaned
        return value
    if isinstance(value, str) and not any(f.entity == "SENSITIVE_FIELD" for f in found):
        replaced = _replace(value, found, policy)
        if replaced is not None:
            replaced = _sweep(replaced, swept, policy)
        return _DROP if replaced is None else replaced
    # a number read as digits, or a sensitive field: the whole value goes
    f = found[0]
    chosen = policy(f.entity)
    return _DROP if chosen == "drop-field" else _replacement(f, chosen)
