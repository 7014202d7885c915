"""Seeded, realistic multi-tenant demo traffic, with scheduled incidents.

Tenants of different sizes call routes with log-normal latencies and 4xx/5xx rates; users
fail and succeed at logging in, webhooks arrive, new users walk the onboarding funnel at
its expected stage rates (each step well inside its expected time); some events come in
the platform's structured-log shape and a small share of messages is malformed on purpose.
Every ``incident_every_s`` seconds the schedule replays a set of incidents for the
detectors: a latency spike on one tenant's route, a cross-tenant access, PII inside an
analytics payload, a brute-force burst from one IP that then logs in successfully (an
account takeover), webhook signature failures, one tenant's e-mail verification
collapsing for five minutes (a funnel incident), and a bad canary release of the `web`
service: the `web` service always runs a canary (10 % of its requests, release
``CANARY_RELEASE``, cohort ``canary``; the rest ``BASELINE_RELEASE``, cohort
``baseline``), healthy except during ``bad_canary``, when its latency is x1.6 and 2 % of
its requests fail (the canary judge's incident).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import orjson


def _onboarding() -> tuple[tuple[str, float, float], ...]:
    """The shipped onboarding funnel: (event name, expected conversion into it, its
    expected time to convert in seconds) per step; the demo's journeys follow it."""
    from streams.detectors.latency.slo import load_rules

    funnel = load_rules(None).funnels.definitions[0]
    return tuple(
        (s.event, s.expected or 1.0, funnel.within_ms(i + 1) / 1000 if i else 0.0)
        for i, s in enumerate(funnel.steps)
    )


ONBOARDING = _onboarding()
FUNNEL: tuple[str, ...] = tuple(name for name, _, _ in ONBOARDING)
#: share of background messages that are a new registration (2/s at 500 msg/s); every
#: later step of the journey is sent when it is due, on top of the background
REGISTRATION_SHARE = 0.004
#: during the funnel incident, the share of the tenant's new users who verify their e-mail
COLLAPSED_CONVERSION = 0.1
FUNNEL_TENANT = "acme"

TENANTS: tuple[tuple[str, float], ...] = (
    ("acme", 0.45),
    ("globex", 0.25),
    ("initech", 0.15),
    ("umbrella", 0.1),
    ("hooli", 0.05),
)
#: (service, method, route, median latency ms, log-normal sigma)
ROUTES: tuple[tuple[str, str, str, float, float], ...] = (
    ("api", "GET", "/v1/documents/{id}", 45.0, 0.5),
    ("api", "POST", "/v1/documents", 120.0, 0.6),
    ("api", "GET", "/v1/users/me", 20.0, 0.4),
    ("api", "GET", "/v1/reports", 120.0, 0.5),  # p95 ~270 ms; x8 in the latency spike
    ("auth", "POST", "/v1/auth/login", 90.0, 0.5),
    ("web", "GET", "/dashboard", 60.0, 0.5),
)
SPIKE_TENANT, SPIKE_ROUTE = "acme", "/v1/reports"
SPIKE_FACTOR = 8.0  # latency multiplier of the spike
#: shares of background messages by kind (cumulative thresholds below); the rest is HTTP
#: Calibrated so the background stays below every shipped security threshold at the
#: default 500 messages/s: ~2 failed logins a minute platform-wide (FailedLoginSpike needs
#: more than 20 in 5 minutes for one tenant), ~2 HTTP 401 a minute per route
#: (UnauthorizedSpike: more than 10).
MALFORMED_SHARE, AUTH_FAILURE_SHARE, WEBHOOK_SHARE = 0.005, 0.00007, 0.02
SLOW_QUERY_SHARE, ANALYTICS_SHARE = 0.02, 0.19
HTTP_SHARE = 1 - (
    MALFORMED_SHARE
    + AUTH_FAILURE_SHARE
    + WEBHOOK_SHARE
    + SLOW_QUERY_SHARE
    + REGISTRATION_SHARE
    + ANALYTICS_SHARE
)
#: status of an HTTP request: 5xx, 404 and 401 shares (the rest 200); 0.02 % 5xx spends a
#: fifth of the 99.9 % availability budget, so a healthy tenant looks healthy
P_5XX, P_404, P_401 = 0.0002, 0.017, 0.0005
PII_SAMPLE = "please call me back at jane.roe@example.com"  # the demo's planted PII
#: ... and in the same ticket: a customer's name and a credential pasted into a note
PII_NAME = "Janet Phillips"
PII_TOKEN = "ghp_" + "Vd3mQ8xLr2Tz6NcW1pYk7HsB4gJf9aE5uR0o"  # made up, in GitHub's format
PII_NOTE = f"Customer {PII_NAME} pasted her token {PII_TOKEN} into the form"
CANARY_SERVICE, CANARY_SHARE = "web", 0.1
BASELINE_RELEASE, CANARY_RELEASE = "2.7.3", "2.8.0"
CANARY_SLOWER, CANARY_5XX = 1.6, 0.02  # the bad release


