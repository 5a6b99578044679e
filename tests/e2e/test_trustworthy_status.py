"""A status a daily user can trust, against a real cluster and a running agent: with self-heal off, a live edit
makes the app ``OutOfSync`` within 5 s naming the field (status API, ``status`` exit 1, the metric, an event), and a
sync brings it back to ``Synced`` (exit 0); a live delete is named as missing; an object removed from git while
prune is off makes the app ``OutOfSync`` "requires pruning" in ``sync``, ``diff`` and ``status`` until it is gone."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
from typing import Any

from tests.conftest import GitRepo, cluster_entry, dynamic_client, runner_for, wait_until
from tests.e2e.test_faults import Agent, cm
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port


def _cell(agent: Agent, app: str = "app") -> dict[str, Any]:
    found = json.loads(request(f"{agent.base}/api/v1/apps")[1])["apps"]
    none: dict[str, Any] = {"syncStatus": None, "health": None, "syncStatusReason": ""}  # before the first sync
    return next((c for a in found if a["name"] == app for c in a["clusters"]), none)


def _status_cli(agent: Agent) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agent.cli", "status", "--url", agent.base]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _metric(agent: Agent, name: str) -> list[str]:
    return [line for line in request(f"{agent.base}/metrics")[1].splitlines() if line.startswith(name + "{")]


def test_a_live_edit_and_a_removed_file_make_the_app_out_of_sync(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/app.yaml", ns, cm("app-config", namespace, color="blue"))
    git_repo.write_objects("app/other.yaml", cm("other", namespace))
    git_repo.commit("rev 1")
    port = free_port()
    config = make_config(
        git_repo,
        [cluster_entry(tc, "a", ["app"], namespace)],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "1h"},  # self-heal and prune off: the defaults
        server={"listen": f"127.0.0.1:{port}"},
    )
    agent = Agent(config, tmp_path / "agent.log")
    configmaps = dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap")
    try:
        agent.wait_ready()
        wait_until(lambda: _cell(agent)["syncStatus"] == "Synced" and _cell(agent)["health"] == "Healthy", 30)
        assert _status_cli(agent).returncode == 0

        configmaps.patch(
            name="app-config",
            namespace=namespace,
            body={"data": {"color": "red"}},
            content_type="application/merge-patch+json",
            field_manager="kubectl-patch",
        )
        cell = wait_until(lambda: (c := _cell(agent))["syncStatus"] == "OutOfSync" and c, timeout=5)
        assert f"ConfigMap {namespace}/app-config: .data.color" in cell["syncStatusReason"]
        full = json.loads(request(f"{agent.base}/api/v1/apps/app")[1])
        drifted = full["clusters"][0]["drifted"]
        assert [(d["name"], d["fields"]) for d in drifted] == [("app-config", [".data.color"])]
        shown = _status_cli(agent)
        assert shown.returncode == 1, shown.stdout
        assert ".data.color" in shown.stdout
        assert _metric(agent, "gitops_agent_app_drifted_objects") == [
            'gitops_agent_app_drifted_objects{app="app",cluster="a"} 1.0'
        ]
        events = json.loads(request(f"{agent.base}/api/v1/events")[1])["events"]
        assert [e["reason"] for e in events if e["reason"] == "OutOfSync"] == ["OutOfSync"]
        assert agent.cluster("a")["syncStatus"] == "OutOfSync"

        configmaps.delete(name="other", namespace=namespace)
        cell = wait_until(lambda: (c := _cell(agent)).get("syncStatusReason", "").startswith("2 object(s)") and c, 5)
        assert f"ConfigMap {namespace}/other: missing" in cell["syncStatusReason"]

        request(f"{agent.base}/api/v1/sync/a", method="POST")
        wait_until(lambda: _cell(agent)["syncStatus"] == "Synced", timeout=20)
        assert configmaps.get(name="app-config", namespace=namespace).data["color"] == "blue"
        assert _metric(agent, "gitops_agent_app_drifted_objects")[0].endswith(" 0.0")
        assert wait_until(lambda: _status_cli(agent).returncode == 0, timeout=10)

        git_repo.remove("app/other.yaml")
        git_repo.commit("other leaves git")
        cell = wait_until(
            lambda: (c := _cell(agent)).get("syncStatusReason", "").startswith("requires pruning") and c, 20
        )
        assert cell["syncStatus"] == "OutOfSync"
        assert cell["syncStatusReason"] == (
            "requires pruning: 1 object(s) removed from git are still live (sync.prune is off)"
        )
        assert configmaps.get(name="other", namespace=namespace) is not None  # never deleted with prune off
        assert _status_cli(agent).returncode == 1
        diff = subprocess.run(
            [sys.executable, "-m", "agent.cli", "diff", "--config", str(config)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert diff.returncode == 1, diff.stdout + diff.stderr
        said = "requires pruning (removed from git; sync.prune is off, so a sync keeps it)"
        assert f"{said} ConfigMap {namespace}/other" in diff.stdout.replace("\n", " ")

        configmaps.delete(name="other", namespace=namespace)  # pruned by hand: nothing left to prune
        request(f"{agent.base}/api/v1/sync/a", method="POST")
        wait_until(lambda: _cell(agent)["syncStatus"] == "Synced", timeout=20)
        assert _status_cli(agent).returncode == 0
    finally:
        agent.stop()


def _deployment(name: str, ns: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name, "image": image}]}},
        },
    }


def test_sync_wait_fails_when_health_never_comes_and_passes_when_it_does(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str
) -> None:
    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    # the test cluster's kubelet reports a pod whose image tag says "broken" NotReady, for ever
    git_repo.write_objects("web/web.yaml", ns, _deployment("web", namespace, "example/web:broken"))
    git_repo.commit("a release that never gets Ready")
    config = make_config(git_repo, [cluster_entry(tc, "a", ["web"], namespace)])

    def sync(*flags: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "agent.cli", "sync", "--config", str(config), *flags]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    broken = sync("--wait", "--timeout", "20s")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"not Healthy within 20s: Deployment.apps {namespace}/web" in broken.stdout.replace("\n", " ")
    assert "0/1 apps Healthy" in broken.stdout
    assert "waiting for health" in broken.stderr  # progress while it waits, naming what is not Healthy yet

    as_json = json.loads(sync("--wait", "--timeout", "2s", "--json").stdout)["a"]
    assert as_json["health"] in ("Progressing", "Degraded")
    web = next(o for o in as_json["objects"] if o["kind"] == "Deployment")
    assert web["health"] == as_json["health"]
    assert web["healthMessage"]

    assert sync().returncode == 0  # without --wait (and sync.wait off) health is not waited for

    git_repo.write_objects("web/web.yaml", ns, _deployment("web", namespace, "example/web:1.0"))
    git_repo.commit("fixed")
    fixed = sync("--wait", "--timeout", "60s", "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    result = json.loads(fixed.stdout)["a"]
    assert result["health"] == "Healthy"
    assert {o["kind"]: o["health"] for o in result["objects"]} == {"Namespace": "Healthy", "Deployment": "Healthy"}

    bad = sync("--wait", "--timeout", "soon")
    assert bad.returncode == 2
    assert "--timeout 'soon'" in bad.stderr


def test_a_drifted_object_is_not_dry_run_again_for_each_status_update(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str
) -> None:
    """A drifted Deployment's controller keeps updating its status: each update is a watch event, and none of them
    costs a dry run; a new write to its spec does."""
    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("web/web.yaml", ns, _deployment("web", namespace, "example/web:1.0"))
    git_repo.commit()
    config = make_config(git_repo, [cluster_entry(tc, "a", ["web"], namespace)])
    runner, revision, checkout = runner_for(config, "a", watch=True)
    deployments = dynamic_client(tc).resources.get(api_version="apps/v1", kind="Deployment")

    def drifted() -> list[Any]:
        assert runner.drift is not None
        return [d for found in runner.drift.snapshot().by_app.values() for d in found]

    try:
        assert runner.reconcile(revision, checkout).ok
        deployments.patch(
            name="web", namespace=namespace, body={"spec": {"replicas": 3}},
            content_type="application/merge-patch+json", field_manager="kubectl-scale",
        )  # fmt: skip
        found = wait_until(drifted, timeout=5)
        assert found[0].fields == (".spec.replicas",)
        time.sleep(1.0)  # the controller's own status updates after the scale
        checked = runner.drift.confirmed
        assert runner.kube is not None
        path = runner.kube.path_of("apps", "v1", "Deployment", namespace, "web") + "/status"
        for i in range(5):
            runner.kube.request(
                "PATCH", path, body={"status": {"observedGeneration": 1, "collisionCount": i}},
                content_type="application/merge-patch+json",
            )  # fmt: skip
        time.sleep(1.0)
        assert runner.drift.confirmed == checked  # five status updates, no dry run
        assert [d.key.name for d in drifted()] == ["web"]
        deployments.patch(
            name="web", namespace=namespace, body={"spec": {"replicas": 4}},
            content_type="application/merge-patch+json", field_manager="kubectl-scale",
        )  # fmt: skip
        wait_until(lambda: runner.drift.confirmed > checked, timeout=5)  # a spec write is looked at again
    finally:
        runner.close()
