"""An app's ``kustomize`` options against a real test cluster: podinfo's own kustomization
(../shared/corpora/public/stefanprodan-podinfo/kustomize, as it is), synced with a name prefix, an image override,
a patch and common labels, as Argo CD's ``source.kustomize`` would deploy it: the objects live under their new
names, with the new image, the patch and the labels."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from agent import cli
from tests.conftest import CORPORA, GitRepo, live_object
from tests.e2e.test_sync_corpora import ensure_namespace

PODINFO = CORPORA / "stefanprodan-podinfo" / "kustomize"


def test_kustomize_options_rename_retag_and_patch_the_rendered_objects(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    shutil.copytree(PODINFO, git_repo.path / "podinfo")
    git_repo.commit("podinfo")
    options = {
        "namePrefix": "dev-",
        "images": ["ghcr.io/stefanprodan/podinfo=registry.example/podinfo:6.9.9"],
        "commonLabels": {"team": "web"},
        "patches": [{"patch": "- op: replace\n  path: /spec/replicas\n  value: 0", "target": {"kind": "Deployment"}}],
    }
    config = make_config(
        git_repo,
        [{"name": "c", "kubeconfig": str(tc.kubeconfig)}],
        apps=[{"name": "podinfo", "path": "podinfo", "namespace": namespace, "kustomize": options}],
    )
    capsys.readouterr()
    code = cli.main(["sync", "--config", str(config), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    names = {(o["kind"], o["name"]) for a in json.loads(out)["c"]["apps"] for o in a["objects"]}
    assert names == {
        ("Deployment", "dev-podinfo"),
        ("Service", "dev-podinfo"),
        ("HorizontalPodAutoscaler", "dev-podinfo"),
    }, names
    live = live_object(tc, "apps/v1", "Deployment", "dev-podinfo", namespace)
    assert live is not None
    assert live["spec"]["replicas"] == 0
    assert live["spec"]["selector"]["matchLabels"]["team"] == "web"
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/podinfo:6.9.9"
    assert live_object(tc, "apps/v1", "Deployment", "podinfo", namespace) is None
    hpa = live_object(tc, "autoscaling/v2", "HorizontalPodAutoscaler", "dev-podinfo", namespace)
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"]["name"] == "dev-podinfo"  # kustomize follows the reference
