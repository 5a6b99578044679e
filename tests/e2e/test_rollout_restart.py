"""Rollout state survives the agent (issue 14), against three real clusters: a rollout interrupted by SIGTERM
after its first batch resumes at the second; a halted rollout stays halted across a restart; a rollback whose
target commit was force-pushed away halts with a clear message, and the next good commit still rolls out."""

from __future__ import annotations

import pathlib
import time
from typing import Any

import yaml

from tests.conftest import GitRepo, agent_writes, audit_offset, cluster_entry, wait_until
from tests.e2e.test_faults import Agent, cm
from tests.e2e.test_run_status import free_port
from tests.receivers import Receiver

ENV = {"ROLLOUT_HMAC": "rollout-hmac"}


def deployment(name: str, namespace: str, tag: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": f"example.com/app:{tag}"}]},
            },
        },
    }


def test_rollout_state_survives_restarts(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    a, b, c = clusters(3)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}

    def release(rev: str, tag: str = "ok", bulk: int = 400) -> str:
        git_repo.write_objects("app/app.yaml", ns, cm("app", namespace, rev=rev), deployment("web", namespace, tag))
        git_repo.write_objects("bulk/bulk.yaml", *(cm(f"bulk-{i:03d}", namespace, rev=rev) for i in range(bulk)))
        return git_repo.commit(f"rev {rev} ({tag})")

    rev1 = release("1")
    port = free_port()
    entries = [
        cluster_entry(a, "a", ["app"], namespace),
        cluster_entry(b, "b", ["app", "bulk"], namespace),  # b's step writes 400 more objects: it takes a while
        cluster_entry(c, "c", ["app"], namespace),
    ]

    receiver = Receiver("webhook", secret="rollout-hmac")

    def config_with(cache: str) -> pathlib.Path:
        return make_config(
            git_repo,
            entries,
            source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / cache), "interval": "1s"},
            sync={"interval": "1h", "timeout": "8s", "concurrency": 2},
            rollout={"order": ["a", "b", "c"], "maxUnavailableClusters": 1},
            server={"listen": f"127.0.0.1:{port}"},
            notifications=[
                {
                    "name": "rollouts",
                    "type": "webhook",
                    "url": receiver.url,
                    "secret": {"env": "ROLLOUT_HMAC"},
                    "events": ["RolloutHalted", "RolledBack", "RolloutCompleted"],
                }
            ],
        )

    config = config_with("cache")
    agent = Agent(config, tmp_path / "agent-1.log", env=ENV)

    def rollout(of: Agent) -> Any:
        return of.status()["rollout"]

    try:
        agent.wait_ready()
        wait_until(lambda: (r := rollout(agent))["revision"] == rev1 and r["state"] == "Complete", timeout=120)

        # 1. SIGTERM after the first batch: the restarted agent goes on at the second.
        rev2 = release("2")

        def first_batch_done() -> bool:
            r = rollout(agent)
            done = {s["cluster"] for s in r["steps"] if s["revision"] == rev2 and s["result"] == "Healthy"}
            return r["revision"] == rev2 and done == {"a"}

        wait_until(first_batch_done, timeout=60, interval=0.05)
        assert agent.stop() == 0
        restarted_at = audit_offset(a)
        agent = Agent(config, tmp_path / "agent-2.log", env=ENV)
        agent.wait_ready()
        wait_until(lambda: (r := rollout(agent))["revision"] == rev2 and r["state"] == "Complete", timeout=120)
        redone = [s["cluster"] for s in rollout(agent)["steps"] if s["revision"] == rev2]
        assert redone == ["b", "c"], rollout(agent)
        assert [e for e in agent_writes(a, restarted_at) if f"/namespaces/{namespace}/" in e["requestURI"]] == []

        # 2. A revision that never becomes Healthy halts at a and rolls it back; a restart keeps it halted.
        rev3 = release("3", tag="broken")
        wait_until(lambda: (r := rollout(agent))["revision"] == rev3 and r["state"] == "Halted", timeout=120)
        assert agent.cluster("a")["rollout"]["failed"]["revision"] == rev3
        told = [(e["reason"], e["cluster"], e["revision"]) for e in reversed(agent.status()["events"])]
        rollout_events = [t for t in told if t[0].startswith("Roll")]
        assert rollout_events == [
            ("RolloutCompleted", "", rev2),
            ("RolloutHalted", "a", rev3),
            ("RolledBack", "a", rev2),
        ], told

        def delivered() -> list[tuple[str, str, str]]:
            return [
                (
                    r["body"]["type"].removeprefix("io.gitops-agent."),
                    r["body"]["data"]["cluster"],
                    r["body"]["data"]["revision"],
                )
                for r in receiver.accepted
            ]

        # the same, at a webhook receiver, once each, in order (after rev1's and rev2's completions)
        wait_until(lambda: delivered()[-2:] == rollout_events[1:], timeout=20)
        assert delivered() == [("RolloutCompleted", "", rev1), *rollout_events], delivered()
        assert receiver.problems == []
        assert agent.stop() == 0
        agent = Agent(config, tmp_path / "agent-3.log", env=ENV)
        agent.wait_ready()
        time.sleep(4)  # several fetches of rev3 later
        r = rollout(agent)
        assert (r["revision"], r["state"]) == (rev3, "Halted"), r
        assert agent.cluster("a")["rollout"] == {
            "running": rev2,
            "lastHealthy": rev2,
            "failed": agent.cluster("a")["rollout"]["failed"],
        }
        assert agent.cluster("b")["rollout"]["running"] == rev2
        assert agent.stop() == 0

        # 3. History rewritten (force push) and a fresh clone: rev2, a's rollback target, is gone.
        git_repo.git("checkout", "-q", "--orphan", "rewritten")
        git_repo.git("branch", "-D", "main")
        git_repo.git("symbolic-ref", "HEAD", "refs/heads/main")  # main starts again from nothing
        rev4 = release("4", tag="broken")
        fresh = config_with("cache-fresh")
        doc = yaml.safe_load(fresh.read_text())
        doc["instance"] = yaml.safe_load(config.read_text())["instance"]  # the same agent, a new clone
        fresh.write_text(yaml.safe_dump(doc))
        agent = Agent(fresh, tmp_path / "agent-4.log", env=ENV)
        agent.wait_ready()
        wait_until(lambda: (r := rollout(agent))["revision"] == rev4 and r["state"] == "Halted", timeout=120)
        r = rollout(agent)
        assert f"rollback of cluster a to {rev2[:12]} failed" in r["message"], r
        assert "force-pushed away" in r["message"], r
        assert [s["result"] for s in r["steps"] if s["cluster"] == "a"][-1] == "RollbackFailed"
        rev5 = release("5")  # the loop is alive: a good commit rolls out everywhere
        wait_until(lambda: (r := rollout(agent))["revision"] == rev5 and r["state"] == "Complete", timeout=180)
        assert "Traceback" not in agent.log.read_text()
    finally:
        if agent.proc.poll() is None:
            agent.stop()
        receiver.close()
