"""Selective sync (Argo CD's), against a real test cluster: ``gitops-agent sync --app A --resource
Kind/namespace/name`` and ``POST /api/v1/apps/{app}/sync`` with ``resources`` write only the named objects of a
manual app: no other object of the app, no hook, no prune (the cluster's audit log shows every write). An object
the app does not render fails the sync naming it, before any write. The app's status never says Synced after a
selective sync: the other objects are compared again at once (a manual app's are diffed: OutOfSync)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from agent import cli
from tests.conftest import GitRepo, agent_writes, audit_offset, cluster_entry, live_object, wait_until
from tests.e2e.test_faults import Agent, cm
from tests.e2e.test_phases import job
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port
from tests.e2e.test_sync_corpora import ensure_namespace

JSON = {"Content-Type": "application/json"}


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def _data(tc: Any, name: str, namespace: str) -> Any:
    return (live_object(tc, "v1", "ConfigMap", name, namespace) or {}).get("data")


def _written(tc: Any, since: int) -> list[tuple[str, str]]:
    """(resource, name) of each write of the agent since ``since``, its own bookkeeping (inventories, holds,
    history) left out."""
    found = []
    for e in agent_writes(tc, since):
        ref = e.get("objectRef") or {}
        if ref.get("namespace") == "gitops-agent":
            continue
        found.append((str(ref.get("resource", "")), str(ref.get("name", ""))))
    return found


def _sync(capsys: pytest.CaptureFixture[str], config: pathlib.Path, *args: str) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = cli.main(["sync", "--config", str(config), "--json", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out or "{}"), captured.err


def test_sync_resource_writes_only_the_named_objects_no_hook_no_prune(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    for name in ("one", "two", "three"):
        git_repo.write_objects(f"sel/{name}.yaml", cm(name, namespace, v="1"))
    git_repo.commit("v1")
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        sync={"prune": True},
        apps=[{"name": "sel", "path": "sel", "sync": {"auto": False}}],
    )
    code, _, err = _sync(capsys, config, "--app", "sel")
    assert code == 0, err
    assert [_data(tc, n, namespace) for n in ("one", "two", "three")] == [{"v": "1"}] * 3

    git_repo.write_objects("sel/one.yaml", cm("one", namespace, v="2"))
    git_repo.write_objects("sel/two.yaml", cm("two", namespace, v="2"))
    git_repo.remove("sel/three.yaml")
    git_repo.write_objects("sel/migrate.yaml", job("migrate-", namespace, "PreSync"))
    git_repo.commit("v2: two changes, a removal, a hook")

    since = audit_offset(tc)
    code, out, err = _sync(capsys, config, "--app", "sel", "--resource", f"ConfigMap/{namespace}/one")
    assert code == 0, err
    assert _written(tc, since) == [("configmaps", "one")]
    assert _data(tc, "one", namespace) == {"v": "2"}
    assert _data(tc, "two", namespace) == {"v": "1"}  # not selected
    assert _data(tc, "three", namespace) == {"v": "1"}  # removed from git: not pruned by a selective sync
    app = out["a"]["apps"][0]
    assert [(o["name"], o["action"]) for o in app["objects"]] == [("one", "configured")]
    assert "hooks" not in app

    since = audit_offset(tc)
    code, out, err = _sync(
        capsys, config, "--app", "sel", "--resource", f"ConfigMap/{namespace}/nope", "--resource", "Secret/x/y"
    )
    assert code == 2
    problem = out["a"]["apps"][0]["problem"]
    assert problem["kind"] == "config"
    assert f"ConfigMap {namespace}/nope" in problem["message"]
    assert "Secret x/y" in problem["message"]
    assert _written(tc, since) == []

    capsys.readouterr()
    assert cli.main(["sync", "--config", str(config), "--resource", f"ConfigMap/{namespace}/one"]) == 2
    assert "give --app too" in capsys.readouterr().err
    assert cli.main(["sync", "--config", str(config), "--app", "sel", "--resource", "one"]) == 2
    assert "Kind[.group]/namespace/name" in capsys.readouterr().err


def test_the_api_syncs_only_the_named_objects_and_the_status_never_says_synced_for_the_rest(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    for name in ("one", "two"):
        git_repo.write_objects(f"sel/{name}.yaml", cm(name, namespace, v="1"))
    git_repo.commit("v1")
    port = free_port()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "2s"},
        apps=[{"name": "sel", "path": "sel", "sync": {"auto": False}}],
        server={"listen": f"127.0.0.1:{port}"},
    )
    url = f"http://127.0.0.1:{port}"

    def cell() -> dict[str, Any]:
        doc = json.loads(request(f"{url}/api/v1/apps/sel?objects=false")[1])
        return dict((doc.get("clusters") or [{}])[0])

    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        assert request(f"{url}/api/v1/apps/sel/sync", method="POST")[0] == 202
        wait_until(lambda: _data(tc, "two", namespace) == {"v": "1"}, timeout=30)
        git_repo.write_objects("sel/one.yaml", cm("one", namespace, v="2"))
        git_repo.write_objects("sel/two.yaml", cm("two", namespace, v="2"))
        git_repo.commit("v2")
        wait_until(lambda: cell().get("syncStatus") == "OutOfSync" and "2 change(s)" in cell()["syncStatusReason"])

        bad = request(f"{url}/api/v1/apps/sel/sync", method="POST", body=_json({"resources": ["two"]}), headers=JSON)
        assert bad[0] == 400
        assert "Kind[.group]/namespace/name" in bad[1]
        since = audit_offset(tc)
        body = _json({"resources": [f"ConfigMap/{namespace}/two"]})
        assert request(f"{url}/api/v1/apps/sel/sync", method="POST", body=body, headers=JSON)[0] == 202
        wait_until(lambda: _data(tc, "two", namespace) == {"v": "2"}, timeout=30)
        # the follow-up sync diffs the manual app again: one still waits, and the status says so (never Synced)
        wait_until(lambda: "1 change(s)" in (cell().get("syncStatusReason") or ""), timeout=30)
        assert cell()["syncStatus"] == "OutOfSync"
        assert _data(tc, "one", namespace) == {"v": "1"}
        assert _written(tc, since) == [("configmaps", "two")]
    finally:
        agent.stop()
