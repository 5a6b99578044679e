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
    captured = capsys.readouterr()
    return code, captured.out + captured.err


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
        v2 = git_repo.commit("v2")
        wait_until(lambda: (_data(tc, "other", namespace) or {}).get("v") == "2", timeout=30)  # the other app syncs
        wait_until(lambda: agent.cluster("a")["rollout"]["running"] == v2, timeout=30)  # by a rollout step
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
        # the full status (with every object) and the cluster's drill-down serve a cluster with a held app
        assert request(f"{url}/api/v1/clusters/a")[0] == 200
        assert {o["name"] for o in agent.cluster("a")["lastSync"]["objects"]} >= {"other"}
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


def test_debug_threads_names_every_thread_and_its_owner_and_a_removed_cluster_leaves_none(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """``GET /api/v1/debug/threads`` on an agent with three clusters (self-heal on: each has its worker, self-heal,
    drift monitor and watches) lists every thread with an owner; a reload that removes a cluster leaves none of
    its threads; the endpoint needs the API's token."""
    a, b, c = clusters(3)
    for tc in (a, b, c):
        ensure_namespace(tc, namespace)
    git_repo.write_objects("app/cm.yaml", cm("app", namespace))
    git_repo.commit()
    port = free_port()
    entries = [cluster_entry(tc, n, ["app"], namespace) for n, tc in (("a", a), ("b", b), ("c", c))]
    config = make_config(
        git_repo, entries, sync={"interval": "1h", "selfHeal": True},
        server={"listen": f"127.0.0.1:{port}", "token": {"env": "API_TOKEN"}},
    )  # fmt: skip
    agent = Agent(config, tmp_path / "agent.log", env={"API_TOKEN": "t0ken"})
    url = f"http://127.0.0.1:{port}/api/v1/debug/threads"

    def listed() -> list[dict[str, Any]]:
        code, body = request(url, token="t0ken")
        assert code == 200, body
        return list(json.loads(body)["threads"])

    def owned(found: list[dict[str, Any]], cluster: str) -> set[str]:
        return {t["name"] for t in found if t["owner"].startswith(f"cluster/{cluster}/")}

    try:
        agent.wait_ready()

        def complete() -> list[dict[str, Any]] | None:
            found = listed()
            for n in "abc":  # the live cache's watch threads start with the first sync
                mine = owned(found, n)
                if not mine >= {f"worker-{n}", f"selfheal-{n}", f"drift-{n}", f"inventories-{n}"}:
                    return None
                if not any(name.startswith(f"watch-{n}-") for name in mine):
                    return None
            return found

        found = wait_until(complete, timeout=30)
        assert request(url)[0] == 401
        assert [t for t in found if t["owner"] == "unregistered"] == []
        names = [t["name"] for t in found]
        assert len(names) == len(set(t["ident"] for t in found))  # one row per live thread
        assert "MainThread" in names
        assert all(t["ageSeconds"] >= 0 for t in found if t["name"] in ("worker-a", "selfheal-b", "drift-c"))

        cfg = yaml.safe_load(config.read_text())
        cfg["clusters"] = [e for e in cfg["clusters"] if e["name"] != "c"]
        config.write_text(yaml.safe_dump(cfg))  # a reload removes c
        wait_until(lambda: not owned(listed(), "c"), timeout=60)
        after = listed()
        assert owned(after, "a") >= {"worker-a", "selfheal-a"}
        assert [t for t in after if t["owner"] == "unregistered"] == []
    finally:
        agent.stop()


def test_a_failed_app_is_retried_with_backoff_and_converges_well_before_the_interval(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """``sync.retry`` (Argo CD's ``syncPolicy.retry``): an app whose namespace appears 6 s after its first sync
    fails, is retried after 2, 4, 8 s (the attempts and delays in its status and in ``SyncRetrying`` events), and
    is Synced long before the hour of ``sync.interval``; the other app is not held up."""
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    late = f"{namespace}-late"
    git_repo.write_objects("late/cm.yaml", cm("late", late))
    git_repo.write_objects("fine/cm.yaml", cm("fine", namespace))
    git_repo.commit()
    port = free_port()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        sync={"interval": "1h", "retry": {"limit": 5, "backoff": {"duration": "2s", "factor": 2, "maxDuration": "8s"}}},
        apps=[{"name": "late", "path": "late"}, {"name": "fine", "path": "fine"}],
        server={"listen": f"127.0.0.1:{port}"},
    )
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        started = time.monotonic()
        wait_until(lambda: live_object(tc, "v1", "ConfigMap", "fine", namespace) is not None, timeout=30)
        reason = wait_until(lambda: (_cell(agent, "late").get("syncStatusReason") or "").startswith("Retrying")
                            and _cell(agent, "late")["syncStatusReason"], timeout=30)  # fmt: skip
        assert reason.startswith("Retrying (attempt 1 of 5, next in ") or reason.startswith("Retrying (attempt 2 of 5")
        assert "not found" in reason
        time.sleep(max(0.0, 6 - (time.monotonic() - started)))
        ensure_namespace(tc, late)
        wait_until(lambda: live_object(tc, "v1", "ConfigMap", "late", late) is not None, timeout=30)
        assert time.monotonic() - started < 40  # within the backoff, not the interval
        wait_until(lambda: _cell(agent, "late").get("syncStatus") == "Synced", timeout=30)
        events = json.loads(request(f"{agent.base}/api/v1/events")[1])["events"]
        retried = [e["message"] for e in events if e["reason"] == "SyncRetrying"]
        assert any(m.startswith("app late: attempt 1 of 5 in 2s: ") for m in retried), retried
        assert any(m.startswith("app late: attempt 2 of 5 in 4s: ") for m in retried), retried
    finally:
        agent.stop()


def test_sync_windows_let_writes_through_only_inside_the_allow_window_and_refuse_manual_syncs_in_a_deny_window(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """Real windows that open and close within the test: ``win`` may be written only in the first 20 s of each
    minute (an allow window ``* * * * *`` of 20 s): a commit made outside waits for the next opening, with the
    window and the opening in its status, and every write to it falls inside. ``shut`` sits in a deny window that
    is always open: an operator's sync is refused with 409 naming it; ``ask`` in one with ``manualSync: true`` is
    synced when asked."""
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    for name in ("win", "shut", "ask"):
        git_repo.write_objects(f"{name}/cm.yaml", cm(name, namespace, v="1"))
    git_repo.commit("v1")
    port = free_port()
    deny = {"kind": "deny", "schedule": "* * * * *", "duration": "60s"}
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "2s"},
        apps=[{"name": n, "path": n} for n in ("win", "shut", "ask")],
        syncWindows=[
            {"kind": "allow", "schedule": "* * * * *", "duration": "20s", "apps": ["win"]},
            {**deny, "apps": ["shut"]},
            {**deny, "apps": ["ask"], "manualSync": True},
        ],
        server={"listen": f"127.0.0.1:{port}"},
    )
    url = f"http://127.0.0.1:{port}"
    offset = audit_offset(tc)
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: _data(tc, "win", namespace) == {"v": "1"}, timeout=70)  # at the first opening
        while not 25 <= time.gmtime().tm_sec <= 40:  # outside the window, with time to look
            time.sleep(0.5)
        git_repo.write_objects("win/cm.yaml", cm("win", namespace, v="2"))
        git_repo.commit("v2")
        reason = wait_until(lambda: "outside every allow window" in (_cell(agent, "win").get("syncStatusReason") or "")
                            and _cell(agent, "win")["syncStatusReason"], timeout=15)  # fmt: skip
        assert 'allow "* * * * *" for 20s (UTC)' in reason
        assert "the next opens at " in reason
        assert _data(tc, "win", namespace) == {"v": "1"}
        wait_until(lambda: _data(tc, "win", namespace) == {"v": "2"}, timeout=45)  # the next opening
        seconds = [
            int(e["requestReceivedTimestamp"][17:19])
            for e in agent_writes(tc, offset)
            if (e.get("objectRef") or {}).get("name") == "win"
        ]
        assert seconds
        assert all(s < 22 for s in seconds), seconds  # every write inside the window (2 s of slack)

        assert live_object(tc, "v1", "ConfigMap", "shut", namespace) is None
        code, body = request(f"{url}/api/v1/apps/shut/sync", method="POST")
        assert code == 409
        assert json.loads(body)["detail"].startswith(
            'cluster a: sync window: deny "* * * * *" for 60s (UTC) is open until '
        )
        code, body = request(f"{url}/api/v1/apps/ask/sync", method="POST")
        assert code == 202, body
        wait_until(lambda: _data(tc, "ask", namespace) == {"v": "1"}, timeout=30)
        assert live_object(tc, "v1", "ConfigMap", "shut", namespace) is None
    finally:
        agent.stop()


