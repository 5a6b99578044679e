"""``gitops-agent clusters check`` against real clusters: reachable, identity, version, and exactly which
permissions each app's desired state needs are missing (named as the API server names them, with the app), required
told from optional; with ``--print-rbac`` applied, a namespace-only identity syncs an app of Deployments."""

from __future__ import annotations

import base64
import pathlib
import subprocess
from typing import Any

import pytest
import yaml

from agent import cli, config
from agent.clusters import checks
from tests.conftest import GitRepo, cluster_entry, dynamic_client, target_identity, wait_until
from tests.e2e.test_trustworthy_status import _deployment

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_check_names_identity_version_and_missing_permissions(
    git_repo: GitRepo,
    clusters: Any,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tc,) = clusters(1)
    limited, _ = target_identity(tc, make_config, tmp_path)
    git_repo.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"}, "rules": []},
    )
    git_repo.commit()
    dead = yaml.safe_load(tc.kubeconfig.read_text())
    dead["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    (tmp_path / "dead").write_text(yaml.safe_dump(dead))
    path = make_config(
        git_repo,
        [
            cluster_entry(tc, "admin", ["app"]),
            {"name": "limited", "kubeconfig": str(limited), "paths": ["app"]},
            {"name": "down", "kubeconfig": str(tmp_path / "dead"), "paths": ["app"]},
        ],
    )
    cfg = config.load_config(path)
    results = {r.cluster: r for r in checks.check_all(cfg, None, {"default": git_repo.path})}

    admin = results["admin"]
    assert admin.ok, admin
    assert admin.user == "kubernetes-admin"
    assert "system:masters" in admin.groups
    assert admin.version.startswith("v1.34")
    assert admin.checked > 10

    limited_result = results["limited"]
    assert limited_result.missing == tuple(
        f'cannot {verb} resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope (app app)'
        for verb in ("create", "get", "patch")
    )
    assert [w for w in limited_result.warnings if "clusterroles" in w] == [
        f'cannot {verb} resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope'
        " (app app): optional, objects are read one by one instead of from a watch"
        for verb in ("list", "watch")
    ]
    assert not any("configmaps" in m for m in limited_result.missing)

    assert results["down"].error is not None
    assert "refused" in results["down"].error.lower()

    assert cli.main(["clusters", "check", "--config", str(path), "--cluster", "admin"]) == 0
    out = capsys.readouterr().out
    assert "kubernetes-admin" in out
    assert cli.main(["clusters", "check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert 'cannot patch resource "clusterroles"' in out


def _namespace_only_identity(tc: Any, namespace: str, tmp_path: pathlib.Path) -> pathlib.Path:
    """A kubeconfig whose ServiceAccount token may do anything with ConfigMaps in ``namespace`` and nothing else."""
    client = dynamic_client(tc)

    def make(api_version: str, kind: str, body: dict[str, Any]) -> None:
        client.resources.get(api_version=api_version, kind=kind).create(body=body, namespace=namespace)

    client.resources.get(api_version="v1", kind="Namespace").create(
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    meta = {"name": "limited", "namespace": namespace}
    make("v1", "ServiceAccount", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta})
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]
    make("rbac.authorization.k8s.io/v1", "Role", {"kind": "Role", "metadata": meta, "rules": rules})
    binding = {
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "limited"},
        "subjects": [{"kind": "ServiceAccount", "name": "limited", "namespace": namespace}],
    }
    make("rbac.authorization.k8s.io/v1", "RoleBinding", binding)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {**meta, "annotations": {"kubernetes.io/service-account.name": "limited"}},
    }
    make("v1", "Secret", secret)
    secrets = client.resources.get(api_version="v1", kind="Secret")
    found = wait_until(
        lambda: (secrets.get(name="limited", namespace=namespace).to_dict().get("data") or {}).get("token")
    )
    kubeconfig = yaml.safe_load(tc.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": "limited", "user": {"token": base64.b64decode(found).decode()}}]
    kubeconfig["contexts"][0]["context"]["user"] = "limited"
    path = tmp_path / "limited-kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


def test_apps_are_checked_with_required_told_from_optional_and_the_printed_rbac_is_enough(
    git_repo: GitRepo,
    clusters: Any,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tc,) = clusters(1)
    limited = _namespace_only_identity(tc, namespace, tmp_path)
    git_repo.write_objects("web/web.yaml", _deployment("web", namespace, "example/web:1.0"))
    git_repo.commit()
    path = make_config(
        git_repo,
        [{"name": "ns-only", "kubeconfig": str(limited), "namespace": namespace}],
        apps=[{"name": "web", "path": "web", "clusters": {"names": ["ns-only"]}}],
        sync={"inventoryNamespace": namespace},
    )

    assert cli.main(["clusters", "check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    user = f"system:serviceaccount:{namespace}:limited"
    assert user in out
    for verb in ("create", "get", "patch"):
        assert (
            f'cannot {verb} resource "deployments" in API group "apps" in the namespace "{namespace}" (app web)' in out
        )
    for verb in ("list", "watch"):
        assert (
            f'cannot {verb} resource "deployments" in API group "apps" at the cluster scope (app web): optional'
        ) in out
    assert '"configmaps"' not in out  # the inventories: its Role allows them
    assert cli.main(["sync", "--config", str(path)]) == 1  # what the check foretold: forbidden
    assert "forbidden" in capsys.readouterr().out

    assert cli.main(["clusters", "check", "--config", str(path), "--print-rbac"]) == 1
    printed = capsys.readouterr().out
    docs = list(yaml.safe_load_all(printed))
    assert {(d["kind"], d["metadata"].get("namespace")) for d in docs} == {
        ("Role", namespace), ("RoleBinding", namespace), ("ClusterRole", None), ("ClusterRoleBinding", None)
    }  # fmt: skip
    applied = subprocess.run(
        [str(REPO / "build" / "kubectl"), "--kubeconfig", str(tc.kubeconfig), "apply", "-f", "-"],
        input=printed, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert cli.main(["sync", "--config", str(path)]) == 0
    assert cli.main(["clusters", "check", "--config", str(path)]) == 0
