"""Find PII in strings and JSON values; redact it.

Candidate search is one multi-pattern pass over the text -- Hyperscan by default (all
patterns of every entity compiled into one database), RE2 sets or a loop of Python
``re`` patterns as alternatives (``make bench`` compares them) -- and validators run only
on candidates. A finding never carries the raw value: entity, JSON path, span, confidence,
a masked preview and a keyed HMAC for correlation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from streams.detectors.pii.entities import ENTITIES, SENSITIVE_KEYS, Entity, is_sensitive_key, mask

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


#: a sensitive key in JSON text ("Card-Number": ...), as :func:`is_sensitive_key` reads keys
_SENSITIVE_KEY_JSON = re.compile(
    '"(?:'
    + "|".join(re.escape(k).replace("_", "[_. -]") for k in sorted(SENSITIVE_KEYS))
    + ')"\\s*:',
    re.IGNORECASE,
)

#: context keywords per entity, matched as whole words ("tel" is not in "hotel" or "tell")
_CONTEXT_RE: dict[str, re.Pattern[str]] = {
    e.name: re.compile(
        r"(?<![a-z0-9])(?:" + "|".join(re.escape(k) for k in e.context) + r")(?![a-z0-9])"
    )
    for e in ENTITIES
    if e.context
}

_PATTERNS: tuple[_Pattern, ...] = tuple(
    _Pattern(e, i, p) for e in ENTITIES for i, p in enumerate(e.patterns)
)

#: (pattern id, start, end) candidates of one text
Candidates = dict[tuple[int, int], list[int]]


class _HyperscanEngine:
    def __init__(self) -> None:
        import hyperscan

        self._db = hyperscan.Database()
        flags = [
            hyperscan.HS_FLAG_SOM_LEFTMOST
            | (hyperscan.HS_FLAG_CASELESS if p.entity.caseless else 0)
            for p in _PATTERNS
        ]
        self._db.compile(
            expressions=[p.regex.encode() for p in _PATTERNS],
            ids=list(range(len(_PATTERNS))),
            elements=len(_PATTERNS),
            flags=flags,
        )
        self._scratch = hyperscan.Scratch(self._db)
        self._keys = hyperscan.Database()
        self._keys.compile(
            expressions=[_SENSITIVE_KEY_JSON.pattern.encode()],
            ids=[0],
            elements=1,
            flags=[hyperscan.HS_FLAG_CASELESS],
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

        def on_match(pid: int, start: int, end: int, flags: int, ctx: object) -> None:
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
        if flavour == "re2":
            import re2

            module = re2
            options = re2.Options()
            options.case_sensitive = True
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
            else module.compile(("(?i)" if p.entity.caseless else "") + p.regex)
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
                    end = start + len(m.group().encode())
                    found.setdefault((pid, start), []).append(end)
            return found
        for pid, regex in enumerate(self._compiled):
            for m in regex.finditer(data):
                found.setdefault((pid, m.start()), []).append(m.end())
        return found


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
        encoded = [text.encode("utf-8", "surrogatepass") for text, _, _ in items]
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
            text, path, hint = items[i]
            out[i] = self._validate(text, encoded[i], found, path, hint)
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
        if not _boundary_ok(entity.boundary, text, start, end):
            return None
        if entity.value_after is not None:  # keep only the secret value
            match = text[start:end]
            cut = max(match.rfind(c) for c in entity.value_after)
            offset = cut + 1
            while offset < len(match) and match[offset] in " \"'":
                offset += 1
            start += offset
        if entity.name == "PRIVATE_KEY":
            closing = text.find("PRIVATE KEY-----", end)
            end = closing + len("PRIVATE KEY-----") if closing >= 0 else len(text)
        value = entity.validate(text[start:end])
        if value is None:
            return None
        words = _CONTEXT_RE.get(entity.name)
        # search the window in place: a word cut by the window's edge ("ho|tel") is no word
        context = words is not None and bool(
            words.search(lowered, max(0, start - CONTEXT_WINDOW), start) or words.search(key_hint)
        )
        if index in entity.needs_context and not context:
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


def _boundary_ok(kind: str, text: str, start: int, end: int) -> bool:
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
        prefix = text[max(0, start - 8) : start].lower()
        return not (prefix.endswith("v") or "version" in prefix)
    if kind == "hex":
        hexish = "0123456789abcdefABCDEF:"
        return not (before in hexish and before) and not (after in hexish and after)
    return True


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
