"""The dashboard's single sign-on sessions and the login's rate limit.

A session is kept in the agent (who, their groups, a CSRF token, when it expires, the refresh token); the browser
holds only its id, signed (itsdangerous, HMAC-SHA1 over a per-process key) in a cookie that is ``HttpOnly``
(scripts cannot read it), ``Secure`` (sent over HTTPS only; browsers treat ``http://localhost`` as secure),
``SameSite=Lax`` (not sent with another site's POST) and scoped to ``/``. Logging out forgets the session, so a
copied cookie stops working too; a restart of the agent ends every session (the user logs in again, one redirect
when the provider still knows them). At most :data:`KEEP` sessions: the oldest go first.

A cookie-authenticated request that changes something must carry the session's CSRF token in ``X-CSRF-Token``
(the synchronizer token pattern, OWASP's CSRF cheat sheet): another site can make the browser send the cookie,
never read the token.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hmac
import secrets
import threading
import time
from collections.abc import Callable

import itsdangerous

from agent.api import access

COOKIE = "gitops_agent_session"
"""The session cookie's name."""
LOGIN_COOKIE = "gitops_agent_login"
"""The cookie a login under way keeps its state, nonce and PKCE verifier in (signed, 10 minutes)."""
CSRF_HEADER = "X-CSRF-Token"
"""The header a cookie-authenticated POST carries its session's CSRF token in."""
KEEP = 10_000
"""Sessions kept at most."""
LOGIN_SECONDS = 600
"""How long a login may take at the provider (seconds) before its callback is refused."""


@dataclasses.dataclass
class Session:
    """One signed-in browser: ``who``, the ``csrf`` token, ``expires`` (the ID token's ``exp``: past it the
    session is refreshed or ends), ``ends`` (``sessionTTL`` after the login: the session ends then whatever
    happens), ``refresh_token`` ("" when the provider gave none). Seconds since the epoch. ``expires``, ``who``
    and ``refresh_token`` change only under the store's lock (:meth:`Sessions.renew`)."""

    id: str
    who: access.Identity
    csrf: str
    expires: float
    ends: float
    refresh_token: str
    refreshing: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    """Held by the one request refreshing the session (on the server's event loop)."""


class Sessions:
    """The sessions, owned by this object (one lock, never held across a call to the provider). ``clock``:
    seconds since the epoch."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._signer = itsdangerous.Signer(secrets.token_bytes(32), salt="session")
        self.login_state = itsdangerous.URLSafeTimedSerializer(secrets.token_bytes(32), salt="login")
        """Signs the login cookie (state, nonce, verifier, where to return)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()

    def create(self, who: access.Identity, expires: float, ttl: float, refresh_token: str) -> str:
        """A new session for ``who``; the cookie value that names it."""
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), who, secrets.token_urlsafe(32), expires, now + ttl, refresh_token)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > KEEP:
                self._sessions.popitem(last=False)
        return self._signer.sign(session.id).decode()

    def find(self, cookie: str) -> Session | None:
        """The session ``cookie`` names, None when its signature is wrong, it was ended or it is past ``ends``. It
        may be past ``expires`` (the caller refreshes it)."""
        try:
            sid = self._signer.unsign(cookie).decode()
        except (itsdangerous.BadSignature, UnicodeError):
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.ends <= self._clock():
                del self._sessions[sid]
                return None
            return session

    def renew(self, sid: str, who: access.Identity, expires: float, refresh_token: str) -> None:
        """Record a refresh: the identity read again from the new ID token, its expiry, the refresh token."""
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None:
                session.who, session.expires, session.refresh_token = who, expires, refresh_token

    def end(self, sid: str) -> None:
        """Forget a session (logout, a refresh the provider refused)."""
        with self._lock:
            self._sessions.pop(sid, None)


def csrf_ok(session: Session, presented: str | None) -> bool:
    """True when ``presented`` is ``session``'s CSRF token (compared in constant time)."""
    return presented is not None and hmac.compare_digest(presented.encode(), session.csrf.encode())


class LoginLimiter:
    """At most ``burst`` logins (the start and the callback count alike) per client address, refilled at ``rate``
    per second (a token bucket): a script cannot try codes or flood the provider through the agent. Safe from
    any thread. Keeps :data:`KEEP` addresses at most."""

    def __init__(self, rate: float = 0.2, burst: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate, self._burst, self._clock = rate, burst, clock
        self._lock = threading.Lock()
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def take(self, address: str) -> float:
        """0 when ``address`` may log in now (one taken), else the seconds until it may."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(address, (float(self._burst), now))
            tokens = min(float(self._burst), tokens + (now - then) * self._rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self._rate
            self._buckets[address] = (tokens - 1 if wait == 0 else tokens, now)
            while len(self._buckets) > KEEP:
                self._buckets.popitem(last=False)
        return wait
