"""Live config reload of ``gitops-agent run``: a cluster added to the config file is synced without a restart; an
invalid new config is refused (named in the status) while the agent keeps running on the last valid one; a
cluster removed from the file leaves the status and the metrics (its objects stay)."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from tests.conftest import GitRepo, cluster_entry, live_object, wait_until
from tests.e2e.test_faults import Agent
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port


def one_cluster_config(git_repo: GitRepo, make_config: Any, a: Any, namespace: str) -> pathlib.Path:
    """A fleet of one app (a Namespace and ConfigMap ``c``) on cluster ``a``, hourly syncs, a free port."""
    git_repo.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": namespace}},
    )
    git_repo.commit()
    config: pathlib.Path = make_config(
        git_repo,
        [cluster_entry(a, "a", ["app"])],
        sync={"interval": "1h"},
        server={"listen": f"127.0.0.1:{free_port()}"},
    )
    return config


def test_clusters_added_removed_and_an_invalid_config_refused(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    a, b = clusters(2)
    config = one_cluster_config(git_repo, make_config, a, namespace)
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: live_object(a, "v1", "ConfigMap", "c", namespace) is not None, timeout=60)
        assert live_object(b, "v1", "ConfigMap", "c", namespace) is None

        cfg = yaml.safe_load(config.read_text())
        cfg["clusters"].append(cluster_entry(b, "b", ["app"]))
        config.write_text(yaml.safe_dump(cfg))  # add b
        wait_until(lambda: live_object(b, "v1", "ConfigMap", "c", namespace) is not None, timeout=60)
        assert [c["name"] for c in agent.status()["clusters"]] == ["a", "b"]
        wait_until(lambda: 'gitops_agent_cluster_reachable{cluster="b"} 1.0' in metrics(agent), timeout=30)
        assert 'gitops_agent_cluster_reachable{cluster="a"} 1.0' in metrics(agent)
        assert 'gitops_agent_app_sync_ok{app="app",cluster="a"} 1.0' in metrics(agent)

        good = config.read_text()
        config.write_text(good.replace("paths:", "pathz:", 1))  # invalid: an unknown key
        error = wait_until(lambda: agent.status()["config"]["error"], timeout=30)
        assert str(config) in error
        assert "pathz" in error
        assert agent.proc.poll() is None
        assert [c["name"] for c in agent.status()["clusters"]] == ["a", "b"]  # still on the last valid config

        cfg["clusters"] = [c for c in cfg["clusters"] if c["name"] == "b"]
        config.write_text(yaml.safe_dump(cfg))  # remove a
        wait_until(lambda: [c["name"] for c in agent.status()["clusters"]] == ["b"], timeout=30)
        assert agent.status()["config"]["error"] is None
        assert live_object(a, "v1", "ConfigMap", "c", namespace) is not None  # removal never deletes objects
        exposed = metrics(agent)
        assert 'cluster="a"' not in exposed  # no series goes on describing a cluster the agent no longer syncs
        assert 'gitops_agent_cluster_reachable{cluster="b"} 1.0' in exposed

        other = GitRepo(tmp_path / "other-fleet")  # a new source.url: fetched and deployed at once
        other.write_objects(
            "app/all.yaml",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-other", "namespace": namespace}},
        )
        other.commit()
        cfg["source"]["url"] = str(other.path)
        config.write_text(yaml.safe_dump(cfg))
        wait_until(lambda: live_object(b, "v1", "ConfigMap", "from-other", namespace) is not None, timeout=30)
    finally:
        assert agent.stop() == 0
    assert "config reload refused, still running on the last valid config" in (tmp_path / "agent.log").read_text()


def metrics(agent: Agent) -> str:
    """The agent's ``GET /metrics`` text."""
    status, body = request(f"{agent.base}/metrics")
    assert status == 200
    return body


def atomic_write(volume: pathlib.Path, text: str, stamp: str) -> None:
    """Update ``volume`` as the kubelet updates a ConfigMap volume (Kubernetes' AtomicWriter): the data in a new
    ``..<stamp>`` directory, ``..data`` switched to it by a rename, the old directory removed; ``config.yaml`` is
    a symlink to ``..data/config.yaml`` throughout."""
    new = volume / f"..{stamp}"
    new.mkdir()
    (new / "config.yaml").write_text(text)
    old = (volume / "..data").resolve() if (volume / "..data").is_symlink() else None
    (volume / "..data_tmp").symlink_to(new.name)
    (volume / "..data_tmp").rename(volume / "..data")
    if not (volume / "config.yaml").is_symlink():
        (volume / "config.yaml").symlink_to("..data/config.yaml")
    if old is not None:
        for f in old.iterdir():
            f.unlink()
        old.rmdir()


def test_a_config_in_a_configmap_volume_is_reloaded_when_the_kubelet_updates_it(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """The chart and manifests/agent mount the config's directory; the kubelet swaps ``..data`` to a new directory
    and deletes the old one, so a watch on the resolved file's directory would lose it (it did)."""
    a, b = clusters(2)
    made = one_cluster_config(git_repo, make_config, a, namespace)
    cfg = yaml.safe_load(made.read_text())
    volume = tmp_path / "volume"
    volume.mkdir()
    atomic_write(volume, yaml.safe_dump(cfg), "2026_12_06_10_00_00.1")
    agent = Agent(volume / "config.yaml", tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: live_object(a, "v1", "ConfigMap", "c", namespace) is not None, timeout=60)
        cfg["clusters"].append(cluster_entry(b, "b", ["app"]))
        atomic_write(volume, yaml.safe_dump(cfg), "2026_12_06_10_01_00.2")  # add b
        wait_until(lambda: live_object(b, "v1", "ConfigMap", "c", namespace) is not None, timeout=60)
        cfg["clusters"] = [c for c in cfg["clusters"] if c["name"] == "b"]
        atomic_write(volume, yaml.safe_dump(cfg), "2026_12_06_10_02_00.3")  # and again: the watch survived
        wait_until(lambda: [c["name"] for c in agent.status()["clusters"]] == ["b"], timeout=30)
    finally:
        assert agent.stop() == 0


def test_a_config_symlinked_from_another_directory_is_reloaded_when_the_file_is_edited(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """``--config`` names a symlink to a file kept in another directory (dotfiles, a checkout): an edit of that file
    is a change of the config, as it was when the watch followed the resolved path."""
    a, b = clusters(2)
    real = one_cluster_config(git_repo, make_config, a, namespace)
    link = tmp_path / "etc" / "agent.yaml"
    link.parent.mkdir()
    link.symlink_to(real)
    agent = Agent(link, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: live_object(a, "v1", "ConfigMap", "c", namespace) is not None, timeout=60)
        cfg = yaml.safe_load(real.read_text())
        cfg["clusters"].append(cluster_entry(b, "b", ["app"]))
        real.write_text(yaml.safe_dump(cfg))  # edited where it lives
        wait_until(lambda: live_object(b, "v1", "ConfigMap", "c", namespace) is not None, timeout=60)
    finally:
        assert agent.stop() == 0
