"""Sync phases, waves and hooks against a real test cluster, through ``gitops-agent sync`` / ``diff``.

Order is proven from the API server's audit log (the order of the agent's writes), never from timing: a wave whose
Deployment never becomes Ready holds the next wave back; PreSync hooks run (and fail) before any Sync-phase write;
SyncFail hooks run on failure; PostSync hooks wait for every wave; hooks are deleted by policy and never drift.
The test cluster's fake kubelet ends a pod whose image tag contains ``fail`` Failed, ``broken`` never Ready.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from agent import cli
from tests.conftest import GitRepo, agent_writes, audit_offset, cluster_entry, dynamic_client, live_object, wait_until

ARGO_HOOK = "argocd.argoproj.io/hook"
ARGO_WAVE = "argocd.argoproj.io/sync-wave"
ARGO_POLICY = "argocd.argoproj.io/hook-delete-policy"


def cm(name: str, ns: str, wave: int | None = None, data: str = "1", **annotations: str) -> dict[str, Any]:
    if wave is not None:
        annotations[ARGO_WAVE] = str(wave)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "data": {"v": data},
    }


def deployment(name: str, ns: str, image: str, wave: int | None = None) -> dict[str, Any]:
    annotations = {ARGO_WAVE: str(wave)} if wave is not None else {}
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": image}]}},
        },
    }


def job(generate_name: str, ns: str, phase: str, image: str = "task:1", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": generate_name, "namespace": ns, "annotations": {ARGO_HOOK: phase, **annotations}},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": image}]}},
        },
    }


@pytest.fixture
def app(git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str) -> Any:
    (tc,) = clusters(1)
    namespaces = dynamic_client(tc).resources.get(api_version="v1", kind="Namespace")
    namespaces.create(body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    config = make_config(
        git_repo, [cluster_entry(tc, "a", ["app"], namespace)], sync={"prune": True, "waveTimeout": "4s"}
    )
    return tc, git_repo, config, namespace


def sync(config: Any, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    code = cli.main(["sync", "--config", str(config), "--json", *extra])
    return code, json.loads(capsys.readouterr().out or "{}").get("a", {})


def writes(tc: Any, since: int) -> list[tuple[str, str, str]]:
    """(verb, resource, name) of each write the agent sent since ``since``, inventories left out."""
    out = []
    for e in agent_writes(tc, since):
        ref = e.get("objectRef") or {}
        if ref.get("resource") == "configmaps" and str(ref.get("name", "")).startswith("gitops-agent-inventory"):
            continue
        if ref.get("namespace") in ("gitops-agent",):
            continue
        out.append((e["verb"], ref.get("resource", ""), ref.get("name", "")))
    return out


def hook_jobs(tc: Any, ns: str) -> list[dict[str, Any]]:
    jobs = dynamic_client(tc).resources.get(api_version="batch/v1", kind="Job")
    return [j.to_dict() for j in jobs.get(namespace=ns, label_selector="gitops-agent.io/hook").items]


def first(found: list[tuple[str, str, str]], verb: str, resource: str, name: str = "") -> int:
    return next(i for i, w in enumerate(found) if w[0] == verb and w[1] == resource and (not name or w[2] == name))


def test_a_wave_that_never_becomes_healthy_holds_the_next_back_until_git_fixes_it(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tc, repo, config, ns = app
    repo.write_objects("app/first.yaml", cm("first", ns, wave=0))
    repo.write_objects("app/web.yaml", deployment("web", ns, "web:broken", wave=1))
    repo.write_objects("app/last.yaml", cm("last", ns, wave=2))
    repo.commit("three waves, the second broken")
    since = audit_offset(tc)
    code, result = sync(config, capsys)
    assert code == 1
    assert result["errorKind"] == "wave"
    assert f"Sync wave 1 not Healthy after 4 s: waiting for Deployment.apps {ns}/web: Progressing" in result["error"]
    actions = {o["name"]: o["action"] for o in result["objects"]}
    assert actions == {"first": "created", "web": "created", "last": "skipped"}
    assert live_object(tc, "v1", "ConfigMap", "last", ns) is None
    assert [w[2] for w in writes(tc, since)] == ["first", "web"]

    repo.write_objects("app/web.yaml", deployment("web", ns, "web:2", wave=1))
    repo.commit("fix the tag")
    since = audit_offset(tc)
    code, result = sync(config, capsys)
    assert code == 0, result.get("error")
    found = writes(tc, since)
    assert first(found, "patch", "deployments", "web") < first(found, "patch", "configmaps", "last")
    assert live_object(tc, "v1", "ConfigMap", "last", ns) is not None
    plan = [(s["phase"], s["wave"], s["objects"]) for s in result["plans"]["app"]]
    assert plan == [("Sync", 0, 1), ("Sync", 1, 1), ("Sync", 2, 1)]


def test_a_presync_hook_runs_before_the_change_is_deleted_on_success_and_not_on_a_noop_resync(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tc, repo, config, ns = app
    repo.write_objects("app/config.yaml", cm("config", ns))
    repo.write_objects("app/migrate.yaml", job("migrate-", ns, "PreSync", **{ARGO_POLICY: "HookSucceeded"}))
    repo.commit("a migration before the app")
    since = audit_offset(tc)
    code, result = sync(config, capsys)
    assert code == 0, result.get("error")
    (run,) = result["hooks"]
    assert (run["phase"], run["result"], run["kind"]) == ("PreSync", "Succeeded", "Job")
    assert run["name"].startswith("migrate-")
    assert run["name"] != "migrate-"  # named by the API server
    assert run["origin"] == "app/migrate.yaml#0"
    found = writes(tc, since)
    assert first(found, "create", "jobs") < first(found, "patch", "configmaps", "config")
    assert ("delete", "jobs", run["name"]) in found
    assert hook_jobs(tc, ns) == []
    assert [o["name"] for o in result["objects"]] == ["config"]  # the hook is not desired state

    since = audit_offset(tc)
    code, result = sync(config, capsys)
    assert code == 0
    assert "hooks" not in result
    assert writes(tc, since) == []


def test_a_failed_presync_hook_stops_the_sync_before_any_write_and_runs_syncfail(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tc, repo, config, ns = app
    repo.write_objects("app/config.yaml", cm("config", ns, data="1"))
    repo.commit("v1")
    assert sync(config, capsys)[0] == 0
    repo.write_objects("app/config.yaml", cm("config", ns, data="2"))
    repo.write_objects("app/migrate.yaml", job("migrate-", ns, "PreSync", image="migrate:fail"))
    repo.write_objects("app/cleanup.yaml", job("cleanup-", ns, "SyncFail", **{ARGO_POLICY: "HookSucceeded"}))
    repo.commit("v2 with a migration that fails")
    since = audit_offset(tc)
    code, result = sync(config, capsys)
    assert code == 1
    assert result["errorKind"] == "hook"
    assert "PreSync wave 0: hook Job.batch" in result["error"]
    assert "backoff limit" in result["error"]
    runs = [(h["phase"], h["result"]) for h in result["hooks"]]
    assert runs == [("PreSync", "Failed"), ("SyncFail", "Succeeded")]
    found = writes(tc, since)
    assert [w for w in found if w[1] == "configmaps"] == []  # zero Sync-phase writes
    assert [w[1] for w in found if w[0] == "create"] == ["jobs", "jobs"]
    assert live_object(tc, "v1", "ConfigMap", "config", ns)["data"] == {"v": "1"}
    failed = [j for j in hook_jobs(tc, ns) if j["metadata"]["name"].startswith("migrate-")]
    assert len(failed) == 1  # kept for inspection: BeforeHookCreation deletes it on the next run

    repo.write_objects("app/migrate.yaml", job("migrate-", ns, "PreSync", image="migrate:2"))
    repo.commit("fix the migration")
    code, result = sync(config, capsys)
    assert code == 0, result.get("error")
    assert [(h["phase"], h["result"]) for h in result["hooks"]] == [("PreSync", "Succeeded")]
    assert live_object(tc, "v1", "ConfigMap", "config", ns)["data"] == {"v": "2"}
    migrations = [j for j in hook_jobs(tc, ns) if j["metadata"]["name"].startswith("migrate-")]
    assert [j["metadata"]["name"] for j in migrations] == [result["hooks"][0]["name"]]  # the failed run replaced


def test_a_postsync_hook_waits_for_every_wave_to_be_healthy(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    tc, repo, config, ns = app
    repo.write_objects("app/web.yaml", deployment("web", ns, "web:broken"))
    repo.write_objects("app/smoke.yaml", job("smoke-", ns, "PostSync"))
    repo.commit("a broken app and a smoke test")
    since = audit_offset(tc)
    code, result = sync(config, capsys)
    assert code == 1
    assert result["errorKind"] == "wave"
    assert "hooks" not in result
    assert [w for w in writes(tc, since) if w[1] == "jobs"] == []

    repo.write_objects("app/web.yaml", deployment("web", ns, "web:2"))
    repo.commit("fix")
    since = audit_offset(tc)
    code, result = sync(config, capsys)
    assert code == 0, result.get("error")
    assert [(h["phase"], h["result"]) for h in result["hooks"]] == [("PostSync", "Succeeded")]
    found = writes(tc, since)
    assert first(found, "patch", "deployments", "web") < first(found, "create", "jobs")
    web = live_object(tc, "apps/v1", "Deployment", "web", ns)
    available = next(c for c in web["status"]["conditions"] if c["type"] == "Available")
    assert available["status"] == "True"


def test_before_hook_creation_replaces_the_previous_run(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    tc, repo, config, ns = app
    repo.write_objects("app/config.yaml", cm("config", ns, data="1"))
    repo.write_objects("app/check.yaml", job("check-", ns, "PreSync"))  # default policy: BeforeHookCreation
    repo.commit("v1")
    code, result = sync(config, capsys)
    assert code == 0, result.get("error")
    first_run = result["hooks"][0]["name"]
    assert [j["metadata"]["name"] for j in hook_jobs(tc, ns)] == [first_run]  # kept after success
    repo.write_objects("app/config.yaml", cm("config", ns, data="2"))
    repo.commit("v2")
    code, result = sync(config, capsys)
    assert code == 0, result.get("error")
    second_run = result["hooks"][0]["name"]
    assert second_run != first_run
    assert [j["metadata"]["name"] for j in hook_jobs(tc, ns)] == [second_run]


def test_diff_shows_the_plan_and_a_dry_run_writes_nothing_and_runs_no_hook(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tc, repo, config, ns = app
    repo.write_objects("app/config.yaml", cm("config", ns, wave=-1))
    repo.write_objects("app/web.yaml", deployment("web", ns, "web:1", wave=1))
    repo.write_objects("app/migrate.yaml", job("migrate-", ns, "PreSync"))
    repo.write_objects("app/cleanup.yaml", job("cleanup-", ns, "SyncFail"))
    repo.commit("two waves and hooks")
    since = audit_offset(tc)
    assert cli.main(["diff", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    for line in (
        f"PreSync wave 0: hook Job.batch {ns}/migrate- (Planned: dry run: not created)",
        "Sync wave -1: 1 object(s)",
        "Sync wave 1: 1 object(s)",
        f"SyncFail wave 0: hook Job.batch {ns}/cleanup- (on failure)",
    ):
        assert line in out, out
    code, result = sync(config, capsys, "--dry-run")
    assert code == 0, result.get("error")
    assert [(h["phase"], h["result"]) for h in result["hooks"]] == [("PreSync", "Planned")]
    assert agent_writes(tc, since) == []
    assert hook_jobs(tc, ns) == []


ARGO_FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "argocd-hooks"


def test_argo_cd_documented_hooks_and_waves_sync_unchanged(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder written for Argo CD syncs as it is: PreSync migration first, waves in order, PostSync
    notification last; no SyncFail on success; the hooks are never drift; a resync runs no hook and writes
    nothing; an object marked ``Prune=false`` is kept when git drops it, and prune goes highest wave first."""
    tc, repo, config, ns = app
    for f in ARGO_FIXTURES.glob("*.yaml"):
        repo.write(f"app/{f.name}", f.read_text())
    repo.commit("as Argo CD's docs write it")
    since = audit_offset(tc)
    code, result = sync(config, capsys)
    assert code == 0, [(o["name"], o["action"], o["message"]) for o in result["objects"]]
    assert [(h["phase"], h["result"]) for h in result["hooks"]] == [("PreSync", "Succeeded"), ("PostSync", "Succeeded")]
    found = writes(tc, since)
    order = [first(found, "create", "jobs")]
    order += [first(found, "patch", r, n) for r, n in (("configmaps", "settings"), ("services", "frontend"))]
    order += [first(found, "patch", "deployments", "backend")]
    order += [max(i for i, w in enumerate(found) if w[:2] == ("create", "jobs"))]
    assert order == sorted(order), found
    assert hook_jobs(tc, ns) == []  # HookSucceeded
    assert {s["phase"] for s in result["plans"]["app"]} == {"PreSync", "Sync", "PostSync", "SyncFail"}

    assert cli.main(["diff", "--config", str(config)]) == 0  # hooks are not drift
    capsys.readouterr()
    since = audit_offset(tc)
    code, result = sync(config, capsys)
    assert code == 0
    assert "hooks" not in result
    assert writes(tc, since) == []

    for name in ("backend.yaml", "settings.yaml", "audit-trail.yaml"):
        repo.remove(f"app/{name}")
    repo.commit("drop the backend, its settings and the audit trail")
    code, result = sync(config, capsys, "--force-prune")
    assert code == 0, result.get("error")
    gone = [(o["kind"], o["name"]) for o in result["objects"] if o["action"] == "pruned"]
    assert gone == [("Deployment", "backend"), ("Service", "backend"), ("ConfigMap", "settings")]  # wave 1, then -1
    (kept,) = [o for o in result["objects"] if o["action"] == "kept"]
    assert (kept["name"], kept["message"]) == (
        "audit-trail",
        "not pruned: argocd.argoproj.io/sync-options: Prune=false",
    )
    assert live_object(tc, "v1", "ConfigMap", "audit-trail", ns) is not None


