"""The no-op resync of one unit, without the engine's full path: the engine's verdict on what is already known.

A unit whose last sync on this cluster succeeded is unchanged, and its sync can skip
``reconcilers.engine.reconcile``, when all of these hold:

- its manifests are what that sync applied (the same digest, :func:`agent.sync.keys.manifests_digest`), the unit
  and the config are the same by content, and so is the revision;
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
manifests digests) proves the whole cluster in one pass (:func:`again`), checking every object as above and, per
unit, only that it loads the same manifests; its results are the last ones with a new time. Every input is
compared by content (:mod:`agent.sync.keys`), never by which object holds it. Used by
:mod:`agent.sync.appsync`.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable, Mapping, Sequence

from agent import apps
from agent.clusters import cache
from agent.sync import keys
from reconcilers import engine, resources


@dataclasses.dataclass(frozen=True)
class Last:
    """What a unit's last good sync on a cluster applied: the digest of the manifests it loaded
    (:func:`agent.sync.keys.manifests_digest`), the unit and the config digest it ran with, its result (as the
    app's result: ``app`` set, the namespace it created and the release records among its entries), and the Helm
    release records it found (``kept`` entries, named again without a LIST while nothing changes)."""

    digest: str
    unit: apps.Unit
    config: str
    result: engine.ReconcileResult
    kept: tuple[engine.ChangeSetEntry, ...] = ()
    proven: bool = False
    """``result`` is a proof's with no namespace created: its entries are exactly what the next proof's would be."""
    inventory_version: tuple[str, str] = ("", "")
    """The (uid, resourceVersion) of the unit's inventory ConfigMap when it last held exactly ``result``'s
    entries (set by the first proof after a sync): the same version again is the same entries, not decoded and
    compared again."""


def unchanged(
    last: Last | None,
    digest: str,
    unit: apps.Unit,
    config: str,
    revision: resources.Revision,
    stored: Mapping[str, resources.Body | None] | None,
    live: cache.LiveCache,
    options: engine.ReconcileOptions,
    created: Sequence[engine.ChangeSetEntry] = (),
) -> tuple[engine.ReconcileResult, Last] | None:
    """The unit's result when it is provably unchanged (see the module doc), and what the next proof starts
    from; else None. ``digest``: of the manifests the unit loads now; ``config``: the config's digest. The result
    is the last one (its
    ``app`` kept) with ``created`` (the unit's namespace, made just now), then every desired object
    ``unchanged``, then the release records the last sync kept, and a new time. ``stored``: the cluster's
    inventories by key (None: not listed, no proof); the unit's is ``options.paths[0]``."""
    t0, started = time.monotonic(), datetime.datetime.now(datetime.UTC)
    if last is None or stored is None or options.apply.dry_run or options.hooks_on_noop:
        return None
    prev = last.result
    if last.digest != digest or last.config != config or not keys.same(last.unit, unit):
        return None
    if not keys.same(prev.revision, revision):
        return None
    found = stored.get(options.paths[0])
    version = keys.version(found)
    # A result a proof made passed the checks below, from this very version of the inventory (the API server
    # gives every write a new one): only the live objects can have changed since.
    if not (last.proven and version[1] and version == last.inventory_version):
        if not engine.replayable(prev) or not version[1]:
            return None
        if version != last.inventory_version and not engine.inventory_matches(live.kube, found, prev, options):
            return None
        last = dataclasses.replace(last, inventory_version=version)
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


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A full sync of a cluster in which every unit was proven unchanged (:func:`unchanged`) and nothing else
    happened: no unit waited for its health or created its namespace, no app had left, the inventories came from
    the watch. What :func:`again` compares the next sync against, to prove the cluster's units in one pass."""

    units: Sequence[apps.Unit]
    config: str
    """The config's digest."""
    revisions: Mapping[str, resources.Revision]
    trees: Mapping[str, object]
    stored: keys.InventoryVersions
    """The versions of the inventories as the watch held them."""
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
    config: str,
    prune: object,
    known: frozenset[resources.ResourceKey],
    *,
    field_manager: Callable[[apps.Unit], str],
) -> Cluster | None:
    """What the next sync can prove the cluster against (:class:`Cluster`), after a full sync from the watched
    inventories (``stored``) that proved every unit unchanged (``remembered``: app -> what this sync proved) and
    did nothing else: no rollout pin in ``revisions``, no wait for health (``wait``, the sync's), no unit with
    ``sync.wait``, that another depends on, or that creates its namespace (a GET each sync); else None.
    ``config``: the config's digest."""
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
    versions = keys.inventory_versions(stored)
    return Cluster(tuple(units), config, dict(revisions), dict(trees), versions, prune, tuple(lasts), managers, known)


def again(
    proof: Cluster | None,
    units: Sequence[apps.Unit],
    config: str,
    revisions: Mapping[str, resources.Revision],
    trees: Mapping[str, object],
    stored: Mapping[str, resources.Body] | None,
    prune: object,
    digest: Callable[[apps.Unit], str],
    live: cache.LiveCache,
) -> list[engine.ReconcileResult] | None:
    """Every unit's result, each the last one with a new time, when the whole cluster is provably as ``proof``
    left it; else None (the caller syncs unit by unit). Proven when the units, config digest, revisions, trees,
    prune settings and the versions of the watched inventories (``stored``) are the ones ``proof`` had, each unit
    loads (``digest(unit)``: it loads, from the memory while its inputs are the same, and says the digest of its
    manifests) what it had, and every desired object passes the engine's check against the live cache
    (``engine.in_sync``), exactly as :func:`unchanged` checks each unit;
    what the units' own checks would find again (claims, namespaces, dependencies, removed apps) cannot have
    changed when all of these are the same."""
    if proof is None or stored is None or proof.config != config or proof.prune != prune:
        return None
    if not keys.same(proof.units, tuple(units)) or keys.inventory_versions(stored) != proof.stored:
        return None
    if proof.revisions != revisions or proof.trees != trees:
        return None
    t0, started = time.monotonic(), datetime.datetime.now(datetime.UTC)
    for u, last in zip(units, proof.lasts, strict=True):
        if digest(u) != last.digest:
            return None
    for last, fm in zip(proof.lasts, proof.field_managers, strict=True):
        if not engine.in_sync(last.result, live.get, fm):
            return None
    duration = (time.monotonic() - t0) / max(1, len(units))  # each unit's share of the proof
    return [last.result.again(started=started, duration=duration) for last in proof.lasts]
