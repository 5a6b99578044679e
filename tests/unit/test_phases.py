"""Phase, wave and hook marks (Argo CD's, Helm's and the agent's own annotations) and the plan they give."""

from __future__ import annotations

from typing import Any

import pytest

from reconcilers import hooks, ordering, resources


def _manifest(kind: str, name: str, annotations: dict[str, str] | None = None, group: str = "") -> resources.Manifest:
    body: dict[str, Any] = {
        "apiVersion": f"{group}/v1" if group else "v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "annotations": annotations or {}},
    }
    return resources.Manifest(resources.ResourceKey.of(body), body, "app.yaml", 0)


@pytest.mark.parametrize(
    ("annotations", "phases", "wave", "hook", "policies"),
    [
        ({}, (hooks.Phase.SYNC,), 0, False, set()),
        ({"argocd.argoproj.io/sync-wave": "-2"}, (hooks.Phase.SYNC,), -2, False, set()),
        ({"gitops-agent.io/wave": "3", "argocd.argoproj.io/sync-wave": "1"}, (hooks.Phase.SYNC,), 3, False, set()),
        ({"gitops-agent.io/phase": "Sync"}, (hooks.Phase.SYNC,), 0, False, set()),
        ({"argocd.argoproj.io/hook": "Sync"}, (hooks.Phase.SYNC,), 0, True, {"BeforeHookCreation"}),
        (
            {"argocd.argoproj.io/hook": "PreSync,PostSync", "argocd.argoproj.io/hook-delete-policy": "HookSucceeded"},
            (hooks.Phase.PRE_SYNC, hooks.Phase.POST_SYNC),
            0,
            True,
            {"HookSucceeded"},
        ),
        (
            {
                "helm.sh/hook": "pre-install,pre-upgrade",
                "helm.sh/hook-weight": "-5",
                "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
            },
            (hooks.Phase.PRE_SYNC,),
            -5,
            True,
            {"BeforeHookCreation", "HookSucceeded"},
        ),
        ({"helm.sh/hook": "post-install,post-upgrade"}, (hooks.Phase.POST_SYNC,), 0, True, {"BeforeHookCreation"}),
        ({"helm.sh/hook": "test"}, (), 0, True, {"BeforeHookCreation"}),
        ({"argocd.argoproj.io/hook": "Skip"}, (), 0, True, {"BeforeHookCreation"}),
        (
            {"argocd.argoproj.io/hook": "SyncFail", "argocd.argoproj.io/sync-wave": "1", "helm.sh/hook": "pre-install"},
            (hooks.Phase.SYNC_FAIL,),
            1,
            True,
            {"BeforeHookCreation"},
        ),
    ],
)
def test_marks_read_the_three_vocabularies(
    annotations: dict[str, str], phases: tuple[hooks.Phase, ...], wave: int, hook: bool, policies: set[str]
) -> None:
    found = hooks.marks({"metadata": {"annotations": annotations}})
    assert (found.phases, found.wave, found.hook) == (phases, wave, hook)
    assert {p.value for p in found.policies} == policies


def test_sync_options_and_what_prune_keeps() -> None:
    found = hooks.marks({"metadata": {"annotations": {"argocd.argoproj.io/sync-options": "Prune=false,Replace=true"}}})
    assert found.options == {"Prune=false", "Replace=true"}
    assert not found.hook
    assert hooks.keep_on_prune({"metadata": {"annotations": {"argocd.argoproj.io/sync-options": "Prune=false"}}})
    assert hooks.keep_on_prune({"metadata": {"annotations": {"gitops-agent.io/sync-options": "Delete=false"}}})
    assert hooks.keep_on_prune({"metadata": {"annotations": {"helm.sh/resource-policy": "keep"}}})
    assert hooks.keep_on_prune({"metadata": {"annotations": {"argocd.argoproj.io/sync-options": "Prune=true"}}}) is None


