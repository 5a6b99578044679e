"""The runtime never wedges and never lies (issue 14), against real clusters and a real git server on loopback:
a remote that accepts and never answers, a reload that removes a cluster mid-sync, a CLI sync beside `run`."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time
from typing import Any

import yaml

from tests.conftest import (
    GitRepo,
    agent_writes,
    audit_offset,
    cluster_entry,
    dynamic_client,
    live_object,
    wait_until,
)
from tests.e2e.test_faults import Agent, cm
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port
from tests.e2e.test_sync_corpora import ensure_namespace
from tests.gitserver import GitDaemon, StallingProxy


def _data(tc: Any, name: str, namespace: str) -> Any:
    return (live_object(tc, "v1", "ConfigMap", name, namespace) or {}).get("data")


def test_a_stalled_git_server_leaves_clusters_reconciling_and_the_status_honest(
    clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    repo = GitRepo(tmp_path / "served" / "fleet")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    repo.write_objects("app/app.yaml", ns, cm("shared", namespace, rev="1"), cm("keep", namespace))
    first = repo.commit("rev 1")
    daemon = GitDaemon(tmp_path / "served")
    proxy = StallingProxy(daemon.port)
    port = free_port()
    config = make_config(
        repo,
        [cluster_entry(tc, "a", ["app"], namespace)],
        source={
            "url": f"git://127.0.0.1:{proxy.port}/fleet",
            "ref": "main",
            "cacheDir": str(tmp_path / "cache"),
            "interval": "1s",
            "timeout": "2s",
        },
        sync={"interval": "2s"},
        server={"listen": f"127.0.0.1:{port}"},
    )
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: _data(tc, "shared", namespace) == {"rev": "1"}, timeout=30)

        proxy.stall()
        stalled_at = time.monotonic()
        repo.write_objects("app/app.yaml", ns, cm("shared", namespace, rev="2"), cm("keep", namespace))
        second = repo.commit("rev 2")
        source = wait_until(lambda: (s := agent.status()["source"])["stale"] and s, timeout=15)
        # Within one fetch interval plus source.timeout (and the child's start), the status says so.
        assert time.monotonic() - stalled_at < 1 + 2 + 3, time.monotonic() - stalled_at
        assert "no answer within source.timeout (2s)" in source["error"]
        assert source["revision"]["sha"] == first
        assert proxy.accepted_while_stalled >= 1
        code, body = request(f"{agent.base}/readyz")
        assert code == 503
        assert "source failing" in body

        # The cluster keeps reconciling the last good revision at its interval: an object deleted out of band
        # comes back (self-heal is off: a scheduled sync does it).
        dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").delete(name="keep", namespace=namespace)
        wait_until(lambda: _data(tc, "keep", namespace) == {"v": "1"}, timeout=15)
        # The object is back as soon as the sync applies it; the status says Synced once that sync has ended and
        # been recorded (a status poll between the delete and that end rightly said OutOfSync).
        cluster = wait_until(lambda: (c := agent.cluster("a"))["syncStatus"] == "Synced" and c, timeout=15)
        assert cluster["lastSync"]["revision"]["sha"] == first
        assert _data(tc, "shared", namespace) == {"rev": "1"}

        # The remote answers again: the commit pushed meanwhile is deployed.
        proxy.forward()
        wait_until(lambda: _data(tc, "shared", namespace) == {"rev": "2"}, timeout=20)
        status = agent.status()
        assert status["source"]["stale"] is False
        assert status["source"]["revision"]["sha"] == second
        wait_until(lambda: request(f"{agent.base}/readyz")[0] == 200, timeout=10)

        # SIGTERM while a fetch hangs: a clean exit, well within a pod's 30 s grace period.
        proxy.stall()
        time.sleep(1.5)
        asked = time.monotonic()
        assert agent.stop() == 0
        assert time.monotonic() - asked < 10, time.monotonic() - asked
        assert "Traceback" not in agent.log.read_text()
    finally:
        if agent.proc.poll() is None:
            agent.proc.kill()
        proxy.close()
        daemon.stop()


def test_a_reload_that_removes_a_cluster_mid_sync_leaves_no_ghost(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    a, b = clusters(2)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("small/app.yaml", ns, cm("small", namespace))
    git_repo.write_objects("big/app.yaml", ns, *(cm(f"big-{i:04d}", namespace) for i in range(1500)))
    git_repo.commit("a small app for a, a big one for b")
    port = free_port()
    entries = [cluster_entry(a, "a", ["small"], namespace), cluster_entry(b, "b", ["big"], namespace)]
    config = make_config(
        git_repo, entries, sync={"interval": "1h", "concurrency": 2}, server={"listen": f"127.0.0.1:{port}"}
    )
    since = audit_offset(b)
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: len(agent_writes(b, since)) >= 20, timeout=60, interval=0.02)  # b is mid-sync
        doc = yaml.safe_load(config.read_text())
        doc["clusters"] = [c for c in doc["clusters"] if c["name"] == "a"]
        config.write_text(yaml.safe_dump(doc))
        wait_until(lambda: [c["name"] for c in agent.status()["clusters"]] == ["a"], timeout=90, interval=0.1)
        removed_at = audit_offset(b)
        time.sleep(3)
        assert agent_writes(b, removed_at) == []  # its sync was cancelled: nothing more written
        created = sum(1 for e in agent_writes(b, since) if "/configmaps" in e["requestURI"])
        assert 0 < created < 1500
        for _ in range(5):  # and it stays gone: nothing records a result for it afterwards
            assert [c["name"] for c in agent.status()["clusters"]] == ["a"]
            time.sleep(0.2)
        assert agent.cluster("a")["syncStatus"] == "Synced"
        log = agent.log.read_text()
        assert "Traceback" not in log
        assert "config reloaded: removed ['b']" in log
    finally:
        if agent.proc.poll() is None:
            agent.stop()


def test_cli_syncs_beside_run_lose_no_inventory_entry(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """`gitops-agent sync` 20 times, each with a different desired set, while `run` reconciles the same path
    every second: every object either of them wrote is in the inventory afterwards (nothing orphaned)."""
    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/app.yaml", ns, cm("base", namespace))
    git_repo.commit("base")
    port = free_port()
    config = make_config(
        git_repo,
        [cluster_entry(tc, "a", ["app"], namespace)],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "1s"},
        server={"listen": f"127.0.0.1:{port}"},
    )
    cli_config = tmp_path / "cli.yaml"
    doc = yaml.safe_load(config.read_text())
    doc["source"]["cacheDir"] = str(tmp_path / "cli-cache")
    cli_config.write_text(yaml.safe_dump(doc))
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        for i in range(20):
            objects = [cm(f"set{i}-{j}", namespace) for j in range(3)]
            git_repo.write_objects("app/app.yaml", ns, cm("base", namespace), *objects)
            sha = git_repo.commit(f"set {i}")
            done = subprocess.run(
                [sys.executable, "-m", "agent.cli", "sync", "--config", str(cli_config), "--json"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr

        def caught_up() -> bool:
            c = agent.cluster("a")
            last = c.get("lastSync") or {}
            return (last.get("revision") or {}).get("sha") == sha and last.get("result") == "Succeeded"

        wait_until(caught_up, timeout=30)
        # prune is off: what each set left behind is still live, and the status says so
        assert agent.cluster("a")["syncStatus"] == "OutOfSync"
    finally:
        agent.stop()
    instance = doc["instance"]
    api = dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap")
    live = {
        item.metadata.name
        for item in api.get(namespace=namespace, label_selector=f"gitops-agent.io/instance={instance}").items
    }
    assert {f"set{i}-{j}" for i in range(20) for j in range(3)} <= live
    assert _inventory_names(tc, doc) == live


def _inventory_names(tc: Any, doc: dict[str, Any]) -> set[str]:
    """The names in the stored inventory of cluster ``a``'s path ``app`` (read as the agent reads it)."""
    from agent import config as agent_config
    from agent.clusters import kubeconfig
    from reconcilers import inventory

    cfg = agent_config.AgentConfig.model_validate(doc)
    kube = kubeconfig.connect(cfg.clusters[0])
    try:
        store = inventory.Store(
            kube, inventory.Tracking(cfg.instance, "a"), cfg.sync.inventory_namespace, cfg.sync.field_manager
        )
        return {k.name for k in store.read(["app"])["app"].entries if k.kind == "ConfigMap"}
    finally:
        kube.close()


