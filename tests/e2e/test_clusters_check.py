"""``gitops-agent clusters check`` against real clusters: reachable, identity, version, and exactly which
permissions the desired state needs are missing (named as the API server names them)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from agent import cli, config
from agent.clusters import checks
from tests.conftest import GitRepo, cluster_entry, target_identity


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
    results = {r.cluster: r for r in checks.check_all(cfg, None, git_repo.path)}

    admin = results["admin"]
    assert admin.ok, admin
    assert admin.user == "kubernetes-admin"
    assert "system:masters" in admin.groups
    assert admin.version.startswith("v1.34")
    assert admin.checked > 10

    limited_result = results["limited"]
    assert limited_result.missing == tuple(
        f'cannot {verb} resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope'
        for verb in ("create", "get", "list", "patch", "watch")
    )
    assert not any("configmaps" in m for m in limited_result.missing)

    assert results["down"].error is not None
    assert "refused" in results["down"].error.lower()

    assert cli.main(["clusters", "check", "--config", str(path), "--cluster", "admin"]) == 0
    out = capsys.readouterr().out
    assert "kubernetes-admin" in out
    assert cli.main(["clusters", "check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert 'cannot patch resource "clusterroles"' in out
