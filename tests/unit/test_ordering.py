"""Apply order and the drift decision, on plain dicts."""

from __future__ import annotations

from reconcilers import diff, ordering, resources


def manifest(api_version: str, kind: str, name: str, namespace: str = "") -> resources.Manifest:
    body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}}
    return resources.Manifest(resources.ResourceKey.of(body), body, "f.yaml", 0)


def test_stages_put_crds_namespaces_and_cluster_rbac_first() -> None:
    ms = [
        manifest("autoscaling/v2", "HorizontalPodAutoscaler", "h", "n"),
        manifest("apps/v1", "Deployment", "d", "n"),
        manifest("kopf.dev/v1", "KopfExample", "k", "n"),
        manifest("v1", "ServiceAccount", "sa", "n"),
        manifest("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "crb"),
        manifest("v1", "Namespace", "n"),
        manifest("apiextensions.k8s.io/v1", "CustomResourceDefinition", "crd"),
        manifest("v1", "Secret", "s", "n"),
    ]
    stages = ordering.stages(ms)
    assert [s.name for s in stages] == ["prerequisites", "resources"]
    assert [m.key.kind for m in stages[0].manifests] == ["CustomResourceDefinition", "Namespace", "ClusterRoleBinding"]
    assert [m.key.kind for m in stages[1].manifests] == [
        "ServiceAccount", "Secret", "Deployment", "KopfExample", "HorizontalPodAutoscaler"]
    assert [[m.key.kind for m in g] for g in stages[1].by_rank()][0] == ["ServiceAccount"]


def test_prune_order_is_apply_order_reversed() -> None:
    keys = [manifest("v1", k, "x").key for k in ("Namespace", "Deployment", "HorizontalPodAutoscaler", "ConfigMap")]
    assert [k.kind for k in ordering.prune_order(keys)] == ["HorizontalPodAutoscaler", "Deployment", "ConfigMap", "Namespace"]


def test_resource_key_ignores_version_and_prints_readably() -> None:
    a = resources.ResourceKey.of({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}})
    b = resources.ResourceKey.of({"apiVersion": "apps/v2", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}})
    assert a == b and str(a) == "Deployment.apps n/d"
    assert str(resources.ResourceKey.of({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})) == "Namespace x"


def owned(manager: str, fields: dict[str, object]) -> dict[str, object]:
    return {"manager": manager, "operation": "Apply", "apiVersion": "v1", "fieldsV1": fields}


def test_would_change_ignores_bookkeeping_but_not_values_or_ownership() -> None:
    live = {"kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "5", "generation": 1,
            "managedFields": [owned("gitops-agent", {"f:data": {}})]}, "data": {"a": "1"}}
    same = {**live, "metadata": {**live["metadata"], "resourceVersion": "5",  # type: ignore[dict-item]
            "managedFields": [{**owned("gitops-agent", {"f:data": {}}), "time": "later"}]}}
    assert not diff.would_change(live, {**same, "metadata": {**same["metadata"], "managedFields": live["metadata"]["managedFields"]}}, "gitops-agent")  # type: ignore[index]
    assert diff.would_change(live, {**live, "data": {"a": "2"}}, "gitops-agent")
    adopted = {**live, "metadata": {**live["metadata"], "managedFields": [owned("kubectl", {"f:data": {}}),  # type: ignore[dict-item]
               owned("gitops-agent", {"f:data": {"f:a": {}}})]}}
    assert diff.would_change(live, adopted, "gitops-agent")
    assert diff.would_change(None, live, "gitops-agent")
