"""The engine's no-op verdict: is a result this engine made still what the cluster holds?

A resync whose inputs are the ones a good sync ran with can skip :func:`reconcilers.engine.reconcile` when the
engine's own checks say nothing would change. These are those checks, asked through :mod:`reconcilers.engine`:

- :func:`replayable`: the result is of a plain sync, one Sync wave and no hook (waves are gated again and hooks
  judged again by a full reconcile);
- :func:`inventory_matches`: the app's inventory ConfigMap, as the caller last read it, holds exactly the entries
  the result recorded (nobody wrote it since; nothing to prune);
- :func:`in_sync`: every desired object passes the engine's cheap check (:func:`reconcilers.diff.quick_in_sync`):
  the live cache holds it with the desired hash and owned-fields fingerprint the inventory recorded;
- :func:`unchanged_entries`: the entries such a sync reports: every desired object ``unchanged``.

The verdict is the one :func:`reconcilers.phases.sync` reaches per object on its quick path, without placing,
hashing and planning every object again.
"""

from __future__ import annotations

from collections.abc import Callable

from reconcilers import apply, client, diff, inventory, resources, results


def replayable(result: results.ReconcileResult) -> bool:
    """True for a good, applied sync of one plain wave and no hook."""
    if not result.ok or result.dry_run or result.hooks or result.plan is None:
        return False
    plan = result.plan
    return len(plan.steps) == 1 and not plan.on_fail and not plan.skipped


def inventory_matches(
    kube: client.KubeClient,
    body: resources.Body | None,
    result: results.ReconcileResult,
    options: results.ReconcileOptions,
) -> bool:
    """True when ``body``, the ConfigMap of the inventory ``options.paths[0]`` as last read, holds exactly the
    entries ``result`` recorded, one per desired object. An inventory that cannot be decoded is False (a full
    reconcile reports it). Sends no request (``kube`` names the store only)."""
    key = options.paths[0]
    store = inventory.Store(kube, inventory.Tracking(options.instance, ""), options.inventory_namespace, "")
    store.prime(key, body)
    try:
        entries = store.read([key])[key].entries
    except Exception:  # an unreadable inventory is the full reconcile's to report
        return False
    return dict(entries) == dict(result.inventory) and len(entries) == len(result.desired)


def in_sync(
    result: results.ReconcileResult,
    live: Callable[[resources.ResourceKey], resources.Body | None],
    field_manager: str,
) -> bool:
    """True when every object ``result`` applied is, in the live cache (``live(key)``), as that sync left it
    (:func:`reconcilers.diff.quick_in_sync` against the inventory entry it recorded)."""
    recorded = result.inventory
    for k, d in result.desired.items():
        if not diff.quick_in_sync(live(k), recorded.get(k), d.hash, field_manager, d.pointers):
            return False
    return True


def unchanged_entries(result: results.ReconcileResult) -> tuple[apply.ChangeSetEntry, ...]:
    """One ``unchanged`` entry per object ``result`` applied, in its order, each naming its document."""
    same = apply.Action.UNCHANGED
    return tuple(apply.ChangeSetEntry(k, same, "", d.manifest.origin) for k, d in result.desired.items())
