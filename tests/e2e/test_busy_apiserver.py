"""A busy API server's "too many requests" is waited out, not turned into failed objects: a test cluster started
with the legacy in-flight limits (priority and fairness off, one mutating and two other requests at a time) and
the agent as a ServiceAccount (``system:masters`` is exempt from that filter) syncs 600 ConfigMaps at 16 requests
in flight with no failed object; the API server's own ``apiserver_request_total{code="429"}`` shows it did say
429, and the agent counted each request it sent again. The same with priority and fairness on and the agent's
ServiceAccount given one seat and a queue of one by a FlowSchema (manifests/flowcontrol/, the example users copy).
The client-side rate limit: with ``qps: 20, burst: 20`` the audit log's write requests of one first sync never
exceed the bucket in any one-second window."""

from __future__ import annotations

import datetime
import pathlib
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest
import yaml

from tests.cluster.launcher import TestCluster
from tests.conftest import (
    REPO,
    GitRepo,
    audit_events,
    audit_offset,
    cluster_entry,
    dynamic_client,
    runner_for,
    target_identity,
)

LIMITS = [
    "--apiserver-arg=--enable-priority-and-fairness=false",
    "--apiserver-arg=--max-mutating-requests-inflight=1",
    "--apiserver-arg=--max-requests-inflight=2",
]


@pytest.fixture
def busy(tmp_path: pathlib.Path) -> Iterator[TestCluster]:
    tc = TestCluster.start("busy", tmp_path / "busy", LIMITS)
    yield tc
    tc.stop()


def _kubectl(tc: TestCluster, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [str(REPO / "build" / "kubectl"), "--kubeconfig", str(tc.kubeconfig), *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip


def _metric(tc: TestCluster, name: str, pattern: str) -> int:
    """The sum of the API server's own ``name`` series whose labels match ``pattern`` (its /metrics, as admin)."""
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in _kubectl(tc, "get", "--raw", "/metrics").splitlines()
        if line.startswith(name + "{") and re.search(pattern, line)
    )


def _served_429(tc: TestCluster) -> int:
    """The API server's own count of requests it answered 429."""
    return _metric(tc, "apiserver_request_total", r'\bcode="429"')


def _configmaps(repo: GitRepo, n: int) -> None:
    repo.write_objects(
        "app/cms.yaml",
        *(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}}
            for i in range(n)
        ),
    )
    repo.commit()


