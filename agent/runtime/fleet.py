"""The long-running agent: APScheduler jobs that fetch the source and reconcile each cluster, and one
``trigger_now`` for everything that wants a reconcile sooner (a new revision, an API call).

Jobs (a ``BackgroundScheduler``, threads only):

- ``fetch``: every ``source.interval`` seconds (10% jitter); a new revision triggers every cluster at once;
- ``sync:<cluster>``: every ``sync.interval`` seconds (10% jitter), one run at a time per cluster, missed runs
  coalesced. A trigger that arrives while the cluster is reconciling runs once more right after, so no
  revision is missed.

Used by ``agent.cli run``; reads and writes ``agent.runtime.state.AgentState``.
"""

from __future__ import annotations

import collections
import datetime
import logging
import pathlib
import threading
import time
from typing import Any

import watchfiles
from apscheduler.schedulers.background import BackgroundScheduler

from agent import config
from agent.runtime import leases, metrics, rollout, runner, state
from agent.sources import local
from reconcilers import engine, errors, health, resources

log = logging.getLogger(__name__)


BACKOFF_CAP = 60.0
"""The longest wait (seconds) before an unreachable cluster is tried again."""


def sync_status(last: engine.ReconcileResult | None, revision: resources.Revision | None, fighting: bool) -> str:
    """``Synced`` when the last reconcile applied the source's current revision completely and nothing fights
    over an object; ``OutOfSync`` when it did not; ``Unknown`` before the first reconcile and when the cluster
    could not be reached or used."""
    if last is None or last.error_kind in (
        engine.ErrorKind.CLUSTER,
        engine.ErrorKind.CONFIG,
        engine.ErrorKind.INTERNAL,
    ):
        return "Unknown"
    if not last.ok or fighting or (revision is not None and last.revision != revision):
        return "OutOfSync"
    return "Synced"


