"""Who is asking and whether they may: the API's authentication (bearer tokens) and authorization (roles in Argo
CD's model, checked with Casbin, the library Argo CD's RBAC is built on).

- Authentication: ``server.token`` authenticates as ``admin`` (``role:admin``); each of ``server.apiTokens`` as its
  name, with its groups (compared by SHA-256 digest in constant time); with ``server.oidc``, the provider's JWTs
  and the dashboard's sessions as the user they name, with their groups (:mod:`agent.api.sso`). With none of them
  configured the API is open (a loopback listener, or ``allowUnauthenticated``): every request is ``anonymous``
  with ``role:admin``, as before roles existed.
- Authorization: every route has a rule (:data:`RULES`: resource, action, object); the object is a glob subject
  of the policy's ``p`` lines: ``<app>/<cluster>`` for an app (an app-wide request is checked on every cluster the
  app is placed on, and needs them all), a cluster's, app set's or source's name, ``*`` for a list. Built in:
  ``role:readonly`` (``get`` on everything) and ``role:admin`` (everything), as Argo CD's ``builtin-policy.csv``;
  ``rbac.defaultRole`` is every subject's too. A route without a rule is refused (tests/unit/test_access.py reads
  the OpenAPI document, so a new route without one fails the suite).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Mapping, Sequence

import casbin

from agent import config

MODEL = """
[request_definition]
r = sub, res, act, obj

[policy_definition]
p = sub, res, act, obj, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub) && glob(r.res, p.res) && glob(r.act, p.act) && glob(r.obj, p.obj)
"""
"""Argo CD's RBAC model (``sub, res, act, obj, eft``; a deny wins over an allow), with Argo CD's globs (``*``
matches any text, ``/`` included: :func:`_glob`)."""
BUILTIN = (
    ("role:readonly", "*", "get", "*", "allow"),
    ("role:admin", "*", "*", "*", "allow"),
)
"""Argo CD's built-in roles."""
ADMIN, ANONYMOUS = "admin", "anonymous"
VIA_SESSION, VIA_OIDC = "session", "oidc"
""":attr:`Identity.token` of a single sign-on session, and of a bearer JWT from the OpenID provider."""

