"""The API's gate: each request authenticated and checked against its route's rule (:mod:`agent.api.access`),
recorded in the audit trail when it changes something or is refused (:mod:`agent.api.audit`), and answered with
the security headers a browser needs (a Content-Security-Policy without inline script or style, no framing, no
MIME sniffing, no referrer).

Requests authenticate with ``Authorization: Bearer`` (a static token, or the OpenID provider's JWT), or with the
dashboard's single sign-on session cookie (:mod:`agent.api.sso`); a change made through the cookie must carry the
session's CSRF token, since a page on another origin can make a browser send the cookie but never read the token
(cross-site request forgery needs an ambient credential, and the token is not one). Used by
:mod:`agent.api.server`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import fastapi

from agent.api import access, audit, sso

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Sent with every answer (the dashboard's script and style are files of their own: no inline code runs)."""
EXEMPT = frozenset({("GET", "/api/v1/me")})
"""Authenticated routes with no rule of their own: any identity may ask who it is."""


def dependency(gate: access.Access, login: sso.SingleSignOn) -> Callable[..., Awaitable[access.Identity]]:
    """The FastAPI dependency every authenticated route has: 401 without a valid token or session, 403 (saying
    what is missing) when the route's rule is not allowed on each of its objects or a session's change lacks its
    CSRF token; the identity otherwise. What it checked is left on ``request.state`` for the audit trail."""

    async def guard(
        request: fastapi.Request, authorization: str | None = fastapi.Header(default=None)
    ) -> access.Identity:
        del authorization  # declared for the OpenAPI document; read from the request with the cookie
        try:
            who = await login.identify(request)
        except access.UnauthenticatedError as e:
            request.state.audit = (access.Identity("unauthenticated"), None, ())
            raise fastapi.HTTPException(401, str(e), {"WWW-Authenticate": "Bearer"}) from None
        except sso.ForbiddenError as e:
            request.state.audit = (e.who, None, ())
            raise fastapi.HTTPException(403, str(e)) from None
        route = request.scope.get("route")
        key = (request.method, str(getattr(route, "path_format", "")))
        request.state.identity = who
        if key in EXEMPT:
            return who
        rule = access.RULES.get(key)
        if rule is None:
            request.state.audit = (who, None, ())
            raise fastapi.HTTPException(403, f"no access rule for {key[0]} {key[1]}: refused")
        cluster = await _body_cluster(request) if "{cluster}" in rule.object and request.method == "POST" else None
        objects = tuple(gate.objects(rule, request.path_params, cluster))
        request.state.audit = (who, rule, objects)
        denied = [o for o in objects if not gate.allowed(who, rule.resource, rule.action, o)]
        if denied:
            raise fastapi.HTTPException(
                403, f"{who.subject} may not {rule.action} {rule.resource} {denied[0]} (rbac.policy grants it not)"
            )
        return who

    return guard


async def _body_cluster(request: fastapi.Request) -> str | None:
    """The ``cluster`` of a JSON body (None when there is none or it is not JSON: the route then says why)."""
    try:
        found = json.loads(await request.body() or b"{}")
    except ValueError:
        return None
    value = found.get("cluster") if isinstance(found, dict) else None
    return value if isinstance(value, str) and value else None


def by(request: fastapi.Request, given: str) -> str:
    """Who a lever names as its author: the authenticated subject, with what the request said (``given``: the CLI
    sends the local user) in parentheses when it says more; ``given`` alone when the API is open."""
    who: access.Identity | None = getattr(request.state, "identity", None)
    if who is None or not who.token:
        return given
    return who.subject if given in ("api", who.subject) else f"{who.subject} ({given})"


def install(app: fastapi.FastAPI, trail: audit.AuditLog) -> None:
    """Add the audit trail and the security headers to every answer of ``app``. Recorded: every request that
    would change something (a POST; a push webhook only when its signature is refused: an accepted one is the
    provider's, and fetches), and every one refused by the policy (403). A read without a valid token (401) is
    not: a dashboard left open before its token is typed asks every 3 s."""

    headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    class Audited:
        """A pure ASGI middleware: it adds the headers to the answer's start and records once the answer is sent,
        never wrapping the body (the status of 10,000 apps streams through untouched)."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.inner(scope, receive, send)
                return
            status = 500

            async def sending(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    message = {**message, "headers": [*message.get("headers", []), *headers]}
                await send(message)

            try:
                await self.inner(scope, receive, sending)
            finally:
                request = fastapi.Request(scope)
                mutating = request.method not in ("GET", "HEAD", "OPTIONS")
                webhook = request.url.path.startswith("/api/v1/webhooks/")
                login = request.url.path == "/auth/callback"  # a sign-in, allowed or refused
                if (mutating and not (webhook and status < 400)) or status == 403 or login:
                    _record(trail, request, status)

    app.add_middleware(Audited)


def _record(trail: audit.AuditLog, request: fastapi.Request, status: int) -> None:
    who, rule, objects = getattr(request.state, "audit", (None, None, ()))
    if who is None:
        provider = request.url.path.rsplit("/", 1)[-1] if "/webhooks/" in request.url.path else ""
        who = access.Identity(f"webhook:{provider}" if provider else "unknown")
    result = "denied" if status in (401, 403) else "failed" if status >= 400 else "allowed"
    trail.record(
        audit.Entry(
            subject=who.subject,
            groups=who.groups,
            token=who.token,
            method=request.method,
            path=request.url.path,
            resource=rule.resource if rule else "",
            action=rule.action if rule else "",
            objects=tuple(objects),
            remote=request.client.host if request.client else "",
            status=status,
            result=result,
        )
    )
