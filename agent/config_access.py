"""Who may use the API and what they may do: static API tokens (``server.apiTokens``) and roles (``rbac``).

Roles are Argo CD's model, checked with Casbin (the library Argo CD's RBAC is built on): a policy of ``p`` lines
(``p, <role or subject>, <resource>, <action>, <object glob>, allow|deny``) and ``g`` lines (``g, <subject or
group>, <role>``), in Argo CD's ``policy.csv`` syntax. Part of the config (:mod:`agent.config`); enforced by
:mod:`agent.api.access`.
"""

from __future__ import annotations

import csv
import hashlib
import ipaddress
import re
import urllib.parse

import pydantic

from agent.config_types import Duration, SecretRef, _Model

RESOURCES = ("apps", "clusters", "appsets", "sources", "events")
"""What a policy line names (Argo CD's resources, for this agent's API)."""
ACTIONS = ("get", "sync", "suspend", "rollback", "diff", "preview", "override")
"""What a subject may do to a resource (``*`` for every one)."""
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ApiToken(_Model):
    """One static API token for automation: ``name`` (the subject it authenticates as, shown in the audit trail),
    the token itself from ``token`` (env or file) or only its ``sha256`` (hex of the SHA-256 of the token: the
    config then holds no secret at all), and the ``groups`` (policy subjects, roles included: ``role:readonly``)
    it belongs to."""

    name: str = pydantic.Field(min_length=1, max_length=100)
    token: SecretRef | None = None
    sha256: str | None = None
    groups: tuple[str, ...] = ()

    @pydantic.model_validator(mode="after")
    def _one_secret(self) -> ApiToken:
        if (self.token is None) == (self.sha256 is None):
            raise ValueError(f"api token {self.name}: give token (env or file) or sha256, one of them")
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"api token {self.name}: sha256 must be 64 lower-case hex digits")
        return self

    def digest(self) -> str:
        """The SHA-256 (hex) a presented token must hash to. Raises ConfigError when ``token`` cannot be read."""
        if self.sha256 is not None:
            return self.sha256
        assert self.token is not None
        return hashlib.sha256(self.token.value(f"server.apiTokens[{self.name}].token")).hexdigest()


class OidcConfig(_Model):
    """Single sign-on with an OpenID Connect provider (Dex, Keycloak, Okta, Entra ID, Google...), as Argo CD's
    ``oidc.config``: the dashboard logs in with the authorization code flow and PKCE (RFC 7636), and the API
    accepts the provider's JWTs (ID or access tokens) as bearer tokens.

    ``issuer``: the provider's issuer URL (``https``; ``http`` only on a loopback host), whose
    ``/.well-known/openid-configuration`` is read (OpenID Connect Discovery 1.0); ``clientID`` and
    ``clientSecret`` (env or file; none for a public client) as registered with the provider; ``scopes`` asked
    at login (default ``openid profile email groups``; add ``offline_access`` for a refresh token, with which a
    session outlives its ID token); ``groupsClaim``: the claim listing the user's groups (default ``groups``),
    each a subject of ``rbac.policy``'s ``g`` lines; ``usernameClaim``: the claim naming the user in the audit
    trail and the policy (default ``email``; ``sub`` when a token has none); ``audience``: the ``aud`` values a
    bearer token may carry (default: ``clientID``; Argo CD's ``allowedAudiences``); ``redirectURL``: where the
    provider sends the browser back (default ``<the URL the dashboard was opened at>/auth/callback``; set it
    behind a proxy); ``caFile``: a PEM bundle to trust for the issuer instead of the system's (relative to the
    config file); ``clockSkew``:
    leeway on ``exp``/``nbf``/``iat`` (seconds, default 60, at most 300); ``sessionTTL``: how long a dashboard
    session lasts at most, refreshes included (default 24h, Argo CD's); ``requestTimeout``: each call to the
    provider (seconds, default 10).
    """

    issuer: str
    client_id: str = pydantic.Field(alias="clientID", min_length=1)
    client_secret: SecretRef | None = None
    scopes: tuple[str, ...] = ("openid", "profile", "email", "groups")
    groups_claim: str = "groups"
    username_claim: str = "email"
    audience: tuple[str, ...] = ()
    redirect_url: str | None = pydantic.Field(default=None, alias="redirectURL")
    ca_file: str | None = None
    clock_skew: Duration = pydantic.Field(default=60.0, le=300.0)
    session_ttl: Duration = pydantic.Field(default=86400.0, alias="sessionTTL")
    request_timeout: Duration = 10.0

    @pydantic.field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        url = urllib.parse.urlsplit(v)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(f"{v!r} is not an issuer URL (https://host[/path])")
        if url.scheme == "http" and not is_loopback(url.hostname):
            raise ValueError(f"{v!r}: an issuer is reached over https (http only on a loopback host)")
        if url.query or url.fragment:
            raise ValueError(f"{v!r}: an issuer URL has no query or fragment (OpenID Connect Discovery 1.0)")
        return v.rstrip("/")

    @pydantic.field_validator("scopes")
    @classmethod
    def _openid(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in v:
            raise ValueError("the scopes must include openid (without it the provider issues no ID token)")
        return v

    @property
    def audiences(self) -> tuple[str, ...]:
        """The ``aud`` values a token may carry: ``audience``, or ``clientID`` when it is empty."""
        return self.audience or (self.client_id,)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); False for a host name (it may resolve
    anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RbacConfig(_Model):
    """Roles: ``policy`` (Argo CD's ``policy.csv`` lines: ``p, role:deployer, apps, sync, team-a-*/*, allow`` and
    ``g, team-a, role:deployer``; ``#`` starts a comment) over the built-in ``role:readonly`` (``get`` on
    everything) and ``role:admin`` (everything); ``defaultRole``: the role every authenticated subject has too
    (Argo CD's ``policy.default``; empty: none). Objects are globs: an app on a cluster is ``<app>/<cluster>``, a
    cluster, app set or source its name."""

    policy: str = ""
    default_role: str = ""

    @pydantic.field_validator("policy")
    @classmethod
    def _lines(cls, v: str) -> str:
        for number, fields in policy_lines(v):
            where = f"rbac.policy line {number}"
            kind = fields[0]
            if kind == "p":
                if len(fields) not in (5, 6):
                    raise ValueError(f"{where}: p, <subject>, <resource>, <action>, <object>[, allow|deny]")
                _, _, resource, action, _, *effect = fields
                if resource not in (*RESOURCES, "*"):
                    raise ValueError(f"{where}: resource {resource!r} is not one of {', '.join(RESOURCES)} or *")
                if action not in (*ACTIONS, "*"):
                    raise ValueError(f"{where}: action {action!r} is not one of {', '.join(ACTIONS)} or *")
                if effect and effect[0] not in ("allow", "deny"):
                    raise ValueError(f"{where}: the effect must be allow or deny, not {effect[0]!r}")
            elif kind == "g":
                if len(fields) != 3:
                    raise ValueError(f"{where}: g, <subject or group>, <role>")
            else:
                raise ValueError(f"{where}: a line starts with p or g, not {kind!r}")
        return v


def policy_lines(text: str) -> list[tuple[int, list[str]]]:
    """The policy's lines as (1-based line number, fields), comments and blank lines left out (CSV, as Casbin's
    file adapter reads ``policy.csv``)."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        out.append((number, [f.strip() for f in next(csv.reader([line], skipinitialspace=True))]))
    return out
