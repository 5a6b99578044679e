"""Health on a real cluster: the fake kubelet makes pods Ready (or keeps a `broken` image NotReady, and fails a
`broken` Job), and the controllers report it; each kind's health follows."""

from __future__ import annotations

from typing import Any

from reconcilers import health
from tests.conftest import GitRepo, cluster_entry, runner_for, wait_until


def pod_spec(image: str, restart: str = "Always") -> dict[str, Any]:
    return {"restartPolicy": restart, "containers": [{"name": "app", "image": image}]}


def workload(kind: str, name: str, ns: str, image: str, **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    template = {"metadata": {"labels": labels}, "spec": pod_spec(image)}
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"matchLabels": labels}, "template": template, **spec},
    }
    return body


def job(name: str, ns: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"backoffLimit": 0, "template": {"spec": pod_spec(image, "Never")}},
    }


def test_health_of_each_workload_kind_on_a_real_cluster(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str
) -> None:
    (tc,) = clusters(1)
    ns = namespace
    git_repo.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        workload("Deployment", "good", ns, "example/app:1", replicas=2),
        workload("Deployment", "bad", ns, "example/app:2-broken", replicas=1),
        workload("StatefulSet", "db", ns, "example/db:1", replicas=2, serviceName="db"),
        workload("DaemonSet", "agent", ns, "example/agent:1"),
        job("ok", ns, "example/task:1"),
        job("fails", ns, "example/task:broken"),
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "lb", "namespace": ns},
            "spec": {"type": "LoadBalancer", "selector": {"app": "good"}, "ports": [{"port": 80}]},
        },
    )
    git_repo.commit()
    runner, revision, checkout = runner_for(make_config(git_repo, [cluster_entry(tc, "a", ["app"])]))
    try:
        result = runner.reconcile(revision, checkout)
        assert result.ok, result.entries
        expected = {
            ("Namespace", ns): health.Health.HEALTHY,
            ("Deployment", "good"): health.Health.HEALTHY,
            ("Deployment", "bad"): health.Health.PROGRESSING,
            ("StatefulSet", "db"): health.Health.HEALTHY,
            ("DaemonSet", "agent"): health.Health.HEALTHY,
            ("Job", "ok"): health.Health.HEALTHY,
            ("Job", "fails"): health.Health.DEGRADED,
            ("PersistentVolumeClaim", "data"): health.Health.PROGRESSING,  # no volume provisioner here
            ("Service", "lb"): health.Health.PROGRESSING,  # no load balancer here
        }
        keys = {(k.kind, k.name): k for k in result.desired}

        def settled() -> bool:
            now = runner.health(list(result.desired))
            return all(now[keys[k]].status is v for k, v in expected.items())

        wait_until(settled, timeout=60, interval=0.25)
        now = runner.health(list(result.desired))
        assert "1 of 1 updated replicas available" not in now[keys[("Deployment", "bad")]].message
        assert health.aggregate(h.status for h in now.values()) is health.Health.DEGRADED
        waited = runner.reconcile(revision, checkout, wait=True)
        assert waited.health is health.Health.DEGRADED
        assert "Job" in waited.health_message
    finally:
        runner.close()
