"""The apps x clusters view of the status: one cell per (app, cluster) with its revision, sync status, health and
last sync; the per-app summary of the fleet. Read from the clusters' last results (each carries its apps') and
their live caches. Used by :mod:`agent.runtime.status` and the API (``GET /api/v1/apps``).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from agent import apps, config
from agent.runtime import state, worker
from agent.sync import appresults, drift, holds, selfheal
from reconcilers import engine, errors, health, resources

UNKNOWN_KINDS = (
    engine.ErrorKind.CLUSTER,
    engine.ErrorKind.CONFIG,
    engine.ErrorKind.INTERNAL,
    engine.ErrorKind.CANCELLED,
)


class View(Protocol):
    """What the apps' status reads of the fleet."""

    cfg: config.AgentConfig
    state: state.AgentState
    book: holds.Book

    def worker_of(self, name: str) -> worker.Worker | None:
        """The worker of cluster ``name``."""
        ...

    def revisions_for(self, cluster: str) -> dict[str, resources.Revision]:
        """The revision of each source the cluster should be at."""
        ...


def app_sync_status(
    r: engine.ReconcileResult, target: resources.Revision | None, drifted: Sequence[drift.Drifted] = ()
) -> tuple[str, str]:
    """An app's sync status on one cluster and why: ``Synced`` (its source's current revision applied
    completely, no object drifted since, nothing left to prune), ``OutOfSync`` (the sync failed, the source moved
    on, objects ``drifted`` since, or objects removed from git are still live because prune is off: Argo CD's
    "requires pruning"), ``Waiting`` (a dependency is not Synced and Healthy yet, or its source has no revision),
    ``Unknown`` (the cluster could not be reached or used, the app did not load, the sync was cancelled, or it was
    a selective sync, which says nothing of the app's other objects). An
    app the write gate held (``held``: suspended, manual) is judged by its dry run: ``OutOfSync`` with the hold
    and the changes waiting, else ``Synced`` (live matches git; the hold is in the cell's ``held``)."""
    if r.error_kind is engine.ErrorKind.WAITING:
        return "Waiting", r.error or ""
    if r.held and r.error_kind not in UNKNOWN_KINDS:  # its sync ran as a dry run: what it would change
        if not r.ok:
            return "OutOfSync", f"{r.held}; a sync would fail: {r.error or 'see its objects'}"
        c = r.counts
        waiting = c["created"] + c["configured"] + c["recreated"] + c["pruned"] + c["requires-pruning"]
        if waiting or drifted:
            return "OutOfSync", f"{r.held}; {waiting or len(drifted)} change(s) not applied"
        return "Synced", ""
    if r.error_kind in UNKNOWN_KINDS:
        return "Unknown", r.error or ""
    if not r.ok:
        return "OutOfSync", r.error or ""
    if r.selected:  # it wrote some objects only: the others are not known until the app's next sync compares them
        n = len(r.selected)
        return "Unknown", f"selective sync of {n} object(s): the app's other objects are compared at its next sync"
    # the commit, whatever ref named it (a rollback's pin names its SHA)
    if r.revision is not None and target is not None and r.revision.sha != target.sha:
        return "OutOfSync", f"at {r.revision.short}; the source is at {target.short}"
    if drifted:
        return "OutOfSync", drift.texts(drifted)
    if n := r.requires_pruning:
        return "OutOfSync", f"requires pruning: {n} object(s) removed from git are still live (sync.prune is off)"
    return "Synced", ""


def drifted_of(fleet: View, cluster: str) -> tuple[drift.Snapshot, list[selfheal.Fight]]:
    """The cluster's drift now (:class:`drift.Snapshot`, empty when it is not watched) and the objects self-heal
    fights over (they do not match git either)."""
    w = fleet.worker_of(cluster)
    if w is None:
        return drift.EMPTY, []
    view = w.view()
    return view.drift, list(view.fighting)


def _app_drift(
    r: engine.ReconcileResult, snap: drift.Snapshot, fights: Sequence[selfheal.Fight]
) -> tuple[drift.Drifted, ...]:
    found = snap.by_app.get(r.app, ())
    fought = [f for f in fights if f.key in r.desired]
    if not fought:
        return found
    return (
        *found,
        *(drift.Drifted(f.key, r.app, (), f"self-heal gave up: {f.manager} keeps changing it") for f in fought),
    )


