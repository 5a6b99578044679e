"""Progressive delivery across clusters: a new revision goes to one batch of clusters at a time, and on only when
that batch is Healthy.

Each cluster has a *target* revision, the one its scheduled syncs apply; a cluster the rollout has not reached
keeps its old target (or, before its first rollout step, gets no sync at all). A step sets a batch's targets to
the new revision, syncs them and waits up to ``sync.timeout`` for health (see ``ClusterSync.reconcile``). A
batch that is not Healthy halts the rollout: its revision is marked failed for those clusters and, with
``rollback: auto``, each goes back to its last healthy revision. A failed revision is not tried again; a newer
commit starts a new rollout from the first batch, and supersedes one in progress at the next batch boundary.
With apps, each app has a rollout of its own (``app``): its source's revisions go through the clusters it is placed
on, in rollout order, gated on that app's own health there, so one app's bad commit halts and rolls back only that
app; a cluster's ``paths`` (the sugar form) share the fleet's rollout of the primary source. Used by
``agent.runtime.fleet`` when ``rollout`` is configured.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

from agent import apps, config, threads
from agent.runtime import rollout_store
from reconcilers import engine, errors, health, resources

log = logging.getLogger(__name__)

OnEvent = Callable[[str, str, resources.Revision, str], None]
"""Called with (reason, cluster or "", revision, message): ``RolloutHalted``, ``RolledBack``, ``RolloutCompleted``."""

RunCluster = Callable[[str, resources.Revision], engine.ReconcileResult]
"""Reconcile one cluster to a revision and wait for its health (``Agent.reconcile_to``)."""


@dataclasses.dataclass(frozen=True)
class Step:
    """One cluster's part of a rollout: when it started and ended, and how (Healthy, Degraded, Progressing,
    Failed, RolledBack)."""

    cluster: str
    revision: str
    started: datetime.datetime
    finished: datetime.datetime
    result: str
    message: str = ""


@dataclasses.dataclass(frozen=True)
class Failure:
    """A revision that did not become Healthy in a cluster, and why."""

    revision: resources.Revision
    reason: str
    at: datetime.datetime


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Rollout:
    """The rollout state of the fleet and the thread that advances it."""

    def __init__(
        self,
        cfg: config.AgentConfig,
        run_cluster: RunCluster,
        store: rollout_store.RolloutStore | None = None,
        restored: Callable[[], None] | None = None,
        on_event: OnEvent | None = None,
        app: str | None = None,
    ) -> None:
        assert cfg.rollout is not None
        self.cfg = cfg
        self.run_cluster = run_cluster
        self.store = store
        self.restored = restored
        self.on_event = on_event
        self.app = app
        """The app this rollout moves (None: the fleet's rollout of the primary source, for ``paths``)."""
        self.targets: dict[str, resources.Revision] = {}
        self.last_healthy: dict[str, resources.Revision] = {}
        self.failures: dict[str, Failure] = {}
        self.revision: resources.Revision | None = None
        self.state = "Idle"
        self.message = ""
        self.steps: list[Step] = []
        self._wanted: resources.Revision | None = None
        self._failed_revisions: set[str] = set()
        self._event = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the rollout thread (``rollout``, owned by ``fleet/rollout``)."""
        self._thread = threads.start("rollout", "fleet/rollout", self._loop)

    def stop(self) -> None:
        """Stop after the current step."""
        self._stop.set()
        self._event.set()

    def notify(self, revision: resources.Revision) -> None:
        """The source is at ``revision`` now: roll it out (unless it already was, or failed)."""
        with self._lock:
            self._wanted = revision
        self._event.set()

    def target(self, cluster: str) -> resources.Revision | None:
        """The revision ``cluster``'s syncs apply (None before the rollout first reached it)."""
        with self._lock:
            return self.targets.get(cluster)

    def reconfigure(self, cfg: config.AgentConfig) -> None:
        """A reload changed the config (clusters, order): the next batch is computed from it."""
        assert cfg.rollout is not None
        with self._lock:
            self.cfg = cfg

    def _loop(self) -> None:
        try:
            self._restore()
        except Exception:  # a bug must not end rollouts: start afresh
            log.exception("rollout: the saved state could not be restored")
        if self.restored:
            self.restored()
        while not self._stop.is_set():
            self._event.wait()
            self._event.clear()
            with self._lock:
                wanted = self._wanted
            if wanted is None or wanted.sha in self._failed_revisions:
                continue
            if self.revision == wanted and self.state in ("Complete", "Halted"):
                continue
            try:
                self._roll(wanted)
            except Exception as e:  # a bug must not end rollouts: report it and halt this one
                log.exception("rollout of %s: unexpected error", wanted.short)
                with self._lock:
                    self.state, self.message = "Halted", f"internal error: {type(e).__name__}: {e}"

    def _restore(self) -> None:
        """Read the state saved in the clusters (see :mod:`agent.runtime.rollout_store`): each cluster's target,
        last healthy revision and failure, and the newest fleet part; a rollout that was progressing goes on."""
        if self.store is None:
            return
        with self._lock:
            names = self._clusters()
        saved = self.store.load(names)
        newest = max(saved.values(), key=lambda d: str(d.get("at", "")), default=None)
        with self._lock:
            for name, doc in saved.items():
                if target := rollout_store.revision_of(doc.get("target")):
                    self.targets.setdefault(name, target)
                if healthy := rollout_store.revision_of(doc.get("lastHealthy")):
                    self.last_healthy.setdefault(name, healthy)
                failure = doc.get("failure")
                if isinstance(failure, dict) and (failed := rollout_store.revision_of(failure.get("revision"))):
                    at = datetime.datetime.fromisoformat(str(failure.get("at")))
                    self.failures.setdefault(name, Failure(failed, str(failure.get("reason", "")), at))
            fleet = (newest or {}).get("rollout") or {}
            revision = rollout_store.revision_of(fleet.get("revision"))
            self._failed_revisions |= {str(s) for s in fleet.get("failedRevisions") or []}
            if revision is None or self.revision is not None:
                return
            self.revision, self.state = revision, str(fleet.get("state", "Idle"))
            self.message = str(fleet.get("message", ""))
            if self.state in ("Progressing", "RollingBack"):
                self.state = "Progressing"
                self._wanted = self._wanted or revision
                self._event.set()
        log.info("rollout of %s restored from the clusters: %s", revision.short, self.state)

    def _save(self, names: list[str] | None = None) -> None:
        """Write the state of ``names`` (every cluster when None) to their clusters."""
        if self.store is None:
            return
        with self._lock:
            every = self._clusters()
            fleet = {
                "revision": rollout_store.revision_json(self.revision),
                "state": self.state,
                "message": self.message,
                "failedRevisions": sorted(self._failed_revisions),
            }
            docs = {
                name: {
                    "target": rollout_store.revision_json(self.targets.get(name)),
                    "lastHealthy": rollout_store.revision_json(self.last_healthy.get(name)),
                    "failure": {
                        "revision": rollout_store.revision_json(f.revision),
                        "reason": f.reason,
                        "at": f.at.isoformat(),
                    }
                    if (f := self.failures.get(name))
                    else None,
                    "rollout": fleet,
                }
                for name in (every if names is None else names)
                if name in every
            }
        self.store.save_all(docs)

    def _superseded(self, revision: resources.Revision) -> bool:
        with self._lock:
            return self._wanted is not None and self._wanted.sha != revision.sha

    def _roll(self, revision: resources.Revision) -> None:
        with self._lock:
            resumed = self.revision == revision and self.state == "Progressing"
            self.revision, self.state, self.message = revision, "Progressing", ""
            if not resumed:
                self.steps = []
            batches = self._batches()
        self._save()
        log.info("rollout of %s started: %s", revision.short, " -> ".join(map(str, batches)))
        for i in range(len(batches)):
            with self._lock:  # a reload may have changed the clusters: the batches are read again each time
                current = self._batches()
            batch = current[i] if i < len(current) else []
            if self._stop.is_set() or self._superseded(revision):
                log.info("rollout of %s stopped or superseded by a newer revision", revision.short)
                return
            with self._lock:  # a resumed rollout skips the clusters already Healthy at its revision
                batch = [n for n in batch if self.last_healthy.get(n) != revision or self.targets.get(n) != revision]
            if not batch:
                continue
            with futures.ThreadPoolExecutor(len(batch), threads.pool("rollout-batch", "fleet/rollout")) as pool:
                steps = [s for s in pool.map(lambda name: self._step(name, revision), batch) if s is not None]
            if self._stop.is_set():
                return
            failed = [s for s in steps if s.result != health.Health.HEALTHY.value]
            if failed:
                self._halt(revision, failed)
                return
        with self._lock:
            self.state = "Complete"
        self._save()
        log.info("rollout of %s complete", revision.short)
        self._tell("RolloutCompleted", "", revision, f"{revision.short} is Healthy on every cluster")

    def _clusters(self) -> list[str]:
        """The clusters this rollout moves: every cluster, or those its app is placed on (call under _lock)."""
        if self.app is None:
            return [c.name for c in self.cfg.clusters]
        return [c.name for c in self.cfg.clusters if any(a.name == self.app for a in apps.placed(self.cfg, c))]

    def _batches(self) -> list[list[str]]:
        """The rollout's batches, narrowed to :meth:`_clusters` (a batch may end up empty; call under _lock)."""
        scope = set(self._clusters())
        return [[n for n in batch if n in scope] for batch in self.cfg.rollout_batches()]

    def _step(self, name: str, revision: resources.Revision) -> Step | None:
        """Sync one cluster to ``revision`` and wait for its health; None when the cluster was removed or the
        agent stops before the step ran (not a failure of the revision)."""
        started = _now()
        with self._lock:
            self.targets[name] = revision
        self._save([name])
        try:
            result = self.run_cluster(name, revision)
        except errors.CancelledError as e:
            log.info("rollout of %s: cluster %s: %s", revision.short, name, e)
            return None
        if result.error_kind is engine.ErrorKind.CANCELLED:  # the agent stops or the cluster left: not a verdict
            log.info("rollout of %s: cluster %s: %s", revision.short, name, result.error)
            return None
        if self.app is not None:  # judged on the app's own part of the cluster's sync
            result = next((a for a in result.apps if a.app == self.app), result)
        if result.ok and result.health is health.Health.HEALTHY:
            with self._lock:
                self.last_healthy[name] = revision
                self.failures.pop(name, None)
            step = Step(name, revision.sha, started, _now(), health.Health.HEALTHY.value)
        else:
            outcome = result.health.value if result.health else "Failed"
            why = result.health_message or result.error or ", ".join(e.message for e in result.failed) or outcome
            step = Step(name, revision.sha, started, _now(), outcome, why)
        with self._lock:
            self.steps.append(step)
        self._save([name])
        log.info("rollout of %s: cluster %s %s %s", revision.short, name, step.result, step.message)
        return step

    def _halt(self, revision: resources.Revision, failed: list[Step]) -> None:
        """Stop the rollout of ``revision``: state ``RollingBack`` while the failed clusters go back to their last
        healthy revision (``rollback: auto``), then ``Halted``."""
        with self._lock:
            self.state = "RollingBack"
            self._failed_revisions.add(revision.sha)
            for s in failed:
                self.failures[s.cluster] = Failure(revision, f"{s.result}: {s.message}", s.finished)
        log.warning("rollout of %s halted at %s", revision.short, ", ".join(s.cluster for s in failed))
        for s in failed:
            self._tell("RolloutHalted", s.cluster, revision, f"{revision.short} halted: {s.result}: {s.message}")
        assert self.cfg.rollout is not None
        try:
            if self.cfg.rollout.rollback == "auto":
                self._roll_back(revision, failed)
        finally:
            with self._lock:
                self.state = "Halted"
            self._save()

    def _roll_back(self, revision: resources.Revision, failed: list[Step]) -> None:
        for s in failed:
            previous = self.last_healthy.get(s.cluster)
            if previous is None:
                log.warning("cluster %s has no healthy revision to roll back to", s.cluster)
                continue
            started = _now()
            with self._lock:
                self.targets[s.cluster] = previous
            try:
                result = self.run_cluster(s.cluster, previous)
            except errors.CancelledError as e:
                log.warning("rollback of cluster %s not done: %s", s.cluster, e)
                continue
            ok = result.ok and result.health is health.Health.HEALTHY
            outcome = "RolledBack" if ok else "RollbackFailed"
            why = "" if ok else f": {result.error or result.health_message or 'not Healthy'}"
            if not ok:
                with self._lock:
                    self.message = f"rollback of cluster {s.cluster} to {previous.short} failed{why}"
            with self._lock:
                self.steps.append(
                    Step(
                        s.cluster,
                        previous.sha,
                        started,
                        _now(),
                        outcome,
                        f"back to {previous.short} after {revision.short} failed{why}",
                    )
                )
            log.warning("cluster %s rolled back to %s: %s", s.cluster, previous.short, outcome)
            if ok:
                self._tell("RolledBack", s.cluster, previous, f"back to {previous.short} after {revision.short} failed")

    def _tell(self, reason: str, cluster: str, revision: resources.Revision, message: str) -> None:
        if self.on_event:
            self.on_event(reason, cluster, revision, f"app {self.app}: {message}" if self.app else message)

    def status_json(self) -> dict[str, Any]:
        """The rollout: revision, state and steps (with timestamps)."""
        with self._lock:
            return {
                **({"app": self.app} if self.app else {}),
                "revision": self.revision.sha if self.revision else None,
                "state": self.state,
                "message": self.message,
                "steps": [
                    {
                        "cluster": s.cluster,
                        "revision": s.revision,
                        "started": s.started.isoformat(),
                        "finished": s.finished.isoformat(),
                        "result": s.result,
                        "message": s.message,
                    }
                    for s in self.steps
                ],
            }

    def cluster_json(self, name: str) -> dict[str, Any]:
        """One cluster's rollout state: the revision it runs, its last healthy one, and its last failure."""
        with self._lock:
            target, healthy, failure = self.targets.get(name), self.last_healthy.get(name), self.failures.get(name)
        return {
            "running": target.sha if target else None,
            "lastHealthy": healthy.sha if healthy else None,
            "failed": {"revision": failure.revision.sha, "reason": failure.reason, "at": failure.at.isoformat()}
            if failure
            else None,
        }
