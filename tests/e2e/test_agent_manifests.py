"""manifests/ installs the agent itself with least privilege: agent.yaml is accepted whole and becomes Healthy
(non-root, read-only root filesystem, limits, probes, config from a ConfigMap, secrets from a Secret, under the
`restricted` Pod Security level); agent-target/rbac.yaml gives an identity that can sync what it allows and is
refused, with the verb and resource named, what it does not."""

from __future__ import annotations

import pathlib
import shutil
from typing import Any

import yaml

from agent.sources import manifests
from tests.conftest import REPO, GitRepo, cluster_entry, live_object, runner_for, target_identity


def test_agent_yaml_is_hardened_and_applies_healthy(git_repo: GitRepo, clusters: Any, make_config: Any) -> None:
    (tc,) = clusters(1)
    shutil.copytree(REPO / "manifests" / "agent", git_repo.path / "agent")
    git_repo.commit()
    docs = {m.key.kind: m.body for m in manifests.load_paths(git_repo.path, ["agent"])}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["envFrom"] == [{"secretRef": {"name": "gitops-agent-secrets"}}]
    assert yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])["server"]["token"] == {"env": "GITOPS_AGENT_TOKEN"}

    runner, revision, checkout = runner_for(make_config(git_repo, [cluster_entry(tc, "home", ["agent"])]), "home")
    try:
        result = runner.reconcile(revision, checkout, wait=True)
        assert result.ok, [(e.key, e.message) for e in result.failed]
        assert result.health is not None
        assert result.health.value == "Healthy", result.health_message
    finally:
        runner.close()


def test_target_rbac_allows_what_it_lists_and_names_what_it_refuses(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    limited, _ = target_identity(tc, make_config, tmp_path)

    git_repo.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ok", "namespace": namespace},
            "data": {"a": "b"},
        },
    )
    git_repo.write_objects(
        "cluster-wide/role.yaml",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{namespace}-x"},
            "rules": [],
        },
    )
    git_repo.commit("app")
    entry = {"name": "t", "kubeconfig": str(limited), "paths": ["app"]}
    runner, revision, checkout = runner_for(make_config(git_repo, [entry]), "t")
    try:
        result = runner.reconcile(revision, checkout)
        assert result.ok, [(e.key, e.message) for e in result.failed]
        assert live_object(tc, "v1", "ConfigMap", "ok", namespace) is not None
    finally:
        runner.close()
    refused_entry = {"name": "t2", "kubeconfig": str(limited), "paths": ["cluster-wide"]}
    runner, revision, checkout = runner_for(make_config(git_repo, [refused_entry]), "t2")
    try:
        result = runner.reconcile(revision, checkout)
        failed = [e for e in result.failed if e.key.kind == "ClusterRole"]
        assert failed, result
        message = failed[0].message
        assert "forbidden" in message
        assert 'cannot patch resource "clusterroles"' in message  # the first request it makes (a dry run), named
        assert "system:serviceaccount:gitops-agent:gitops-agent" in message
    finally:
        runner.close()
