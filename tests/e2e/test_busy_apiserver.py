"""A busy API server's "too many requests" is waited out, not turned into failed objects: a test cluster started
with the legacy in-flight limits (priority and fairness off, one mutating and two other requests at a time) and
the agent as a ServiceAccount (``system:masters`` is exempt from that filter) syncs 600 ConfigMaps at 16 requests
in flight with no failed object; the API server's own ``apiserver_request_total{code="429"}`` shows it did say
429, and the agent counted each request it sent again."""

from __future__ import annotations

import pathlib
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.launcher import TestCluster
from tests.conftest import REPO, GitRepo, cluster_entry, dynamic_client, runner_for, target_identity

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


def _served_429(tc: TestCluster) -> int:
    """The API server's own count of requests it answered 429 (its /metrics, read as admin)."""
    text = subprocess.run(
        [str(REPO / "build" / "kubectl"), "--kubeconfig", str(tc.kubeconfig), "get", "--raw", "/metrics"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{") and re.search(r'\bcode="429"', line)
    )


def test_a_busy_api_server_is_waited_out(
    busy: TestCluster, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    kubeconfig, _ = target_identity(busy, make_config, tmp_path)
    dynamic_client(busy).resources.get(api_version="v1", kind="Namespace").create(
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    repo = GitRepo(tmp_path / "fleet")
    repo.write_objects(
        "app/cms.yaml",
        *(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}}
            for i in range(600)
        ),
    )
    repo.commit()
    config = make_config(
        repo,
        [{**cluster_entry(busy, "busy", ["app"], namespace), "kubeconfig": str(kubeconfig)}],
        sync={"concurrency": 16},
    )
    before = _served_429(busy)
    agent, revision, checkout = runner_for(config, "busy", watch=False)
    try:
        result = agent.reconcile(revision, checkout)
        assert agent.kube is not None
        retried = dict(agent.kube.retries)
    finally:
        agent.close()

    assert result.error is None, result.error
    assert [e for e in result.entries if e.action.value not in ("created", "unchanged")] == []
    assert sum(e.action.value == "created" for e in result.entries) == 600
    served = _served_429(busy) - before
    assert served > 0  # the server did push back
    assert set(retried) == {429}
    assert retried[429] == served  # every 429 it answered was waited out and sent again
    live = dynamic_client(busy).resources.get(api_version="v1", kind="ConfigMap").get(namespace=namespace)
    assert sum(1 for item in live.items if item.metadata.name.startswith("cm-")) == 600