@dataclass(frozen=True, slots=True)
class Incident:
    name: str
    start_s: float
    duration_s: float


SCHEDULE: tuple[Incident, ...] = (
    Incident("latency_spike", 20, 120),
    Incident("cross_tenant", 30, 5),
    Incident("pii_in_analytics", 40, 5),
    Incident("brute_force", 50, 10),
    Incident("account_takeover", 65, 0.1),  # the brute-force IP then logs in: one success
    Incident("webhook_signature", 60, 10),
    # acme's verification e-mails stop arriving: its new users rarely verify
    Incident("funnel_email_collapse", 30, 300),
    # the web service's canary release goes bad (judged per event-time minute)
    Incident("bad_canary", 150, 300),
)


class DemoTraffic:
    def __init__(self, seed: int = 7, incident_every_s: float | None = 600.0) -> None:
        """``incident_every_s`` None: background traffic only."""
        self._rng = random.Random(seed)
        #: the canary's own draws: the rest of the traffic is the same with or without it
        self._canary_rng = random.Random(seed + 1)
        self._every_s = incident_every_s
        #: steps due later: (event time ms, sequence, tenant, user, step index)
        self._due: list[tuple[int, int, str, str, int]] = []
        self._seq = 0

    def _id(self) -> str:
        self._seq += 1
        return str(uuid.UUID(int=self._rng.getrandbits(128)))

    def _tenant(self) -> str:
        r, acc = self._rng.random(), 0.0
        for name, weight in TENANTS:
            acc += weight
            if r < acc:
                return name
        return TENANTS[-1][0]

    def active(self, name: str, elapsed_s: float) -> bool:
        if self._every_s is None:
            return False
        phase = elapsed_s % self._every_s
        return any(
            i.name == name and i.start_s <= phase < i.start_s + i.duration_s for i in SCHEDULE
        )

    def messages(self, n: int, now_ms: int, elapsed_s: float) -> list[tuple[bytes, bytes | None]]:
        """``n`` (value, key) pairs of background traffic plus any active incidents, for
        one tick (0.1 s of event time) at event time ``now_ms``."""
        out = [self._background(now_ms, elapsed_s) for _ in range(n)]
        out.extend(self._due_steps(now_ms, elapsed_s))
        rng = self._rng
        if self.active("cross_tenant", elapsed_s) and rng.random() < 0.2:
            out.append(self._cross_tenant(now_ms))
        if self.active("pii_in_analytics", elapsed_s) and rng.random() < 0.2:
            out.append(self._pii(now_ms))
        if self.active("brute_force", elapsed_s):
            out.extend(self._auth_failure(now_ms, ip="203.0.113.66") for _ in range(3))
        if self.active("account_takeover", elapsed_s):
            out.append(self._auth_success(now_ms, ip="203.0.113.66"))
        if self.active("webhook_signature", elapsed_s) and rng.random() < 0.5:
            out.append(self._webhook(now_ms, valid=False))
        return out

    def _envelope(self, kind: str, tenant: str, service: str, now_ms: int) -> dict[str, object]:
        return {
            "event_id": self._id(),
            "ts": now_ms,
            "tenant_id": tenant,
            "kind": kind,
            "service": service,
            "trace_id": f"{self._rng.getrandbits(128):032x}",
            "span_id": f"{self._rng.getrandbits(64):016x}",
            "schema_version": 1,
        }

    def _background(self, now_ms: int, elapsed_s: float) -> tuple[bytes, bytes | None]:
        r = self._rng.random()
        edge = MALFORMED_SHARE
        if r < edge:
            return self._malformed(now_ms), None
        edge += AUTH_FAILURE_SHARE
        if r < edge:
            return self._auth_failure(now_ms)
        edge += WEBHOOK_SHARE
        if r < edge:
            return self._webhook(now_ms, valid=True)
        edge += SLOW_QUERY_SHARE
        if r < edge:
            return self._slow_query_log(now_ms)
        edge += REGISTRATION_SHARE
        if r < edge:
            return self._register(now_ms, elapsed_s)
        edge += ANALYTICS_SHARE
        if r < edge:
            return self._analytics(now_ms)
        return self._http(now_ms, elapsed_s)

    def _http(self, now_ms: int, elapsed_s: float) -> tuple[bytes, bytes | None]:
        rng = self._rng
        tenant = self._tenant()
        service, method, route, median, sigma = ROUTES[rng.randrange(len(ROUTES))]
        duration = rng.lognormvariate(math.log(median), sigma)
        if (
            route == SPIKE_ROUTE
            and tenant == SPIKE_TENANT
            and self.active("latency_spike", elapsed_s)
        ):
            duration *= SPIKE_FACTOR
        canary = service == CANARY_SERVICE and self._canary_rng.random() < CANARY_SHARE
        bad = canary and self.active("bad_canary", elapsed_s)
        if bad:
            duration *= CANARY_SLOWER
        r = rng.random()
        if bad and self._canary_rng.random() < CANARY_5XX:
            r = 0.0  # a 5xx
        status = (
            500
            if r < P_5XX
            else 404
            if r < P_5XX + P_404
            else 401
            if r < P_5XX + P_404 + P_401
            else 200
        )
        ev = self._envelope("http.request", tenant, service, now_ms)
        ev.update(
            method=method,
            route=route,
            status=status,
            duration_ms=round(duration, 3),
            user_id=f"user-{tenant}-{rng.randrange(5000)}",
        )
        if service == CANARY_SERVICE:
            ev.update(
                release=CANARY_RELEASE if canary else BASELINE_RELEASE,
                cohort="canary" if canary else "baseline",
            )
        return orjson.dumps(ev), tenant.encode()

    def _auth_failure(self, now_ms: int, ip: str | None = None) -> tuple[bytes, bytes | None]:
        rng = self._rng
        tenant = self._tenant() if ip is None else "globex"
        ev = self._envelope("security.auth_failure", tenant, "auth", now_ms)
        ev.update(
            endpoint="/v1/auth/login",
            reason=rng.choice(["bad_password", "unknown_user", "mfa_failed"]),
            ip=ip or f"198.51.100.{rng.randrange(1, 255)}",
            user_id=f"user-{tenant}-{rng.randrange(5000)}",
        )
        return orjson.dumps(ev), tenant.encode()

    def _auth_success(self, now_ms: int, ip: str) -> tuple[bytes, bytes | None]:
        ev = self._envelope("security.auth_success", "globex", "auth", now_ms)
        ev.update(endpoint="/v1/auth/login", ip=ip, user_id="user-globex-42")
        return orjson.dumps(ev), b"globex"

    def _webhook(self, now_ms: int, valid: bool) -> tuple[bytes, bytes | None]:
        rng = self._rng
        if not valid:  # the structured-log shape, as the Laravel middleware writes it
            log = {
                "timestamp": _rfc3339(now_ms),
                "level": "warning",
                "category": "security",
                "event_type": "auth_failure",
                "subcategory": "webhook_signature",
                "severity": "high",
                "context": {
                    "middleware": "VerifyStripeSignature",
                    "endpoint": "/webhooks/stripe",
                    "ip_address": f"192.0.2.{rng.randrange(1, 255)}",
                    "signature_provided": rng.random() < 0.7,
                    "error_code": "SIGNATURE_MISMATCH",
                },
                "trace_id": f"{rng.getrandbits(128):032x}",
                "span_id": f"{rng.getrandbits(64):016x}",
            }
            return orjson.dumps(log), b"webhooks"
        tenant = self._tenant()
        ev = self._envelope("security.webhook_signature", tenant, "webhooks", now_ms)
        ev.update(provider="stripe", endpoint="/webhooks/stripe", valid=True)
        return orjson.dumps(ev), tenant.encode()

    def _slow_query_log(self, now_ms: int) -> tuple[bytes, bytes | None]:
        rng = self._rng
        tenant = self._tenant()
        log = {
            "timestamp": _rfc3339(now_ms),
            "level": "warning",
            "category": "performance",
            "event_type": "slow_query",
            "severity": "medium",
            "context": {
                "query_time_ms": round(rng.lognormvariate(math.log(800), 0.4), 1),
                "model": rng.choice(["Document", "User", "Invoice"]),
                "company_id": tenant,
            },
            "trace_id": f"{rng.getrandbits(128):032x}",
            "span_id": f"{rng.getrandbits(64):016x}",
        }
        return orjson.dumps(log), tenant.encode()

    def _analytics(self, now_ms: int) -> tuple[bytes, bytes | None]:
        """Product analytics outside the funnel (page views, feature use)."""
        rng = self._rng
        tenant = self._tenant()
        ev = self._envelope("analytics", tenant, "web", now_ms)
        ev.update(
            event_name=rng.choice(["page.viewed", "page.viewed", "feature.used"]),
            user_id=f"u-{rng.getrandbits(20):05x}",
            properties={"plan": rng.choice(["free", "pro", "enterprise"])},
        )
        return orjson.dumps(ev), tenant.encode()

    def _register(self, now_ms: int, elapsed_s: float) -> tuple[bytes, bytes | None]:
        """A new user registers; the steps they will reach are scheduled now."""
        rng = self._rng
        tenant = self._tenant()
        self._seq += 1
        user = f"u{self._seq}-{rng.getrandbits(32):08x}"
        collapsed = tenant == FUNNEL_TENANT and self.active("funnel_email_collapse", elapsed_s)
        at = now_ms
        for step, (_, expected, within_s) in enumerate(ONBOARDING[1:], start=1):
            rate = COLLAPSED_CONVERSION if step == 1 and collapsed else expected
            if rng.random() >= rate:
                break
            # well inside the stage's expected time: a tenth of it on average
            delay_s = min(rng.expovariate(10 / within_s), 0.8 * within_s)
            at += max(1, int(delay_s * 1000))
            heapq.heappush(self._due, (at, self._seq * 16 + step, tenant, user, step))
        return self._step(tenant, user, 0, now_ms)

    def _due_steps(self, now_ms: int, elapsed_s: float) -> list[tuple[bytes, bytes | None]]:
        out = []
        due = self._due
        while due and due[0][0] <= now_ms:
            at, _, tenant, user, step = heapq.heappop(due)
            out.append(self._step(tenant, user, step, at))
        return out

    def _step(self, tenant: str, user: str, step: int, at_ms: int) -> tuple[bytes, bytes | None]:
        ev = self._envelope("analytics", tenant, "web", at_ms)
        ev.update(event_name=FUNNEL[step], user_id=user, properties={"step": step + 1})
        return orjson.dumps(ev), tenant.encode()

    def _cross_tenant(self, now_ms: int) -> tuple[bytes, bytes | None]:
        log = {
            "timestamp": _rfc3339(now_ms),
            "level": "critical",
            "category": "security",
            "event_type": "tenant_violation",
            "severity": "critical",
            "context": {
                "user_id": 4711,
                "user_company_id": "initech",
                "requested_company_id": "acme",
                "model": "Document",
                "operation": "view",
                "blocked": True,
                "endpoint": "/v1/documents/9f1c",
            },
            "trace_id": f"{self._rng.getrandbits(128):032x}",
            "span_id": f"{self._rng.getrandbits(64):016x}",
        }
        return orjson.dumps(log), b"initech"

    def _pii(self, now_ms: int) -> tuple[bytes, bytes | None]:
        ev = self._envelope("analytics", "umbrella", "web", now_ms)
        ev.update(
            event_name="support.ticket_opened",
            user_id="u-pii",
            properties={"message": PII_SAMPLE, "note": PII_NOTE},
        )
        return orjson.dumps(ev), b"umbrella"

    def _malformed(self, now_ms: int) -> bytes:
        rng = self._rng
        choice = rng.randrange(4)
        if choice == 0:
            return b'{"event_id": "truncated", "ts": '
        if choice == 1:
            return b'["an", "array", "not", "an", "object"]'
        if choice == 2:
            return orjson.dumps(
                {
                    "event_id": self._id(),
                    "ts": "yesterday",
                    "tenant_id": "acme",
                    "kind": "http.request",
                    "service": "api",
                }
            )
        return orjson.dumps(
            {
                "event_id": self._id(),
                "ts": now_ms,
                "tenant_id": "acme",
                "kind": "mystery.kind",
                "service": "api",
            }
        )


