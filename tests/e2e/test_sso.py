"""Single sign-on through a real OpenID provider: Dex (built from its Go module by ``make dex``) on loopback, its
password database holding alice (group ``team-a``) and bob (group ``readers``); the agent running with
``server.oidc`` and a policy where ``team-a`` may sync only ``team-a-*`` apps on ``dev``.

- In headless Chromium, alice logs in through Dex's own login page and lands on the dashboard as herself with her
  group; her session cookie is HttpOnly, Secure and SameSite=Lax; a change she makes through the session without
  its CSRF token is refused (403), with it allowed where the policy allows it and refused where it does not; the
  session outlives its ID token (refreshed with the refresh token); logging out ends it, and the same cookie sent
  again is refused; every step is in the audit trail under her name. Bob's group gives him reading only.
- Dex's tokens as bearer tokens: alice's ID and access tokens authenticate her to the API; a token Dex issued to
  another client (another audience) is refused.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import httpx

from tests.conftest import GitRepo, cluster_entry, wait_until
from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_FLAGS
from tests.e2e.test_faults import Agent
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port
from tests.oidcservers import CLIENT_ID, CLIENT_SECRET, OTHER_CLIENT, USERS, Dex

ADMIN = "sso-admin-token-6e0a"
POLICY = """
p, role:deployer, apps, sync, team-a-*/dev, allow
g, team-a, role:deployer
g, readers, role:readonly
"""  # and role:readonly for everyone signed in (rbac.defaultRole)
ID_TOKEN_SECONDS = 6


def _start(git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path,
           dex: Dex, port: int) -> Agent:  # fmt: skip
    (a,) = clusters(1)
    for team in ("a", "b"):
        name = f"team-{team}-{namespace}"
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}}
        git_repo.write_objects(f"team-{team}/cm.yaml", {**cm, "data": {"team": team}})
    git_repo.commit()
    server = {
        "listen": f"127.0.0.1:{port}",
        "token": {"env": "SSO_ADMIN"},
        "oidc": {"issuer": dex.issuer, "clientID": CLIENT_ID, "clientSecret": {"env": "SSO_CLIENT_SECRET"},
                 "scopes": ["openid", "profile", "email", "groups", "offline_access"]},
    }  # fmt: skip
    config = make_config(
        git_repo,
        [cluster_entry(a, "dev", [])],
        apps=[{"name": "team-a-web", "path": "team-a"}, {"name": "team-b-web", "path": "team-b"}],
        server=server,
        rbac={"policy": POLICY, "defaultRole": "role:readonly"},
    )
    agent = Agent(config, tmp_path / "agent.log", env={"SSO_ADMIN": ADMIN, "SSO_CLIENT_SECRET": CLIENT_SECRET})

    def up() -> bool:
        try:
            return request(f"http://127.0.0.1:{port}/api/v1/status", token=ADMIN)[0] == 200
        except OSError:
            return False

    wait_until(up, timeout=60)
    return agent


def _log_in(page: Any, base: str, email: str, issuer: str) -> None:
    """Through the dashboard's single sign-on link and Dex's login page (at ``issuer``)."""
    page.goto(f"{base}/")
    page.wait_for_selector("#sso-login", state="visible")
    page.click("#sso-login")
    page.wait_for_selector("input[name=login]")  # Dex's own page
    assert page.url.startswith(f"{issuer}/auth/local/login"), page.url
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", USERS[email][0])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.wait_for_selector("#user", state="visible")


def _fetch(page: Any, path: str, method: str = "GET", csrf: str | None = None, body: Any = None) -> list[Any]:
    """``[status, JSON body]`` of a request the page makes with its cookie (and ``csrf`` in X-CSRF-Token)."""
    return list(page.evaluate(
        """async ([path, method, csrf, body]) => {
             const headers = {"Content-Type": "application/json", ...(csrf ? {"X-CSRF-Token": csrf} : {})};
             const r = await fetch(path, {method, headers, body: body === null ? undefined : JSON.stringify(body)});
             return [r.status, await r.json().catch(() => null)];
           }""",
        [path, method, csrf, body],
    ))  # fmt: skip


def test_the_dashboard_signs_in_through_dex_its_groups_are_roles_and_logout_ends_the_session(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Dex(tmp_path, [f"{base}/auth/callback"], id_token_seconds=ID_TOKEN_SECONDS) as dex:
        agent = _start(git_repo, clusters, make_config, namespace, tmp_path, dex, port)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                page = context.new_page()
                _log_in(page, base, "alice@example.com", dex.issuer)
                wait_until(lambda: "alice@example.com (team-a)" in page.inner_text("#user"))
                assert page.is_visible("#logout")
                (cookie,) = [c for c in context.cookies() if c["name"] == "gitops_agent_session"]
                assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Lax")
                assert not [c for c in context.cookies() if c["name"] == "gitops_agent_login"]  # spent

                code, me = _fetch(page, "/api/v1/me")
                assert code == 200
                assert (me["subject"], me["groups"], me["token"]) == ("alice@example.com", ["team-a"], "session")
                assert me["may"]["apps"] == ["get", "sync"]
                assert me["csrfToken"]
                csrf = me["csrfToken"]
                # CSRF: the cookie alone changes nothing; with the token, what the policy allows
                sync_a = "/api/v1/apps/team-a-web/sync"
                assert _fetch(page, sync_a, "POST", None, {"cluster": "dev"})[0] == 403
                assert _fetch(page, sync_a, "POST", "not-the-token", {"cluster": "dev"})[0] == 403
                assert _fetch(page, sync_a, "POST", csrf, {"cluster": "dev"})[0] == 202
                code, refused = _fetch(page, "/api/v1/apps/team-b-web/sync", "POST", csrf, {"cluster": "dev"})
                assert code == 403
                assert "may not sync apps team-b-web/dev" in refused["detail"]

                # the session outlives its ID token: refreshed with the refresh token, the groups read again
                time.sleep(ID_TOKEN_SECONDS + 1)
                code, me = _fetch(page, "/api/v1/me")
                assert code == 200, me
                assert me["subject"] == "alice@example.com"

                # logging out ends the agent's session, then Dex's own (RP-initiated logout: Dex asks to confirm)
                page.click("#logout")
                page.wait_for_url(f"{dex.issuer}/logout?client_id={CLIENT_ID}")
                page.click("button[type=submit]")
                page.wait_for_selector("text=You have been successfully logged out.")
                page.goto(f"{base}/")
                page.wait_for_selector("#sso-login", state="visible")
                assert _fetch(page, "/api/v1/me")[0] == 401
                page.click("#sso-login")  # Dex asks for the password again: its session ended too
                page.wait_for_selector("input[name=login]")
                replayed = httpx.get(f"{base}/api/v1/me", cookies={cookie["name"]: cookie["value"]}, timeout=10)
                assert replayed.status_code == 401  # the session is gone on the agent, not only in this browser

                # bob: group readers, role:readonly
                bob = browser.new_context().new_page()
                _log_in(bob, base, "bob@example.com", dex.issuer)
                code, me = _fetch(bob, "/api/v1/me")
                assert me["groups"] == ["readers"]
                assert me["may"]["apps"] == ["get"]
                assert _fetch(bob, sync_a, "POST", me["csrfToken"], {"cluster": "dev"})[0] == 403
                bob.screenshot(path=str(_artifacts() / "sso-dashboard.png"))
                browser.close()

            trail = json.loads(request(f"{base}/api/v1/audit?limit=50", token=ADMIN)[1])["audit"]
            seen = [(e["subject"], e["method"], e["path"], e["result"]) for e in reversed(trail)]
            assert seen == [
                ("alice@example.com", "GET", "/auth/callback", "allowed"),
                ("alice@example.com", "POST", sync_a, "denied"),
                ("alice@example.com", "POST", sync_a, "denied"),
                ("alice@example.com", "POST", sync_a, "allowed"),
                ("alice@example.com", "POST", "/api/v1/apps/team-b-web/sync", "denied"),
                ("alice@example.com", "POST", "/auth/logout", "allowed"),
                ("bob@example.com", "GET", "/auth/callback", "allowed"),
                ("bob@example.com", "POST", sync_a, "denied"),
            ], seen
            assert CLIENT_SECRET not in agent.log.read_text()
        finally:
            assert agent.stop() == 0, agent.log.read_text()[-2000:]


def test_dexs_tokens_authenticate_to_the_api_and_another_clients_do_not(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Dex(tmp_path, [f"{base}/auth/callback"]) as dex:
        agent = _start(git_repo, clusters, make_config, namespace, tmp_path, dex, port)
        try:
            tokens = dex.tokens("alice@example.com")
            for kind in ("id_token", "access_token"):
                code, text = request(f"{base}/api/v1/me", token=tokens[kind])
                assert code == 200, text
                assert json.loads(text)["subject"] == "alice@example.com"
            sync = request(f"{base}/api/v1/apps/team-a-web/sync", method="POST", token=tokens["id_token"],
                           body=b'{"cluster": "dev"}', headers={"Content-Type": "application/json"})  # fmt: skip
            assert sync[0] == 202, sync
            other = dex.tokens("alice@example.com", client=OTHER_CLIENT, secret="other-secret")
            code, text = request(f"{base}/api/v1/me", token=other["id_token"])
            assert code == 401
            assert "aud" in text
        finally:
            assert agent.stop() == 0, agent.log.read_text()[-2000:]


def _artifacts() -> pathlib.Path:
    from tests.conftest import REPO

    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