def cluster_cells(
    fleet: View,
    cluster: str,
    last: engine.ReconcileResult,
    healths: Mapping[resources.ResourceKey, health.HealthStatus],
    *,
    app: str | None = None,
    objects: bool = False,
    compact: bool = False,
    live_changes: int | None = None,
) -> list[dict[str, Any]]:
    """The cells of ``cluster``'s last sync (with ``app``, that app's only), see :func:`cell`. ``live_changes``:
    the cluster's live cache change count (:attr:`agent.clusters.cache.LiveCache.changes`) read before
    ``healths`` was: compact cells of every app are then kept, and served again (the same list: do not change
    it) while the last sync, the config, the sources' revisions and staleness and that count stay the same (a
    status poll of 100 apps on 5 clusters then builds none of its 500 cells)."""
    units, sources = _units(fleet.cfg, cluster)
    targets = fleet.revisions_for(cluster)
    snap, fights = drifted_of(fleet, cluster)
    key: tuple[object, ...] | None = None
    if live_changes is not None and compact and not objects and app is None:
        stale = tuple(fleet.state.stale(s) for s in sources)
        w = fleet.worker_of(cluster)
        retried = w.retries if w is not None else None
        clock = int(time.monotonic()) if retried and retried.snapshot() else 0  # a countdown: made again each second
        key = (last, fleet.cfg, tuple(sorted(targets.items())), stale, live_changes, snap.version, len(fights))
        key += (retried.version if retried else 0, clock)
        with _CELLS_LOCK:
            kept = _CELLS.get(cluster)
        if kept is not None and kept[0][0] is last and kept[0][1] is fleet.cfg and kept[0][2:] == key[2:]:
            return kept[1]
    found = [
        cell(
            fleet,
            cluster,
            a,
            healths,
            units.get(a.app),
            targets,
            objects=objects,
            compact=compact,
            drifted=_app_drift(a, snap, fights),
        )
        for a in _per_app(last, units)
        if app is None or a.app == app
    ]
    if key is not None:
        with _CELLS_LOCK:
            _CELLS[cluster] = (key, found)
    return found


def _per_app(last: engine.ReconcileResult, units: Mapping[str, apps.Unit]) -> Sequence[engine.ReconcileResult]:
    """The app results of ``last``; when the whole cluster failed before any app ran (unreachable, refused), one
    per placed app carrying that error, so that each app shows Unknown there with the reason instead of
    vanishing from the cluster."""
    if last.apps or last.error is None:
        return last.apps
    return [
        engine.ReconcileResult(
            last.cluster, last.revision, (), last.started, last.duration, last.dry_run, error=last.error,
            error_kind=last.error_kind, app=name,
        )
        for name in units
    ]  # fmt: skip


_CELLS: dict[str, tuple[tuple[object, ...], list[dict[str, Any]]]] = {}  # cluster -> (what they are of, cells)
_CELLS_LOCK = threading.Lock()


def _units(cfg: config.AgentConfig, cluster: str) -> tuple[dict[str, apps.Unit], tuple[str, ...]]:
    """The units of ``cluster`` under ``cfg`` by name, and the sources they read, sorted (see
    :func:`apps.placement`)."""
    try:
        found = apps.placement(cfg, cfg.cluster(cluster))
    except errors.ConfigError:  # a cluster just removed by a reload has no units
        return {}, ()
    return found.by_name, tuple(sorted(found.sources))