class Agent:
    """The source, the clusters and their schedule."""

    def __init__(self, cfg: config.AgentConfig) -> None:
        self.cfg = cfg
        self.state = state.AgentState([c.name for c in cfg.clusters])
        self.source = local.open_source(cfg.source)
        self.runners = {c.name: runner.ClusterRunner(cfg, c, watch=True) for c in cfg.clusters}
        self.metrics = metrics.Metrics()
        self.rollout = rollout.Rollout(cfg, self.reconcile_to) if cfg.rollout else None
        # With sharding, only the clusters whose Lease this replica holds are reconciled (None: all of them).
        self.owned: set[str] | None = set() if cfg.sharding else None
        self.leases = (
            leases.Coordinator(cfg.sharding, cfg.instance, [c.name for c in cfg.clusters], self.set_owned)
            if cfg.sharding
            else None
        )
        self.scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}, timezone="UTC"
        )
        self._busy: set[str] = set()
        self._failures: dict[str, int] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self.fetched = threading.Event()
        self._fetch_wanted = threading.Event()
        self._stopping = threading.Event()
        self._fetch_lock = threading.Lock()
        self._fetcher = threading.Thread(target=self._fetch_on_demand, name="fetch-on-demand", daemon=True)

    @property
    def ready(self) -> bool:
        """True once the first fetch finished (even if it failed) and the scheduler runs."""
        return self.fetched.is_set() and bool(self.scheduler.running)

    def apply_config(self, new: config.AgentConfig) -> dict[str, list[str]]:
        """Take a new, already validated config without a restart: clusters added get a runner and a schedule,
        removed ones are dropped (their objects stay), changed ones (or all, when a setting every runner uses
        changed) get a fresh runner; all of those reconcile at once. ``server`` changes need a restart.
        Returns ``{"added": [...], "removed": [...], "changed": [...]}``."""
        old = self.cfg
        shared_changed = (old.sync, old.instance, old.variables, old.ignore_differences) != (
            new.sync,
            new.instance,
            new.variables,
            new.ignore_differences,
        )
        before = {c.name: c for c in old.clusters}
        after = {c.name: c for c in new.clusters}
        added = [n for n in after if n not in before]
        removed = [n for n in before if n not in after]
        changed = [n for n in after if n in before and (shared_changed or after[n] != before[n])]
        with self._lock:
            self.cfg = new
            if new.source != old.source:
                self.source = local.open_source(new.source)
            for name in removed:
                self.runners.pop(name).close()
                if self.scheduler.get_job(f"sync:{name}"):
                    self.scheduler.remove_job(f"sync:{name}")
                self.state.forget(name)
            for name in changed:
                self.runners.pop(name).close()
                self.runners[name] = runner.ClusterRunner(new, after[name], watch=True)
            for name in added:
                self.runners[name] = runner.ClusterRunner(new, after[name], watch=True)
                self.state.add(name)
        for name in added + changed:
            if self.scheduler.get_job(f"sync:{name}"):
                self.scheduler.remove_job(f"sync:{name}")
            self._schedule(after[name])
        if self.rollout:
            self.rollout.cfg = new
        if new.server != old.server or new.sharding != old.sharding:
            log.warning("config: server or sharding settings changed; they take effect after a restart")
        if self.leases:
            self.leases.set_clusters(after)
        summary = {"added": added, "removed": removed, "changed": changed}
        log.info("config reloaded: %s", ", ".join(f"{k} {v}" for k, v in summary.items() if v) or "no cluster changed")
        if new.source != old.source:  # a new source has no revision yet: fetch it now, at its own interval
            if self.scheduler.get_job("fetch"):
                self.scheduler.reschedule_job(
                    "fetch", trigger="interval", seconds=new.source.interval, jitter=new.source.interval * 0.1
                )
            self.fetch_soon()
        for name in added + changed:
            self.trigger_now(name)
        return summary

    def _schedule(self, cluster: config.ClusterConfig) -> None:
        self.scheduler.add_job(
            self.reconcile,
            "interval",
            args=[cluster.name],
            seconds=self.cfg.sync.interval,
            jitter=self.cfg.sync.interval * 0.1,
            id=f"sync:{cluster.name}",
        )

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
            self._schedule(c)
        self.scheduler.start()
        self._fetcher.start()
        if self.rollout:
            self.rollout.start()
        if self.leases:
            self.leases.start()
        if isinstance(self.source, local.LocalSource):
            threading.Thread(
                target=self._watch_local, args=(self.source.path,), name="watch-source", daemon=True
            ).start()

    def _watch_local(self, path: pathlib.Path) -> None:
        """Developer mode: every saved change of the local source directory fetches (and so reconciles) at once."""
        for changes in watchfiles.watch(
            path, stop_event=self._stopping, debounce=50, step=20, rust_timeout=500, yield_on_timeout=False
        ):
            log.info("source: %d change(s) in %s", len(changes), path)
            self.fetch_soon()

    def fetch_soon(self) -> None:
        """Fetch as soon as possible (a webhook push). Calls within ``server.webhookDebounce`` seconds of each
        other share one fetch; a call during a fetch causes one more after it, so no push is lost."""
        self._fetch_wanted.set()

    def _fetch_on_demand(self) -> None:
        while not self._stopping.is_set():
            if not self._fetch_wanted.wait(0.5):
                continue
            time.sleep(self.cfg.server.webhook_debounce)
            self._fetch_wanted.clear()
            self.fetch()

    def shutdown(self) -> None:
        """Stop scheduling and wait for running reconciles to finish."""
        self._stopping.set()
        if self.rollout:
            self.rollout.stop()
        for r in self.runners.values():
            r.stopping.set()  # health waits end now; a sync in flight finishes its current stage
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        for r in self.runners.values():
            r.close()
        if self.leases:
            self.leases.stop()  # reconciles have ended: hand the clusters over now

    def set_owned(self, owned: set[str]) -> None:
        """Sharding: this replica now holds the Leases of ``owned``. Clusters gained reconcile at once; clusters
        lost stop their watches and self-heal (a fresh runner waits in case they come back)."""
        with self._lock:
            before = self.owned or set()
            self.owned = set(owned)
            lost = [n for n in before - owned if n in self.runners]
            for name in lost:
                self.runners[name].close()
                self.runners[name] = runner.ClusterRunner(self.cfg, self.cfg.cluster(name), watch=True)
        gained = sorted(n for n in owned - before if any(c.name == n for c in self.cfg.clusters))
        if gained and not self._stopping.is_set():
            self.trigger_now_many(gained)

    def fetch(self) -> None:
        """Fetch the source; a new revision triggers every cluster (kustomize bases may live outside a cluster's
        paths, so every cluster is reconciled; an unaffected one resyncs at no cost)."""
        with self._fetch_lock:
            self._fetch()

    def _fetch(self) -> None:
        before = self.source.last_good
        try:
            revision = self.source.fetch()
        except errors.FetchError as e:
            log.error("source: %s (keeping revision %s)", e, before.short if before else "none")
            self.state.record_fetch(None, str(e))
            self.metrics.fetched(None)
        else:
            self.state.record_fetch(revision, None)
            self.metrics.fetched(revision)
            if self.rollout:
                self.rollout.notify(revision)  # progressive: the rollout decides which clusters get it, and when
            elif before is None or revision.sha != before.sha:
                log.info("source: revision %s (%s)", revision.short, revision.ref)
                self.trigger_now()
        finally:
            self.fetched.set()

    def trigger_now(self, cluster: str | None = None) -> list[str]:
        """Reconcile ``cluster`` (every cluster when None) as soon as possible; returns the names triggered.

        Raises :class:`errors.ConfigError` for an unknown cluster.
        """
        names = [self.cfg.cluster(cluster).name] if cluster else [c.name for c in self.cfg.clusters]
        return self.trigger_now_many(names)

    def trigger_now_many(self, names: list[str]) -> list[str]:
        """:meth:`trigger_now` for each of ``names`` (known clusters)."""
        for name in names:
            with self._lock:
                if name in self._busy:
                    self._pending.add(name)
                    continue
            job = self.scheduler.get_job(f"sync:{name}")
            if job is not None:
                job.modify(next_run_time=datetime.datetime.now(datetime.UTC))
        return names

    def _retry_later(self, name: str, result: engine.ReconcileResult) -> None:
        """A cluster that could not be reached is tried again after 1, 2, 4, ... seconds, at most
        :data:`BACKOFF_CAP` (or ``sync.interval`` when shorter); a success resets the backoff."""
        with self._lock:
            if result.error_kind is not engine.ErrorKind.CLUSTER:
                self._failures.pop(name, None)
                return
            n = self._failures[name] = self._failures.get(name, 0) + 1
        delay = min(2.0 ** (n - 1), BACKOFF_CAP, self.cfg.sync.interval)
        job = self.scheduler.get_job(f"sync:{name}")
        if job is not None:
            job.modify(next_run_time=datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=delay))
        log.warning("cluster %s: unreachable (%d in a row); retrying in %.0fs", name, n, delay)

    def cluster_json(self, name: str, *, objects: bool = True) -> dict[str, Any] | None:
        """The status of one cluster: sync status, health (aggregated, counted per status and, with ``objects``,
        per object, from the live cache), self-heal, the last sync and the history. ``objects=False`` leaves out
        the last sync's per-object entries (the fleet summary). None for an unknown cluster."""
        found = self.state.cluster_json(name, objects=objects)
        if found is None or name not in self.runners:
            return found
        r = self.runners[name]
        last = self.state.last(name)
        heal = r.status()
        found["selfHeal"] = heal
        target = self._revision_for(name)
        found["syncStatus"] = sync_status(last, target, bool(heal.get("fighting")))
        if self.rollout:
            found["rollout"] = self.rollout.cluster_json(name)
        if self.leases:
            found["sharding"] = {"holder": self.leases.holder(name), "reconciledHere": name in (self.owned or ())}
        keys = list(last.desired) if last else []
        healths = r.health(keys)
        overall = health.aggregate(h.status for h in healths.values()) if last else health.Health.UNKNOWN
        found["health"] = overall.value
        found["healthCounts"] = dict(sorted(collections.Counter(h.status.value for h in healths.values()).items()))
        if objects and found.get("lastSync"):
            for o in found["lastSync"]["objects"]:
                key = resources.ResourceKey(o["group"], o["kind"], o["namespace"], o["name"])
                if key in healths:
                    o["health"], o["healthMessage"] = healths[key].status.value, healths[key].message
        return found

    def status_json(self, *, objects: bool = True) -> dict[str, Any]:
        """The status of the source and of every cluster. ``objects=False`` is the fleet summary: every field but
        the per-object entries, whose size grows with the objects (about 180 bytes each: 9.2 MB at 50,005, measured
        by bench/scale.py)."""
        status = self.state.source_json()
        status["clusters"] = [c for n in self.state.names() if (c := self.cluster_json(n, objects=objects))]
        if self.rollout:
            status["rollout"] = self.rollout.status_json()
        if self.leases:
            status["sharding"] = self.leases.status()
        return status

    def reconcile_to(self, name: str, revision: resources.Revision) -> engine.ReconcileResult:
        """Reconcile cluster ``name`` to ``revision`` now and wait for its health (a rollout step)."""
        result = self.runners[name].reconcile(revision, self.source.checkout(revision), wait=True)
        self.state.record(result)
        self.metrics.reconciled(result, int(self.runners[name].status().get("healed", 0)))
        return result

    def _revision_for(self, name: str) -> resources.Revision | None:
        """What cluster ``name`` should be at: its rollout target, or else the last good revision."""
        return self.rollout.target(name) if self.rollout else self.source.last_good

    def reconcile(self, name: str) -> None:
        """One reconcile of cluster ``name`` at its revision (none before the first good fetch, or, with a
        rollout, before the rollout reached it)."""
        revision = self._revision_for(name)
        with self._lock:
            if revision is None or (self.owned is not None and name not in self.owned):
                return  # nothing fetched yet, or another replica holds this cluster
            self._busy.add(name)
        try:
            while True:
                checkout = self.source.checkout(revision)
                result = self.runners[name].reconcile(revision, checkout)
                self.state.record(result)
                self.metrics.reconciled(result, int(self.runners[name].status().get("healed", 0)))
                self._retry_later(name, result)
                with self._lock:
                    if name not in self._pending:
                        break
                    self._pending.discard(name)
                revision = self._revision_for(name) or revision
        finally:
            with self._lock:
                self._busy.discard(name)
