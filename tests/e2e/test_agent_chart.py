"""The agent's own Helm chart (charts/gitops-agent): ``helm lint`` clean, its values schema refusing bad values with
a message naming them, and the chart, rendered by the agent itself as an app from a git repository, giving a
Deployment the test cluster's fake kubelet marks Ready, with the image and the config the values give; its
upgrades, with values in git, rolled out cluster by cluster and health-gated like the delegate: a new tag
everywhere, a ``broken`` tag (never Ready under the fake kubelet) halted at the first cluster and rolled back."""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

import pytest
import yaml

from agent import cli
from agent.sources.render import helm
from tests.conftest import REPO, GitRepo, agent_writes, audit_offset, dynamic_client, live_object, wait_until
from tests.e2e.test_faults import Agent
from tests.e2e.test_run_status import free_port
from tests.e2e.test_sync_corpora import ensure_namespace

CHART = REPO / "charts" / "gitops-agent"


def helm_run(*args: str) -> subprocess.CompletedProcess[str]:
    binary = helm.binary()
    assert binary is not None
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_chart_lints_clean() -> None:
    done = helm_run("lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("flag", "named"),
    [
        ("replicas=-1", "/replicas"),
        ("image.tag=bad tag", "/image/tag"),
        ("image.digest=sha256:short", "/image/digest"),
        ("port=70000", "/port"),
        ("config.instance=Not_A_Name", "/config/instance"),
        ("imageTag=1.0", "imageTag"),  # a misspelt key is refused, not ignored
    ],
)
def test_the_values_schema_refuses_a_bad_value_naming_it(flag: str, named: str) -> None:
    for command in (["lint", "--strict"], ["template", "t"]):
        done = helm_run(*command, str(CHART), "--set", flag)
        assert done.returncode != 0, (command, flag)
        assert named in done.stdout + done.stderr, done.stdout + done.stderr


def test_the_chart_synced_by_the_agent_runs_ready_with_the_values_image_and_config(
    git_repo: GitRepo,
    clusters: Any,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (a,) = clusters(1)
    ensure_namespace(a, namespace)
    git_repo.copy_tree(CHART, "charts/gitops-agent")
    git_repo.commit("the agent's chart")
    inner = {"instance": "inner", "clusters": [{"name": "self", "inCluster": True, "paths": ["fleet"]}]}
    values = {
        "image": {"repository": "registry.example/platform/gitops-agent", "tag": "1.2.3"},
        "config": inner,
        "secrets": {"values": {"GIT_TOKEN": "s3cr3t-value"}},
        "inClusterTarget": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},
        "networkPolicy": {"enabled": True},
    }
    release = f"agent-{namespace}"[:40]
    app = {
        "name": "agent",
        "path": "charts/gitops-agent",
        "namespace": namespace,
        "helm": {"releaseName": release, "values": values},
    }
    entry = {"name": "a", "kubeconfig": str(a.kubeconfig), "namespace": namespace}
    config = make_config(git_repo, [entry], apps=[app])
    code = cli.main(["sync", "--config", str(config), "--wait", "--timeout", "90s", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)["a"]
    assert "s3cr3t-value" not in captured.out + captured.err
    kinds = {o["kind"] for o in result["objects"]}
    assert kinds >= {"Deployment", "ConfigMap", "Secret", "ServiceAccount", "Service", "PodDisruptionBudget"}
    assert kinds >= {"NetworkPolicy", "ClusterRole", "ClusterRoleBinding"}

    name = f"{release}-gitops-agent" if "gitops-agent" not in release else release
    deployment = live_object(a, "apps/v1", "Deployment", name, namespace)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/platform/gitops-agent:1.2.3"
    assert pod["automountServiceAccountToken"] is True  # an in-cluster target needs the pod's token
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert (deployment.get("status") or {}).get("readyReplicas") == 1  # the fake kubelet's Ready pod
    stored = live_object(a, "v1", "ConfigMap", f"{name}-config", namespace)
    assert stored is not None
    assert yaml.safe_load(stored["data"]["config.yaml"]) == {**inner, "server": {"listen": "0.0.0.0:8080"}}  # + default

    offset = audit_offset(a)  # a resync writes nothing
    code = cli.main(["sync", "--config", str(config), "--json"])
    capsys.readouterr()
    assert code == 0
    assert agent_writes(a, offset) == []


def test_the_agents_chart_upgrades_from_git_health_gated_and_a_broken_tag_rolls_back(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    tcs = clusters(2)
    for tc in tcs:
        ensure_namespace(tc, namespace)
    git_repo.copy_tree(CHART, "charts/gitops-agent")
    repository = "registry.example/platform/gitops-agent"

    def release(tag: str) -> str:
        values = {"image": {"repository": repository, "tag": tag}, "config": {"instance": "inner", "clusters": []}}
        git_repo.write("agent-values.yaml", yaml.safe_dump(values))
        return git_repo.commit(f"agent {tag}")

    first = release("1.0.0")
    name = "agent"  # release name: the app's; its objects are agent-gitops-agent
    app = {"name": name, "path": "charts/gitops-agent", "helm": {"valuesFiles": ["agent-values.yaml"]}}
    config = make_config(
        git_repo,
        [{"name": f"c{i}", "kubeconfig": str(tc.kubeconfig), "namespace": namespace} for i, tc in enumerate(tcs)],
        apps=[app],
        rollout={"order": ["c0", "c1"], "rollback": "auto"},
        sync={"interval": "1h", "timeout": "8s"},
        server={"listen": f"127.0.0.1:{free_port()}"},
    )
    doc = yaml.safe_load(config.read_text())
    doc["source"]["interval"] = "1s"
    config.write_text(yaml.safe_dump(doc))
    agent = Agent(config, tmp_path / "agent.log")

    def state(sha: str) -> str | None:
        found = (agent.status().get("appRollouts") or {}).get(name) or {}
        return str(found["state"]) if found.get("revision") == sha else None

    def image(tc: Any) -> str:
        d = live_object(tc, "apps/v1", "Deployment", "agent-gitops-agent", namespace)
        return str(d["spec"]["template"]["spec"]["containers"][0]["image"])

    try:
        agent.wait_ready()
        wait_until(lambda: state(first) == "Complete", timeout=90)
        assert [image(tc) for tc in tcs] == [f"{repository}:1.0.0"] * 2

        second = release("1.1.0")  # an upgrade, one cluster after the other, each Healthy before the next
        wait_until(lambda: state(second) == "Complete", timeout=90)
        assert [image(tc) for tc in tcs] == [f"{repository}:1.1.0"] * 2
        for tc in tcs:
            ready = live_object(tc, "apps/v1", "Deployment", "agent-gitops-agent", namespace)["status"]
            assert ready.get("readyReplicas") == 1

        third = release("1.2.0-broken")  # never Ready: halted at c0, rolled back there; c1 never sees it
        wait_until(lambda: state(third) == "Halted", timeout=120)
        wait_until(lambda: image(tcs[0]) == f"{repository}:1.1.0", timeout=30)
        assert image(tcs[1]) == f"{repository}:1.1.0"
        rs = dynamic_client(tcs[1]).resources.get(api_version="apps/v1", kind="ReplicaSet")
        seen = {
            i["spec"]["template"]["spec"]["containers"][0]["image"]
            for i in rs.get(namespace=namespace).to_dict()["items"]
        }
        assert f"{repository}:1.2.0-broken" not in seen
    finally:
        agent.stop()
