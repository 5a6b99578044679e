"""The command line with kubectl's habits, against a running agent and a real cluster: ``status``, ``get``,
``events`` and ``reconcile`` find the agent and its token from the config (``$GITOPS_AGENT_CONFIG``), print plain
tables when piped and JSON/YAML that parses back; ``version`` and ``completion``; one-shot commands log nothing
without ``-v``; a repeated ``--cluster`` syncs once; ``run`` on a busy port fails at once with exit 2; an agent that
cannot be asked is exit 2 with a hint."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import yaml

from tests.conftest import GitRepo, cluster_entry, wait_until
from tests.e2e.test_faults import Agent, cm
from tests.e2e.test_run_status import free_port

TOKEN = "cli-token-7f3a"
BOXES = set("┏┃━│┡┩└┘┌┐─")


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agent.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_client_commands_against_a_running_agent(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("web/app.yaml", ns, cm("web-config", namespace))
    git_repo.commit("rev 1")
    port = free_port()
    config = make_config(
        git_repo,
        [cluster_entry(tc, "a", ["web"], namespace)],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "1h"},
        server={"listen": f"127.0.0.1:{port}", "token": {"env": "CLI_TEST_TOKEN"}},
    )
    env = {k: v for k, v in os.environ.items() if k != "GITOPS_AGENT_TOKEN"}
    env |= {"CLI_TEST_TOKEN": TOKEN, "GITOPS_AGENT_CONFIG": str(config)}

    stopped = _cli("status", env=env)
    assert stopped.returncode == 2
    assert f"cannot reach the agent at http://127.0.0.1:{port}" in stopped.stderr
    assert f"server.listen of {config}" in stopped.stderr  # the hint says where the address came from
    assert stopped.stderr.count("error:") == 1

    agent = Agent(config, tmp_path / "agent.log", env={"CLI_TEST_TOKEN": TOKEN})
    try:
        agent.wait_ready()
        shown = wait_until(lambda: (s := _cli("status", env=env)).returncode == 0 and s, timeout=30)
        lines = shown.stdout.splitlines()
        assert lines[0].split() == ["NAME", "SYNC", "HEALTH", "REVISION", "LAST", "SYNC", "RESULT", "REASON"]
        assert lines[1].split()[:3] == ["a", "Synced", "Healthy"]
        assert lines[1].split()[4].endswith("s")  # AGE, not an ISO time
        assert not BOXES & set(shown.stdout)
        assert "APP   CLUSTER   SYNC     HEALTH    REASON" in shown.stdout

        as_json = json.loads(_cli("status", "-o", "json", "--app", "web", env=env).stdout)
        assert [(c["app"], c["cluster"], c["syncStatus"]) for c in as_json["apps"]] == [("web", "a", "Synced")]
        assert _cli("status", "--cluster", "nope", env=env).stdout.count("\n") == 1  # headers only

        apps = json.loads(_cli("get", "apps", "-o", "json", env=env).stdout)
        assert [a["name"] for a in apps] == ["web"]
        one = yaml.safe_load(_cli("get", "apps", "web", "-o", "yaml", env=env).stdout)
        assert one["clusters"][0]["lastSync"]["objects"]  # one app, with its objects
        table = _cli("get", "apps", "-o", "wide", env=env).stdout.splitlines()
        assert table[0].split() == ["NAME", "CLUSTERS", "SYNCED", "HEALTHY", "SOURCE", "PATH"]
        assert table[1].split() == ["web", "1", "1/1", "1/1", "default", "web"]
        cluster = json.loads(_cli("get", "clusters", "a", "-o", "json", env=env).stdout)
        assert cluster["name"] == "a"
        assert cluster["syncStatus"] == "Synced"
        sources = yaml.safe_load(_cli("get", "sources", "-o", "yaml", env=env).stdout)
        assert [s["name"] for s in sources] == ["default"]
        missing = _cli("get", "sources", "nope", env=env)
        assert missing.returncode == 2
        assert "no source named 'nope'" in missing.stderr
        assert "the sources are: default" in missing.stderr

        events = json.loads(_cli("events", "-o", "json", env=env).stdout)
        assert "SyncSucceeded" in [e["reason"] for e in events]
        follow = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "events", "--follow", "-o", "json"],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            assert follow.stdout is not None
            assert json.loads(follow.stdout.readline())["reason"] == "SyncSucceeded"
        finally:
            follow.terminate()
            follow.wait(10)

        done = _cli("reconcile", "web", "--timeout", "60s", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines()[1].split()[:4] == ["web", "a", "Synced", "Healthy"]
        unknown = _cli("reconcile", "nope", env=env)
        assert unknown.returncode == 2
        assert "no app named 'nope'" in unknown.stderr

        refused = _cli("status", env={**env, "CLI_TEST_TOKEN": "wrong"}, timeout=60)
        assert refused.returncode == 2
        assert "401" in refused.stderr

        busy = _cli("run", env=env, timeout=60)  # the agent holds the port: refused before anything starts
        assert busy.returncode == 2
        assert f"server.listen 127.0.0.1:{port}: address already in use" in busy.stderr
    finally:
        agent.stop()


def test_one_shot_commands_are_quiet_and_sync_each_named_cluster_once(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str
) -> None:
    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/cm.yaml", ns, cm("quiet", namespace))
    git_repo.commit()
    config = make_config(git_repo, [cluster_entry(tc, "a", ["app"], namespace)])
    env = {**os.environ, "GITOPS_AGENT_CONFIG": str(config)}

    done = _cli("sync", "--cluster", "a", "--cluster", "a", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""  # no log lines without -v
    assert "1/1 clusters synced" in done.stdout
    assert not BOXES & set(done.stdout)
    assert done.stdout.splitlines()[1].split()[:2] == ["APP", "ACTION"]
    loud = _cli("-v", "sync", env=env)
    assert " INFO " in loud.stderr
    dry = _cli("sync", "--dry-run", env=env)
    assert "1/1 clusters checked (dry run)" in dry.stdout

    versions = json.loads(_cli("version", "-o", "json", env=env).stdout)
    assert set(versions) >= {"gitopsAgent", "gitCommit", "helm", "kustomize", "sops", "kubernetesClient"}
    assert versions["helm"].startswith("v")
    for shell in ("bash", "zsh", "fish"):
        script = _cli("completion", shell, env=env)
        assert script.returncode == 0
        assert "gitops-agent" in script.stdout


def test_an_app_relabelled_off_a_cluster_is_no_verdict_on_it_and_a_refused_reload_is_shown(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("base/ns.yaml", ns)
    git_repo.write_objects("web/cm.yaml", cm("web", namespace))
    git_repo.commit()
    port = free_port()
    entry = {**cluster_entry(tc, "a", [], namespace), "labels": {"env": "dev"}}
    entry.pop("paths", None)
    apps = [
        {"name": "base", "path": "base", "clusters": {"names": ["a"]}},
        {"name": "web", "path": "web", "dependsOn": ["base"], "clusters": {"matchLabels": {"env": "dev"}}},
    ]
    config = make_config(
        git_repo,
        [entry],
        apps=apps,
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "1h"},
        server={"listen": f"127.0.0.1:{port}"},
    )
    env = {**os.environ, "GITOPS_AGENT_CONFIG": str(config)}
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: _cli("status", env=env).returncode == 0, timeout=30)
        doc = yaml.safe_load(config.read_text())
        doc["clusters"][0]["labels"] = {"env": "prod"}  # web's selector no longer matches
        config.write_text(yaml.safe_dump(doc))
        shown = wait_until(lambda: "left this cluster" in (s := _cli("status", env=env)).stdout and s, timeout=30)
        assert shown.returncode == 0, shown.stdout  # base is Synced and Healthy; web is no verdict on a
        row = next(line for line in shown.stdout.splitlines() if line.startswith("web "))
        assert "left this cluster" in row

        config.write_text(config.read_text().replace("interval: 1h", "intervall: 1h"))  # a typo: refused
        refused = wait_until(lambda: "config reload refused" in (s := _cli("status", env=env)).stdout and s, 30)
        assert "sync.intervall: unknown key; did you mean sync.interval?" in refused.stdout
    finally:
        agent.stop()
