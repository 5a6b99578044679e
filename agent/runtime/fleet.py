"""The long-running agent: the sources, and one :class:`agent.runtime.worker.Worker` per cluster.

The fleet only starts, stops and joins workers and reads their state; every trigger goes through the cluster's
worker, so a slow or frozen cluster never holds a thread another cluster needs:

- each source is fetched on its own ``interval`` and on demand (webhooks naming its repository, local file
  changes), each fetch bounded by its ``timeout`` in a child process (:mod:`agent.runtime.sourcing`); a new
  revision triggers the workers of the clusters whose apps read that source (or, for the primary source with
  ``rollout``, the rollout decides who gets it, and when); a failing source marks only its apps stale;
- each worker syncs its cluster's apps on its own schedule (``sync.interval``), on triggers, and for rollout
  steps;
- a config reload stops the workers of removed or changed clusters (their syncs cancelled and waited for) and
  starts new ones; with sharding a lost Lease pauses the cluster's worker (cancelled and waited for before the
  Lease is released) and a gained one resumes it; SIGTERM cancels every sync and waits for them.

Threads and who owns them: the APScheduler thread pool (fetch jobs only), ``fetch-on-demand`` and at most one
``fetch-<source>`` per source at a time, one ``worker-<cluster>`` per cluster (owns its runner: connection, live
cache, self-heal; apps at a new revision sync on ``app-<cluster>-<n>`` threads, resyncs one after the other,
an app's health wait on a ``wait-<cluster>-<app>`` thread),
``health-events`` (health
changes between syncs become events), ``rollout`` and ``leases`` when configured, ``watch-source-<name>`` per local
source. ``self.workers`` is swapped under ``_lock``, never held across the network. Used by ``agent.cli run`` and
``agent.api.server``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from agent import apps, config, threads
from agent.runtime import (
    approllouts,
    appsets,
    commitstatus,
    events,
    leases,
    metrics,
    notify,
    previews,
    rollout,
    rollout_store,
    sourcing,
    state,
    status,
    targets,
    worker,
)
from agent.runtime import host as host_
from agent.sync import cluster as cluster_sync
from agent.sync import gate, holds
from reconcilers import engine, errors, resources

log = logging.getLogger(__name__)

STOP_GRACE = 5.0
"""Seconds beyond ``sync.requestTimeout`` that a reload waits for a removed cluster's sync to end."""
SHUTDOWN_WAIT = 10.0
"""Seconds SIGTERM waits in all for the cancelled syncs to end (a pod's grace period is 30 s by default). A sync
still waiting on a frozen API server then is left to the process's exit: its token is cancelled, so it sends
nothing more."""


