"""Immutable fields against a real API server: a Deployment's ``spec.selector`` and a Job's ``spec.template`` changed
in git. Without opt-in the sync fails those objects naming the fields and how to opt in, while the app's other
objects sync; with Argo CD's ``Force=true,Replace=true``, the agent's ``Recreate=true`` and the app's
``sync.recreate`` (Flux's ``force``), each is deleted and created again (a new UID, the new selector), ``sync
--dry-run`` shows ``recreated`` beforehand and ``diff`` exits 0 after."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent import cli
from tests.conftest import GitRepo, cluster_entry, live_object
from tests.e2e.test_sync_corpora import ensure_namespace

ARGO = {"argocd.argoproj.io/sync-options": "Force=true,Replace=true"}
OWN = {"gitops-agent.io/sync-options": "Recreate=true"}


def deployment(name: str, ns: str, version: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {"app": name, "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }


def job(name: str, ns: str, message: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": {
            "suspend": True,  # never runs: the template is what changes
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["echo", message]}],
                }
            },
        },
    }


def cm(name: str, ns: str, v: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"v": v}}


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    return code, capsys.readouterr().out


def _uid(tc: Any, kind: str, api: str, name: str, ns: str) -> str:
    return str(live_object(tc, api, kind, name, ns)["metadata"]["uid"])


def test_immutable_changes_fail_naming_the_fields_unless_opted_in_then_the_objects_are_recreated(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    ns = namespace
    ensure_namespace(tc, ns)

    def write(version: str, opted: bool) -> None:
        git_repo.write_objects(
            "plain/objects.yaml", deployment("web", ns, version), job("migrate", ns, version), cm("other", ns, version)
        )
        git_repo.write_objects(
            "opted/objects.yaml",
            deployment("argo", ns, version, ARGO if opted else None),
            deployment("own", ns, version, OWN if opted else None),
            job("argo-job", ns, version, ARGO if opted else None),
        )
        git_repo.write_objects("forced/objects.yaml", deployment("forced", ns, version))
        git_repo.commit(version)

    write("v1", opted=False)
    entry = {**cluster_entry(tc, "a", [], ns), "labels": {}}
    apps = [
        {"name": "plain", "path": "plain"},
        {"name": "opted", "path": "opted"},
        {"name": "forced", "path": "forced", "sync": {"recreate": True}},
    ]
    config = str(make_config(git_repo, [entry], apps=apps))
    code, out = _run(capsys, "sync", "--config", config)
    assert code == 0, out
    before = {n: _uid(tc, "Deployment", "apps/v1", n, ns) for n in ("web", "argo", "own", "forced")}
    job_before = _uid(tc, "Job", "batch/v1", "argo-job", ns)

    write("v2", opted=False)  # no opt-in anywhere but the app with sync.recreate
    code, out = _run(capsys, "sync", "--config", config, "--json")
    assert code == 1
    entries = {(e["kind"], e["name"]): e for e in json.loads(out)["a"]["objects"]}
    web = entries[("Deployment", "web")]
    assert web["action"] == "failed"
    assert web["message"].startswith("immutable field(s) spec.selector changed: ")
    assert "argocd.argoproj.io/sync-options: Force=true,Replace=true" in web["message"]
    assert "sync.recreate: true" in web["message"]
    assert entries[("Job", "migrate")]["message"].startswith("immutable field(s) spec.template changed: ")
    assert entries[("ConfigMap", "other")]["action"] == "configured"  # the app's other objects sync
    assert live_object(tc, "v1", "ConfigMap", "other", ns)["data"] == {"v": "v2"}
    assert entries[("Deployment", "forced")]["action"] == "recreated"  # sync.recreate: no annotation needed
    assert _uid(tc, "Deployment", "apps/v1", "forced", ns) != before["forced"]

    write("v2", opted=True)  # the annotations are there, the change still to do
    code, out = _run(capsys, "sync", "--config", config, "--app", "opted", "--dry-run", "--json")
    planned = {(e["kind"], e["name"]): e for e in json.loads(out)["a"]["objects"]}
    for key in (("Deployment", "argo"), ("Deployment", "own"), ("Job", "argo-job")):
        assert planned[key]["action"] == "recreated", planned[key]
    assert planned[("Deployment", "argo")]["message"] == "recreate (immutable: spec.selector)"
    assert planned[("Job", "argo-job")]["message"] == "recreate (immutable: spec.template)"
    assert _uid(tc, "Deployment", "apps/v1", "argo", ns) == before["argo"]  # a dry run deleted nothing

    code, out = _run(capsys, "sync", "--config", config, "--app", "opted", "--json")
    assert code == 0, out
    for name in ("argo", "own"):
        live = live_object(tc, "apps/v1", "Deployment", name, ns)
        assert live["metadata"]["uid"] != before[name]
        assert live["spec"]["selector"]["matchLabels"] == {"app": name, "version": "v2"}
    assert _uid(tc, "Job", "batch/v1", "argo-job", ns) != job_before
    code, out = _run(capsys, "diff", "--config", config, "--app", "opted")
    assert code == 0, out