def test_an_app_with_a_service_account_is_self_healed_as_that_account(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """Self-heal writes with the app's identity, as its syncs do: a live edit of an object of an app with a
    ``serviceAccount`` is corrected by a request that impersonates that account (the audit log says so)."""
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    client = dynamic_client(tc)
    client.resources.get(api_version="v1", kind="ServiceAccount").create(
        body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}}, namespace=namespace
    )
    rbac = "rbac.authorization.k8s.io/v1"
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch"]}
    client.resources.get(api_version=rbac, kind="Role").create(
        body={"apiVersion": rbac, "kind": "Role", "metadata": {"name": "deployer"}, "rules": [rule]},
        namespace=namespace,
    )
    client.resources.get(api_version=rbac, kind="RoleBinding").create(
        body={
            "apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "deployer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": namespace}],
        },
        namespace=namespace,
    )  # fmt: skip
    git_repo.write_objects("team/cm.yaml", cm("team", namespace, v="1"))
    git_repo.commit()
    port = free_port()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        sync={"interval": "1h", "selfHeal": True},
        apps=[{"name": "team", "path": "team", "serviceAccount": f"{namespace}/deployer"}],
        server={"listen": f"127.0.0.1:{port}"},
    )
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: _cell(agent, "team").get("syncStatus") == "Synced", timeout=30)
        offset = audit_offset(tc)
        client.resources.get(api_version="v1", kind="ConfigMap").patch(
            name="team", namespace=namespace, body={"data": {"v": "edited"}},
            content_type="application/merge-patch+json", field_manager="intruder",
        )  # fmt: skip
        wait_until(lambda: _data(tc, "team", namespace) == {"v": "1"}, timeout=20)
        user = f"system:serviceaccount:{namespace}:deployer"
        healed = [
            e
            for e in agent_writes(tc, offset)
            if (e.get("objectRef") or {}).get("name") == "team" and e["verb"] == "patch"
        ]
        assert healed
        assert all((e.get("impersonatedUser") or {}).get("username") == user for e in healed), healed
    finally:
        agent.stop()


