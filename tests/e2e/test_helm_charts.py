"""Helm charts in a git source, rendered with the real ``helm template`` and synced to real clusters: the public
corpus's podinfo chart (two clusters, a resync writes nothing), ingress-nginx (its Helm hooks run as PreSync and
PostSync hooks, per-cluster values), and a chart whose template is broken."""

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


def test_ingress_nginx_runs_its_helm_hooks_as_sync_phases_on_two_clusters(
    corpora_repo: GitRepo,
    clusters: Any,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ingress-nginx installs its admission webhook with Helm hooks, mapped as Argo CD maps them: the pre-install
    ServiceAccount, RBAC and certificate Job run in PreSync, before any of the chart's objects; the post-install
    patch Job runs in PostSync, once the controller is Healthy; ``hook-succeeded`` deletes them when the sync ends.
    None is desired state. Per-cluster values (the replica count from a cluster label); a resync runs no hook and
    writes nothing."""
    a, b = clusters(2)
    for tc in (a, b):
        ensure_namespace(tc, namespace)
    app = {
        "name": "ingress",
        "path": INGRESS,
        "namespace": namespace,
        "helm": {
            "values": {"controller": {"service": {"type": "ClusterIP"}}},
            "valuesFrom": [{"source": "values", "path": "ingress-${CLUSTER_LABEL_size}.yaml", "optional": True}],
        },
    }
    entries = [
        {"name": n, "kubeconfig": str(tc.kubeconfig), "namespace": namespace, "labels": {"size": size}}
        for n, tc, size in (("a", a, "small"), ("b", b, "large"))
    ]
    values = GitRepo(tmp_path / "values")
    values.write("ingress-large.yaml", "controller:\n  replicaCount: 2\n")
    values.commit("values for large clusters")
    sources = {"values": {"url": str(values.path), "cacheDir": str(tmp_path / "cache-values")}}
    config = make_config(corpora_repo, entries, apps=[app], sources=sources, sync={"waveTimeout": "60s"})
    offsets = {n: audit_offset(tc) for n, tc in (("a", a), ("b", b))}
    code, results, err = sync(config, capsys)
    assert code == 0, (err, {n: r.get("error") for n, r in results.items()})
    for name, tc, replicas in (("a", a, 1), ("b", b, 2)):
        runs = [(h["phase"], h["kind"], h["result"]) for h in results[name]["hooks"]]
        assert ("PreSync", "Job", "Succeeded") in runs
        assert ("PostSync", "Job", "Succeeded") in runs
        assert ("PreSync", "ServiceAccount", "Succeeded") in runs
        jobs = [h["name"] for h in results[name]["hooks"] if h["kind"] == "Job"]
        assert {o["kind"] for o in results[name]["objects"]} >= {"Deployment", "ValidatingWebhookConfiguration"}
        assert not {o["name"] for o in results[name]["objects"]} & set(jobs)  # hooks are not desired state
        writes = [
            (e["verb"], (e.get("objectRef") or {}).get("resource"))
            for e in agent_writes(tc, offsets[name])
            if (e.get("objectRef") or {}).get("namespace") != "gitops-agent"
        ]
        creates = [i for i, w in enumerate(writes) if w == ("create", "jobs")]
        first_apply = next(i for i, w in enumerate(writes) if w[0] == "patch")
        assert creates[0] < first_apply < creates[1]  # PreSync job, the chart, then the PostSync job
        assert all(live_object(tc, "batch/v1", "Job", job, namespace) is None for job in jobs)  # hook-succeeded
        controller = live_object(tc, "apps/v1", "Deployment", "ingress-ingress-nginx-controller", namespace)
        assert controller["spec"]["replicas"] == replicas
    offsets = {n: audit_offset(tc) for n, tc in (("a", a), ("b", b))}
    code, again, err = sync(config, capsys)
    assert code == 0, err
    for name, tc in (("a", a), ("b", b)):
        assert "hooks" not in again[name]
        assert agent_writes(tc, offsets[name]) == []


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
    from agent.sources.render import helm

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


def test_podinfo_from_git_with_values_prod_its_hook_per_cluster_values_updates_and_prunes(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The corpus's podinfo chart in git with its ``values-prod.yaml``, its pre-install hook Job on, and values per
    cluster: each cluster gets its own; the hook runs (PreSync) and is deleted (hook-succeeded); a values change in
    git configures only the object it changes; a template removed from git prunes its object."""
    a, b = clusters(2)
    for tc in (a, b):
        ensure_namespace(tc, namespace)
    git_repo.copy_tree(CORPORA / PODINFO, "charts/podinfo")
    git_repo.write("values/a.yaml", "replicaCount: 1\nui:\n  message: hello from a\n")
    git_repo.write("values/b.yaml", "replicaCount: 2\nui:\n  message: hello from b\n")
    git_repo.commit("podinfo and its values per cluster")
    app = {
        "name": "podinfo",
        "path": "charts/podinfo",
        "namespace": namespace,
        "sync": {"prune": True},
        "helm": {
            "valuesFiles": ["charts/podinfo/values-prod.yaml", "values/${CLUSTER_NAME}.yaml"],
            "values": {"hooks": {"preInstall": {"job": {"enabled": True}}}, "redis": {"enabled": False}},
        },
    }
    entries = [{"name": n, "kubeconfig": str(tc.kubeconfig), "namespace": namespace} for n, tc in (("a", a), ("b", b))]
    config = make_config(git_repo, entries, apps=[app])
    code, results, err = sync(config, capsys)
    assert code == 0, (err, results)
    for name, tc, replicas in (("a", a, 1), ("b", b, 2)):
        assert [(h["phase"], h["name"], h["result"]) for h in results[name]["hooks"]] == [
            ("PreSync", "podinfo-pre-install", "Succeeded")
        ]
        assert live_object(tc, "batch/v1", "Job", "podinfo-pre-install", namespace) is None
        hpa = live_object(tc, "autoscaling/v2", "HorizontalPodAutoscaler", "podinfo", namespace)
        assert hpa["spec"]["minReplicas"] == replicas  # values-prod.yaml turns the HPA on: replicas are its own
        deployment = live_object(tc, "apps/v1", "Deployment", "podinfo", namespace)
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["PODINFO_UI_MESSAGE"] == f"hello from {name}"

    git_repo.write("values/a.yaml", "replicaCount: 1\nui:\n  message: changed on a\n")
    git_repo.commit("a new message on a")
    code, results, err = sync(config, capsys)
    assert code == 0, err
    changed = {n: [(o["kind"], o["action"]) for o in results[n]["objects"] if o["action"] != "unchanged"]
               for n in ("a", "b")}  # fmt: skip
    assert changed == {"a": [("Deployment", "configured")], "b": []}
    assert [(h["phase"], h["result"]) for h in results["a"]["hooks"]] == [("PreSync", "Succeeded")]  # a change
    assert "hooks" not in results["b"]  # nothing changed there: no hook

    git_repo.remove("charts/podinfo/templates/service.yaml")
    git_repo.commit("no service")
    code, results, err = sync(config, capsys)
    assert code == 0, err
    for name, tc in (("a", a), ("b", b)):
        pruned = [(o["kind"], o["name"]) for o in results[name]["objects"] if o["action"] == "pruned"]
        assert pruned == [("Service", "podinfo")]
        assert live_object(tc, "v1", "Service", "podinfo", namespace) is None


def test_a_release_installed_by_helm_install_is_adopted_and_its_release_secret_left_alone(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """``helm install`` first (the real Helm, against the test cluster), then the app of the same chart and release:
    its objects are taken over (no delete, no re-create: same UIDs), and Helm's release Secret is named as kept."""
    from tests.chartservers import helm

    (a,) = clusters(1)
    ensure_namespace(a, namespace)
    helm("install", "web", str(CORPORA / PODINFO), "--namespace", namespace, "--kubeconfig", str(a.kubeconfig),
         "--set", "redis.enabled=false", home=tmp_path / "helm-home")  # fmt: skip
    before = live_object(a, "apps/v1", "Deployment", "web-podinfo", namespace)
    git_repo.copy_tree(CORPORA / PODINFO, "charts/podinfo")
    git_repo.commit()
    app = {"name": "web", "path": "charts/podinfo", "namespace": namespace,
           "helm": {"values": {"redis": {"enabled": False}}}}  # fmt: skip
    config = make_config(git_repo, [{"name": "a", "kubeconfig": str(a.kubeconfig), "namespace": namespace}],
                         apps=[app])  # fmt: skip
    offset = audit_offset(a)
    code, results, err = sync(config, capsys)
    assert code == 0, (err, results)
    after = live_object(a, "apps/v1", "Deployment", "web-podinfo", namespace)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["annotations"]["gitops-agent.io/tracking"].endswith(":app:web")
    kept = [o for o in results["a"]["objects"] if o["action"] == "kept"]
    assert [(o["kind"], o["name"]) for o in kept] == [("Secret", "sh.helm.release.v1.web.v1")]
    assert "left alone" in kept[0]["message"]
    assert [e for e in agent_writes(a, offset) if e["verb"] == "delete"] == []
    assert live_object(a, "v1", "Secret", "sh.helm.release.v1.web.v1", namespace) is not None
