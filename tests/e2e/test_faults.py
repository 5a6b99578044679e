"""Faults, injected against real clusters: the agent keeps running, other clusters keep syncing, the status says
what is wrong, and everything converges once the fault ends. Each test that breaks a cluster uses its own."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from reconcilers import inventory, resources
from tests.cluster.launcher import TestCluster
from tests.conftest import GitRepo, cluster_entry, dynamic_client, live_object, runner_for, wait_until
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port


def cm(name: str, ns: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": data or {"v": "1"},
    }


class Agent:
    """``gitops-agent run`` in a subprocess, its output in a file."""

    def __init__(self, config: pathlib.Path, log: pathlib.Path, env: dict[str, str] | None = None) -> None:
        self.port = yaml.safe_load(config.read_text())["server"]["listen"].rsplit(":", 1)[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    def status(self) -> Any:
        return json.loads(request(f"{self.base}/api/v1/status")[1])

    def cluster(self, name: str) -> Any:
        return next(c for c in self.status()["clusters"] if c["name"] == name)

    def wait_ready(self) -> None:
        def ready() -> bool:
            try:
                return request(f"{self.base}/readyz")[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=60)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@pytest.fixture
def own_cluster(tmp_path: pathlib.Path) -> Iterator[TestCluster]:
    tc = TestCluster.start("own", tmp_path / "own")
    yield tc
    tc.stop()  # the process it runs now, restarted or not


def test_clusters_down_killed_and_frozen_leave_the_others_syncing_and_converge(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (a,) = clusters(1)
    b = TestCluster.start("flaky", tmp_path / "flaky")
    b_kubeconfig = tmp_path / "b-kubeconfig"  # the operator's copy: it outlives the cluster's own
    shutil.copy(b.kubeconfig, b_kubeconfig)
    b.stop()  # down at start
    ns = namespace
    git_repo.write_objects("app/ns.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    git_repo.write_objects("app/one.yaml", cm("one", ns))
    git_repo.commit()
    config = make_config(
        git_repo,
        [cluster_entry(a, "a", ["app"]), {**cluster_entry(b, "b", ["app"]), "kubeconfig": str(b_kubeconfig)}],
        sync={"interval": "1h", "requestTimeout": "3s"},
        server={"listen": f"127.0.0.1:{free_port()}"},
    )
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: agent.cluster("a")["syncStatus"] == "Synced")
        down = wait_until(lambda: (c := agent.cluster("b"))["lastSync"] and c)
        assert down["syncStatus"] == "Unknown"
        assert "refused" in down["lastSync"]["error"].lower()
        assert live_object(a, "v1", "ConfigMap", "one", ns) is not None

        b.restart()  # back: the backoff retries converge it
        wait_until(lambda: agent.cluster("b")["syncStatus"] == "Synced", timeout=90)
        assert live_object(b, "v1", "ConfigMap", "one", ns) is not None

        # frozen (SIGSTOP): a new commit reaches a; b times out, then converges after SIGCONT
        git_repo.write_objects("app/two.yaml", cm("two", ns))
        git_repo.commit()
        os.kill(b.process.pid, signal.SIGSTOP)
        try:
            assert request(f"{agent.base}/api/v1/sync", method="POST")[0] == 202
            fetched = request(f"{agent.base}/api/v1/sync", method="POST")  # the fetch job picks the commit up
            assert fetched[0] == 202
            wait_until(lambda: live_object(a, "v1", "ConfigMap", "two", ns) is not None, timeout=90)
            wait_until(lambda: agent.cluster("b")["syncStatus"] == "Unknown", timeout=60)
        finally:
            os.kill(b.process.pid, signal.SIGCONT)
        wait_until(lambda: live_object(b, "v1", "ConfigMap", "two", ns) is not None, timeout=90)

        # killed (SIGKILL) mid-flight: Unknown with the error, then back and converged
        b.process.kill()
        b.process.wait()
        git_repo.write_objects("app/three.yaml", cm("three", ns))
        git_repo.commit()
        request(f"{agent.base}/api/v1/sync", method="POST")
        wait_until(lambda: live_object(a, "v1", "ConfigMap", "three", ns) is not None, timeout=90)
        wait_until(lambda: agent.cluster("b")["syncStatus"] == "Unknown", timeout=60)
        b.restart()
        wait_until(lambda: live_object(b, "v1", "ConfigMap", "three", ns) is not None, timeout=90)
        assert agent.proc.poll() is None  # the agent never stopped
    finally:
        assert agent.stop() == 0
        b.stop()


def test_api_server_restarted_mid_watch_misses_no_drift(
    git_repo: GitRepo, make_config: Any, namespace: str, own_cluster: TestCluster
) -> None:
    tc = own_cluster
    git_repo.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        cm("watched", namespace, mode="git"),
    )
    git_repo.commit()
    runner, revision, checkout = runner_for(
        make_config(git_repo, [cluster_entry(tc, "a", ["app"])], sync={"selfHeal": True})
    )
    try:
        assert runner.reconcile(revision, checkout).ok
        key = resources.ResourceKey("", "ConfigMap", namespace, "watched")
        wait_until(lambda: runner.live.get(key) is not None)
        tc.restart()
        # the first write after the restart: the watch resumes (or re-lists) and self-heal corrects it
        dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").patch(
            name="watched",
            namespace=namespace,
            body={"data": {"mode": "edited-after-restart"}},
            content_type="application/merge-patch+json",
            field_manager="intruder",
        )
        wait_until(
            lambda: live_object(tc, "v1", "ConfigMap", "watched", namespace)["data"]["mode"] == "git", timeout=60
        )
    finally:
        runner.close()


def test_git_remote_unreachable_keeps_the_last_good_revision_and_a_corrupt_clone_heals(
    tmp_path: pathlib.Path, clusters: Any, make_config: Any, namespace: str
) -> None:
    (a,) = clusters(1)
    bare = tmp_path / "fleet.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = GitRepo(tmp_path / "work")
    work.git("remote", "add", "origin", str(bare))
    work.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        cm("first", namespace),
    )
    work.commit()
    work.git("push", "-q", "origin", "main")
    config = make_config(
        str(bare),
        [cluster_entry(a, "a", ["app"])],
        sync={"interval": "1h", "prune": True},
        server={"listen": f"127.0.0.1:{free_port()}"},
    )
    cfg = yaml.safe_load(config.read_text())
    cfg["source"]["interval"] = "1s"
    config.write_text(yaml.safe_dump(cfg))
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: live_object(a, "v1", "ConfigMap", "first", namespace) is not None)
        first = agent.status()["source"]["revision"]["sha"]
        hidden = tmp_path / "hidden.git"
        bare.rename(hidden)  # the remote is gone
        source = wait_until(lambda: (s := agent.status()["source"])["stale"] and s)
        assert str(bare) in source["error"]
        assert source["revision"]["sha"] == first  # the last good revision stays deployed
        assert live_object(a, "v1", "ConfigMap", "first", namespace) is not None
        hidden.rename(bare)
        work.write_objects(
            "app/all.yaml",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            cm("first", namespace),
            cm("second", namespace),
        )
        work.commit()
        work.git("push", "-q", "origin", "main")
        wait_until(lambda: live_object(a, "v1", "ConfigMap", "second", namespace) is not None, timeout=60)
        assert agent.status()["source"]["stale"] is False

        clone = pathlib.Path(cfg["source"]["cacheDir"])
        for broken in [*(clone / "objects").rglob("*"), clone / "config", clone / "HEAD"]:  # a corrupt clone cache
            if broken.is_file():
                broken.write_bytes(b"garbage")
        work.write_objects(
            "app/all.yaml",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            cm("first", namespace),
            cm("third", namespace),
        )
        work.commit()
        work.git("push", "-q", "origin", "main")
        wait_until(lambda: live_object(a, "v1", "ConfigMap", "third", namespace) is not None, timeout=60)
        wait_until(lambda: live_object(a, "v1", "ConfigMap", "second", namespace) is None, timeout=60)  # pruned
    finally:
        assert agent.stop() == 0
    assert "cloned it again" in (tmp_path / "agent.log").read_text()


def test_sigterm_mid_sync_exits_0_and_a_restart_resumes_with_the_inventory_intact(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (a,) = clusters(1)
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    objects += [cm(f"c{i:03d}", namespace) for i in range(400)]
    git_repo.write_objects("app/all.yaml", *objects)
    git_repo.commit()
    config = make_config(git_repo, [cluster_entry(a, "a", ["app"])], server={"listen": f"127.0.0.1:{free_port()}"})
    agent = Agent(config, tmp_path / "agent.log")
    try:
        wait_until(
            lambda: "source default: revision" in agent.log.read_text(errors="replace"), timeout=60, interval=0.01
        )
    finally:
        assert agent.stop() == 0  # mid-sync: it finishes or abandons cleanly, within the grace period

    from agent import cli

    assert cli.main(["sync", "--config", str(config)]) == 0  # restarted: resumes and converges
    instance = yaml.safe_load(config.read_text())["instance"]
    tracking = inventory.Tracking(instance, "a")
    from agent import config as agent_config
    from agent.clusters import kubeconfig as agent_clusters

    cfg = agent_config.load_config(config)
    kube = agent_clusters.connect(cfg.clusters[0])
    store = inventory.Store(kube, tracking, cfg.sync.inventory_namespace, cfg.sync.field_manager)
    owned = set(store.read(["app"])["app"].entries)
    live, _ = kube.list_objects("", "ConfigMap", tracking.selector)
    labelled = {resources.ResourceKey.of(o) for o in live}
    desired = {resources.ResourceKey("", "ConfigMap", namespace, f"c{i:03d}") for i in range(400)}
    assert desired <= labelled  # nothing lost
    assert labelled <= owned  # nothing orphaned: every object we labelled is in the inventory
    kube.close()


def test_a_conflicting_writer_is_overridden_on_our_fields_only(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str
) -> None:
    """Documented: server-side apply with force takes back the fields git sets; fields only another manager
    sets are theirs and stay."""
    (a,) = clusters(1)
    git_repo.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        cm("shared", namespace, mode="git"),
    )
    git_repo.commit()
    runner, revision, checkout = runner_for(make_config(git_repo, [cluster_entry(a, "a", ["app"])]), watch=False)
    try:
        assert runner.reconcile(revision, checkout).ok
        other = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "shared", "namespace": namespace},
            "data": {"mode": "theirs", "extra": "kept"},
        }
        api = dynamic_client(a).resources.get(api_version="v1", kind="ConfigMap")
        api.server_side_apply(
            body=other, name="shared", namespace=namespace, field_manager="other-tool", force_conflicts=True
        )
        result = runner.reconcile(revision, checkout)
        assert {e.key.name: e.action.value for e in result.entries}["shared"] == "configured"
        assert live_object(a, "v1", "ConfigMap", "shared", namespace)["data"] == {"mode": "git", "extra": "kept"}
    finally:
        runner.close()
