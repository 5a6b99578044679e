"""The dashboard in headless Chromium (Debian's, driven by Playwright): behind the bearer token it asks for the
token, then shows every cluster with revision, sync status and health, and drills down to the objects, their
health and the diff of a corrected drift, and an app's plan (waves, hooks) with its hook runs. The test saves a
screenshot to test-artifacts/dashboard.png."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import REPO, GitRepo, cluster_entry, dynamic_client, wait_until
from tests.e2e.test_faults import Agent
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port

CHROMIUM = os.environ.get("GITOPS_AGENT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "dash-token-81c2"


def test_dashboard_shows_clusters_and_drills_down(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str
) -> None:
    from playwright.sync_api import sync_playwright

    a, b = clusters(2)
    git_repo.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": namespace},
            "data": {"mode": "fast"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace, "annotations": {"argocd.argoproj.io/sync-wave": "1"}},
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
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "generateName": "smoke-",
                "namespace": namespace,
                "annotations": {"argocd.argoproj.io/hook": "PostSync"},
            },
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "smoke", "image": "example/smoke:1"}]}
                }
            },
        },
    )
    head = git_repo.commit()
    port = free_port()
    config = make_config(
        git_repo,
        [cluster_entry(a, "alpha", ["app"]), cluster_entry(b, "beta", ["app"])],
        server={"listen": f"127.0.0.1:{port}", "token": {"env": "DASH_TOKEN"}},
    )
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        env={**os.environ, "DASH_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def healthy() -> bool:
            try:
                code, text = request(f"{base}/api/v1/status", token=TOKEN)
            except OSError:
                return False
            return code == 200 and all(c["health"] == "Healthy" for c in json.loads(text)["clusters"])

        wait_until(healthy, timeout=60)
        # a drift, corrected by a sync: its diff shows in the drill-down
        dynamic_client(a).resources.get(api_version="v1", kind="ConfigMap").patch(
            name="settings",
            namespace=namespace,
            body={"data": {"mode": "slow"}},
            content_type="application/merge-patch+json",
            field_manager="someone",
        )
        assert request(f"{base}/api/v1/sync/alpha", method="POST", token=TOKEN)[0] == 202
        wait_until(
            lambda: (
                json.loads(request(f"{base}/api/v1/clusters/alpha", token=TOKEN)[1])["lastSync"]["counts"]["configured"]
                == 1
            )
        )

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            asked: list[str] = []
            page.on("request", lambda r: asked.append(r.url.removeprefix(base)))
            page.goto(f"{base}/")
            page.wait_for_selector("#login", state="visible")  # the API wants the token
            page.fill("#token", TOKEN)
            page.click("#login button")
            page.wait_for_selector("tr.cluster[data-cluster=beta]")
            for name in ("alpha", "beta"):
                row = page.locator(f"tr.cluster[data-cluster={name}]")
                assert "Synced" in row.inner_text()
                assert "Healthy" in row.inner_text()
            page.click("tr.cluster[data-cluster=alpha]")
            page.wait_for_selector("#objects pre.diff")
            objects = page.locator("#objects").inner_text()
            assert f"Deployment.apps {namespace}/web" in objects
            assert "2 of 2 replicas available" in objects
            diff_text = page.locator("#objects pre.diff").inner_text()
            assert "-  mode: slow" in diff_text
            assert "+  mode: fast" in diff_text
            # it polls the fleet summary, and asks for the objects of the selected cluster alone (and once what
            # its token may do)
            api = {u for u in asked if u.startswith("/api/")}
            expected = {"/api/v1/status?objects=false&apps=false", "/api/v1/apps?limit=500", "/api/v1/appsets"}
            assert api == {*expected, "/api/v1/clusters/alpha", "/api/v1/me"}, asked
            assert asked.count("/api/v1/me") == 1, asked
            # the apps x clusters matrix: each path is an app; a cell drills down to that app on that cluster
            for name in ("alpha", "beta"):
                cell = page.locator(f"td.cell[data-app=app][data-cluster={name}]")
                assert "Synced" in cell.inner_text()
                assert "Healthy" in cell.inner_text()
            page.click("td.cell[data-app=app][data-cluster=beta]")
            page.wait_for_selector("#detail h2:has-text('app app on cluster beta')")
            page.wait_for_selector(f"#objects >> text=ConfigMap {namespace}/settings")
            assert "/api/v1/apps/app?objects=true" in asked
            # the app's plan (two waves, a PostSync hook) and the runs of its last sync that ran hooks
            assert "Sync wave 0 (2 objects) → Sync wave 1 (1 objects) → PostSync wave 0" in page.inner_text("#plan")
            hooks = page.locator("#hooks").inner_text()
            assert f"Job.batch {namespace}/smoke-" not in hooks  # the run's own name, given by the API server
            assert f"Job {namespace}/smoke-" in hooks
            assert "PostSync" in hooks
            assert "Succeeded" in hooks
            # the levers of the app's cell: suspend with a reason, resume, sync now
            page.fill("#suspend-reason", "dashboard test")
            page.click("#suspend-app")
            # the token's subject (the shared server.token is admin), with what the dashboard says it is
            page.wait_for_selector("#held:has-text('Suspended (app app) by admin (dashboard)')", timeout=30_000)
            assert "dashboard test" in page.inner_text("#held")
            assert "app suspended on beta" in page.inner_text("#lever-result")
            page.click("#resume-app")
            page.wait_for_selector("#held", state="detached", timeout=30_000)
            page.click("#sync-app")
            page.wait_for_selector("#lever-result:has-text('sync of app on beta requested')")
            # selective sync of one object of the app (Argo CD's): the object's own Sync button
            ref = f"ConfigMap/{namespace}/settings"
            page.click(f"button.sync-object[data-object='{ref}']")
            page.wait_for_selector(f"#lever-result:has-text('selective sync of {ref} on beta requested')")
            # the app's history there, and a rollback (a pin to the commit it runs) then unpin
            page.wait_for_selector("#history tr.past")
            assert "Succeeded" in page.inner_text("#history")
            page.fill("#rollback-to", head)
            page.click("#rollback-app")
            page.wait_for_selector("#pinned:has-text('Pinned to')", timeout=30_000)
            page.click("#unpin-app")
            page.wait_for_selector("#pinned", state="detached", timeout=30_000)
            artifacts = pathlib.Path(os.environ.get("GITOPS_AGENT_ARTIFACTS", REPO / "test-artifacts"))
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
            browser.close()
        assert (artifacts / "dashboard.png").stat().st_size > 10_000
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.mark.parametrize("path", ["/", "/healthz"])
def test_open_pages_need_no_token(path: str) -> None:
    """Documented contract: the page itself holds no data; /healthz stays open (checked in-process)."""
    from fastapi.testclient import TestClient

    from agent import config
    from agent.api import server
    from agent.runtime import fleet

    cfg = config.AgentConfig.model_validate(
        {
            "source": {"url": "/r"},
            "clusters": [{"name": "a", "paths": ["x"]}],
            "server": {"token": {"env": "PATH"}},  # any set variable: a token is required
        }
    )
    http = TestClient(server.create_app(fleet.Fleet(cfg)))
    assert http.get(path).status_code == 200
    assert http.get("/api/v1/status").status_code == 401


def test_dashboard_shows_a_stale_source_and_a_cluster_without_recent_syncs(
    git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """The status never says more than the agent knows: with the source failing and a cluster frozen (SIGSTOP,
    its sync stuck in a request), the page shows the source as stale, the agent as not ready, and the frozen
    cluster's sync status as Unknown with the reason."""
    from playwright.sync_api import sync_playwright

    from tests.cluster.launcher import TestCluster

    frozen = TestCluster.start("frozen", tmp_path / "frozen")
    git_repo.write_objects("app/ns.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    git_repo.commit()
    port = free_port()
    config = make_config(
        git_repo,
        [cluster_entry(frozen, "frozen", ["app"])],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "1s", "requestTimeout": "30s"},
        server={"listen": f"127.0.0.1:{port}"},
    )
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def status() -> Any:
            try:
                code, text = request(f"{base}/api/v1/status?objects=false")
            except OSError:
                return None
            return json.loads(text) if code == 200 else None

        wait_until(lambda: (s := status()) and s["clusters"][0]["syncStatus"] == "Synced", timeout=60)
        git_repo.path.rename(tmp_path / "moved")  # the remote is gone
        frozen.process.send_signal(signal.SIGSTOP)
        wait_until(
            lambda: (
                (s := status()) and s["source"]["stale"] and "no sync finished" in s["clusters"][0]["syncStatusReason"]
            ),
            timeout=30,
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/")
            page.wait_for_selector("tr.cluster[data-cluster=frozen]")
            header = page.locator("#source").inner_text()
            assert "STALE" in header
            assert "not ready" in header
            row = page.locator("tr.cluster[data-cluster=frozen]").inner_text()
            assert "Unknown" in row
            assert "no sync finished" in row
            timeline = page.locator("#timeline").inner_text()  # the events, newest first
            assert "SourceFailed" in timeline
            assert "source" in timeline
            browser.close()
    finally:
        frozen.process.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        frozen.stop()


def test_dashboard_shows_a_live_edit_as_out_of_sync_naming_the_field(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """With self-heal off, a live edit makes the app's cell and the cluster's row OutOfSync naming the object and
    field, and the timeline shows the OutOfSync event, as the status API says; a sync brings the cell back."""
    from playwright.sync_api import sync_playwright

    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace}}
    git_repo.write_objects("app/app.yaml", ns, {**settings, "data": {"color": "blue"}})
    git_repo.commit()
    port = free_port()
    config = make_config(
        git_repo,
        [cluster_entry(tc, "live", ["app"], namespace)],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "1h"},
        server={"listen": f"127.0.0.1:{port}"},
    )
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def cell() -> Any:
        try:
            code, text = request(f"{base}/api/v1/apps")
        except OSError:
            return None
        found = json.loads(text)["apps"] if code == 200 else []
        return next((c for a in found for c in a["clusters"]), None)

    try:
        wait_until(lambda: (c := cell()) and c["syncStatus"] == "Synced", timeout=60)
        dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").patch(
            name="settings",
            namespace=namespace,
            body={"data": {"color": "red"}},
            content_type="application/merge-patch+json",
            field_manager="kubectl-edit",
        )
        wait_until(lambda: (c := cell()) and c["syncStatus"] == "OutOfSync", timeout=5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/")
            page.wait_for_selector("td.cell[data-app=app][data-cluster=live]")
            shown = page.locator("td.cell[data-app=app][data-cluster=live]").inner_text()
            assert "OutOfSync" in shown
            assert f"ConfigMap {namespace}/settings: .data.color" in shown
            row = page.locator("tr.cluster[data-cluster=live]").inner_text()
            assert "OutOfSync" in row
            assert "1 object(s) drifted since the last sync" in row
            assert "OutOfSync" in page.locator("#timeline").inner_text()
            page.screenshot(path=str(REPO / "test-artifacts" / "dashboard-drift.png"))
            request(f"{base}/api/v1/sync/live", method="POST")
            page.wait_for_selector("td.cell[data-app=app][data-cluster=live] .badge.Synced", timeout=20_000)
            assert ".data.color" not in page.locator("td.cell[data-app=app][data-cluster=live]").inner_text()
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_dashboard_filters_searches_and_groups_apps(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """Two apps written by hand and two an app set generates, on one cluster: the counts, the search box, the
    label selector, the app set and sync status filters (asked of the server) and grouping by app set."""
    from playwright.sync_api import sync_playwright

    (a,) = clusters(1)
    for folder in ("hand/web", "hand/db", "teams/red", "teams/blue"):
        name = folder.replace("/", "-")
        git_repo.write_objects(
            f"{folder}/cm.yaml",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}},
        )
    git_repo.commit()
    port = free_port()
    own = {"namespace": namespace, "createNamespace": True}
    config = make_config(
        git_repo,
        [{"name": "alpha", "kubeconfig": str(a.kubeconfig)}],
        apps=[
            {"name": "web", "path": "hand/web", "labels": {"team": "shop", "tier": "frontend"}, **own},
            {"name": "db", "path": "hand/db", "labels": {"team": "shop", "tier": "data"}, **own},
        ],
        appSets=[
            {
                "name": "teams",
                "generators": [{"git": {"directories": [{"path": "teams/*"}]}}],
                "template": {
                    "name": "team-{{path.basename}}",
                    "path": "{{path}}",
                    "labels": {"team": "{{path.basename}}"},
                    **own,
                },
            }
        ],
        server={"listen": f"127.0.0.1:{port}"},
    )
    agent = Agent(config, tmp_path / "agent.log")
    base = agent.base
    try:
        agent.wait_ready()
        wait_until(lambda: json.loads(request(f"{base}/api/v1/apps?sync=Synced")[1])["total"] == 4, timeout=60)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})

            def rows() -> list[str]:
                found = page.locator("#matrix tbody tr[data-app]")
                return sorted(found.evaluate_all("rs => rs.map(r => r.dataset.app)"))

            page.goto(f"{base}/")
            page.wait_for_selector("#matrix tr[data-app=team-red]")
            assert rows() == ["db", "team-blue", "team-red", "web"]
            assert page.locator("#app-counts").inner_text().startswith("4 apps · 4 Synced")
            per_cluster = page.locator("#clusters tr[data-cluster=alpha] td.app-counts").inner_text()
            assert per_cluster == "4 · 4 Synced · 4 Healthy", per_cluster
            page.fill("#app-search", "TEAM")
            wait_until(lambda: page.locator("#matrix tr[data-app]").count() == 2, timeout=10)  # no eval: the CSP
            assert rows() == ["team-blue", "team-red"]
            assert page.locator("#apps-shown").inner_text() == "2 of 2 matching apps shown"
            page.fill("#app-search", "")
            page.fill("#filter-label", "team=shop")
            wait_until(lambda: rows() == ["db", "web"], timeout=10)
            assert page.locator("#matrix tr[data-app=db] .labels").inner_text() == "team=shop, tier=data"
            page.fill("#filter-label", "tier in (data, cache),team")
            wait_until(lambda: rows() == ["db"], timeout=10)
            page.fill("#filter-label", "team!=shop")
            wait_until(lambda: rows() == ["team-blue", "team-red"], timeout=10)
            page.fill("#filter-label", "tier in (")
            page.wait_for_selector("#apps-shown.error:has-text('cannot read')")
            page.fill("#filter-label", "")
            page.select_option("#filter-appset", "teams")
            wait_until(lambda: page.locator("#matrix tr[data-app]").count() == 2, timeout=10)  # no eval: the CSP
            assert rows() == ["team-blue", "team-red"]
            page.select_option("#filter-appset", "")
            page.select_option("#filter-sync", "OutOfSync")
            page.wait_for_selector("#apps-shown:has-text('0 of 0 matching apps shown')")
            page.select_option("#filter-sync", "")
            page.check("#group-appset")
            page.wait_for_selector("#matrix tr.group[data-appset=teams]")
            groups = page.locator("#matrix tr.group").all_inner_texts()
            assert groups == ["apps (2)", "app set teams (2)"], groups
            browser.close()
    finally:
        agent.stop()