logging.getLogger("casbin").setLevel(logging.ERROR)  # it logs every decision (denials at WARNING): the audit trail
# records the ones that matter, and a dashboard polling every 3 s must not fill the log


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a route asks: ``resource`` and ``action`` of the policy, and the ``object`` template (path
    parameters in braces; ``{cluster}``: the request body's ``cluster``, every placed cluster when absent)."""

    resource: str
    action: str
    object: str


RULES: Mapping[tuple[str, str], Rule] = {
    ("GET", "/api/v1/status"): Rule("clusters", "get", "*"),
    ("GET", "/api/v1/clusters/{name}"): Rule("clusters", "get", "{name}"),
    ("GET", "/api/v1/apps"): Rule("apps", "get", "*"),
    ("GET", "/api/v1/apps/{name}"): Rule("apps", "get", "{name}/{cluster}"),
    ("GET", "/api/v1/apps/{app}/history"): Rule("apps", "get", "{app}/{cluster}"),
    ("GET", "/api/v1/appsets"): Rule("appsets", "get", "*"),
    ("GET", "/api/v1/appsets/{name}"): Rule("appsets", "get", "{name}"),
    ("GET", "/api/v1/events"): Rule("events", "get", "*"),
    ("GET", "/api/v1/audit"): Rule("events", "get", "*"),
    ("GET", "/api/v1/trace"): Rule("apps", "get", "*"),
    ("GET", "/api/v1/debug/threads"): Rule("clusters", "get", "*"),
    ("GET", "/metrics"): Rule("clusters", "get", "*"),
    ("POST", "/api/v1/sync"): Rule("clusters", "sync", "*"),
    ("POST", "/api/v1/sync/{name}"): Rule("clusters", "sync", "{name}"),
    ("POST", "/api/v1/apps/{app}/sync"): Rule("apps", "sync", "{app}/{cluster}"),
    ("POST", "/api/v1/apps/{app}/suspend"): Rule("apps", "suspend", "{app}/{cluster}"),
    ("POST", "/api/v1/apps/{app}/resume"): Rule("apps", "suspend", "{app}/{cluster}"),
    ("POST", "/api/v1/apps/{app}/rollback"): Rule("apps", "rollback", "{app}/{cluster}"),
    ("POST", "/api/v1/apps/{app}/unpin"): Rule("apps", "rollback", "{app}/{cluster}"),
    ("POST", "/api/v1/clusters/{name}/suspend"): Rule("clusters", "suspend", "{name}"),
    ("POST", "/api/v1/clusters/{name}/resume"): Rule("clusters", "suspend", "{name}"),
}
"""Each authenticated route's rule, by (method, path template)."""


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who asks: ``subject`` (``admin``, an API token's name, a single sign-on user, ``anonymous``), their
    ``groups`` (policy subjects), and the ``token`` name they authenticated with (``oidc``: the provider's JWT;
    ``session``: the dashboard's single sign-on; "" when none)."""

    subject: str
    groups: tuple[str, ...] = ()
    token: str = ""


class UnauthenticatedError(Exception):
    """No valid bearer token (401)."""


class Access:
    """Authentication and authorization for one config. ``placed(app)``: the clusters an app is placed on.
    Raises ConfigError (from the constructor) when a token cannot be read. Safe from any thread (the enforcer's
    reads are guarded by one lock; it is never changed after construction)."""

    def __init__(self, cfg: config.AgentConfig, placed: Callable[[str], Sequence[str]]) -> None:
        server = cfg.server
        self._admin = hashlib.sha256(server.token.value("server.token")).hexdigest() if server.token else None
        self._tokens = {t.digest(): t for t in server.api_tokens}
        self.open = self._admin is None and not self._tokens and server.oidc is None
        """Neither a token nor single sign-on configured: every request is anonymous with role:admin."""
        self._placed = placed
        self._default = cfg.rbac.default_role
        model = casbin.model.Model()
        model.load_model_from_text(MODEL)
        self._enforcer = casbin.Enforcer(model)
        self._enforcer.add_function("glob", _glob)
        for line in BUILTIN:
            self._enforcer.add_policy(*line)
        self._enforcer.add_grouping_policy(ADMIN, "role:admin")
        for _, fields in config.policy_lines(cfg.rbac.policy):
            if fields[0] == "p":
                self._enforcer.add_policy(*fields[1:5], fields[5] if len(fields) > 5 else "allow")
            else:
                self._enforcer.add_grouping_policy(fields[1], fields[2])
        self._lock = threading.Lock()

    def identify(self, authorization: str | None) -> Identity:
        """The identity a request's ``Authorization`` header proves. Raises :class:`UnauthenticatedError`."""
        if self.open:
            return Identity(ANONYMOUS, ("role:admin",))
        if not authorization or not authorization.startswith("Bearer "):
            raise UnauthenticatedError("a valid bearer token is required")
        digest = hashlib.sha256(authorization.removeprefix("Bearer ").encode()).hexdigest()
        if self._admin is not None and hmac.compare_digest(digest, self._admin):
            return Identity(ADMIN, ("role:admin",), "server.token")
        for known, token in self._tokens.items():
            if hmac.compare_digest(digest, known):
                return Identity(token.name, token.groups, token.name)
        raise UnauthenticatedError("a valid bearer token is required")

    def objects(self, rule: Rule, params: Mapping[str, str], cluster: str | None) -> list[str]:
        """The objects ``rule`` checks for a request with path ``params`` and body ``cluster``: every cluster the
        app is placed on when no cluster is named (``*`` for an app placed nowhere)."""
        if "{cluster}" not in rule.object:
            return [rule.object.format(**params)]
        app = params.get("app") or params.get("name") or ""
        clusters = [cluster] if cluster else list(self._placed(app)) or ["*"]
        return [rule.object.format(**params, cluster=c) for c in clusters]

    def allowed(self, who: Identity, resource: str, action: str, obj: str) -> bool:
        """True when ``who`` (their subject, any of their groups, or the default role) may ``action`` on
        ``resource`` ``obj``."""
        if self.open:
            return True  # no token configured: everyone is anonymous with role:admin
        subjects = (who.subject, *who.groups, *((self._default,) if self._default else ()))
        with self._lock:
            return any(self._enforcer.enforce(s, resource, action, obj) for s in subjects)

    def may(self, who: Identity, resource: str, action: str) -> bool:
        """True when ``who`` may ``action`` on some object of ``resource`` (what the dashboard shows)."""
        subjects = (who.subject, *who.groups, *((self._default,) if self._default else ()))
        with self._lock:
            roles = {r for s in subjects for r in (s, *self._enforcer.get_implicit_roles_for_user(s))}
            rules = [p for p in self._enforcer.get_policy() if p[0] in roles and p[4] == "allow"]
        return any(_glob(resource, p[1]) and _glob(action, p[2]) for p in rules)


def _glob(value: str, pattern: str) -> bool:
    """``value`` matches ``pattern`` as Argo CD's RBAC globs match (``*`` any text, ``/`` too; ``?`` one
    character; ``[...]`` a class)."""
    return fnmatch.fnmatchcase(value, pattern)
