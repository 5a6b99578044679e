"""The no-op resync of one unit, without the engine's full path: the engine's verdict on what is already known.

A unit whose last sync on this cluster succeeded is unchanged, and its sync can skip
``reconcilers.engine.reconcile``, when all of these hold:

- its manifests are the very list that sync applied (the runner loads a unit again only when its revision trees,
  settings or the cluster's discovery changed), at the same revision and under the same config;
- the engine judges that sync replayable (``engine.replayable``: a single Sync wave, no hook);
- its inventory, as this sync's LIST returned it or the inventory watch holds it
  (:mod:`agent.clusters.inventories`), holds exactly the entries that sync recorded (``engine.inventory_matches``:
  nobody wrote it since; nothing to prune);
- every desired object passes the engine's own cheap check (``engine.in_sync``): the live cache holds it, with the
  desired hash and owned-fields fingerprint the inventory recorded.

Every check is the engine's (:mod:`reconcilers.verdict`, through :mod:`reconcilers.engine`); this module only
remembers what they were asked about. Any doubt sends the unit down the engine's full path. The result is the
last one with every object ``unchanged`` (``engine.unchanged_entries``) and a new time.

A sync in which every unit of the cluster was proven this way, and nothing else happened, is kept
(:class:`Cluster`): the next sync with the very same inputs (units, config, revisions, trees, watched inventories,
loaded manifests) proves the whole cluster in one pass (:func:`again`), checking every object as above and, per
unit, only that it loads the same manifests list; its results are the last ones with a new time. Used by
:mod:`agent.sync.appsync`.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable, Mapping, Sequence

from agent import apps
from agent.clusters import cache
from reconcilers import engine, resources


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
    kept: tuple[engine.ChangeSetEntry, ...] = ()
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
    created: Sequence[engine.ChangeSetEntry] = (),
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
    found = stored.get(options.paths[0])
    # A result a proof made passed the checks below, from this very inventory body (a watch keeps the object
    # until the ConfigMap changes): only the live objects can have changed since.
    if not (last.proven and found is not None and found is last.inventory_body):
        version = _version(found)
        if not engine.replayable(prev) or not version[1]:
            return None
        if version != last.inventory_version and not engine.inventory_matches(live.kube, found, prev, options):
            return None
        last = dataclasses.replace(last, inventory_version=version, inventory_body=found)
    if not engine.in_sync(prev, live.get, options.apply.field_manager):
        return None
    if last.proven and not created:
        found_entries = prev.entries  # the same entries again: no new object per desired one
    else:
        found_entries = (*created, *engine.unchanged_entries(prev), *last.kept)
    result = prev.again(entries=found_entries, started=started, duration=time.monotonic() - t0, health=None,
                        health_message="")  # fmt: skip
    if last.proven and not created:
        return result, last
    return result, dataclasses.replace(last, result=result, proven=not created)


def _version(body: resources.Body | None) -> tuple[str, str]:
    meta = (body or {}).get("metadata") or {}
    return str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A full sync of a cluster in which every unit was proven unchanged (:func:`unchanged`) and nothing else
    happened: no unit waited for its health or created its namespace, no app had left, the inventories came from
    the watch. What :func:`again` compares the next sync against, to prove the cluster's units in one pass."""

    units: Sequence[apps.Unit]
    """The units list object of that sync (the runner keeps the same one while the config is the same)."""
    cfg: object
    revisions: Mapping[str, resources.Revision]
    trees: Mapping[str, object]
    stored: Mapping[str, resources.Body]
    """The inventories by key as the watch held them (the runner hands out the same mapping while none changed)."""
    prune: object
    lasts: tuple[Last, ...]
    """Each unit's, in unit order."""
    field_managers: tuple[str, ...]
    known: frozenset[resources.ResourceKey]
    """Every object the units desire or their inventories hold (the orphan scan leaves them alone)."""


class ClusterMemo:
    """The cluster's last :class:`Cluster` proof, kept by the runner for the next sync. Used from the cluster's
    sync thread only."""

    def __init__(self) -> None:
        self.last: Cluster | None = None


def cluster_proof(
    units: Sequence[apps.Unit],
    revisions: Mapping[str, resources.Revision],
    trees: Mapping[str, object],
    stored: Mapping[str, resources.Body],
    remembered: Mapping[str, Last],
    wait: bool | None,
    cfg: object,
    prune: object,
    known: frozenset[resources.ResourceKey],
    *,
    field_manager: Callable[[apps.Unit], str],
) -> Cluster | None:
    """What the next sync can prove the cluster against (:class:`Cluster`), after a full sync from the watched
    inventories (``stored``) that proved every unit unchanged (``remembered``: app -> what this sync proved) and
    did nothing else: no rollout pin in ``revisions``, no wait for health (``wait``, the sync's), no unit with
    ``sync.wait``, that another depends on, or that creates its namespace (a GET each sync); else None."""
    if any(k.startswith(apps.PIN_PREFIX) for k in revisions):
        return None
    lasts = []
    for u in units:
        last = remembered.get(u.name)
        # an app with sync.wait waits on any sync that does not say otherwise: never proven in one pass
        if last is None or not last.proven or wait or u.wait or u.depends_on or u.create_namespace:
            return None
        lasts.append(last)
    managers = tuple(field_manager(u) for u in units)
    return Cluster(units, cfg, dict(revisions), dict(trees), stored, prune, tuple(lasts), managers, known)


def again(
    proof: Cluster | None,
    units: Sequence[apps.Unit],
    cfg: object,
    revisions: Mapping[str, resources.Revision],
    trees: Mapping[str, object],
    stored: Mapping[str, resources.Body] | None,
    prune: object,
    load: Callable[[apps.Unit], Sequence[resources.Manifest]],
    live: cache.LiveCache,
) -> list[engine.ReconcileResult] | None:
    """Every unit's result, each the last one with a new time, when the whole cluster is provably as ``proof``
    left it; else None (the caller syncs unit by unit). Proven when the units, config, revisions, trees, prune
    settings and the watched inventories (``stored``) are the very ones ``proof`` had, each unit loads (``load``,
    the runner's memo) the very manifests list it had, and every desired object passes the engine's quick check
    against the live cache (:func:`reconcilers.diff.quick_in_sync`), exactly as :func:`unchanged` checks each unit;
    what the units' own checks would find again (claims, namespaces, dependencies, removed apps) cannot have
    changed when all of these are the same."""
    if proof is None or stored is None or stored is not proof.stored:
        return None
    if proof.units is not units or proof.cfg is not cfg or proof.prune != prune:
        return None
    if proof.revisions != revisions or proof.trees != trees:
        return None
    t0, started = time.monotonic(), datetime.datetime.now(datetime.UTC)
    for u, last in zip(units, proof.lasts, strict=True):
        if load(u) is not last.manifests:
            return None
    for last, fm in zip(proof.lasts, proof.field_managers, strict=True):
        if not engine.in_sync(last.result, live.get, fm):
            return None
    duration = (time.monotonic() - t0) / max(1, len(units))  # each unit's share of the proof
    return [last.result.again(started=started, duration=duration) for last in proof.lasts]
