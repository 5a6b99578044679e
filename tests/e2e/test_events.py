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

    def reasons() -> list[str]:
        events = json.loads(request(f"{agent.base}/api/v1/events")[1])["events"]
        return [e["reason"] for e in reversed(events)]  # oldest first

    try:
        agent.wait_ready()
        wait_until(lambda: reasons() == ["SyncSucceeded"], timeout=30)
        request(f"{agent.base}/api/v1/sync/a", method="POST")  # a resync that changes nothing: no event
        time.sleep(1.5)
        assert reasons() == ["SyncSucceeded"]

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