def test_a_frozen_cluster_never_delays_another(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """Each cluster has its own worker: one frozen (SIGSTOP) keeps its worker busy until its requests time out,
    and the other keeps its interval; the frozen one's status says it has not synced for a while."""
    from tests.cluster.launcher import TestCluster

    (a,) = clusters(1)
    frozen = TestCluster.start("frozen", tmp_path / "frozen")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/app.yaml", ns, cm("keep", namespace))
    git_repo.commit()
    ensure_namespace(frozen, namespace)
    port = free_port()
    config = make_config(
        git_repo,
        [cluster_entry(a, "a", ["app"], namespace), cluster_entry(frozen, "frozen", ["app"], namespace)],
        sync={"interval": "1s", "requestTimeout": "30s"},
        server={"listen": f"127.0.0.1:{port}"},
    )
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: all(c["syncStatus"] == "Synced" for c in agent.status()["clusters"]), timeout=30)
        frozen.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(4)
            starts = []
            for _ in range(6):
                starts.append(agent.cluster("a")["lastSync"]["started"])
                time.sleep(1)
            assert len(set(starts)) >= 3, starts  # a keeps syncing about every second
            stuck = agent.cluster("frozen")
            assert stuck["syncStatus"] == "Unknown"
            assert "no sync finished" in stuck["syncStatusReason"], stuck
            assert stuck["worker"]["state"] == "syncing"
        finally:
            frozen.process.send_signal(signal.SIGCONT)
        wait_until(lambda: agent.cluster("frozen")["syncStatusReason"] == "", timeout=60)
        # SIGTERM while a sync waits on a frozen API server: the agent still exits 0 within a pod's grace period.
        frozen.process.send_signal(signal.SIGSTOP)
        time.sleep(2)
        asked = time.monotonic()
        assert agent.stop() == 0
        assert time.monotonic() - asked < 20, time.monotonic() - asked
    finally:
        frozen.process.send_signal(signal.SIGCONT)
        if agent.proc.poll() is None:
            agent.stop()
        frozen.stop()


