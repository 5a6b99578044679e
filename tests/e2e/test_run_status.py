"""``gitops-agent run``: the scheduler syncs every cluster at start and the HTTP server reports it on
/healthz, /readyz and /api/v1/status; SIGTERM stops it cleanly (exit 0)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from tests.conftest import GitRepo, cluster_entry, live_object


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_for(predicate: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s")


def test_run_serves_status_of_every_cluster(git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str) -> None:
    a, b = clusters(2)
    git_repo.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": namespace},
            "data": {"mode": "fast"},
        },
    )
    sha = git_repo.commit("app")
    port = free_port()
    config = make_config(
        git_repo,
        [cluster_entry(a, "a", ["app"]), cluster_entry(b, "b", ["app"])],
        server={"listen": f"127.0.0.1:{port}"},
        sync={"interval": "10m"},
    )
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _status_or_none(f"{base}/healthz") == 200)
        wait_for(lambda: get(f"{base}/readyz")[0] == 200)

        def synced() -> Any:
            status = get(f"{base}/api/v1/status")[1]
            return status if all(c["lastSync"] for c in status["clusters"]) else None

        status = wait_for(synced)
        assert status["source"]["revision"] == {"sha": sha, "ref": "main"}
        for cluster in status["clusters"]:
            last = cluster["lastSync"]
            assert last["revision"]["sha"] == sha
            assert last["result"] == "Succeeded"
            assert last["counts"]["created"] + last["counts"]["unchanged"] == 2
            assert last["durationSeconds"] > 0
            assert last["started"]
            assert {o["name"] for o in last["objects"]} == {namespace, "settings"}
        assert live_object(a, "v1", "ConfigMap", "settings", namespace)["data"] == {"mode": "fast"}

        code, one = get(f"{base}/api/v1/clusters/b")
        assert code == 200
        assert one["name"] == "b"
        assert len(one["history"]) == 1
        assert {o["name"]: o["health"] for o in one["lastSync"]["objects"]} == {
            namespace: "Healthy",
            "settings": "Healthy",
        }
        assert one["healthCounts"] == {"Healthy": 2}

        # The fleet summary: the same clusters and fields, without the per-object results.
        summary = get(f"{base}/api/v1/status?objects=false")[1]
        assert [c["name"] for c in summary["clusters"]] == ["a", "b"]
        assert summary["source"] == status["source"]
        for full, short in zip(status["clusters"], summary["clusters"], strict=True):
            assert "objects" not in short["lastSync"]
            assert short["lastSync"]["counts"] == full["lastSync"]["counts"]
            assert (short["syncStatus"], short["health"], short["healthCounts"]) == (
                "Synced",
                "Healthy",
                {"Healthy": 2},
            )
        one_app = {"apps": 1, "syncStatus": {"Synced": 1}, "health": {"Healthy": 1}}
        assert summary["appCounts"] == {
            "apps": 1,
            "syncStatus": {"Synced": 2},
            "health": {"Healthy": 2},
            "clusters": {"a": one_app, "b": one_app},
        }, summary
        assert [a["name"] for a in summary["apps"]] == [a["name"] for a in status["apps"]]
        flat = get(f"{base}/api/v1/status?objects=false&apps=false")[1]
        assert "apps" not in flat
        assert flat["appCounts"] == summary["appCounts"]
        assert "objects" not in get(f"{base}/api/v1/clusters/b?objects=false")[1]["lastSync"]
        assert get(f"{base}/api/v1/clusters/nope")[0] == 404

        request = urllib.request.Request(f"{base}/api/v1/sync/a", method="POST")
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 202
            assert json.loads(resp.read()) == {"triggered": ["a"]}
        wait_for(lambda: len(get(f"{base}/api/v1/clusters/a")[1]["history"]) == 2)
        assert get(f"{base}/api/v1/clusters/a")[1]["lastSync"]["counts"]["unchanged"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output


def _status_or_none(url: str) -> int | None:
    try:
        return get(url)[0]
    except (urllib.error.URLError, ConnectionError):
        return None