def test_a_custom_resource_is_validated_when_its_wave_comes_after_its_crd(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tc, repo, config, ns = app
    group = f"{ns}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}", "annotations": {ARGO_WAVE: "0"}},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": ns, "annotations": {ARGO_WAVE: "1"}},
        "spec": {"size": 3},
    }
    repo.write_objects("app/crd.yaml", crd)
    repo.write_objects("app/widget.yaml", widget)
    repo.write_objects("app/migrate.yaml", job("migrate-", ns, "PreSync"))
    repo.commit("a CRD, then its resource one wave later, after a PreSync hook")
    code, result = sync(config, capsys)
    assert code == 0, (result.get("error"), [o["message"] for o in result["objects"]])
    assert {o["name"]: o["action"] for o in result["objects"]} == {f"widgets.{group}": "created", "w": "created"}
    assert live_object(tc, f"{group}/v1", "Widget", "w", ns)["spec"] == {"size": 3}


def test_skip_dry_run_on_missing_resource_waits_for_its_wave_and_an_operator_made_crd(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A custom resource marked ``SkipDryRunOnMissingResource=true`` whose CRD nothing in git defines (an operator
    installs it) is not refused up front: it fails at its own wave while the kind is not served, the other waves
    apply, and once the CRD exists the next sync applies it."""
    tc, repo, config, ns = app
    group = f"op-{ns}.example.com"
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Gadget",
        "metadata": {"name": "g", "namespace": ns, "annotations": {
            ARGO_WAVE: "1", "argocd.argoproj.io/sync-options": "SkipDryRunOnMissingResource=true"}},
        "spec": {"size": 1},
    }  # fmt: skip
    repo.write_objects("app/config.yaml", cm("config", ns, wave=0))
    repo.write_objects("app/gadget.yaml", widget)
    repo.commit("a resource of an operator's CRD")
    code, result = sync(config, capsys)
    assert code == 1
    actions = {o["name"]: (o["action"], o["message"]) for o in result["objects"]}
    assert actions["config"][0] == "created"
    assert actions["g"] == ("failed", f"the server does not serve kind Gadget in {group}/v1")
    crds = dynamic_client(tc).resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    crds.create(body={
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
    })  # fmt: skip
    wait_until(lambda: sync(config, capsys)[0] == 0, timeout=30, interval=0.5)
    assert live_object(tc, f"{group}/v1", "Gadget", "g", ns)["spec"] == {"size": 1}
