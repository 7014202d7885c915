"""The console's HTTP handlers, shared by the worker's web port (embedded mode) and
``vigil serve`` (production): each returns a :class:`Reply` that the two servers turn
into their own responses, so both answer exactly alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams import console as pages
from streams import tokens as tk
from streams.metrics import Metrics
from streams.settings import Settings
from streams.views import Console, bearer_ok


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    json: Any = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, message: str, **extra: Any) -> Reply:
    return Reply(status, {"error": message, **extra})


def operator_denied(
    settings: Settings, metrics: Metrics, authorization: str, cookie: str
) -> Reply | None:
    """None when the console token is unset or presented (header or cookie); else the
    401 to answer, counted."""
    token = settings.console_token
    if token is None or not token.get_secret_value():
        return None
    if bearer_ok(token.get_secret_value(), authorization, cookie):
        return None
    metrics.console_denied.inc()
    return _error(401, "console token required: Authorization: Bearer <VIGIL_CONSOLE_TOKEN>")


class ConsoleHttp:
    def __init__(
        self, console: Console, tokens: tk.TokenStore, settings: Settings, metrics: Metrics
    ) -> None:
        self.console = console
        self.tokens = tokens
        self.settings = settings
        self.metrics = metrics

    def operator_denied(self, authorization: str, cookie: str) -> Reply | None:
        return operator_denied(self.settings, self.metrics, authorization, cookie)

    def _page(self, text: str) -> Reply:
        return Reply(html=text, headers={"Content-Security-Policy": pages.CSP})

    async def page(self, which: str, authorization: str, cookie: str) -> Reply:
        refused = self.operator_denied(authorization, cookie)
        if refused is not None:
            return refused
        refresh = self.console.cache.refresh_s
        if which == "security":
            return self._page(pages.security_page(await self.console.security(), refresh))
        if which in ("", "overview"):
            return self._page(pages.overview_page(await self.console.overview(), refresh))
        return _error(404, f"no console page {which!r}: /console, /console/security, "
                      "/console/tenants/<id>")  # fmt: skip

    async def tenant_page(self, tenant_id: str, authorization: str, cookie: str) -> Reply:
        refused = self.operator_denied(authorization, cookie)
        if refused is not None:
            return refused
        doc = await self.console.tenant(tenant_id)
        return self._page(pages.tenant_page(doc, self.console.cache.refresh_s))

    async def views(self, which: str, tenant_id: str, authorization: str, cookie: str) -> Reply:
        refused = self.operator_denied(authorization, cookie)
        if refused is not None:
            return refused
        if which == "overview":
            doc = await (self.console.tenant(tenant_id) if tenant_id else self.console.overview())
            return Reply(json=doc)
        if which == "security":
            return Reply(json=await self.console.security())
        return _error(404, "unknown view: overview or security")

    async def tenant_api(self, tenant_id: str, doc: str, authorization: str) -> Reply:
        """``/api/v1/tenants/{id}/health`` and ``/slo`` (streams/tokens.py)."""
        operator = self.settings.console_token
        outcome: tk.Outcome
        if operator is not None and bearer_ok(operator.get_secret_value(), authorization, ""):
            outcome = "ok"
        else:
            outcome, _ = await self.tokens.check(tk.token_of(authorization), tenant_id)
        self.metrics.tenant_api.labels(outcome=outcome).inc()
        if outcome != "ok":
            return _error(403 if outcome == "forbidden" else 401, tk.REASONS[outcome],
                          reason=outcome)  # fmt: skip
        if doc not in ("health", "slo"):
            return _error(404, "health or slo")
        public = await self.console.public(tenant_id)
        body = {k: public[k] for k in ("tenant_id", "as_of")}
        if doc == "health":
            body |= {**public["health"], "alerts": public["alerts"]}
        else:
            body |= {"objectives": public["slo"], "error_budget": public["health"]["error_budget"]}
        return Reply(json=body)
