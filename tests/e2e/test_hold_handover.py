"""A hold outlives the replica that wrote it: an app suspended through one replica's API stays suspended when that
replica stops and another takes the cluster's Lease over (the hold is kept in the target cluster, read at each
sync), while the cluster's other app follows git there; resuming through the new holder syncs it."""

from __future__ import annotations

import json
import pathlib
import time
import uuid
from typing import Any

from agent.runtime import leases as leases_
from tests.conftest import GitRepo, agent_writes, audit_offset, cluster_entry, live_object, wait_until
from tests.e2e.test_faults import Agent, cm
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port
from tests.e2e.test_sync_corpora import ensure_namespace

JSON = {"Content-Type": "application/json"}


def _data(tc: Any, name: str, namespace: str) -> Any:
    return (live_object(tc, "v1", "ConfigMap", name, namespace) or {}).get("data")


def _cell(agent: Agent, app: str) -> dict[str, Any]:
    doc = json.loads(request(f"{agent.base}/api/v1/apps/{app}?objects=false")[1])
    return dict((doc.get("clusters") or [{}])[0])


def test_a_suspended_app_stays_suspended_when_another_replica_takes_the_cluster_over(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    home, target = clusters(2)
    ensure_namespace(home, namespace)
    ensure_namespace(target, namespace)
    git_repo.write_objects("held/cm.yaml", cm("held", namespace, v="1"))
    git_repo.write_objects("free/cm.yaml", cm("free", namespace, v="1"))
    git_repo.commit("v1")
    instance = f"handover-{uuid.uuid4().hex[:8]}"
    agents: dict[str, Agent] = {}
    try:
        for r in ("r1", "r2"):
            config = make_config(
                git_repo,
                [{**cluster_entry(target, "t", [], namespace), "labels": {}}],
                instance=instance,
                source={
                    "url": str(git_repo.path),
                    "ref": "main",
                    "cacheDir": str(tmp_path / f"c-{r}"),
                    "interval": "1s",
                },
                sync={"interval": "2s"},
                apps=[{"name": "held", "path": "held"}, {"name": "free", "path": "free"}],
                server={"listen": f"127.0.0.1:{free_port()}"},
                sharding={
                    "homeCluster": {"kubeconfig": str(home.kubeconfig)},
                    "namespace": namespace,
                    "identity": r,
                    "leaseDuration": "4s",
                    "renewDeadline": "3s",
                    "retryPeriod": "500ms",
                },
            )
            agents[r] = Agent(config, tmp_path / f"{r}.log")
        for a in agents.values():
            a.wait_ready()

        def holder() -> str | None:
            """The replica holding t once both see both (no hand-over pending) and it synced t."""
            views = {r: a.status() for r, a in agents.items()}
            if any(v["sharding"]["members"] != sorted(agents) for v in views.values()):
                return None
            owners = [r for r, v in views.items() if "t" in v["sharding"]["owned"]]
            if owners != [leases_.owner("t", sorted(agents))]:
                return None
            return owners[0] if views[owners[0]]["clusters"][0]["syncStatus"] == "Synced" else None

        old = wait_until(holder, timeout=60)
        new = next(r for r in agents if r != old)
        body = json.dumps({"cluster": "t", "reason": "change freeze", "by": "alice"}).encode()
        code, answer = request(f"{agents[old].base}/api/v1/apps/held/suspend", method="POST", body=body, headers=JSON)
        assert code == 200, answer
        assert agents[old].stop() == 0  # SIGTERM: its Leases are released at once
        wait_until(lambda: "t" in agents[new].status()["sharding"]["owned"], timeout=30)

        since = audit_offset(target)
        git_repo.write_objects("held/cm.yaml", cm("held", namespace, v="2"))
        git_repo.write_objects("free/cm.yaml", cm("free", namespace, v="2"))
        git_repo.commit("v2")
        wait_until(lambda: _data(target, "free", namespace) == {"v": "2"}, timeout=60)  # the new holder syncs
        wait_until(lambda: "change freeze" in (_cell(agents[new], "held").get("held") or ""), timeout=30)
        time.sleep(3)  # a few more syncs of the new holder
        assert _data(target, "held", namespace) == {"v": "1"}
        written = [e for e in agent_writes(target, since) if (e.get("objectRef") or {}).get("name") == "held"]
        assert written == []
        cell = _cell(agents[new], "held")
        assert cell["syncStatus"] == "OutOfSync"
        assert "alice" in cell["held"]

        body = json.dumps({"cluster": "t"}).encode()
        code, answer = request(f"{agents[new].base}/api/v1/apps/held/resume", method="POST", body=body, headers=JSON)
        assert code == 200, answer
        wait_until(lambda: _data(target, "held", namespace) == {"v": "2"}, timeout=60)
    finally:
        for a in agents.values():
            if a.proc.poll() is None:
                a.stop()
