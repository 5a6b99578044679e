"""Prune against a real cluster, through ``gitops-agent sync`` (each sync a fresh agent: the inventory lives in
the cluster): objects removed from git are deleted; nothing is deleted on a broken commit, an emptied path, an
object that is not ours or opted out, or a mass deletion over the budget; failed deletes stay in the inventory."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent import cli
from reconcilers import apply, client, errors, inventory, prune, resources
from tests.conftest import GitRepo, cluster_entry, dynamic_client, live_object


def cm(name: str, namespace: str, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": name}}


@pytest.fixture
def fleet(git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str) -> Any:
    (tc,) = clusters(1)
    git_repo.write_objects("app/ns.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for name in ("a", "b", "c", "d"):
        git_repo.write_objects(f"app/{name}.yaml", cm(name, namespace))
    git_repo.write_objects("extra/e.yaml", cm("e", namespace))
    git_repo.commit("five ConfigMaps")
    config = make_config(git_repo, [cluster_entry(tc, "a", ["app", "extra"])], sync={"prune": True})
    return tc, git_repo, config, namespace


def sync(config: Any, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    code = cli.main(["sync", "--config", str(config), "--json", *extra])
    return code, json.loads(capsys.readouterr().out or "{}").get("a", {})


def exists(tc: Any, name: str, namespace: str) -> bool:
    return live_object(tc, "v1", "ConfigMap", name, namespace) is not None


def test_a_removed_file_is_pruned(fleet: Any, capsys: pytest.CaptureFixture[str]) -> None:
    tc, repo, config, ns = fleet
    assert sync(config, capsys)[0] == 0
    repo.remove("app/a.yaml")
    repo.commit("drop a")
    code, result = sync(config, capsys)
    assert code == 0, [(o["action"], o["message"]) for o in result["objects"] if o["action"] != "unchanged"]
    pruned = [o for o in result["objects"] if o["action"] == "pruned"]
    assert [(o["name"], o["source"]) for o in pruned] == [("a", "app (removed from git)")]
    assert not exists(tc, "a", ns)
    assert exists(tc, "b", ns)
    assert sync(config, capsys)[1]["counts"]["pruned"] == 0  # gone from the inventory too


def test_a_broken_commit_prunes_nothing(fleet: Any, capsys: pytest.CaptureFixture[str]) -> None:
    tc, repo, config, ns = fleet
    sync(config, capsys)
    repo.remove("app/a.yaml")
    repo.write("app/broken.yaml", "kind: [oops\n")
    repo.commit("broken")
    code, result = sync(config, capsys)
    assert code == 2
    assert result["errorKind"] == "source"
    assert exists(tc, "a", ns)


def test_an_emptied_path_prunes_nothing_unless_allowed(fleet: Any, capsys: pytest.CaptureFixture[str]) -> None:
    tc, repo, config, ns = fleet
    sync(config, capsys)
    repo.remove("extra/e.yaml")
    repo.write("extra/README.md", "nothing here any more\n")
    repo.commit("empty extra/")
    code, result = sync(config, capsys)
    assert code == 1
    assert result["errorKind"] == "prune"
    # each path is an app with its own inventory: an app that renders nothing keeps its objects
    assert result["error"] == (
        "app extra: refusing to prune: the desired state is empty and 1 object(s) are in the inventory "
        "(set sync.allowEmpty: true to allow it)"
    )
    assert exists(tc, "e", ns)


def test_objects_not_ours_or_opted_out_are_kept(fleet: Any, capsys: pytest.CaptureFixture[str]) -> None:
    tc, repo, config, ns = fleet
    repo.write_objects("app/b.yaml", cm("b", ns, **{inventory.PRUNE_ANNOTATION: "disabled"}))
    repo.commit("b opts out")
    sync(config, capsys)
    # someone else takes c over: its tracking annotation no longer names this agent
    api = dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap")
    api.patch(
        name="c",
        namespace=ns,
        content_type="application/merge-patch+json",
        field_manager="other-team",
        body={"metadata": {"annotations": {inventory.TRACKING_ANNOTATION: "other:x:y"}}},
    )
    repo.remove("app/b.yaml")
    repo.remove("app/c.yaml")
    repo.commit("drop b and c")
    code, result = sync(config, capsys)
    assert code == 0
    kept = {o["name"]: o["message"] for o in result["objects"] if o["action"] == "kept"}
    assert kept == {
        "b": f"not pruned: {inventory.PRUNE_ANNOTATION}: disabled",
        "c": "not pruned: its tracking annotation does not name this agent",
    }
    assert exists(tc, "b", ns)
    assert exists(tc, "c", ns)


def test_the_budget_refuses_a_mass_deletion_until_forced(fleet: Any, capsys: pytest.CaptureFixture[str]) -> None:
    tc, repo, config, ns = fleet
    sync(config, capsys)
    for name in ("a", "b", "c", "d"):
        repo.remove(f"app/{name}.yaml")
    repo.commit("drop four of six")
    code, result = sync(config, capsys)
    assert code == 1
    assert result["errorKind"] == "prune"
    # the budget is per app (path): four of app/'s five objects
    assert "app app: refusing to prune 4 of 5 object(s): over the prune budget of 50% (2)" in result["error"]
    assert all(exists(tc, n, ns) for n in "abcd")
    code, result = sync(config, capsys, "--force-prune")
    assert code == 0
    assert result["counts"]["pruned"] == 4
    assert not any(exists(tc, n, ns) for n in "abcd")
    assert exists(tc, "e", ns)


def test_an_empty_desired_state_prunes_nothing_unless_allowed() -> None:
    key = resources.ResourceKey("", "ConfigMap", "n", "x")
    previous = {"app": inventory.Inventory("app", {key: inventory.Entry(key)})}
    refused = prune.plan(previous, {"app": []}, prune.PruneOptions(enabled=True))
    assert refused.error is not None
    assert refused.error.startswith("refusing to prune: the desired state is empty")
    allowed = prune.plan(previous, {"app": []}, prune.PruneOptions(enabled=True, allow_empty=True, budget=1.0))
    assert allowed.error is None
    assert allowed.candidates == [(key, "app")]


class _RefusingDeletes:
    """A KubeClient whose deletes are forbidden (as RBAC would): prune must keep the object in the inventory."""

    def __init__(self, live: resources.Body) -> None:
        self.live = live

    def get(self, key: resources.ResourceKey) -> resources.Body | None:
        return self.live

    def delete(self, key: resources.ResourceKey, *, uid: str | None, propagation: str) -> None:
        raise errors.ApiError(403, "Forbidden", 'configmaps "x" is forbidden: User cannot delete resource')


def test_a_failed_delete_stays_in_the_inventory() -> None:
    key = resources.ResourceKey("", "ConfigMap", "n", "x")
    tracking = inventory.Tracking("gitops-agent", "a")
    live = tracking.mark_body(resources.Manifest(key, cm("x", "n"), "f", 0, "app"))
    fake: client.KubeClient = _RefusingDeletes(live)  # type: ignore[assignment]
    entries, keep = prune.execute(
        fake, prune.Plan([(key, "app")], {}, None), tracking, prune.PruneOptions(), dry_run=False
    )
    assert keep == {key}
    assert entries[0].action is apply.Action.FAILED
    assert "forbidden" in entries[0].message
