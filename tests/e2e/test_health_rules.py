"""Health rules for custom resources (issue 18): a CEL rule on a cert-manager-style Certificate, whose status the
test sets through the status subresource of a real API server: health follows it, a rule that errors at run time
makes the object Unknown with CEL's message, and ``sync.wait`` ends when the Certificate is Ready."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from reconcilers import health, resources
from tests.conftest import GitRepo, cluster_entry, runner_for, wait_until

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "certificates.cert-manager.io"},
    "spec": {
        "group": "cert-manager.io",
        "names": {
            "kind": "Certificate",
            "listKind": "CertificateList",
            "plural": "certificates",
            "singular": "certificate",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}
RULE = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "Certificate",
    "current": "status.conditions.exists(e, e.type == 'Ready' && e.status == 'True')",
    "failed": "status.conditions.exists(e, e.type == 'Ready' && e.status == 'False')",
}


def test_a_cel_rule_follows_a_certificates_status_and_ends_the_health_wait(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str
) -> None:
    (tc,) = clusters(1)
    git_repo.write_objects(
        "app/all.yaml",
        CRD,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"secretName": "web-tls", "dnsNames": ["web.example.com"]},
        },
    )
    git_repo.commit()
    config = make_config(git_repo, [cluster_entry(tc, "a", ["app"])], healthChecks=[RULE], sync={"timeout": "60s"})
    runner, revision, checkout = runner_for(config)
    key = resources.ResourceKey("cert-manager.io", "Certificate", namespace, "web")
    try:
        first = runner.reconcile(revision, checkout)
        assert first.ok, [(str(e.key), e.action.value, e.message) for e in first.entries if e.action.value != "created"]
        assert runner.live is not None
        assert not runner.live._reflectors[("cert-manager.io", "Certificate")].metadata_only  # watched with status
        # no status yet: the rule's expressions error (no conditions), the object is Unknown with CEL's message
        unknown = wait_until(lambda: (h := runner.health([key])[key]).status is health.Health.UNKNOWN and h)
        assert "health rule current" in unknown.message

        def set_status(conditions: list[dict[str, str]]) -> None:
            assert runner.kube is not None
            path = runner.kube.path_of("cert-manager.io", "v1", "Certificate", namespace, "web") + "/status"
            runner.kube.request(
                "PATCH", path, body={"status": {"conditions": conditions}}, content_type="application/merge-patch+json"
            )

        set_status([{"type": "Ready", "status": "False", "reason": "Pending"}])
        wait_until(lambda: runner.health([key])[key].status is health.Health.DEGRADED)

        # sync.wait: Issuing (no Ready condition) keeps it waiting; Ready True ends the wait, Healthy
        set_status([{"type": "Issuing", "status": "True"}])
        wait_until(lambda: runner.health([key])[key].status is health.Health.PROGRESSING)
        done: list[Any] = []
        waiter = threading.Thread(target=lambda: done.append(runner.reconcile(revision, checkout, wait=True)))
        started = time.monotonic()
        waiter.start()
        time.sleep(2)
        assert done == []  # still waiting for the Certificate
        set_status([{"type": "Ready", "status": "True"}])
        waiter.join(30)
        assert done, "the health wait did not end"
        assert done[0].health is health.Health.HEALTHY, done[0].health_message
        assert time.monotonic() - started < 30
    finally:
        runner.close()


def test_a_rule_that_does_not_compile_is_a_config_error_naming_rule_and_position(make_config: Any) -> None:
    from agent import config
    from reconcilers import errors

    path = make_config(
        "/nonexistent",
        [{"name": "a", "kubeconfig": "k", "paths": ["x"]}],
        healthChecks=[{**RULE, "failed": "status.conditions.exists(e, e.type == "}],
    )
    with pytest.raises(errors.ConfigError) as caught:
        config.load_config(path)
    message = str(caught.value)
    assert "healthChecks[0]: failed:" in message
    assert "1:39" in message or "Syntax error" in message