def test_a_busy_api_server_is_waited_out(
    busy: TestCluster, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    kubeconfig, _ = target_identity(busy, make_config, tmp_path)
    dynamic_client(busy).resources.get(api_version="v1", kind="Namespace").create(
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    repo = GitRepo(tmp_path / "fleet")
    _configmaps(repo, 600)
    config = make_config(
        repo,
        [{**cluster_entry(busy, "busy", ["app"], namespace), "kubeconfig": str(kubeconfig)}],
        sync={"concurrency": 16},
    )
    before = _served_429(busy)
    agent, revision, checkout = runner_for(config, "busy", watch=False)
    seen: set[str] = set()
    try:
        with futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(agent.reconcile, revision, checkout)
            while not running.done():  # what the status says while the sync waits out the server
                seen.add(agent.throttled())
                time.sleep(0.01)
            result = running.result()
        assert agent.kube is not None
        retried = dict(agent.kube.retries)
    finally:
        agent.close()
    said = [t for t in seen if t]
    assert said, "the status never said the sync was throttled"
    assert all(re.fullmatch(r"Throttled by the API server \(\d+ retries\)", t) for t in said), said
    assert agent.throttled() == ""  # nothing waits now

    assert result.error is None, result.error
    assert [e for e in result.entries if e.action.value not in ("created", "unchanged")] == []
    assert sum(e.action.value == "created" for e in result.entries) == 600
    served = _served_429(busy) - before
    assert served > 0  # the server did push back
    assert set(retried) == {429}
    assert retried[429] == served  # every 429 it answered was waited out and sent again
    live = dynamic_client(busy).resources.get(api_version="v1", kind="ConfigMap").get(namespace=namespace)
    assert sum(1 for item in live.items if item.metadata.name.startswith("cm-")) == 600


@pytest.fixture
def fair(tmp_path: pathlib.Path) -> Iterator[TestCluster]:
    # priority and fairness on (a real API server's default), with a small total: a level of one share gets one seat
    flags = [
        "--apiserver-arg=--enable-priority-and-fairness=true",  # the test cluster turns it off unless asked
        "--apiserver-arg=--max-requests-inflight=10",
        "--apiserver-arg=--max-mutating-requests-inflight=5",
    ]
    tc = TestCluster.start("fair", tmp_path / "fair", flags)
    yield tc
    tc.stop()


def test_priority_and_fairness_with_one_seat_for_the_agent_is_waited_out(
    fair: TestCluster, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    kubeconfig, _ = target_identity(fair, make_config, tmp_path)
    _kubectl(fair, "apply", "-f", str(REPO / "manifests" / "flowcontrol" / "gitops-agent.yaml"))
    level = yaml.safe_load_all((REPO / "manifests" / "flowcontrol" / "gitops-agent.yaml").read_text())
    assert {d["kind"] for d in level} == {"FlowSchema", "PriorityLevelConfiguration"}
    dynamic_client(fair).resources.get(api_version="v1", kind="Namespace").create(
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    repo = GitRepo(tmp_path / "fleet")
    _configmaps(repo, 600)
    config = make_config(
        repo,
        [{**cluster_entry(fair, "fair", ["app"], namespace), "kubeconfig": str(kubeconfig)}],
        sync={"concurrency": 16},
    )
    rejected = r'flow_schema="gitops-agent"'
    before = _metric(fair, "apiserver_flowcontrol_rejected_requests_total", rejected)
    agent, revision, checkout = runner_for(config, "fair", watch=False)
    try:
        result = agent.reconcile(revision, checkout)
        assert agent.kube is not None
        retried = dict(agent.kube.retries)
    finally:
        agent.close()

    assert result.error is None, result.error
    assert sum(e.action.value == "created" for e in result.entries) == 600
    assert [e for e in result.entries if e.action.value not in ("created", "unchanged")] == []
    pushed_back = _metric(fair, "apiserver_flowcontrol_rejected_requests_total", rejected) - before
    assert pushed_back > 0  # its one seat and queue of one did refuse requests
    assert set(retried) == {429}
    assert retried[429] == pushed_back


def test_the_rate_limit_holds_over_every_second_of_a_first_sync(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str
) -> None:
    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/ns.yaml", ns)
    _configmaps(git_repo, 150)
    entry = {**cluster_entry(tc, "limited", ["app"], namespace), "qps": 20, "burst": 20}
    config = make_config(git_repo, [entry], sync={"concurrency": 16})
    since = audit_offset(tc)
    agent, revision, checkout = runner_for(config, "limited", watch=False)
    try:
        result = agent.reconcile(revision, checkout)
        assert agent.kube is not None
        sent = sum(agent.kube.requests.values())
        assert agent.kube.limiter is not None
        waited = agent.kube.limiter.waited
    finally:
        agent.close()
    assert result.ok, result.error
    times = sorted(
        datetime.datetime.fromisoformat(str(e["requestReceivedTimestamp"]).replace("Z", "+00:00"))
        for e in audit_events(tc, since)
        if e.get("stage") == "ResponseComplete" and str(e.get("userAgent", "")).startswith("gitops-agent/")
    )
    assert len(times) >= 300  # a dry run and an apply per object, and the inventory
    second = datetime.timedelta(seconds=1)
    busiest = max(sum(1 for t in times[i:] if t < start + second) for i, start in enumerate(times))
    assert busiest <= 20 + 20, f"{busiest} writes within one second"  # burst, then qps a second
    assert (times[-1] - times[0]).total_seconds() >= (len(times) - 20) / 20 * 0.9
    assert waited > 0
    assert sent >= len(times)
