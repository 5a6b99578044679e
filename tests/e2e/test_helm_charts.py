"""Helm charts in a git source, rendered with the real ``helm template`` and synced to real clusters: the public
corpus's podinfo chart (two clusters, a resync writes nothing), ingress-nginx (its install hooks are refused with
a clear error and nothing is written until sync phases exist), and a chart whose template is broken."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from agent import cli
from tests.conftest import CORPORA, GitRepo, agent_writes, audit_offset, cluster_entry, live_object
from tests.e2e.test_sync_corpora import ensure_namespace

PODINFO = "stefanprodan-podinfo/charts/podinfo"
INGRESS = "kubernetes-ingress-nginx/charts/ingress-nginx"


def sync(config: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = cli.main(["sync", "--config", str(config), "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out or "{}"), captured.err


def test_the_podinfo_chart_syncs_to_two_clusters_and_resyncs_for_free(
    corpora_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = clusters(2)
    for tc in (a, b):
        ensure_namespace(tc, namespace)
    config = make_config(
        corpora_repo, [cluster_entry(a, "a", [PODINFO], namespace), cluster_entry(b, "b", [PODINFO], namespace)]
    )
    code, results, err = sync(config, capsys)
    assert code == 0, err
    for name, tc in (("a", a), ("b", b)):
        objects = results[name]["objects"]
        assert {(o["kind"], o["name"]) for o in objects} == {("Deployment", "podinfo"), ("Service", "podinfo")}
        assert {o["source"] for o in objects} == {
            f"{PODINFO.rsplit('/', 1)[0]}/podinfo/templates/deployment.yaml#0",
            f"{PODINFO.rsplit('/', 1)[0]}/podinfo/templates/service.yaml#0",
        }
        deployment = live_object(tc, "apps/v1", "Deployment", "podinfo", namespace)
        assert deployment["metadata"]["labels"]["app.kubernetes.io/name"] == "podinfo"
        assert deployment["metadata"]["labels"]["helm.sh/chart"].startswith("podinfo-")
    offsets = {n: audit_offset(tc) for n, tc in (("a", a), ("b", b))}
    code, again, err = sync(config, capsys)
    assert code == 0, err
    for name, tc in (("a", a), ("b", b)):
        assert {o["action"] for o in again[name]["objects"]} == {"unchanged"}
        assert agent_writes(tc, offsets[name]) == []


def test_chart_hooks_are_refused_with_a_clear_error_and_nothing_is_written(
    corpora_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """ingress-nginx installs its admission webhook with pre-install hooks: until sync phases exist they are
    refused (never applied as plain objects), naming the template, and the cluster gets no write."""
    (a,) = clusters(1)
    ensure_namespace(a, namespace)
    config = make_config(corpora_repo, [cluster_entry(a, "a", [INGRESS], namespace)])
    offset = audit_offset(a)
    code, results, _ = sync(config, capsys)
    assert code == 2
    error = results["a"]["error"]
    assert "kubernetes-ingress-nginx/charts/ingress-nginx/templates/admission-webhooks/job-patch/" in error
    assert "Helm hook (helm.sh/hook: pre-install" in error
    assert agent_writes(a, offset) == []


def test_a_broken_template_names_the_chart_and_helms_message(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (a,) = clusters(1)
    git_repo.copy_tree(CORPORA / PODINFO, "charts/podinfo")
    git_repo.write("charts/podinfo/templates/broken.yaml", "kind: ConfigMap\nname: {{ .Values.nope.deeper }}\n")
    git_repo.commit("a template that fails")
    config = make_config(git_repo, [cluster_entry(a, "a", ["charts"], namespace)])
    offset = audit_offset(a)
    code, results, _ = sync(config, capsys)
    assert code == 2
    error = results["a"]["error"]
    assert error.startswith("charts/podinfo: helm template failed:"), error
    assert "templates/broken.yaml" in error
    assert "nope" in error
    assert agent_writes(a, offset) == []


def test_charts_see_the_target_clusters_capabilities_and_render_once(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``.Capabilities`` is the target cluster's (its version, its served API versions, as on install); the same
    chart, values and capabilities render once, and a resync renders nothing."""
    from agent.sources import helm

    a, b = clusters(2)
    git_repo.write("caps/Chart.yaml", "apiVersion: v2\nname: caps\nversion: 0.1.0\n")
    git_repo.write(
        "caps/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caps\ndata:\n"
        '  kube: "{{ .Capabilities.KubeVersion.Version }}"\n'
        '  deployments: "{{ .Capabilities.APIVersions.Has "apps/v1/Deployment" }}"\n'
        '  widgets: "{{ .Capabilities.APIVersions.Has "example.com/v1/Widget" }}"\n',
    )
    git_repo.commit("a chart reading .Capabilities")
    for tc in (a, b):
        ensure_namespace(tc, namespace)
    config = make_config(
        git_repo, [cluster_entry(a, "a", ["caps"], namespace), cluster_entry(b, "b", ["caps"], namespace)]
    )
    before = helm.renders()
    code, _, err = sync(config, capsys)
    assert code == 0, err
    assert 1 <= helm.renders() - before <= 2  # once per distinct set of capabilities
    for tc in (a, b):
        data = live_object(tc, "v1", "ConfigMap", "caps", namespace)["data"]
        assert data["kube"].startswith("v1.34."), data  # the test clusters' Kubernetes, not Helm's default
        assert data == {"kube": data["kube"], "deployments": "true", "widgets": "false"}
    rendered = helm.renders()
    code, again, err = sync(config, capsys)
    assert code == 0, err
    assert helm.renders() == rendered  # nothing changed: nothing rendered
    assert {o["action"] for o in again["a"]["objects"]} == {"unchanged"}