def _rfc3339(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


async def run_demo(
    send: Callable[[bytes, bytes | None], object],
    rate_per_s: float,
    duration_s: float | None,
    seed: int = 7,
    incident_every_s: float = 600.0,
    tick_s: float = 0.1,
    speed: float = 1.0,
) -> int:
    """Emit traffic at ``rate_per_s`` until ``duration_s`` (wall seconds) passes; returns
    messages sent. ``send(value, key)`` may return an awaitable, which is awaited.

    The rate and the incident schedule are in event time. With ``speed`` N > 1 event time
    runs N times faster than the wall clock (N x ``rate_per_s`` messages a wall second):
    an hour of traffic in a minute or two. It then starts ``duration_s * (N - 1)`` seconds
    in the past, so the last events are stamped about now (the worker refuses events from
    the future)."""
    if speed < 1:
        raise ValueError("speed must be at least 1")
    if speed > 1 and duration_s is None:
        raise ValueError("a time-compressed demo needs a duration")
    traffic = DemoTraffic(seed, incident_every_s)
    started = time.monotonic()
    lead_ms = int((duration_s or 0) * (speed - 1) * 1000)
    start_ms = int(time.time() * 1000) - lead_ms
    sent = 0
    owed = 0.0
    event_s = 0.0  # event time elapsed
    while duration_s is None or time.monotonic() - started < duration_s:
        due = (time.monotonic() - started) * speed
        while event_s <= due:
            owed += rate_per_s * tick_s
            n = int(owed)
            owed -= n
            now_ms = start_ms + int(event_s * 1000)
            for value, key in traffic.messages(n, now_ms, event_s):
                result = send(value, key)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
                sent += 1
            event_s += tick_s
        await asyncio.sleep(max(0.0, (event_s / speed) - (time.monotonic() - started)))
    return sent
