"""Push to deploy, end to end: ``gitops-agent run`` tracking a local bare repo with a long poll interval; a commit
pushed there plus a signed webhook reaches the cluster; forged, unsigned, oversize and wrong-ref deliveries are
refused (401/413) or ignored and trigger no fetch; the status API sits behind the bearer token, reports sync
status and health, and ``/metrics`` and ``gitops-agent status`` tell the same story."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.conftest import GitRepo, cluster_entry, live_object, wait_until
from tests.e2e.test_run_status import free_port

TOKEN = "api-token-3f9a1c"
GITHUB_SECRET = "gh-secret-77e0"
GITLAB_SECRET = "gl-secret-1b2c"
GENERIC_SECRET = "generic-secret-5d4e"


def request(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def signed(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def configmap_doc(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"v": name}}


@pytest.fixture
def pushed(tmp_path: pathlib.Path, clusters: Any, make_config: Any, namespace: str) -> Any:
    (tc,) = clusters(1)
    bare = tmp_path / "fleet.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = GitRepo(tmp_path / "work")
    work.git("remote", "add", "origin", str(bare))
    work.write_objects("app/ns.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    work.commit("namespace")
    work.git("push", "-q", "origin", "main")
    port = free_port()
    config = make_config(
        str(bare),
        [cluster_entry(tc, "a", ["app"])],
        sync={"interval": "1h"},
        server={
            "listen": f"127.0.0.1:{port}",
            "token": {"env": "T_TOKEN"},
            "webhooks": {"github": {"env": "T_GITHUB"}, "gitlab": {"env": "T_GITLAB"}, "generic": {"env": "T_GENERIC"}},
        },
    )
    cfg_text = config.read_text().replace("interval: 60.0", "interval: 1h")
    config.write_text(cfg_text)
    env = {
        **os.environ,
        "T_TOKEN": TOKEN,
        "T_GITHUB": GITHUB_SECRET,
        "T_GITLAB": GITLAB_SECRET,
        "T_GENERIC": GENERIC_SECRET,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _reachable(f"{base}/readyz"), timeout=60)
        wait_until(lambda: live_object(tc, "v1", "Namespace", namespace) is not None, timeout=60)
        yield tc, work, base, namespace
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
        for secret in (TOKEN, GITHUB_SECRET, GITLAB_SECRET, GENERIC_SECRET):
            assert secret not in output
        assert proc.returncode == 0, output


def _reachable(url: str) -> bool:
    try:
        return request(url)[0] == 200
    except OSError:
        return False


def fetches(base: str) -> int:
    code, text = request(f"{base}/metrics", token=TOKEN)
    assert code == 200
    found = re.search(r'^gitops_agent_git_fetches_total\{result="success"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def oversize_status(base: str, length: int) -> int:
    """POST headers announcing ``length`` bytes and read the answer before sending any of them (the server must
    refuse from Content-Length alone)."""
    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
    conn.putrequest("POST", "/api/v1/webhooks/github")
    conn.putheader("Content-Length", str(length))
    conn.putheader("X-GitHub-Event", "push")
    conn.putheader("X-Hub-Signature-256", "sha256=" + "0" * 64)
    conn.endheaders()
    status = conn.getresponse().status
    conn.close()
    return status


def push_payload(ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "after": "0" * 40, "repository": {"full_name": "org/fleet"}}).encode()


def test_signed_webhooks_deploy_and_bad_ones_trigger_nothing(pushed: Any) -> None:
    tc, work, base, ns = pushed
    hook = f"{base}/api/v1/webhooks"
    work.write_objects("app/one.yaml", configmap_doc("one", ns))
    work.commit("one")
    work.git("push", "-q", "origin", "main")
    before = fetches(base)
    body = push_payload()
    github = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    assert request(f"{hook}/github", method="POST", body=body, headers=github)[0] == 401  # unsigned
    forged = {**github, "X-Hub-Signature-256": signed("not-the-secret", body)}
    assert request(f"{hook}/github", method="POST", body=body, headers=forged)[0] == 401
    tampered = {**github, "X-Hub-Signature-256": signed(GITHUB_SECRET, body)}
    assert request(f"{hook}/github", method="POST", body=body + b" ", headers=tampered)[0] == 401
    assert oversize_status(base, 10 * 1024 * 1024 + 1) == 413
    assert (
        request(
            f"{hook}/gitlab",
            method="POST",
            body=body,
            headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "wrong"},
        )[0]
        == 401
    )
    other = push_payload("refs/heads/feature")
    code, text = request(
        f"{hook}/github",
        method="POST",
        body=other,
        headers={**github, "X-Hub-Signature-256": signed(GITHUB_SECRET, other)},
    )
    assert code == 200
    assert json.loads(text)["triggered"] is False
    import time

    time.sleep(1.0)
    assert fetches(base) == before  # nothing above fetched
    assert live_object(tc, "v1", "ConfigMap", "one", ns) is None

    code, text = request(
        f"{hook}/github",
        method="POST",
        body=body,
        headers={**github, "X-Hub-Signature-256": signed(GITHUB_SECRET, body)},
    )
    assert code == 202
    assert json.loads(text) == {
        "triggered": True,
        "reason": "push to refs/heads/main: fetching default",
        "sources": ["default"],
    }
    wait_until(lambda: live_object(tc, "v1", "ConfigMap", "one", ns) is not None)

    work.write_objects("app/two.yaml", configmap_doc("two", ns))
    work.commit("two")
    work.git("push", "-q", "origin", "main")
    code, _ = request(
        f"{hook}/gitlab",
        method="POST",
        body=body,
        headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": GITLAB_SECRET},
    )
    assert code == 202
    wait_until(lambda: live_object(tc, "v1", "ConfigMap", "two", ns) is not None)

    work.write_objects("app/three.yaml", configmap_doc("three", ns))
    work.commit("three")
    work.git("push", "-q", "origin", "main")
    code, _ = request(
        f"{hook}/generic", method="POST", body=body, headers={"X-Signature-256": signed(GENERIC_SECRET, body)}
    )
    assert code == 202
    wait_until(lambda: live_object(tc, "v1", "ConfigMap", "three", ns) is not None)
    assert request(f"{hook}/bitbucket", method="POST", body=body)[0] == 404


def test_status_api_token_metrics_and_status_command(pushed: Any) -> None:
    _, _, base, _ = pushed
    assert request(f"{base}/api/v1/status")[0] == 401
    assert request(f"{base}/api/v1/status", token="wrong")[0] == 401
    assert request(f"{base}/metrics")[0] == 401
    assert request(f"{base}/healthz")[0] == 200

    def synced() -> Any:
        status = json.loads(request(f"{base}/api/v1/status", token=TOKEN)[1])
        c = status["clusters"][0]
        return status if c["syncStatus"] == "Synced" and c["health"] == "Healthy" else None

    status = wait_until(synced)
    objects = status["clusters"][0]["lastSync"]["objects"]
    assert [(o["kind"], o["health"]) for o in objects] == [("Namespace", "Healthy")]
    _, text = request(f"{base}/metrics", token=TOKEN)
    assert 'gitops_agent_syncs_total{cluster="a",result="succeeded"}' in text
    assert 'gitops_agent_managed_objects{cluster="a"} 1.0' in text
    assert 'gitops_agent_cluster_reachable{cluster="a"} 1.0' in text
    sha = status["source"]["revision"]["sha"]
    assert f'gitops_agent_revision_info{{ref="main",sha="{sha}"}} 1.0' in text
    assert "gitops_agent_reconcile_duration_seconds_bucket" in text

    env = {**os.environ, "GITOPS_AGENT_TOKEN": TOKEN}
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "status", "--url", base],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Synced" in done.stdout
    assert "Healthy" in done.stdout
    apps_table = done.stdout.split("\nAPP ", 1)[1].splitlines()[1:]  # then a row per (app, cluster)
    assert apps_table
    assert all(row.split()[2:4] == ["Synced", "Healthy"] for row in apps_table), done.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "agent.cli", "status", "--url", base],
        env={k: v for k, v in os.environ.items() if k != "GITOPS_AGENT_TOKEN"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2
    assert "401" in refused.stderr
