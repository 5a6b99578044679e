"""The inventory's record of intent against a real API server: written before the first write, carrying the
entries the dry runs of the creates foretell, so a first sync writes its inventory once; a create refused on
write (after its dry run passed) leaves no foretold entry behind."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from agent import cli
from agent import config as agent_config
from agent.clusters import kubeconfig as agent_clusters
from reconcilers import inventory, resources
from tests.conftest import GitRepo, agent_writes, audit_events, audit_offset, cluster_entry, dynamic_client, wait_until


def cm(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": {}}


def create_namespace(tc: Any, name: str) -> None:
    dynamic_client(tc).resources.get(api_version="v1", kind="Namespace").create(
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )


def stored(config: Any, path: str) -> dict[resources.ResourceKey, inventory.Entry]:
    """The inventory entries of ``path`` on cluster ``a`` as the cluster holds them."""
    cfg = agent_config.load_config(config)
    kube = agent_clusters.connect(cfg.clusters[0])
    try:
        tracking = inventory.Tracking(yaml.safe_load(config.read_text())["instance"], "a")
        store = inventory.Store(kube, tracking, cfg.sync.inventory_namespace, cfg.sync.field_manager)
        return dict(store.read([path])[path].entries)
    finally:
        kube.close()


def sync(config: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = cli.main(["sync", "--config", str(config), "--json"])
    return code, json.loads(capsys.readouterr().out)["a"]


def test_a_first_sync_writes_its_inventory_once_and_the_foretold_entries_prove_the_resync(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    create_namespace(tc, namespace)
    git_repo.write_objects("app/cms.yaml", *(cm(f"c{i}", namespace) for i in range(3)))
    git_repo.commit()
    config = make_config(git_repo, [cluster_entry(tc, "a", ["app"], namespace)])
    offset = audit_offset(tc)
    code, result = sync(config, capsys)
    assert code == 0, result
    assert result["counts"]["created"] == 3
    inventories = [
        (e["verb"], e["objectRef"].get("name", ""))
        for e in agent_writes(tc, offset)
        if e["objectRef"].get("namespace") == "gitops-agent"
        and e["objectRef"]["resource"] == "configmaps"
        and e["responseStatus"]["code"] < 400  # a create the missing namespace refused is sent again
    ]
    assert [verb for verb, name in inventories if name.startswith("gitops-agent-inv-")] == ["create"]
    entries = stored(config, "app")
    assert sorted(k.name for k in entries) == ["c0", "c1", "c2"]
    assert all(e.desired and e.owned for e in entries.values())  # foretold by the dry runs, as the writes made them

    # A fresh agent proves the resync from its live cache and those entries alone: no dry run, no write.
    offset = audit_offset(tc)
    code, result = sync(config, capsys)
    assert (code, result["counts"]["unchanged"]) == (0, 3)
    sent = [e["requestURI"] for e in audit_events(tc, offset) if e.get("stage") == "ResponseComplete"]
    sent = [uri for uri in sent if namespace in uri or "gitops-agent-inv-" in uri]
    assert sent == []


def test_a_create_refused_on_write_after_its_dry_run_passed_leaves_no_foretold_entry(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ValidatingAdmissionPolicy that lets dry runs through and refuses the real create (admission's
    ``request.dryRun``): the inventory keeps the object, owned, with an unknown entry, not the foretold one."""
    (tc,) = clusters(1)
    create_namespace(tc, namespace)
    client = dynamic_client(tc)
    policy = f"refuse-on-write-{namespace}"
    policies = client.resources.get(api_version="admissionregistration.k8s.io/v1", kind="ValidatingAdmissionPolicy")
    policies.create(
        body={
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["configmaps"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "request.dryRun == true || object.metadata.name != 'refused'",
                        "message": "refused on write",
                    }
                ],
            },
        }
    )
    bindings = client.resources.get(
        api_version="admissionregistration.k8s.io/v1", kind="ValidatingAdmissionPolicyBinding"
    )
    bindings.create(
        body={
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
            },
        }
    )
    try:
        configmaps = client.resources.get(api_version="v1", kind="ConfigMap")

        def refusing() -> bool:
            try:
                configmaps.create(body=cm("refused", namespace), namespace=namespace, query_params=[("dryRun", "All")])
                configmaps.create(body=cm("refused", namespace), namespace=namespace)
            except Exception as e:  # the policy is in force once the real create is refused
                return "refused on write" in str(e)
            configmaps.delete(name="refused", namespace=namespace)
            return False

        wait_until(refusing, timeout=30, interval=0.2)

        git_repo.write_objects("app/cms.yaml", cm("accepted", namespace), cm("refused", namespace))
        git_repo.commit()
        config = make_config(git_repo, [cluster_entry(tc, "a", ["app"], namespace)])
        code, result = sync(config, capsys)
        assert code != 0
        actions = {o["name"]: (o["action"], o["message"]) for o in result["objects"]}
        assert actions["accepted"] == ("created", "")
        assert actions["refused"][0] == "failed", actions
        assert "refused on write" in actions["refused"][1], actions
        entries = {k.name: e for k, e in stored(config, "app").items()}
        assert entries["accepted"].desired
        assert entries["accepted"].owned
        assert (entries["refused"].desired, entries["refused"].owned) == ("", "")  # still ours, its state unknown
    finally:  # cluster-scoped: the shared test cluster keeps no policy of this test
        bindings.delete(name=policy)
        policies.delete(name=policy)
