"""Apps that left a cluster: removed from the config, or the cluster no longer matches their placement.

Their inventories stay in the cluster (ConfigMaps labelled with the instance, annotated with the cluster and the
inventory key), so a later sync finds them: :func:`sync_removed` prunes their objects when ``sync.prune`` is on
(Argo CD deletes an Application's resources when the Application is deleted with its finalizer; Flux a
Kustomization's with ``prune: true``), under the prune budget counted against every object the cluster's
inventories hold, and only when every current app loaded (an app that failed to load might desire them). An
object another app desires now moved there: it is dropped from the old inventory, never deleted. With prune
off, the objects are kept and the result says so. Used by :mod:`agent.sync.appsync`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence

from agent import apps, config
from agent.clusters import connection
from agent.sync import gate
from reconcilers import cancel as cancel_
from reconcilers import engine, errors, resources


def list_inventories(
    kube: connection.KubeCluster, cfg: config.AgentConfig, cluster: str
) -> dict[str, resources.Body] | None:
    """Every inventory ConfigMap stored in ``cluster`` for this instance, by inventory key (one LIST request, of
    the inventory namespace); None when the agent's identity may not list ConfigMaps there (each app then reads
    its own). Raises ClusterError."""
    try:
        selector = engine.Tracking(cfg.instance, cluster).inventory_selector
        found, _ = kube.list_objects("", "ConfigMap", selector, namespace=cfg.sync.inventory_namespace)
    except errors.ApiError as e:
        if e.status in (403, 404):
            return None
        raise
    return by_key(found, cfg, cluster)


def by_key(found: Iterable[resources.Body], cfg: config.AgentConfig, cluster: str) -> dict[str, resources.Body]:
    """The inventory ConfigMaps among ``found`` that belong to ``cluster`` (by their tracking annotation) and sit
    in the inventory namespace, by inventory key."""
    prefix = f"{cfg.instance}:{cluster}:"
    out = {}
    for cm in found:
        meta = cm.get("metadata") or {}
        tracking = str((meta.get("annotations") or {}).get(engine.TRACKING_ANNOTATION, ""))
        if meta.get("namespace") == cfg.sync.inventory_namespace and tracking.startswith(prefix):
            out[tracking.removeprefix(prefix)] = cm
    return out


def sync_removed(
    kube: connection.KubeCluster,
    cfg: config.AgentConfig,
    cluster: config.ClusterConfig,
    units: Sequence[apps.Unit],
    stored: Mapping[str, resources.Body],
    desired: set[resources.ResourceKey],
    complete: bool,
    options: engine.PruneOptions,
    dry_run: bool,
    token: cancel_.Token,
    admit: Callable[[str], gate.Decision] = lambda name: gate.ALLOWED,
) -> list[engine.ReconcileResult]:
    """Prune (or keep) the objects of every inventory of ``cluster`` whose key no unit has; one result each
    (``app`` is the app name, or the path of a ``paths`` entry). ``stored``: the cluster's inventories by key
    (:func:`list_inventories`); ``desired``: every object a current unit desires (never deleted); ``complete``:
    every current unit loaded (else nothing is pruned); ``admit(app)``: the write gate's answer for that app's
    prune (refused: its objects and inventory are kept, the result ``held`` with the reason)."""
    current = {u.inventory for u in units}
    gone = sorted(k for k in stored if k not in current)
    if not gone:
        return []
    tracking = engine.Tracking(cfg.instance, cluster.name)
    store = engine.InventoryStore(kube, tracking, cfg.sync.inventory_namespace, cfg.sync.field_manager)
    for key in gone:
        store.prime(key, stored[key])
    held = store.read(gone)
    total = len(desired) + sum(len(inv.entries) for inv in held.values())
    budget = int(total * options.budget)
    results = []
    for key in gone:
        entries = held[key].entries
        app_set, name = apps.parse_inventory_key(key)
        started = datetime.datetime.now(datetime.UTC)
        origin = f"{name} (no longer on this cluster)"
        moved = [k for k in entries if k in desired]
        candidates = [k for k in engine.prune_order(entries) if k not in desired]
        why = ""
        preserved = app_set is not None and any(
            s.name == app_set and s.preserve_resources_on_deletion for s in cfg.app_sets
        )
        decision = admit(name) if options.enabled and candidates and not dry_run else gate.ALLOWED
        if not decision.allowed:
            kept = tuple(engine.ChangeSetEntry(k, engine.Action.KEPT, decision.reason, origin) for k in candidates)
            result = _result(cluster.name, name, kept, started, dry_run, None, None)
            results.append(result.again(held=decision.reason))
            continue
        if app_set is not None and app_set in cfg.app_set_errors:
            why = f"app set {app_set} did not generate its apps: {cfg.app_set_errors[app_set]}"
        elif preserved:
            why = f"app set {app_set} preserves the objects of apps it no longer generates"
        elif not options.enabled:
            why = "sync.prune is off: its objects are kept"
        elif not complete:
            why = "an app of this cluster failed to load: nothing is pruned until every app loads"
        elif len(candidates) > budget and not options.force:
            why = f"refusing to prune {len(candidates)} object(s): over the prune budget ({budget} of {total})"
        if why or not candidates:
            kept = tuple(engine.ChangeSetEntry(k, engine.Action.KEPT, why or "moved", origin) for k in candidates)
            if not dry_run and moved:
                store.merge(key, drop=moved, cancel=token)
            error = f"app {name} left this cluster: {why}" if why and options.enabled and not preserved else None
            kind = engine.ErrorKind.PRUNE if error else None
            results.append(_result(cluster.name, name, kept, started, dry_run, error, kind))
            if not candidates and not dry_run:
                _drop_inventory(kube, store, key, token)
            continue
        done, keep = engine.prune_keys(kube, candidates, name, tracking, options, dry_run=dry_run, cancel=token)
        if not dry_run:
            if keep:
                store.merge(key, drop=[k for k in entries if k not in keep], cancel=token)
            else:
                _drop_inventory(kube, store, key, token)
        results.append(_result(cluster.name, name, tuple(done), started, dry_run, None, None))
    return results


def _drop_inventory(kube: connection.KubeCluster, store: engine.InventoryStore, key: str, token: cancel_.Token) -> None:
    token.check()
    kube.delete(store.key(key), uid=None, propagation="Background")


def _result(
    cluster: str,
    app: str,
    entries: tuple[engine.ChangeSetEntry, ...],
    started: datetime.datetime,
    dry_run: bool,
    error: str | None,
    kind: engine.ErrorKind | None,
) -> engine.ReconcileResult:
    return engine.ReconcileResult(cluster, None, entries, started, 0.0, dry_run, error, kind, app=app)