def cell(
    fleet: View,
    cluster: str,
    r: engine.ReconcileResult,
    healths: Mapping[resources.ResourceKey, health.HealthStatus],
    unit: apps.Unit | None,
    targets: Mapping[str, resources.Revision],
    *,
    objects: bool = False,
    compact: bool = False,
    drifted: Sequence[drift.Drifted] = (),
) -> dict[str, Any]:
    """One (app, cluster) cell: ``app``, ``cluster``, ``source``, ``placed`` (False: the app left the cluster
    and this is what became of its objects), ``revision``, ``syncStatus`` (with ``syncStatusReason``), ``health``
    (the worst of its objects, from ``healths``), ``stale`` (its source's last fetch failed: the reason), and
    ``lastSync`` (with ``objects``, its per-object entries and health; ``hooks`` and ``plans`` when it has them),
    ``lastHookRuns`` (the runs of the last sync that ran hooks, kept across resyncs that run none). ``targets``:
    the revision the cluster should be at per source. ``compact`` (``GET /api/v1/apps``, the matrix) keeps
    ``app``, ``cluster``, ``revision`` (the sha), ``syncStatus``, ``health``, and ``syncStatusReason``, ``stale``
    and ``placed`` (False) when set."""
    source = unit.source if unit else None
    head = targets.get(source) if source else None
    pin = fleet.book.pins(cluster).get(r.app) if unit is not None else None
    pinned = targets.get(apps.PIN_PREFIX + r.app) if pin is not None else None
    sync, why = app_sync_status(r, pinned or head, drifted)  # an app rolled back is judged at its pin
    w = fleet.worker_of(cluster)
    pending = w.retries.snapshot().get(r.app) if w is not None and sync == "OutOfSync" else None
    if pending is not None:
        why = pending.text(time.monotonic())
    mine = {k: healths[k] for k in r.desired if k in healths}
    worst = health.aggregate(h.status for h in mine.values()) if mine else health.Health.UNKNOWN
    if r.ok and not r.desired and r.error is None:
        worst = health.Health.HEALTHY if unit is not None else health.Health.UNKNOWN
    if compact:  # what the matrix shows: about 100 bytes a cell
        keep: dict[str, Any] = {"app": r.app, "cluster": cluster, "revision": r.revision.sha if r.revision else None}
        keep |= {"syncStatus": sync, "health": worst.value}
        stale = fleet.state.stale(source) if source else None
        keep |= {k: v for k, v in (("syncStatusReason", why), ("stale", stale)) if v}
        if unit is None:
            keep["placed"] = False  # the app left this cluster: what became of its objects, not a verdict on it
        return keep
    last = state.result_json(r, objects=objects)
    if objects and not compact:
        for o in last["objects"]:
            key = resources.ResourceKey(o["group"], o["kind"], o["namespace"], o["name"])
            if key in mine:
                o["health"], o["healthMessage"] = mine[key].status.value, mine[key].message
    out: dict[str, Any] = {
        "app": r.app,
        "cluster": cluster,
        "source": source,
        "placed": unit is not None,
        "revision": state.revision_json(r.revision),
        "syncStatus": sync,
        "syncStatusReason": why,
        "health": worst.value,
        "healthCounts": dict(sorted(collections.Counter(h.status.value for h in mine.values()).items())),
        "drifted": [{**key_json(d.key), "fields": list(d.fields), "reason": d.why} for d in drifted],
        "requiresPruning": r.requires_pruning,
        "held": r.held or None,
        "pinned": {**pin.json(), "text": pin.text(head.sha if head else None)} if pin is not None else None,
        "stale": fleet.state.stale(source) if source else None,
        "lastSync": last,
        "lastHookRuns": fleet.state.hook_runs(cluster, r.app),
    }
    return out


def key_json(key: resources.ResourceKey) -> dict[str, str]:
    """``{"group", "kind", "namespace", "name"}`` of an object."""
    return {"group": key.group, "kind": key.kind, "namespace": key.namespace, "name": key.name}


def cells(fleet: View, *, app: str | None = None, objects: bool = False, compact: bool = False) -> list[dict[str, Any]]:
    """Every (app, cluster) cell of the last syncs, in cluster order (with ``app``, that app's only)."""
    return [c for found in _cluster_lists(fleet, app=app, objects=objects, compact=compact) for c in found]


def _cluster_lists(
    fleet: View, *, app: str | None = None, objects: bool = False, compact: bool = False
) -> list[list[dict[str, Any]]]:
    """Each cluster's cells (:func:`cluster_cells`); the compact cells of every app come from its cache, the same
    list while nothing they show changed."""
    out = []
    kept = compact and app is None and not objects
    for name in fleet.state.names():
        last = fleet.state.last(name)
        if last is None:
            continue
        w = fleet.worker_of(name)
        view = w.view() if w else None
        changes = view.changes if view is not None and kept else None  # read before the healths it vouches for
        healths = view.health(appresults.managed_keys(last)) if view is not None else {}
        found = cluster_cells(
            fleet, name, last, healths, app=app, objects=objects, compact=compact, live_changes=changes
        )
        out.append(found)
    return out


