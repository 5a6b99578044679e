"""Least privilege for namespaced desired state: an identity with only a Role in one namespace (no ClusterRole
at all) syncs it, keeping its inventory in that namespace; what it may not do is named precisely, both by the
sync and by ``clusters check``."""

from __future__ import annotations

import base64
import pathlib
from typing import Any

import yaml

from agent import config
from agent.clusters import checks
from tests.conftest import GitRepo, dynamic_client, live_object, runner_for, wait_until


def test_a_namespace_scoped_role_is_enough_and_the_missing_is_named(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    ns = namespace
    client = dynamic_client(tc)

    def create(api_version: str, kind: str, body: dict[str, Any]) -> None:
        client.resources.get(api_version=api_version, kind=kind).create(
            body=body, namespace=ns if kind != "Namespace" else None
        )

    create("v1", "Namespace", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    create("v1", "ServiceAccount", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}})
    create(
        "rbac.authorization.k8s.io/v1",
        "Role",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "deployer"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                }
            ],
        },
    )
    create(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "deployer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}],
        },
    )
    create(
        "v1",
        "Secret",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "deployer-token", "annotations": {"kubernetes.io/service-account.name": "deployer"}},
        },
    )
    secret = wait_until(
        lambda: (
            (s := live_object(tc, "v1", "Secret", "deployer-token", ns)) and (s.get("data") or {}).get("token") and s
        )
    )
    kubeconfig = yaml.safe_load(tc.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": "deployer", "user": {"token": base64.b64decode(secret["data"]["token"]).decode()}}]
    kubeconfig["contexts"][0]["context"]["user"] = "deployer"
    (tmp_path / "deployer").write_text(yaml.safe_dump(kubeconfig))

    git_repo.write_objects(
        "app/cm.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine"}, "data": {"a": "b"}}
    )
    git_repo.commit()
    entry = {"name": "t", "kubeconfig": str(tmp_path / "deployer"), "namespace": ns, "paths": ["app"]}
    path = make_config(git_repo, [entry], sync={"inventoryNamespace": ns, "prune": True})
    runner, revision, checkout = runner_for(path, "t", watch=False)
    try:
        result = runner.reconcile(revision, checkout)
        assert result.ok, (result.error, [e.message for e in result.failed])
        assert live_object(tc, "v1", "ConfigMap", "mine", ns)["data"] == {"a": "b"}
    finally:
        runner.close()

    # As `run` does (watches): the inventory watch lists and watches the inventory namespace only, which the
    # Role allows (ConfigMaps across namespaces it may not list), so the watch is current and holds the inventory.
    runner, revision, checkout = runner_for(path, "t", watch=True)
    try:
        for _ in range(2):
            again = runner.reconcile(revision, checkout)
            assert again.ok, (again.error, [e.message for e in again.failed])
        assert runner.inventories is not None
        held = wait_until(lambda: runner.inventories.snapshot())
        assert [c["metadata"]["namespace"] for c in held] == [ns]
        assert held[0]["metadata"]["name"].startswith("gitops-agent-inv-")
        assert runner.inventories.is_alive()
    finally:
        runner.close()

    git_repo.write_objects(
        "app/secret.yaml",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "nope"}, "stringData": {"k": "v"}},
    )
    git_repo.commit()
    runner, revision, checkout = runner_for(path, "t", watch=False)
    try:
        result = runner.reconcile(revision, checkout)
        failed = {e.key.kind: e.message for e in result.failed}
        assert 'cannot patch resource "secrets"' in failed["Secret"]
        assert f'in the namespace "{ns}"' in failed["Secret"]
    finally:
        runner.close()
    cfg = config.load_config(path)
    missing = checks.check(cfg, cfg.clusters[0], {"default": git_repo.path}).missing
    assert f'cannot create resource "secrets" in the namespace "{ns}" (app app)' in missing
    assert not any("configmaps" in m and "namespace" in m for m in missing)  # what it needs in its namespace is there

    # Without update (inventories are replaced with a PUT), watch (the inventory watch) and delete (the inventory of
    # an app that left), each is named.
    role = client.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="Role")
    role.patch(
        name="deployer",
        namespace=ns,
        body={"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "patch"]}]},
        content_type="application/merge-patch+json",
    )
    wanted = {f'cannot {verb} resource "configmaps" in the namespace "{ns}"' for verb in ("update", "watch", "delete")}
    trees = {"default": git_repo.path}
    wait_until(lambda: wanted <= set(checks.check(cfg, cfg.clusters[0], trees).missing), timeout=30)