class Fleet:
    """The source, the clusters' workers, and the rollout and leases when configured."""

    def __init__(self, cfg: config.AgentConfig) -> None:
        self._stopping = threading.Event()
        self.scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}, timezone="UTC"
        )
        self.sourcing = sourcing.Sources(
            cfg, self.scheduler, self._stopping, lambda: self.cfg.server.webhook_debounce, self._fetched
        )
        self.appsets = appsets.AppSets(
            cfg, self._last_good, self.sourcing.trees, self._apply, self._stopping, self.sourcing.fetch,
            lambda app_set, spec, pulls: self.previews.offer(app_set, spec, pulls),
        )  # fmt: skip
        cfg = self.appsets.current  # with the apps app sets generate (git generators: after their first fetch)
        self.cfg = cfg
        self.state = state.AgentState([c.name for c in cfg.clusters], list(cfg.all_sources()))
        self.metrics = metrics.Metrics()
        self.metrics.watch_drift(self._drifted)
        self.notifier = notify.Notifier(cfg, self.metrics)  # reads its secrets now: a missing one fails the start
        self.events = events.EventLog(self.notifier.event)
        self.commits = commitstatus.CommitStatuses(
            lambda name: status.judge_health(self, name), self.state.last, self._post_commit
        )
        self.rollout = self._new_rollout(cfg)
        self.app_rollouts = approllouts.AppRollouts(cfg, self.reconcile_app_to, self._restored, self._rolled)
        self.leases = (
            leases.Coordinator(cfg.sharding, cfg.instance, [c.name for c in cfg.clusters], self.set_owned)
            if cfg.sharding
            else None
        )
        self.book = holds.Book()  # suspended apps and clusters, as last read from (or written to) the clusters
        self.gate = gate.Gate(
            [
                gate.LeaseRule(self._fence),
                gate.SelfHealRule(),
                gate.ManualRule(),
                gate.HoldRule(self.book),
                gate.WindowRule(lambda: self.cfg.sync_windows, self._labels),
            ]
        )
        self.host = host_.WorkerHost(self, self._stopping)  # what the workers read and report through
        self.previews = previews.Previews(
            lambda: self.cfg, self.sourcing.get, self.revisions_for, self.host.trees, self._stopping
        )
        self.workers: dict[str, worker.Worker] = {c.name: self._new_worker(cfg, c) for c in cfg.clusters}
        self._lock = threading.Lock()
        self.fetched = self.sourcing.fetched

    # -- building blocks ---------------------------------------------------------------------------------------
    def _new_worker(self, cfg: config.AgentConfig, cluster: config.ClusterConfig) -> worker.Worker:
        def tell(reason: str, message: str) -> None:  # self-heal's events
            revision = self.revision_for(cluster.name)
            self.events.emit(events.Event(reason, cluster.name, revision.sha if revision else "", message))

        def retried(code: int) -> None:  # a request the API server asked to send again later
            self.metrics.retried(cluster.name, code)

        def make_runner(guard: Any) -> cluster_sync.ClusterSync:
            return cluster_sync.ClusterSync(
                cfg, cluster, watch=True, guard=guard, on_event=tell, on_retry=retried, gate=self.gate, book=self.book
            )

        guard = self.leases.guard(cluster.name) if self.leases else None
        # With sharding a worker reconciles only while this replica holds the cluster's Lease (set_owned).
        return worker.Worker(
            cluster.name, self.host, make_runner, cfg.sync.interval, guard=guard, active=not cfg.sharding
        )

    def _new_rollout(self, cfg: config.AgentConfig) -> rollout.Rollout | None:
        """The fleet's rollout of the primary source, for the clusters' ``paths`` (apps have their own)."""
        if not cfg.rollout or (cfg.apps and not any(c.paths for c in cfg.clusters)):
            return None
        return rollout.Rollout(cfg, self.reconcile_to, rollout_store.RolloutStore(cfg), self._restored, self._rolled)

    def _rolled(self, reason: str, cluster: str, revision: resources.Revision, message: str) -> None:
        self.events.emit(events.Event(reason, cluster, revision.sha, message))

    def _restored(self) -> None:
        """The rollout read its saved state: every cluster syncs to its restored target now."""
        self.trigger_now(reason="rollout restored")

    def _labels(self, cluster: str) -> dict[str, str]:
        """The labels of ``cluster`` in the current config (none when it left it)."""
        found = next((c for c in self.cfg.clusters if c.name == cluster), None)
        return dict(found.labels) if found is not None else {}

    def _fence(self, cluster: str) -> str | None:
        """The Lease's refusal of a write to ``cluster`` (None without sharding, or while held and renewed)."""
        return self.leases.guard(cluster)() if self.leases else None

    def _post_commit(self, cluster: str, sha: str, state: str, description: str) -> None:
        self.host.post(cluster, sha, state, description)

    def _stop_timeout(self) -> float:
        return self.cfg.sync.request_timeout + STOP_GRACE

    # -- what the status reads (agent.runtime.status.View) ----------------------------------------------------
    def revision_for(self, cluster: str) -> resources.Revision | None:
        """What ``cluster`` should be at in the primary source (:meth:`agent.runtime.host.WorkerHost.revision_for`)."""
        return self.host.revision_for(cluster)

    def revisions_for(self, cluster: str) -> dict[str, resources.Revision]:
        """Each source's revision for ``cluster`` (:meth:`agent.runtime.host.WorkerHost.revisions_for`)."""
        return self.host.revisions_for(cluster)

    # -- life cycle --------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True when :meth:`not_ready` finds nothing."""
        return not self.not_ready()

    def not_ready(self) -> list[str]:
        """Why the agent cannot make progress now (see :func:`status.not_ready`)."""
        return status.not_ready(self)

    def start(self) -> None:
        """Start the notifier, the workers, the fetch schedule (first fetch at once), the rollout and the leases."""
        self.notifier.start()
        self.previews.start()
        self.appsets.start()
        self.sourcing.start()
        self.scheduler.start()
        with self._lock:
            for w in self.workers.values():
                w.start()
        threads.start("health-events", "fleet", self.host.watch_health)
        if self.rollout:
            self.rollout.start()
        self.app_rollouts.start()
        if self.leases:
            self.leases.start()

    def shutdown(self) -> None:
        """SIGTERM: stop fetching, cancel every sync in flight and wait for them (about ``sync.requestTimeout`` at
        most), then release the Leases."""
        self._stopping.set()
        with self.appsets.serial:  # a config being put in force (a generation) finishes first; none starts after
            pass
        if self.rollout:
            self.rollout.stop()
        self.app_rollouts.stop()
        with self._lock:
            workers = list(self.workers.values())
        for w in workers:
            w.cancel("shutting down")
        deadline = time.monotonic() + SHUTDOWN_WAIT
        for w in workers:
            if not w.stop("shutting down", max(0.0, deadline - time.monotonic())):
                log.warning("cluster %s: its cancelled sync is still waiting on the network; exiting anyway", w.name)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.leases:
            self.leases.stop()  # reconciles have ended: hand the clusters over now
        self.notifier.stop()

    def apply_config(self, new: config.AgentConfig) -> dict[str, list[str]]:
        """Take a new, already validated config (as loaded) without a restart, its app sets generated again (see
        :meth:`_apply`)."""
        with self.appsets.serial:
            generation = self.appsets.generate_for(new)
            summary = self._apply(generation.config)
            self.appsets.adopt(new, generation)
        return summary

    def _apply(self, new: config.AgentConfig) -> dict[str, list[str]]:
        """Put ``new`` (with its generated apps) in force (the caller holds ``appsets.serial``): clusters added get a
        worker, removed ones lose theirs (the sync in flight cancelled and waited for; their objects stay; no status
        is kept), changed ones (their settings or the apps placed there changed, or a setting every runner uses)
        get a fresh worker; all of those sync at once; changed notifications replace the providers. ``server`` and
        ``sharding`` changes need a restart. Returns ``{"added", "removed", "changed"}``. Raises ConfigError
        (nothing changed) when a new notification's secret cannot be read."""
        old = self.cfg
        # Built first: a notification whose secret cannot be read refuses the whole new config (ConfigError).
        notifier = notify.Notifier(new, self.metrics) if new.notifications != old.notifications else None
        shared = (old.sync, old.instance, old.variables, old.ignore_differences, old.app_set_errors, old.all_sources())
        shared_changed = shared != (
            new.sync, new.instance, new.variables, new.ignore_differences, new.app_set_errors, new.all_sources()
        )  # fmt: skip
        before = {c.name: c for c in old.clusters}
        after = {c.name: c for c in new.clusters}
        added = [n for n in after if n not in before]
        removed = [n for n in before if n not in after]
        changed = [
            n
            for n in after
            if n in before
            and (shared_changed or after[n] != before[n] or apps.units(old, before[n]) != apps.units(new, after[n]))
        ]
        with self._lock:
            self.cfg = new
            retired = {n: self.workers.pop(n) for n in removed + changed}
        for name, w in retired.items():
            w.stop("removed from the config" if name in removed else "its config changed", self._stop_timeout())
        for name in removed:
            self.state.forget(name)
            self.events.forget(name)
            self.metrics.forget(name)
        fresh = {name: self._new_worker(new, after[name]) for name in added + changed}
        with self._lock:
            self.workers.update(fresh)
            owned = set(self.leases.status()["owned"]) if self.leases else None
        for name, w in fresh.items():
            self.state.add(name)
            w.start()
            if owned is not None and name in owned:
                w.resume()
        self._reconfigure_rollout(old, new)
        self.app_rollouts.reconfigure(new, lambda name: s.last_good if (s := self.sourcing.get(name)) else None)
        if notifier is not None:
            notifier.start()
            retired_notifier, self.notifier = self.notifier, notifier
            self.events.on_event = notifier.event
            retired_notifier.stop()
        if new.server != old.server or new.sharding != old.sharding:
            log.warning("config: server or sharding settings changed; they take effect after a restart")
        if self.leases:
            self.leases.set_clusters(after)
        summary = {"added": added, "removed": removed, "changed": changed}
        log.info("config reloaded: %s", ", ".join(f"{k} {v}" for k, v in summary.items() if v) or "no cluster changed")
        self.sourcing.reconfigure(new)  # a new or changed source is fetched now, then at its own interval
        self.state.set_sources(list(new.all_sources()))
        for name in fresh:
            fresh[name].trigger("config reload")
        return summary

    def _last_good(self, source: str) -> resources.Revision | None:
        found = self.sourcing.get(source)
        return found.last_good if found is not None else None

    def _reconfigure_rollout(self, old: config.AgentConfig, new: config.AgentConfig) -> None:
        """``rollout`` turned on, off or changed by a reload."""
        if self.rollout and not new.rollout:
            self.rollout.stop()
            self.rollout = None
            log.info("rollout turned off: every cluster follows the source's revision")
            self.trigger_now()
        elif new.rollout and not self.rollout:
            self.rollout = self._new_rollout(new)
            if self.rollout is None:
                return  # apps only: each has its rollout
            self.rollout.start()
            if (good := self.host.source.last_good) is not None:
                self.rollout.notify(good)
        elif self.rollout:
            self.rollout.reconfigure(new)

    def set_owned(self, owned: set[str]) -> None:
        """Sharding (called from the lease thread): this replica now holds the Leases of ``owned``. Clusters lost
        have their syncs cancelled at once and are waited for (together, at most half of ``renewDeadline``, so the
        lease loop keeps renewing the others) before this returns and the Leases are released; their watches and
        self-heal stop. Every write request is fenced by the Lease anyway (:meth:`leases.Coordinator.guard`).
        Clusters gained sync at once."""
        with self._lock:
            workers = dict(self.workers)
        lost = [w for name, w in workers.items() if name not in owned and w.active]
        for w in lost:
            w.deactivate("lease lost")
        assert self.cfg.sharding is not None
        deadline = time.monotonic() + self.cfg.sharding.renew_deadline / 2
        for w in lost:
            if not w.pause("lease lost", max(0.0, deadline - time.monotonic())):
                log.warning("cluster %s: its cancelled sync is still waiting on the network", w.name)
        for name, w in workers.items():
            if name in owned and not w.active and not self._stopping.is_set():
                w.resume()

    # -- the sources (agent.runtime.sourcing) ------------------------------------------------------------------
    def fetch_soon(self, names: Sequence[str] | None = None) -> None:
        """Fetch the sources ``names`` (all when None) soon (see :meth:`sourcing.Sources.fetch_soon`)."""
        self.sourcing.fetch_soon(names)

    def fetch(self, name: str | None = None) -> None:
        """Fetch source ``name`` (every source when None) now (see :meth:`sourcing.Sources.fetch`)."""
        self.sourcing.fetch(name)

    def _fetched(
        self, name: str, before: resources.Revision | None, revision: resources.Revision | None, error: str | None
    ) -> None:
        """A fetch of source ``name`` ended: recorded; a new revision triggers the clusters whose apps read it
        (kustomize bases may live outside an app's path, so every such cluster is reconciled; an unaffected app
        resyncs at no cost), or with ``rollout`` the primary source's goes to the rollout. A failure keeps the
        last good revision and marks the source (and only its apps) stale."""
        self.state.record_fetch(revision, error, name)
        self.metrics.fetched(revision)
        self.events.fetched(name, revision.sha if revision else before.sha if before else "", error)
        if revision is None:
            return
        if before is None or revision.sha != before.sha:
            self.appsets.fetched(name)  # its git generators read it: their apps generated again
        handled = self.app_rollouts.notify(name, revision)  # progressive: each app's rollout decides
        if self.rollout and name == self.sourcing.primary_name:
            self.rollout.notify(revision)  # the clusters' paths: the fleet's rollout decides who gets it, and when
            handled = True
        if not handled and (before is None or revision.sha != before.sha):
            log.info("source %s: revision %s (%s)", name, revision.short, revision.ref)
            for c in self.cfg.clusters:
                if name in apps.sources_of(self.cfg, c):
                    self.trigger_now(c.name, reason=f"new revision of {name}")

    # -- triggers ----------------------------------------------------------------------------------------------
    def trigger_now(
        self,
        cluster: str | None = None,
        reason: str = "requested",
        *,
        requested: bool = False,
        app: str | None = None,
        objects: Sequence[resources.ResourceKey] = (),
    ) -> list[str]:
        """Sync ``cluster`` (every cluster when None) as soon as its worker is free; returns the names triggered.
        ``requested``: an operator asked (for ``app`` only, or every app): a requested sync for the write gate;
        ``objects``: a selective sync of ``app`` (see :meth:`agent.runtime.worker.Worker.trigger`).

        Raises :class:`errors.ConfigError` for an unknown cluster.
        """
        names = [self.cfg.cluster(cluster).name] if cluster else [c.name for c in self.cfg.clusters]
        with self._lock:
            found = [self.workers[n] for n in names if n in self.workers]
        for w in found:
            w.trigger(reason, requested=requested, app=app, objects=objects)
        return names

    def reconcile_to(self, name: str, revision: resources.Revision) -> engine.ReconcileResult:
        """Sync cluster ``name`` to ``revision`` now through its worker and wait for its health (a rollout step).
        Raises :class:`errors.CancelledError` when the cluster is removed or the agent stops first."""
        with self._lock:
            w = self.workers.get(name)
        if w is None:
            raise errors.CancelledError(f"cluster {name} is no longer in the config")
        return w.run_to({**self.revisions_for_sources(name), self.sourcing.primary_name: revision})

    def reconcile_app_to(self, app: str, cluster: str, revision: resources.Revision) -> engine.ReconcileResult:
        """Sync cluster ``cluster`` with app ``app`` pinned to ``revision`` now, through its worker, and wait for
        health (a step of the app's rollout). Raises :class:`errors.CancelledError` like :meth:`reconcile_to`."""
        with self._lock:
            w = self.workers.get(cluster)
        if w is None:
            raise errors.CancelledError(f"cluster {cluster} is no longer in the config")
        return w.run_to({**self.revisions_for(cluster), apps.PIN_PREFIX + app: revision})

    def revisions_for_sources(self, cluster: str) -> dict[str, resources.Revision]:
        """The last good revision of each source the cluster's apps read (no rollout target applied)."""
        return targets.last_good(self.cfg, cluster, self.sourcing)

    # -- status (agent.runtime.status) -------------------------------------------------------------------------
    def worker_of(self, name: str) -> worker.Worker | None:
        """The worker of cluster ``name`` (None for an unknown cluster)."""
        with self._lock:
            return self.workers.get(name)

    def _drifted(self) -> dict[str, dict[str, int]]:
        """Cluster -> app -> its drifted objects now, for every app whose cluster syncs here (metrics)."""
        found: dict[str, dict[str, int]] = {}
        for w in self.all_workers():
            last = self.state.last(w.name)
            view = w.view()
            if not view.reached or last is None:
                continue
            found[w.name] = {a.app: len(view.drift.by_app.get(a.app, ())) for a in last.apps}
        return found

    def all_workers(self) -> list[worker.Worker]:
        """Every worker now."""
        with self._lock:
            return list(self.workers.values())

    def scheduling(self) -> bool:
        """True while the fetch schedule runs."""
        return bool(self.scheduler.running)

    def cluster_json(self, name: str, *, objects: bool = True) -> dict[str, Any] | None:
        """One cluster's status (see :func:`status.cluster_json`); None for an unknown cluster."""
        return status.cluster_json(self, name, objects=objects)

    def status_json(self, *, objects: bool = True, apps: bool = True) -> dict[str, Any]:
        """The source and every cluster (see :func:`status.status_json`)."""
        return status.status_json(self, objects=objects, apps=apps)