def test_a_read_only_token_sees_the_dashboard_without_its_levers(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """Roles in the dashboard: a token of ``role:readonly`` reads every cluster and app, and the levers it may not
    use (sync, suspend, roll back) are not offered; the API refuses them anyway (403), and says so in the audit
    trail."""
    from playwright.sync_api import sync_playwright

    (a,) = clusters(1)
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace}}
    git_repo.write_objects("app/cm.yaml", {**settings, "data": {"a": "1"}})
    git_repo.commit()
    port = free_port()
    reader = "reader-token-44d1"
    read_only = {"name": "reader", "token": {"env": "DASH_READER"}, "groups": ["role:readonly"]}
    server = {"listen": f"127.0.0.1:{port}", "token": {"env": "DASH_TOKEN"}, "apiTokens": [read_only]}
    config = make_config(git_repo, [cluster_entry(a, "alpha", ["app"], namespace)], server=server)
    base = f"http://127.0.0.1:{port}"
    agent = Agent(config, tmp_path / "agent.log", env={"DASH_TOKEN": TOKEN, "DASH_READER": reader})
    try:

        def up() -> bool:
            try:
                return request(f"{base}/api/v1/status", token=reader)[0] == 200
            except OSError:
                return False

        wait_until(up, timeout=60)
        assert request(f"{base}/api/v1/apps/app/sync", method="POST", token=reader)[0] == 403
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/")
            page.wait_for_selector("#login", state="visible")
            page.fill("#token", reader)
            page.click("#login button")
            page.wait_for_selector("td.cell[data-app=app][data-cluster=alpha]")
            page.click("td.cell[data-app=app][data-cluster=alpha]")
            page.wait_for_selector(f"#objects >> text=ConfigMap {namespace}/settings")
            page.wait_for_selector("#levers", state="attached")
            for lever in ("#sync-app", "#suspend-app", "#resume-app", "#rollback-app", "#unpin-app", ".sync-object"):
                assert page.locator(lever).count() == 0, lever
            browser.close()
        trail = json.loads(request(f"{base}/api/v1/audit", token=TOKEN)[1])["audit"]
        assert [(e["subject"], e["path"], e["result"]) for e in trail] == [
            ("reader", "/api/v1/apps/app/sync", "denied")
        ]
    finally:
        assert agent.stop() == 0, agent.log.read_text()[-2000:]
