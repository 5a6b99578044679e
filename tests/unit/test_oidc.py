"""Bearer JWTs from the OpenID provider (``server.oidc``), verified against the keys a loopback issuer serves
(tests/oidcservers.py's KeyServer: its discovery document and JWKS over real HTTP): a token with the wrong
audience, the wrong issuer, expired, not yet valid, signed by an unknown key, with ``alg: none`` or HMAC-signed
with the client secret is refused with 401 saying why; a token signed after a key rotation is accepted (the keys
read again once); unknown key ids do not make the agent read the keys again and again; an unreachable provider
refuses the token, never answers 5xx. And the pieces of the dashboard's sessions: signed cookies, the login's
rate limit, no open redirect."""

from __future__ import annotations

import base64
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from agent import config
from agent.api import server, sessions, sso
from agent.runtime import fleet
from reconcilers import errors
from tests.oidcservers import CLIENT_ID, CLIENT_SECRET, KeyServer

POLICY = "p, role:deployer, apps, sync, team-a-*/dev, allow\ng, team-a, role:deployer\n"


def _agent(tmp: pathlib.Path, issuer: str, **oidc: Any) -> fleet.Fleet:
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump({
        "source": {"url": str(tmp / "none"), "cacheDir": str(tmp / "cache")},
        "clusters": [{"name": "dev", "kubeconfig": str(tmp / "nope")}],
        "apps": [{"name": "team-a-web", "path": "a"}],
        "server": {"oidc": {"issuer": issuer, "clientID": CLIENT_ID, "clientSecret": {"env": "OIDC_TEST_SECRET"},
                            **oidc}},
        "rbac": {"policy": POLICY},
        "sync": {"interval": "24h"},
    }))  # fmt: skip
    agent = fleet.Fleet(config.load_config(path))
    agent.scheduler.start(paused=True)
    return agent


@pytest.fixture
def issuer() -> Iterator[KeyServer]:
    with KeyServer() as found:
        yield found


@pytest.fixture
def client(issuer: KeyServer, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("OIDC_TEST_SECRET", CLIENT_SECRET)
    with TestClient(server.create_app(_agent(tmp_path, issuer.issuer)), base_url="https://testserver") as c:
        yield c


def _me(client: TestClient, token: str) -> tuple[int, dict[str, Any]]:
    answer = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    return answer.status_code, answer.json()


def test_a_providers_token_authenticates_as_its_user_with_its_groups(client: TestClient, issuer: KeyServer) -> None:
    code, me = _me(client, issuer.sign({"email": "alice@example.com", "groups": ["team-a"]}))
    assert code == 200
    assert (me["subject"], me["groups"], me["token"]) == ("alice@example.com", ["team-a"], "oidc")
    assert me["may"]["apps"] == ["sync"]
    assert me["csrfToken"] is None
    # no email claim: the subject is sub
    assert _me(client, issuer.sign({"sub": "svc-7"}))[1]["subject"] == "svc-7"


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "another-app"}, "aud"),
        ({"iss": "https://evil.example.com"}, "iss"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"exp": None}, "'exp'"),
    ],
    ids=["wrong-audience", "wrong-issuer", "expired", "not-yet-valid", "no-expiry"],
)
def test_a_token_with_wrong_claims_is_refused(client: TestClient, issuer: KeyServer, claims: dict[str, Any],
                                              why: str) -> None:  # fmt: skip
    token = issuer.sign(claims)
    code, answer = _me(client, token)
    assert code == 401, answer
    assert why in answer["detail"]
    assert token not in answer["detail"]


def test_a_token_signed_by_an_unknown_key_none_or_the_client_secret_is_refused(
    client: TestClient, issuer: KeyServer
) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "key-1"})  # a known id, another key
    code, answer = _me(client, issuer.sign({}, key=stranger))
    assert code == 401
    assert "signature" in answer["detail"]
    code, answer = _me(client, issuer.sign({}, key=RSAKey.generate_key(2048, parameters={"kid": "made-up"})))
    assert code == 401
    assert "unknown key 'made-up'" in answer["detail"]
    # alg none: a token anyone can write
    now = int(time.time())
    claims = {"iss": issuer.issuer, "sub": "u", "aud": CLIENT_ID, "iat": now, "exp": now + 300}
    unsigned = ".".join(base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode()
                        for p in ({"alg": "none", "typ": "JWT"}, claims)) + "."  # fmt: skip
    code, answer = _me(client, unsigned)
    assert code == 401
    assert "'none' is not accepted" in answer["detail"]
    # HS256 with the client secret (a secret others know) as the key
    hmac_token = jwt.encode({"alg": "HS256", "kid": "key-1"}, claims, OctKey.import_key(CLIENT_SECRET.encode()))
    code, answer = _me(client, hmac_token)
    assert code == 401
    assert "'HS256' is not accepted" in answer["detail"]