def test_the_plan_orders_phases_then_waves_and_keeps_kind_order_inside_a_wave() -> None:
    items = [
        _manifest("Deployment", "web", {"argocd.argoproj.io/sync-wave": "1"}, "apps"),
        _manifest("ConfigMap", "config", {"argocd.argoproj.io/sync-wave": "1"}),
        _manifest("Service", "db", {"argocd.argoproj.io/sync-wave": "-1"}),
        _manifest("Job", "migrate-", {"argocd.argoproj.io/hook": "PreSync"}, "batch"),
        _manifest("Job", "smoke", {"argocd.argoproj.io/hook": "PostSync"}, "batch"),
        _manifest("Job", "cleanup", {"argocd.argoproj.io/hook": "SyncFail"}, "batch"),
        _manifest("Pod", "late-hook", {"argocd.argoproj.io/hook": "Sync", "argocd.argoproj.io/sync-wave": "1"}),
        _manifest("ConfigMap", "skipped", {"argocd.argoproj.io/hook": "Skip"}),
        _manifest("ConfigMap", "plain"),
    ]
    plan = ordering.plan(items, {m.key: hooks.marks(m.body) for m in items})
    shape = [(s.label, [m.key.name for m in s.synced], [m.key.name for m in s.hooks]) for s in plan.steps]
    assert shape == [
        ("PreSync wave 0", [], ["migrate-"]),
        ("Sync wave -1", ["db"], []),
        ("Sync wave 0", ["plain"], []),
        ("Sync wave 1", ["config", "web"], ["late-hook"]),
        ("PostSync wave 0", [], ["smoke"]),
    ]
    assert [m.key.name for s in plan.on_fail for m in s.hooks] == ["cleanup"]
    assert [m.key.name for m in plan.skipped] == ["skipped"]
    assert [m.key.name for m in plan.synced] == ["db", "plain", "config", "web"]


def test_prune_goes_highest_wave_first_then_reverse_kind_order() -> None:
    ns = resources.ResourceKey("", "Namespace", "", "team")
    cm = resources.ResourceKey("", "ConfigMap", "team", "c")
    web = resources.ResourceKey("apps", "Deployment", "team", "web")
    assert ordering.prune_order([ns, cm, web]) == [web, cm, ns]
    assert ordering.prune_order([ns, cm, web], {cm: 2, ns: 1}) == [cm, ns, web]


class _LaggingDiscovery:
    """A cluster whose CRD is Established at once but whose discovery serves the kind only from the third
    refresh on (the API server builds its aggregated discovery document apart from the CRD's conditions)."""

    def __init__(self, serves_after: int = 3) -> None:
        self.refreshes, self.serves_after = 0, serves_after

    def get(self, key: resources.ResourceKey) -> dict[str, Any]:
        return {"status": {"conditions": [{"type": "Established", "status": "True"}]}}

    def resource_type(self, group: str, kind: str) -> object | None:
        return object() if self.refreshes >= self.serves_after or kind == "CustomResourceDefinition" else None

    def refresh_discovery(self) -> None:
        self.refreshes += 1


def _await(kube: _LaggingDiscovery, action: Any) -> None:
    from concurrent import futures

    from reconcilers import apply, cancel, hookrun, phases

    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"}},
    }
    manifest = resources.Manifest(resources.ResourceKey.of(crd), crd, "crd.yaml", 0)
    desired = apply.Desired(manifest, "h")
    with futures.ThreadPoolExecutor(1) as pool:
        ctx = phases.Context(
            kube, {manifest.key: desired}, {}, apply.ApplyOptions(), hookrun.HookOptions(), 5.0, 5.0, False,  # type: ignore[arg-type]
            None, {}, pool, cancel.never(),
        )  # fmt: skip
        phases._await_crds(ctx, [desired], [apply.ChangeSetEntry(manifest.key, action)])


def test_after_established_discovery_is_refreshed_until_the_new_kind_is_served() -> None:
    from reconcilers import apply

    kube = _LaggingDiscovery()
    _await(kube, apply.Action.CREATED)
    assert kube.refreshes == 3  # not one refresh right after Established: until Widget is served
    assert kube.resource_type("example.com", "Widget") is not None


def test_an_unchanged_crd_whose_kind_is_never_served_costs_one_refresh_not_the_wait() -> None:
    from reconcilers import apply

    kube = _LaggingDiscovery(serves_after=10**6)  # e.g. no version of it is served
    _await(kube, apply.Action.UNCHANGED)
    assert kube.refreshes == 1
