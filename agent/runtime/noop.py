"""The no-op resync of one unit, without the engine: proven unchanged from what is already known.

A unit whose last sync on this cluster succeeded is unchanged, and its sync can skip
``reconcilers.engine.reconcile``, when all of these hold:

- its manifests are the very list that sync applied (the runner loads a unit again only when its revision trees,
  settings or the cluster's discovery changed), at the same revision and under the same config;
- that sync was a plain one: a single Sync wave, no hook (waves are gated again, hooks judged again, by the
  engine);
- its inventory, as this sync's LIST returned it or the inventory watch holds it
  (:mod:`agent.clusters.inventories`), holds exactly the entries that sync recorded (nobody wrote it since;
  nothing to prune);
- every desired object passes the engine's own cheap check (:func:`reconcilers.diff.quick_in_sync`): the live
  cache holds it, with the desired hash and owned-fields fingerprint the inventory recorded.

Any doubt sends the unit down the engine's full path. The result is the last one with every object
``unchanged`` and a new time. It is the same verdict the engine's quick check would reach per object, without
re-placing, re-hashing and re-planning every object and without the engine's per-unit set-up. Used by
:mod:`agent.runtime.appsync`.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Mapping, Sequence

from agent.clusters import cache
from reconcilers import apply, diff, engine, inventory, resources


@dataclasses.dataclass(frozen=True)
class Last:
    """What a unit's last good sync on a cluster applied: the manifests list it loaded, the unit object and config
    object it ran with (the runner keeps the same unit objects for as long as the config is the same one), its
    result (as the app's result: ``app`` set, the namespace it created and the release records among its entries),
    and the Helm release records it found (``kept`` entries, named again without a LIST while nothing
    changes)."""

    manifests: Sequence[resources.Manifest]
    unit: object
    cfg: object
    result: engine.ReconcileResult
    kept: tuple[apply.ChangeSetEntry, ...] = ()
    proven: bool = False
    """``result`` is a proof's with no namespace created: its entries are exactly what the next proof's would be."""
    inventory_version: tuple[str, str] = ("", "")
    """The (uid, resourceVersion) of the unit's inventory ConfigMap when it last held exactly ``result``'s
    entries (set by the first proof after a sync): the same version again is the same entries, not decoded and
    compared again."""
    inventory_body: resources.Body | None = None
    """That ConfigMap as the proof was given it (the same object again means the same version)."""


def unchanged(
    last: Last | None,
    manifests: Sequence[resources.Manifest],
    unit: object,
    cfg: object,
    revision: resources.Revision,
    stored: Mapping[str, resources.Body | None] | None,
    live: cache.LiveCache,
    options: engine.ReconcileOptions,
    created: Sequence[apply.ChangeSetEntry] = (),
) -> tuple[engine.ReconcileResult, Last] | None:
    """The unit's result when it is provably unchanged (see the module doc), and what the next proof starts
    from; else None. The result is the last one (its
    ``app`` kept) with ``created`` (the unit's namespace, made just now), then every desired object
    ``unchanged``, then the release records the last sync kept, and a new time. ``stored``: the cluster's
    inventories by key (None: not listed, no proof); the unit's is ``options.paths[0]``."""
    t0, started = time.monotonic(), datetime.datetime.now(datetime.UTC)
    if last is None or stored is None or options.apply.dry_run or options.hooks_on_noop:
        return None
    prev = last.result
    if last.manifests is not manifests or last.unit is not unit or last.cfg is not cfg:
        return None
    if prev.revision is not revision and prev.revision != revision:
        return None
    key = options.paths[0]
    found = stored.get(key)
    # A result a proof made passed the checks below, from this very inventory body (a watch keeps the object
    # until the ConfigMap changes): only the live objects can have changed since.
    if not (last.proven and found is not None and found is last.inventory_body):
        version = _version(found)
        if not _plain(prev) or not version[1]:
            return None
        if version != last.inventory_version:
            store = inventory.Store(
                live.kube, inventory.Tracking(options.instance, ""), options.inventory_namespace, ""
            )
            store.prime(key, found)
            try:
                entries = store.read([key])[key].entries
            except Exception:  # an unreadable inventory is the engine's to report
                return None
            if dict(entries) != dict(prev.inventory) or len(entries) != len(prev.desired):
                return None
        last = dataclasses.replace(last, inventory_version=version, inventory_body=found)
    fm = options.apply.field_manager
    recorded = prev.inventory
    for k, d in prev.desired.items():
        if not diff.quick_in_sync(live.get(k), recorded.get(k), d.hash, fm, d.pointers):
            return None
    if last.proven and not created:
        found_entries = prev.entries  # the same entries again: no new object per desired one
    else:
        unchanged_ = apply.Action.UNCHANGED
        found_entries = (
            *created,
            *(apply.ChangeSetEntry(k, unchanged_, "", d.manifest.origin) for k, d in prev.desired.items()),
            *last.kept,
        )
    result = prev.again(entries=found_entries, started=started, duration=time.monotonic() - t0, health=None,
                        health_message="")  # fmt: skip
    if last.proven and not created:
        return result, last
    return result, dataclasses.replace(last, result=result, proven=not created)


def _plain(r: engine.ReconcileResult) -> bool:
    """True for a good sync of one plain wave and no hook (waves and hooks are the engine's to judge again)."""
    if not r.ok or r.dry_run or r.hooks or r.plan is None:
        return False
    return len(r.plan.steps) == 1 and not r.plan.on_fail and not r.plan.skipped


def _version(body: resources.Body | None) -> tuple[str, str]:
    meta = (body or {}).get("metadata") or {}
    return str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))
