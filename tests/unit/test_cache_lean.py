"""What a live cache entry keeps (``agent.clusters.cache.Entry``), and that drift detection reads it like the object."""

from __future__ import annotations

import pytest

from agent.clusters import cache
from agent.sync import selfheal
from reconcilers import diff, health, resources

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "uid": "0d3c1f9e-0000-4000-8000-000000000001",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "labels": {"app": "web", "gitops-agent.io/instance": "prod"},
        "annotations": {"gitops-agent.io/tracking": "prod:a:app", "deployment.kubernetes.io/revision": "2"},
        "managedFields": [
            {
                "manager": "gitops-agent",
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "time": "2026-01-01T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}, "f:\u00e9t\u00e9": {}}},
                    "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {'k:{"name":"web"}': {}}}}},
                },
            },
            {
                "manager": "kubectl-edit",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": "2026-01-01T00:00:03Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:paused": {}}},
            },
            {
                "manager": "kubectl-scale",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": "2026-01-01T00:00:02Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}},
            },
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "subresource": "status",
                "time": "2026-01-01T00:00:05Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {"f:replicas": {}}},
            },
        ],
    },
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": []}}},
    "status": {"replicas": 2, "readyReplicas": 2},
}


def lean(obj: resources.Body) -> resources.Body:
    return cache.Entry.of(obj, resources.ResourceKey.of(obj), "gitops-agent").body("gitops-agent")


def test_an_entry_keeps_what_drift_health_and_self_heal_read() -> None:
    kept = lean(DEPLOYMENT)
    assert set(kept["metadata"]) == {"name", "namespace", "resourceVersion", "generation", "managedFields"}
    ours, other = kept["metadata"]["managedFields"]
    assert isinstance(ours["fieldsV1"], str)
    # the last writer outside the status subresource, as self-heal names it when it fights us
    assert other == {"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-01T00:00:03Z"}
    assert selfheal.other_manager(kept, "gitops-agent") == selfheal.other_manager(DEPLOYMENT, "gitops-agent")
    assert "spec" not in kept  # health is judged when the entry is made: no spec or status is kept
    assert "status" not in kept


@pytest.mark.parametrize("pointers", [(), (("spec", "replicas"),), (("metadata", "labels", "app"), ("spec",))])
def test_owned_hash_of_an_entry_equals_the_objects(pointers: tuple[tuple[str, ...], ...]) -> None:
    kept = lean(DEPLOYMENT)
    assert diff.owned_hash(kept, "gitops-agent", pointers) == diff.owned_hash(DEPLOYMENT, "gitops-agent", pointers)
    assert diff.owned_hash(kept, "someone-else", pointers) == ""


def entry(obj: resources.Body) -> cache.Entry:
    return cache.Entry.of(obj, resources.ResourceKey.of(obj), "gitops-agent")


def test_an_entry_holds_the_health_of_its_object() -> None:
    """The verdict of :func:`reconcilers.health.assess` on the whole object, including rollouts in progress and
    deletions."""
    assert entry(DEPLOYMENT).health == health.assess(resources.ResourceKey.of(DEPLOYMENT), DEPLOYMENT)
    assert entry(DEPLOYMENT).health.status is health.Health.PROGRESSING  # no availableReplicas yet
    available = {
        **DEPLOYMENT,
        "status": {
            "observedGeneration": 3,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
    }
    assert entry(available).health.status is health.Health.HEALTHY
    deleting = {**available, "metadata": {**available["metadata"], "deletionTimestamp": "2026-01-01T00:00:09Z"}}
    assert entry(deleting).health == health.HealthStatus(health.Health.PROGRESSING, "being deleted")
    configmap = entry({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}})
    assert configmap.health.status is health.Health.HEALTHY


def test_equal_health_verdicts_are_one_shared_object() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "a", "namespace": "shop", "resourceVersion": "1"},
        "spec": {"type": "ClusterIP", "ports": [{"port": 80}]},
        "status": {"loadBalancer": {}},
    }
    other = {**service, "metadata": {**service["metadata"], "name": "b"}}
    a, b = entry(service), entry(other)
    assert a.health.status is health.Health.HEALTHY
    assert a.health is b.health
