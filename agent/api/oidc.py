"""The OpenID provider ``server.oidc`` names: its discovery document, its signing keys, the tokens it issues.

- Discovery (OpenID Connect Discovery 1.0): ``<issuer>/.well-known/openid-configuration`` is read on first use
  and kept; its ``issuer`` must be the configured one (section 4.3). A failed read is tried again on the next use.
- Keys: the provider's JWKS (``jwks_uri``), read on first use and kept; a token whose ``kid`` is not among them
  reads the set again (the provider rotated its keys: OpenID Connect Core 1.0, section 10.1.1), at most once every
  :data:`REFETCH_SECONDS`, so tokens with made-up key ids cannot make the agent hammer the provider.
- Tokens (RFC 7519, checked by joserfc): the signature with one of those keys and an asymmetric algorithm of
  :data:`ALGORITHMS` (``none`` and HMAC never: a client secret known to others must not mint tokens), ``iss``,
  ``aud`` (one of ``audience``), ``exp`` (required), ``nbf`` and ``iat`` with ``clockSkew`` of leeway, and at
  login the ``nonce`` the login sent.
- The login (RFC 6749 authorization code grant with PKCE, RFC 7636, S256) and refreshes (RFC 6749 section 6), by
  Authlib's OAuth 2.0 client.

Every call to the provider has ``requestTimeout``; none is made holding a lock. Used by :mod:`agent.api.sso`.
"""

from __future__ import annotations

import dataclasses
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx2 as httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import errors as jose_errors
from joserfc import jws, jwt
from joserfc.jwk import KeySet
from joserfc.jwt import ClaimsOption

from agent import config
from agent.api import access

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
"""The signature algorithms a token may use (asymmetric only)."""
REFETCH_SECONDS = 10.0
"""At most one read of the provider's keys per this many seconds for unknown key ids."""


class InvalidTokenError(Exception):
    """A token that does not prove who it names (401). The message says why, never the token."""


class ProviderError(Exception):
    """The provider could not be reached or answered something unusable. The message says which call failed."""


@dataclasses.dataclass(frozen=True)
class Tokens:
    """What a login or refresh returned: the verified ID token's ``claims``, the ``refresh_token`` ("" when
    none), and ``expires`` (the ID token's ``exp``, seconds since the epoch)."""

    claims: Mapping[str, Any]
    refresh_token: str
    expires: float


@dataclasses.dataclass(frozen=True)
class Login:
    """One login under way: the ``url`` to send the browser to, and what the callback checks (``state``,
    ``nonce``) and sends (``verifier``: the PKCE code verifier)."""

    url: str
    state: str
    nonce: str
    verifier: str