def test_a_token_signed_after_a_key_rotation_is_accepted_and_unknown_ids_do_not_hammer_the_provider(
    client: TestClient, issuer: KeyServer
) -> None:
    assert _me(client, issuer.sign({}))[0] == 200
    assert issuer.jwks_reads == 1
    issuer.rotate()
    issuer.retire()  # the old key is gone from the set; the new one signs
    code, me = _me(client, issuer.sign({"email": "after@example.com"}))
    assert code == 200
    assert me["subject"] == "after@example.com"
    assert issuer.jwks_reads == 2  # read again once, for the new key id
    for n in range(5):
        made_up = RSAKey.generate_key(2048, parameters={"kid": f"made-up-{n}"})
        assert _me(client, issuer.sign({}, key=made_up))[0] == 401
    assert issuer.jwks_reads == 2  # at most one read per 10 s for ids it does not know


def test_an_unreachable_provider_refuses_the_token_and_never_answers_5xx(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OIDC_TEST_SECRET", CLIENT_SECRET)
    with KeyServer() as gone:
        token = gone.sign({})
    with TestClient(server.create_app(_agent(tmp_path, gone.issuer, requestTimeout=2)),
                    base_url="https://testserver") as c:  # fmt: skip
        code, answer = _me(c, token)
        assert code == 401
        assert "openid-configuration" in answer["detail"]
        login = c.get("/auth/login", follow_redirects=False)
        assert login.status_code == 502
        assert "cannot be reached" in login.json()["detail"]


def test_the_provider_must_name_the_configured_issuer(
    issuer: KeyServer, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OIDC_TEST_SECRET", CLIENT_SECRET)
    with TestClient(server.create_app(_agent(tmp_path, issuer.issuer.replace("127.0.0.1", "localhost"))),
                    base_url="https://testserver") as c:  # fmt: skip
        code, answer = _me(c, issuer.sign({}))
        assert code == 401
        assert "names issuer" in answer["detail"]


def test_the_config_refuses_what_single_sign_on_cannot_work_with(tmp_path: pathlib.Path) -> None:
    def load(oidc: dict[str, Any]) -> None:
        path = tmp_path / "agent.yaml"
        path.write_text(yaml.safe_dump({"source": {"url": "/x"}, "clusters": [{"name": "a", "kubeconfig": "/k"}],
                                        "server": {"oidc": oidc}, "rbac": {"policy": POLICY}}))  # fmt: skip
        config.load_config(path)

    load({"issuer": "https://dex.example.com/dex/", "clientID": "agent"})  # rbac with single sign-on alone: fine
    with pytest.raises(errors.ConfigError, match="over https"):
        load({"issuer": "http://dex.example.com", "clientID": "agent"})
    with pytest.raises(errors.ConfigError, match="must include openid"):
        load({"issuer": "https://dex.example.com", "clientID": "agent", "scopes": ["email"]})
    with pytest.raises(errors.ConfigError, match="clientID"):
        load({"issuer": "https://dex.example.com"})


def test_session_cookies_are_signed_and_end_when_told() -> None:
    store = sessions.Sessions()
    who = sso.access.Identity("alice@example.com", ("team-a",), "session")
    cookie = store.create(who, time.time() + 60, 3600, "")
    found = store.find(cookie)
    assert found is not None
    assert found.who == who
    sid = found.id
    assert store.find(sid) is None  # the bare id, unsigned
    assert store.find(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None  # a forged signature
    assert not sessions.csrf_ok(found, None)
    assert not sessions.csrf_ok(found, "x")
    assert sessions.csrf_ok(found, found.csrf)
    store.end(sid)
    assert store.find(cookie) is None  # logged out: the cookie is dead even if copied
    ended = sessions.Sessions(clock=lambda: 1000.0)
    old = ended.create(who, 2000.0, 10, "")
    ended._clock = lambda: 1011.0  # past sessionTTL
    assert ended.find(old) is None


def test_logins_are_rate_limited_per_address() -> None:
    now = [0.0]
    limiter = sessions.LoginLimiter(rate=0.2, burst=3, clock=lambda: now[0])
    assert [limiter.take("10.0.0.1") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("10.0.0.1") == pytest.approx(5.0)
    assert limiter.take("10.0.0.2") == 0  # another address has its own bucket
    now[0] += 5.0
    assert limiter.take("10.0.0.1") == 0


def test_the_login_goes_back_only_to_this_server() -> None:
    assert sso._local("/?cluster=dev") == "/?cluster=dev"
    for bad in ("https://evil.example.com/", "//evil.example.com/", "/\\evil.example.com", "javascript:alert(1)", ""):
        assert sso._local(bad) == "/"
