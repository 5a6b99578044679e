"""The write gate and the operators' levers against a real cluster and a running agent.

Suspend: an app suspended through the CLI gets no write from a rollout step (a new commit), an API sync, a
scheduled sync or self-heal (the cluster's audit log shows none), while the other app on the cluster syncs; its
drift is shown with who suspended it, when and why; the hold is kept in the cluster, so a restarted agent keeps
it; resume syncs it. Manual sync (``sync.auto: false``): the app is diffed and shown OutOfSync, written only when
an operator asks (``gitops-agent reconcile APP``)."""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import pytest
import yaml

from agent import cli
from tests.conftest import GitRepo, agent_writes, audit_offset, cluster_entry, dynamic_client, live_object, wait_until
from tests.e2e.test_faults import Agent, cm
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port
from tests.e2e.test_sync_corpora import ensure_namespace


def _cell(agent: Agent, app: str) -> dict[str, Any]:
    doc = json.loads(request(f"{agent.base}/api/v1/apps/{app}?objects=false")[1])
    return dict((doc.get("clusters") or [{}])[0])  # none before the app's first sync


def _data(tc: Any, name: str, namespace: str) -> Any:
    found = live_object(tc, "v1", "ConfigMap", name, namespace)
    return (found or {}).get("data")


def _writes_to(tc: Any, since: int, name: str) -> list[str]:
    """The agent's write requests to objects called ``name`` since the audit offset ``since``."""
    return [e["requestURI"] for e in agent_writes(tc, since) if (e.get("objectRef") or {}).get("name") == name]


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    return code, capsys.readouterr().out


def test_a_suspended_app_gets_no_write_of_any_kind_keeps_its_hold_across_a_restart_and_resumes(
    clusters: Any,
    git_repo: GitRepo,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    git_repo.write_objects("web/cm.yaml", cm("web", namespace, v="1"))
    git_repo.write_objects("other/cm.yaml", cm("other", namespace, v="1"))
    git_repo.commit("v1")
    port = free_port()
    config = make_config(
        git_repo,
        [cluster_entry(tc, "a", ["web", "other"], namespace)],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "2s", "selfHeal": True},
        rollout={},
        server={"listen": f"127.0.0.1:{port}"},
    )
    url = f"http://127.0.0.1:{port}"
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: _cell(agent, "web").get("syncStatus") == "Synced", timeout=30)

        code, out = _cli(capsys, "suspend", "web", "--url", url, "--reason", "maintenance window")
        assert code == 0, out
        assert "app web: suspended on cluster a" in out
        instance = yaml.safe_load(config.read_text())["instance"]
        kept = live_object(tc, "v1", "ConfigMap", f"{instance}-holds", "gitops-agent")
        assert json.loads(kept["data"]["app.web"])["reason"] == "maintenance window"
        offset = audit_offset(tc)

        # a rollout step (the new commit), then an API sync, scheduled syncs and a self-heal: none writes web
        git_repo.write_objects("web/cm.yaml", cm("web", namespace, v="2"))
        git_repo.write_objects("other/cm.yaml", cm("other", namespace, v="2"))
        git_repo.commit("v2")
        wait_until(lambda: (_data(tc, "other", namespace) or {}).get("v") == "2", timeout=30)  # the other app syncs
        assert request(f"{url}/api/v1/sync/a", method="POST")[0] == 202
        dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").patch(
            name="web", namespace=namespace, body={"data": {"v": "edited"}},
            content_type="application/merge-patch+json", field_manager="intruder",
        )  # fmt: skip
        time.sleep(5)  # two scheduled syncs and any self-heal would have come by now
        assert _data(tc, "web", namespace) == {"v": "edited"}
        assert _writes_to(tc, offset, "web") == []
        cell = _cell(agent, "web")
        assert cell["syncStatus"] == "OutOfSync"
        assert cell["syncStatusReason"].startswith("Suspended (app web) by ")
        assert "maintenance window; 1 change(s) not applied" in cell["syncStatusReason"]
        assert cell["held"] == cell["syncStatusReason"].split("; ")[0]
        reasons = [e["reason"] for e in json.loads(request(f"{url}/api/v1/events")[1])["events"]]
        assert "Suspended" in reasons
    finally:
        agent.stop()

    agent = Agent(config, tmp_path / "agent-2.log")  # a restart keeps the hold: it is in the cluster
    try:
        agent.wait_ready()
        wait_until(lambda: _cell(agent, "web").get("held"), timeout=30)
        time.sleep(3)
        assert _data(tc, "web", namespace) == {"v": "edited"}
        assert _writes_to(tc, offset, "web") == []

        code, out = _cli(capsys, "resume", "web", "--url", url)
        assert code == 0, out
        wait_until(lambda: _data(tc, "web", namespace) == {"v": "2"}, timeout=30)
        wait_until(lambda: _cell(agent, "web").get("syncStatus") == "Synced", timeout=30)
        assert _cell(agent, "web").get("held") is None
        assert "app.web" not in (
            live_object(tc, "v1", "ConfigMap", f"{instance}-holds", "gitops-agent").get("data") or {}
        )
    finally:
        agent.stop()


def test_a_manual_app_is_diffed_and_written_only_when_asked(
    clusters: Any,
    git_repo: GitRepo,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    git_repo.write_objects("manual/cm.yaml", cm("manual", namespace, v="1"))
    git_repo.write_objects("auto/cm.yaml", cm("auto", namespace, v="1"))
    git_repo.commit("v1")
    port = free_port()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "2s"},
        apps=[
            {"name": "manual", "path": "manual", "sync": {"auto": False}},
            {"name": "auto", "path": "auto"},
        ],
        server={"listen": f"127.0.0.1:{port}"},
    )
    url = f"http://127.0.0.1:{port}"
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: _data(tc, "auto", namespace) == {"v": "1"}, timeout=30)
        wait_until(lambda: _cell(agent, "manual").get("syncStatus") == "OutOfSync", timeout=30)
        assert _cell(agent, "manual")["syncStatusReason"] == (
            "manual sync (sync.auto: false): written only when asked; 1 change(s) not applied"
        )
        time.sleep(3)
        assert live_object(tc, "v1", "ConfigMap", "manual", namespace) is None

        code, out = _cli(capsys, "reconcile", "manual", "--url", url, "--timeout", "60s")
        assert code == 0, out
        assert _data(tc, "manual", namespace) == {"v": "1"}
        assert _cell(agent, "manual").get("syncStatus") == "Synced"

        git_repo.write_objects("manual/cm.yaml", cm("manual", namespace, v="2"))
        git_repo.write_objects("auto/cm.yaml", cm("auto", namespace, v="2"))
        git_repo.commit("v2")
        wait_until(lambda: _data(tc, "auto", namespace) == {"v": "2"}, timeout=30)
        time.sleep(3)
        assert _data(tc, "manual", namespace) == {"v": "1"}
        wait_until(lambda: _cell(agent, "manual").get("syncStatus") == "OutOfSync", timeout=30)
        assert request(f"{url}/api/v1/apps/manual/sync", method="POST")[0] == 202
        wait_until(lambda: _data(tc, "manual", namespace) == {"v": "2"}, timeout=30)
    finally:
        agent.stop()
