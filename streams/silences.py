"""``vigil silence``: silences in Alertmanager through its API v2 (ad-hoc deployment
windows; recurring maintenance is a ``time_interval`` of the shipped configuration).

Every URL of ``VIGIL_ALERTMANAGER_URL`` is told (an HA pair gossips silences, but a peer
that is down when one is created must not miss it); listing reads the first that answers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.errors import VigilError

#: matcher operators, longest first: (operator, isEqual, isRegex)
OPERATORS = (("!~", False, True), ("=~", True, True), ("!=", False, False), ("=", True, False))


class AlertmanagerUnavailable(VigilError):
    """No Alertmanager answered at VIGIL_ALERTMANAGER_URL."""


def alertmanager_urls(setting: str) -> list[str]:
    """The URLs of VIGIL_ALERTMANAGER_URL (comma-separated), checked."""
    urls = [u.strip().rstrip("/") for u in setting.split(",") if u.strip()]
    if not urls:
        raise VigilError("VIGIL_ALERTMANAGER_URL is empty: set the Alertmanager API URL(s)")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise VigilError(f"VIGIL_ALERTMANAGER_URL: {url!r} is not an http(s) URL")
    return urls


def _call(url: str, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (http(s) only: see alertmanager_urls)
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw.strip() else None


def parse_matchers(items: list[str]) -> list[dict[str, Any]]:
    """``name=value`` (equal), ``name!=value``, ``name=~regex``, ``name!~regex``."""
    out = []
    for item in items:
        for op, is_equal, is_regex in OPERATORS:
            name, sep, value = item.partition(op)
            if sep and name:
                out.append(
                    {"name": name.strip(), "value": value, "isRegex": is_regex, "isEqual": is_equal}
                )
                break
        else:
            raise VigilError(f"--match {item!r}: expected name=value (or !=, =~, !~)")
    if not out:
        raise VigilError("a silence needs at least one --match name=value")
    return out


def add(
    setting: str,
    matchers: list[str],
    duration: timedelta,
    comment: str,
    created_by: str,
    now: datetime | None = None,
) -> str:
    """Create the silence on every Alertmanager; its id (of the first that accepted)."""
    start = now or datetime.now(UTC)
    body = {
        "matchers": parse_matchers(matchers),
        "startsAt": start.isoformat(),
        "endsAt": (start + duration).isoformat(),
        "createdBy": created_by,
        "comment": comment,
    }
    ids: list[str] = []
    errors: list[str] = []
    for url in alertmanager_urls(setting):
        try:
            ids.append(_call(f"{url}/api/v2/silences", "POST", body)["silenceID"])
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
    if not ids:
        raise AlertmanagerUnavailable(
            "no Alertmanager accepted the silence (" + "; ".join(errors) + "); check "
            "VIGIL_ALERTMANAGER_URL"
        )
    return ids[0]


def list_silences(setting: str) -> list[dict[str, Any]]:
    errors = []
    for url in alertmanager_urls(setting):
        try:
            result: list[dict[str, Any]] = _call(f"{url}/api/v2/silences")
            return sorted(result, key=lambda s: s.get("endsAt", ""), reverse=True)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
    raise AlertmanagerUnavailable(
        "no Alertmanager answered (" + "; ".join(errors) + "); check VIGIL_ALERTMANAGER_URL"
    )


def expire(setting: str, silence_id: str) -> None:
    done = False
    errors = []
    for url in alertmanager_urls(setting):
        try:
            _call(f"{url}/api/v2/silence/{silence_id}", "DELETE")
            done = True
        except urllib.error.HTTPError as exc:
            errors.append(f"{url}: HTTP {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            errors.append(f"{url}: {exc}")
    if not done:
        raise VigilError(f"silence {silence_id} not expired: " + "; ".join(errors))


def render(silences: list[dict[str, Any]]) -> str:
    lines = []
    for s in silences:
        matchers = ",".join(
            f"{m['name']}{'' if m.get('isEqual', True) else '!'}{'=~' if m['isRegex'] else '='}"
            f"{m['value']}"
            for m in s.get("matchers", [])
        )
        lines.append(
            f"{s['id']}  {s['status']['state']:8}  until {s['endsAt']}  {{{matchers}}}  "
            f"by {s.get('createdBy', '')}: {s.get('comment', '')}"
        )
    return "\n".join(lines) if lines else "no silences"
