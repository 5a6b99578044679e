"""Self-heal and ignore rules against a real cluster: each kind of out-of-band change (edit, scale, label
removed, object deleted) is corrected from the watch, without a scheduled sync; a fight with another writer is
detected and reported with its field manager; ignored fields (HPA replicas, configured pointers) are left alone."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest

from reconcilers import inventory, resources
from tests.conftest import GitRepo, cluster_entry, dynamic_client, live_object, runner_for, wait_until

MANAGER = "intruder"


@pytest.fixture
def healing(git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str) -> Any:
    (tc,) = clusters(1)
    git_repo.write_objects(
        "app/app.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": namespace, "labels": {"team": "blue"}},
            "data": {"mode": "fast", "tunable": "1"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": namespace},
            "stringData": {"token": "from-git"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "example/web:1"}]},
                },
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "scaled", "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "scaled"}},
                "template": {
                    "metadata": {"labels": {"app": "scaled"}},
                    "spec": {"containers": [{"name": "web", "image": "example/web:1"}]},
                },
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "scaled", "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scaled"},
                "minReplicas": 2,
                "maxReplicas": 6,
            },
        },
    )
    git_repo.commit()
    config = make_config(
        git_repo,
        [cluster_entry(tc, "a", ["app"])],
        sync={"selfHeal": True},
        ignoreDifferences=[{"kind": "ConfigMap", "name": "settings", "jsonPointers": ["/data/tunable"]}],
    )
    runner, revision, checkout = runner_for(config)
    result = runner.reconcile(revision, checkout)
    assert result.ok, result
    wait_until(lambda: all(runner.live.get(k) for k in result.desired))
    yield tc, runner, revision, checkout, namespace
    runner.close()


def cm(tc: Any, namespace: str) -> Any:
    return live_object(tc, "v1", "ConfigMap", "settings", namespace)


def patch(tc: Any, api_version: str, kind: str, name: str, namespace: str, body: Any, manager: str = MANAGER) -> None:
    api = dynamic_client(tc).resources.get(api_version=api_version, kind=kind)
    api.patch(
        name=name, namespace=namespace, body=body, content_type="application/merge-patch+json", field_manager=manager
    )


def test_an_edited_field_is_restored(healing: Any) -> None:
    tc, _, _, _, ns = healing
    patch(tc, "v1", "ConfigMap", "settings", ns, {"data": {"mode": "slow"}})
    wait_until(lambda: cm(tc, ns)["data"]["mode"] == "fast")


def test_a_secret_applied_from_string_data_is_restored(healing: Any) -> None:
    """stringData is stored as data: an edit of data must count as drift of what git said."""
    tc, _, _, _, ns = healing
    tampered = base64.b64encode(b"tampered").decode()
    patch(tc, "v1", "Secret", "creds", ns, {"data": {"token": tampered}})
    expected = base64.b64encode(b"from-git").decode()
    wait_until(lambda: live_object(tc, "v1", "Secret", "creds", ns)["data"]["token"] == expected)


def test_a_scaled_deployment_is_scaled_back(healing: Any) -> None:
    tc, _, _, _, ns = healing
    api = dynamic_client(tc).resources.get(api_version="apps/v1", kind="Deployment")
    api.patch(
        name="web",
        namespace=ns,
        body={"spec": {"replicas": 5}},
        content_type="application/merge-patch+json",
        field_manager="kubectl-scale",
    )
    wait_until(lambda: live_object(tc, "apps/v1", "Deployment", "web", ns)["spec"]["replicas"] == 2)


def test_removed_labels_come_back(healing: Any) -> None:
    tc, _, _, _, ns = healing
    patch(tc, "v1", "ConfigMap", "settings", ns, {"metadata": {"labels": {"team": None}}})
    wait_until(lambda: cm(tc, ns)["metadata"]["labels"].get("team") == "blue")
    # without the instance label the object leaves the watch's selection: a DELETED event, healed all the same
    patch(tc, "v1", "ConfigMap", "settings", ns, {"metadata": {"labels": {inventory.INSTANCE_LABEL: None}}})
    wait_until(lambda: inventory.INSTANCE_LABEL in cm(tc, ns)["metadata"]["labels"])


def test_a_deleted_object_is_recreated(healing: Any) -> None:
    tc, _, _, _, ns = healing
    uid = cm(tc, ns)["metadata"]["uid"]
    dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").delete(name="settings", namespace=ns)
    wait_until(lambda: (c := cm(tc, ns)) is not None and c["metadata"]["uid"] != uid)
    assert cm(tc, ns)["data"]["mode"] == "fast"


def test_ignored_fields_are_neither_healed_nor_drift(healing: Any) -> None:
    tc, runner, revision, checkout, ns = healing
    patch(tc, "v1", "ConfigMap", "settings", ns, {"data": {"tunable": "99"}})  # ignoreDifferences /data/tunable
    api = dynamic_client(tc).resources.get(api_version="apps/v1", kind="Deployment")
    api.patch(
        name="scaled",
        namespace=ns,
        body={"spec": {"replicas": 5}},  # as the HPA would
        content_type="application/merge-patch+json",
        field_manager="horizontal-pod-autoscaler",
    )
    time.sleep(1.0)  # give self-heal every chance to (wrongly) act
    assert cm(tc, ns)["data"]["tunable"] == "99"
    assert live_object(tc, "apps/v1", "Deployment", "scaled", ns)["spec"]["replicas"] == 5
    result = runner.reconcile(revision, checkout)
    assert {e.key.name: e.action.value for e in result.entries}["scaled"] == "unchanged"
    assert {e.key.kind: e.action.value for e in result.entries}["ConfigMap"] == "unchanged"
    assert live_object(tc, "apps/v1", "Deployment", "scaled", ns)["spec"]["replicas"] == 5
    assert cm(tc, ns)["data"]["tunable"] == "99"


def test_a_fight_is_detected_and_reported_with_the_other_manager(healing: Any) -> None:
    tc, runner, _, _, ns = healing
    stop = threading.Event()

    def fighter() -> None:
        while not stop.is_set():
            patch(tc, "v1", "ConfigMap", "settings", ns, {"data": {"mode": "mine"}}, manager="fighter")
            stop.wait(0.3)

    thread = threading.Thread(target=fighter)
    thread.start()
    try:
        key = resources.ResourceKey("", "ConfigMap", ns, "settings")
        fight = wait_until(lambda: runner.healer.fights.get(key), timeout=30)
    finally:
        stop.set()
        thread.join()
    assert fight.manager == "fighter"
    assert fight.corrections == 5
    status = runner.status()["fighting"]
    assert status == [
        {
            "group": "",
            "kind": "ConfigMap",
            "namespace": ns,
            "name": "settings",
            "status": "Fighting",
            "manager": "fighter",
            "corrections": 5,
        }
    ]
    time.sleep(0.5)
    assert cm(tc, ns)["data"]["mode"] == "mine"  # no longer corrected
