"""A source that requires SSH-signed commits, in the running agent against a real test cluster: a signed commit
is deployed; an unsigned one, and one signed by another key, never are (the cluster keeps the signed revision, the
status says why, an event is sent); the next signed commit is deployed."""

from __future__ import annotations

import pathlib
from typing import Any

from tests.conftest import GitRepo, cluster_entry, live_object, wait_until
from tests.e2e.test_faults import Agent, cm
from tests.e2e.test_run_status import free_port
from tests.unit.test_verify import Signer


def test_only_signed_commits_reach_the_cluster(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    signer = Signer(git_repo, tmp_path, "ssh")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}

    def commit(version: str, key: int | None) -> str:
        git_repo.write_objects("app/app.yaml", ns, cm("settings", namespace, version=version))
        return signer.commit(version, key)

    first = commit("1", key=0)
    config = make_config(
        git_repo,
        [cluster_entry(tc, "a", ["app"], namespace)],
        source={
            "url": str(git_repo.path),
            "ref": "main",
            "cacheDir": str(tmp_path / "cache"),
            "interval": "1s",
            "verify": {"type": "ssh", "keys": [{"file": str(signer.public())}]},
        },
        server={"listen": f"127.0.0.1:{free_port()}"},
    )
    agent = Agent(config, tmp_path / "agent.log")

    def version() -> Any:
        return (live_object(tc, "v1", "ConfigMap", "settings", namespace) or {}).get("data", {}).get("version")

    try:
        agent.wait_ready()
        wait_until(lambda: version() == "1", timeout=60)
        for key, reason in [(None, "the commit is not signed"), (1, "not signed by a key of verify.keys")]:
            sha = commit(f"unsigned-{key}", key)
            source = wait_until(lambda s=sha: (f := agent.status()["source"])["stale"] and s[:12] in f["error"] and f)
            assert source["error"].startswith(f"Unverified ({sha[:12]}: {reason}"), source
            assert source["revision"]["sha"] == first
            assert version() == "1"
            assert agent.cluster("a")["lastSync"]["revision"]["sha"] == first
        events = agent.status()["events"]
        assert any("Unverified" in e["message"] for e in events), events
        signed = commit("2", key=0)
        wait_until(lambda: version() == "2", timeout=30)
        assert agent.status()["source"]["revision"]["sha"] == signed
    finally:
        assert agent.stop() == 0, agent.log.read_text()[-3000:]
