"""Events: what happened to the fleet, one record per change worth telling, newest kept.

Each :class:`Event` has a reason (:data:`REASONS`), the cluster (and path) it concerns, the revision, the time, a
short message and a type (``Normal`` or ``Warning``, as Kubernetes events). Producers:

- a finished sync (:meth:`EventLog.synced`): ``SyncSucceeded`` only when something changed, ``SyncFailed``
  (never when the apps that did not sync only wait: a source's first fetch, a dependency, a rollout),
  ``PruneRefused``, ``ClusterUnreachable`` when a cluster stops answering (once, until it answers again);
- the cluster's health, judged after each sync and every few seconds from the live cache
  (:meth:`EventLog.health`): ``HealthDegraded`` when it turns Degraded, ``HealthRecovered`` when it is Healthy again;
- self-heal: ``DriftCorrected`` per corrected object, ``Fighting`` when it stops correcting one;
- drift of an app that does not self-heal (:mod:`agent.sync.drift`): ``OutOfSync`` when its first object is
  changed or deleted live since its last sync (once until it is back in line);
- each source: ``SourceFailed`` when a fetch fails after one that worked (or the first), ``SourceRecovered``,
  the message naming the source;
- the rollout: ``RolloutHalted``, ``RolledBack``, ``RolloutCompleted``.

The last :data:`KEEP` events are served by ``GET /api/v1/events`` and drawn as a timeline by the dashboard.
Messages come from results that the runner already masked (substituted and decrypted values read ``***``).
Thread-safe. Used by :mod:`agent.runtime.fleet`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import threading
from collections.abc import Callable
from typing import Any

from reconcilers import engine, health

KEEP = 100
"""Events kept (the newest)."""

REASONS = (
    "SyncSucceeded",
    "SyncFailed",
    "HealthDegraded",
    "HealthRecovered",
    "DriftCorrected",
    "Fighting",
    "OutOfSync",
    "PruneRefused",
    "RolloutHalted",
    "RolledBack",
    "RolloutCompleted",
    "SourceFailed",
    "SourceRecovered",
    "ClusterUnreachable",
    "Suspended",
    "Resumed",
    "SyncRetrying",
    "Pinned",
    "Unpinned",
    "ActionTaken",
)
_WARNINGS = frozenset(
    {
        "SyncFailed",
        "HealthDegraded",
        "Fighting",
        "OutOfSync",
        "PruneRefused",
        "RolloutHalted",
        "SourceFailed",
        "ClusterUnreachable",
        "SyncRetrying",
    }
)


@dataclasses.dataclass(frozen=True)
class Event:
    """One event: ``reason`` (one of :data:`REASONS`), ``cluster`` ("" for the source or the whole rollout),
    ``path`` (the app's path, "" when not about one), ``revision`` (a commit SHA, or ""), ``time`` (UTC) and
    ``message``."""

    reason: str
    cluster: str
    revision: str
    message: str
    path: str = ""
    time: datetime.datetime = dataclasses.field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    @property
    def type(self) -> str:
        """``Warning`` or ``Normal``."""
        return "Warning" if self.reason in _WARNINGS else "Normal"

    def json(self) -> dict[str, Any]:
        """The event as the status API serves it."""
        return {
            "reason": self.reason,
            "type": self.type,
            "cluster": self.cluster,
            "path": self.path,
            "revision": self.revision,
            "time": self.time.isoformat(),
            "message": self.message,
        }


class EventLog:
    """The newest :data:`KEEP` events, and what the producers need to tell a change from a repeat."""

    def __init__(self, on_event: Callable[[Event], None] | None = None) -> None:
        self.on_event = on_event
        """Called with every event kept (the notifications), outside the log's lock."""
        self._events: collections.deque[Event] = collections.deque(maxlen=KEEP)
        self._unreachable: set[str] = set()
        self._health: dict[str, health.Health] = {}
        self._source_failing: dict[str, bool] = {}
        """Whether each source's last fetch failed, by source name (absent: not fetched yet)."""
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        """Keep ``event``."""
        assert event.reason in REASONS, event.reason
        with self._lock:
            self._events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def synced(self, result: engine.ReconcileResult) -> None:
        """The events of a finished sync of ``result.cluster``."""
        name, rev = result.cluster, result.revision.sha if result.revision else ""
        if result.error_kind in (engine.ErrorKind.CANCELLED, engine.ErrorKind.WAITING):
            # not a verdict: a Lease moved, the cluster left the config, or the agent stops; or its apps that did
            # not sync all wait (a source's first fetch, a dependency not Healthy yet, a rollout not here yet)
            return
        with self._lock:
            was_unreachable = name in self._unreachable
            if result.error_kind is engine.ErrorKind.CLUSTER:
                self._unreachable.add(name)
            else:
                self._unreachable.discard(name)
        if result.error_kind is engine.ErrorKind.CLUSTER:
            if not was_unreachable:
                self.emit(Event("ClusterUnreachable", name, rev, result.error or "unreachable"))
            return
        if result.error_kind is engine.ErrorKind.PRUNE:
            self.emit(Event("PruneRefused", name, rev, result.error or "prune refused"))
            return
        counts = result.counts
        if not result.ok:
            failed = result.failed
            why = result.error or "; ".join(f"{e.key}: {e.message}" for e in failed[:3])
            more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
            self.emit(Event("SyncFailed", name, rev, f"{why}{more}"))
        elif counts["created"] + counts["configured"] + counts["pruned"] + counts["recreated"]:
            changes = ("created", "configured", "recreated", "pruned")
            changed = ", ".join(f"{n} {a}" for a, n in counts.items() if n and a in changes)
            self.emit(Event("SyncSucceeded", name, rev, changed))

    def health(self, cluster: str, revision: str, now: health.Health, message: str) -> None:
        """The cluster's health is ``now``: ``HealthDegraded`` when it turns Degraded, ``HealthRecovered`` when it
        is Healthy again after being Degraded (Progressing in between changes nothing)."""
        event: Event | None = None
        with self._lock:
            told = self._health.get(cluster)  # the last health told: Degraded until Healthy again
            if now is health.Health.DEGRADED and told is not health.Health.DEGRADED:
                self._health[cluster] = now
                event = Event("HealthDegraded", cluster, revision, message or "Degraded")
            elif now is health.Health.HEALTHY and told is not health.Health.HEALTHY:
                self._health[cluster] = now
                event = Event("HealthRecovered", cluster, revision, "Healthy again") if told else None
            else:
                return
        if event is not None:
            self.emit(event)

    def fetched(self, source: str, revision: str, error: str | None) -> None:
        """A fetch of ``source`` ended (``error`` None: it worked). Each source is told apart: one that keeps
        failing is told once, whatever the others' fetches do."""
        with self._lock:
            before = self._source_failing.get(source)
            self._source_failing[source] = error is not None
        if error is not None and before is not True:
            self.emit(Event("SourceFailed", "", revision, f"source {source}: {error}"))
        elif error is None and before is True:
            self.emit(Event("SourceRecovered", "", revision, f"source {source}: fetched {revision[:12]}"))

    def forget(self, cluster: str) -> None:
        """A cluster left the config: its state goes (its events stay until they age out)."""
        with self._lock:
            self._unreachable.discard(cluster)
            self._health.pop(cluster, None)

    def json(self, cluster: str | None = None, limit: int = KEEP) -> list[dict[str, Any]]:
        """The newest events first (of ``cluster`` only, when given), at most ``limit``."""
        with self._lock:
            events = list(self._events)
        chosen = [e for e in reversed(events) if cluster is None or e.cluster == cluster]
        return [e.json() for e in chosen[: max(0, limit)]]
