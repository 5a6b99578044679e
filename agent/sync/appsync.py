"""One sync of a cluster's apps, each an isolated unit (Argo CD's Application, Flux's Kustomization).

:func:`sync_units` runs the story for the units of one cluster (:mod:`agent.apps`):

0. a cluster whose every input is as its last sync left it, when that sync proved every unit unchanged, is
   proven again in one pass (:func:`noop.again`: no per-unit load, claims, scheduling or result checks) and its
   orphans scanned; any doubt, and every other sync, takes the steps below;
1. load every unit from its source's tree; a unit that fails to load fails alone;
2. claim objects in unit order: an object a second unit also renders fails that second unit (naming both apps
   and documents); the first keeps it. A unit whose objects leave the ``namespaces`` allow-list fails before any
   write;
3. sync the units, each with its own ``reconcilers.engine.reconcile`` (own inventory, prune, stages): resyncs
   one after the other, new revisions beside each other (see :func:`agent.sync.appruns.run`), an app only after
   the apps it ``dependsOn`` are Synced and Healthy on the cluster (else it is ``Waiting``; health waits run beside
   the other apps' syncs); objects another unit desires are never pruned by this one (they moved);
4. prune the inventories of apps no longer placed on the cluster (removed from the config, or the cluster left
   their selector) when ``sync.prune`` is on and every unit loaded; keep them (and say so) otherwise;
5. scan for orphans once for the whole cluster.

The cluster's result is the units' results together (:func:`agent.sync.appresults.aggregate`). Called by
:mod:`agent.sync.cluster`.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Mapping, Sequence

from agent import apps
from agent.sync import appruns, gate, keys, noop, removed
from agent.sync.context import Context
from reconcilers import cancel as cancel_
from reconcilers import engine, errors, resources

log = logging.getLogger(__name__)


def sync_units(
    ctx: Context,
    units: Sequence[apps.Unit],
    revisions: Mapping[str, resources.Revision],
    trees: Mapping[str, pathlib.Path],
    token: cancel_.Token,
    *,
    only: str | None = None,
) -> tuple[list[engine.ReconcileResult], list[engine.ChangeSetEntry]]:
    """Sync ``units`` (every unit of the cluster, dependencies first) at ``revisions`` (source name -> revision)
    from ``trees`` (source name -> checkout); with ``only``, just the unit of that name (the others are loaded
    for the object claims, not synced; its dependencies are not waited for). Returns one result per synced unit
    (``app`` set) and, for a full sync, one per removed app with an inventory left; and the orphans found (a full
    sync in which every unit succeeded). Never raises for a unit's failure; raises CancelledError and ClusterError
    (the caller ends the cluster's sync)."""
    if (
        only is None
        and not ctx.dry_run
        and not ctx.wait
        and not ctx.selected
        and all(ctx.admit(u).allowed for u in units)
    ):
        proven = _again(ctx, units, revisions, trees, token)
        if proven is not None:
            return proven
    ctx.proof.last = None  # made again below when every unit is proven
    loaded: dict[str, list[resources.Manifest]] = {}
    failed: dict[str, engine.ReconcileResult] = {}
    given, revisions, trees = (revisions, trees), dict(revisions), dict(trees)
    for u in units:
        pin = apps.PIN_PREFIX + u.name
        if revisions.get(pin) is apps.NOT_REACHED:
            why = f"Waiting (the rollout of {u.name} has not reached this cluster)"
            failed[u.name] = appruns.result(ctx, u, None, why, engine.ErrorKind.WAITING)
            continue
        if (pinned := revisions.get(pin)) is not None and not pinned.sha:  # its ref, not fetched yet
            failed[u.name] = appruns.result(ctx, u, None, f"Waiting ({pinned.ref})", engine.ErrorKind.WAITING)
            continue
        revision = revisions.get(pin) or revisions.get(u.source)
        tree = trees.get(pin) or trees.get(u.source)
        if revision is None or tree is None:
            why = f"Waiting (source {u.source} has no revision yet: its first fetch is pending or failing)"
            failed[u.name] = appruns.result(ctx, u, revision, why, engine.ErrorKind.WAITING)
            continue
        revisions[pin], trees[pin] = revision, tree  # the unit's own revision and tree, from here on
        try:
            # its tree as its source's (a pinned one differs): no copy of the sources' map when it is the same
            loaded[u.name] = ctx.load(u, trees if keys.same(trees.get(u.source), tree) else {**trees, u.source: tree})
        except (errors.CancelledError, errors.ClusterError):
            raise  # the whole sync's verdict (cancelled, cluster unreachable), not this app's
        except errors.GitOpsError as e:
            failed[u.name] = appruns.failed(ctx, u, revision, e)
        except Exception as e:  # a bug in loading or rendering one app: that app fails alone
            failed[u.name] = appruns.internal(ctx, u, revision, "loading", e)
    claims = _claim(ctx, units, loaded, revisions, failed)
    stored, fresh = _inventories(ctx, units, loaded, only)
    kinds = {(m.key.group, m.key.kind) for found in loaded.values() for m in found}
    ctx.live.ensure(kinds, watch=ctx.watch)
    selected = [u for u in units if only is None or u.name == only]
    results = appruns.run(ctx, selected, loaded, claims, revisions, failed, token, only is not None, stored, fresh)
    if ctx.watch:
        ctx.live.ensure(kinds, watch=True)  # kinds whose CRDs this sync created are served now
    orphaned: list[engine.ChangeSetEntry] = []
    if only is None and token.reason is None:  # a cancelled sync ends here: no prune of removed apps, no scan
        complete = len(loaded) == len(units)
        prune_options = ctx.prune
        if stored is not None:  # without the LIST, apps that left are not seen
            results += removed.sync_removed(
                ctx.kube, ctx.cfg, ctx.cluster, units, stored, set(claims), complete, prune_options, ctx.dry_run, token,
                admit=lambda name: _admit_name(ctx, name),
            )  # fmt: skip
        if all(r.ok for r in results):
            known = {k for r in results for k in r.known} | set(claims)
            tracking = engine.Tracking(ctx.cfg.instance, ctx.cluster.name)
            orphaned = engine.orphans(
                ctx.kube, ctx.live, known, tracking, prune_options, dry_run=_orphans_dry(ctx), cancel=token
            )
            whole = len(results) == len(units) and not any(r.held for r in results) and not ctx.selected
            if stored is not None and not fresh and whole:
                ctx.proof.last = noop.cluster_proof(
                    units, *given, stored, ctx.remember, ctx.wait, ctx.config, ctx.prune, frozenset(known),
                    field_manager=lambda u: ctx.options(u).apply.field_manager,
                )  # fmt: skip
    return results, orphaned


def _again(
    ctx: Context,
    units: Sequence[apps.Unit],
    revisions: Mapping[str, resources.Revision],
    trees: Mapping[str, pathlib.Path],
    token: cancel_.Token,
) -> tuple[list[engine.ReconcileResult], list[engine.ChangeSetEntry]] | None:
    """The sync of a cluster proven as its last sync left it (:func:`noop.again`), in one pass: its units'
    results and the orphans found; None when it is not (the caller syncs unit by unit). The API server must
    answer (:meth:`connection.KubeCluster.ping`), as for any sync proven from the watches."""
    proof = ctx.proof.last
    stored = ctx.watched() if ctx.watched is not None and proof is not None else None

    def digest(u: apps.Unit) -> str:
        ctx.load(u, trees)  # from the memory while its inputs are the same
        return ctx.digest(u.name)

    found = noop.again(proof, units, ctx.config, revisions, trees, stored, ctx.prune, digest, ctx.live)
    if found is None or proof is None:
        return None
    ctx.kube.ping()
    if token.reason is not None:
        return found, []
    tracking = engine.Tracking(ctx.cfg.instance, ctx.cluster.name)
    return found, engine.orphans(
        ctx.kube, ctx.live, proof.known, tracking, ctx.prune, dry_run=_orphans_dry(ctx), cancel=token
    )


def _admit_name(ctx: Context, name: str) -> gate.Decision:
    """The write gate's answer for writes of this sync that belong to no current unit: the prune of app ``name``,
    which left the cluster (its hold, the windows covering its name, the cluster's hold, manual mode as
    ``sync.auto`` says), or, as ``*``, the cluster's orphans."""
    unit = apps.Unit(name, "", "", "", "", cluster=ctx.cluster.name, auto=ctx.cfg.sync.auto)
    return ctx.admit(unit)


def _orphans_dry(ctx: Context) -> bool:
    """True when deleting orphans (``--prune-orphans``) must not write: a dry run, or the gate refuses the
    cluster's writes (suspended, a sync window)."""
    return ctx.dry_run or (ctx.prune.orphans and not _admit_name(ctx, "*").allowed)


def _inventories(
    ctx: Context, units: Sequence[apps.Unit], loaded: Mapping[str, list[resources.Manifest]], only: str | None
) -> tuple[Mapping[str, resources.Body] | None, bool]:
    """The cluster's inventories by key (None: they may not be listed, each app reads its own), and whether they
    are a LIST's of this sync. The watch's (no request) when it is current and this sync is a resync of
    unchanged manifests (each loaded unit has the manifests digest, unit and config its last good sync had, so it
    will most likely be proven unchanged) with no inventory of an app that left, after one small request that
    shows the API server answers (:meth:`connection.KubeCluster.ping`); else one LIST. Raises ClusterError."""
    found = ctx.watched() if ctx.watched is not None and not ctx.dry_run else None
    if found is not None:
        resync = all(
            (last := ctx.last.get(u.name)) is not None
            and last.digest == ctx.digest(u.name)
            and last.config == ctx.config
            and keys.same(last.unit, u)
            for u in units
            if u.name in loaded and (only is None or u.name == only)
        )
        if resync and (only is not None or found.keys() <= {u.inventory for u in units}):
            ctx.kube.ping()  # the watches say nothing of a server gone silent: it must answer this sync
            return found, False
    return removed.list_inventories(ctx.kube, ctx.cfg, ctx.cluster.name), True  # one LIST, not a GET per app


def _claim(
    ctx: Context,
    units: Sequence[apps.Unit],
    loaded: dict[str, list[resources.Manifest]],
    revisions: Mapping[str, resources.Revision],
    failed: dict[str, engine.ReconcileResult],
) -> dict[resources.ResourceKey, tuple[str, resources.Manifest]]:
    """The claims of the loaded units (:func:`ownership.claim`, remembered); a unit refused there fails (a config
    error) and is no longer loaded."""
    found, refused = ctx.claims.claim(ctx.kube, units, loaded, ctx.digest)
    for name, problem in refused.items():
        del loaded[name]
        u = next(u for u in units if u.name == name)
        failed[name] = appruns.result(
            ctx, u, revisions.get(apps.PIN_PREFIX + name), ctx.mask(problem), engine.ErrorKind.CONFIG
        )
    return found