def test_trace_names_the_app_source_revision_file_and_document_of_a_live_object_or_its_field_managers(
    clusters: Any,
    git_repo: GitRepo,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``gitops-agent trace`` (and ``GET /api/v1/trace``) on an object of a chart app, of a kustomize app, and on
    one no app manages (its field managers named)."""
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    git_repo.write("charts/site/Chart.yaml", "apiVersion: v2\nname: site\nversion: 0.1.0\n")
    git_repo.write(
        "charts/site/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: '{{ .Release.Name }}-settings'}\ndata: {a: b}\n",
    )
    git_repo.write("kz/kustomization.yaml", "resources: [cm.yaml]\nnamePrefix: kz-\n")
    git_repo.write_objects("kz/cm.yaml", cm("settings", namespace))
    head = git_repo.commit()
    dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").create(
        body=cm("handmade", namespace), namespace=namespace, field_manager="kubectl-create"
    )
    port = free_port()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        sync={"interval": "1h"},
        apps=[{"name": "site", "path": "charts/site", "namespace": namespace}, {"name": "kz", "path": "kz"}],
        server={"listen": f"127.0.0.1:{port}"},
    )
    url = f"http://127.0.0.1:{port}"
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: _cell(agent, "kz").get("syncStatus") == "Synced", timeout=30)
        wait_until(lambda: _cell(agent, "site").get("syncStatus") == "Synced", timeout=30)

        code, body = request(f"{url}/api/v1/trace?kind=ConfigMap&namespace={namespace}&name=site-settings")
        assert code == 200, body
        (chart,) = json.loads(body)["clusters"]
        assert (chart["managed"], chart["app"], chart["source"], chart["path"]) == (
            True,
            "site",
            "default",
            "charts/site",
        )
        assert (chart["file"], chart["document"]) == ("charts/site/templates/cm.yaml", "0")
        assert chart["revision"]["sha"] == head
        assert chart["lastSync"]["action"] == "created"
        assert chart["health"]["status"] == "Healthy"
        assert chart["drifted"] == []

        code, out = _cli(capsys, "trace", f"ConfigMap/{namespace}/kz-settings", "--url", url)
        assert code == 0, out
        assert "app kz (source default, path kz)" in out
        assert f"revision {head[:12]}, file kz, document 0" in out

        code, out = _cli(capsys, "trace", f"ConfigMap/{namespace}/handmade", "--url", url, "-o", "json")
        assert code == 1
        (plain,) = json.loads(out)["clusters"]
        assert plain["managed"] is False
        assert plain["reason"] == "no app of this agent manages it"
        assert [m["manager"] for m in plain["fieldManagers"]] == ["kubectl-create"]
        code, out = _cli(capsys, "trace", "ConfigMap", "--url", url)
        assert code == 2
    finally:
        agent.stop()


def test_rollback_pins_an_app_to_an_earlier_commit_across_resyncs_and_a_restart_and_unpin_returns_to_head(
    clusters: Any,
    git_repo: GitRepo,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    shas = []
    for v in ("1", "2", "3"):
        git_repo.write_objects("web/cm.yaml", cm("web", namespace, v=v))
        shas.append(git_repo.commit(f"v{v}"))
    port = free_port()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "2s"},
        apps=[{"name": "web", "path": "web"}],
        server={"listen": f"127.0.0.1:{port}"},
    )
    url = f"http://127.0.0.1:{port}"
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: _data(tc, "web", namespace) == {"v": "3"}, timeout=30)
        code, out = _cli(capsys, "rollback", "web", "--cluster", "a", "--to", shas[0], "--url", url)
        assert code == 0, out
        assert f"pinned to {shas[0][:12]}" in out
        wait_until(lambda: _data(tc, "web", namespace) == {"v": "1"}, timeout=30)
        wait_until(lambda: _cell(agent, "web").get("syncStatus") == "Synced", timeout=30)
        pinned = _cell(agent, "web")["pinned"]
        assert pinned["sha"] == shas[0]
        assert pinned["text"].startswith(f"Pinned to {shas[0][:12]} (by ")
        assert pinned["text"].endswith(f"; git's head is {shas[2][:12]}")
        code, out = _cli(capsys, "rollback", "web", "--cluster", "a", "--to", "f" * 40, "--url", url)
        assert code == 2
        assert "cannot roll app web back to 'ffffffffffffffffffffffffffffffffffffffff'" in out
        time.sleep(3)  # scheduled resyncs keep the pin
        assert _data(tc, "web", namespace) == {"v": "1"}
    finally:
        agent.stop()
    agent = Agent(config, tmp_path / "agent-2.log")  # the pin is kept in the cluster: a restart keeps it
    try:
        agent.wait_ready()
        wait_until(lambda: (_cell(agent, "web").get("pinned") or {}).get("sha") == shas[0], timeout=30)
        time.sleep(3)
        assert _data(tc, "web", namespace) == {"v": "1"}
        # the history, read back from the cluster after the restart: the first sync (at v3), the rollback (v1)
        history = json.loads(request(f"{url}/api/v1/apps/web/history")[1])["clusters"][0]["history"]
        assert [e["revision"] for e in history][:2] == [shas[0], shas[2]]
        assert history[0]["kind"] in ("requested", "scheduled")  # the pin's first sync: the rollback's or the next
        assert history[0]["trigger"]
        assert all(e["result"] == "Succeeded" and e["changes"] == 1 for e in history[:2])
        code, out = _cli(capsys, "unpin", "web", "--cluster", "a", "--url", url)
        assert code == 0, out
        wait_until(lambda: _data(tc, "web", namespace) == {"v": "3"}, timeout=30)
        assert _cell(agent, "web").get("pinned") is None
        code, out = _cli(capsys, "history", "web", "--url", url)
        assert code == 0, out
        assert out.count(shas[2][:12]) >= 2  # the first sync, and the unpin back to head
        assert shas[0][:12] in out
        events = [e["reason"] for e in json.loads(request(f"{url}/api/v1/events")[1])["events"]]
        assert "Unpinned" in events
    finally:
        agent.stop()


def test_a_suspended_cluster_keeps_the_objects_of_an_app_that_left_it_until_resumed(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The prune of an app removed from the config asks the write gate too: on a suspended cluster its objects and
    inventory are kept (the result says why), and pruned once the hold is gone."""
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    for name in ("stays", "leaves"):
        git_repo.write_objects(f"{name}/cm.yaml", cm(name, namespace))
    git_repo.commit()
    entry = {**cluster_entry(tc, "a", [], namespace), "labels": {}}
    both = [{"name": "stays", "path": "stays"}, {"name": "leaves", "path": "leaves"}]
    config = make_config(git_repo, [entry], apps=both, sync={"prune": True})
    code, out = _cli(capsys, "sync", "--config", str(config))
    assert code == 0, out
    instance = yaml.safe_load(config.read_text())["instance"]
    hold = {"by": "ops", "at": "2026-12-06T12:00:00+00:00", "reason": "freeze"}
    holds_cm = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"{instance}-holds", "namespace": "gitops-agent"},
        "data": {"cluster": json.dumps(hold)},
    }  # fmt: skip
    configmaps = dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap")
    configmaps.create(body=holds_cm, namespace="gitops-agent")
    cfg = yaml.safe_load(config.read_text())
    cfg["apps"] = both[:1]  # "leaves" is removed from the config
    config.write_text(yaml.safe_dump(cfg))

    code, out = _cli(capsys, "sync", "--config", str(config), "--json")
    left = next(a for a in json.loads(out)["a"]["apps"] if a["app"] == "leaves")
    assert [o["action"] for o in left["objects"]] == ["kept"]
    assert left["objects"][0]["message"] == "Suspended (cluster) by ops at 2026-12-06T12:00:00+00:00: freeze"
    assert live_object(tc, "v1", "ConfigMap", "leaves", namespace) is not None

    configmaps.delete(name=f"{instance}-holds", namespace="gitops-agent")
    code, out = _cli(capsys, "sync", "--config", str(config), "--json")
    assert code == 0, out
    assert live_object(tc, "v1", "ConfigMap", "leaves", namespace) is None


