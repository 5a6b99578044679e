"""Webhook verification and the body cap, without a cluster (pure functions and the ASGI app in-process)."""

from __future__ import annotations

import hashlib
import hmac
import pathlib
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from agent import config
from agent.api import server, webhooks
from agent.runtime import fleet

SECRET = b"s3cret"


def sig(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("provider", "headers", "body", "status", "trigger"),
    [
        (
            "github",
            {"x-github-event": "push", "x-hub-signature-256": sig(b'{"ref":"refs/heads/main"}')},
            b'{"ref":"refs/heads/main"}',
            202,
            True,
        ),
        ("github", {"x-github-event": "ping", "x-hub-signature-256": sig(b"{}")}, b"{}", 200, False),
        (
            "github",
            {"x-github-event": "push", "x-hub-signature-256": sig(b'{"ref":"refs/heads/dev"}')},
            b'{"ref":"refs/heads/dev"}',
            200,
            False,
        ),
        ("github", {"x-github-event": "push", "x-hub-signature-256": sig(b"x", b"other")}, b"x", 401, False),
        ("github", {"x-github-event": "push"}, b"{}", 401, False),
        ("github", {"x-github-event": "push", "x-hub-signature-256": sig(b"not json")}, b"not json", 400, False),
        (
            "gitlab",
            {"x-gitlab-event": "Push Hook", "x-gitlab-token": "s3cret"},
            b'{"ref":"refs/heads/main"}',
            202,
            True,
        ),
        (
            "gitlab",
            {"x-gitlab-event": "Push Hook", "x-gitlab-token": "s3cre"},
            b'{"ref":"refs/heads/main"}',
            401,
            False,
        ),
        ("generic", {"x-signature-256": sig(b"")}, b"", 202, True),
        ("generic", {"x-signature-256": sig(b'{"ref":"refs/tags/v1"}')}, b'{"ref":"refs/tags/v1"}', 200, False),
    ],
)
def test_judge(provider: str, headers: dict[str, str], body: bytes, status: int, trigger: bool) -> None:
    verdict = webhooks.judge(provider, SECRET, headers, body, {"default": ("/srv/fleet.git", "main")})
    assert (verdict.status, verdict.trigger) == (status, trigger), verdict.reason


def test_tag_refs_are_tracked() -> None:
    assert webhooks.tracks("v1.2", "refs/tags/v1.2")
    assert not webhooks.tracks("main", "refs/heads/mainline")


@pytest.fixture
def client(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HOOK", SECRET.decode())
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "source": {"url": str(tmp_path / "none"), "cacheDir": str(tmp_path / "cache")},
                "clusters": [{"name": "a", "kubeconfig": str(tmp_path / "kc"), "paths": ["x"]}],
                "server": {"maxBodyBytes": 1024, "webhooks": {"generic": {"env": "HOOK"}}},
            }
        )
    )
    agent = fleet.Fleet(config.load_config(path))
    fetches: list[bool] = []
    monkeypatch.setattr(agent, "fetch_soon", lambda names=None: fetches.append(True))
    return TestClient(server.create_app(agent)), fetches


def test_a_chunked_body_over_the_cap_is_refused_while_reading(client: Any) -> None:
    http, fetches = client

    def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 200  # no Content-Length: the cap is enforced while streaming

    response = http.post("/api/v1/webhooks/generic", content=chunks(), headers={"X-Signature-256": sig(b"")})
    assert response.status_code == 413
    assert fetches == []
    ok = http.post("/api/v1/webhooks/generic", content=b"", headers={"X-Signature-256": sig(b"")})
    assert ok.status_code == 202
    assert fetches == [True]


def test_a_missing_secret_fails_at_startup(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "source": {"url": "/r"},
                "clusters": [{"name": "a", "paths": ["x"]}],
                "server": {"webhooks": {"github": {"env": "SURELY_UNSET_WEBHOOK_SECRET"}}},
            }
        )
    )
    with pytest.raises(Exception, match=r"server\.webhooks\.github: environment variable SURELY_UNSET_WEBHOOK_SECRET"):
        server.create_app(fleet.Fleet(config.load_config(path)))


def test_pull_request_events_list_pull_requests_again_and_fetch_their_repository() -> None:
    sources = {"fleet": ("https://github.com/acme/fleet.git", "main"), "other": ("https://github.com/acme/x", "main")}
    body = b'{"action": "synchronize", "number": 7, "repository": {"clone_url": "https://github.com/acme/fleet.git"}}'
    headers = {"x-github-event": "pull_request", "x-hub-signature-256": sig(body)}
    verdict = webhooks.judge("github", SECRET, headers, body, sources)
    assert (verdict.status, verdict.trigger, verdict.sources, verdict.pull_requests) == (202, True, ("fleet",), True)
    forged = {**headers, "x-hub-signature-256": sig(body, b"wrong")}
    assert webhooks.judge("github", SECRET, forged, body, sources).status == 401
    merge = b'{"object_kind": "merge_request", "project": {"web_url": "https://gitlab.com/acme/elsewhere"}}'
    gitlab = {"x-gitlab-event": "Merge Request Hook", "x-gitlab-token": SECRET.decode()}
    verdict = webhooks.judge("gitlab", SECRET, gitlab, merge, sources)
    assert (verdict.status, verdict.sources, verdict.pull_requests) == (202, (), True)  # the code lives elsewhere
    assert webhooks.judge("gitlab", SECRET, gitlab, b"[1]", sources).status == 400
