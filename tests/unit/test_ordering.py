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
        "ServiceAccount",
        "Secret",
        "Deployment",
        "KopfExample",
        "HorizontalPodAutoscaler",
    ]
    assert next([m.key.kind for m in g] for g in stages[1].by_rank()) == ["ServiceAccount"]


def test_prune_order_is_apply_order_reversed() -> None:
    keys = [manifest("v1", k, "x").key for k in ("Namespace", "Deployment", "HorizontalPodAutoscaler", "ConfigMap")]
    assert [k.kind for k in ordering.prune_order(keys)] == [
        "HorizontalPodAutoscaler",
        "Deployment",
        "ConfigMap",
        "Namespace",
    ]


def test_resource_key_ignores_version_and_prints_readably() -> None:
    a = resources.ResourceKey.of(
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}}
    )
    b = resources.ResourceKey.of(
        {"apiVersion": "apps/v2", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}}
    )
    assert a == b
    assert str(a) == "Deployment.apps n/d"
    assert (
        str(resources.ResourceKey.of({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}))
        == "Namespace x"
    )


def configmap(data: dict[str, str], owners: list[dict[str, object]], rv: str = "5") -> dict[str, object]:
    meta = {"name": "c", "resourceVersion": rv, "generation": 1, "managedFields": owners}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def owner(manager: str, fields: dict[str, object], time: str = "2026-01-01T00:00:00Z") -> dict[str, object]:
    return {"manager": manager, "operation": "Apply", "apiVersion": "v1", "time": time, "fieldsV1": fields}


def test_would_change_ignores_bookkeeping_but_not_values_or_ownership() -> None:
    ours = owner("gitops-agent", {"f:data": {"f:a": {}}})
    live = configmap({"a": "1"}, [ours])
    later = owner("gitops-agent", {"f:data": {"f:a": {}}}, time="2026-02-02T00:00:00Z")
    assert not diff.would_change(live, configmap({"a": "1"}, [later], rv="6"), "gitops-agent")
    assert diff.would_change(live, configmap({"a": "2"}, [ours]), "gitops-agent")
    # first adoption: same values, but our manager would own more fields than it does
    adopted = configmap({"a": "1"}, [owner("gitops-agent", {"f:data": {"f:a": {}, "f:b": {}}})])
    assert diff.would_change(live, adopted, "gitops-agent")
    assert diff.would_change(None, live, "gitops-agent")
