"""What the fleet gives its workers (:class:`agent.runtime.worker.Host`): the revisions and trees a cluster's
sync reads, and what becomes of its result (the status, metrics, events, commit statuses); and the
``health-events`` loop that turns health changes between syncs into events.

:class:`WorkerHost` reads the fleet's parts (:class:`Parts`) at each call, so a reloaded config, a new notifier or
rollout are used at once. Owned by :class:`agent.runtime.fleet.Fleet`; called from the workers' threads (each about
its own cluster) and the ``health-events`` thread.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import threading
from collections.abc import Iterator, Mapping
from typing import Protocol

from agent import config
from agent.runtime import approllouts, commitstatus, events, metrics, notify, retries, rollout, sourcing, state, targets
from agent.sources import registry
from agent.sources.render import helm
from agent.sync import holds
from reconcilers import engine, resources

log = logging.getLogger(__name__)

HEALTH_TICK = 5.0
"""Seconds between the checks that turn health changes into events."""


class Parts(Protocol):
    """The parts of the fleet the host reads (:class:`agent.runtime.fleet.Fleet` has them)."""

    cfg: config.AgentConfig
    state: state.AgentState
    metrics: metrics.Metrics
    events: events.EventLog
    commits: commitstatus.CommitStatuses
    notifier: notify.Notifier
    sourcing: sourcing.Sources
    rollout: rollout.Rollout | None
    app_rollouts: approllouts.AppRollouts
    book: holds.Book


class WorkerHost:
    """The workers' host over ``fleet``'s parts; ``stopping`` ends :meth:`watch_health`."""

    def __init__(self, fleet: Parts, stopping: threading.Event) -> None:
        self.fleet = fleet
        self.stopping = stopping

    @property
    def source(self) -> registry.Source:
        """The source named ``default`` (else the first): the one rollout and commit statuses follow."""
        return self.fleet.sourcing.primary

    def revision_for(self, cluster: str) -> resources.Revision | None:
        """What cluster ``cluster`` should be at in the primary source (``default``): its rollout target, or else
        the last good revision."""
        return self.fleet.rollout.target(cluster) if self.fleet.rollout else self.source.last_good

    def revisions_for(self, cluster: str) -> dict[str, resources.Revision]:
        """The revision of each source the cluster's apps read, rollout targets and pins applied
        (:func:`agent.runtime.targets.revisions_for`). Empty when there is nothing to sync yet."""
        return targets.revisions_for(
            self.fleet.cfg, cluster, self.fleet.sourcing, self.fleet.rollout, self.fleet.app_rollouts, self.fleet.book
        )

    @contextlib.contextmanager
    def trees(self, revisions: Mapping[str, resources.Revision]) -> Iterator[dict[str, pathlib.Path]]:
        """The tree of each revision (by source name, or ``@<app>`` for a pinned app), held while the block runs.
        Raises FetchError."""
        with self.fleet.sourcing.trees(targets.wanted_trees(self.fleet.cfg, revisions)) as found:
            yield found

    def record(self, result: engine.ReconcileResult, healed: int) -> None:
        """Keep a finished sync in the status and the metrics."""
        self.fleet.state.record(result)
        self.fleet.metrics.reconciled(result, healed)
        self.fleet.metrics.rendered(helm.renders())
        self.fleet.events.synced(result)
        self.judge_health(result.cluster)

    def started(self, cluster: str, revision: resources.Revision) -> None:
        """A sync of ``revision`` starts on ``cluster``: a revision new there gets a pending commit status."""
        self.fleet.commits.started(cluster, revision)

    def retrying(self, cluster: str, pending: retries.Pending) -> None:
        """An app of ``cluster`` failed and is retried: a ``SyncRetrying`` event."""
        delay = f"{pending.delay:g}s"
        message = f"app {pending.app}: attempt {pending.attempt} of {pending.limit} in {delay}: {pending.error}"
        self.fleet.events.emit(events.Event("SyncRetrying", cluster, pending.sha, message, path=pending.app))

    def judge_health(self, name: str) -> None:
        """Health events, and the revision's commit status kept true (see :mod:`agent.runtime.commitstatus`)."""
        self.fleet.commits.judge(name)

    def post(self, cluster: str, sha: str, state: str, description: str) -> None:
        every = frozenset(c.name for c in self.fleet.cfg.clusters)
        self.fleet.notifier.commit_status(cluster, sha, state, description, every)

    def watch_health(self) -> None:
        """Every :data:`HEALTH_TICK` seconds, health changes between syncs (a pod that crashes) become events."""
        while not self.stopping.wait(HEALTH_TICK):
            for name in self.fleet.state.names():
                try:
                    self.judge_health(name)
                except Exception:  # a bug must not end the thread
                    log.exception("cluster %s: health events", name)

    def late(self, cluster: str, seconds: float) -> None:
        """A scheduled sync started ``seconds`` late (metrics)."""
        self.fleet.metrics.lateness.observe(seconds)
