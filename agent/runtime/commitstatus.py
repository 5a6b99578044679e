"""Commit statuses kept true per cluster: ``pending`` when a revision new to a cluster starts syncing there,
``failure`` while its sync fails or the cluster is Degraded, ``success`` once it is Synced and Healthy; each change
posted once (the worker and the health thread both judge). Posting goes through the notifier's queues, so no lock
is held across the network. Owned by :mod:`agent.runtime.fleet`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from reconcilers import engine, health, resources

Verdict = tuple[health.Health, str] | None
"""A cluster's health now and the worst object's message (None: it cannot be known)."""


class CommitStatuses:
    """``judge(cluster)`` gives the cluster's health verdict (and tells the events), ``last(cluster)`` its last
    sync, ``post(cluster, sha, state, description)`` sends a commit status."""

    def __init__(
        self,
        judge: Callable[[str], Verdict],
        last: Callable[[str], engine.ReconcileResult | None],
        post: Callable[[str, str, str, str], None],
    ) -> None:
        self._judge = judge
        self._last = last
        self._post = post
        self._posted: dict[str, tuple[str, str]] = {}  # cluster -> (revision, its commit status last posted)
        self._lock = threading.Lock()  # held for an enqueue only, never across the network

    def started(self, cluster: str, revision: resources.Revision) -> None:
        """A sync of ``revision`` starts on ``cluster``: a revision new there gets a pending commit status."""
        with self._lock:
            posted = self._posted.get(cluster)
            if posted is None or posted[0] != revision.sha:
                self._posted[cluster] = (revision.sha, "pending")
                self._post(cluster, revision.sha, "pending", f"syncing {revision.short} to {cluster}")

    def judge(self, name: str) -> None:
        """Judge cluster ``name`` now (health events) and post its revision's commit status when it changed."""
        verdict = self._judge(name)
        posted, last = self._posted.get(name), self._last(name)
        if posted is None or last is None or last.revision is None or last.revision.sha != posted[0]:
            return
        if last.error_kind in (engine.ErrorKind.CANCELLED, engine.ErrorKind.CLUSTER, engine.ErrorKind.WAITING):
            return  # no verdict on the revision (apps only waiting: it stays pending)
        if not last.ok:
            failed = "; ".join(f"{e.key}: {e.message}" for e in last.failed[:2])
            state, why = "failure", last.error or failed or "sync failed"
        elif verdict is not None and verdict[0] is health.Health.HEALTHY:
            state, why = "success", f"Synced and Healthy on {name}"
        elif verdict is not None and verdict[0] is health.Health.DEGRADED:
            state, why = "failure", f"Degraded: {verdict[1]}"
        else:
            return  # still progressing
        with self._lock:
            if self._posted.get(name) == posted and state != posted[1]:
                self._posted[name] = (posted[0], state)
                self._post(name, posted[0], state, why)
