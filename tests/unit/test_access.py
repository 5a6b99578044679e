"""Roles and the audit trail over every route of the API, in-process (a fleet that has not started: the routes
answer what they can; only 401 and 403 are the gate's).

The policy is the issue's: ``team-a`` may sync only ``team-a-*`` apps on ``dev``; a read-only token may read
everything and change nothing; the admin token may do everything. Every route of the OpenAPI document is tried as
each of them, and each gets exactly what the policy says; a route without an access rule fails this test (so a new
route cannot skip the check). Each request that changes something, or is refused, is in ``/api/v1/audit`` once,
with its subject. Tokens: wrong, missing, or only known by their SHA-256."""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from agent import config
from agent.api import access, guard, server
from agent.runtime import fleet

ADMIN, READER, TEAM_A = "admin-token-7d1f", "reader-token-93ab", "team-a-token-5c2e"
POLICY = """
# team-a syncs its own apps on dev, nothing else
p, role:deployer, apps, sync, team-a-*/dev, allow
g, team-a, role:deployer
"""
# the single sign-on routes make their own checks (tests/unit/test_oidc.py, tests/e2e/test_sso.py)
UNGUARDED = {"/healthz", "/readyz", "/api/v1/webhooks/{provider}", "/auth/info", "/auth/login", "/auth/callback",
             "/auth/logout"}  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("access")
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump({
        "source": {"url": str(tmp / "none"), "cacheDir": str(tmp / "cache")},
        "clusters": [{"name": c, "kubeconfig": str(tmp / "nope")} for c in ("dev", "prod")],
        "apps": [{"name": "team-a-web", "path": "a", "clusters": {"names": ["dev"]}},
                 {"name": "team-b-web", "path": "b"}],
        "server": {
            "token": {"env": "ACCESS_TEST_ADMIN"},
            "apiTokens": [
                {"name": "reader", "sha256": hashlib.sha256(READER.encode()).hexdigest(), "groups": ["role:readonly"]},
                {"name": "team-a-ci", "token": {"env": "ACCESS_TEST_TEAM_A"}, "groups": ["team-a"]},
            ],
        },
        "rbac": {"policy": POLICY},
        "sync": {"interval": "24h"},
    }))  # fmt: skip
    mp = pytest.MonkeyPatch()
    mp.setenv("ACCESS_TEST_ADMIN", ADMIN)
    mp.setenv("ACCESS_TEST_TEAM_A", TEAM_A)
    agent = fleet.Fleet(config.load_config(path))
    agent.scheduler.start(paused=True)
    with TestClient(server.create_app(agent)) as c:
        yield c
    mp.undo()


def _routes(client: TestClient) -> list[tuple[str, str]]:
    doc = client.get("/openapi.json").json()
    return [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if p not in UNGUARDED]


def _ask(client: TestClient, method: str, path: str, token: str, app: str, cluster: str | None) -> int:
    url = path.format(name=app if "/apps/" in path else "dev", app=app, provider="generic")
    body: dict[str, Any] | None = None
    if method == "POST":
        body = {"cluster": cluster} if cluster else {}
        if url.endswith("/rollback"):
            body = {"cluster": cluster or "dev", "to": "main"}
        if url.endswith("/unpin"):
            body = {"cluster": cluster or "dev"}
    params = {"kind": "ConfigMap", "name": "x"} if url.endswith("/trace") else None
    answer = client.request(method, url, json=body, params=params, headers={"Authorization": f"Bearer {token}"})
    return int(answer.status_code)


def test_every_route_has_an_access_rule(client: TestClient) -> None:
    routes = _routes(client)
    assert len(routes) > 20
    missing = [(m, p) for m, p in routes if (m, p) not in access.RULES and (m, p) not in guard.EXEMPT]
    assert missing == []


def _expected(who: str, method: str, path: str, app: str, cluster: str | None) -> bool:
    if who == "admin" or (method, path) in guard.EXEMPT:
        return True
    if who == "reader":
        return method == "GET"
    # team-a: apps sync on team-a-* apps on dev only (an app-wide sync checks every cluster it is placed on)
    rule = access.RULES[(method, path)]
    clusters = [cluster] if cluster else (["dev"] if app == "team-a-web" else ["dev", "prod"])
    on_app = "{cluster}" in rule.object
    return (
        (rule.resource, rule.action) == ("apps", "sync")
        and app.startswith("team-a-")
        and on_app
        and (all(c == "dev" for c in clusters))
    )


@pytest.mark.parametrize("who", ["admin", "reader", "team-a"])
def test_each_identity_gets_exactly_what_the_policy_says(client: TestClient, who: str) -> None:
    token = {"admin": ADMIN, "reader": READER, "team-a": TEAM_A}[who]
    wrong = []
    for method, path in _routes(client):
        for app, cluster in (("team-a-web", None), ("team-a-web", "dev"), ("team-a-web", "prod"), ("team-b-web", None)):
            if "{cluster}" not in access.RULES.get((method, path), access.Rule("", "", "")).object and cluster:
                continue
            status = _ask(client, method, path, token, app, cluster)
            allowed = _expected(who, method, path, app, cluster)
            if status == 401 or (status == 403) == allowed:
                wrong.append((method, path, app, cluster, status, allowed))
    assert wrong == []


def test_tokens_are_checked_and_the_audit_trail_names_who(client: TestClient) -> None:
    assert client.get("/api/v1/status").status_code == 401
    assert client.get("/api/v1/status", headers={"Authorization": "Bearer nope"}).status_code == 401
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {TEAM_A}"}).json()
    assert me == {"subject": "team-a-ci", "groups": ["team-a"], "token": "team-a-ci",
                  "may": {"apps": ["sync"], "clusters": [], "appsets": [], "sources": [], "events": []},
                  "csrfToken": None}  # fmt: skip
    denied = client.post("/api/v1/apps/team-b-web/sync", json={}, headers={"Authorization": f"Bearer {TEAM_A}"})
    assert denied.status_code == 403
    assert denied.json()["detail"] == "team-a-ci may not sync apps team-b-web/dev (rbac.policy grants it not)"
    done = client.post("/api/v1/apps/team-a-web/sync", json={}, headers={"Authorization": f"Bearer {TEAM_A}"})
    assert done.status_code == 202, done.text
    trail = client.get("/api/v1/audit?limit=2", headers={"Authorization": f"Bearer {READER}"}).json()["audit"]
    assert [(e["subject"], e["path"], e["objects"], e["result"], e["status"]) for e in trail] == [
        ("team-a-ci", "/api/v1/apps/team-a-web/sync", ["team-a-web/dev"], "allowed", 202),
        ("team-a-ci", "/api/v1/apps/team-b-web/sync", ["team-b-web/dev", "team-b-web/prod"], "denied", 403),
    ]
    assert TEAM_A not in str(client.get("/api/v1/audit", headers={"Authorization": f"Bearer {ADMIN}"}).json())
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_a_bad_policy_line_names_the_line(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match=r"rbac\.policy line 2: action 'deploy' is not one of get, sync"):
        config.RbacConfig.model_validate({"policy": "g, a, role:x\np, role:x, apps, deploy, *, allow"})


def test_roles_without_any_token_are_refused_naming_why(tmp_path: pathlib.Path) -> None:
    raw = {
        "source": {"url": str(tmp_path)},
        "clusters": [{"name": "dev", "kubeconfig": "/x"}],
        "rbac": {"policy": POLICY},
    }
    with pytest.raises(ValueError, match=r"rbac: without server\.token, server\.apiTokens or server\.oidc the API"):
        config.AgentConfig.model_validate(raw)
