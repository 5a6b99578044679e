"""Pull request previews against a real test cluster, a real git repository and a loopback GitHub that checks
requests as GitHub does: the comment is created once and edited on each push, its table matches ``gitops-agent
diff --revision`` for the head, no secret value shows, the commit status ``gitops-agent/preview`` is set (failure
when an app would not render), and nothing is written to the cluster."""

from __future__ import annotations

import base64
import json
import pathlib
import re
from typing import Any

import pytest

from agent import cli
from tests.conftest import GitRepo, live_object, wait_until
from tests.e2e.test_faults import Agent
from tests.e2e.test_push_to_deploy import request, signed
from tests.e2e.test_run_status import free_port
from tests.e2e.test_sync_corpora import ensure_namespace
from tests.scmservers import ScmServer

SECRETS = ("main-password-4471", "branch-password-9932", "fixed-password-3310")


def _objects(namespace: str, version: str, password: str, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": namespace}}
    return [{**cm, "data": {"version": version}}, {**secret, "stringData": {"password": password}}, *extra]


def _keys(body: str) -> set[str]:
    """The objects the comment says would change (its ``- <verb> `key` (origin)`` lines)."""
    return set(re.findall(r"^- [a-z][^`\n]*`([^`]+)`", body, re.M))


def test_a_pull_request_gets_one_comment_edited_on_each_push_and_a_commit_status(
    git_repo: GitRepo,
    clusters: Any,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    git_repo.write_objects("site/app.yaml", *_objects(namespace, "main", SECRETS[0]))
    git_repo.commit("main")
    git_repo.git("checkout", "-q", "-b", "feat/flags")
    added = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags", "namespace": namespace}}
    git_repo.write_objects("site/app.yaml", *_objects(namespace, "flags-1", SECRETS[1], {**added, "data": {}}))
    first = git_repo.commit("flags 1")
    git_repo.git("checkout", "-q", "main")
    monkeypatch.setenv("GH_TOKEN", "gh-token-61")
    monkeypatch.setenv("HOOK_SECRET", "hook-secret-61")
    github = ScmServer("github", token="gh-token-61", repository="acme/fleet")
    github.open(7, "feat/flags", first)
    app_set = {
        "name": "review",
        "goTemplate": True,
        "generators": [
            {
                "pullRequest": {
                    "github": {"owner": "acme", "repo": "fleet", "api": github.url, "token": {"env": "GH_TOKEN"}},
                    "requeueAfterSeconds": 3600,
                    "preview": {"comment": True, "commitStatus": True, "link": "https://agent.example/apps"},
                }
            }
        ],
        # The pull requests' own environments go to clusters labelled preview=yes: none here.
        "template": {"name": "pr-{{.number}}", "path": "site", "ref": "{{.head_sha}}",
                     "clusters": {"matchLabels": {"preview": "yes"}}},
    }  # fmt: skip
    config = make_config(
        git_repo,
        [{"name": "c", "kubeconfig": str(tc.kubeconfig)}],
        apps=[{"name": "site", "path": "site", "namespace": namespace}],
        appSets=[app_set],
        sync={"prune": True, "interval": "1h"},
        server={"listen": f"127.0.0.1:{free_port()}", "webhooks": {"github": {"env": "HOOK_SECRET"}}},
    )
    agent = Agent(config, tmp_path / "agent.log")

    def statuses(sha: str) -> list[str]:
        return [s["state"] for s in github.statuses if s["sha"] == sha and s["context"] == "gitops-agent/preview"]

    def comment() -> str:
        found = github.comments.get(7, [])
        assert len(found) <= 1, found
        return str(found[0]["body"]) if found else ""

    def push(version: str, password: str, *extra: dict[str, Any], files: dict[str, str] | None = None) -> str:
        git_repo.git("checkout", "-q", "feat/flags")
        git_repo.write_objects("site/app.yaml", *_objects(namespace, version, password, *extra))
        for rel, text in (files or {}).items():
            git_repo.write(rel, text)
        sha = git_repo.commit(version)
        git_repo.git("checkout", "-q", "main")
        github.open(7, "feat/flags", sha)
        body = json.dumps({"action": "synchronize", "number": 7, "repository": {"clone_url": str(git_repo.path)}})
        headers = {"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": signed("hook-secret-61", body.encode())}
        code, text = request(f"{agent.base}/api/v1/webhooks/github", method="POST", body=body.encode(), headers=headers)
        assert code == 202, text
        return sha

    try:
        agent.wait_ready()
        wait_until(lambda: live_object(tc, "v1", "ConfigMap", "settings", namespace) is not None, timeout=60)
        wait_until(lambda: statuses(first)[-1:] == ["success"], timeout=60)
        assert statuses(first) == ["pending", "success"]
        body = comment()
        assert body.startswith("<!-- gitops-agent-preview app-set=review -->")
        assert f"#7 at `{first[:12]}`" in body
        assert "| site | c | 1 | 2 | 0 | 0 |  |" in body, body  # flags created; settings and db configured
        assert "+  version: flags-1" in body
        assert "***" in body  # the Secret's diff, masked
        for secret in SECRETS:
            assert secret not in body
            assert base64.b64encode(secret.encode()).decode() not in body
        assert github.statuses[-1]["target_url"] == "https://agent.example/apps"

        # The same objects `gitops-agent diff --revision <head>` names.
        capsys.readouterr()
        assert cli.main(["diff", "--config", str(config), "--revision", first, "--app", "site"]) == 1
        out = capsys.readouterr().out
        assert "3 object(s) would change" in out, out
        keys = _keys(body)
        assert len(keys) == 3, keys
        assert all(k in out for k in keys), (keys, out)

        # A push: the one comment is edited in place.
        second = push("flags-2", SECRETS[2])
        wait_until(lambda: statuses(second)[-1:] == ["success"], timeout=30)
        body = comment()
        assert f"#7 at `{second[:12]}`" in body
        assert "+  version: flags-2" in body
        assert "| site | c | 0 | 2 | 0 | 0 |  |" in body, body  # flags left the branch: never deployed, not shown
        assert "flags`" not in body
        assert all(secret not in body for secret in SECRETS)
        comment_writes = [(m, p) for m, p in github.writes if "/comments" in p]
        assert [m for m, _ in comment_writes] == ["POST", "PATCH"], comment_writes

        # A head that does not render: failure, with the error in the table.
        third = push("flags-3", SECRETS[2], files={"site/broken.yaml": "kind: [unclosed\n"})
        wait_until(lambda: statuses(third)[-1:] == ["failure"], timeout=30)
        body = comment()
        assert f"#7 at `{third[:12]}`" in body
        assert "broken.yaml" in body, body
        assert [m for m, p in github.writes if "/comments" in p] == ["POST", "PATCH", "PATCH"]

        # Nothing was written: the cluster still has main.
        live = live_object(tc, "v1", "ConfigMap", "settings", namespace)
        assert live is not None
        assert live["data"] == {"version": "main"}
        assert live_object(tc, "v1", "ConfigMap", "flags", namespace) is None
    finally:
        github.stop()
        assert agent.stop() == 0, agent.log.read_text()[-3000:]