def apps_json(
    fleet: View, *, app: str | None = None, objects: bool = False, compact: bool = False
) -> list[dict[str, Any]]:
    """Every app with its cells (``GET /api/v1/apps``, compact; with ``app``, that one, its last syncs and, when
    asked, objects): ``name``, ``source``, ``path``, ``clusters`` (the cells), ``summary`` (see :func:`summarize`).

    Every app, compact, is served again (the same list: do not change it) while the config and every cluster's
    cells are the same lists as last time: a page, a search or a filter of 10,000 apps then builds nothing."""
    if not compact or app is not None or objects:
        return summarize(fleet.cfg, cells(fleet, app=app, objects=objects, compact=compact), app)
    lists = _cluster_lists(fleet, compact=True)
    global _APPS
    with _CELLS_LOCK:
        kept = _APPS
    same = kept is not None and kept[0] is fleet.cfg and len(kept[1]) == len(lists)
    if kept is not None and same and all(a is b for a, b in zip(kept[1], lists, strict=True)):
        return kept[2]
    found = summarize(fleet.cfg, [c for one in lists for c in one])
    with _CELLS_LOCK:
        _APPS = (fleet.cfg, lists, found)
    return found


_APPS: tuple[config.AgentConfig, list[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
"""The last compact list of every app: (the config, each cluster's cells, the apps), guarded by ``_CELLS_LOCK``."""


def summarize(
    cfg: config.AgentConfig, found_cells: list[dict[str, Any]], app: str | None = None
) -> list[dict[str, Any]]:
    """The cells grouped by app (configured apps first, in config order; then ``paths`` entries): ``name``,
    ``source``, ``path``, ``clusters`` (its cells), ``summary`` (clusters, and how many per sync status and
    health)."""
    by_app: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for c in found_cells:
        by_app[c["app"]].append(c)
    configured = {a.name: a for a in cfg.apps}
    names = [n for n in configured if app is None or n == app] + [n for n in by_app if n not in configured]
    out = []
    for n in names:
        found = by_app.get(n, [])
        a = configured.get(n)
        out.append(
            {
                "name": n,
                "source": a.source if a else "default",
                "path": a.path if a else n,
                "appSet": a.app_set if a else None,
                "labels": dict(a.labels) if a else {},
                "clusters": found,
                "summary": _counts(found),
            }
        )
    return out


def summary(cfg: config.AgentConfig, per_cluster: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per app: its name and how many clusters are in each sync status and health (the fleet summary's
    per-app counts), from each cluster's cells. Worked out again only when one of those lists is a new one (the
    cells :func:`cluster_cells` keeps are the same list while nothing changed) or the config is."""
    key = (cfg, *per_cluster)
    with _CELLS_LOCK:
        kept = _SUMMARY.get(cfg.instance)
    if kept is not None and len(kept[0]) == len(key) and all(a is b for a, b in zip(kept[0], key, strict=True)):
        return kept[1]
    found = [{"name": a["name"], **a["summary"]} for a in summarize(cfg, [c for cells in per_cluster for c in cells])]
    with _CELLS_LOCK:
        _SUMMARY[cfg.instance] = (key, found)
    return found


_SUMMARY: dict[str, tuple[tuple[object, ...], list[dict[str, Any]]]] = {}  # instance -> (what it is of, summary)


def fleet_counts(per_app: list[dict[str, Any]]) -> dict[str, Any]:
    """``apps`` (how many) and the app x cluster cells per ``syncStatus`` and ``health``, over :func:`summary`'s
    per-app counts (kept with the summary it was made from, the same list while nothing changed)."""
    with _CELLS_LOCK:
        kept = _COUNTS.get(id(per_app))
    if kept is not None and kept[0] is per_app:
        return kept[1]
    sync: collections.Counter[str] = collections.Counter()
    healths: collections.Counter[str] = collections.Counter()
    for a in per_app:
        sync.update(a["syncStatus"])
        healths.update(a["health"])
    found = {"apps": len(per_app), "syncStatus": dict(sync), "health": dict(healths)}
    with _CELLS_LOCK:
        _COUNTS.clear()
        _COUNTS[id(per_app)] = (per_app, found)
    return found


_COUNTS: dict[int, tuple[list[dict[str, Any]], dict[str, Any]]] = {}  # the last summary's counts


def cell_counts(found: list[dict[str, Any]]) -> dict[str, Any]:
    """``apps`` (how many cells: apps placed on the cluster, or that left it) and how many per ``syncStatus`` and
    ``health``, over one cluster's cells."""
    return {
        "apps": len(found),
        "syncStatus": dict(collections.Counter(c["syncStatus"] for c in found)),
        "health": dict(collections.Counter(c["health"] for c in found)),
    }


def _counts(found: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "clusters": len(found),
        "syncStatus": dict(collections.Counter(c["syncStatus"] for c in found)),
        "health": dict(collections.Counter(c["health"] for c in found)),
    }
