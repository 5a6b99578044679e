"""Prune: delete what left git, and nothing else.

An object is deleted only when all hold:

- it is in the previous inventory of this cluster and in no path's desired set now;
- its live tracking annotation names this agent instance and this cluster (an object someone else re-created
  or adopted is never deleted), and it does not carry ``gitops-agent.io/prune: disabled``;
- its path rendered objects (an emptied path prunes nothing unless ``allowEmpty``), and the cluster's desired
  set is not empty (unless ``allowEmpty``);
- the sync stays within the prune budget: at most ``budget`` (default half) of the previous inventory may be
  deleted in one sync unless forced. A bad commit becomes a clear error instead of an outage.

An object whose live annotations say ``Prune=false`` or ``Delete=false`` (Argo CD's sync options, or this
agent's ``gitops-agent.io/sync-options``), or ``helm.sh/resource-policy: keep``, is kept too. Deletes go highest
wave first (read from the live objects), then in reverse apply order (HPAs first, Namespaces and CRDs last), with
a propagation policy and a UID precondition. Objects whose delete fails stay in the inventory and are retried on
the next sync. Called by :mod:`reconcilers.engine`; never called when the source failed to load.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Mapping, Sequence
from collections.abc import Set as AbstractSet

from reconcilers import apply, client, diff, errors, hooks, inventory, ordering, resources
from reconcilers import cancel as cancel_


@dataclasses.dataclass(frozen=True)
class PruneOptions:
    """``enabled`` (config ``sync.prune``, default False); ``allow_empty`` (``sync.allowEmpty``): prune even when
    a path or the whole cluster renders nothing; ``budget``: the fraction of the previous inventory one sync may
    delete (``sync.pruneBudget``, default 0.5); ``force``: ignore the budget (``--force-prune``);
    ``propagation``: ``Background`` (default), ``Foreground`` or ``Orphan``; ``orphans``: also delete orphans,
    objects carrying this agent's tracking annotation that are neither desired nor in any inventory (an
    inventory deleted out of band, a path removed from the config): only on request (``--prune-orphans``)."""

    enabled: bool = False
    allow_empty: bool = False
    budget: float = 0.5
    force: bool = False
    propagation: str = "Background"
    orphans: bool = False


@dataclasses.dataclass(frozen=True)
class Plan:
    """What prune would delete (``candidates``, in delete order, with the path each came from) and why some
    paths or the whole prune were held back (``refusals``; a non-empty ``error`` refuses every delete)."""

    candidates: list[tuple[resources.ResourceKey, str]]
    held: dict[str, str]
    error: str | None


def plan(
    previous: Mapping[str, inventory.Inventory],
    desired: Mapping[str, Sequence[resources.ResourceKey]],
    options: PruneOptions,
) -> Plan:
    """Decide what to delete from the previous inventories and the desired keys of each path."""
    wanted = {k for keys in desired.values() for k in keys}
    total = sum(len(inv.entries) for inv in previous.values())
    held: dict[str, str] = {}
    if not wanted and total and not options.allow_empty:
        return Plan(
            [],
            {},
            f"refusing to prune: the desired state is empty and {total} object(s) are in the "
            "inventory (set sync.allowEmpty: true to allow it)",
        )
    candidates: dict[resources.ResourceKey, str] = {}
    for path, inv in previous.items():
        gone = [k for k in inv.entries if k not in wanted]
        if gone and not desired.get(path) and not options.allow_empty:
            held[path] = f"path {path!r} rendered no objects: its {len(inv.entries)} object(s) are kept"
            continue
        candidates.update((k, path) for k in gone)
    limit = int(total * options.budget)
    if len(candidates) > limit and not options.force:
        return Plan(
            [],
            held,
            f"refusing to prune {len(candidates)} of {total} object(s): over the prune budget of "
            f"{options.budget:.0%} ({limit}); check the commit, or sync with --force-prune",
        )
    return Plan([(k, candidates[k]) for k in ordering.prune_order(candidates)], held, None)


def execute(
    kube: client.KubeClient,
    plan_: Plan,
    tracking: inventory.Tracking,
    options: PruneOptions,
    *,
    dry_run: bool,
    cancel: cancel_.Token | None = None,
) -> tuple[list[apply.ChangeSetEntry], set[resources.ResourceKey]]:
    """Delete the planned objects that are still ours. Returns one entry per candidate and the keys that must
    stay in the inventory (failed deletes). Raises :class:`errors.CancelledError` before a delete when ``cancel`` is
    cancelled (what was deleted stays deleted; the inventory still names the rest)."""
    entries, keep = [], set()
    found = {key: kube.get(key) for key, _ in plan_.candidates}
    waves = {key: _wave(live) for key, live in found.items()}
    paths = dict(plan_.candidates)
    for key in ordering.prune_order(paths, waves):
        path, live = paths[key], found[key]
        origin = f"{path} (removed from git)"
        if live is None:
            entries.append(apply.ChangeSetEntry(key, apply.Action.PRUNED, "already gone", origin))
        elif not tracking.owns(live):
            why = "not pruned: its tracking annotation does not name this agent"
            entries.append(apply.ChangeSetEntry(key, apply.Action.KEPT, why, origin))
        else:
            entries.append(_delete(kube, key, live, origin, options, dry_run, cancel))
            if entries[-1].action is apply.Action.FAILED:
                keep.add(key)
    return entries, keep


REQUIRES_PRUNING_MESSAGE = "requires pruning: removed from git, and sync.prune is off"


def left_git(
    previous: Mapping[str, inventory.Inventory],
    desired: Mapping[str, Sequence[resources.ResourceKey]],
    protected: Container[resources.ResourceKey],
) -> list[tuple[resources.ResourceKey, str]]:
    """The inventoried objects no path desires now (``(key, path)`` in delete order), leaving out ``protected``
    ones (another app desires them now): what prune would delete if it were on, before its budget and empty-path
    checks."""
    wanted = {k for keys in desired.values() for k in keys}
    found = {k: path for path, inv in previous.items() for k in inv.entries if k not in wanted and k not in protected}
    return [(k, found[k]) for k in ordering.prune_order(found)]


def unpruned(
    kube: client.KubeClient,
    candidates: Sequence[tuple[resources.ResourceKey, str]],
    tracking: inventory.Tracking,
    cancel: cancel_.Token | None = None,
) -> tuple[list[apply.ChangeSetEntry], set[resources.ResourceKey]]:
    """What prune being off leaves behind (:func:`left_git`'s ``candidates``): an entry ``requires-pruning`` for
    each that is still live and ours; returns them and the keys the inventory can forget (gone already, or no
    longer carrying this agent's tracking annotation: never ours to prune again). One GET each. Raises
    :class:`errors.CancelledError` when ``cancel`` is, before a GET."""
    entries, forget = [], set()
    for key, path in candidates:
        if cancel is not None:
            cancel.check()
        live = kube.get(key)
        origin = f"{path} (removed from git)"
        if live is None:
            forget.add(key)
        elif not tracking.owns(live):
            forget.add(key)
            why = "not pruned: its tracking annotation does not name this agent"
            entries.append(apply.ChangeSetEntry(key, apply.Action.KEPT, why, origin))
        else:
            entries.append(apply.ChangeSetEntry(key, apply.Action.REQUIRES_PRUNING, REQUIRES_PRUNING_MESSAGE, origin))
    return entries, forget


ORPHAN_MESSAGE = "orphan: carries this agent's tracking annotation but is in neither git nor the inventory"


def orphans(
    kube: client.KubeClient,
    live: client.LiveView,
    known: AbstractSet[resources.ResourceKey],
    tracking: inventory.Tracking,
    options: PruneOptions,
    *,
    dry_run: bool,
    cancel: cancel_.Token | None = None,
) -> list[apply.ChangeSetEntry]:
    """Report (and with ``options.orphans`` delete) the objects of the live cache that are neither desired nor
    inventoried (``known``) and whose live tracking annotation names this agent instance and cluster (read
    again: the cache keeps no annotations). One entry each: ``orphaned``, or ``pruned``/``kept``/``failed``.
    Only the kinds the cache lists (those of the desired state) are seen."""
    entries = []
    for key in ordering.prune_order(k for k in live.keys_held() if k not in known):
        found = kube.get(key)
        if found is None or not tracking.owns(found):
            continue
        if options.orphans:
            entries.append(_delete(kube, key, found, "orphan", options, dry_run, cancel))
        else:
            why = ORPHAN_MESSAGE + " (not pruned)"
            entries.append(apply.ChangeSetEntry(key, apply.Action.ORPHANED, why, "orphan"))
    return entries


def _delete(
    kube: client.KubeClient,
    key: resources.ResourceKey,
    live: resources.Body,
    origin: str,
    options: PruneOptions,
    dry_run: bool,
    cancel: cancel_.Token | None,
) -> apply.ChangeSetEntry:
    """Delete ``live`` (ours) unless it opts out, with a UID precondition; a dry run shows it as a diff."""
    if inventory.prune_disabled(live):
        return apply.ChangeSetEntry(
            key, apply.Action.KEPT, f"not pruned: {inventory.PRUNE_ANNOTATION}: disabled", origin
        )
    if kept := hooks.keep_on_prune(live):
        return apply.ChangeSetEntry(key, apply.Action.KEPT, f"not pruned: {kept}", origin)
    if dry_run:
        return apply.ChangeSetEntry(
            key, apply.Action.PRUNED, "dry run", origin, diff.object_diff(live, None, apply.label(key))
        )
    if cancel is not None:
        cancel.check()
    try:
        kube.delete(key, uid=(live.get("metadata") or {}).get("uid"), propagation=options.propagation)
    except errors.ApiError as e:
        return apply.ChangeSetEntry(key, apply.Action.FAILED, f"prune: {e.message or e}", origin)
    return apply.ChangeSetEntry(key, apply.Action.PRUNED, "", origin)


def _wave(live: resources.Body | None) -> int:
    """The sync wave of a live object (0 when it has none, or an unreadable one: prune still goes ahead)."""
    try:
        return hooks.marks(live or {}).wave
    except ValueError:
        return 0
