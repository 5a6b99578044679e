"""Events (``GET /api/v1/events``, the status's timeline) from a running agent against a real cluster: a sync that
changes something, a self-heal, a sync the API server rejects, the fix, and a source that fails and recovers each
produce exactly their event, once, in order; a resync that changes nothing produces none."""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

from reconcilers import engine, health, resources
from tests.conftest import GitRepo, cluster_entry, dynamic_client, live_object, wait_until
from tests.e2e.test_faults import Agent, cm
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port


def test_each_change_is_one_event_in_order(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/app.yaml", ns, cm("app", namespace))
    git_repo.commit("rev 1")
    port = free_port()
    config = make_config(
        git_repo,
        [cluster_entry(tc, "a", ["app"], namespace)],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "1h", "selfHeal": True},
        server={"listen": f"127.0.0.1:{port}"},
    )
    agent = Agent(config, tmp_path / "agent.log")

    def reasons(actions: bool = False) -> list[str]:
        events = json.loads(request(f"{agent.base}/api/v1/events")[1])["events"]
        found = [e["reason"] for e in reversed(events)]  # oldest first
        return found if actions else [r for r in found if r != "ActionTaken"]  # the API's audit events aside

    try:
        agent.wait_ready()
        wait_until(lambda: reasons() == ["SyncSucceeded"], timeout=30)
        request(f"{agent.base}/api/v1/sync/a", method="POST")  # a resync that changes nothing: no sync event
        time.sleep(1.5)
        assert reasons(actions=True) == ["SyncSucceeded", "ActionTaken"]  # the request itself, audited

        dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").patch(
            name="app",
            namespace=namespace,
            body={"data": {"v": "edited"}},
            content_type="application/merge-patch+json",
            field_manager="intruder",
        )
        wait_until(lambda: reasons() == ["SyncSucceeded", "DriftCorrected"], timeout=20)

        bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad", "namespace": namespace}}
        git_repo.write_objects("app/app.yaml", ns, cm("app", namespace), {**bad, "data": {"n": 5}})
        git_repo.commit("rejected by the API server")
        wait_until(lambda: reasons()[-1:] == ["SyncFailed"], timeout=20)
        git_repo.write_objects("app/app.yaml", ns, cm("app", namespace), {**bad, "data": {"n": "5"}})
        git_repo.commit("fixed")
        wait_until(lambda: live_object(tc, "v1", "ConfigMap", "bad", namespace) is not None, timeout=20)

        moved = tmp_path / "moved"
        git_repo.path.rename(moved)  # the remote is gone, then back
        wait_until(lambda: reasons()[-1:] == ["SourceFailed"], timeout=20)
        time.sleep(2)  # more failed fetches: still one event
        moved.rename(git_repo.path)
        wait_until(lambda: reasons()[-1:] == ["SourceRecovered"], timeout=20)
        assert reasons() == [
            "SyncSucceeded",
            "DriftCorrected",
            "SyncFailed",
            "SyncSucceeded",
            "SourceFailed",
            "SourceRecovered",
        ]
        events = json.loads(request(f"{agent.base}/api/v1/events?cluster=a&limit=2")[1])["events"]
        assert [e["reason"] for e in events] == ["SyncSucceeded", "SyncFailed"]
        failed = events[1]
        assert failed["type"] == "Warning"
        assert "ConfigMap" in failed["message"]
        assert "bad" in failed["message"]
        summary = agent.status()
        assert [e["reason"] for e in summary["events"]][:2] == ["SourceRecovered", "SourceFailed"]
    finally:
        agent.stop()