def test_orphans_are_reported_and_pruned_only_on_request(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """The inventory deleted out of band, then a file removed from git: its object is ours by its tracking
    annotation but in neither git nor the inventory. `diff` and `sync` name it as an orphan (and `sync` keeps it);
    `sync --prune-orphans` deletes it."""
    import json
    import sys

    from reconcilers import inventory

    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/a.yaml", ns, cm("kept", namespace))
    git_repo.write_objects("app/b.yaml", cm("leaving", namespace))
    git_repo.commit("two files")
    config = make_config(git_repo, [cluster_entry(tc, "a", ["app"], namespace)], sync={"prune": True})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent.cli", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert cli("sync").returncode == 0
    doc = yaml.safe_load(config.read_text())
    inventories = dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap")
    for item in inventories.get(
        namespace="gitops-agent", label_selector=f"{inventory.INSTANCE_LABEL}-inventory={doc['instance']}"
    ).items:
        inventories.delete(name=item.metadata.name, namespace="gitops-agent")  # the inventory, deleted out of band
    git_repo.remove("app/b.yaml")
    git_repo.commit("b leaves git")

    diff = cli("diff")
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert "orphan" in diff.stdout
    assert "leaving" in diff.stdout
    synced = cli("sync", "--json")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    actions = {o["name"]: o["action"] for o in json.loads(synced.stdout)["a"]["objects"]}
    assert actions["leaving"] == "orphaned"
    assert actions["kept"] == "unchanged"
    assert live_object(tc, "v1", "ConfigMap", "leaving", namespace) is not None  # reported, not pruned
    pruned = cli("sync", "--json", "--prune-orphans")
    assert {o["name"]: o["action"] for o in json.loads(pruned.stdout)["a"]["objects"]}["leaving"] == "pruned"
    assert live_object(tc, "v1", "ConfigMap", "leaving", namespace) is None
    assert live_object(tc, "v1", "ConfigMap", "kept", namespace) is not None
