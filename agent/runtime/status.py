"""The fleet's status for the API, the dashboard and ``/readyz``: per cluster its sync status (and why it cannot
be trusted, when it cannot), health from the live cache, worker, self-heal, rollout and sharding; the readiness
reasons; and the health verdicts that become events. Reads a :class:`View` (the fleet) and writes nothing but
events. Used by :mod:`agent.runtime.fleet`.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Protocol

from agent import config
from agent.runtime import approllouts, appstatus, events, leases, rollout, state, worker
from agent.sync import appresults, holds
from reconcilers import engine, health, resources

EVENTS_IN_STATUS = 20
"""The newest events the status (and so the dashboard's timeline) carries; ``GET /api/v1/events`` has 100."""


class View(Protocol):
    """What the status reads of the fleet."""

    cfg: config.AgentConfig
    state: state.AgentState
    book: holds.Book
    events: events.EventLog
    rollout: rollout.Rollout | None
    app_rollouts: approllouts.AppRollouts
    leases: leases.Coordinator | None
    fetched: threading.Event

    def worker_of(self, name: str) -> worker.Worker | None:
        """The worker of cluster ``name``."""
        ...

    def all_workers(self) -> list[worker.Worker]:
        """Every worker now."""
        ...

    def revision_for(self, cluster: str) -> resources.Revision | None:
        """The revision ``cluster`` should be at."""
        ...

    def revisions_for(self, cluster: str) -> dict[str, resources.Revision]:
        """The revision of each source the cluster should be at."""
        ...

    def scheduling(self) -> bool:
        """True while the fetch schedule runs."""
        ...


def sync_status(
    last: engine.ReconcileResult | None, revision: resources.Revision | None, fighting: bool, drifted: int = 0
) -> str:
    """``Synced`` when the last reconcile applied the source's current revision completely, nothing fights over
    an object, no object ``drifted`` since (count) and nothing removed from git waits for pruning; ``OutOfSync``
    when any of these fails; ``Unknown`` before the first reconcile and when the cluster could not be reached or
    used, the sync was cancelled, or an app's sync was a selective one (it says nothing of the app's other
    objects)."""
    if last is None or last.error_kind in (
        engine.ErrorKind.CLUSTER,
        engine.ErrorKind.CONFIG,
        engine.ErrorKind.INTERNAL,
        engine.ErrorKind.CANCELLED,
    ):
        return "Unknown"
    if not last.ok or fighting or drifted or last.requires_pruning:
        return "OutOfSync"
    if revision is not None and (last.revision is None or last.revision.sha != revision.sha):
        return "OutOfSync"
    if any(a.selected for a in last.apps) or last.selected:  # a selective sync says nothing of the other objects
        return "Unknown"
    return "Synced"


def judge_health(fleet: View, name: str) -> tuple[health.Health, str] | None:
    """Tell the events the cluster's health now (from its live cache); returns it with the worst object's
    message (None when it cannot be known: no sync yet, or the cluster unreachable)."""
    w = fleet.worker_of(name)
    last = fleet.state.last(name)
    view = w.view() if w else None
    if view is None or not view.reached or last is None or last.error_kind is engine.ErrorKind.CLUSTER:
        return None
    healths = view.health(list(last.desired))
    worst = health.aggregate(h.status for h in healths.values())
    culprit = next((f"{k}: {h.message}" for k, h in healths.items() if h.status is worst), "")
    fleet.events.health(name, last.revision.sha if last.revision else "", worst, culprit)
    return worst, culprit


def not_ready(fleet: View) -> list[str]:
    """Why the agent cannot make progress now (``/readyz`` answers 503 with these): the first fetch pending,
    the scheduler stopped, the source failing, or no cluster synced within twice ``sync.interval``."""
    reasons = []
    if not fleet.fetched.is_set():
        reasons.append("first fetch pending")
    if not fleet.scheduling():
        reasons.append("scheduler stopped")
    sources = fleet.state.source_json()["sources"]
    for name, source in sources.items():
        if source["error"]:
            reasons.append(
                f"source failing: {source['error']}"
                if len(sources) == 1
                else f"source {name} failing: {source['error']}"
            )
    workers = fleet.all_workers()
    active = [w for w in workers if w.active]
    if active and all(w.overdue() is not None for w in active):
        reasons.append(f"no cluster finished a sync within twice sync.interval ({2 * fleet.cfg.sync.interval:g}s)")
    return reasons


def cluster_json(fleet: View, name: str, *, objects: bool = True) -> dict[str, Any] | None:
    """The status of one cluster: sync status (with the reason when Unknown for lack of a recent sync),
    health (aggregated, counted per status and, with ``objects``, per object, from the live cache), the
    worker, self-heal, the last sync and the history, and with ``objects`` its ``apps`` (each app's cell there,
    with its last sync). ``objects=False`` leaves out the per-object entries and the apps (the fleet summary,
    whose size must not grow with them). None for an unknown cluster."""
    return _cluster(fleet, name, objects=objects)[0]


def _cluster(fleet: View, name: str, *, objects: bool) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """:func:`cluster_json` and the cluster's app cells (compact unless ``objects``)."""
    found = fleet.state.cluster_json(name, objects=objects)
    w = fleet.worker_of(name)
    if found is None or w is None:
        return found, []
    view = w.view()
    last = fleet.state.last(name)
    heal = dict(view.heal)
    found["selfHeal"] = heal
    found["worker"] = w.status_json()
    if view.throttled:
        found["worker"]["throttled"] = view.throttled
    target = fleet.revision_for(name)
    drifted = sum(len(found_) for found_ in view.drift.by_app.values())
    found["syncStatus"] = sync_status(last, target, bool(heal.get("fighting")), drifted)
    found["driftedObjects"] = drifted
    found["syncStatusReason"] = _reason(fleet, w, last) or _out_of_sync(last, drifted)
    if found["syncStatusReason"] and found["syncStatus"] == "Synced":
        found["syncStatus"] = "Unknown"  # no recent sync: what was true then may not be now
    if fleet.rollout:
        found["rollout"] = fleet.rollout.cluster_json(name)
    if fleet.leases:
        found["sharding"] = {"holder": fleet.leases.holder(name), "reconciledHere": bool(w.active)}
    keys = appresults.managed_keys(last) if last else []
    changes = view.changes  # read (when the view was made) before the healths it vouches for
    healths = view.health(keys)
    overall = health.aggregate(h.status for h in healths.values()) if last else health.Health.UNKNOWN
    found["health"] = overall.value
    found["healthCounts"] = dict(sorted(collections.Counter(h.status.value for h in healths.values()).items()))
    cells = (
        appstatus.cluster_cells(fleet, name, last, healths, compact=not objects, live_changes=changes) if last else []
    )
    if objects:
        found["apps"] = cells
    if objects and found.get("lastSync"):
        for o in found["lastSync"]["objects"]:
            key = resources.ResourceKey(o["group"], o["kind"], o["namespace"], o["name"])
            if key in healths:
                o["health"], o["healthMessage"] = healths[key].status.value, healths[key].message
    return found, cells


def _out_of_sync(last: engine.ReconcileResult | None, drifted: int) -> str:
    """Why a cluster whose last sync succeeded is OutOfSync ("" when it is not for these reasons)."""
    found = [f"{drifted} object(s) drifted since the last sync"] if drifted else []
    if last is not None and last.requires_pruning:
        found.append(f"requires pruning: {last.requires_pruning} object(s) removed from git (sync.prune is off)")
    return "; ".join(found)


def _reason(fleet: View, w: worker.Worker, last: engine.ReconcileResult | None) -> str:
    """Why the sync status is not to be trusted now ("" when it is)."""
    age = w.overdue()
    if age is not None:
        doing = w.status_json()
        return (
            f"no sync finished in {age:.0f}s (over twice sync.interval, {2 * fleet.cfg.sync.interval:g}s); "
            f"worker {doing['state']} since {doing['since']}"
        )
    if last is not None and last.error_kind is engine.ErrorKind.CANCELLED:
        return f"last sync {last.error}"
    return ""


def status_json(fleet: View, *, objects: bool = True, apps: bool = True) -> dict[str, Any]:
    """The status of the source and of every cluster. ``objects=False`` is the fleet summary: every field but
        the per-object entries, whose size grows with the objects (about 180 bytes each: 9.2 MB at 50,005, measured
        by bench/scale.py). ``appCounts``: how many apps, and app x cluster cells per sync status and health, over the
    fleet and per cluster (``clusters``: name -> its apps per sync status and health);
        ``apps`` (unless ``apps=False``, which keeps the summary's size flat whatever the number of apps): the same
        counts per app."""
    status = fleet.state.source_json()
    found = [_cluster(fleet, n, objects=objects) for n in fleet.state.names()]
    status["clusters"] = [c for c, _ in found if c]
    per_app = appstatus.summary(fleet.cfg, [cells for _, cells in found])
    status["appCounts"] = {
        **appstatus.fleet_counts(per_app),
        "clusters": {c["name"]: appstatus.cell_counts(cells) for c, cells in found if c},
    }
    if apps:
        status["apps"] = per_app
    status["ready"] = {"ready": not (reasons := not_ready(fleet)), "reasons": reasons}
    status["events"] = fleet.events.json(limit=EVENTS_IN_STATUS)
    if fleet.rollout:
        status["rollout"] = fleet.rollout.status_json()
    if fleet.app_rollouts.by_app:
        status["appRollouts"] = fleet.app_rollouts.status_json()
    if fleet.leases:
        status["sharding"] = fleet.leases.status()
    return status
