"""The long-running agent: APScheduler jobs that fetch the source and reconcile each cluster, and one
``trigger_now`` for everything that wants a reconcile sooner (a new revision, an API call).

Jobs (a ``BackgroundScheduler``, threads only):

- ``fetch``: every ``source.interval`` seconds (10% jitter); a new revision triggers every cluster at once;
- ``sync:<cluster>``: every ``sync.interval`` seconds (10% jitter), one run at a time per cluster, missed runs
  coalesced. A trigger that arrives while the cluster is reconciling runs once more right after, so no
  revision is missed.

Used by ``agent.cli run``; reads and writes ``agent.state.AgentState``.
"""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from agent import config, runner, state
from agent.sources import git
from reconcilers import errors

log = logging.getLogger(__name__)


class Agent:
    """The source, the clusters and their schedule."""

    def __init__(self, cfg: config.AgentConfig) -> None:
        self.cfg = cfg
        self.state = state.AgentState([c.name for c in cfg.clusters])
        self.source = git.GitSource(cfg.source)
        self.runners = {c.name: runner.ClusterRunner(cfg, c, watch=True) for c in cfg.clusters}
        self.scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}, timezone="UTC"
        )
        self._busy: set[str] = set()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self.fetched = threading.Event()

    @property
    def ready(self) -> bool:
        """True once the first fetch finished (even if it failed) and the scheduler runs."""
        return self.fetched.is_set() and bool(self.scheduler.running)

    def start(self) -> None:
        """Schedule the jobs and start the scheduler thread; the first fetch runs at once."""
        now = datetime.datetime.now(datetime.UTC)
        self.scheduler.add_job(
            self.fetch,
            "interval",
            seconds=self.cfg.source.interval,
            jitter=self.cfg.source.interval * 0.1,
            id="fetch",
            next_run_time=now,
        )
        for c in self.cfg.clusters:
            self.scheduler.add_job(
                self.reconcile,
                "interval",
                args=[c.name],
                seconds=self.cfg.sync.interval,
                jitter=self.cfg.sync.interval * 0.1,
                id=f"sync:{c.name}",
            )
        self.scheduler.start()

    def shutdown(self) -> None:
        """Stop scheduling and wait for running reconciles to finish."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        for r in self.runners.values():
            r.close()

    def fetch(self) -> None:
        """Fetch the source; a new revision triggers every cluster."""
        before = self.source.last_good
        try:
            revision = self.source.fetch()
        except errors.FetchError as e:
            log.error("source: %s (keeping revision %s)", e, before.short if before else "none")
            self.state.record_fetch(None, str(e))
        else:
            self.state.record_fetch(revision, None)
            if before is None or revision.sha != before.sha:
                log.info("source: revision %s (%s)", revision.short, revision.ref)
                self.trigger_now()
        finally:
            self.fetched.set()

    def trigger_now(self, cluster: str | None = None) -> list[str]:
        """Reconcile ``cluster`` (every cluster when None) as soon as possible; returns the names triggered.

        Raises :class:`errors.ConfigError` for an unknown cluster.
        """
        names = [self.cfg.cluster(cluster).name] if cluster else [c.name for c in self.cfg.clusters]
        for name in names:
            with self._lock:
                if name in self._busy:
                    self._pending.add(name)
                    continue
            job = self.scheduler.get_job(f"sync:{name}")
            if job is not None:
                job.modify(next_run_time=datetime.datetime.now(datetime.UTC))
        return names

    def cluster_json(self, name: str) -> dict[str, Any] | None:
        """The status of one cluster, with its self-heal state (None when unknown)."""
        found = self.state.cluster_json(name)
        if found is not None and name in self.runners:
            found["selfHeal"] = self.runners[name].status()
        return found

    def status_json(self) -> dict[str, Any]:
        """The status of the source and of every cluster."""
        status = self.state.status_json()
        status["clusters"] = [self.cluster_json(c["name"]) for c in status["clusters"] if c]
        return status

    def reconcile(self, name: str) -> None:
        """One reconcile of cluster ``name`` at the last good revision (none before the first good fetch)."""
        revision = self.source.last_good
        if revision is None:
            return
        with self._lock:
            self._busy.add(name)
        try:
            while True:
                checkout = self.source.checkout(revision)
                self.state.record(self.runners[name].reconcile(revision, checkout))
                with self._lock:
                    if name not in self._pending:
                        break
                    self._pending.discard(name)
                revision = self.source.last_good or revision
        finally:
            with self._lock:
                self._busy.discard(name)
