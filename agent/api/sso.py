"""Single sign-on (``server.oidc``): the dashboard's login, callback and logout, and who a request is when it
carries a session cookie or one of the provider's JWTs.

- ``GET /auth/login[?next=/path]``: to the provider (authorization code flow with PKCE; :mod:`agent.api.oidc`),
  the state, nonce and verifier kept in a signed cookie for 10 minutes.
- ``GET /auth/callback``: the provider's answer: the state checked, the code exchanged, the ID token verified
  (nonce included); a session starts (:mod:`agent.api.sessions`) and the browser goes back to ``next``.
- ``POST /auth/logout``: ends the session (CSRF token required); says where the provider's own logout is, when it
  has one (``end_session_endpoint``, with ``client_id``: the provider asks the user to confirm), else ``/``.
- ``GET /auth/info``: whether single sign-on is on (the dashboard shows its login link).

Login and callback are rate-limited per client address (429 with ``Retry-After``). A session past its ID token's
expiry is refreshed with the refresh token, its groups read again; a refused refresh ends it (401). Used by
:mod:`agent.api.guard` and :mod:`agent.api.server`.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import time
import urllib.parse
from typing import Any

import fastapi
import itsdangerous
from starlette.concurrency import run_in_threadpool

from agent.api import access, oidc, sessions

log = logging.getLogger(__name__)
NO_SSO = "single sign-on is not configured (server.oidc)"


class ForbiddenError(Exception):
    """Authenticated as ``who``, but the request may not go on (a cookie-authenticated change without its CSRF
    token)."""

    def __init__(self, who: access.Identity, message: str) -> None:
        super().__init__(message)
        self.who = who


class SingleSignOn:
    """Sessions and tokens of one ``server.oidc`` (``provider``; None: single sign-on off, bearer tokens only).
    ``gate``: the static tokens. Every call to the provider runs in a worker thread."""

    def __init__(self, gate: access.Access, provider: oidc.Provider | None) -> None:
        self.gate = gate
        self.provider = provider
        self.sessions = sessions.Sessions()
        self.limiter = sessions.LoginLimiter()

    async def identify(self, request: fastapi.Request) -> access.Identity:
        """Who ``request`` is: its bearer token (a static token, or the provider's JWT), else its session cookie.
        Raises :class:`access.UnauthenticatedError` (401) and :class:`ForbiddenError` (a session's change without
        the CSRF token)."""
        authorization = request.headers.get("authorization")
        if self.provider is None or self.gate.open:
            return self.gate.identify(authorization)
        if authorization:
            token = authorization.removeprefix("Bearer ")
            if token.count(".") != 2 or not authorization.startswith("Bearer "):
                return self.gate.identify(authorization)
            with contextlib.suppress(access.UnauthenticatedError):  # a static token shaped like a JWT
                return self.gate.identify(authorization)
            try:
                claims = await run_in_threadpool(self.provider.verify, token)
            except (oidc.InvalidTokenError, oidc.ProviderError) as e:
                raise access.UnauthenticatedError(f"bearer token refused: {e}") from None
            return self.provider.identity(claims, access.VIA_OIDC)
        session = await self.session(request)
        if session is None:
            raise access.UnauthenticatedError("a valid bearer token or a single sign-on session is required")
        if request.method not in ("GET", "HEAD", "OPTIONS") and not sessions.csrf_ok(
            session, request.headers.get(sessions.CSRF_HEADER)
        ):
            raise ForbiddenError(session.who, f"a change made through a session needs {sessions.CSRF_HEADER}")
        return session.who

    async def session(self, request: fastapi.Request) -> sessions.Session | None:
        """The live session of ``request``'s cookie (refreshed when its ID token has expired), None when there is
        none, it ended, or its refresh was refused. One refresh per session at a time: the dashboard's parallel
        requests wait for it and share its result (a provider that rotates refresh tokens, as Dex does, refuses
        the same one twice)."""
        cookie = request.cookies.get(sessions.COOKIE)
        found = self.sessions.find(cookie) if cookie else None
        if found is None or self.provider is None or found.expires > time.time():
            return found
        async with found.refreshing:
            if found.expires > time.time():  # refreshed while this request waited
                return self.sessions.find(cookie or "")
            if not found.refresh_token:
                self.sessions.end(found.id)
                return None
            try:
                tokens = await run_in_threadpool(self.provider.refresh, found.refresh_token)
            except (oidc.InvalidTokenError, oidc.ProviderError) as e:
                log.warning("the single sign-on session of %s ended: its refresh failed: %s", found.who.subject, e)
                self.sessions.end(found.id)
                return None
            self.sessions.renew(found.id, self.provider.identity(tokens.claims, access.VIA_SESSION), tokens.expires,
                                tokens.refresh_token)  # fmt: skip
        return self.sessions.find(cookie or "")

    def router(self) -> fastapi.APIRouter:
        """The ``/auth`` routes."""
        router = fastapi.APIRouter()

        @router.get("/auth/info")
        def info() -> dict[str, Any]:
            """Whether single sign-on is on (``oidc``) and where its login starts."""
            return {"oidc": self.provider is not None, "loginURL": "/auth/login" if self.provider else None}

        @router.get("/auth/login", status_code=303, responses={404: {}, 429: {}, 502: {}})
        def login(request: fastapi.Request, next: str = "/") -> fastapi.Response:
            """Start a login at the provider; back at ``next`` (a path of this server) once signed in."""
            provider = self._provider()
            self._limit(request)
            redirect = self._redirect_uri(request)
            try:
                started = provider.begin(redirect)
            except oidc.ProviderError as e:
                raise fastapi.HTTPException(502, f"the OpenID provider cannot be reached: {e}") from None
            state = {"state": started.state, "nonce": started.nonce, "verifier": started.verifier,
                     "next": _local(next), "redirect": redirect}  # fmt: skip
            answer = fastapi.responses.RedirectResponse(started.url, status_code=303)
            answer.set_cookie(sessions.LOGIN_COOKIE, self.sessions.login_state.dumps(state),
                              max_age=sessions.LOGIN_SECONDS, path="/auth", secure=True, httponly=True,
                              samesite="lax")  # fmt: skip
            return answer

        @router.get("/auth/callback", status_code=303, responses={400: {}, 401: {}, 404: {}, 429: {}, 502: {}})
        def callback(
            request: fastapi.Request, code: str = "", state: str = "", error: str = "", error_description: str = ""
        ) -> fastapi.Response:
            """The provider's answer to a login: a session starts, and the browser goes where the login began."""
            provider = self._provider()
            self._limit(request)
            request.state.audit = (access.Identity("unauthenticated"), None, ())
            if error:
                raise fastapi.HTTPException(401, f"the provider refused the login: {error} {error_description}".strip())
            try:
                login = self.sessions.login_state.loads(
                    request.cookies.get(sessions.LOGIN_COOKIE, ""), max_age=sessions.LOGIN_SECONDS
                )
            except itsdangerous.BadData:
                raise fastapi.HTTPException(400, "no login under way in this browser (or it took over 10 minutes): "
                                                 "start again at /auth/login") from None  # fmt: skip
            if not code or not hmac.compare_digest(state.encode(), str(login.get("state", "")).encode()):
                raise fastapi.HTTPException(400, "the login's state does not match: start again at /auth/login")
            try:
                tokens = provider.finish(code, login["verifier"], login["nonce"], login["redirect"])
            except oidc.InvalidTokenError as e:
                raise fastapi.HTTPException(401, f"the provider's ID token is refused: {e}") from None
            except oidc.ProviderError as e:
                raise fastapi.HTTPException(502, f"the login could not be completed: {e}") from None
            who = provider.identity(tokens.claims, access.VIA_SESSION)
            request.state.audit = (who, None, ())
            cookie = self.sessions.create(who, tokens.expires, provider.cfg.session_ttl, tokens.refresh_token)
            answer = fastapi.responses.RedirectResponse(_local(str(login.get("next", "/"))), status_code=303)
            answer.delete_cookie(sessions.LOGIN_COOKIE, path="/auth", secure=True, httponly=True, samesite="lax")
            answer.set_cookie(sessions.COOKIE, cookie, max_age=math.ceil(provider.cfg.session_ttl), path="/",
                              secure=True, httponly=True, samesite="lax")  # fmt: skip
            return answer

        @router.post("/auth/logout", responses={401: {}, 403: {}, 404: {}})
        async def logout(request: fastapi.Request) -> fastapi.Response:
            """End this browser's session (``X-CSRF-Token`` required). ``logoutURL``: the provider's own logout page,
            when it has one, else ``/``."""
            provider = self._provider()
            session = await self.session(request)
            if session is None:
                request.state.audit = (access.Identity("unauthenticated"), None, ())
                raise fastapi.HTTPException(401, "no session to end")
            request.state.audit = (session.who, None, ())
            if not sessions.csrf_ok(session, request.headers.get(sessions.CSRF_HEADER)):
                raise fastapi.HTTPException(403, f"logging out needs the session's CSRF token ({sessions.CSRF_HEADER})")
            self.sessions.end(session.id)
            try:
                end = (await run_in_threadpool(provider.metadata)).get("end_session_endpoint")
            except oidc.ProviderError:
                end = None
            # RP-Initiated Logout 1.0, section 2: client_id, never the ID token as id_token_hint (it would sit in
            # the browser's history and the provider's logs, and this API accepts it as a bearer token)
            url = f"{end}?{urllib.parse.urlencode({'client_id': provider.cfg.client_id})}" if end else "/"
            answer = fastapi.responses.JSONResponse({"loggedOut": True, "logoutURL": url})
            answer.delete_cookie(sessions.COOKIE, path="/", secure=True, httponly=True, samesite="lax")
            return answer

        return router

    def _provider(self) -> oidc.Provider:
        if self.provider is None:
            raise fastapi.HTTPException(404, NO_SSO)
        return self.provider

    def _limit(self, request: fastapi.Request) -> None:
        wait = self.limiter.take(request.client.host if request.client else "")
        if wait:
            raise fastapi.HTTPException(429, "too many logins from this address: try again later",
                                        {"Retry-After": str(math.ceil(wait))})  # fmt: skip

    def _redirect_uri(self, request: fastapi.Request) -> str:
        assert self.provider is not None
        return self.provider.cfg.redirect_url or str(request.base_url).rstrip("/") + "/auth/callback"


def _local(path: str) -> str:
    """``path`` when it is a path of this server (``/...``, not ``//host`` or a URL: no open redirect), else ``/``."""
    parsed = urllib.parse.urlsplit(path)
    if parsed.scheme or parsed.netloc or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path