def test_a_hold_that_cannot_be_read_still_holds_and_says_so(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    git_repo.write_objects("web/cm.yaml", cm("web", namespace, v="1"))
    git_repo.commit()
    entry = {**cluster_entry(tc, "a", [], namespace), "labels": {}}
    config = make_config(git_repo, [entry], apps=[{"name": "web", "path": "web"}])
    instance = yaml.safe_load(config.read_text())["instance"]
    broken = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"{instance}-holds", "namespace": "gitops-agent"},
        "data": {"app.web": "{not json"},
    }  # fmt: skip
    ensure_namespace(tc, "gitops-agent")
    dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").create(body=broken, namespace="gitops-agent")

    code, out = _cli(capsys, "sync", "--config", str(config), "--json")
    assert code == 1  # a change waits
    (web,) = json.loads(out)["a"]["apps"]
    assert web["held"].startswith("Suspended (app web) by unknown at unknown: the hold app.web in ConfigMap ")
    assert "cannot be read (JSONDecodeError); fix or remove the key" in web["held"]
    assert web["objects"][0]["action"] == "created"  # what a sync would do, as a dry run
    code, out = _cli(capsys, "sync", "--config", str(config))  # the table names the hold too
    assert "app web: held: Suspended (app web) by unknown" in out
    assert "nothing written, 1 change(s) waiting" in out
    assert live_object(tc, "v1", "ConfigMap", "web", namespace) is None
