"""The delegate (manifests/delegate) rolled out by ``gitops-agent run`` across three real clusters, cluster by
cluster and health-gated: fresh install to Healthy; an upgrade 1.0.0 -> 1.1.0 one cluster at a time; a `broken`
tag halts at the first cluster and is rolled back there while the other two never see it; the fix then rolls out
everywhere. The delegate token, substituted from the agent's environment, appears in no log line and no response.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
from typing import Any

from tests.conftest import REPO, GitRepo, cluster_entry, dynamic_client, live_object, wait_until
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port

TOKEN = "delegate-token-do-not-leak-5e1f0c"
HOOK = "rollout-hook-secret"
IMAGE = "example.com/gitops/delegate"


class Fleet:
    """A working clone pushing to the bare repo the agent tracks, and the agent's HTTP address."""

    def __init__(self, work: GitRepo, base: str) -> None:
        self.work, self.base = work, base
        self.seen: list[str] = []  # every response body read, to scan for the token

    def get(self, path: str) -> Any:
        code, text = request(self.base + path)
        self.seen.append(text)
        assert code == 200, text
        return json.loads(text)

    def release(self, tag: str) -> str:
        manifest = self.work.path / "delegate" / "delegate.yaml"
        text = manifest.read_text()
        old = text.split(f"image: {IMAGE}:")[1].split("\n")[0]
        manifest.write_text(text.replace(f"image: {IMAGE}:{old}", f"image: {IMAGE}:{tag}"))
        sha = self.work.commit(f"delegate {tag}")
        self.work.git("push", "-q", "origin", "main")
        body = b'{"ref": "refs/heads/main"}'
        signature = "sha256=" + hmac.new(HOOK.encode(), body, hashlib.sha256).hexdigest()
        code, _ = request(
            f"{self.base}/api/v1/webhooks/generic", method="POST", body=body, headers={"X-Signature-256": signature}
        )
        assert code == 202
        return sha

    def rollout(self, sha: str, state: str) -> Any:
        def done() -> Any:
            status = self.get("/api/v1/status")
            r = status.get("rollout") or {}
            return status if r.get("revision") == sha and r.get("state") == state else None

        return wait_until(done, timeout=120, interval=0.2)


def image(tc: Any) -> str:
    deploy = live_object(tc, "apps/v1", "Deployment", "delegate", "gitops-delegate")
    return str(deploy["spec"]["template"]["spec"]["containers"][0]["image"])


def images_ever(tc: Any) -> set[str]:
    """Every image any ReplicaSet of the delegate ever ran (rollout history)."""
    rs = dynamic_client(tc).resources.get(api_version="apps/v1", kind="ReplicaSet")
    items = rs.get(namespace="gitops-delegate").to_dict()["items"]
    return {i["spec"]["template"]["spec"]["containers"][0]["image"] for i in items}