class Provider:
    """The OpenID provider of ``cfg``. Safe from any thread: the discovery document and the key set are replaced
    whole under one lock, never held across a request. ``clock``: seconds since the epoch (tests move it)."""

    def __init__(self, cfg: config.OidcConfig, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self._secret = cfg.client_secret.value("server.oidc.clientSecret").decode() if cfg.client_secret else None
        self._verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=cfg.ca_file) if cfg.ca_file else True
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_read = 0.0

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document. Raises :class:`ProviderError`."""
        with self._lock:
            if self._metadata is not None:
                return self._metadata
        url = f"{self.cfg.issuer}/.well-known/openid-configuration"
        found = self._get(url)
        if found.get("issuer", "").rstrip("/") != self.cfg.issuer:
            raise ProviderError(f"{url} names issuer {found.get('issuer')!r}, not {self.cfg.issuer!r}")
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(found.get(field), str):
                raise ProviderError(f"{url} has no {field}")
        with self._lock:
            self._metadata = found
        return found

    def verify(self, token: str, nonce: str | None = None) -> Mapping[str, Any]:
        """The claims of ``token`` (a compact JWS) once its signature and claims check out (see the module).
        Raises :class:`InvalidTokenError` (why it is refused), :class:`ProviderError` (the keys could not be
        read)."""
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (jose_errors.JoseError, ValueError, UnicodeError):
            raise InvalidTokenError("not a signed JWT") from None
        if header.get("alg") not in ALGORITHMS:
            raise InvalidTokenError(f"signature algorithm {header.get('alg')!r} is not accepted")
        keys = self._key_set(str(header.get("kid", "")))
        try:
            decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
        except (jose_errors.JoseError, ValueError) as e:
            raise InvalidTokenError(f"signature not verified: {_reason(e)}") from None
        claims = decoded.claims
        options: dict[str, ClaimsOption] = {
            "iss": {"essential": True, "value": self.cfg.issuer},
            "aud": {"essential": True, "values": list(self.cfg.audiences)},
            "exp": {"essential": True},
            "sub": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(now=int(self._clock()), leeway=int(self.cfg.clock_skew), **options)
        try:
            registry.validate(claims)
        except jose_errors.JoseError as e:
            raise InvalidTokenError(_reason(e)) from None
        return claims

    def identity(self, claims: Mapping[str, Any], via: str) -> access.Identity:
        """Who ``claims`` name: the ``usernameClaim`` (``sub`` when absent) and the ``groupsClaim`` (a list, or one
        string), authenticated ``via`` ("oidc": a bearer JWT; "session": the dashboard's cookie)."""
        user = claims.get(self.cfg.username_claim) or claims["sub"]
        groups = claims.get(self.cfg.groups_claim) or ()
        if isinstance(groups, str):
            groups = (groups,)
        return access.Identity(str(user), tuple(str(g) for g in groups if isinstance(g, str | int)), via)

    def begin(self, redirect_uri: str) -> Login:
        """A new login: the authorization URL (code flow, PKCE S256, ``state`` and ``nonce``). Raises
        :class:`ProviderError`."""
        endpoint = self.metadata()["authorization_endpoint"]
        verifier, nonce = generate_token(48), generate_token(24)
        with self._client(redirect_uri) as client:
            url, state = client.create_authorization_url(endpoint, code_verifier=verifier, nonce=nonce)
        return Login(url, state, nonce, verifier)

    def finish(self, code: str, verifier: str, nonce: str, redirect_uri: str) -> Tokens:
        """The tokens ``code`` is exchanged for, the ID token verified (with ``nonce``). Raises
        :class:`ProviderError`, :class:`InvalidTokenError`."""
        with self._client(redirect_uri) as client:
            answer = self._token(client, code=code, code_verifier=verifier)
        return self._tokens(answer, nonce)

    def refresh(self, refresh_token: str) -> Tokens:
        """New tokens for ``refresh_token`` (a refresh that returns no new refresh token keeps the old one).
        Raises :class:`ProviderError`, :class:`InvalidTokenError`."""
        with self._client(None) as client:
            answer = self._token(client, refresh_token=refresh_token)
        answer.setdefault("refresh_token", refresh_token)
        return self._tokens(answer, None)

    def _tokens(self, answer: dict[str, Any], nonce: str | None) -> Tokens:
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderError("the token endpoint returned no id_token (are the scopes missing openid?)")
        claims = self.verify(id_token, nonce)
        return Tokens(claims, str(answer.get("refresh_token") or ""), float(claims["exp"]))

    def _token(self, client: OAuth2Client, **params: str) -> dict[str, Any]:
        endpoint = self.metadata()["token_endpoint"]
        try:
            if "refresh_token" in params:
                answer = client.refresh_token(endpoint, **params)
            else:
                answer = client.fetch_token(endpoint, **params)
        except httpx.HTTPError as e:
            raise ProviderError(f"{endpoint}: {type(e).__name__}: {e}") from None
        except Exception as e:  # Authlib raises OAuthError (the provider's error code) and ValueError
            raise ProviderError(f"{endpoint}: {getattr(e, 'error', '') or type(e).__name__}") from None
        return dict(answer)

    def _client(self, redirect_uri: str | None) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.cfg.client_id,
            client_secret=self._secret,
            token_endpoint_auth_method="client_secret_basic" if self._secret else "none",
            scope=" ".join(self.cfg.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=self.cfg.request_timeout,
            verify=self._verify,
        )

    def _key_set(self, kid: str) -> KeySet:
        with self._lock:
            keys, read = self._keys, self._keys_read
        if keys is not None and (not kid or any(k.kid == kid for k in keys.keys)):
            return keys
        if keys is not None and self._clock() - read < REFETCH_SECONDS:
            raise InvalidTokenError(f"signed by unknown key {kid!r}")
        url = self.metadata()["jwks_uri"]
        if keys is not None:
            with self._lock:
                self._keys_read = self._clock()  # taken before the read: concurrent unknown ids wait their turn
        try:
            fresh = KeySet.import_key_set(self._get(url))  # type: ignore[arg-type]
        except (jose_errors.JoseError, ValueError, TypeError, KeyError) as e:
            raise ProviderError(f"{url}: not a JSON Web Key Set: {_reason(e)}") from None
        with self._lock:
            self._keys = fresh
        if kid and not any(k.kid == kid for k in fresh.keys):
            raise InvalidTokenError(f"signed by unknown key {kid!r}")
        return fresh

    def _get(self, url: str) -> dict[str, Any]:
        try:
            answer = httpx.get(url, timeout=self.cfg.request_timeout, verify=self._verify, follow_redirects=False)
        except httpx.HTTPError as e:
            raise ProviderError(f"{url}: {type(e).__name__}: {e}") from None
        if answer.status_code != 200:
            raise ProviderError(f"{url}: HTTP {answer.status_code}")
        try:
            found = answer.json()
        except ValueError:
            raise ProviderError(f"{url}: not JSON") from None
        if not isinstance(found, dict):
            raise ProviderError(f"{url}: not a JSON object")
        return found


def _reason(e: Exception) -> str:
    """joserfc's error as a sentence: its code and ``description`` (never the token)."""
    code, description = getattr(e, "error", ""), getattr(e, "description", "")
    return f"{code}: {description}" if code and description else str(description or code or type(e).__name__)