def test_unreachable_and_health_turns_are_told_once() -> None:
    """The transitions, on the event log itself: an unreachable cluster is told once until it answers again;
    Degraded and back to Healthy are told once each; a cancelled sync is no verdict."""
    import datetime

    from agent.runtime import events

    log = events.EventLog()
    now = datetime.datetime.now(datetime.UTC)
    rev = resources.Revision("a" * 40, "main")

    def result(kind: engine.ErrorKind | None) -> engine.ReconcileResult:
        return engine.ReconcileResult("a", rev, (), now, 0.0, error="x" if kind else None, error_kind=kind)

    for _ in range(3):
        log.synced(result(engine.ErrorKind.CLUSTER))
    log.synced(result(engine.ErrorKind.CANCELLED))
    log.synced(result(None))  # back (and nothing changed: no SyncSucceeded)
    log.synced(result(engine.ErrorKind.CLUSTER))
    for h in (health.Health.HEALTHY, health.Health.DEGRADED, health.Health.DEGRADED, health.Health.PROGRESSING):
        log.health("a", rev.sha, h, "web: not available")
    log.health("a", rev.sha, health.Health.HEALTHY, "")
    assert [e["reason"] for e in reversed(log.json())] == [
        "ClusterUnreachable",
        "ClusterUnreachable",
        "HealthDegraded",
        "HealthRecovered",
    ]


def test_a_start_before_a_second_source_answers_reports_no_failure(
    clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """The agent starts while its second source's git server does not answer yet: the app reading it is Waiting
    (not failed), no SyncFailed event is told and no notification sent; once the server answers, it syncs."""
    from tests.gitserver import GitDaemon, StallingProxy
    from tests.receivers import Receiver

    (tc,) = clusters(1)
    base = GitRepo(tmp_path / "base")
    base.write_objects("base/app.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    base.commit()
    team = GitRepo(tmp_path / "served" / "team")
    team.write_objects("guestbook/cm.yaml", cm("guestbook", namespace))
    team.commit()
    daemon = GitDaemon(tmp_path / "served")
    proxy = StallingProxy(daemon.port)
    proxy.stall()  # the team source's first fetches get no answer
    hook = Receiver("webhook", secret="start-hmac-key")
    port = free_port()
    config = make_config(
        base,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        source={"url": str(base.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sources={
            "team": {
                "url": f"git://127.0.0.1:{proxy.port}/team",
                "cacheDir": str(tmp_path / "cache-team"),
                "interval": "1s",
                "timeout": "2s",
            }
        },
        apps=[{"name": "base", "path": "base"}, {"name": "guestbook", "source": "team", "path": "guestbook"}],
        sync={"interval": "2s"},
        notifications=[
            {"name": "audit", "type": "webhook", "url": hook.url + "/gitops", "secret": {"env": "AUDIT_HMAC"}}
        ],
        server={"listen": f"127.0.0.1:{port}"},
    )
    agent = Agent(config, tmp_path / "agent.log", env={"AUDIT_HMAC": "start-hmac-key"})

    def guestbook() -> Any:
        cells = json.loads(request(f"{agent.base}/api/v1/apps/guestbook")[1])["clusters"]
        return cells[0] if cells else None

    try:
        wait_until(lambda: agent.proc.poll() is None and _answers(agent), timeout=60)
        wait_until(lambda: live_object(tc, "v1", "Namespace", namespace), timeout=30)  # the other app synced
        waiting = wait_until(lambda: "Waiting (source team" in json.dumps(guestbook()) and guestbook(), timeout=30)
        time.sleep(3)  # a few more syncs while the team source still does not answer
        assert "no revision yet" in json.dumps(waiting)
        proxy.forward()
        wait_until(lambda: live_object(tc, "v1", "ConfigMap", "guestbook", namespace), timeout=30)
        wait_until(lambda: len(hook.accepted) >= 3, timeout=20)  # SourceFailed, SourceRecovered, SyncSucceeded
        events = json.loads(request(f"{agent.base}/api/v1/events")[1])["events"]
    finally:
        agent.stop()
        proxy.close()
        daemon.stop()
        hook.close()
    reasons = [e["reason"] for e in events]
    assert "SyncFailed" not in reasons, events
    # the source itself did not answer, and says so once, by name, however often the default source is fetched
    source_events = [(e["reason"], e["message"].split(":")[0]) for e in reversed(events) if "Source" in e["reason"]]
    assert source_events == [("SourceFailed", "source team"), ("SourceRecovered", "source team")], events
    told = [a["body"]["type"].removeprefix("io.gitops-agent.") for a in hook.accepted]
    assert "SyncFailed" not in told, told
    assert told.count("SourceFailed") == 1, told


def _answers(agent: Agent) -> bool:
    try:
        return request(f"{agent.base}/healthz")[0] == 200
    except OSError:
        return False