def test_delegate_install_upgrade_halt_rollback_and_fix(
    tmp_path: pathlib.Path, clusters: Any, make_config: Any
) -> None:
    c1, c2, c3 = clusters(3)
    bare = tmp_path / "fleet.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = GitRepo(tmp_path / "work")
    work.git("remote", "add", "origin", str(bare))
    shutil.copytree(REPO / "manifests" / "delegate", work.path / "delegate")
    work.commit("delegate 1.0.0")
    work.git("push", "-q", "origin", "main")
    port = free_port()
    entries = [
        {**cluster_entry(tc, name, ["delegate"]), "substitute": True}
        for tc, name in ((c1, "c1"), (c2, "c2"), (c3, "c3"))
    ]
    config = make_config(
        str(bare),
        entries,
        variables={"DELEGATE_TOKEN": {"env": "DELEGATE_TOKEN"}},
        rollout={"order": ["c1", "c2", "c3"], "maxUnavailableClusters": 1, "rollback": "auto"},
        sync={"timeout": "15s", "interval": "1h"},
        server={"listen": f"127.0.0.1:{port}", "webhooks": {"generic": {"env": "HOOK_SECRET"}}},
    )
    text = config.read_text().replace("interval: 60.0", "interval: 1h")  # the webhook, not polling, triggers
    config.write_text(text)
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
            env={**os.environ, "DELEGATE_TOKEN": TOKEN, "HOOK_SECRET": HOOK},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    fleet = Fleet(work, f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: _ready(fleet.base), timeout=60)
        # 1. fresh install to Healthy, everywhere
        v1 = work.git("rev-parse", "HEAD")
        status = fleet.rollout(v1, "Complete")
        assert [s["cluster"] for s in status["rollout"]["steps"]] == ["c1", "c2", "c3"]
        for tc in (c1, c2, c3):
            assert image(tc) == f"{IMAGE}:1.0.0"
            secret = live_object(tc, "v1", "Secret", "delegate-token", "gitops-delegate")
            assert base64.b64decode(secret["data"]["DELEGATE_TOKEN"]).decode() == TOKEN
        assert all(c["health"] == "Healthy" for c in status["clusters"])

        # 2. upgrade 1.0.0 -> 1.1.0, one cluster at a time, each Healthy before the next starts
        v2 = fleet.release("1.1.0")
        steps = fleet.rollout(v2, "Complete")["rollout"]["steps"]
        assert [(s["cluster"], s["result"]) for s in steps] == [("c1", "Healthy"), ("c2", "Healthy"), ("c3", "Healthy")]
        times = [
            (datetime.datetime.fromisoformat(s["started"]), datetime.datetime.fromisoformat(s["finished"]))
            for s in steps
        ]
        assert all(times[i][1] <= times[i + 1][0] for i in range(2)), times  # strictly one after the other
        assert [image(tc) for tc in (c1, c2, c3)] == [f"{IMAGE}:1.1.0"] * 3

        # 3. a broken tag halts at c1, is rolled back there; c2 and c3 never see it
        v3 = fleet.release("1.2.0-broken")
        status = fleet.rollout(v3, "Halted")
        steps = status["rollout"]["steps"]
        assert [(s["cluster"], s["result"]) for s in steps] == [("c1", "Progressing"), ("c1", "RolledBack")]
        assert "not Healthy within 15s" in steps[0]["message"]
        c1_status = next(c for c in status["clusters"] if c["name"] == "c1")
        assert c1_status["rollout"]["failed"]["revision"] == v3
        assert c1_status["rollout"]["running"] == v2
        assert "not Healthy within 15s" in c1_status["rollout"]["failed"]["reason"]
        wait_until(lambda: image(c1) == f"{IMAGE}:1.1.0")
        wait_until(
            lambda: (
                next(c for c in fleet.get("/api/v1/status")["clusters"] if c["name"] == "c1")["health"] == "Healthy"
            ),
            timeout=60,
        )
        for tc in (c2, c3):
            assert f"{IMAGE}:1.2.0-broken" not in images_ever(tc)
            assert image(tc) == f"{IMAGE}:1.1.0"

        # 4. the fix rolls out everywhere
        v4 = fleet.release("1.2.0")
        steps = fleet.rollout(v4, "Complete")["rollout"]["steps"]
        assert [(s["cluster"], s["result"]) for s in steps] == [("c1", "Healthy"), ("c2", "Healthy"), ("c3", "Healthy")]
        assert [image(tc) for tc in (c1, c2, c3)] == [f"{IMAGE}:1.2.0"] * 3
        for path in ("/api/v1/clusters/c1", "/metrics", "/openapi.json", "/"):
            _, body = request(fleet.base + path)
            fleet.seen.append(body)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    # 5. the token: in the clusters' Secrets, nowhere the agent printed or served
    printed = log.read_text(errors="replace")
    assert "rollout of" in printed  # the log was captured
    assert TOKEN not in printed
    assert base64.b64encode(TOKEN.encode()).decode() not in printed
    for body in fleet.seen:
        assert TOKEN not in body
        assert base64.b64encode(TOKEN.encode()).decode() not in body


def _ready(base: str) -> bool:
    try:
        return request(f"{base}/readyz")[0] == 200
    except OSError:
        return False
